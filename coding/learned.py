"""A decision learned from coded examples: P(code | sentence) from the ratings the model already gives.

The hand-made decision (coding/decide.py) turns the model's per-sentence ratings into codes with a
few weights tuned by hand on the dev split. This one learns the weights from coded interviews: a
regularised multinomial logistic regression gives every interviewee sentence the probability of
each class in CLASSES (the four forces, trigger, job evidence, none), from features that cost no
model call beyond today's rating:

- ``ratings``: the six label log-probabilities, the "any code" margin and each code's margin over
  "none" (raw, in nats, and standardised within the transcript as the hand-made decision does),
  and the model's own log P(code | coded);
- ``length``: the log word count, raw and standardised within the transcript;
- ``position``: where the sentence falls in the interview (0 at the start, 1 at the end) and in
  its turn;
- ``context``: the mean of the ``ratings`` features over the sentences up to `context_sentences`
  before and after it in the same turn (an answer keeps to the question it answers);
- ``minilm``: the sentence's MiniLM embedding (the embedder the store uses), when the fitted
  decision asks for it.

The decision then reads those probabilities as the hand-made one reads its scores: a sentence's
chance of being coded is P(push) + P(pull) + P(anxiety) + P(habit) + P(trigger); sentences are
taken in that order and the transcript gets the number k of codes that maximises the expected F1
under those chances (decide.expected_f1_count); each gets the code of highest probability.

The fitted parameters are a small JSON file (`LearnedDecision.save`), tied to the sha256 of the
model file whose ratings it was fitted on: ratings of another model mean something else, so with
another model the flow says so and decides as before (`applies_to`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jtbd.coding.decide import (
    CODES, MIN_STD, MIN_STD_WORDS, Decision, RatedSentence, expected_f1_count, tail_clause,
    turn_neighbours_mean, unique_sentences,
)
from jtbd.schemas.codebook import RATED_LABELS

CLASSES: tuple[str, ...] = (*CODES, "job", "none")
FEATURE_GROUPS = ("ratings", "length", "position", "context", "minilm")
FORMAT = "jtbd-learned-decision/1"

Embed = Callable[[Sequence[str]], Sequence[Sequence[float]]]


def _z(x: np.ndarray, floor: float) -> np.ndarray:
    return (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), floor)


def _rating_block(sentences: list[RatedSentence]) -> np.ndarray:
    lp = np.array([[s.logprobs[label] for label in RATED_LABELS] for s in sentences], dtype=np.float64)
    none = lp[:, RATED_LABELS.index("none")]
    codes = lp[:, [RATED_LABELS.index(c) for c in CODES]]
    any_code = np.logaddexp.reduce(codes, axis=1) - none
    margins = codes - none[:, None]
    conditional = codes - np.logaddexp.reduce(codes, axis=1, keepdims=True)
    return np.column_stack([lp, any_code, margins, conditional,
                            _z(any_code[:, None], MIN_STD), _z(margins, MIN_STD)])


def sentence_features(rated: Sequence[RatedSentence], text: str, groups: Sequence[str],
                      context_sentences: int = 3, embed: Embed | None = None) -> tuple[list[RatedSentence], np.ndarray]:
    """One transcript's sentences (one rating each, in order) and their feature rows."""
    unknown = sorted(set(groups) - set(FEATURE_GROUPS))
    if unknown:
        raise ValueError(f"unknown feature groups: {', '.join(unknown)} (known: {', '.join(FEATURE_GROUPS)})")
    sentences = unique_sentences(rated)
    n = len(sentences)
    if not n:
        return sentences, np.zeros((0, 0))
    blocks = []
    ratings = _rating_block(sentences)
    if "ratings" in groups:
        blocks.append(ratings)
    if "length" in groups:
        words = np.log([max(1, len(text[s.char_start:s.char_end].split())) for s in sentences])[:, None]
        blocks.append(np.column_stack([words, _z(words, MIN_STD_WORDS)]))
    if "position" in groups:
        in_interview = np.arange(n) / max(1, n - 1)
        in_turn = np.zeros(n)
        for i, s in enumerate(sentences):
            same = [j for j in range(n) if sentences[j].turn_index == s.turn_index]
            in_turn[i] = same.index(i) / max(1, len(same) - 1)
        blocks.append(np.column_stack([in_interview, in_turn]))
    if "context" in groups:
        blocks.append(turn_neighbours_mean(sentences, ratings, context_sentences))
    if "minilm" in groups:
        if embed is None:
            raise ValueError("this learned decision reads sentence embeddings: it needs the embedder")
        blocks.append(np.asarray(embed([text[s.char_start:s.char_end] for s in sentences]), dtype=np.float64))
    return sentences, np.column_stack(blocks)


def sentence_classes(sentences: Sequence[RatedSentence], spans: Sequence[tuple[int, int, str]]) -> np.ndarray:
    """The class (an index into CLASSES) of each sentence, from coded spans (start, end, class):
    the force or trigger overlapping it most, else job evidence when a job's evidence overlaps it,
    else none."""
    out = np.full(len(sentences), CLASSES.index("none"))
    for i, s in enumerate(sentences):
        best, shared_best = None, 0
        for start, end, cls in spans:
            shared = min(end, s.char_end) - max(start, s.char_start)
            if cls in CODES and shared > shared_best:
                best, shared_best = cls, shared
        if best is None and any(cls == "job" and min(end, s.char_end) > max(start, s.char_start)
                                for start, end, cls in spans):
            best = "job"
        if best is not None:
            out[i] = CLASSES.index(best)
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_multinomial(x: np.ndarray, y: np.ndarray, l2: float, classes: int = len(CLASSES),
                    iterations: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (features x classes) and intercepts minimising the mean cross-entropy plus
    l2 / 2 * |coefficients|^2 (the intercepts are not penalised), by L-BFGS."""
    n, d = x.shape
    onehot = np.eye(classes)[y]

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d * classes].reshape(d, classes), theta[d * classes:]
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        loss = -(onehot * logp).sum() / n + 0.5 * l2 * (w * w).sum()
        g = (p - onehot) / n
        return float(loss), np.concatenate([(x.T @ g + l2 * w).ravel(), g.sum(axis=0)])

    theta = _lbfgs(loss_grad, np.zeros(d * classes + classes), iterations)
    return theta[:d * classes].reshape(d, classes), theta[d * classes:]


def fit_multinomial_towards(x: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: np.ndarray,
                            strength: float, iterations: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients and intercepts minimising the summed cross-entropy plus strength / 2 * their
    squared distance from `coef` and `intercept` (a Gaussian prior centred on a fitted decision):
    with few examples the result stays near the prior, with many the examples decide."""
    n, d = x.shape
    classes = len(intercept)
    onehot = np.eye(classes)[y]
    prior = np.concatenate([np.asarray(coef, dtype=np.float64).ravel(), np.asarray(intercept, dtype=np.float64)])
    pull = strength / n  # the mean cross-entropy's scale: the same optimum, a better-conditioned search

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d * classes].reshape(d, classes), theta[d * classes:]
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        g = (np.exp(logp) - onehot) / n
        away = theta - prior
        loss = -(onehot * logp).sum() / n + 0.5 * pull * (away @ away)
        return float(loss), np.concatenate([(x.T @ g).ravel(), g.sum(axis=0)]) + pull * away

    theta = _lbfgs(loss_grad, prior.copy(), iterations)
    return theta[:d * classes].reshape(d, classes), theta[d * classes:]


def _lbfgs(f: Callable[[np.ndarray], tuple[float, np.ndarray]], x: np.ndarray, iterations: int,
           memory: int = 10, tol: float = 1e-7) -> np.ndarray:
    """Minimise a smooth convex f (value and gradient) with limited-memory BFGS and a backtracking
    (Armijo) line search."""
    value, grad = f(x)
    s_list: list[np.ndarray] = []
    y_list: list[np.ndarray] = []
    for _ in range(iterations):
        if np.abs(grad).max() < tol:
            break
        q = grad.copy()
        alphas = []
        for s, yv in reversed(list(zip(s_list, y_list))):
            a = s @ q / (yv @ s)
            alphas.append(a)
            q -= a * yv
        if s_list:
            q *= (s_list[-1] @ y_list[-1]) / (y_list[-1] @ y_list[-1])
        for (s, yv), a in zip(zip(s_list, y_list), reversed(alphas)):
            q += s * (a - yv @ q / (yv @ s))
        direction = -q
        slope = grad @ direction
        if slope >= 0:  # not a descent direction: restart from the gradient
            s_list.clear(), y_list.clear()
            direction, slope = -grad, -(grad @ grad)
        step = 1.0
        while True:
            candidate = x + step * direction
            new_value, new_grad = f(candidate)
            if new_value <= value + 1e-4 * step * slope or step < 1e-10:
                break
            step *= 0.5
        s, yv = candidate - x, new_grad - grad
        if yv @ s > 1e-12:
            s_list.append(s), y_list.append(yv)
            if len(s_list) > memory:
                s_list.pop(0), y_list.pop(0)
        converged = abs(value - new_value) < tol * max(1.0, abs(value))
        x, value, grad = candidate, new_value, new_grad
        if converged:
            break
    return x


@dataclass
class LearnedDecision:
    """The fitted decision, as saved: standardisation, coefficients and what they were fitted on."""

    groups: list[str]
    context_sentences: int
    mean: list[float]
    scale: list[float]
    coef: list[list[float]]  # features x classes
    intercept: list[float]
    l2: float
    model_sha256: str  # the model file whose ratings the features hold
    model: str = ""  # its name (a server serving that file names it so: the match when the bytes are not at hand)
    classes: list[str] = field(default_factory=lambda: list(CLASSES))
    tail_share: float = 0.5
    fitted_on: list[str] = field(default_factory=list)  # transcript ids
    sentences: int = 0
    held_out: dict = field(default_factory=dict)  # leave-one-transcript-out scores at fit time
    format: str = FORMAT
    reviews: dict = field(default_factory=dict)  # fitted from a study's reviews: what on (coding/from_reviews.py)

    @classmethod
    def fit(cls, examples: Sequence[tuple[np.ndarray, np.ndarray]], groups: Sequence[str], l2: float,
            model_sha256: str, context_sentences: int = 3, tail_share: float = 0.5,
            fitted_on: Sequence[str] = (), model: str = "") -> "LearnedDecision":
        """Fit on (feature rows, classes) of each training transcript."""
        x = np.vstack([f for f, _ in examples])
        y = np.concatenate([c for _, c in examples])
        mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
        coef, intercept = fit_multinomial((x - mean) / scale, y, l2)
        return cls(list(groups), context_sentences, mean.tolist(), scale.tolist(), coef.tolist(),
                   intercept.tolist(), l2, model_sha256, model, tail_share=tail_share, fitted_on=list(fitted_on),
                   sentences=len(y))

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """P(class) for each feature row (sentences x CLASSES)."""
        x = (features - np.asarray(self.mean)) / np.asarray(self.scale)
        return _softmax(x @ np.asarray(self.coef) + np.asarray(self.intercept))

    def decide(self, rated: Sequence[RatedSentence], text: str, embed: Embed | None = None) -> list[Decision]:
        """The codes of one transcript: the k sentences most likely coded (k by expected F1), each
        with its likeliest code; its score is the chance it is coded."""
        sentences, features = sentence_features(rated, text, self.groups, self.context_sentences, embed)
        if not sentences:
            return []
        p = self.probabilities(features)
        code_columns = [CLASSES.index(c) for c in CODES]
        chance = p[:, code_columns].sum(axis=1)
        order = np.argsort(-chance, kind="stable")
        coded = set(order[:expected_f1_count(chance, order)].tolist())
        decisions = []
        for i, sentence in enumerate(sentences):
            if i in coded:
                start = sentence.char_start + tail_clause(text[sentence.char_start:sentence.char_end], self.tail_share)
                label = CODES[int(np.argmax(p[i, code_columns]))]
                decisions.append(Decision(sentence, label, round(float(chance[i]), 3), start, sentence.char_end))
        return decisions

    def applies_to(self, model_sha256: str | None, model: str) -> bool:
        """Whether these ratings are the ones it was fitted on: the same model file, or, for a server
        (whose file is not at hand, `model_sha256` None), a model of the same name."""
        return model_sha256 == self.model_sha256 if model_sha256 else bool(model) and model == self.model

    def save(self, path: Path) -> None:
        data = asdict(self)
        data["mean"] = [round(v, 6) for v in self.mean]
        data["scale"] = [round(v, 6) for v in self.scale]
        data["coef"] = [[round(v, 6) for v in row] for row in self.coef]
        data["intercept"] = [round(v, 6) for v in self.intercept]
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "LearnedDecision":
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ValueError(f"{path}: cannot read the learned decision ({err.strerror or err})") from None
        return cls.from_json(text, str(path))

    @classmethod
    def from_json(cls, text: str, path: str) -> "LearnedDecision":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{path}: not a learned decision file ({err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a learned decision file (format {FORMAT!r} expected)")
        try:
            decision = cls(**data)
        except TypeError as err:
            raise ValueError(f"{path}: {err}") from None
        d = len(decision.mean)
        if (decision.classes != list(CLASSES) or len(decision.scale) != d or len(decision.coef) != d
                or any(len(row) != len(CLASSES) for row in decision.coef) or len(decision.intercept) != len(CLASSES)):
            raise ValueError(f"{path}: the coefficients do not match {len(CLASSES)} classes and {d} features")
        return decision

