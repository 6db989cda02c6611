"""What `jtbd eval` and `jtbd gold check` do, as plain functions that the command line
(jtbd.cli) calls. No parsing of arguments here and no import of jtbd.cli: the command line is
the layer above, and hands in what `jtbd eval` shares with `jtbd code` (progress bar, summary)."""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)
out = Console()


@dataclass(frozen=True)
class EvalOptions:
    """`jtbd eval`'s own options (the settings come separately)."""

    gold: str | None = None  # a gold folder; None: the bundled set's `split`
    split: str = "all"
    out: str | None = None  # run folder; None: runs/eval-<date-time>
    report: str | None = None  # .md or .html
    scores: str | None = None  # None: scores.json in the run folder
    baseline: str | None = None
    update_baseline: bool = False


def cmd_gold_check(folder: Path) -> int:
    from jtbd.eval.gold import find_gold_files, validate_gold

    files = find_gold_files(folder)
    if not files:
        console.print(f"[red]error:[/red] no *.gold.json files under {escape(str(folder))}")
        return 2
    problems = [p for f in files for p in validate_gold(f)]
    for line in problems:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    from jtbd.eval.gold import ScoredAnyway

    anyway = sum(isinstance(p, ScoredAnyway) for p in problems)
    console.print(f"{len(files)} gold files, {len(problems)} problems"
                  + (f" ({anyway} of them still scored by jtbd eval: the span is certain)" if anyway else ""))
    return 1 if problems else 0


def cmd_eval(options: EvalOptions, settings: Any, progress: AbstractContextManager,
             print_summary: Callable[[dict[str, Any]], None]) -> int:
    """Code the gold set under `progress`, print the run's summary and the scores, write them
    (and the report), compare with the baseline. Exit status as `jtbd eval` documents it."""
    from jtbd.eval.report import html_report, markdown_report, transcript_section
    from jtbd.eval.runner import bundled_gold, evaluate, predicted_codes, write_json
    from jtbd.eval.score import coded_from_gold, compare_to_baseline

    gold_dir = Path(options.gold) if options.gold else bundled_gold(options.split)
    out_dir = Path(options.out or Path("runs") / ("eval-" + time.strftime("%Y%m%d-%H%M%S")))
    with progress:
        ev = evaluate(gold_dir, settings, out_dir)
    print_summary(ev.summary)
    if ev.summary["gold_problems"]:
        console.print(f"[red]gold problems[/red] (`jtbd gold check {escape(str(gold_dir))}` lists the same): a code with a "
                      f"problem is not scored; a file that cannot be read or parsed is not scored at all:")
        for line in ev.summary["gold_problems"]:
            console.print("  " + line, markup=False, highlight=False, soft_wrap=True)
    if ev.summary.get("gold_notes"):
        console.print("[yellow]gold notes[/yellow]: codes that break a rule of the format but whose span and "
                      "meaning are certain, scored anyway:")
        for line in ev.summary["gold_notes"]:
            console.print("  " + line, markup=False, highlight=False, soft_wrap=True)
    scores = ev.scores_dict()
    print_scores(scores)
    write_json(Path(options.scores) if options.scores else out_dir / "scores.json", scores)
    if options.report:
        sections = [transcript_section(g.transcript, [coded_from_gold(c) for c in g.codes],
                                       predicted_codes(ev.predicted[g.transcript.id]) if g.transcript.id in ev.predicted else [])
                    for g in ev.gold]
        text = markdown_report(scores, sections)
        Path(options.report).write_text(html_report(text) if options.report.endswith(".html") else text, encoding="utf-8")
        console.print(f"report written to {options.report}", markup=False)
    failed = ev.summary["transcripts_failed"] or ev.summary["gold_problems"]
    return _gate(options, scores, compare_to_baseline, write_json) or (1 if failed else 0)


def _gate(options: EvalOptions, scores: dict, compare: Callable, write_json: Callable) -> int:
    if not options.baseline:
        return 0
    baseline_path = Path(options.baseline)
    if options.update_baseline:
        write_json(baseline_path, scores)
        console.print(f"baseline updated: {baseline_path}", markup=False)
        return 0
    if not baseline_path.exists():
        console.print(f"[red]error:[/red] baseline {escape(str(baseline_path))} does not exist (use --update-baseline)")
        return 2
    baseline = json.loads(baseline_path.read_text(encoding="utf-8"))
    drops = compare(scores, baseline)
    ci = baseline.get("ci95") or {}
    for name in [k for k in scores if not isinstance(scores[k], (dict, list)) and k in baseline]:
        if isinstance(scores[name], float) and isinstance(baseline[name], float):
            line = f"{name:<18} {baseline[name]:.3f} -> {scores[name]:.3f} ({scores[name] - baseline[name]:+.3f})"
            if ci.get(name) and scores[name] != baseline[name]:
                low, high = ci[name]
                line += ("  inside the baseline's 95% interval: could be chance" if low <= scores[name] <= high
                         else "  outside the baseline's 95% interval")
            out.print(line, highlight=False, soft_wrap=True)
    if drops:
        console.print("[red]regression against the baseline:[/red]")
        for line in drops:
            console.print("  " + line, markup=False)
        return 1
    return 0


def print_scores(scores: dict) -> None:
    from rich.table import Table

    from jtbd.eval.report import INTERVAL_NOTE, fmt_interval, fmt_value

    base = scores.get("no_skill_all_push", {})
    ci = scores.get("ci95") or {}
    table = Table(title="jtbd eval: headline metrics")
    for col in ("metric", "this run", "95% interval", "no-skill (all push)"):
        table.add_column(col)
    for name, value in scores.items():
        if isinstance(value, (dict, list)) or name == "transcripts":
            continue
        table.add_row(name, fmt_value(value), fmt_interval(ci.get(name)), fmt_value(base.get(name)))
    out.print(table)
    if ci:
        out.print(INTERVAL_NOTE)
    rows = Table(title="strict P / R / F1 per kind and force type")
    for col in ("code", "P", "R", "F1", "tp", "fp", "fn"):
        rows.add_column(col)
    for name, prf in scores["strict"].items():
        rows.add_row(name, fmt_value(prf["precision"]), fmt_value(prf["recall"]), fmt_value(prf["f1"]),
                     str(prf["tp"]), str(prf["fp"]), str(prf["fn"]))
    out.print(rows)
