"""Turn per-sentence ratings into codes, one transcript at a time.

The `rate` strategy asks the model, for every interviewee sentence, which code
fits it, and keeps each label's log-probability as the first answer token
(`RatedSentence`). A small model's raw answer is biased: it says "pull" or
"none" for most sentences, whatever they say. What it does carry is a
*relative* signal (the sentences that really are pull get a higher pull
rating than the others), so the decision is made within the transcript:

    any(s)       = log P(some code) - log P(none)   (P(some code) = sum over the five codes)
    margin(s, L) = logprob(s, L) - logprob(s, none)  for each code L
    words(s)     = log(number of words in s)
    z(x)         = (x - mean over the transcript's sentences) / std over them
    gate(s)      = (z(any(s)) + a * z(words(s))) / sqrt(1 + a^2)
    s is coded when gate(s) >= threshold (with `count_model`: when it is one of the k
        highest gates, below), with the code L of highest
        z(margin(s, L)) + w * mean of z(margin(s', L)) over its neighbours s'
        + b * log P(L | some code) + o(L)

Standardising removes the model's preference for one label (the "calibrate
before use" idea: Zhao et al., 2021): a sentence is coded because it stands
out from the rest of the interview, and gets the label it leans to more than
the other sentences do. Gating on one "any code" score, not on the best of
five, keeps the gate from favouring sentences that are a little high on
every label.

Length is the one feature that does not come from the model: "Yeah." and
"Right, right." are never coded however the model rates them, and on the dev
split the number of words ranks coded sentences better than the model's own
"any code" margin does (AUC 0.75 against 0.67). The gate weighs the two (a,
`length_weight`). The label adds a little of the raw conditional preference
(b, `label_weight`), which breaks near-ties between the standardised margins
in the model's favour. That preference carries the model's bias too: the 1.5B
model answers "anxiety" for half the forces it codes, where coders mark a
quarter of them anxiety, so a label can be given a fixed offset (o(L),
`label_offsets`, 0 for a label not named). The threshold, a, b, w and the
offsets are set in prompts/passes.toml and were tuned on the dev split
(eval/RESULTS.md).

A sentence's neighbours are the sentences up to k before and after it in the
same turn (`context_sentences`), and w is `context_weight`. An answer keeps to
the question it answers: a customer asked what went wrong with the old way
says several push sentences in a row, and a single sentence of them ("It was
the third time.") says little on its own. The neighbours lean the label, never
the gate: whether a sentence is coded is still its own rating and length.

How many sentences are coded can also follow the interview (`count_model`). The threshold
codes about the same share of every transcript's sentences, because z is relative to the
transcript; an interview in which more is said about the switch should get more codes. A small
logistic model, fitted on the dev split's gold codes, turns a sentence's absolute "any code"
margin and its log word count into the chance p(s) that a coder marks it:

    p(s) = 1 / (1 + exp(-(intercept + any_code * any(s) + log_words * log(words(s)))))

and the transcript gets the k codes that maximise the F1 expected under those chances
(coders mark about sum(p) sentences; the top k by gate hit about the sum of their p):

    k = argmax over k of (sum of p over the k sentences of highest gate) / (k + sum of p)

bounded by `count_range` times the number of sentences that reach the threshold, so that a
model the fit was not made on can at most halve or double the codes. The sentences coded are
still the k of highest gate; only how many changes. Choosing the cut-off that maximises the
expected F1 under calibrated chances is the decision-theoretic approach to F-measure of Lewis
(1995); see Nan et al. (2012), "Optimizing F-measure: a tale of two approaches".

The span of a code can be shorter than its sentence (c, `tail_share`). Coders
code the clause that carries the force, and in speech that is usually the last
one: "Most nights it got to half seven, and one of us would open the fridge
and just stand there." A coded sentence is therefore cut to its shortest tail
that starts at a clause boundary (after a comma, semicolon, colon, dash or
ellipsis) and still holds at least `tail_share` of the sentence's characters.
At 0.5 a reader who coded the whole sentence still finds the code (the tail
covers at least half of it), and one who coded the last clause finds it too
when that clause is at least half of the tail (a quarter of the sentence when
a boundary falls near its middle).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from jtbd.schemas.codebook import RATED_LABELS

CODES = tuple(label for label in RATED_LABELS if label != "none")
MIN_STD = 0.5  # nats: below this spread a label's ratings say nothing; do not blow them up
MIN_STD_WORDS = 0.1  # log words: a transcript of equal-length sentences gets no length signal
# Where a clause may begin inside a sentence: after , ; : a dash or an ellipsis (and an opening quote mark).
CLAUSE_BOUNDARY = re.compile(r"(?:[,;:]|\s[-\u2013\u2014]|\.\.\.|\u2026)\s+['\"\u2018\u201c]?")


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
    score: float  # gate(s): how far the sentence stands out as coded at all
    char_start: int  # the coded span: the sentence, or its tail clause (tail_share)
    char_end: int


def tail_clause(sentence: str, share: float) -> int:
    """Where the coded tail of `sentence` starts: the latest clause boundary that leaves at least
    `share` of its characters (0 = the whole sentence, also when no boundary qualifies)."""
    if share >= 1.0:
        return 0
    starts = [m.end() for m in CLAUSE_BOUNDARY.finditer(sentence) if len(sentence) - m.end() >= share * len(sentence)]
    return max(starts, default=0)


def unique_sentences(rated: Iterable[RatedSentence]) -> list[RatedSentence]:
    """One rating per sentence (overlapping chunks rate some twice: keep the first), in transcript order."""
    seen: dict[tuple[int, int], RatedSentence] = {}
    for r in rated:
        seen.setdefault((r.char_start, r.char_end), r)
    return sorted(seen.values(), key=lambda r: r.char_start)


def _standardise(x: np.ndarray, floor: float = MIN_STD) -> np.ndarray:
    """Column-wise z over the sentences (rows), the spread floored at `floor`."""
    return (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), floor)


def _margins(rated: list[RatedSentence], codes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    lp = np.array([[r.logprobs[label] for label in RATED_LABELS] for r in rated], dtype=np.float64)
    none = lp[:, RATED_LABELS.index("none")]
    chosen = lp[:, [RATED_LABELS.index(c) for c in codes]]
    return np.logaddexp.reduce(chosen, axis=1) - none, chosen - none[:, None]


def word_counts(rated: list[RatedSentence], text: str) -> np.ndarray:
    """Words in each sentence of `text` (at least one, so the log is defined)."""
    return np.array([max(1, len(text[r.char_start:r.char_end].split())) for r in rated], dtype=np.float64)


def standardised_margins(rated: list[RatedSentence], codes: tuple[str, ...] = CODES) -> tuple[np.ndarray, np.ndarray]:
    """z(any(s)) for every sentence, and z(margin(s, L)) for every sentence (rows) and code (columns)."""
    if not rated:
        return np.zeros(0), np.zeros((0, len(codes)))
    any_code, per_code = _margins(rated, codes)
    return _standardise(any_code), _standardise(per_code)


def expected_f1_count(chances: np.ndarray, order: np.ndarray) -> int:
    """The number k of sentences to code, taken in `order` (best first), that maximises the
    expected F1 when sentence i is a coder's code with chance `chances[i]`:
    (sum of the k chances taken) / (k + sum of all chances), the factor 2 left out."""
    if len(chances) == 0:
        return 0
    taken = np.cumsum(chances[order])
    ks = np.arange(1, len(chances) + 1)
    return int(ks[int(np.argmax(taken / (ks + chances.sum())))])


def coded_chances(any_code: np.ndarray, words: np.ndarray, model: dict[str, float]) -> np.ndarray:
    """p(s) of the module docstring: the chance a coder marks each sentence, from the absolute
    "any code" margin and the word count."""
    logit = model.get("intercept", 0.0) + model.get("any_code", 0.0) * any_code \
        + model.get("log_words", 0.0) * np.log(words)
    return _logistic(logit)


def _logistic(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # 1 / (1 + exp(-x)), without overflow for a large -x


def count_features(rated: list[RatedSentence], text: str, codes: tuple[str, ...] = CODES) -> tuple[np.ndarray, np.ndarray]:
    """The count model's inputs for each sentence: its "any code" margin (nats) and its word count."""
    return _margins(rated, codes)[0], word_counts(rated, text)


def fit_count_model(interviews: Iterable[tuple[list[RatedSentence], str, list[tuple[int, int]]]],
                    l2: float = 0.01, codes: tuple[str, ...] = CODES) -> dict[str, float]:
    """Fit `count_model` by logistic regression (Newton's method, an L2 penalty of `l2` on every
    coefficient): each interview is (its rated sentences, its text, the spans of its gold forces and
    triggers), and a sentence is 1 when it overlaps a gold span."""
    columns, marked = [], []
    for rated, text, spans in interviews:
        sentences = unique_sentences(rated)
        if not sentences:
            continue
        any_code, words = count_features(sentences, text, codes)
        columns.append(np.column_stack([np.ones(len(sentences)), any_code, np.log(words)]))
        marked.append([any(r.char_start < end and start < r.char_end for start, end in spans) for r in sentences])
    if not columns:
        raise ValueError("fit_count_model: no rated sentences")
    x, y = np.vstack(columns), np.concatenate(marked).astype(np.float64)
    beta = np.zeros(x.shape[1])
    for _ in range(100):
        p = _logistic(x @ beta)
        step = np.linalg.solve(x.T @ (x * (p * (1.0 - p))[:, None]) + l2 * np.eye(len(beta)), x.T @ (p - y) + l2 * beta)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return {"intercept": round(float(beta[0]), 3), "any_code": round(float(beta[1]), 3),
            "log_words": round(float(beta[2]), 3)}


def turn_neighbours_mean(sentences: list[RatedSentence], values: np.ndarray, k: int) -> np.ndarray:
    """For each sentence (row), the mean row of `values` over the sentences up to `k` before and
    after it in the same turn (itself left out); zeros for a sentence alone in its turn."""
    out = np.zeros_like(values)
    for i, sentence in enumerate(sentences):
        near = [j for j in range(max(0, i - k), min(len(sentences), i + k + 1))
                if j != i and sentences[j].turn_index == sentence.turn_index]
        if near:
            out[i] = values[near].mean(axis=0)
    return out


def decide(
    rated: Iterable[RatedSentence],
    threshold: float,
    codes: tuple[str, ...] = CODES,
    *,
    text: str | None = None,
    length_weight: float = 0.0,
    label_weight: float = 0.0,
    label_offsets: dict[str, float] | None = None,
    tail_share: float = 1.0,
    context_weight: float = 0.0,
    context_sentences: int = 0,
    count_model: dict[str, float] | None = None,
    count_range: tuple[float, float] = (0.5, 2.0),
) -> list[Decision]:
    """The codes of one transcript's rated sentences (see the module docstring).

    `text` is the transcript's text, which the sentences' offsets index; it is needed
    when `length_weight` is not zero or `tail_share` is below 1.
    """
    sentences = unique_sentences(rated)
    if not sentences:
        return []
    z_any, z_code = standardised_margins(sentences, codes)
    gate = z_any
    if (length_weight or tail_share < 1.0 or count_model) and text is None:
        raise ValueError("decide: length_weight, tail_share or count_model needs the transcript text")
    if length_weight:
        z_words = _standardise(np.log(word_counts(sentences, text)), MIN_STD_WORDS)
        gate = (z_any + length_weight * z_words) / np.sqrt(1.0 + length_weight**2)
    if context_weight and context_sentences:
        z_code = z_code + context_weight * turn_neighbours_mean(sentences, z_code, context_sentences)
    if label_weight:
        lp = np.array([[s.logprobs[c] for c in codes] for s in sentences], dtype=np.float64)
        z_code = z_code + label_weight * (lp - np.logaddexp.reduce(lp, axis=1, keepdims=True))
    if label_offsets:
        z_code = z_code + np.array([label_offsets.get(c, 0.0) for c in codes], dtype=np.float64)
    coded = gate >= threshold
    if count_model:
        order = np.argsort(-gate, kind="stable")
        chances = coded_chances(*count_features(sentences, text, codes), count_model)
        at_threshold = int(coded.sum())
        k = min(max(expected_f1_count(chances, order), int(np.floor(count_range[0] * at_threshold))),
                int(np.ceil(count_range[1] * at_threshold)))
        coded = np.zeros(len(sentences), dtype=bool)
        coded[order[:k]] = True
    decisions = []
    for g, row, sentence, chosen in zip(gate, z_code, sentences, coded):
        if chosen:
            start, end = sentence.char_start, sentence.char_end
            if text is not None:
                start += tail_clause(text[start:end], tail_share)
            decisions.append(Decision(sentence, codes[int(np.argmax(row))], round(float(g), 3), start, end))
    return decisions


def decision_settings(strategy: Any) -> dict[str, Any]:
    """The strategy's [decide] table with defaults filled in."""
    table = dict(getattr(strategy, "decide", None) or {})
    unknown_keys = sorted(set(table) - {"threshold", "codes", "length_weight", "label_weight", "label_offsets",
                                        "tail_share", "context_weight", "context_sentences", "count_model",
                                        "count_range"})
    if unknown_keys:
        raise ValueError(f"prompts/passes.toml: unknown [decide] settings: {', '.join(unknown_keys)}")
    codes = tuple(table.get("codes", CODES))
    unknown = [c for c in codes if c not in CODES]
    if unknown:
        raise ValueError(f"prompts/passes.toml: unknown codes to decide: {', '.join(unknown)}")
    offsets = table.get("label_offsets", {})
    if not isinstance(offsets, dict) or not all(isinstance(v, (int, float)) for v in offsets.values()):
        raise ValueError("prompts/passes.toml: [decide] label_offsets must be a table of code = number, "
                         f"e.g. {{ anxiety = -1.0 }}, not {offsets!r}")
    not_coded = sorted(set(offsets) - set(codes))
    if not_coded:
        raise ValueError(f"prompts/passes.toml: [decide] label_offsets for codes not decided: {', '.join(not_coded)}")
    tail_share = float(table.get("tail_share", 1.0))
    if not 0.0 < tail_share <= 1.0:
        raise ValueError(f"prompts/passes.toml: [decide] tail_share must be in (0, 1], not {tail_share}")
    context_sentences = table.get("context_sentences", 0)
    if not isinstance(context_sentences, int) or isinstance(context_sentences, bool) or context_sentences < 0:
        raise ValueError("prompts/passes.toml: [decide] context_sentences must be a whole number of sentences "
                         f"(0 or more), not {context_sentences!r}")
    count_model = table.get("count_model", {})
    if (not isinstance(count_model, dict) or set(count_model) - {"intercept", "any_code", "log_words"}
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in count_model.values())):
        raise ValueError("prompts/passes.toml: [decide] count_model must be a table of intercept, any_code and "
                         f"log_words = number, not {count_model!r}")
    count_range = table.get("count_range", [0.5, 2.0])
    if (not isinstance(count_range, list) or len(count_range) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in count_range)
            or not 0.0 <= count_range[0] <= 1.0 <= count_range[1]):
        raise ValueError("prompts/passes.toml: [decide] count_range must be [low, high] with "
                         f"0 <= low <= 1 <= high, not {count_range!r}")
    return {
        "threshold": float(table.get("threshold", 0.75)),
        "codes": codes,
        "length_weight": float(table.get("length_weight", 0.0)),
        "label_weight": float(table.get("label_weight", 0.0)),
        "label_offsets": {code: float(value) for code, value in sorted(offsets.items())},
        "tail_share": tail_share,
        "context_weight": float(table.get("context_weight", 0.0)),
        "context_sentences": context_sentences,
        "count_model": {key: float(value) for key, value in sorted(count_model.items())},
        "count_range": (float(count_range[0]), float(count_range[1])),
    }
