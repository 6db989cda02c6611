"""The evaluation report: per transcript, every hit, miss and false positive in context.

Markdown for reading in a pull request, HTML (the same content) for a browser.
A researcher should see *why* a score moved: the gold code next to the
predicted one, with the words around the quote.
"""

from __future__ import annotations

import html
from typing import Any

from jtbd.eval.score import FORCE_TYPES, KINDS, Coded, match_report
from jtbd.schemas.transcript import Transcript

CONTEXT = 90


def _label(code: Coded) -> str:
    return f"{code.kind}.{code.force}" if code.force else code.kind


def in_context(code: Coded, transcript: Transcript) -> str:
    text = transcript.text
    before = text[max(0, code.start - CONTEXT):code.start].split("\n")[-1]
    after = text[code.end:code.end + CONTEXT].split("\n")[0]
    return f"...{before}**{text[code.start:code.end]}**{after}..."


def _prf(row: dict[str, Any]) -> str:
    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.2f}"
    return f"{f(row['precision'])} | {f(row['recall'])} | {f(row['f1'])} | {row['tp']} | {row['fp']} | {row['fn']}"


def headline_table(scores: dict[str, Any], baseline: dict[str, Any] | None = None) -> list[str]:
    names = [k for k, v in scores.items() if not isinstance(v, (dict, list)) and k != "transcripts"]
    ci = scores.get("ci95") or {}
    lines = ["| metric | this run | 95% interval | no-skill (all push) |", "|---|---|---|---|"]
    for name in names:
        base = baseline.get(name) if baseline else None
        lines.append(f"| {name} | {fmt_value(scores[name])} | {fmt_interval(ci.get(name))} | {fmt_value(base)} |")
    if ci:
        lines += ["", INTERVAL_NOTE]
    return lines


INTERVAL_NOTE = ("95% interval: a bootstrap over the scored codes (each gold force, hit or missed, and each unmatched "
                 "prediction; for kappa each overlapping pair). A change inside it can be chance at this gold set's size.")


def fmt_interval(ci: Any) -> str:
    return "-" if not ci else f"{ci[0]:.3f} - {ci[1]:.3f}"


def fmt_value(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def prf_tables(scores: dict[str, Any]) -> list[str]:
    lines = []
    for scheme in ("strict", "lenient"):
        lines += ["", f"### {scheme}", "", "| code | P | R | F1 | tp | fp | fn |", "|---|---|---|---|---|---|---|"]
        for name, row in scores[scheme].items():
            lines.append(f"| {name} | {_prf(row)} |")
    lines += ["", "### force types on overlapping spans (rows gold, columns predicted)", ""]
    # Rows differ: gold types have a "missed" column, the "spurious" row (no gold) does not.
    cols = list(dict.fromkeys(c for cells in scores["confusion"].values() for c in cells))
    lines += ["| gold \\ predicted | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for row, cells in scores["confusion"].items():
        lines.append(f"| {row} | " + " | ".join(str(cells.get(c, "")) for c in cols) + " |")
    return lines


def transcript_section(transcript: Transcript, gold: list[Coded], pred: list[Coded]) -> list[str]:
    report = match_report(gold, pred, "strict")
    lines = ["", f"## {transcript.source}", "",
             f"{len(report.hits)} hits, {len(report.misses)} misses, {len(report.false_positives)} false positives (strict)."]
    for kind in KINDS:
        hits = [(g, p) for g, p in report.hits if g.kind == kind]
        misses = [g for g in report.misses if g.kind == kind]
        fps = [p for p in report.false_positives if p.kind == kind]
        if not (hits or misses or fps):
            continue
        lines += ["", f"### {kind}", ""]
        lines += [f"- HIT {_label(g)}: {in_context(g, transcript)}" for g, _ in hits]
        lines += [f"- MISS {_label(g)}: {in_context(g, transcript)}" + _near(g, pred) for g in misses]
        lines += [f"- FALSE POSITIVE {_label(p)}: {in_context(p, transcript)}" for p in fps]
    return lines


def _near(gold: Coded, pred: list[Coded]) -> str:
    """Say when a miss overlaps a prediction of another type: the usual anxiety/habit confusion."""
    others = [p for p in pred if p.kind == gold.kind and min(p.end, gold.end) > max(p.start, gold.start)]
    return f" (predicted as {', '.join(sorted({_label(p) for p in others}))})" if others else ""


def markdown_report(scores: dict[str, Any], sections: list[list[str]]) -> str:
    lines = ["# jtbd eval report", "", f"Model: {scores.get('provenance', {}).get('model')}, prompt "
             f"{scores.get('provenance', {}).get('prompt_version')}, schema {scores.get('provenance', {}).get('schema_version')}.",
             "", *headline_table(scores, scores.get("no_skill_all_push")), *prf_tables(scores)]
    for section in sections:
        lines += section
    return "\n".join(lines) + "\n"


def html_report(markdown: str) -> str:
    """The Markdown report in a page: kept simple so it needs no template engine."""
    body = []
    for line in markdown.splitlines():
        escaped = html.escape(line).replace("**", "")
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line.lstrip('# '))}</h{level}>")
        elif line.startswith("- HIT"):
            body.append(f"<p style='color:#1a7f37'>{escaped[2:]}</p>")
        elif line.startswith("- MISS"):
            body.append(f"<p style='color:#b35900'>{escaped[2:]}</p>")
        elif line.startswith("- FALSE"):
            body.append(f"<p style='color:#c62828'>{escaped[2:]}</p>")
        elif line.startswith("|"):
            body.append(f"<pre style='margin:0'>{escaped}</pre>")
        else:
            body.append(f"<p>{escaped}</p>")
    return "<!doctype html><meta charset='utf-8'><title>jtbd eval</title>\n" + "\n".join(body)


__all__ = ["markdown_report", "html_report", "transcript_section", "FORCE_TYPES"]
