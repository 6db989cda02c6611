"""Tests for coding/parse.py: every format, the offset invariant, errors and roles."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jtbd.coding.parse import (
    _NOT_SPEAKERS,
    SUPPORTED_SUFFIXES,
    TranscriptError,
    assign_roles,
    load_transcript,
    parse_transcript,
    read_text,
)
from jtbd.schemas.transcript import Role, Transcript

REPO = Path(__file__).resolve().parents[1]


def parse(text: str, fmt: str = "txt", **roles) -> Transcript:
    return parse_transcript(text, f"interview.{fmt}", fmt, **roles)


def who(transcript: Transcript) -> list[tuple[str, str]]:
    return [(turn.speaker, turn.role.value) for turn in transcript.turns]


def assert_offsets_hold(transcript: Transcript) -> None:
    for turn in transcript.turns:
        assert transcript.text[turn.char_start : turn.char_end] == turn.text
        assert transcript.text[: turn.char_start].endswith(f"{turn.speaker}: ")
        joined = " ".join(transcript.text[s.char_start : s.char_end] for s in turn.segments)
        assert joined == turn.text


# --- plain text and Markdown --------------------------------------------------

ROBOT = """\
[00:00:02] Interviewer: So take me back to the first time you thought about it.

[00:00:08] Dana: Um, honestly it was, like,  last winter?
[00:00:15] Dana: The old one just kept dying on me.
and then the cord went too.

[00:01:02] Interviewer: What happened then?
"""


def test_txt_turns_merge_and_keep_their_times():
    t = parse(ROBOT)
    assert (t.id, t.source, t.format) == ("interview", "interview.txt", "txt")
    assert who(t) == [("Interviewer", "interviewer"), ("Dana", "interviewee"), ("Interviewer", "interviewer")]
    dana = t.turns[1]
    assert dana.text == (
        "Um, honestly it was, like,  last winter? The old one just kept dying on me. and then the cord went too."
    )
    assert [s.start for s in dana.segments] == [8.0, 15.0, None]  # the unlabelled line has no time
    assert (dana.start, dana.end, t.turns[2].start) == (8.0, None, 62.0)
    assert t.text == (
        "Interviewer: So take me back to the first time you thought about it.\n"
        f"Dana: {dana.text}\n"
        "Interviewer: What happened then?\n"
    )
    assert t.interviewers == ["Interviewer"]
    assert_offsets_hold(t)


@pytest.mark.parametrize(
    ("line", "start"),
    [
        ("[00:01:12] Dana: it was fine", 72.0),
        ("(00:01:12) Dana: it was fine", 72.0),
        ("00:01:12 Dana: it was fine", 72.0),
        ("[01:12] Dana: it was fine", 72.0),
        ("[1:02:03.5] Dana: it was fine", 3723.5),
        ("**Dana:** it was fine", None),
        ("[00:01:12] **Dana**: it was fine", 72.0),
        ("Dana (01:12): it was fine", 72.0),  # Rev puts the time after the name
        ("Dana: [00:01:12] it was fine", 72.0),  # and some tools after the colon
        ("- Dana: it was fine", None),  # a subtitle's dash for a new speaker
        ("00:01:12 - Dana: it was fine", 72.0),
        ("Dana: it was fine", None),
    ],
)
def test_txt_timestamp_and_label_styles(line, start):
    t = parse(f"Interviewer: How was it?\n{line}\n", fmt="md")
    assert who(t)[1] == ("Dana", "interviewee")
    assert (t.turns[1].text, t.turns[1].start) == ("it was fine", start)


def test_otter_export_headers_precede_the_text():
    t = parse(
        "Interviewer  0:03\nSo how did it start?\n\n"
        "Dana Reyes  0:07\nIt started in March.\nThen it got worse: much worse.\n\n"
        "Interviewer  1:02:03\nAnd then?\n"
    )
    assert [turn.speaker for turn in t.turns] == ["Interviewer", "Dana Reyes", "Interviewer"]
    assert [turn.start for turn in t.turns] == [3.0, 7.0, 3723.0]
    assert t.turns[1].text == "It started in March. Then it got worse: much worse."
    assert [s.start for s in t.turns[1].segments] == [7.0, None]
    assert_offsets_hold(t)


def test_a_label_alone_on_its_line_starts_the_turn_below():
    t = parse("Speaker 1 (00:00):\nSo, how did it start?\n\nSpeaker 2 (00:04):\nWith a letter.\nA long one.\n")
    assert [(turn.speaker, turn.text, turn.start) for turn in t.turns] == [
        ("Speaker 1", "So, how did it start?", 0.0),
        ("Speaker 2", "With a letter. A long one.", 4.0),
    ]
    assert_offsets_hold(t)


def test_name_and_time_on_lines_of_their_own_head_each_turn():
    """Riverside and some Descript exports: the name alone on a line, the time alone below it."""
    t = parse(
        "Maya Chen\n00:00:03\nSo when did you first think about it?\n\n"
        "Dana Reyes\n00:00:09\nAbout a year before, in the spring.\nMy back was killing me every morning.\n\n"
        "Maya Chen\n[00:01:02]\nAnd then?\n"
    )
    assert [(turn.speaker, turn.start, turn.text) for turn in t.turns] == [
        ("Maya Chen", 3.0, "So when did you first think about it?"),
        ("Dana Reyes", 9.0, "About a year before, in the spring. My back was killing me every morning."),
        ("Maya Chen", 62.0, "And then?"),
    ]
    assert who(t)[1] == ("Dana Reyes", "interviewee") and t.interviewers == ["Maya Chen"]
    assert_offsets_hold(t)


def test_one_person_under_a_short_and_a_full_label_is_one_speaker():
    """Web transcripts name a speaker in full first and by first name after, or change case."""
    t = parse(
        "Bob Moesta: So when did you first think about a new one?\n"
        "Brian Walker: About a year before, my back was killing me every single morning.\n"
        "Bob: And then what happened?\n"
        "Brian: We went to the store, and honestly I was worried about the price.\n"
        "BRIAN: It was a lot of money for us at the time, with the kids and everything.\n"
    )
    assert who(t) == [("Bob Moesta", "interviewer"), ("Brian Walker", "interviewee"),
                      ("Bob Moesta", "interviewer"), ("Brian Walker", "interviewee")]
    assert "We went to the store" in t.turns[3].text and t.turns[3].text.endswith("with the kids and everything.")
    assert_offsets_hold(t)


def test_labels_that_are_not_one_person_stay_apart():
    t = parse(
        "Interviewer: Who was at the meeting?\nInterviewer 2: And who decided?\n"
        "Sam Lee: I was, and my colleague. We both thought the old system was a mess.\n"
        "Sam Ortiz: I agreed with him, it was slow every single day.\n"
        "Sam: Well, one of us had to say it.\n"
    )
    assert [turn.speaker for turn in t.turns] == ["Interviewer", "Interviewer 2", "Sam Lee", "Sam Ortiz", "Sam"]


LOOSE_LABELS = {
    "bracketed names": "[Bob] So tell me about the day?\n[Jen] It was a Tuesday and the laptop died.\n"
                       "[Bob] What then?\n[Jen] I bought one that week. [laughs] I was so annoyed.\n",
    "bracketed header and clock time": "[Bob Moesta] 10:03:04\nSo tell me about the day?\n\n[Jen Alvarez] 10:03:09\n"
                                       "It was a Tuesday and the laptop died.\n\n[Bob Moesta] 10:03:15\nWhat then?\n\n"
                                       "[Jen Alvarez] 10:03:18\nI bought one that week. I was so annoyed.\n",
    "name, one space, time": "Bob 0:00\nSo tell me about the day?\n\nJen 0:05\nIt was a Tuesday and the laptop died.\n\n"
                             "Bob 0:12\nWhat then?\n\nJen 0:14\nI bought one that week. I was so annoyed.\n",
    "name, dash, time": "Bob - 00:00:00\nSo tell me about the day?\n\nJen - 00:00:05\nIt was a Tuesday and the laptop "
                        "died.\n\nBob - 00:00:12\nWhat then?\n\nJen - 00:00:14\nI bought one that week. I was so annoyed.\n",
    "name, dash, text": "Bob \u2014 So tell me about the day?\nJen \u2014 It was a Tuesday and the laptop died.\n"
                        "Bob - What then?\nJen - I bought one that week - I was so annoyed.\n",
    "name, time in brackets, text": "Bob [00:00:00] So tell me about the day?\nJen [00:00:05] It was a Tuesday and the "
                                    "laptop died.\nBob [00:00:12] What then?\nJen [00:00:14] I bought one that week.\n",
    "name, tab, text": "Bob\tSo tell me about the day?\nJen\tIt was a Tuesday and the laptop died.\n"
                       "Bob\tWhat then?\nJen\tI bought one that week. I was so annoyed.\n",
    "name alone above the turn": "Bob Moesta\nSo tell me about the day?\n\nJen Alvarez\nIt was a Tuesday and the "
                                 "laptop died.\n\nBob Moesta\nWhat then?\n\nJen Alvarez\nI bought one that week.\n",
    "name in capitals alone above a wrapped turn": "BOB\nSo tell me about the day?\nJEN\nIt was a Tuesday and the "
                                                   "laptop died.\nBOB\nWhat then?\nJEN\nI bought one that week.\n"
                                                   "I was so annoyed.\n",
}


@pytest.mark.parametrize("text", LOOSE_LABELS.values(), ids=LOOSE_LABELS.keys())
def test_looser_label_forms_are_read_when_a_file_has_no_colon_labels(text):
    t = parse(text)
    assert [turn.speaker.split()[0].capitalize() for turn in t.turns] == ["Bob", "Jen", "Bob", "Jen"]
    assert [turn.role.value for turn in t.turns[:2]] == ["interviewer", "interviewee"]
    assert t.turns[1].text == "It was a Tuesday and the laptop died."
    assert t.turns[3].text.startswith("I bought one that week")
    assert_offsets_hold(t)


def test_looser_label_forms_need_two_lines_each_and_never_override_colon_labels():
    # a bracketed name heading a single line is not a speaker, nor a sound note heading two
    with pytest.raises(TranscriptError, match="no speaker labels found"):
        parse("[Bob] So tell me.\n[laughs] and then it broke\n[laughs] yes\n")
    # where "Name:" labels exist, a bracketed note at the start of a line is speech
    t = parse("Bob: What then?\nJen: Well.\n[Overlapping] I bought one.\n[Overlapping] Twice.\nBob: Okay.\n")
    assert [turn.speaker for turn in t.turns] == ["Bob", "Jen", "Bob"]
    assert t.turns[1].text == "Well. [Overlapping] I bought one. [Overlapping] Twice."


def test_q_and_a_with_a_full_stop_are_labels():
    t = parse("Q. So tell me about the day?\nA. It was a Tuesday and the laptop died.\nQ. What then?\nA. I bought one.\n")
    assert [(turn.speaker, turn.role.value) for turn in t.turns[:2]] == [("Q", "interviewer"), ("A", "interviewee")]
    assert t.turns[3].text == "I bought one."
    assert_offsets_hold(t)


def test_lines_that_only_look_like_loose_labels_are_not_speakers():
    # one name alone above text twice is a title or an emphasis, not a conversation: two names must recur
    with pytest.raises(TranscriptError, match="no speaker labels found"):
        parse("Jen\nIt broke on the Tuesday.\nThe Laptop\nIt was old.\nJen\nAnd then again.\n")
    # a filler word before a dash is speech, however often it recurs
    with pytest.raises(TranscriptError, match="no speaker labels found"):
        parse("Honestly - it was bad.\nHonestly - it broke twice.\nRight - so I bought one.\nRight - and that was it.\n")


def test_one_short_line_above_a_time_is_speech_not_a_header():
    t = parse("Interviewer: When was the appointment?\nDana: It was on the Tuesday.\nEarly Tuesday\n09:30\n"
              "Interviewer: Right?\n")
    assert [turn.speaker for turn in t.turns] == ["Interviewer", "Dana", "Interviewer"]
    assert t.turns[1].text == "It was on the Tuesday. Early Tuesday 09:30"


def test_sentences_with_a_colon_are_not_speakers():
    t = parse(
        "Interviewer: What happened?\n"
        "Dana: It broke.\n"
        "Here's the thing: it broke twice.\n"
        "So I told him: no way.\n"
        "Note: this was in March.\n"
        "My neighbour across the road said: buy one.\n"
        "we got there at 10:30 and it was shut\n"
        "Interviewer: Right?\n"
    )
    assert [turn.speaker for turn in t.turns] == ["Interviewer", "Dana", "Interviewer"]
    assert "Here's the thing: it broke twice. So I told him: no way. Note: this was" in t.turns[1].text
    assert t.turns[1].text.endswith("buy one. we got there at 10:30 and it was shut")


def test_real_labels_pass_the_guard():
    t = parse(
        "Interviewer: What happened?\n"
        "dana: It broke.\n"  # lowercase, but a label on two lines
        "Interviewer: And then?\n"
        "dana: I bought one.\n"
        "Rob Smith: Hiya, I'm her husband.\n"  # once, but a capitalised name
        "hmm so: anyway\n"  # once and lowercase: speech
    )
    assert [turn.speaker for turn in t.turns] == ["Interviewer", "dana", "Interviewer", "dana", "Rob Smith"]
    assert t.turns[-1].text == "Hiya, I'm her husband. hmm so: anyway"


def test_text_before_the_first_label_is_a_preamble():
    t = parse("# Interview 3, March\n\nInterviewer: Ready?\nDana: Yes.\n", fmt="md")
    assert t.text == "Interviewer: Ready?\nDana: Yes.\n"


# --- WebVTT and SubRip --------------------------------------------------------

VTT = """\
WEBVTT
Kind: captions

NOTE This is a comment
spanning two lines

STYLE
::cue { color: red }

1
00:00:01.000 --> 00:00:04.000 align:start position:10%
<v.loud Interviewer>Can you hear me <i>okay</i>?</v>

intro-2
00:04.500 --> 00:09.000
<v Marcus Lee>Yes, <c.yellow>loud</c>  and
clear &amp; bright.</v>

00:00:09.500 --> 00:00:12.000
and <00:00:10.000><c>the</c> rest of it.

3
00:00:12.500 --> 00:00:14.000
<v Interviewer>Great.</v>
"""


def test_vtt_voices_tags_and_continuation_cues():
    t = parse(VTT, fmt="vtt")
    assert who(t) == [("Interviewer", "interviewer"), ("Marcus Lee", "interviewee"), ("Interviewer", "interviewer")]
    marcus = t.turns[1]
    assert marcus.text == "Yes, loud  and clear & bright. and the rest of it."
    assert [(s.start, s.end) for s in marcus.segments] == [(4.5, 9.0), (9.5, 12.0)]
    assert (marcus.start, marcus.end) == (4.5, 12.0)
    assert t.turns[0].text == "Can you hear me okay?"
    assert marcus.time_at(marcus.char_start + marcus.text.index("rest")) == 9.5
    assert_offsets_hold(t)


def test_vtt_name_prefix_and_crosstalk_cue():
    t = parse(
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nInterviewer: When was that?\n\n"
        "00:00:02.500 --> 00:00:04.000\nHelen: In February: the actual switch.\n\n"
        "00:00:04.000 --> 00:00:05.000\n<v Interviewer>Right.</v> <v Helen>Yes.</v>\n",
        fmt="vtt",
    )
    assert [(turn.speaker, turn.text) for turn in t.turns] == [
        ("Interviewer", "When was that?"),
        ("Helen", "In February: the actual switch."),
        ("Interviewer", "Right."),
        ("Helen", "Yes."),
    ]


SRT = """\
1
00:00:01,000 --> 00:00:03,500
Interviewer: How did it start?

2
00:00:04,000 --> 00:00:06,000
[Dana] It started
<i>in March.</i>

3
00:00:06,500 --> 00:00:08,000
[laughs] And it got worse.

4
01:00:09,000 --> 01:00:10,250
Interviewer: Really?
"""


def test_srt_prefixes_and_continuation_cues():
    t = parse(SRT, fmt="srt")
    assert who(t) == [("Interviewer", "interviewer"), ("Dana", "interviewee"), ("Interviewer", "interviewer")]
    assert t.turns[1].text == "It started in March. [laughs] And it got worse."
    assert [(s.start, s.end) for s in t.turns[1].segments] == [(4.0, 6.0), (6.5, 8.0)]
    assert (t.turns[2].start, t.turns[2].end) == (3609.0, 3610.25)
    assert_offsets_hold(t)


# --- JSON ---------------------------------------------------------------------


def test_json_segments_merge_per_speaker():
    t = parse(
        json.dumps(
            {
                "segments": [
                    {"speaker": "Interviewer", "start": 0.0, "end": 4.2, "text": "So what were you using before?"},
                    {"speaker": "Priya", "start": 4.5, "end": 9.8, "text": " We had a shared spreadsheet, "},
                    {"speaker": "Priya", "start": "00:00:10", "end": "00:00:19.5", "text": "it was a mess."},
                    {"speaker": None, "text": "A real mess."},
                ]
            }
        ),
        fmt="json",
    )
    assert who(t) == [("Interviewer", "interviewer"), ("Priya", "interviewee")]
    priya = t.turns[1]
    assert priya.text == "We had a shared spreadsheet, it was a mess. A real mess."
    assert [(s.start, s.end) for s in priya.segments] == [(4.5, 9.8), (10.0, 19.5), (None, None)]
    assert (priya.start, priya.end) == (4.5, 19.5)
    assert_offsets_hold(t)


@pytest.mark.parametrize(
    "data",
    [
        [{"speaker_label": "Interviewer", "text": "Why?"}, {"speaker_label": "Ann", "text": "So."}],
        {"utterances": [{"speaker_name": "Interviewer", "text": "Why?"}, {"speaker_name": "Ann", "text": "So."}]},
    ],
)
def test_json_bare_list_and_utterances(data):
    assert who(parse(json.dumps(data), fmt="json")) == [("Interviewer", "interviewer"), ("Ann", "interviewee")]


def test_json_times_in_milliseconds_are_read_as_milliseconds():
    data = {"utterances": [{"speaker": "A", "start": 1200, "end": 95000, "text": "So what happened?"},
                           {"speaker": "B", "start": 96500, "end": 190250, "text": "It broke, and I bought one."}]}
    t = parse(json.dumps(data), "json")
    assert [(turn.start, turn.end) for turn in t.turns] == [(1.2, 95.0), (96.5, 190.25)]
    # seconds stay seconds, however long the interview (under a day)
    seconds = [{"speaker": "A", "start": 1.2, "text": "So what happened?"},
               {"speaker": "B", "start": 5400.5, "text": "It broke."}]
    assert [turn.start for turn in parse(json.dumps(seconds), "json").turns] == [1.2, 5400.5]
    # a short file in milliseconds: whole numbers, turns a median of thousands apart
    short = [{"speaker": s, "start": 5000 * i, "end": 5000 * i + 4000, "text": "Why?" if s == "A" else "It broke."}
             for i, s in enumerate("ABAB")]
    assert [turn.start for turn in parse(json.dumps(short), "json").turns] == [0.0, 5.0, 10.0, 15.0]
    # whole seconds a few apart stay seconds
    whole = [{**segment, "start": 5 * i, "end": 5 * i + 4} for i, segment in enumerate(short)]
    assert [turn.start for turn in parse(json.dumps(whole), "json").turns] == [0, 5, 10, 15]


def test_json_numbered_speakers():
    segments = [{"speaker": 0, "text": "What happened?"}, {"speaker": 1, "text": "It broke, so I bought one."}]
    t = parse(json.dumps(segments), "json")
    assert who(t) == [("Speaker 0", "interviewer"), ("Speaker 1", "interviewee")]


# --- the offset invariant, for any speakers and text ---------------------------

ROLE_WORDS = {"interviewer", "moderator", "researcher", "facilitator", "host", "hosts", "int"}
WORD = r"[A-ZÀ-ÖØ-Þ][a-zà-öø-ÿ]{1,8}"
# Capitalised unicode names; none that a label would make an interviewer, or that the guard turns away.
NAMES = st.from_regex(rf"{WORD}( {WORD})?", fullmatch=True).filter(
    lambda name: not {w.lower() for w in name.split()} & (ROLE_WORDS | _NOT_SPEAKERS)
)
# Colons, unicode and inner runs of spaces; no line breaks, markup or entities.
CHARACTERS = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="<>&{")
SPOKEN = (
    st.text(CHARACTERS, min_size=1)
    .map(str.strip)
    .filter(lambda s: s and "-->" not in s)
)


def render(lines: list[tuple[str, str]], fmt: str) -> str:
    """The lines as a file of `fmt`; line i starts at second i."""
    numbered = list(enumerate(lines))
    if fmt == "txt":
        return "".join(f"[00:{i // 60:02d}:{i % 60:02d}] {name}: {said}\n\n" for i, (name, said) in numbered)
    if fmt == "json":
        return json.dumps([{"speaker": n, "start": i, "end": i + 0.5, "text": s} for i, (n, s) in numbered], indent=1)
    if fmt == "srt":
        return "".join(f"{i + 1}\n00:00:{i:02d},000 --> 00:00:{i:02d},500\n{n}: {s}\n\n" for i, (n, s) in numbered)
    cues = (f"00:{i:02d}.000 --> 00:{i:02d}.500\n<v {n}>{s}</v>\n\n" for i, (n, s) in numbered)
    return "WEBVTT\n\n" + "".join(cues)


@settings(max_examples=150, deadline=None)
@given(
    names=st.lists(NAMES, min_size=1, max_size=3, unique=True),
    picks=st.lists(st.tuples(st.integers(0, 2), SPOKEN), min_size=1, max_size=12),
    fmt=st.sampled_from(["txt", "vtt", "srt", "json"]),
)
def test_offsets_point_at_the_words_of_every_turn_and_line(names, picks, fmt):
    lines = [(names[i % len(names)], said) for i, said in picks]
    t = parse(render(lines, fmt), fmt=fmt)
    expected: list[tuple[str, list[str]]] = []
    for name, said in lines:
        if expected and expected[-1][0] == name:
            expected[-1][1].append(said)
        else:
            expected.append((name, [said]))
    assert [(turn.speaker, turn.text) for turn in t.turns] == [(n, " ".join(s)) for n, s in expected]
    assert t.text == "".join(f"{turn.speaker}: {turn.text}\n" for turn in t.turns)
    for turn, (_, said) in zip(t.turns, expected):
        assert t.text[turn.char_start : turn.char_end] == turn.text
        assert [t.text[s.char_start : s.char_end] for s in turn.segments] == said
        assert all(line in turn.text for line in said)
    assert [s.start for turn in t.turns for s in turn.segments] == [float(i) for i in range(len(lines))]
    # each line's words are on the source line its segment names
    source = render(lines, fmt).split("\n")
    segments = [s for turn in t.turns for s in turn.segments]
    for seg, (_, said) in zip(segments, lines):
        assert (json.dumps(said) if fmt == "json" else said) in source[seg.line - 1]


WRAPPED = """\
Title: a hard-wrapped export

Interviewer: So when did it start?

Dana: It was, um, the winter. The old one kept
dying on me, and the cord went too.
Interviewer: Right.
Dana: So I looked.
"""


def test_every_segment_knows_its_source_line():
    t = parse(WRAPPED)
    assert [(turn.speaker, [s.line for s in turn.segments]) for turn in t.turns] == [
        ("Interviewer", [3]), ("Dana", [5, 6]), ("Interviewer", [7]), ("Dana", [8])]
    dana = t.turns[1]
    assert dana.line_at(t.text.index("dying on me")) == 6
    assert dana.line_at(t.text.index("the winter")) == 5
    assert dana.line_at(dana.char_end + 5) is None  # outside the turn


def test_subtitle_and_json_lines_are_where_the_words_are():
    vtt = "WEBVTT\n\nNOTE made by hand\n\nc1\n00:01.000 --> 00:02.000\n<v Ann>Hi there?\n\n" \
          "c2\n00:03.000 --> 00:04.000\n<v Bo>Well, it\nbroke and I bought one.\n"
    assert [s.line for turn in parse(vtt, "vtt").turns for s in turn.segments] == [7, 11]
    srt = "1\n00:00:01,000 --> 00:00:02,000\nAnn: Why?\n\n2\n00:00:03,000 --> 00:00:04,000\nBo: It broke.\n"
    assert [s.line for turn in parse(srt, "srt").turns for s in turn.segments] == [3, 7]
    # the same words again and again, one line escaped as \u00e9 and one not: each found in file order
    data = '[\n {"speaker": "Ann", "text": "Yeah."},\n {"speaker": "Bo", "text": "Caf\\u00e9 first."},\n' \
           ' {"speaker": "Ann", "text": "Yeah."},\n\n {"speaker": "Bo", "text": "Café again."},\n' \
           ' {"speaker": "Ann", "text": "Yeah."},\n {"speaker": "Ann", "text": "Yeah."},\n {"speaker": "Bo", "text": "No."}\n]'
    assert [s.line for turn in parse(data, "json").turns for s in turn.segments] == [2, 3, 4, 6, 7, 8, 9]


# --- Word documents -----------------------------------------------------------

def docx(paragraphs: list[str], table: list[str] = ()) -> bytes:
    """A .docx file as Word writes its body (word/document.xml): a paragraph per item, runs split
    mid-word as Word splits them, a tab as <w:tab/>, a line break ("\\n") as <w:br/>."""
    import zipfile
    from xml.sax.saxutils import escape

    def paragraph(text: str) -> str:
        runs = []
        for piece in text.split("\n"):
            half = len(piece) // 2
            cells = "<w:tab/>".join(f'<w:t xml:space="preserve">{escape(part)}</w:t>' for part in piece[:half].split("\t"))
            rest = "<w:tab/>".join(f'<w:t xml:space="preserve">{escape(part)}</w:t>' for part in piece[half:].split("\t"))
            runs.append(f"<w:r><w:rPr><w:b/></w:rPr>{cells}</w:r><w:r>{rest}</w:r>")
        return "<w:p><w:pPr/>" + "<w:r><w:br/></w:r>".join(runs) + "</w:p>"

    rows = "".join(f"<w:tr><w:tc>{paragraph(cell)}</w:tc></w:tr>" for cell in table)
    body = "".join(paragraph(p) for p in paragraphs) + (f"<w:tbl>{rows}</w:tbl>" if table else "")
    xml = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document xmlns:w='
           f'"http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body>{body}<w:sectPr/></w:body></w:document>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", xml)
    return buffer.getvalue()


def test_a_word_document_is_read_paragraph_by_paragraph(tmp_path):
    path = tmp_path / "call.docx"
    path.write_bytes(docx(["Switch interview\t3 March", "Interviewer: So how did it start?",
                           "Dana (00:00:07): It started in March.\nThen it got worse & louder.",
                           "Interviewer: And then?"], table=["Dana: I bought one that week."]))
    t = load_transcript(path)
    assert [(turn.speaker, turn.role.value) for turn in t.turns] == [
        ("Interviewer", "interviewer"), ("Dana", "interviewee"), ("Interviewer", "interviewer"), ("Dana", "interviewee")]
    assert t.turns[1].text == "It started in March. Then it got worse & louder." and t.turns[1].start == 7.0
    assert t.turns[3].text == "I bought one that week."
    assert [s.line for s in t.turns[1].segments] == [3, 4]  # lines of the document's text, as `read_text` gives it
    assert read_text(path).splitlines()[0::3] == ["Switch interview\t3 March", "Then it got worse & louder."]
    assert t.format == "docx" and t.source == "call.docx"
    assert_offsets_hold(t)


def test_a_word_document_without_a_body_names_the_file(tmp_path):
    import zipfile

    path = tmp_path / "notes.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("word/styles.xml", "<styles/>")
    with pytest.raises(TranscriptError, match=r"notes\.docx: not a Word \.docx file \(no word/document\.xml inside\)"):
        load_transcript(path)


# --- errors -------------------------------------------------------------------

BAD = [
    ("empty.txt", b"", "file is empty"),
    ("blank.txt", b"  \n\t\n", "file contains only whitespace"),
    ("recording.txt", b"Interviewer: hi\x00\x01\x02", "binary file (it contains NUL bytes)"),
    ("mixed.txt", b"Interviewer: caf\xc3\xa9?\nDana: o\x81i", "not valid UTF-8 or Windows-1252 (byte 0x81 on line 2)"),
    ("notes.docx", b"PK\x03\x04 word", "not a Word .docx file (it is not a zip archive)"),
    ("notes.doc", b"\xd0\xcf\x11\xe0", "unsupported file type '.doc'; supported: .txt, .md, .docx, .vtt, .srt, .json"),
    ("nohead.vtt", b"1\n00:00:01.000 --> 00:00:02.000\n<v A>hi</v>\n", "line 1: expected the 'WEBVTT' header"),
    ("timing.vtt", b"WEBVTT\n\n1\nblah\n<v A>hi</v>\n", "malformed WebVTT: line 4: expected a cue timing"),
    ("block.srt", b"1\n00:00:01,000 --> 00:00:02,000\nA: hi\n\n2\nsoon\nB: yo\n", "malformed SRT: line 6"),
    ("broken.json", b'{"segments": [\n  {"speaker": "A",}\n]}', "malformed JSON: line 2 column"),
    ("shape.json", b'{"turns": []}', "expected a list of segments, or an object with a 'segments'"),
    ("items.json", b'{"segments": [{"speaker": "A"}]}', "segment 1: expected an object with a 'text' string"),
    ("times.json", b'[{"speaker": "A", "text": "hi", "start": "soon"}]', "'start' must be seconds or 'hh:mm:ss'"),
    ("unlabelled.txt", b"just some words\nand then more words\n", "no speaker labels found; start each turn with"),
    ("unlabelled.json", b'[{"text": "hi"}]', "no speaker labels found; give each segment a 'speaker'"),
    ("askers.txt", b"Interviewer: hi?\nInterviewer: more?\n", "no interviewee speech found; check --interviewer"),
]


@pytest.mark.parametrize(("name", "data", "phrase"), BAD, ids=[name for name, _, _ in BAD])
def test_bad_files_raise_one_clear_line(tmp_path, name, data, phrase):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(TranscriptError) as caught:
        load_transcript(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and phrase in message
    assert "\n" not in message and caught.value.path == str(path)


def test_bad_vtt_timing_message_in_full(tmp_path):
    path = tmp_path / "x.vtt"
    path.write_text("WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.000\n<v A>hi</v>\n\n2\nblah\n")
    with pytest.raises(TranscriptError) as caught:
        load_transcript(path)
    expected = "malformed WebVTT: line 8: expected a cue timing 'hh:mm:ss.mmm --> hh:mm:ss.mmm', got 'blah'"
    assert str(caught.value) == f"{path}: {expected}"


def test_missing_file(tmp_path):
    with pytest.raises(TranscriptError, match="gone.txt: file not found"):
        load_transcript(tmp_path / "gone.txt")


def test_parse_transcript_errors_name_the_source():
    with pytest.raises(TranscriptError, match=r"^a\.json: malformed JSON: line 1 column 1"):
        parse_transcript("nope", "a.json", "json")


def test_utf8_bom_utf16_and_uppercase_suffix_are_read(tmp_path):
    text = "WEBVTT\n\n00:01.000 --> 00:02.000\n<v Interviewer>Hi?</v>\n\n00:02.000 --> 00:03.000\n<v Jo>Hí.</v>\n"
    (tmp_path / "bom.vtt").write_bytes(b"\xef\xbb\xbf" + text.encode())
    (tmp_path / "wide.VTT").write_bytes(text.encode("utf-16"))
    for name in ("bom.vtt", "wide.VTT"):
        t = load_transcript(tmp_path / name)
        assert (t.id, t.format, t.text) == (Path(name).stem, "vtt", "Interviewer: Hi?\nJo: Hí.\n")
    assert SUPPORTED_SUFFIXES == (".txt", ".md", ".docx", ".vtt", ".srt", ".json")


def test_a_windows_1252_file_is_read_when_it_is_not_utf8(tmp_path):
    # What Word and Notepad save as "ANSI" on Windows: curly quotes as 0x92-0x94, an e-acute as 0xe9.
    text = "Interviewer: What\u2019s the story?\r\nDana: I\u2019d had the \u201cold\u201d one since caf\u00e9 days.\r\n"
    (tmp_path / "ansi.txt").write_bytes(text.encode("cp1252"))
    t = load_transcript(tmp_path / "ansi.txt")
    assert t.turns[1].text == "I\u2019d had the \u201cold\u201d one since caf\u00e9 days."
    assert read_text(tmp_path / "ansi.txt") == text


# --- roles --------------------------------------------------------------------


@pytest.mark.parametrize("label", ["Interviewer", "Moderator", "UX Researcher", "Host 2", "Q", "I", "Int"])
def test_interviewer_labels(label):
    t = parse(f"{label}: Tell me about it.\nA: Well, it broke and I bought a new one.\n{label}: Then what.\n")
    assert who(t)[:2] == [(label, "interviewer"), ("A", "interviewee")]
    assert t.interviewers == [label]


def test_two_labelled_interviewers():
    t = parse(
        "Sam (Interviewer): Thanks for jumping on.\nKit (Interviewer): Hi Marcus.\n"
        "Marcus Lee: Hi both.\nSam (Interviewer): So tell us about work.\nMarcus Lee: I run sales ops.\n"
    )
    assert t.interviewers == ["Sam (Interviewer)", "Kit (Interviewer)"]
    assert {turn.speaker for turn in t.interviewee_turns()} == {"Marcus Lee"}


@pytest.mark.parametrize("asker", ["Speaker 1", "Speaker 2"])
def test_unlabelled_speakers_by_words_and_questions(asker):
    talker = "Speaker 2" if asker == "Speaker 1" else "Speaker 1"
    t = parse(
        f"{asker}: Okay, we're recording now.\n"
        f"{talker}: Great, I have been packing boxes all morning, the flat looks like a warehouse.\n"
        f"{asker}: When's the move?\n"
        f"{talker}: Five weeks on Saturday, and I still need the language certificate before then.\n"
        "Speaker 3: Sorry, I'll leave you to it.\n"
        f"{asker}: What did you try first?\n"
    )
    roles = {turn.speaker: turn.role for turn in t.turns}
    assert roles == {asker: Role.interviewer, talker: Role.interviewee, "Speaker 3": Role.other}
    assert t.interviewers == [asker]


TALKATIVE_INTERVIEWER = """\
Chris: So, so let's go back. You said you'd been thinking about it for a while, and I want to understand what "a while" means for you, because usually when people say that there's a moment where it goes from you know, something you think about in the shower, to something you actually put on the calendar. So where were you when it went from one to the other for you? What were you doing?
Dee: I was at my sister's. She had just got one, and I sat on it and thought, oh.
Chris: Okay, so you're sitting on your sister's couch, and you're kind of, you're feeling the thing you don't have. And I'm guessing that's not the first time you'd sat on a nice couch, right? So what was different that day? Was it that it was your sister, or was something else going on with your own couch at home that made you notice it?
Dee: Mine had a spring going. I'd put a cushion over it for about a year.
Chris: A cushion over a spring for a year. Okay. So you'd built a little workaround, and you were living with it, and then your sister's couch kind of showed you what you were putting up with. Is that fair? Tell me if I've got that wrong.
Dee: No, that's right. I felt a bit silly, honestly.
"""


def test_a_talkative_interviewer_is_not_taken_for_the_interviewee():
    lines = TALKATIVE_INTERVIEWER.splitlines()
    words = {who: sum(len(line.split()) for line in lines if line.startswith(who + ":")) for who in ("Chris", "Dee")}
    assert words["Chris"] > 3 * words["Dee"]  # the interviewer says the most words by far
    t = parse(TALKATIVE_INTERVIEWER)
    assert who(t)[:2] == [("Chris", "interviewer"), ("Dee", "interviewee")]
    assert {turn.speaker for turn in t.interviewee_turns()} == {"Dee"}


def test_explicit_interviewer_overrides_the_heuristic():
    text = "Sam (Host): Hi?\nSamantha: I talk the most here, many many words.\nJo: Why?\n"
    t = parse(text, interviewers=["jo"])
    assert who(t) == [("Sam (Host)", "interviewee"), ("Samantha", "interviewee"), ("Jo", "interviewer")]
    t = parse(text, interviewers=["sam"])  # whole words: "sam" is not "Samantha"
    assert t.interviewers == ["Sam (Host)"]


def test_interviewees_restriction_makes_the_rest_other():
    text = (
        "Interviewer: Take me back.\nGeorge Okafor: Years ago, the doctor said something.\n"
        "Ruth: He never listens.\nGeorge Okafor: That's true.\n"
    )
    assert who(parse(text))[2] == ("Ruth", "interviewee")
    t = parse(text, interviewees=["george okafor"])
    assert who(t)[2] == ("Ruth", "other")
    assert [turn.speaker for turn in t.interviewee_turns()] == ["George Okafor", "George Okafor"]


def test_a_name_that_matches_no_speaker_is_an_error():
    with pytest.raises(TranscriptError, match="no speaker matches the interviewer name.*'Bob'; speakers are: A, B"):
        parse("A: Hi?\nB: Hello.\n", interviewers=["Bob"])


def test_assign_roles_alone():
    turns = [("P1", "Why did you switch?"), ("P2", "The old bank closed its branch."), ("P1", "When?")]
    assert assign_roles(turns) == {"P1": Role.interviewer, "P2": Role.interviewee}
    assert assign_roles(turns, interviewees=["P1"]) == {"P1": Role.interviewee, "P2": Role.other}


# --- the project's own transcripts ---------------------------------------------

TRANSCRIPTS = sorted(
    path
    for folder in ("examples", "eval/gold/dev", "eval/gold/test")
    for path in (REPO / folder).glob("*")
    if path.suffix in SUPPORTED_SUFFIXES and not path.name.endswith(".gold.json")
)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.name for p in TRANSCRIPTS])
def test_project_transcripts_parse(path):
    t = load_transcript(path)
    assert t.interviewers and t.interviewee_turns()
    assert_offsets_hold(t)


def test_question_share_threshold_is_thirty_percent():
    turns = [("P2", "The old bank closed the branch, so I moved everything to the new one in spring.")]
    turns += [("P1", "Okay."), ("P1", "Right."), ("P1", "When?")]  # 1 in 3 asks
    turns += [("P3", "Hi."), ("P3", "Yes."), ("P3", "No."), ("P3", "Tea?")]  # 1 in 4 asks
    assert assign_roles(turns) == {"P2": Role.interviewee, "P1": Role.interviewer, "P3": Role.other}


def test_a_folder_yields_its_transcripts_and_names_what_it_cannot_code(tmp_path):
    from jtbd.coding.inputs import discover

    for name in ("a.txt", "deep/b.docx", "~$b.docx", ".notes.txt", "a.gold.json", "slides.pdf"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    files, problems, skipped = discover([tmp_path, tmp_path / "missing"])
    assert files == [tmp_path / "a.txt", tmp_path / "deep/b.docx"]  # not Word's "~$" lock file, nor hidden files
    assert problems == [(str(tmp_path / "missing"), "no such file or folder")]
    assert skipped == [(str(tmp_path / "slides.pdf"), "a document format that is not read; "
                                                      "save a transcript as .docx or .txt to code it")]
