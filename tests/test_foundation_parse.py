"""Foundation issue: what a study folder holds beside its transcripts, labels inside an answer
posing as speakers, and Word text boxes. Each test failed on the code before its fix."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from jtbd.coding.inputs import Discovery, discover
from jtbd.coding.parse import load_transcript, parse_transcript, read_text, speaker_roles

TRANSCRIPT = "Interviewer: What were you using before?\nPriya: A shared spreadsheet, and I hated it.\n"
SUPPORTED = "supported: .txt, .md, .docx, .vtt, .srt, .json"


def _write(folder: Path, *names: str) -> list[Path]:
    paths = [folder / name for name in names]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(TRANSCRIPT, encoding="utf-8")
    return paths


# --- 1. folder discovery -------------------------------------------------------


def test_hidden_folders_are_not_searched(tmp_path):
    study = tmp_path / ".study"  # the folder given may itself be hidden: only folders below it count
    [kept, deep] = _write(study, "p01.txt", "round 2/p02.md")
    _write(study, ".obsidian/workspace.json", ".obsidian/plugins/notes.md", ".git/COMMIT_EDITMSG.txt",
           "round 2/.trash/p02 old.txt")
    found = discover([study])
    assert found == Discovery(files=[kept, deep], problems=[], skipped=[])


def test_recordings_documents_and_images_beside_transcripts_are_skipped_not_failures(tmp_path):
    [transcript] = _write(tmp_path, "p01/call.txt")
    others = ["call.m4a", "call.MP4", "consent.pdf", "notes.doc", "screener.csv", "whiteboard.HEIC",
              "exports.zip", "Thumbs.db", "README"]
    _write(tmp_path / "p01", *others)
    _write(tmp_path, "p01/call.log")  # an unknown kind might be a transcript: still said to be a problem
    found = discover([tmp_path])
    assert found.files == [transcript]
    assert found.problems == [(str(tmp_path / "p01/call.log"), f"unsupported file type .log; {SUPPORTED}")]
    not_read = "a document format that is not read; save a transcript as .docx or .txt to code it"
    assert found.skipped == [
        (str(tmp_path / "p01/call.MP4"), "video, not a transcript"),
        (str(tmp_path / "p01/call.m4a"), "audio, not a transcript"),
        (str(tmp_path / "p01/consent.pdf"), not_read),
        (str(tmp_path / "p01/exports.zip"), "an archive; unpack it to code the transcripts inside"),
        (str(tmp_path / "p01/notes.doc"), not_read),
        (str(tmp_path / "p01/screener.csv"), "a spreadsheet or slides, not a transcript"),
        (str(tmp_path / "p01/whiteboard.HEIC"), "an image, not a transcript"),
    ]  # no extension (README) and Windows' Thumbs.db: left out silently, as hidden files are


def test_a_recording_named_on_the_command_line_is_still_a_problem(tmp_path):
    [recording, system] = _write(tmp_path, "call.m4a", "Thumbs.db")
    files, problems, skipped = discover([recording, system])
    assert (files, skipped) == ([], [])
    assert problems == [(str(recording), f"unsupported file type .m4a; {SUPPORTED}"),
                        (str(system), f"unsupported file type .db; {SUPPORTED}")]


# --- 2. labels inside an answer are no speakers ---------------------------------------

LISTING = """\
Interviewer: So what made you look for something else?
Dana: Honestly, a few things piled up.
Price: it was double what we paid the year before,
and nobody told us.
Support: nobody answered for a week.
Interviewer: And what did you do then?
Dana: I asked around at the co-op.
Interviewer: Who did you ask?
Dana: Mostly Sam.
"""


def _srt(text: str) -> str:
    lines = text.splitlines()
    return "".join(f"{i}\n00:00:{i:02d},000 --> 00:00:{i:02d},900\n{line}\n\n" for i, line in enumerate(lines, 1))


@pytest.mark.parametrize("fmt", ["txt", "md", "srt"])
def test_a_list_inside_an_answer_is_not_new_speakers(fmt):
    text = _srt(LISTING) if fmt == "srt" else LISTING
    t = parse_transcript(text, f"p01.{fmt}", fmt)
    assert [turn.speaker for turn in t.turns] == ["Interviewer", "Dana"] * 3
    assert t.turns[1].text == ("Honestly, a few things piled up. Price: it was double what we paid the year "
                               "before, and nobody told us. Support: nobody answered for a week.")
    assert speaker_roles(t) == [("Interviewer", "interviewer", 3), ("Dana", "interviewee", 3)]


def test_a_list_is_words_of_the_answer_even_without_an_interviewer_label():
    # no label says who asks: the list items were speakers, "other" by their questions, and not coded
    t = parse_transcript(LISTING.replace("Interviewer:", "Maya:"), "p01.txt", "txt")
    assert speaker_roles(t) == [("Maya", "interviewer", 3), ("Dana", "interviewee", 3)]


@pytest.mark.parametrize(("text", "speakers"), [
    # the tiny files: no speaker heads two turns, so nothing to tell a list from
    ("Interviewer: What happened?\nDana: It broke.\n", ["Interviewer", "Dana"]),
    ("Interviewer: What happened?\nDana: It broke.\nRob: And then she cried.\nAmy: We all did.\n",
     ["Interviewer", "Dana", "Rob", "Amy"]),
    # one person saying one line is a speaker, and so are role labels in a row
    ("Interviewer: What happened?\nDana: It broke.\nInterviewer: And then?\nDana: I bought one.\n"
     "Rob Smith: Hiya, I'm her husband.\nInterviewer 2: Welcome!\nSpeaker 3: Hello.\n",
     ["Interviewer", "Dana", "Interviewer", "Dana", "Rob Smith", "Interviewer 2", "Speaker 3"]),
    # a full name once and its first name after it are one speaker, not a list
    ("Interviewer: Who are you?\nDana Reyes: A nurse.\nInterviewer: And?\nDana: Tired.\nInterviewer: Why?\n"
     "Dana: Shifts.\n", ["Interviewer", "Dana Reyes"] * 3),
])
def test_speakers_that_speak_once_stay_speakers(text, speakers):
    assert [turn.speaker for turn in parse_transcript(text, "p.txt", "txt").turns] == speakers


def test_speaker_roles_counts_each_speakers_turns_in_order_of_appearance():
    t = parse_transcript("Sam: Ready?\nDana: Yes.\nSam: So?\nDana: So it broke.\nRob Smith: It did.\nSam: Ok?\n",
                         "p.txt", "txt", interviewers=["Sam"])
    assert speaker_roles(t) == [("Sam", "interviewer", 3), ("Dana", "interviewee", 2),
                                ("Rob Smith", "interviewee", 1)]


# --- 3. Word: text boxes read once, on lines of their own ---------------------------------

_NAMESPACES = {
    "w": "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
    "mc": "http://schemas.openxmlformats.org/markup-compatibility/2006",
    "wp": "http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing",
    "a": "http://schemas.openxmlformats.org/drawingml/2006/main",
    "wps": "http://schemas.microsoft.com/office/word/2010/wordprocessingShape",
    "v": "urn:schemas-microsoft-com:vml",
}
_XMLNS = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in _NAMESPACES.items())


def _run(text: str) -> str:
    return f'<w:r><w:t xml:space="preserve">{text}</w:t></w:r>'


def _box(*lines: str) -> str:
    return "<w:txbxContent>" + "".join(f"<w:p>{_run(line)}</w:p>" for line in lines) + "</w:txbxContent>"


def _drawing_box(*lines: str) -> str:
    """A text box as Word 2010 and later write it: a drawing, and the same box again in VML for older readers."""
    drawing = ('<w:drawing><wp:anchor><a:graphic><a:graphicData><wps:wsp><wps:txbx>'
               f'{_box(*lines)}</wps:txbx></wps:wsp></a:graphicData></a:graphic></wp:anchor></w:drawing>')
    return (f'<w:r><mc:AlternateContent><mc:Choice Requires="wps">{drawing}</mc:Choice>'
            f'<mc:Fallback>{_vml_box(*lines)}</mc:Fallback></mc:AlternateContent></w:r>')


def _vml_box(*lines: str) -> str:
    return f'<w:pict><v:shape><v:textbox>{_box(*lines)}</v:textbox></v:shape></w:pict>'


def _document() -> bytes:
    body = (
        f"<w:p>{_run('Interviewer: So how did it start?')}</w:p>"
        f"<w:p>{_run('Dana: It started in March')}{_drawing_box('The old printer, 2019 model')}"
        f"{_run(', when the printer jammed.')}</w:p>"
        '<w:p><w:commentRangeStart w:id="0"/>' + _run("Interviewer: And then?") + '<w:commentRangeEnd w:id="0"/>'
        '<w:r><w:rPr><w:rStyle w:val="CommentReference"/></w:rPr><w:commentReference w:id="0"/></w:r></w:p>'
        f"<w:p>{_run('Dana: I looked online.')}<w:r>{_vml_box('First note in the box', 'Second note')}</w:r></w:p>"
        f"<w:tbl><w:tr><w:tc><w:p>{_run('Dana: I bought one that week.')}</w:p></w:tc>"
        f"<w:tc><w:p>{_run('Receipt attached')}</w:p></w:tc></w:tr></w:tbl>"
    )
    parts = {
        "word/document.xml": f'<w:document {_XMLNS}><w:body>{body}<w:sectPr/></w:body></w:document>',
        "word/comments.xml": f'<w:comments {_XMLNS}><w:comment w:id="0"><w:p>{_run("Reviewer: check the date")}'
                             "</w:p></w:comment></w:comments>",
        "word/header1.xml": f"<w:hdr {_XMLNS}><w:p>{_run('Confidential: participant 7')}</w:p></w:hdr>",
        "word/footer1.xml": f"<w:ftr {_XMLNS}><w:p>{_run('Page 1')}</w:p></w:ftr>",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        for name, xml in parts.items():
            archive.writestr(name, '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + xml)
    return buffer.getvalue()


def test_word_text_boxes_are_lines_of_their_own_read_once(tmp_path):
    path = tmp_path / "p01.docx"
    path.write_bytes(_document())
    assert read_text(path).split("\n") == [
        "Interviewer: So how did it start?",
        "Dana: It started in March, when the printer jammed.",  # not glued to the box's text
        "The old printer, 2019 model",  # once, though Word writes the box twice
        "Interviewer: And then?",  # the comment's text lives in comments.xml: not read
        "Dana: I looked online.",
        "First note in the box",
        "Second note",
        "Dana: I bought one that week.",  # tables are read
        "Receipt attached",
    ]
    t = load_transcript(path)
    assert [turn.speaker for turn in t.turns] == ["Interviewer", "Dana", "Interviewer", "Dana"]
    assert t.turns[1].text == "It started in March, when the printer jammed. The old printer, 2019 model"
