"""The coding pipeline as plain functions; flows/code_batch.py only schedules them with Prefect.

    identify the files -> plan a transcript's chunk jobs (each with its cache key)
    -> run one job (the model calls) -> finish a transcript (decide, merge, check)

Nothing here retries, caches or runs in parallel: that is the scheduler's. Each stage
returns what it made, so a script or a test reads a transcript's ratings from
`finish_transcript`'s result instead of reaching into the flow.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from jtbd.coding import backends
from jtbd.coding.chunk import Chunk, chunk_transcript
from jtbd.coding.decide import Decision, RatedSentence, decide, decision_settings
from jtbd.coding.extract import (
    ChunkResult, build_excerpt, code_chunk, decided_codes, keep_supported_jobs, quotable_codes,
)
from jtbd.coding.from_reviews import study_decision_path
from jtbd.coding.identity import IdCollision, SourceFile, StoredSource, transcript_ids
from jtbd.coding.learned import LearnedDecision
from jtbd.coding.merge import merge_codes
from jtbd.coding.quotable import QuotableLines, by_rules
from jtbd.coding.sentences import split_sentences
from jtbd.prompts import Strategy
from jtbd.schemas.codebook import CodedTranscript, Provenance
from jtbd.schemas.transcript import Transcript
from jtbd.settings import Settings

# What the in-process backend fixes in code rather than in settings (coding/backends.py):
# part of every local cache key, so changing one of them there is a cache miss here.
LOCAL_DECODING = {"repeat_penalty": 1.0, "temperature": "as each pass asks"}


@dataclass(frozen=True)
class ChunkJob:
    """One chunk of one transcript, with the key its result is cached under."""
    transcript: Transcript
    chunk: Chunk
    cache_key: str


@dataclass
class FinishedTranscript:
    coded: CodedTranscript
    rated: list[RatedSentence] = field(default_factory=list)  # what the decision read
    decisions: list[Decision] = field(default_factory=list)


def identify(sources: dict[str, SourceFile],
             stored: dict[str, StoredSource]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Each path's transcript id, and (path, problem) for a file no id tells apart."""
    pending, failed = dict(sources), []
    while True:
        try:
            by_source = transcript_ids(list(pending.values()), stored)
            return {p: by_source[s.path] for p, s in pending.items()}, failed
        except IdCollision as err:  # the file is named; the rest of the batch goes on
            path = next(p for p, s in pending.items() if s.path == err.path)
            failed.append((path, err.problem))
            del pending[path]


def cache_key(transcript: Transcript, chunk: Chunk, settings: Settings, strategy: Strategy,
              provenance: Provenance) -> str:
    """Everything that can change the model's answers for this chunk: the exact excerpts, what
    the model is asked, which model on which server with which decoding settings. Not how the
    ratings become codes: a new [decide] table re-decides from cached ratings without a call."""
    excerpts = [build_excerpt(transcript, chunk, p.response_model != "QuotedCodes").text for p in strategy.passes]
    asked = provenance.model_copy(update={"prompt_version": strategy.passes_version})
    payload = [transcript.id, chunk.char_start, chunk.text, excerpts, asked.model_dump(), settings.strategy,
               [p.max_tokens for p in strategy.passes], _answered_by(settings)]
    return "jtbd-chunk-" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _answered_by(settings: Settings) -> dict[str, Any]:
    """The model and everything about how it is run that can change an answer."""
    who: dict[str, Any] = {"backend": settings.backend, "model": backends.model_label(settings),
                           "llm_mode": settings.llm_mode, "seed": settings.seed, "max_retries": settings.max_retries}
    if settings.backend == "openai":
        who |= {"base_url": settings.base_url.rstrip("/"), "extra_body": _json_or_text(settings.extra_body)}
    else:
        who |= {"model_path": settings.model_path, "n_ctx": settings.n_ctx, "decoding": LOCAL_DECODING}
    return who


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text


def plan_transcript(transcript: Transcript, settings: Settings, strategy: Strategy,
                    provenance: Provenance) -> list[ChunkJob]:
    chunks = chunk_transcript(transcript, settings.chunk_tokens, settings.overlap_tokens)
    return [ChunkJob(transcript, c, cache_key(transcript, c, settings, strategy, provenance)) for c in chunks]


def run_job(job: ChunkJob, settings: Settings, strategy: Strategy, provenance: Provenance,
            notify: Callable[..., None]) -> ChunkResult:
    """The model calls for one chunk."""
    llm = backends.get_llm(settings)
    return code_chunk(llm, job.transcript, job.chunk, strategy, provenance, max_retries=settings.max_retries,
                      notify=notify)


def decision_for(strategy: Strategy, settings: Settings, own_study: bool = True) -> dict[str, Any]:
    """How this run turns ratings into codes (`_decision_for`) and picks quotable lines from them
    (`quotable_for`): one dict, checked before any model call."""
    decided, quotes = _decision_for(strategy, settings, own_study), quotable_for(strategy, settings)
    if quotes:
        decided["decision"] += f"; quotable lines {quotes['quotes']}"
    return {**decided, **quotes}


def quotable_for(strategy: Strategy, settings: Settings) -> dict[str, Any]:
    """Under "quotable" the strategy's fitted chooser of quotable lines (coding/quotable.py) when it was
    fitted on this model's ratings, else "rules"; under "quotes" a line saying which. Nothing for a
    strategy whose quotable lines the model copies itself."""
    if not strategy.quotable:
        return {}
    chooser = QuotableLines.from_json(strategy.quotable, "the quotable-lines file of prompts/")
    label = backends.model_label(settings)
    if chooser.applies_to(backends.model_sha256(settings), label):
        return {"quotable": chooser, "quotes": f"learned (bundled, fitted on {len(chooser.fitted_on)} coded interviews)"}
    return {"quotable": "rules", "quotes": f"by the rules: the bundled chooser was fitted on {chooser.model or 'another model'}'s "
                                           f"ratings, not {label}'s"}


def _decision_for(strategy: Strategy, settings: Settings, own_study: bool = True) -> dict[str, Any]:
    """How this run turns ratings into codes, checked before any model call: the [decide] rules'
    settings (decide.decision_settings), plus under "learned" the fitted decision (coding/learned.py)
    when settings.decision picks one that applies to this model, and under "decision" a line
    saying which it is. With --decision auto, a decision the study learned from its reviews
    (coding/from_reviews.py) comes first, unless `own_study` is False."""
    rules = decision_settings(strategy)
    if settings.decision == "handmade":
        return {**rules, "decision": "the [decide] rules (--decision handmade)"}
    own = study_decision_path(settings.data_dir, settings.study)
    if settings.decision == "auto" and own_study and own.is_file():
        learned = LearnedDecision.load(own)
        if learned.applies_to(backends.model_sha256(settings), backends.model_label(settings)):
            told = learned.reviews
            return {**rules, "learned": learned,
                    "decision": f"learned from study {settings.study}'s reviews ({told.get('answered', 0)} answered "
                                f"sentences in {told.get('interviews', 0)} interviews, over the {told.get('base', '')} "
                                f"decision; {own})"}
    if settings.decision == "auto":
        if not strategy.learned:
            return {**rules, "decision": f"the [decide] rules (strategy {strategy.name} ships no learned decision)"}
        learned, where = LearnedDecision.from_json(strategy.learned, "the learned decision of prompts/"), "bundled"
    else:
        learned, where = LearnedDecision.load(Path(settings.decision)), settings.decision
    label = backends.model_label(settings)
    if not learned.applies_to(backends.model_sha256(settings), label):
        said = (f"the [decide] rules: the {where} learned decision was fitted on {learned.model or 'another model'}'s "
                f"ratings, not {label}'s (jtbd fit --gold DIR fits one for this model)")
        if settings.decision != "auto":
            raise ValueError(said.replace("the [decide] rules: ", "", 1))
        return {**rules, "decision": said}
    fitted = f"fitted on {len(learned.fitted_on)} coded interviews" if learned.fitted_on else "fitted"
    return {**rules, "learned": learned, "decision": f"learned ({where}, {fitted})"}


def finish_transcript(transcript: Transcript, results: list[ChunkResult], provenance: Provenance,
                      decide_with: dict[str, Any], embed: Callable[..., Any] | None = None) -> FinishedTranscript:
    """A transcript's codes from its chunks' results: the ratings decided across the whole
    transcript, codes merged where chunks overlap, job stories checked against their evidence.
    `decide_with` is what `decision_for` returned; `embed` embeds sentences for a learned decision
    that reads them."""
    results = list(results)
    rated = [r for res in results for r in res.rated]
    learned = decide_with.get("learned")
    rules = {k: v for k, v in decide_with.items() if k not in ("learned", "decision", "quotable", "quotes")}
    if not rated:
        decisions = []
    elif learned is not None:
        decisions = learned.decide(rated, transcript.text, embed)
    else:
        decisions = decide(rated, text=transcript.text, **rules)
    if decisions:
        results.append(ChunkResult(f"{transcript.id}#decided", decided_codes(decisions, transcript, provenance)))
    chooser = decide_with.get("quotable")
    if rated and chooser is not None:
        chosen = by_rules(rated, transcript.text) if chooser == "rules" else chooser.choose(rated, transcript.text)
        results.append(ChunkResult(f"{transcript.id}#quotable", quotable_codes(chosen, transcript, provenance)))
    # Cached chunks were coded under the same questions, maybe under another [decide]: stamp this run's.
    codes = [c.model_copy(update={"provenance": provenance}) for c in merge_codes(c for r in results for c in r.codes)]
    # Chunks cached before statements were checked hold unchecked job stories: check them all here.
    codes, unsupported = keep_supported_jobs(codes, transcript)
    rejected = [r for res in results for r in res.rejected] + unsupported
    coded = CodedTranscript(transcript=transcript.id, source=transcript.source, codes=codes, rejected=rejected)
    return FinishedTranscript(coded, rated, decisions)


def batch_size(jobs: dict[str, list[ChunkJob]], is_cached: Callable[[str], bool]) -> dict[str, int]:
    """How much a batch asks of the model: interviewee sentences and chunks, in all and not cached."""
    sentences = new_sentences = uncached = 0
    for transcript_jobs in jobs.values():
        if not transcript_jobs:
            continue
        starts = [s.char_start for s in split_sentences(transcript_jobs[0].transcript)]
        sentences += len(starts)
        for job in transcript_jobs:
            if not is_cached(job.cache_key):
                uncached += 1
                new_sentences += sum(job.chunk.char_start <= at < job.chunk.char_end for at in starts)
    return {"sentences": sentences, "chunks": sum(map(len, jobs.values())), "uncached_chunks": uncached,
            "uncached_sentences": new_sentences}


def is_cached_in(results_path: Path) -> Callable[[str], bool]:
    return lambda key: (Path(results_path) / key).exists()
