"""The eval report: every hit, miss and false positive shown in context, and the score tables."""

from __future__ import annotations

from jtbd.eval.report import html_report, markdown_report, transcript_section
from jtbd.eval.score import scores_to_dict

from test_score import make_transcript, pred, scores_of, span


def _case():
    t = make_transcript([
        ("Interviewer", "What happened?"),
        ("Ana", "The old tool crashed every week. I loved the new dashboard. My cat is grey."),
    ])
    start = t.turns[1].char_start
    crash = (start, start + len("The old tool crashed every week."))
    loved_at = t.text.index("I loved")
    loved = (loved_at, loved_at + len("I loved the new dashboard."))
    cat_at = t.text.index("My cat")
    gold = [span(*crash, force="push"), span(*loved, force="pull")]
    predicted = [pred(*crash, force="push"), pred(cat_at, cat_at + 14, force="anxiety")]
    return t, gold, predicted


def test_section_shows_hits_misses_and_false_positives_in_context():
    t, gold, predicted = _case()
    text = "\n".join(transcript_section(t, gold, predicted))
    assert "1 hits, 1 misses, 1 false positives" in text
    assert "HIT" in text and "MISS" in text and "FALSE POSITIVE" in text
    assert "The old tool crashed every week." in text and "My cat is grey" in text


def test_full_report_with_a_spurious_confusion_row_renders_as_markdown_and_html():
    t, gold, predicted = _case()
    scores = scores_to_dict(scores_of(gold, predicted, transcript=t))
    assert "spurious" in scores["confusion"]  # a predicted force with no gold under it
    md = markdown_report(scores, [transcript_section(t, gold, predicted)])
    assert "| spurious |" in md and "force_f1_strict" in md
    html = html_report(md)
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html.lower()
    assert "FALSE POSITIVE" in html
