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
