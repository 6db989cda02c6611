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
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from jtbd.coding import backends, progress
from jtbd.coding.chunk import Chunk, chunk_transcript
from jtbd.coding.embed import make_embedder
from jtbd.coding.decide import decide, decision_settings
from jtbd.coding.extract import ChunkResult, build_excerpt, code_chunk, context_of, decided_codes
from jtbd.coding.inputs import discover
from jtbd.coding.merge import merge_codes
from jtbd.coding.outputs import write_run
from jtbd.coding.parse import load_transcript
from jtbd.coding.retry import is_transient
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
    return is_transient(state.data if isinstance(state.data, BaseException) else
                        state.result(raise_on_failure=False))


@task(name="parse-transcript")
def parse_task(path: str, interviewers: list[str], interviewees: list[str]) -> Transcript:
    return load_transcript(Path(path), interviewers=interviewers, interviewees=interviewees)


RETRY_DELAYS = exponential_backoff(backoff_factor=2)  # 2, 4, 8 ... seconds, with jitter


@task(name="code-chunk", retries=3, retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=0.5,
      retry_condition_fn=retry_transient, cache_key_fn=chunk_cache_key, persist_result=True)
def code_chunk_task(transcript: Transcript, chunk: Chunk, settings: Settings,
                    provenance: Provenance, cache_key: str) -> ChunkResult:
    llm = backends.get_llm(settings)
    result = code_chunk(llm, transcript, chunk, load_strategy(settings.strategy), provenance,
                        max_retries=settings.max_retries, notify=progress.emit)
    progress.emit("chunk_done", chunk.key)
    return result


@task(name="store-transcript")
def store_task(coded: CodedTranscript, transcript: Transcript, settings: Settings) -> int:
    store = CodeStore(open_collection(str(settings.chroma_path), settings.chroma_url, settings.collection),
                      make_embedder(settings.embeddings, settings.embedding_model, settings.base_url,
                                    settings.api_key, settings.timeout))
    contexts = [context_of(c, transcript) for c in coded.codes]
    return store.replace_transcript(coded.transcript, coded.codes, contexts)


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
               roles: dict[str, tuple[list[str], list[str]]] | None = None) -> BatchSummary:
    """`roles` maps a file path to its (interviewers, interviewees), overriding the settings (gold sets)."""
    started = time.perf_counter()
    strategy = load_strategy(settings.strategy)
    decide_with = decision_settings(strategy)  # a bad [decide] table fails here, before any LLM call
    provenance = Provenance(prompt_version=strategy.version, schema_version=schema_version(),
                            model=backends.model_label(settings))
    summary = BatchSummary(out_dir=out_dir, **provenance.model_dump())
    meter_before = backends.meter_snapshot(settings)
    files, problems = discover(paths)
    summary.transcripts_failed.extend(problems)
    progress.emit("transcripts_total", len(files))
    coder = code_chunk_task.with_options(retries=settings.task_retries, retry_delay_seconds=RETRY_DELAYS)
    roles = roles or {}
    default_roles = (list(settings.interviewers), [])
    parsed = {str(f): parse_task.submit(str(f), *roles.get(str(f), default_roles)) for f in files}
    coded: list[CodedTranscript] = []
    jobs = []
    for path, future in parsed.items():
        future.wait()
        if not future.state.is_completed():
            summary.transcripts_failed.append((path, _reason(future)))
            progress.emit("transcript_done", path, ok=False)
            continue
        transcript = future.result()
        chunks = chunk_transcript(transcript, settings.chunk_tokens, settings.overlap_tokens)
        summary.chunks += len(chunks)
        progress.emit("chunks_total", len(chunks))
        futures = [coder.submit(transcript, c, settings, provenance,
                                make_cache_key(transcript, c, settings, provenance)) for c in chunks]
        jobs.append((path, transcript, futures))
    texts = {}
    for path, transcript, futures in jobs:
        ct = _finish_transcript(path, transcript, futures, settings, summary, provenance, decide_with)
        if ct is not None:
            coded.append(ct)
            texts[transcript.id] = transcript.text
    _fill_meter(summary, settings, meter_before)
    summary.wall_seconds = round(time.perf_counter() - started, 1)
    write_run(Path(out_dir), coded, summary.as_dict(), texts)
    return summary


def _finish_transcript(path: str, transcript: Transcript, futures: list, settings: Settings,
                       summary: BatchSummary, provenance: Provenance,
                       decide_with: dict[str, Any]) -> CodedTranscript | None:
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
    rejected = [r for res in results for r in res.rejected]
    coded = CodedTranscript(transcript=transcript.id, source=transcript.source, codes=codes, rejected=rejected)
    store = store_task.submit(coded, transcript, settings)
    store.wait()
    if not store.state.is_completed():
        summary.transcripts_failed.append((path, "could not store codes: " + _reason(store)))
        progress.emit("transcript_done", path, ok=False)
        return None
    summary.transcripts_ok.append(path)
    summary.rejected_quotes += len(rejected)
    for code in codes:
        summary.codes[code.kind] += 1
    progress.emit("transcript_done", path, ok=True)
    return coded


def _reason(future: Any) -> str:
    try:
        future.result()
    except Exception as exc:  # the task's own exception, shown as one line
        return describe_error(exc)
    return future.state.message or "failed"


def describe_error(exc: BaseException) -> str:
    """One line: the error and, when it wraps another, the root cause (e.g. a connection error's reason)."""
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


def forget_cached_chunks(results_path: Path, transcript_ids: set[str]) -> tuple[int, int]:
    """Delete the cached chunk results (the model's ratings and codes, quotes included) of these
    transcripts from the result cache. Each file is a Prefect result record of a `ChunkResult`,
    whose chunk key is "<transcript id>#<chunk index>". Returns the number of files removed and
    the number that could not be read (written by another version), which are left alone."""
    from prefect.results import ResultRecord

    removed = unreadable = 0
    for path in sorted(Path(results_path).glob("jtbd-chunk-*")) if Path(results_path).is_dir() else []:
        try:
            chunk_key = ResultRecord.deserialize(path.read_bytes()).result.chunk_key
        except Exception:  # not a result this version can read: say so, leave it
            unreadable += 1
            continue
        if chunk_key.rpartition("#")[0] in transcript_ids:
            path.unlink()
            removed += 1
    return removed, unreadable


def run_batch(paths: list[str], settings: Settings, out_dir: str,
              roles: dict[str, tuple[list[str], list[str]]] | None = None) -> BatchSummary:
    """Run the flow with the settings' concurrency limit."""
    runner = ThreadPoolTaskRunner(max_workers=settings.effective_concurrency)
    # Cached chunk results persist under the data folder, not Prefect's home.
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(settings.results_path)}):
        return code_batch.with_options(task_runner=runner)(paths, settings, out_dir, roles)
