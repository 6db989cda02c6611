"""The per-transcript Markdown a researcher opens first."""

from __future__ import annotations

from jtbd.coding.outputs import markdown_report
from jtbd.schemas.codebook import CodedTranscript

REJECTED = {"transcript": "t", "code": "quote", "quote": "x", "reason": "not found in an interviewee turn of this chunk"}


def test_the_markdown_header_counts_codes_and_rejected_quotes_in_words():
    assert "\n0 codes, 1 rejected quote.\n" in markdown_report(
        CodedTranscript(transcript="t", source="t.txt", codes=[], rejected=[REJECTED]))
    assert "\n0 codes, 2 rejected quotes.\n" in markdown_report(
        CodedTranscript(transcript="t", source="t.txt", codes=[], rejected=[REJECTED, REJECTED]))
    assert "## Forces of progress (0)" in markdown_report(CodedTranscript(transcript="t", source="t.txt", codes=[]))


def _code(kind: str, quote: str, at: int, transcript: str = "t", score: float | None = None, **fields):
    from jtbd.schemas.codebook import Force, Grounding, Provenance, Trigger

    grounding = Grounding(transcript=transcript, source=f"{transcript}.txt", speaker="Dana", turn_index=1,
                          char_start=at, char_end=at + len(quote), alignment="exact")
    provenance = Provenance(prompt_version="p", schema_version="s", model="m")
    model = {"force": Force, "trigger": Trigger}[kind]
    return model(quote=quote, score=score, grounding=grounding, provenance=provenance, **fields)


def test_the_report_draws_the_forces_diagram_and_tells_the_story_in_order():
    codes = [_code("force", "what if it breaks", 50, score=1.2, force="anxiety"),
             _code("trigger", "Then the old one died", 30, score=2.0),
             _code("force", "it was slow | and loud", 10, score=1.5, force="push"),
             _code("force", "the sheets were wrong again", 80, score=2.5, force="push"),
             _code("force", "and it was cheap", 99, score=1.1, force="pull")]
    report = markdown_report(CodedTranscript(transcript="t", source="t.txt", codes=codes))
    push_cell = report.split("| **push** (2)")[1].split(" | ")[0]
    # surest first; a '|' in a quote must not split the table's cell
    assert push_cell.index("the sheets were wrong again") < push_cell.index("it was slow \\| and loud")
    assert "**habit** (0)" in report and "**anxiety** (1)" in report and "\u201c\u2026and it was cheap\u201d" in report
    story = report.split("## The story in order (5)")[1]
    order = ["it was slow", "Then the old one died", "what if it breaks", "the sheets were", "and it was cheap"]
    assert [story.index(q) for q in order] == sorted(story.index(q) for q in order)
    assert '- **trigger** > "Then the old one died"' in story


def test_the_study_report_counts_each_interview_and_quotes_every_interview_before_a_second_from_any():
    from jtbd.coding.outputs import study_report

    a = [_code("force", f"push line {i} of a", 10 * i, "a", score=3.0 - i / 10, force="push") for i in range(3)]
    b = [_code("force", "the one push line of b", 5, "b", score=1.0, force="push"),
         _code("trigger", "the day it broke", 40, "b", score=1.0)]
    study = study_report([CodedTranscript(transcript="a", source="a.txt", codes=a),
                          CodedTranscript(transcript="b", source="b.vtt", codes=b)])
    assert "| a.txt | 3 | 0 | 0 | 0 | 0 | 0 | 0 |" in study and "| b.vtt | 1 | 0 | 0 | 0 | 1 | 0 | 0 |" in study
    push = study.split("**push** (4)")[1].split(" | ")[0]
    # b's only push line (score 1.0) comes before a's second-surest (2.9); a's third is left out
    assert [q in push for q in ("push line 0 of a", "the one push line of b", "push line 1 of a", "push line 2")] == [
        True, True, True, False]
    assert push.index("the one push line of b") < push.index("push line 1 of a")
    assert '"\u2026the day it broke" - Dana [b.txt]' in study.split("## Triggers (1)")[1]


# --- what the terminal shows: transcript text is printed as it is, never read as markup -----------

def _recorded(monkeypatch):
    """Point the CLI's consoles at one recording console (rich, as the CLI prints)."""
    from rich.console import Console

    import jtbd.cli
    import jtbd.eval.cli

    screen = Console(record=True, width=400)
    for module in (jtbd.cli, jtbd.eval.cli):
        monkeypatch.setattr(module, "out", screen)
        monkeypatch.setattr(module, "console", screen)
    return screen


def test_a_quote_card_keeps_bracketed_transcript_text(monkeypatch):
    from types import SimpleNamespace

    from jtbd.cli import quote_card

    screen = _recorded(monkeypatch)
    meta = {"label": "force.anxiety", "source": "call [final].txt", "speaker": "Tom [guest]", "start_seconds": 242.0,
            "source_line": 51, "context_before": "the milk bit [laughs],", "context_after": "[crosstalk] Right."}
    hit = SimpleNamespace(quote="it gets all gunked up [inaudible] and tastes off.", score=0.36, meta=meta)
    screen.print(quote_card(hit))
    shown = screen.export_text()
    for text in ("gunked up [inaudible] and", "call [final].txt line 51", "Tom [guest]", "bit [laughs],",
                 "[crosstalk] Right.", "00:04:02"):
        assert text in shown


def test_errors_summaries_and_gold_problems_keep_brackets(monkeypatch, tmp_path):
    from jtbd.cli import print_summary
    from jtbd.eval.cli import cmd_gold_check

    screen = _recorded(monkeypatch)
    summary = {"transcripts_ok": [], "transcripts_failed": [("in/[draft] call.vtt", "malformed WebVTT: line 3")],
               "chunks": 0, "cache_hits": 0, "codes": {}, "rejected_quotes": 0, "llm_calls": 0, "prompt_tokens": 0,
               "completion_tokens": 0, "llm_seconds": 0, "wall_seconds": 0, "model": "m", "prompt_version": "p",
               "schema_version": "s", "out_dir": "runs/[test]"}
    print_summary(summary)
    (tmp_path / "a.txt").write_text("Interviewer: Why?\nAnn: It broke, [laughs] so I looked.\n", encoding="utf-8")
    (tmp_path / "a.gold.json").write_text(
        '{"transcript": "a.txt", "codes": [{"kind": "force", "force": "push", "quote": "[laughs] so I lookd"}]}',
        encoding="utf-8")
    assert cmd_gold_check(tmp_path) == 1
    shown = screen.export_text()
    assert "in/[draft] call.vtt: malformed WebVTT: line 3" in shown and "runs/[test]" in shown
    assert "'[laughs] so I lookd'" in shown or '"[laughs] so I lookd"' in shown
    assert "1 gold files, 1 problems\n" in shown  # not found at all: left out, not scored anyway


def test_codes_csv_leads_a_formula_like_text_cell_with_a_quote_and_leaves_numbers_alone(tmp_path):
    import csv

    from jtbd.coding.outputs import write_run

    codes = [_code("force", '=HYPERLINK("http://evil.example","open me")', 10, score=-0.5, force="push"),
             _code("trigger", "-2 days before the audit it broke", 80, score=1.5),
             _code("force", "+1 for the new one", 130, force="pull"),
             _code("trigger", "@channel we are switching", 160, score=0.25)]
    write_run(tmp_path, [CodedTranscript(transcript="t", source="t.txt", codes=codes)], {"ok": 1})
    rows = list(csv.DictReader((tmp_path / "codes.csv").open(encoding="utf-8", newline="")))
    assert [r["quote"] for r in rows] == ['\'=HYPERLINK("http://evil.example","open me")',
                                          "'-2 days before the audit it broke", "'+1 for the new one",
                                          "'@channel we are switching"]
    assert [r["score"] for r in rows] == ["-0.5", "1.5", "", "0.25"]  # a number is a number
    assert [r["char_start"] for r in rows] == ["10", "80", "130", "160"] and rows[0]["speaker"] == "Dana"
