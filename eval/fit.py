"""Fit the learned decision (coding/learned.py) on a gold folder, scored transcript by transcript.

Every transcript of the folder is held out once: the decision is fitted on the others and codes
it, and the held-out codes of all transcripts are scored together with the product's scorer
(strict force F1, kappa), beside the hand-made decision on the same ratings and the no-skill
baseline (every interviewee sentence coded push). The decision that ships is then fitted on the
whole folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from jtbd.coding.decide import CODES, Decision, RatedSentence, decide
from jtbd.coding.learned import Embed, LearnedDecision, sentence_classes, sentence_features
from jtbd.eval.gold import GoldSet
from jtbd.eval.score import (
    ALL_FORCES, Coded, Scores, TranscriptCodes, all_push_baseline, coded_from_gold, score_codes,
)

DEFAULT_GROUPS = ("ratings", "length", "position", "context")
DEFAULT_L2 = 0.003


def gold_spans(gold: GoldSet) -> list[tuple[int, int, str]]:
    """The gold folder's codes as (start, end, class) for `sentence_classes`."""
    spans = []
    for code in gold.codes:
        if code.char_start is None or code.char_end is None:
            continue
        if code.kind == "force" and code.force in CODES:
            spans.append((code.char_start, code.char_end, code.force))
        elif code.kind in ("trigger", "job"):
            spans.append((code.char_start, code.char_end, code.kind))
    return spans


def decisions_as_coded(decisions: Sequence[Decision], text: str) -> list[Coded]:
    """Decided codes as the scorer reads them."""
    return [Coded("trigger" if d.label == "trigger" else "force", None if d.label == "trigger" else d.label,
                  d.char_start, d.char_end, text[d.char_start:d.char_end], source="pred") for d in decisions]


def _scores(gold: Sequence[GoldSet], predicted: dict[str, list[Coded]]) -> Scores:
    return score_codes([TranscriptCodes([coded_from_gold(c) for c in g.codes], predicted[g.id], 0, g.transcript)
                        for g in gold])


def headline(scores: Scores) -> dict[str, float | None]:
    prf = scores.strict[ALL_FORCES]
    return {"force_f1_strict": prf.f1, "force_precision": prf.precision, "force_recall": prf.recall,
            "kappa": scores.kappa, "trigger_f1_strict": scores.strict["trigger"].f1}


@dataclass
class Fitted:
    decision: LearnedDecision  # fitted on every transcript
    held_out: dict[str, float | None]  # each transcript coded by a decision fitted on the others
    handmade: dict[str, float | None]  # today's [decide] rules on the same ratings
    no_skill: dict[str, float | None]
    per_transcript: dict[str, tuple[float | None, float | None]]  # strict force F1: learned, hand-made


def fit_gold(gold: Sequence[GoldSet], ratings: dict[str, list[RatedSentence]], handmade: dict,
             model_sha256: str, groups: Sequence[str] = DEFAULT_GROUPS, l2: float = DEFAULT_L2,
             context_sentences: int = 3, embed: Embed | None = None, model: str = "") -> Fitted:
    """Fit on `gold` (each transcript's `ratings`, keyed by gold id) and score it held out.
    `handmade` is the hand-made decision's settings (decide.decision_settings), for comparison."""
    gold = [g for g in gold if ratings.get(g.id)]
    if len(gold) < 2:
        raise ValueError("fitting a decision needs at least two coded transcripts (one is held out at a time)")
    examples = {}
    for g in gold:
        sentences, features = sentence_features(ratings[g.id], g.transcript.text, groups, context_sentences, embed)
        examples[g.id] = (features, sentence_classes(sentences, gold_spans(g)))
    held_out, hand = {}, {}
    for g in gold:
        others = [examples[o.id] for o in gold if o.id != g.id]
        fitted = LearnedDecision.fit(others, groups, l2, model_sha256, context_sentences)
        held_out[g.id] = decisions_as_coded(fitted.decide(ratings[g.id], g.transcript.text, embed), g.transcript.text)
        hand[g.id] = decisions_as_coded(decide(ratings[g.id], text=g.transcript.text, **handmade), g.transcript.text)
    decision = LearnedDecision.fit(list(examples.values()), groups, l2, model_sha256, context_sentences,
                                   fitted_on=sorted(examples), model=model)
    scores = {name: headline(_scores(gold, predicted)) for name, predicted in
              (("held_out", held_out), ("handmade", hand),
               ("no_skill", {g.id: all_push_baseline(g.transcript) for g in gold}))}
    decision.held_out = {key: None if value is None else round(value, 4) for key, value in scores["held_out"].items()}
    per = {g.id: (headline(_scores([g], {g.id: held_out[g.id]}))["force_f1_strict"],
                  headline(_scores([g], {g.id: hand[g.id]}))["force_f1_strict"]) for g in gold}
    return Fitted(decision, scores["held_out"], scores["handmade"], scores["no_skill"], per)

