"""Score predicted codes against the gold set. Pure functions, no I/O.

Every code, gold or predicted, becomes a `Coded` span: a kind, a force type
for forces, and character offsets into `Transcript.text`. Codes are matched
one-to-one within a transcript, in the spirit of SemEval-2013 task 9.1 and
nervaluate ("strict" vs "partial" with type):

* a candidate pair has the same kind and, for forces, the same force type;
* STRICT: substantial overlap -- the shared characters are at least half of
  the longer span (``overlap >= 0.5 * max(len(gold), len(pred))``). Two
  coders rarely cut a span at the same word, so exact boundaries would
  measure tokenisation rather than coding;
* LENIENT: at least one shared character (nervaluate's "partial"): the
  prediction points at the right passage, boundaries aside;
* assignment is greedy by descending overlap ratio (shared chars / longer
  span), so each gold code and each prediction is used at most once: two
  identical predictions for one gold code are one TP and one FP.

Undefined ratios: precision is None when there are no predictions, recall
None when there is no gold (0/0 says nothing, and a 0 would read as "tried
and failed"). F1 is ``2tp / (2tp + fp + fn)``: 0 whenever there is gold or a
prediction but no hit, None only when there is neither. Counts are always
kept.

Force-type agreement is measured apart from detection: gold and predicted
forces are paired by any overlap IGNORING type (largest overlap first), the
pairs fill a confusion matrix, and Cohen's kappa is taken over them
(`kappa`). `kappa_sentences` labels every interviewee sentence per coder
with the force of the span overlapping it most ("none" if no span does),
which also counts forces one coder saw and the other did not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np

from jtbd.coding.sentences import split_sentences
from jtbd.schemas.transcript import Transcript

if TYPE_CHECKING:
    from jtbd.eval.gold import GoldCode

KINDS = ("job", "trigger", "force", "quote")
FORCE_TYPES = ("push", "pull", "anxiety", "habit")
ALL_FORCES = "force (all)"
NONE = "none"  # the sentence label when no force span touches the sentence
SCHEMES = ("strict", "lenient")
STRICT_SHARE = 0.5

JOB_STORY = re.compile(r"^When\s+\S.*,\s*I want to\s+\S.*,\s*so I can\s+\S.*$", re.DOTALL)

HEADLINE = (
    "force_f1_strict", "force_f1_lenient", "kappa", "kappa_sentences", "grounding_rate",
    "recall_job", "recall_trigger", "recall_force", "recall_quote",
)
# Absolute drops tolerated before a run counts as a regression; the grounding
# rate is near 1.0 and stable, so a smaller drop already means something broke.
DEFAULT_TOLERANCE = {name: 0.03 for name in HEADLINE} | {"grounding_rate": 0.01}

Similarity = Callable[[str, str], float]


# --- spans ---------------------------------------------------------------------


@dataclass(frozen=True)
class Coded:
    """One code as a span of `Transcript.text`, gold or predicted."""

    kind: str
    force: str | None
    start: int
    end: int
    text: str
    statement: str | None = None
    dimension: str | None = None
    source: str = "gold"
    ref: Any = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return self.end - self.start


def coded_from_gold(code: GoldCode) -> Coded:
    """A gold code after `load_gold` aligned it."""
    if code.char_start is None or code.char_end is None:
        raise ValueError(f"gold code is not aligned: {code.quote!r}")
    return Coded(
        code.kind, code.force, code.char_start, code.char_end, code.quote,
        statement=code.statement, dimension=code.dimension, source="gold", ref=code,
    )


def coded_from_code(code: Any) -> Coded:
    """A stored code (`Force`, `Trigger`, `JobStory`, `Quote` from jtbd.schemas.codebook)."""
    force = getattr(code, "force", None)
    dimension = getattr(code, "dimension", None)
    return Coded(
        code.kind,
        force.value if force is not None else None,
        code.grounding.char_start,
        code.grounding.char_end,
        code.quote,
        statement=getattr(code, "statement", None),
        dimension=dimension.value if dimension is not None else None,
        source="pred",
        ref=code,
    )


def is_job_story(statement: str | None) -> bool:
    """'When ..., I want to ..., so I can ...' with every part filled in."""
    return bool(statement) and JOB_STORY.match(statement.strip()) is not None


# --- match schemes -------------------------------------------------------------


def overlap(a: Coded, b: Coded) -> int:
    """Shared characters of two spans."""
    return max(0, min(a.end, b.end) - max(a.start, b.start))


def overlap_ratio(a: Coded, b: Coded) -> float:
    """Shared characters over the longer span's length (1.0 = identical spans)."""
    return overlap(a, b) / max(len(a), len(b), 1)


def strict_hit(gold: Coded, pred: Coded) -> bool:
    """Substantial overlap: the shared characters are at least half of the longer span."""
    shared = overlap(gold, pred)
    return shared > 0 and shared >= STRICT_SHARE * max(len(gold), len(pred))


def lenient_hit(gold: Coded, pred: Coded) -> bool:
    """Any shared character."""
    return overlap(gold, pred) >= 1


HIT = {"strict": strict_hit, "lenient": lenient_hit}


def same_code(gold: Coded, pred: Coded) -> bool:
    """Same kind and, for forces, the same force type."""
    return gold.kind == pred.kind and (gold.kind != "force" or gold.force == pred.force)


def _greedy(candidates: list[tuple[float, int, int]]) -> list[tuple[int, int]]:
    """One-to-one pairs from (score, gold index, pred index), best score first."""
    pairs, used_gold, used_pred = [], set(), set()
    for _, g, p in sorted(candidates, key=lambda c: (-c[0], c[1], c[2])):
        if g not in used_gold and p not in used_pred:
            pairs.append((g, p))
            used_gold.add(g)
            used_pred.add(p)
    return pairs


def match(gold: Sequence[Coded], pred: Sequence[Coded], scheme: str = "strict") -> list[tuple[int, int]]:
    """(gold index, pred index) pairs of same-kind, same-type codes that hit under `scheme`."""
    hit = HIT[scheme]
    candidates = [
        (overlap_ratio(g, p), gi, pi)
        for gi, g in enumerate(gold) for pi, p in enumerate(pred)
        if same_code(g, p) and hit(g, p)
    ]
    return _greedy(candidates)


def match_forces_any_type(gold: Sequence[Coded], pred: Sequence[Coded]) -> list[tuple[int, int]]:
    """Pair gold and predicted forces by any overlap, ignoring type, largest overlap first."""
    candidates = [
        (float(overlap(g, p)), gi, pi)
        for gi, g in enumerate(gold) for pi, p in enumerate(pred)
        if g.kind == p.kind == "force" and overlap(g, p) > 0
    ]
    return _greedy(candidates)


@dataclass
class MatchReport:
    hits: list[tuple[Coded, Coded]]
    misses: list[Coded]
    false_positives: list[Coded]


def match_report(gold: Sequence[Coded], pred: Sequence[Coded], scheme: str = "strict") -> MatchReport:
    """Hits (gold, pred), missed gold codes and unmatched predictions of one transcript."""
    pairs = match(gold, pred, scheme)
    matched_gold = {g for g, _ in pairs}
    matched_pred = {p for _, p in pairs}
    return MatchReport(
        hits=[(gold[g], pred[p]) for g, p in pairs],
        misses=[g for i, g in enumerate(gold) if i not in matched_gold],
        false_positives=[p for i, p in enumerate(pred) if i not in matched_pred],
    )


# --- counts --------------------------------------------------------------------


@dataclass
class PRF:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float | None:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def add(self, other: PRF) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.fn += other.fn

    def as_dict(self) -> dict:
        return {
            "tp": self.tp, "fp": self.fp, "fn": self.fn,
            "precision": _round(self.precision), "recall": _round(self.recall), "f1": _round(self.f1),
        }


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _row_of(code: Coded) -> str:
    """Rows a code counts in besides its kind: its force type."""
    return code.force if code.kind == "force" and code.force in FORCE_TYPES else code.kind


def count_matches(gold: Sequence[Coded], pred: Sequence[Coded], scheme: str) -> dict[str, PRF]:
    """TP/FP/FN per kind and per force type for one transcript."""
    rows = {name: PRF() for name in KINDS + FORCE_TYPES}
    report = match_report(gold, pred, scheme)
    for g, _ in report.hits:
        _bump(rows, g, "tp")
    for g in report.misses:
        _bump(rows, g, "fn")
    for p in report.false_positives:
        _bump(rows, p, "fp")
    return rows


def _bump(rows: dict[str, PRF], code: Coded, attr: str) -> None:
    for name in {code.kind, _row_of(code)}:
        if name in rows:
            setattr(rows[name], attr, getattr(rows[name], attr) + 1)


def micro_forces(rows: dict[str, PRF]) -> PRF:
    """The four force types pooled: equals the `force` kind row by construction."""
    total = PRF()
    for name in FORCE_TYPES:
        total.add(rows[name])
    return total


# --- agreement -----------------------------------------------------------------


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of (coder A, coder B) labels: (po - pe) / (1 - pe).

    None when there are no pairs, or when both coders used one and the same
    category throughout (pe = 1: chance alone explains the agreement, 0/0).
    """
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    labels = {label for pair in pairs for label in pair}
    expected = sum(
        sum(a == k for a, _ in pairs) * sum(b == k for _, b in pairs) for k in labels
    ) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


def empty_confusion() -> dict[str, dict[str, int]]:
    """Rows gold type (+ "spurious"), columns predicted type (+ "missed")."""
    rows = {g: {p: 0 for p in FORCE_TYPES + ("missed",)} for g in FORCE_TYPES}
    rows["spurious"] = {p: 0 for p in FORCE_TYPES}
    return rows


def add_confusion(
    confusion: dict[str, dict[str, int]], gold: Sequence[Coded], pred: Sequence[Coded]
) -> list[tuple[str, str]]:
    """Fill `confusion` from one transcript; return its (gold type, pred type) pairs."""
    gold_forces = [g for g in gold if g.kind == "force"]
    pred_forces = [p for p in pred if p.kind == "force"]
    pairs = match_forces_any_type(gold_forces, pred_forces)
    for g, p in pairs:
        confusion[gold_forces[g].force][pred_forces[p].force] += 1
    for g in set(range(len(gold_forces))) - {g for g, _ in pairs}:
        confusion[gold_forces[g].force]["missed"] += 1
    for p in set(range(len(pred_forces))) - {p for _, p in pairs}:
        confusion["spurious"][pred_forces[p].force] += 1
    return [(gold_forces[g].force, pred_forces[p].force) for g, p in pairs]


def sentence_force(sentence_start: int, sentence_end: int, codes: Sequence[Coded]) -> str:
    """Force type of the force span overlapping the sentence most, else "none"."""
    probe = Coded("sentence", None, sentence_start, sentence_end, "")
    best, best_overlap = NONE, 0
    for code in sorted((c for c in codes if c.kind == "force"), key=lambda c: c.start):
        shared = overlap(probe, code)
        if shared > best_overlap:
            best, best_overlap = code.force, shared
    return best


def sentence_labels(transcript: Transcript, gold: Sequence[Coded], pred: Sequence[Coded]) -> list[tuple[str, str]]:
    """(gold label, pred label) for every interviewee sentence."""
    return [
        (sentence_force(s.char_start, s.char_end, gold), sentence_force(s.char_start, s.char_end, pred))
        for s in split_sentences(transcript)
    ]


# --- jobs ----------------------------------------------------------------------


def job_format_validity(pred: Iterable[Coded]) -> float | None:
    """Share of predicted job statements in the When / I want to / so I can form."""
    jobs = [p for p in pred if p.kind == "job"]
    return _ratio(sum(is_job_story(j.statement) for j in jobs), len(jobs))


def best_similarities(gold: Sequence[Coded], pred: Sequence[Coded], similarity: Similarity) -> list[float]:
    """For each gold job, its best similarity to a predicted job (0 if none was predicted)."""
    pred_statements = [p.statement for p in pred if p.kind == "job" and p.statement]
    return [
        max((similarity(g.statement, s) for s in pred_statements), default=0.0)
        for g in gold if g.kind == "job" and g.statement
    ]


# --- scores --------------------------------------------------------------------


class TranscriptCodes(NamedTuple):
    """One transcript's codes; `transcript` is needed only for `kappa_sentences`."""

    gold: Sequence[Coded]
    pred: Sequence[Coded]
    rejected: int = 0
    transcript: Transcript | None = None


@dataclass
class Scores:
    strict: dict[str, PRF]
    lenient: dict[str, PRF]
    confusion: dict[str, dict[str, int]]
    kappa: float | None
    kappa_sentences: float | None
    grounding_rate: float | None
    job_format_validity: float | None
    job_similarity: float | None
    transcripts: int


def score_codes(pairs_by_transcript: Iterable[Sequence], similarity: Similarity | None = None) -> Scores:
    """Micro-averaged scores over transcripts of (gold, pred, rejected[, transcript])."""
    items = [TranscriptCodes(*item) for item in pairs_by_transcript]
    confusion = empty_confusion()
    type_pairs = [pair for it in items for pair in add_confusion(confusion, it.gold, it.pred)]
    with_text = [it for it in items if it.transcript is not None]
    sentences = [pair for it in with_text for pair in sentence_labels(it.transcript, it.gold, it.pred)]
    return Scores(
        strict=_pooled(items, "strict"),
        lenient=_pooled(items, "lenient"),
        confusion=confusion,
        kappa=cohen_kappa(type_pairs),
        kappa_sentences=cohen_kappa(sentences) if with_text else None,
        grounding_rate=_grounding_rate(items),
        job_format_validity=job_format_validity(p for it in items for p in it.pred),
        job_similarity=_job_similarity(items, similarity),
        transcripts=len(items),
    )


def _pooled(items: Sequence[TranscriptCodes], scheme: str) -> dict[str, PRF]:
    rows = {name: PRF() for name in KINDS + FORCE_TYPES}
    for it in items:
        for name, prf in count_matches(it.gold, it.pred, scheme).items():
            rows[name].add(prf)
    rows[ALL_FORCES] = micro_forces(rows)
    return rows


def _grounding_rate(items: Sequence[TranscriptCodes]) -> float | None:
    """Grounded predictions over everything the model proposed (grounded + rejected)."""
    grounded = sum(len(it.pred) for it in items)
    return _ratio(grounded, grounded + sum(it.rejected for it in items))


def _job_similarity(items: Sequence[TranscriptCodes], similarity: Similarity | None) -> float | None:
    if similarity is None:
        return None
    values = [v for it in items for v in best_similarities(it.gold, it.pred, similarity)]
    return _ratio(sum(values), len(values))


def headline(scores: Scores) -> dict[str, float | None]:
    """The metrics the README reports and `compare_to_baseline` guards."""
    return {
        "force_f1_strict": scores.strict[ALL_FORCES].f1,
        "force_f1_lenient": scores.lenient[ALL_FORCES].f1,
        "kappa": scores.kappa,
        "kappa_sentences": scores.kappa_sentences,
        "grounding_rate": scores.grounding_rate,
        **{f"recall_{kind}": scores.strict[kind].recall for kind in KINDS},
    }


# --- uncertainty -----------------------------------------------------------------

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # fixed: the same codes always give the same interval, so CI and reports are reproducible


def _f1_interval(prf: PRF, resamples: int, seed: int) -> tuple[float, float] | None:
    """95% percentile interval of 2tp / (2tp + fp + fn) with the scored items resampled."""
    counts = [prf.tp, prf.fp, prf.fn]
    n = sum(counts)
    if not n:
        return None
    draws = np.random.default_rng(seed).multinomial(n, [c / n for c in counts], size=resamples)  # columns tp, fp, fn
    f1 = 2 * draws[:, 0] / (2 * draws[:, 0] + draws[:, 1] + draws[:, 2])  # denominator >= n > 0
    return _percentiles(f1)


def _kappa_interval(confusion: dict[str, dict[str, int]], resamples: int, seed: int) -> tuple[float, float] | None:
    """95% percentile interval of Cohen's kappa with the overlapping type pairs resampled."""
    cells = np.array([[confusion[g][p] for p in FORCE_TYPES] for g in FORCE_TYPES], dtype=float)
    n = int(cells.sum())
    if not n:
        return None
    draws = np.random.default_rng(seed).multinomial(n, cells.ravel() / n, size=resamples)
    draws = draws.reshape(resamples, len(FORCE_TYPES), len(FORCE_TYPES))  # resample, gold type, predicted type
    observed = np.trace(draws, axis1=1, axis2=2) / n
    expected = (draws.sum(axis=2) * draws.sum(axis=1)).sum(axis=1) / (n * n)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(expected < 1.0, (observed - expected) / (1.0 - expected), np.nan)
    kappa = kappa[~np.isnan(kappa)]  # a resample with one label throughout has no kappa (cohen_kappa: None)
    return _percentiles(kappa) if kappa.size else None


def _percentiles(values: Any) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def intervals(scores: Scores, resamples: int = BOOTSTRAP_RESAMPLES,
              seed: int = BOOTSTRAP_SEED) -> dict[str, tuple[float, float] | None]:
    """95% bootstrap intervals of strict and lenient force F1 and of kappa on overlapping spans.

    The scored items are resampled with replacement: for F1 each gold force (hit or missed) and
    each unmatched prediction, for kappa each overlapping (gold type, predicted type) pair. That
    treats the items as independent, which codes from the same interview are not, so the
    intervals are if anything too narrow. They say how far a score could move by chance at the
    gold set's size: a change inside them is not evidence that a prompt got better or worse.
    Each metric draws from its own generator of the same seed, so one metric's interval does not
    move when another's counts change.
    """
    return {
        "force_f1_strict": _f1_interval(scores.strict[ALL_FORCES], resamples, seed),
        "force_f1_lenient": _f1_interval(scores.lenient[ALL_FORCES], resamples, seed),
        "kappa": _kappa_interval(scores.confusion, resamples, seed),
    }


def scores_to_dict(scores: Scores) -> dict:
    """A stable JSON-able dict: headline metrics at the top, tables below, floats to 4 places."""
    return {
        **{name: _round(value) for name, value in headline(scores).items()},
        "ci95": {name: None if ci is None else [_round(ci[0]), _round(ci[1])]
                 for name, ci in intervals(scores).items()},
        "transcripts": scores.transcripts,
        "strict": {name: prf.as_dict() for name, prf in scores.strict.items()},
        "lenient": {name: prf.as_dict() for name, prf in scores.lenient.items()},
        "confusion": scores.confusion,
        "jobs": {
            "format_validity": _round(scores.job_format_validity),
            "statement_similarity": _round(scores.job_similarity),
        },
    }


# --- baselines and regressions ---------------------------------------------------


def all_sentences_baseline(transcript: Transcript, kind: str, force: str | None = None) -> list[Coded]:
    """Every interviewee sentence coded as `kind` (and `force`): a no-skill baseline."""
    return [
        Coded(kind, force, s.char_start, s.char_end, s.text, source="pred", ref=s)
        for s in split_sentences(transcript)
    ]


def all_push_baseline(transcript: Transcript) -> list[Coded]:
    """Every interviewee sentence a push: the baseline the README reports beside our scores."""
    return all_sentences_baseline(transcript, "force", "push")


def compare_to_baseline(current: dict, baseline: dict, tolerance: dict | None = None) -> list[str]:
    """Headline metrics that dropped by more than their tolerance, one line each."""
    limits = DEFAULT_TOLERANCE | (tolerance or {})
    lines = []
    for name in HEADLINE:
        before, after = baseline.get(name), current.get(name)
        if before is None:
            continue
        if after is None:
            lines.append(f"{name}: {_num(before)} -> None (missing, tolerance {_num(limits[name])})")
        elif before - after > limits[name] + 1e-9:  # 1e-9: float noise must not flip a tie
            lines.append(
                f"{name}: {_num(before)} -> {_num(after)} ({_num(after - before, '+')}, tolerance {_num(limits[name])})"
            )
    return lines


def _num(value: float, sign: str = "") -> str:
    """Two decimals, a third only when it carries information (0.985, not 0.98)."""
    text = f"{value:{sign}.3f}"
    return text[:-1] if text.endswith("0") else text
