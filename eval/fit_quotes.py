"""Fit the chooser of quotable lines (coding/quotable.py) on a gold folder, scored transcript by transcript.

As eval/fit.py does for the decision: every transcript is held out once, its quotable lines chosen by
a chooser fitted on the others, and the held-out lines of all transcripts are scored together with
the product's scorer (strict quote precision, recall, F1), beside the rules (`by_rules`) on the same
ratings. The chooser that ships is then fitted on the whole folder.

    python -m jtbd.eval.fit_quotes --gold eval/gold/dev --out prompts/quotable_lines.json
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from jtbd.coding.decide import RatedSentence
from jtbd.coding.learned import sentence_features
from jtbd.coding.quotable import GROUPS, QuotableLines, by_rules, quote_labels
from jtbd.eval.gold import GoldSet
from jtbd.eval.score import Coded, TranscriptCodes, coded_from_gold, score_codes

DEFAULT_L2 = 0.03


@dataclass
class FittedQuotes:
    chooser: QuotableLines  # fitted on every transcript
    held_out: dict[str, float | None]  # strict quote P / R / F1 and lines chosen, each transcript held out
    rules: dict[str, float | None]


def quote_spans(gold: GoldSet) -> list[tuple[int, int]]:
    return [(c.char_start, c.char_end) for c in gold.codes
            if c.kind == "quote" and c.char_start is not None and c.char_end is not None]


def _scored(gold: Sequence[GoldSet], chosen: dict[str, list[tuple[RatedSentence, float]]]) -> dict[str, float | None]:
    items = []
    for g in gold:
        text = g.transcript.text
        pred = [Coded("quote", None, r.char_start, r.char_end, text[r.char_start:r.char_end], source="pred")
                for r, _ in chosen[g.id]]
        items.append(TranscriptCodes([coded_from_gold(c) for c in g.codes], pred, 0, g.transcript))
    prf = score_codes(items).strict["quote"]
    return {"quote_precision": prf.precision, "quote_recall": prf.recall, "quote_f1_strict": prf.f1,
            "lines": float(sum(len(c) for c in chosen.values())), "gold_lines": float(prf.tp + prf.fn)}


def fit_quotes(gold: Sequence[GoldSet], ratings: dict[str, list[RatedSentence]], model_sha256: str,
               l2: float = DEFAULT_L2, model: str = "", groups: Sequence[str] = GROUPS,
               context_sentences: int = 3) -> FittedQuotes:
    gold = [g for g in gold if ratings.get(g.id)]
    if len(gold) < 2:
        raise ValueError("fitting needs at least two coded transcripts with ratings")
    data = {}
    for g in gold:
        sentences, x = sentence_features(ratings[g.id], g.transcript.text, groups, context_sentences)
        data[g.id] = (x, quote_labels(sentences, quote_spans(g)))
    held = {}
    for g in gold:
        chooser = QuotableLines.fit([data[o.id] for o in gold if o.id != g.id], l2, model_sha256, groups,
                                    context_sentences)
        held[g.id] = chooser.choose(ratings[g.id], g.transcript.text)
    chooser = QuotableLines.fit([data[g.id] for g in gold], l2, model_sha256, groups, context_sentences,
                                fitted_on=[g.id for g in gold], model=model)
    held_out = _scored(gold, held)
    chooser.held_out = {k: round(v, 4) for k, v in held_out.items() if v is not None}
    return FittedQuotes(chooser, held_out, _scored(gold, {g.id: by_rules(ratings[g.id], g.transcript.text) for g in gold}))


def main(argv: Sequence[str] | None = None) -> int:
    """Fit from the ratings the normal flow caches (it codes the folder; cached chunks are free)."""
    import tempfile

    from jtbd.coding.backends import model_label, model_sha256
    from jtbd.eval.runner import code_gold, load_gold_files
    from jtbd.settings import load_settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gold", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--l2", type=float, default=DEFAULT_L2)
    args = parser.parse_args(argv)
    settings = load_settings()
    gold, problems, _ = load_gold_files(args.gold)
    for line in problems:
        print(line)
    with tempfile.TemporaryDirectory() as run:
        summary = code_gold(gold, settings, Path(run))
    ratings = {g.id: summary.ratings.get(g.transcript.id, []) for g in gold}
    fitted = fit_quotes(gold, ratings, model_sha256(settings) or "", args.l2, model_label(settings))
    for name, value in fitted.held_out.items():
        print(f"{name}: held out {value if value is None else round(value, 3)}, "
              f"rules {fitted.rules[name] if fitted.rules[name] is None else round(fitted.rules[name], 3)}")
    fitted.chooser.save(args.out)
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
