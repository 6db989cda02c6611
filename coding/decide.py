"""Turn per-sentence ratings into codes, one transcript at a time.

The `rate` strategy asks the model, for every interviewee sentence, which code
fits it, and keeps each label's log-probability as the first answer token
(`RatedSentence`). A small model's raw answer is biased: it says "pull" or
"none" for most sentences, whatever they say. What it does carry is a
*relative* signal (the sentences that really are pull get a higher pull
rating than the others), so the decision is made within the transcript:

    any(s)     = log P(some code) - log P(none)     (P(some code) = sum over the five codes)
    margin(s, L) = logprob(s, L) - logprob(s, none)    for each code L
    z          = (x - mean over the transcript's sentences) / std over them, for each of the above
    s is coded when z(any(s)) >= threshold, with the code L of highest z(margin(s, L))

Standardising removes the model's preference for one label (the "calibrate
before use" idea: Zhao et al., 2021): a sentence is coded because it stands
out from the rest of the interview, and gets the label it leans to more than
the other sentences do. Gating on one "any code" score, not on the best of
five, keeps the gate from favouring sentences that are a little high on
every label. The threshold is set in prompts/passes.toml and was tuned on the
dev split (eval/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from jtbd.schemas.codebook import RATED_LABELS

CODES = tuple(label for label in RATED_LABELS if label != "none")
MIN_STD = 0.5  # nats: below this spread a label's ratings say nothing; do not blow them up


@dataclass(frozen=True)
class RatedSentence:
    turn_index: int
    char_start: int
    char_end: int
    logprobs: dict[str, float]  # every label in RATED_LABELS


@dataclass(frozen=True)
class Decision:
    sentence: RatedSentence
    label: str  # a code in CODES
    score: float  # z(any(s)): how far the sentence stands out as coded at all


def unique_sentences(rated: Iterable[RatedSentence]) -> list[RatedSentence]:
    """One rating per sentence (overlapping chunks rate some twice: keep the first), in transcript order."""
    seen: dict[tuple[int, int], RatedSentence] = {}
    for r in rated:
        seen.setdefault((r.char_start, r.char_end), r)
    return sorted(seen.values(), key=lambda r: r.char_start)


def _standardise(x: np.ndarray) -> np.ndarray:
    """Column-wise z over the sentences (rows), the spread floored at MIN_STD."""
    return (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), MIN_STD)


def _margins(rated: list[RatedSentence], codes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    lp = np.array([[r.logprobs[label] for label in RATED_LABELS] for r in rated], dtype=np.float64)
    none = lp[:, RATED_LABELS.index("none")]
    chosen = lp[:, [RATED_LABELS.index(c) for c in codes]]
    return np.logaddexp.reduce(chosen, axis=1) - none, chosen - none[:, None]


def standardised_margins(rated: list[RatedSentence], codes: tuple[str, ...] = CODES) -> tuple[np.ndarray, np.ndarray]:
    """z(any(s)) for every sentence, and z(margin(s, L)) for every sentence (rows) and code (columns)."""
    if not rated:
        return np.zeros(0), np.zeros((0, len(codes)))
    any_code, per_code = _margins(rated, codes)
    return _standardise(any_code), _standardise(per_code)


def decide(rated: Iterable[RatedSentence], threshold: float, codes: tuple[str, ...] = CODES) -> list[Decision]:
    """The codes of one transcript's rated sentences (see the module docstring)."""
    sentences = unique_sentences(rated)
    z_any, z_code = standardised_margins(sentences, codes)
    decisions = []
    for gate, row, sentence in zip(z_any, z_code, sentences):
        if gate >= threshold:
            decisions.append(Decision(sentence, codes[int(np.argmax(row))], round(float(gate), 3)))
    return decisions


def decision_settings(strategy: Any) -> dict[str, Any]:
    """The strategy's [decide] table with defaults filled in."""
    table = dict(getattr(strategy, "decide", None) or {})
    threshold = float(table.get("threshold", 0.75))
    codes = tuple(table.get("codes", CODES))
    unknown = [c for c in codes if c not in CODES]
    if unknown:
        raise ValueError(f"prompts/passes.toml: unknown codes to decide: {', '.join(unknown)}")
    return {"threshold": threshold, "codes": codes}
