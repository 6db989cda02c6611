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
