"""The `code_batch` Prefect flow: wiring only, the work lives in jtbd.coding.pipeline.

    discover -> identify -> parse (task per transcript) -> plan chunk jobs -> code (task per
    chunk, cached, retried) -> finish (decide, merge) -> store in Chroma and the review store
    (per transcript, as soon as its chunks are done) -> write run folder

Both stores belong to the settings' study. A transcript is stored as a unit: its vectors are
computed first, then the review store's transaction is written, Chroma is written inside it, and
the transaction commits only after Chroma took the codes; a failure of either fails the
transcript in one line and leaves the review store as it was.

A chunk task's result is cached under its job's key (coding/pipeline.py `cache_key`: the exact
model input and everything about the model that can change an answer) under the data folder,
so a re-run of a coded batch makes no LLM call and an interrupted batch resumes where it
stopped. Only successful results are persisted: a failure is one line, never a pickled error.
"""

from __future__ import annotations

import jtbd.environment  # noqa: F401  (quiet, offline defaults before prefect loads)

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.serializers import PickleSerializer
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff
from pydantic import Field

from jtbd.coding import backends, pipeline, progress
from jtbd.coding.decide import RatedSentence
from jtbd.coding.embed import embedder_for
from jtbd.coding.extract import ChunkResult, context_of
from jtbd.coding.from_reviews import kept_reviewed
from jtbd.coding.identity import SourceFile, source_file
from jtbd.coding.inputs import discover
from jtbd.coding.outputs import write_run
from jtbd.coding.parse import load_transcript, speaker_roles
from jtbd.coding.retry import describe_error, is_transient
from jtbd.coding.reviews import ReviewStore
from jtbd.coding.store import CodeStore, open_collection
from jtbd.prompts import Strategy, load_strategy
from jtbd.schemas.codebook import KINDS, CodedTranscript, Provenance, schema_version
from jtbd.schemas.transcript import Transcript
from jtbd.settings import Settings


@dataclass
class BatchSummary:
    transcripts_ok: list[str] = field(default_factory=list)
    transcripts_failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # files that are not transcripts
    transcript_ids: dict[str, str] = field(default_factory=dict)  # path -> id
    speakers: dict[str, list[tuple[str, str, int]]] = field(default_factory=dict)  # path -> (label, role, turns)
    chunks: int = 0
    cache_hits: int = 0
    codes: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    rejected_quotes: int = 0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_seconds: float = 0.0
    wall_seconds: float = 0.0
    out_dir: str = ""
    prompt_version: str = ""
    schema_version: str = ""
    model: str = ""
    decision: str = ""  # how ratings became codes (pipeline.decision_for)
    resubmitted: list[str] = field(default_factory=list)  # --pool: paths whose run crashed and was submitted again
    followed: list[str] = field(default_factory=list)  # --pool: paths whose run an earlier submission left going
    # What each transcript's decision read, for scripts that fit it (not written to summary.json).
    ratings: dict[str, list[RatedSentence]] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "ratings"}


def chunk_cache_key(_context: Any, parameters: dict[str, Any]) -> str:
    return parameters["job"].cache_key


def retry_transient(_task: Any, _run: Any, state: Any) -> bool:
    exc = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return bool(getattr(exc, "transient", False)) or is_transient(exc)


class TaskFailed(Exception):
    """What a task raises in place of its own error: the error as one line (`problem`, which the
    run's summary says), kept in this process. Prefect writes a failed task's exception into its
    database as the state's message, where `jtbd forget` cannot reach it, and an error can quote a
    participant (a malformed line of a transcript, a speaker's name, a stored code in a database
    error) or, from the model client, carry the API key and the prompt. So what Prefect sees of it
    names the kind of error only."""

    def __init__(self, problem: str, transient: bool = False, kind: str = "error") -> None:
        super().__init__(problem, transient, kind)
        self.problem, self.transient, self.kind = problem, transient, kind

    def __str__(self) -> str:
        return f"{self.kind} (what it says is in the run's summary, not here)"


class ChunkFailed(TaskFailed):
    """A chunk that could not be coded."""


def _failed(exc: Exception, kind: type[TaskFailed] = TaskFailed) -> TaskFailed:
    return kind(describe_error(exc), is_transient(exc), type(exc).__name__)


class SuccessOnlySerializer(PickleSerializer):
    """Persists what a chunk task returns (the cache) and refuses to persist a failure: Prefect
    then logs that the failure was not written and goes on, so no failure record reaches disk."""

    type: str = Field(default="jtbd-success-pickle", frozen=True)

    def dumps(self, obj: Any) -> bytes:
        if isinstance(obj, BaseException):
            raise TypeError("jtbd-coder persists only successful chunk results")
        return super().dumps(obj)


@task(name="parse-transcript", persist_result=False)  # a transcript is never persisted
def parse_task(path: str, transcript_id: str, interviewers: list[str], interviewees: list[str],
               max_bytes: int) -> Transcript:
    try:
        transcript = load_transcript(Path(path), interviewers=interviewers, interviewees=interviewees,
                                     max_bytes=max_bytes)
    except Exception as exc:
        raise _failed(exc) from exc
    return transcript.model_copy(update={"id": transcript_id})


RETRY_DELAYS = exponential_backoff(backoff_factor=2)  # 2, 4, 8 ... seconds, with jitter


@task(name="code-chunk", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=0.5,
      retry_condition_fn=retry_transient, cache_key_fn=chunk_cache_key, persist_result=True,
      result_serializer=SuccessOnlySerializer())
def code_chunk_task(job: pipeline.ChunkJob, settings: Settings, strategy: Strategy,
                    provenance: Provenance) -> ChunkResult:
    try:
        result = pipeline.run_job(job, settings, strategy, provenance, notify=progress.emit)
    except Exception as exc:
        raise _failed(exc, ChunkFailed) from exc
    progress.emit("chunk_done", job.chunk.key)
    return result


@task(name="store-transcript", persist_result=False)
def store_task(coded: CodedTranscript, transcript: Transcript, settings: Settings, source: SourceFile) -> int:
    try:
        contexts = [context_of(c, transcript) for c in coded.codes]
        store = _store(settings, embed=True)
        vectors = store.embed(coded.codes)  # the slow step, before either store is written
        codes = [c.model_dump(mode="json") for c in coded.codes]
        with ReviewStore.open(settings.review_db_url) as reviews, \
                reviews.saving_coded(settings.study, transcript, source.path, codes):  # commits after Chroma's write
            return store.replace_transcript(coded.transcript, coded.codes, contexts,
                                            {"source_path": source.path, "source_sha256": source.sha256}, vectors)
    except Exception as exc:
        raise _failed(exc) from exc


def _store(settings: Settings, embed: bool) -> CodeStore:
    embedder = embedder_for(settings) if embed else None
    return CodeStore(open_collection(str(settings.chroma_path), settings.chroma_url, settings.study_collection),
                     embedder)


def _store_exists(settings: Settings) -> bool:
    return bool(settings.chroma_url) or settings.chroma_path.exists()


@flow(name="code_batch", log_prints=False)
def code_batch(paths: list[str], settings: Settings, out_dir: str,
               roles: dict[str, tuple[list[str], list[str]]] | None = None,
               ids: dict[str, str] | None = None, redecide: bool = False) -> BatchSummary:
    """`roles` maps a file path to its (interviewers, interviewees), overriding the settings, and
    `ids` to its transcript id, overriding the one chosen (gold sets name their transcripts).
    `redecide`: decide again from the cached ratings only (a transcript with a chunk not in the
    cache fails, untouched) and leave every code a person decided on as it is."""
    started = time.perf_counter()
    strategy = load_strategy(settings.strategy, settings.prompts_dir)
    decide_with = pipeline.decision_for(strategy, settings)  # a bad [decide] table or file fails here, before any LLM call
    provenance = Provenance(prompt_version=strategy.version, schema_version=schema_version(),
                            model=backends.model_label(settings))
    summary = BatchSummary(out_dir=out_dir, decision=decide_with["decision"], **provenance.model_dump())
    meter_before = backends.meter_snapshot(settings)
    ReviewStore.open(settings.review_db_url).close()  # a database it cannot open fails before any model call
    found = discover(paths, max_bytes=settings.max_file_bytes)  # before any file is read
    summary.transcripts_failed.extend(found.problems)
    summary.skipped.extend(found.skipped)
    sources = _sources(found.files, summary)
    stored = _store(settings, False).sources(list(sources.values())) if _store_exists(settings) else {}
    chosen, collisions = pipeline.identify(sources, stored)
    summary.transcripts_failed.extend(collisions)
    summary.transcript_ids = {path: (ids or {}).get(path, tid) for path, tid in chosen.items()}
    progress.emit("transcripts_total", len(chosen))
    transcripts = _parse_all(summary, settings, roles or {})
    jobs = {path: pipeline.plan_transcript(t, settings, strategy, provenance) for path, t in transcripts.items()}
    if redecide:
        _cached_only(jobs, transcripts, summary, settings)
    size = pipeline.batch_size(jobs, pipeline.is_cached_in(settings.results_path))
    progress.emit("chunks_total", size["chunks"])
    progress.emit("batch_planned", sentences=size["sentences"], chunks=size["chunks"],
                  uncached_chunks=size["uncached_chunks"],
                  seconds=progress.estimate_seconds(settings.backend, size["uncached_sentences"], size["uncached_chunks"]))
    coder = code_chunk_task.with_options(retries=settings.task_retries, retry_delay_seconds=RETRY_DELAYS)
    futures = {path: [coder.submit(job, settings, strategy, provenance) for job in path_jobs]
               for path, path_jobs in jobs.items()}
    coded: list[CodedTranscript] = []
    for path, transcript in transcripts.items():  # each stored as soon as its own chunks are done
        summary.chunks += len(futures[path])
        ct = _finish(path, transcript, futures[path], settings, summary, provenance, decide_with, sources[path],
                     redecide)
        if ct is not None:
            coded.append(ct)
    _fill_meter(summary, settings, meter_before)
    summary.wall_seconds = round(time.perf_counter() - started, 1)
    texts = {transcripts[p].id: transcripts[p].text for p in summary.transcripts_ok}
    write_run(Path(out_dir), coded, summary.as_dict(), texts)
    return summary


def _sources(files: list[Path], summary: BatchSummary) -> dict[str, SourceFile]:
    sources = {}
    for f in files:
        try:
            sources[str(f)] = source_file(f)
        except OSError as err:
            summary.transcripts_failed.append((str(f), f"cannot read the file ({err.strerror or err})"))
    return sources


def _parse_all(summary: BatchSummary, settings: Settings,
               roles: dict[str, tuple[list[str], list[str]]]) -> dict[str, Transcript]:
    default_roles = (list(settings.interviewers), [])
    parsed = {p: parse_task.submit(p, tid, *roles.get(p, default_roles), settings.max_file_bytes)
              for p, tid in summary.transcript_ids.items()}
    transcripts = {}
    for path, future in parsed.items():
        future.wait()
        if future.state.is_completed():
            transcripts[path] = future.result()
            summary.speakers[path] = speaker_roles(transcripts[path])
        else:
            summary.transcripts_failed.append((path, _reason(future)))
            progress.emit("transcript_done", path, ok=False)
    return transcripts


def _finish(path: str, transcript: Transcript, futures: list, settings: Settings, summary: BatchSummary,
            provenance: Provenance, decide_with: dict[str, Any], source: SourceFile,
            redecide: bool = False) -> CodedTranscript | None:
    for f in futures:
        f.wait()
    summary.cache_hits += sum(1 for f in futures if f.state.name == "Cached")
    failed = [f for f in futures if not f.state.is_completed()]
    if failed:
        summary.transcripts_failed.append((path, _reason(failed[0])))
        progress.emit("transcript_done", path, ok=False)
        return None  # nothing of a failed transcript reaches the store
    finished = pipeline.finish_transcript(transcript, [f.result() for f in futures], provenance, decide_with)
    if redecide:
        with ReviewStore.open(settings.review_db_url) as reviews:
            finished.coded = kept_reviewed(finished.coded, reviews, settings.study)
    # Called, not submitted: run in the flow's thread now, not queued behind the batch's other chunks.
    stored = store_task(finished.coded, transcript, settings, source, return_state=True)
    if not stored.is_completed():
        summary.transcripts_failed.append((path, "could not store codes: " + _reason(stored)))
        progress.emit("transcript_done", path, ok=False)
        return None
    summary.transcripts_ok.append(path)
    summary.ratings[transcript.id] = finished.rated
    summary.rejected_quotes += len(finished.coded.rejected)
    for code in finished.coded.codes:
        summary.codes[code.kind] += 1
    progress.emit("transcript_done", path, ok=True)
    return finished.coded


def _cached_only(jobs: dict[str, list[pipeline.ChunkJob]], transcripts: dict[str, Transcript], summary: BatchSummary,
                 settings: Settings) -> None:
    """A re-decision never calls the model: a transcript with a chunk not in the cache is left as it is."""
    cached = pipeline.is_cached_in(settings.results_path)
    for path in list(jobs):
        missing = sum(not cached(job.cache_key) for job in jobs[path])
        if missing:
            summary.transcripts_failed.append((path, f"not re-decided: {missing} of its {len(jobs[path])} chunks are "
                                                     "not in the cache (coded with other options, or forgotten); "
                                                     "'jtbd code' with the options it was coded with codes it again"))
            progress.emit("transcript_done", path, ok=False)
            del jobs[path], transcripts[path]


def _reason(future_or_state: Any) -> str:
    try:
        future_or_state.result()
    except Exception as exc:  # the task's own exception, shown as one line
        return describe_error(exc)
    state = getattr(future_or_state, "state", future_or_state)
    return state.message or "failed"


def _fill_meter(summary: BatchSummary, settings: Settings, before: dict[str, float]) -> None:
    after = backends.meter_snapshot(settings)
    for key in ("llm_calls", "prompt_tokens", "completion_tokens", "llm_seconds"):
        setattr(summary, key, type(getattr(summary, key))(after[key] - before[key]))
    summary.llm_seconds = round(summary.llm_seconds, 1)


@dataclass
class Forgotten:
    """What `forget_results` removed from the result folder, file by file."""
    cached: dict[str, list[str]] = field(default_factory=dict)  # transcript id -> cached chunk files
    failures: list[str] = field(default_factory=list)  # failure records an earlier version wrote
    reports: dict[str, list[str]] = field(default_factory=dict)  # transcript id -> --pool runs' results not yet read


def forget_results(results_path: Path, transcript_ids: set[str]) -> Forgotten:
    """Delete what the result folder holds of these transcripts: their cached chunk results (the
    model's ratings and codes, quotes included), found by the chunk key "<transcript id>#<chunk>",
    also in records this version cannot unpickle, and a --pool run's failure record of them (its one-line
    problem, which can quote the transcript). Failure records, which earlier versions wrote
    as pickled exceptions holding a request (any transcript's words, and the API key), are deleted
    whoever they belong to: nothing reads them."""
    gone = Forgotten()
    folder = Path(results_path)
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_file():
            continue
        if not path.name.startswith("jtbd-chunk-"):
            # a --pool run's problem (a JSON record) or coded transcript (a result record), for its
            # submitter (flows/pool.py); anything else is an earlier version's failure record
            if path.name.startswith(FAILED_RECORD.split("{")[0]):
                report = (failure_record(path) or {}).get("transcript_id")
            else:
                report = _report_owner(path.read_bytes())
            if report is None:
                path.unlink()
                gone.failures.append(str(path))
            elif report in transcript_ids:
                path.unlink()
                gone.reports.setdefault(report, []).append(str(path))
            continue
        owner = _chunk_owner(path.read_bytes(), transcript_ids)
        if owner is not None:
            path.unlink()
            gone.cached.setdefault(owner, []).append(str(path))
    return gone


def _chunk_owner(record: bytes, transcript_ids: set[str]) -> str | None:
    from prefect.results import ResultRecord

    try:
        chunk_key = ResultRecord.deserialize(record).result.chunk_key
        owner = chunk_key.rpartition("#")[0]
        return owner if owner in transcript_ids else None
    except Exception:  # written by another version: look for the chunk key in the pickle's bytes
        raw = _decoded(record)
        return next((t for t in sorted(transcript_ids) if (t + "#").encode() in raw), None)


FAILED_RECORD = "jtbd-failed-{}.json"  # a failed --pool run's problem, by its run id (flows/pool.py)


def failure_record(path: Path) -> dict[str, str] | None:
    """A failed --pool run's record in the results folder: its transcript id and one-line problem;
    None when it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {"transcript_id": str(data["transcript_id"]), "problem": str(data["problem"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _report_owner(record: bytes) -> str | None:
    """The transcript id of a --pool run's result record (a TranscriptReport), else None."""
    from prefect.results import ResultRecord

    try:
        return str(ResultRecord.deserialize(record).result.coded.transcript)
    except Exception:  # a failure record of an earlier version, or anything else
        return None


def _decoded(record: bytes) -> bytes:
    import base64

    try:
        return base64.decodebytes(json.loads(record)["result"].encode())
    except Exception:
        return record


def run_batch(paths: list[str], settings: Settings, out_dir: str,
              roles: dict[str, tuple[list[str], list[str]]] | None = None,
              ids: dict[str, str] | None = None, redecide: bool = False) -> BatchSummary:
    """Run the flow with the settings' concurrency limit."""
    runner = ThreadPoolTaskRunner(max_workers=settings.effective_concurrency)
    # Cached chunk results persist under the data folder, not Prefect's home.
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(settings.results_path)}):
        return code_batch.with_options(task_runner=runner)(paths, settings, out_dir, roles, ids, redecide)
