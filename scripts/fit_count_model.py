#!/usr/bin/env python3
"""Fit `count_model` in prompts/passes.toml ([strategies.rate.decide]) on a gold folder.

    python scripts/fit_count_model.py --split dev                 # the bundled dev split
    python scripts/fit_count_model.py --gold DIR                  # any folder in the gold format
    python scripts/fit_count_model.py --split dev --save-ratings ratings.json
    python scripts/fit_count_model.py --split dev --ratings ratings.json   # no LLM call

The count model gives each sentence the chance a coder marks it, from the model's "any code"
margin and the sentence's length (coding/decide.py); it is fitted to one model's ratings. After
changing the model (`--backend openai`, another GGUF) or the rating prompts, re-fit it on dev and
paste the printed line into passes.toml, or set `count_model = {}` to code by the threshold alone.

Without --ratings the folder is coded with the normal flow and the settings `jtbd` would use
(flags are not read here: set JTBD_* in the environment or a config file), so a folder already
coded by `jtbd eval` with the same settings costs no LLM call. Fitted on the six dev transcripts'
ratings of the default model, it prints the committed line (eval/RESULTS.md, variant 22).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import jtbd.environment  # noqa: F401  (offline defaults before prefect and chromadb load)
from jtbd.coding.decide import RatedSentence, fit_count_model
from jtbd.eval.runner import bundled_gold, code_gold, load_gold_files
from jtbd.settings import load_settings


def collect_ratings(gold, settings) -> dict[str, list[RatedSentence]]:
    """Code the gold transcripts with the normal flow and keep the ratings the decision read."""
    with tempfile.TemporaryDirectory() as out:
        summary = code_gold(gold, settings, Path(out))
    if summary.transcripts_failed:
        for path, reason in summary.transcripts_failed:
            print(f"{path}: {reason}", file=sys.stderr)
        raise SystemExit("some transcripts could not be coded; nothing fitted")
    return {g.id: summary.ratings.get(g.transcript.id, []) for g in gold}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--gold", type=Path, help="a folder in the gold format")
    where.add_argument("--split", default="dev", help="a bundled split: dev (default), test or all")
    parser.add_argument("--ratings", type=Path, help="fit on ratings saved by --save-ratings (no LLM call)")
    parser.add_argument("--save-ratings", type=Path, help="save the ratings the fit used, as JSON")
    parser.add_argument("--l2", type=float, default=0.01, help="L2 penalty on the coefficients (default 0.01)")
    args = parser.parse_args(argv)

    gold_dir = args.gold or bundled_gold(args.split)
    gold, problems, _ = load_gold_files(gold_dir)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not gold:
        raise SystemExit(f"no gold file under {gold_dir} can be scored")
    if args.ratings:
        saved = json.loads(args.ratings.read_text(encoding="utf-8"))
        missing = sorted(g.id for g in gold if g.id not in saved)
        if missing:
            raise SystemExit(f"{args.ratings}: no ratings for {', '.join(missing)}")
        ratings = {g.id: [RatedSentence(*row) for row in saved[g.id]] for g in gold}
    else:
        ratings = collect_ratings(gold, load_settings())
    if args.save_ratings:
        args.save_ratings.write_text(json.dumps(
            {key: [[r.turn_index, r.char_start, r.char_end, r.logprobs] for r in rated]
             for key, rated in ratings.items()}), encoding="utf-8")
    interviews = [(ratings[g.id], g.transcript.text,
                   [(c.char_start, c.char_end) for c in g.codes
                    if c.kind in ("force", "trigger") and c.char_start is not None])
                  for g in gold]
    model = fit_count_model(interviews, l2=args.l2)
    sentences = sum(len({(r.char_start, r.char_end) for r in rated}) for rated in ratings.values())
    print(f"# fitted on {len(gold)} transcripts, {sentences} rated sentences ({gold_dir})")
    print("count_model = { " + ", ".join(f"{key} = {value}" for key, value in model.items()) + " }")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
