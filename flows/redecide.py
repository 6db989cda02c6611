"""`jtbd redecide`: learn a study's decision from its reviews and decide its interviews again, from the
cached ratings, with no model call. Wiring only: the examples and the fit are coding/from_reviews.py's,
the re-decision is the code_batch flow's (`redecide=True`: cached chunks only, reviewed codes kept).

    the study's interviews and reviews (review store) + their cached ratings (result folder)
    -> fit_from_reviews (from the decision the study codes with) -> <data>/studies/<study>/learned_decision.json
    -> code_batch on the files they were coded from, cached only, keeping every reviewed code
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jtbd.coding import backends, pipeline
from jtbd.coding.decide import RatedSentence
from jtbd.coding.extract import ChunkResult
from jtbd.coding.from_reviews import InterviewReviews, StudyFit, fit_from_reviews, standing_answers, study_decision_path
from jtbd.coding.learned import LearnedDecision
from jtbd.coding.reviews import ReviewStore
from jtbd.flows.code_batch import BatchSummary, run_batch
from jtbd.prompts import Strategy, load_strategy
from jtbd.schemas.codebook import Provenance, schema_version
from jtbd.schemas.transcript import Role, Transcript
from jtbd.settings import Settings, with_changes


@dataclass
class Redecided:
    base: str  # the decision the study's starts from (pipeline.decision_for's line)
    fit: StudyFit | None  # None: the base is not a learned decision, nothing to learn into
    file: str  # the study's decision file, "" when there is none
    summary: BatchSummary
    uncached: list[str] = field(default_factory=list)  # reviewed interviews whose ratings are not all cached


def redecide_study(settings: Settings, out_dir: str) -> Redecided:
    strategy = load_strategy(settings.strategy, settings.prompts_dir)
    base = pipeline.decision_for(strategy, settings, own_study=False)  # a bad --decision fails here
    with ReviewStore.open(settings.review_db_url) as reviews:
        ids = reviews.transcript_ids(settings.study)
        if not ids:
            raise FileNotFoundError(f"study {settings.study!r} has no coded interviews in the review database "
                                    f"{reviews.where}: nothing to re-decide")
        history = reviews.history(settings.study)
        stored = {tid: (reviews.transcript(settings.study, tid), reviews.source_path(settings.study, tid),
                        reviews.reviewed(settings.study, tid)) for tid in ids}
    path = study_decision_path(settings.data_dir, settings.study)
    fit, uncached = None, []
    if base.get("learned") is not None:
        answers = standing_answers(history)
        interviews = []
        for tid, (transcript, _, reviewed) in stored.items():
            if transcript is None or not any(key[0] == tid for key in answers):
                continue
            rated = cached_ratings(transcript, settings, strategy)
            if rated is None:
                uncached.append(tid)
                continue
            interviews.append(InterviewReviews(tid, transcript.text, rated, reviewed, answers))
        fit = fit_from_reviews(base["learned"], interviews, earlier=_earlier(path),
                               base_name="bundled" if settings.decision == "auto" else settings.decision)
        if fit.decision is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fit.decision.save(path)
        elif path.exists():  # fitted on reviews since taken back: the base decides again
            path.unlink()
    learned_here = fit is not None and fit.decision is not None
    run_settings = with_changes(settings, decision=str(path)) if learned_here and settings.decision != "auto" \
        else settings
    sources = {source: (tid, t) for tid, (t, source, _) in stored.items() if source and t is not None}
    summary = run_batch(list(sources), run_settings, out_dir, roles={p: _roles(t) for p, (_, t) in sources.items()},
                        ids={p: tid for p, (tid, _) in sources.items()}, redecide=True)
    return Redecided(base["decision"], fit, str(path) if path.is_file() else "", summary, uncached)


def cached_ratings(transcript: Transcript, settings: Settings, strategy: Strategy) -> list[RatedSentence] | None:
    """The model's ratings of a transcript from the chunk cache (None when a chunk is not in it):
    the keys are the flow's own (pipeline.plan_transcript), so only a run with these settings hits."""
    provenance = Provenance(prompt_version=strategy.version, schema_version=schema_version(),
                            model=backends.model_label(settings))
    rated: list[RatedSentence] = []
    for job in pipeline.plan_transcript(transcript, settings, strategy, provenance):
        result = _cached(Path(settings.results_path) / job.cache_key)
        if result is None:
            return None
        rated += result.rated
    return rated


def _cached(path: Path) -> ChunkResult | None:
    from prefect.results import ResultRecord

    if not path.is_file():
        return None
    try:
        result: Any = ResultRecord.deserialize(path.read_bytes()).result
    except Exception:  # written by another version: as good as not cached
        return None
    return result if isinstance(result, ChunkResult) else None


def _earlier(path: Path) -> LearnedDecision | None:
    try:
        return LearnedDecision.load(path) if path.is_file() else None
    except ValueError:
        return None


def _roles(transcript: Transcript) -> tuple[list[str], list[str]]:
    """The speakers as the stored transcript has them, so the file parses as it was coded."""
    def named(role: Role) -> list[str]:
        return list(dict.fromkeys(t.speaker for t in transcript.turns if t.role is role))
    return named(Role.interviewer), named(Role.interviewee)
