"""Quotable lines chosen from the ratings the model already gave: no model call, no generated words.

A quotable line is a line a researcher would put in a report: vivid, specific, emotional, in the
interviewee's own voice (eval/CODING_GUIDE.md, 4.6). The jobs pass used to ask the model to copy up
to three such lines per chunk; on the dev split that found 1 of 33 hand-coded quotable lines (strict
F1 0.03) and cost about a third of the coding time (eval/RESULTS.md, variant 26). Here a binary
logistic regression on the learned decision's features (coding/learned.py: the six label
log-probabilities and margins, the sentence's length, its place in the interview and in its turn,
its turn neighbours' ratings) gives each interviewee sentence the chance that a coder marks it as a
quotable line; the transcript gets the number of lines that maximises the expected F1 (as the
decision's count), at most `per_2000_words` lines per 2,000 interviewee words (the coding guide's
density is 4 to 7), each a whole sentence, best first.

The parameters are a small JSON file tied, as the learned decision is, to the model whose ratings
they were fitted on. With another model the lines come from a hand-made rule (`by_rules`): the
sentences that stand out most by the model's "any code" margin and their length, half the cap.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from jtbd.coding.decide import CODES, MIN_STD, MIN_STD_WORDS, RatedSentence, expected_f1_count, unique_sentences
from jtbd.coding.learned import fit_multinomial, sentence_features

FORMAT = "jtbd-quotable-lines/1"
GROUPS = ("ratings", "length", "position", "context")
PER_2000_WORDS = 7.0  # the coding guide's densest: 4 to 7 quotable lines per 2,000 words


def quote_labels(sentences: Sequence[RatedSentence], spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """1 for each sentence a coded quotable line (start, end) covers: they share at least half of
    the shorter of the two (a coder's line may be a clause of the sentence, or run over two)."""
    out = np.zeros(len(sentences), dtype=int)
    for i, s in enumerate(sentences):
        for start, end in spans:
            shared = min(end, s.char_end) - max(start, s.char_start)
            if shared > 0 and shared >= 0.5 * min(end - start, s.char_end - s.char_start):
                out[i] = 1
                break
    return out


def _cap(sentences: Sequence[RatedSentence], text: str, per_2000_words: float) -> int:
    words = sum(len(text[s.char_start:s.char_end].split()) for s in sentences)
    return max(1, int(np.ceil(per_2000_words * words / 2000)))


@dataclass
class QuotableLines:
    """The fitted chooser, as saved."""

    groups: list[str]
    context_sentences: int
    mean: list[float]
    scale: list[float]
    coef: list[float]  # one per feature: the log-odds of a quotable line
    intercept: float
    l2: float
    model_sha256: str
    model: str = ""
    per_2000_words: float = PER_2000_WORDS
    fitted_on: list[str] = field(default_factory=list)
    sentences: int = 0
    held_out: dict = field(default_factory=dict)
    format: str = FORMAT

    @classmethod
    def fit(cls, examples: Sequence[tuple[np.ndarray, np.ndarray]], l2: float, model_sha256: str,
            groups: Sequence[str] = GROUPS, context_sentences: int = 3, fitted_on: Sequence[str] = (),
            model: str = "") -> "QuotableLines":
        """Fit on (feature rows, 0/1 labels) of each training transcript."""
        x = np.vstack([f for f, _ in examples])
        y = np.concatenate([c for _, c in examples])
        mean, scale = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6)
        coef, intercept = fit_multinomial((x - mean) / scale, y, l2, classes=2)
        # two classes, softmax: only the difference of their columns matters
        return cls(list(groups), context_sentences, mean.tolist(), scale.tolist(), (coef[:, 1] - coef[:, 0]).tolist(),
                   float(intercept[1] - intercept[0]), l2, model_sha256, model, fitted_on=list(fitted_on),
                   sentences=len(y))

    def chances(self, features: np.ndarray) -> np.ndarray:
        x = (features - np.asarray(self.mean)) / np.asarray(self.scale)
        return 0.5 * (1.0 + np.tanh(0.5 * (x @ np.asarray(self.coef) + self.intercept)))

    def choose(self, rated: Sequence[RatedSentence], text: str) -> list[tuple[RatedSentence, float]]:
        """One transcript's quotable lines, best first, each with its chance."""
        sentences, features = sentence_features(rated, text, self.groups, self.context_sentences)
        if not sentences:
            return []
        p = self.chances(features)
        order = np.argsort(-p, kind="stable")
        k = min(expected_f1_count(p, order), _cap(sentences, text, self.per_2000_words))
        return [(sentences[i], round(float(p[i]), 3)) for i in order[:k]]

    def applies_to(self, model_sha256: str | None, model: str) -> bool:
        """As LearnedDecision.applies_to: the same model file, or a server's model of the same name."""
        return model_sha256 == self.model_sha256 if model_sha256 else bool(model) and model == self.model

    def save(self, path: Path) -> None:
        data = asdict(self)
        for name in ("mean", "scale", "coef"):
            data[name] = [round(v, 6) for v in data[name]]
        data["intercept"] = round(self.intercept, 6)
        path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "QuotableLines":
        return cls.from_json(path.read_text(encoding="utf-8"), str(path))

    @classmethod
    def from_json(cls, text: str, path: str) -> "QuotableLines":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not JSON ({err.msg}, line {err.lineno})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path}: not a quotable-lines file (format {FORMAT!r})")
        try:
            lines = cls(**data)
        except TypeError as err:
            raise ValueError(f"{path}: {err}") from None
        if not (len(lines.mean) == len(lines.scale) == len(lines.coef)):
            raise ValueError(f"{path}: mean, scale and coef must have one value per feature")
        return lines


def by_rules(rated: Sequence[RatedSentence], text: str, per_2000_words: float = PER_2000_WORDS / 2
             ) -> list[tuple[RatedSentence, float]]:
    """Quotable lines for a model no fitted chooser applies to: the sentences that stand out most by
    z of the model's "any code" margin plus z of the log word count, half the cap."""
    sentences = unique_sentences(rated)
    if not sentences:
        return []
    lp = np.array([[s.logprobs[c] for c in (*CODES, "none")] for s in sentences])
    margin = np.logaddexp.reduce(lp[:, :-1], axis=1) - lp[:, -1]
    words = np.log([max(1, len(text[s.char_start:s.char_end].split())) for s in sentences])
    score = (margin - margin.mean()) / max(margin.std(), MIN_STD) + (words - words.mean()) / max(words.std(), MIN_STD_WORDS)
    order = np.argsort(-score, kind="stable")
    k = _cap(sentences, text, per_2000_words)
    return [(sentences[i], round(float(score[i]), 3)) for i in order[:k]]
