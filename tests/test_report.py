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


def test_the_gate_prints_each_delta_against_the_baselines_interval(tmp_path, capsys):
    import argparse
    import json

    from jtbd.eval.cli import _gate
    from jtbd.eval.runner import write_json
    from jtbd.eval.score import compare_to_baseline

    baseline = {"force_f1_strict": 0.178, "kappa": 0.505, "grounding_rate": 0.968,
                "ci95": {"force_f1_strict": [0.104, 0.255], "kappa": [0.282, 0.71]}}
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    args = argparse.Namespace(baseline=str(path), update_baseline=False)
    current = {"force_f1_strict": 0.168, "kappa": 0.25, "grounding_rate": 0.968}
    assert _gate(args, current, compare_to_baseline, write_json) == 1  # kappa fell past the tolerance
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert lines["force_f1_strict"].endswith("inside the baseline's 95% interval: could be chance")
    assert lines["kappa"].endswith("outside the baseline's 95% interval")
    assert "interval" not in lines["grounding_rate"]  # unchanged, and no interval for it
