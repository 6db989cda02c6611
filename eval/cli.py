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


def cmd_fit(gold_dir: Path, out_path: Path, settings: Any, progress: AbstractContextManager,
            print_summary: Callable[[dict[str, Any]], None], l2: float | None = None) -> int:
    """Code a gold folder (the cache makes a coded one free), fit the learned decision on it, print
    how it scores with each transcript held out beside the [decide] rules and the no-skill
    baseline, and write the fitted decision to `out_path`."""
    import tempfile

    from rich.table import Table

    from jtbd.coding.backends import model_label, model_sha256
    from jtbd.coding.decide import decision_settings
    from jtbd.eval.fit import DEFAULT_GROUPS, DEFAULT_L2, fit_gold
    from jtbd.eval.report import fmt_value
    from jtbd.eval.runner import code_gold, load_gold_files
    from jtbd.prompts import load_strategy

    gold, problems, _ = load_gold_files(gold_dir)
    for line in problems:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if len(gold) < 2:
        console.print(f"[red]error:[/red] {escape(str(gold_dir))}: a fit needs at least two gold files that can be "
                      f"scored ({len(gold)} found)")
        return 2
    rules = decision_settings(load_strategy(settings.strategy, settings.prompts_dir))
    with progress, tempfile.TemporaryDirectory() as run:
        summary = code_gold(gold, settings, Path(run))
    print_summary(summary.as_dict())
    ratings = {g.id: summary.ratings.get(g.transcript.id, []) for g in gold}
    fitted = fit_gold(gold, ratings, rules, model_sha256(settings) or "", DEFAULT_GROUPS,
                      DEFAULT_L2 if l2 is None else l2, model=model_label(settings))
    table = Table(title=f"jtbd fit: each of {len(ratings)} transcripts coded by a decision fitted on the others")
    for col in ("metric", "learned (held out)", "hand-made rules", "no-skill (all push)"):
        table.add_column(col)
    for name in fitted.held_out:
        table.add_row(name, fmt_value(fitted.held_out[name]), fmt_value(fitted.handmade[name]),
                      fmt_value(fitted.no_skill[name]))
    out.print(table)
    h, r, n = fitted.held_out, fitted.handmade, fitted.no_skill
    out.print(f"held out: strict force F1 {fmt_value(h['force_f1_strict'])} (hand-made rules "
              f"{fmt_value(r['force_f1_strict'])}, no-skill {fmt_value(n['force_f1_strict'])}), kappa "
              f"{fmt_value(h['kappa'])} (rules {fmt_value(r['kappa'])})", markup=False, soft_wrap=True)
    for tid, (learned, rules_f1) in fitted.per_transcript.items():
        out.print(f"{tid}: strict force F1 {fmt_value(learned)} learned, {fmt_value(rules_f1)} rules", markup=False)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fitted.decision.save(out_path)
    out.print(f"learned decision written to {out_path}: code with it by 'jtbd code --decision {out_path} ...'",
              markup=False, soft_wrap=True)
    return 1 if summary.transcripts_failed else 0
