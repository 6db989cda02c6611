"""The `code_batch` Prefect flow: wiring only, the work lives in jtbd.coding.

    discover -> parse (task per transcript) -> chunk -> code (task per chunk,
    cached, retried) -> merge -> store in Chroma (task per transcript) -> write run folder

A chunk task's cache key is the exact model input (chunk text and the excerpt
each pass sends) plus the prompt version, schema version, model and decoding
settings; results persist under the data folder, so a re-run of a coded batch
makes no LLM call and an interrupted batch resumes where it stopped.
"""

from __future__ import annotations

import jtbd.environment  # noqa: F401  (quiet, offline defaults before prefect loads)

import hashlib
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

from jtbd.coding import backends, progress
from jtbd.coding.chunk import Chunk, chunk_transcript
from jtbd.coding.embed import make_embedder
from jtbd.coding.decide import decide, decision_settings
from jtbd.coding.extract import (ChunkResult, build_excerpt, code_chunk, context_of, decided_codes,
                                 keep_supported_jobs)
from jtbd.coding.identity import IdCollision, SourceFile, StoredSource, source_file, transcript_ids
from jtbd.coding.inputs import discover
from jtbd.coding.merge import merge_codes
from jtbd.coding.outputs import write_run
from jtbd.coding.parse import TranscriptError, load_transcript
from jtbd.coding.retry import is_transient
from jtbd.coding.sentences import split_sentences
from jtbd.coding.store import CodeStore, open_collection
from jtbd.prompts import load_strategy
from jtbd.schemas.codebook import KINDS, CodedTranscript, Provenance, schema_version
from jtbd.schemas.transcript import Transcript
from jtbd.settings import Settings


@dataclass
class BatchSummary:
    transcripts_ok: list[str] = field(default_factory=list)
    transcripts_failed: list[tuple[str, str]] = field(default_factory=list)
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def chunk_cache_key(_context: Any, parameters: dict[str, Any]) -> str:
    return parameters["cache_key"]


def retry_transient(_task: Any, _run: Any, state: Any) -> bool:
    exc = state.data if isinstance(state.data, BaseException) else state.result(raise_on_failure=False)
    return bool(getattr(exc, "transient", False)) or is_transient(exc)


class ChunkFailed(Exception):
    """A chunk that could not be coded, as one line. The model client's own error is never what
    Prefect sees: an openai error carries its httpx request, with the API key and the prompt."""

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason, transient)
        self.reason, self.transient = reason, transient

    def __str__(self) -> str:
        return self.reason


class SuccessOnlySerializer(PickleSerializer):
    """Persists what a chunk task returns (the cache) and refuses to persist a failure: Prefect
    then logs that the failure was not written and goes on, so no failure record reaches disk."""

    type: str = "jtbd-success-pickle"

    def dumps(self, obj: Any) -> bytes:
        if isinstance(obj, BaseException):
            raise TypeError("jtbd-coder persists only successful chunk results")
        return super().dumps(obj)


@task(name="parse-transcript")
def parse_task(path: str, transcript_id: str, interviewers: list[str], interviewees: list[str],
               max_bytes: int) -> Transcript:
    transcript = load_transcript(Path(path), interviewers=interviewers, interviewees=interviewees,
                                 max_bytes=max_bytes)
    return transcript.model_copy(update={"id": transcript_id})


RETRY_DELAYS = exponential_backoff(backoff_factor=2)  # 2, 4, 8 ... seconds, with jitter


@task(name="code-chunk", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=0.5,
      retry_condition_fn=retry_transient, cache_key_fn=chunk_cache_key, persist_result=True,
      result_serializer=SuccessOnlySerializer())
def code_chunk_task(transcript: Transcript, chunk: Chunk, settings: Settings,
                    provenance: Provenance, cache_key: str) -> ChunkResult:
    try:
        llm = backends.get_llm(settings)
        result = code_chunk(llm, transcript, chunk, load_strategy(settings.strategy), provenance,
                            max_retries=settings.max_retries, notify=progress.emit)
    except Exception as exc:
        raise ChunkFailed(describe_error(exc), is_transient(exc)) from exc
    progress.emit("chunk_done", chunk.key)
    return result


@task(name="store-transcript")
def store_task(coded: CodedTranscript, transcript: Transcript, settings: Settings, source: SourceFile) -> int:
    store = _store(settings, embed=True)
    contexts = [context_of(c, transcript) for c in coded.codes]
    return store.replace_transcript(coded.transcript, coded.codes, contexts,
                                    {"source_path": source.path, "source_sha256": source.sha256})


def _store(settings: Settings, embed: bool) -> CodeStore:
    embedder = make_embedder(settings.embeddings, settings.embedding_model, settings.base_url,
                             settings.api_key, settings.timeout) if embed else None
    return CodeStore(open_collection(str(settings.chroma_path), settings.chroma_url, settings.collection), embedder)


def make_cache_key(transcript: Transcript, chunk: Chunk, settings: Settings, provenance: Provenance) -> str:
    strategy = load_strategy(settings.strategy)
    excerpts = [build_excerpt(transcript, chunk, p.response_model != "QuotedCodes").text for p in strategy.passes]
    # What the model is asked, not how its ratings become codes: a new [decide] threshold
    # re-decides from the cached ratings without a single LLM call.
    asked = provenance.model_copy(update={"prompt_version": strategy.passes_version})
    payload = [transcript.id, chunk.char_start, chunk.text, excerpts, asked.model_dump(),
               settings.strategy, settings.llm_mode, settings.seed, settings.max_retries,
               [p.max_tokens for p in strategy.passes]]
    return "jtbd-chunk-" + hashlib.sha256(json.dumps(payload).encode()).hexdigest()


@flow(name="code_batch", log_prints=False)
def code_batch(paths: list[str], settings: Settings, out_dir: str,
               roles: dict[str, tuple[list[str], list[str]]] | None = None,
               ids: dict[str, str] | None = None) -> BatchSummary:
    """`roles` maps a file path to its (interviewers, interviewees), overriding the settings, and
    `ids` to its transcript id, overriding the one chosen (gold sets name their transcripts)."""
    started = time.perf_counter()
    strategy = load_strategy(settings.strategy)
    decide_with = decision_settings(strategy)  # a bad [decide] table fails here, before any LLM call
    provenance = Provenance(prompt_version=strategy.version, schema_version=schema_version(),
                            model=backends.model_label(settings))
    summary = BatchSummary(out_dir=out_dir, **provenance.model_dump())
    meter_before = backends.meter_snapshot(settings)
    files, problems = discover(paths, max_bytes=settings.max_file_bytes)  # before anything is read
    summary.transcripts_failed.extend(problems)
    sources, chosen = _identify(files, settings, summary)
    ids = {path: (ids or {}).get(path, tid) for path, tid in chosen.items()}
    progress.emit("transcripts_total", len(ids))
    roles = roles or {}
    default_roles = (list(settings.interviewers), [])
    parsed = {p: parse_task.submit(p, ids[p], *roles.get(p, default_roles), settings.max_file_bytes) for p in ids}
    transcripts = {}
    for path, future in parsed.items():
        future.wait()
        if future.state.is_completed():
            transcripts[path] = future.result()
        else:
            summary.transcripts_failed.append((path, _reason(future)))
            progress.emit("transcript_done", path, ok=False)
    plans = {path: chunk_transcript(t, settings.chunk_tokens, settings.overlap_tokens) for path, t in transcripts.items()}
    _announce_plan(transcripts, plans, settings, provenance)
    coder = code_chunk_task.with_options(retries=settings.task_retries, retry_delay_seconds=RETRY_DELAYS)
    jobs = []
    for path, transcript in transcripts.items():
        chunks = plans[path]
        summary.chunks += len(chunks)
        futures = [coder.submit(transcript, c, settings, provenance,
                                make_cache_key(transcript, c, settings, provenance)) for c in chunks]
        jobs.append((path, transcript, futures))
    coded: list[CodedTranscript] = []
    texts = {}
    for path, transcript, futures in jobs:  # each stored as soon as its own chunks are done
        ct = _finish_transcript(path, transcript, futures, settings, summary, provenance, decide_with,
                                sources[path])
        if ct is not None:
            coded.append(ct)
            texts[transcript.id] = transcript.text
    _fill_meter(summary, settings, meter_before)
    summary.wall_seconds = round(time.perf_counter() - started, 1)
    write_run(Path(out_dir), coded, summary.as_dict(), texts)
    return summary


def _identify(files: list[Path], settings: Settings,
              summary: BatchSummary) -> tuple[dict[str, SourceFile], dict[str, str]]:
    """Each file's transcript id, unique within the store; a file no id tells apart fails here."""
    sources = {}
    for f in files:
        try:
            sources[str(f)] = source_file(f)
        except OSError as err:
            summary.transcripts_failed.append((str(f), f"cannot read the file ({err.strerror or err})"))
    stored = _store(settings, embed=False).sources() if _store_exists(settings) else {}
    pending = dict(sources)
    while True:
        try:
            by_path = transcript_ids(list(pending.values()), stored)
            break
        except IdCollision as err:  # the file is named in the error; the rest of the batch goes on
            path = next(p for p, s in pending.items() if s.path == err.path)
            summary.transcripts_failed.append((path, err.problem))
            del pending[path]
    return sources, {p: by_path[s.path] for p, s in pending.items()}


def _store_exists(settings: Settings) -> bool:
    return bool(settings.chroma_url) or settings.chroma_path.exists()


def _announce_plan(transcripts: dict[str, Transcript], plans: dict[str, list[Chunk]], settings: Settings,
                   provenance: Provenance) -> None:
    """The batch's size before any model call: sentences to rate and chunks not in the cache."""
    starts = {p: [s.char_start for s in split_sentences(t)] for p, t in transcripts.items()}
    uncached = [(p, c) for p, t in transcripts.items() for c in plans[p]
                if not (settings.results_path / make_cache_key(t, c, settings, provenance)).exists()]
    to_rate = sum(1 for p, c in uncached for at in starts[p] if c.char_start <= at < c.char_end)
    progress.emit("batch_planned", sentences=sum(map(len, starts.values())),
                  chunks=sum(map(len, plans.values())), uncached_chunks=len(uncached),
                  seconds=progress.estimate_seconds(settings.backend, to_rate, len(uncached)))


def _finish_transcript(path: str, transcript: Transcript, futures: list, settings: Settings,
                       summary: BatchSummary, provenance: Provenance,
                       decide_with: dict[str, Any], source: SourceFile) -> CodedTranscript | None:
    for f in futures:
        f.wait()
    failed = [f for f in futures if not f.state.is_completed()]
    summary.cache_hits += sum(1 for f in futures if f.state.name == "Cached")
    if failed:
        summary.transcripts_failed.append((path, _reason(failed[0])))
        progress.emit("transcript_done", path, ok=False)
        return None  # nothing of a failed transcript reaches the store
    results: list[ChunkResult] = [f.result() for f in futures]
    rated = [r for res in results for r in res.rated]
    if rated:
        decisions = decide(rated, text=transcript.text, **decide_with)
        results.append(ChunkResult(f"{transcript.id}#decided", decided_codes(decisions, transcript, provenance)))
    # Cached chunks were coded under the same questions, maybe under another [decide]: stamp this run's.
    codes = [c.model_copy(update={"provenance": provenance})
             for c in merge_codes(c for r in results for c in r.codes)]
    # Chunks cached before statements were checked hold unchecked job stories: check them all here.
    codes, unsupported = keep_supported_jobs(codes, transcript)
    rejected = [r for res in results for r in res.rejected] + unsupported
    coded = CodedTranscript(transcript=transcript.id, source=transcript.source, codes=codes, rejected=rejected)
    # Called, not submitted: run in the flow's thread now, not queued behind the batch's other chunks.
    stored = store_task(coded, transcript, settings, source, return_state=True)
    if not stored.is_completed():
        summary.transcripts_failed.append((path, "could not store codes: " + _reason(stored)))
        progress.emit("transcript_done", path, ok=False)
        return None
    summary.transcripts_ok.append(path)
    summary.rejected_quotes += len(rejected)
    for code in codes:
        summary.codes[code.kind] += 1
    progress.emit("transcript_done", path, ok=True)
    return coded


def _reason(future_or_state: Any) -> str:
    try:
        future_or_state.result()
    except Exception as exc:  # the task's own exception, shown as one line
        return describe_error(exc)
    state = getattr(future_or_state, "state", future_or_state)
    return state.message or "failed"


def describe_error(exc: BaseException) -> str:
    """One line: the error and, when it wraps another, the root cause (e.g. a connection error's reason).
    Our own errors already say it in the researcher's words, without the file's path or a cause."""
    if isinstance(exc, TranscriptError):
        return exc.problem
    if isinstance(exc, (ChunkFailed, IdCollision)):
        return str(exc)
    root, seen = exc, {id(exc)}
    while (nxt := root.__cause__ or root.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        root = nxt
    if root is exc:
        return _first_line(exc) or type(exc).__name__
    cause = f"{type(root).__name__}: {_first_line(root)}" if _first_line(root) else type(root).__name__
    return f"{_first_line(exc) or type(exc).__name__} (caused by {cause})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


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


def forget_results(results_path: Path, transcript_ids: set[str]) -> Forgotten:
    """Delete what the result folder holds of these transcripts: their cached chunk results (the
    model's ratings and codes, quotes included), found by the chunk key "<transcript id>#<chunk>",
    also in records this version cannot unpickle. Failure records, which earlier versions wrote
    as pickled exceptions holding a request (any transcript's words, and the API key), are deleted
    whoever they belong to: nothing reads them."""
    gone = Forgotten()
    folder = Path(results_path)
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_file():
            continue
        if not path.name.startswith("jtbd-chunk-"):
            path.unlink()
            gone.failures.append(str(path))
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


def _decoded(record: bytes) -> bytes:
    import base64

    try:
        return base64.decodebytes(json.loads(record)["result"].encode())
    except Exception:
        return record


def run_batch(paths: list[str], settings: Settings, out_dir: str,
              roles: dict[str, tuple[list[str], list[str]]] | None = None,
              ids: dict[str, str] | None = None) -> BatchSummary:
    """Run the flow with the settings' concurrency limit."""
    runner = ThreadPoolTaskRunner(max_workers=settings.effective_concurrency)
    # Cached chunk results persist under the data folder, not Prefect's home.
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(settings.results_path)}):
        return code_batch.with_options(task_runner=runner)(paths, settings, out_dir, roles, ids)
