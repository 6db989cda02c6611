"""Learning from reviews: a study's review decisions become examples for the study's own decision.

The workbench keeps every decision a researcher makes on the model's suggestions (coding/reviews.py).
Here they become training examples for the learned decision (coding/learned.py): interviewee
sentences, each with the ratings the model already gave it (the chunk cache) and a class read from
the codes a person's answer stands on (its latest accept, reject, relabel, respan or add, unless a
reset took it back):

- a force or trigger a person accepted or changed (relabelled, respanned): its class on the sentences
  its span overlaps (the code overlapping a sentence most, when two do, as for gold codes);
- a job story a person kept: "job" on its evidence sentences, where no kept force or trigger is;
- a force or trigger a person rejected: "none" on its sentences, where no kept code is;
- when the interview's review is complete (every force and trigger the model suggested in it has a
  person's answer): also the codes a person added, with their class, and every other sentence as
  "none".

Why only those. The model chose what the reviewer saw from the sentences' ratings, not from what they
are, so the answered sentences teach P(code | ratings) without bias where they lie. A sentence nobody
answered is not known to be "none" (the reviewer may not have read it). A code a person added was
chosen because it is a code: without the sentences the reviewer passed over beside it, it teaches
the decision to code more everywhere (simulated on dev, 10 answered suggestions an interview, prior
30: sentence-level F1 of the unreviewed suggestions 0.316 -> 0.289 with them counted, 0.307 without;
docs/how-it-works.md, "Learning from a study's reviews"). A complete
review is read as a coding of the whole interview: its reviewer went through every suggestion and
could add what the model missed, so what nobody coded is "none" and the added codes are balanced. A
rejected job story teaches nothing (it may be rejected for its statement, not its evidence), nor
does a quotable line (not one of the decision's classes).

The study's decision starts from the one the study codes with (the bundled decision, or a
`--decision FILE`): the fit pulls its weights towards that decision's (an L2 penalty on the distance,
PRIOR_STRENGTH, instead of towards zero), so a few examples move it a little and many further, and
below MIN_EXAMPLES answered sentences nothing is fitted. It keeps the base's features and their
standardisation, so it reads the same ratings. Its file (<data_dir>/studies/<study>/
learned_decision.json) holds weights, counts and the ids of the interviews it learned from, never a
participant's words; `jtbd forget` removes it with any of those interviews.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from pydantic import TypeAdapter

from jtbd.coding.decide import RatedSentence
from jtbd.coding.learned import (
    CLASSES, Embed, LearnedDecision, fit_multinomial_towards, sentence_classes, sentence_features,
)
from jtbd.schemas.codebook import Code, CodedTranscript

MIN_EXAMPLES = 30  # answered sentences before a study's decision is fitted at all
PRIOR_STRENGTH = 50.0  # the pull towards the base decision's weights (docs/how-it-works.md says how it was chosen)
STUDY_DECISION = "learned_decision.json"
ANSWERS = ("accept", "reject", "relabel", "respan", "add")  # a person's answer on a code; a note is not one
RATED_KINDS = ("force", "trigger")  # the kinds the decision codes

_CODE: TypeAdapter[Any] = TypeAdapter(Code)


def study_decision_path(data_dir: str | Path, study: str) -> Path:
    """Where a study's decision learned from its reviews lives."""
    return Path(data_dir).expanduser() / "studies" / study / STUDY_DECISION


# --- what a person decided ------------------------------------------------------------------------


def standing_answers(history: Iterable[Any]) -> dict[tuple[str, str], str]:
    """Per (transcript, code id), the answer a person's decision stands on: the latest accept, reject,
    relabel, respan or add, unless a reset took it back since (notes left aside)."""
    latest: dict[tuple[str, str], str] = {}
    for d in history:  # oldest first
        if d.action != "note":
            latest[(d.transcript, d.code_id)] = d.action
    return {key: action for key, action in latest.items() if action in ANSWERS}


def _kind(code: dict) -> str:
    return code.get("kind", "")


def _span(code: dict) -> tuple[int, int]:
    g = code.get("grounding") or {}
    return int(g.get("char_start", 0)), int(g.get("char_end", 0))


def _class(code: dict) -> str:
    return code.get("force", "") if _kind(code) == "force" else _kind(code)


def review_complete(reviewed: Sequence[Any], answers: dict[tuple[str, str], str], transcript: str) -> bool:
    """Every force and trigger of the interview has a person's answer (and there is at least one)."""
    mine = [r for r in reviewed if _kind(r.code) in RATED_KINDS]
    answered = [r for r in mine if (transcript, r.code.get("id", "")) in answers]
    return bool(answered) and len(answered) == len(mine)


@dataclass(frozen=True)
class Labelled:
    """One interview's examples: which sentences (indexes into its unique sentences) and their classes."""
    rows: np.ndarray
    classes: np.ndarray
    answered: int  # of them, sentences a person's answer covers (the rest: "none" of a complete review)
    complete: bool


def label_sentences(sentences: Sequence[RatedSentence], reviewed: Sequence[Any],
                    answers: dict[tuple[str, str], str], transcript: str) -> Labelled:
    """The examples one interview's reviews give (the rule in this module's docstring)."""
    complete = review_complete(reviewed, answers, transcript)
    kept, rejected = [], []
    for r in reviewed:
        action = answers.get((transcript, r.code.get("id", "")))
        if action is None or _kind(r.code) not in (*RATED_KINDS, "job") or (action == "add" and not complete):
            continue
        start, end = _span(r.code)
        if action != "reject":
            kept.append((start, end, _class(r.code)))
        elif _kind(r.code) in RATED_KINDS:
            rejected.append((start, end))
    by_kept = sentence_classes(sentences, kept)
    none = CLASSES.index("none")
    rows, classes, answered = [], [], 0
    for i, s in enumerate(sentences):
        covered = bool(by_kept[i] != none) or any(min(e, s.char_end) > max(b, s.char_start) for b, e in rejected)
        if covered or complete:
            rows.append(i)
            classes.append(int(by_kept[i]))
            answered += covered
    return Labelled(np.array(rows, dtype=int), np.array(classes, dtype=int), answered, complete)


# --- the fit --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InterviewReviews:
    """What one reviewed interview brings to the fit."""
    transcript: str  # its id
    text: str
    rated: Sequence[RatedSentence]  # the model's cached ratings
    reviewed: Sequence[Any]  # ReviewedCode (coding/reviews.py) of the interview
    answers: dict[tuple[str, str], str]  # standing_answers of the study's history


@dataclass(frozen=True)
class StudyFit:
    decision: LearnedDecision | None  # None: too few answered sentences, the base decision stands
    examples: int  # sentences
    answered: int  # of them, covered by a person's answer
    interviews: int  # interviews with examples
    complete: int  # of them, reviewed completely
    classes: dict[str, int]  # examples per class


def fit_from_reviews(base: LearnedDecision, interviews: Sequence[InterviewReviews],
                     strength: float = PRIOR_STRENGTH, minimum: int | None = None,
                     embed: Embed | None = None, earlier: LearnedDecision | None = None,
                     base_name: str = "") -> StudyFit:
    """The study's decision: `base` pulled towards what its reviews say. `earlier` is the study's
    previous fit, whose dates carry over (the workbench marks each re-decision)."""
    xs, ys, ids, answered, complete = [], [], [], 0, 0
    for item in interviews:
        sentences, features = sentence_features(item.rated, item.text, base.groups, base.context_sentences, embed)
        labelled = label_sentences(sentences, item.reviewed, item.answers, item.transcript)
        if not len(labelled.rows):
            continue
        xs.append(features[labelled.rows])
        ys.append(labelled.classes)
        ids.append(item.transcript)
        answered += labelled.answered
        complete += labelled.complete
    y = np.concatenate(ys) if ys else np.zeros(0, dtype=int)
    counts = {c: int((y == i).sum()) for i, c in enumerate(CLASSES) if (y == i).any()}
    fit = StudyFit(None, len(y), answered, len(ids), complete, counts)
    if answered < (MIN_EXAMPLES if minimum is None else minimum):
        return fit
    x = (np.vstack(xs) - np.asarray(base.mean)) / np.asarray(base.scale)
    coef, intercept = fit_multinomial_towards(x, y, np.asarray(base.coef), np.asarray(base.intercept), strength)
    fitted_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    history = list((earlier.reviews if earlier else {}).get("fits", []))
    reviews = {"base": base_name or base.model, "strength": strength, "examples": len(y), "answered": answered,
               "interviews": len(ids), "complete": complete, "classes": counts,
               "fits": history + [{"at": fitted_at, "answered": answered}]}
    decision = replace(base, coef=coef.tolist(), intercept=intercept.tolist(), fitted_on=sorted(ids),
                       sentences=len(y), held_out={}, reviews=reviews, l2=round(strength / len(y), 6))
    return replace(fit, decision=decision)


# --- a re-decision keeps what a person decided ----------------------------------------------------


def fixed_codes(reviewed: Sequence[Any], history: Iterable[Any], transcript: str) -> dict[str, dict]:
    """The codes of one interview a person's decision stands on (an answer, or a note), by id: a
    re-decision leaves them as they are. A code reset to the model's suggestion is not one."""
    latest: dict[str, str] = {}
    for d in history:  # oldest first; a note after an answer or a reset leaves it standing
        if d.transcript == transcript and (d.action != "note" or d.code_id not in latest):
            latest[d.code_id] = d.action
    return {r.code["id"]: r.code for r in reviewed
            if r.code.get("id") in latest and latest[r.code["id"]] != "reset"}


def keep_reviewed(coded: CodedTranscript, fixed: dict[str, dict], suggested: dict[str, dict],
                  complete: bool = False) -> CodedTranscript:
    """A re-decided interview's codes with every reviewed code left alone: the current suggestion of
    each code a person decided on stays as it is, and a new force or trigger on a span a person
    already decided is dropped (any new force or trigger, when the interview's review is complete:
    what its reviewer left uncoded counts as "none"), so a re-decision changes only what nobody
    reviewed."""
    decided = [span for code_id, code in fixed.items() if _kind(code) in RATED_KINDS
               for span in {_span(code), _span(suggested.get(code_id, code))}]

    def on_decided(code: Any) -> bool:
        g = code.grounding
        return code.kind in RATED_KINDS and (complete or any(min(e, g.char_end) > max(b, g.char_start)
                                                             for b, e in decided))

    new = [c for c in coded.codes if c.id not in fixed and not on_decided(c)]
    kept = [_CODE.validate_python(suggested[code_id]) for code_id in fixed if code_id in suggested]
    codes = sorted(new + kept, key=lambda c: (c.grounding.char_start, c.id))
    return coded.model_copy(update={"codes": codes})


def kept_reviewed(coded: CodedTranscript, reviews: Any, study: str) -> CodedTranscript:
    """keep_reviewed with what the review store (coding/reviews.py) holds of the interview now."""
    reviewed = reviews.reviewed(study, coded.transcript)
    history = reviews.history(study, coded.transcript)
    complete = review_complete(reviewed, standing_answers(history), coded.transcript)
    return keep_reviewed(coded, fixed_codes(reviewed, history, coded.transcript),
                         reviews.suggested(study, coded.transcript), complete)


def learned_from(path: Path) -> list[str]:
    """The interviews a study's decision file learned from (empty when there is none)."""
    if not path.is_file():
        return []
    try:
        return list(LearnedDecision.load(path).fitted_on)
    except ValueError:
        return []


def redecision_times(path: Path) -> list[datetime]:
    """When the study's decision was fitted from its reviews, each time (its file keeps them)."""
    if not path.is_file():
        return []
    try:
        fits = LearnedDecision.load(path).reviews.get("fits", [])
        return [datetime.fromisoformat(f["at"]) for f in fits if isinstance(f, dict) and "at" in f]
    except (ValueError, TypeError):
        return []
