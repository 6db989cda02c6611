"""Scale-out: a batch coded by Prefect workers, one flow run per transcript (docs/scale-out.md).

    jtbd deploy --pool NAME     deploy(): a process work pool, the deployment code_transcript/NAME
                                (a module-path entrypoint: the workers run the installed package, no
                                code is shipped) and an automation that marks a run Crashed when its
                                heartbeats stop (a worker or its machine lost)
    prefect worker start --pool NAME    any number, on any machine that reaches the servers
    jtbd code PATHS --pool NAME         submit_batch(): plan here, one flow run per transcript,
                                follow their states, re-submit crashed ones, write the run folder here

What travels with a run: the settings, the transcript's id and its file's path and hash (as on
a local run), and the path of a copy of the file under the data folder's inputs/, which every
worker reads: the data folder (--data-dir) is a path shared by the submitting machine and every
worker. No transcript text goes into Prefect's database. A chunk's result is cached under the
shared results/ as on a local run, so a re-submitted run calls the model only for the chunks
that had not finished. A run returns its coded transcript as a result record in results/ too
(deserialised here, then deleted); `jtbd forget` removes the inputs and any such record of a
transcript (forget_inputs, code_batch.forget_results).

A transcript is one run: its decision reads every chunk's ratings, and a run costs the Prefect
server a few round trips against the minutes of model time an interview takes.
"""

from __future__ import annotations

import jtbd.environment  # noqa: F401  (quiet, offline defaults before prefect loads)

import hashlib
import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from jtbd.coding import backends, pipeline, progress
from jtbd.coding.identity import SourceFile
from jtbd.coding.inputs import discover
from jtbd.coding.outputs import write_run
from jtbd.coding.parse import load_transcript, speaker_roles
from jtbd.coding.retry import describe_error
from jtbd.coding.reviews import ReviewStore
from jtbd.flows.code_batch import (FAILED_RECORD, RETRY_DELAYS, BatchSummary, SuccessOnlySerializer, _fill_meter,
                                   _finish, _sources, _store, code_chunk_task, failure_record, parse_task)
from jtbd.prompts import load_strategy
from jtbd.schemas.codebook import KINDS, CodedTranscript, Provenance, schema_version
from jtbd.schemas.transcript import Transcript
from jtbd.settings import Settings

FLOW_NAME = "code_transcript"
HEARTBEAT_SECONDS = 30  # Prefect's shortest flow-run heartbeat
CRASH_AFTER = 120  # seconds without a heartbeat before the automation marks a run Crashed
RESUBMITS = 2  # re-submissions of a transcript whose run crashed, before it counts as failed
POLL_SECONDS = 2.0  # how often the submitting machine reads the runs' states
PAGE = 200  # flow runs read in one request (the server's default limit)
TIMEOUT = 20.0  # seconds for the server's health check: milliseconds when idle, seconds when it is busy
FOLLOW_ERRORS = 30  # reads of the runs' states in a row that may fail (the server restarting) before giving up
# Every run's process: no logs to the Prefect database (they quote errors, an error can quote a
# participant), and heartbeats, so a run whose machine is lost is found and marked Crashed.
RUN_ENV = {"PREFECT_LOGGING_TO_API_ENABLED": "false", "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}


class PoolError(RuntimeError):
    """The Prefect server, the pool or the deployment is not as `--pool` needs it; one line."""


class TranscriptFailed(Exception):
    """A transcript that could not be coded, as one line (`problem`). The line can quote the
    transcript (a malformed line, a speaker's name), so the run's Failed state, which the Prefect
    server keeps in its database, does not say it: the run writes it to the shared results folder
    (FAILED_RECORD), where the submitting machine reads and deletes it (and `jtbd forget` deletes
    any left unread)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem, self.recorded = problem, False

    def __str__(self) -> str:  # the state says it only when no record could be written
        return "its problem is in the data folder's results, for jtbd code --pool" if self.recorded else self.problem



@dataclass
class TranscriptReport:
    """What a run hands back to the submitting machine: the coded transcript and its counts."""
    transcript_id: str
    coded: CodedTranscript
    chunks: int = 0
    cache_hits: int = 0
    rejected_quotes: int = 0
    codes: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    meter: dict[str, float] = field(default_factory=dict)  # llm_calls, tokens, llm_seconds of this run


# --- the flow each worker runs -----------------------------------------------------------------

@flow(name=FLOW_NAME, log_prints=False, persist_result=True, result_serializer=SuccessOnlySerializer(),
      task_runner=ThreadPoolTaskRunner())  # its threads: PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS, set per run
def code_transcript(transcript_id: str, source_path: str, source_sha256: str, input_path: str,
                    settings: Settings, interviewers: list[str], interviewees: list[str]) -> TranscriptReport:
    """Code one transcript from its copy under the shared data folder: parse, code its chunks
    (cached in the shared results folder), decide, store in the shared Chroma and review database."""
    try:
        _check_result_storage(settings)
        return _code_transcript(transcript_id, source_path, source_sha256, input_path, settings, interviewers,
                                interviewees)
    except TranscriptFailed as failed:
        failed.recorded = _write_failure(settings, transcript_id, failed.problem)
        raise


def _write_failure(settings: Settings, transcript_id: str, problem: str) -> bool:
    """The failed run's problem in the shared results folder (FAILED_RECORD); False if it cannot be written."""
    from prefect.runtime import flow_run

    try:
        settings.results_path.mkdir(parents=True, exist_ok=True)
        path = settings.results_path / FAILED_RECORD.format(flow_run.id)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the problem can quote the transcript
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"transcript_id": transcript_id, "problem": problem}, f)
    except OSError:
        return False
    return True


def _code_transcript(transcript_id: str, source_path: str, source_sha256: str, input_path: str,
                     settings: Settings, interviewers: list[str], interviewees: list[str]) -> TranscriptReport:
    strategy = load_strategy(settings.strategy, settings.prompts_dir)
    decide_with = pipeline.decision_for(strategy, settings)  # as code_batch decides: the same codes
    provenance = Provenance(prompt_version=strategy.version, schema_version=schema_version(),
                            model=backends.model_label(settings))
    summary = BatchSummary(**provenance.model_dump())
    before = backends.meter_snapshot(settings)
    parsed = parse_task(input_path, transcript_id, interviewers, interviewees, settings.max_file_bytes,
                        return_state=True)
    if not parsed.is_completed():
        raise TranscriptFailed(_state_problem(parsed))
    transcript: Transcript = parsed.result()
    jobs = pipeline.plan_transcript(transcript, settings, strategy, provenance)
    coder = code_chunk_task.with_options(retries=settings.task_retries, retry_delay_seconds=RETRY_DELAYS)
    futures = [coder.submit(job, settings, strategy, provenance) for job in jobs]
    coded = _finish(source_path, transcript, futures, settings, summary, provenance, decide_with,
                    SourceFile(source_path, source_sha256))
    if coded is None:
        raise TranscriptFailed(summary.transcripts_failed[0][1])
    _fill_meter(summary, settings, before)
    meter = {k: getattr(summary, k) for k in ("llm_calls", "prompt_tokens", "completion_tokens", "llm_seconds")}
    return TranscriptReport(transcript_id, coded, len(jobs), summary.cache_hits, summary.rejected_quotes,
                            summary.codes, meter)


def _check_result_storage(settings: Settings) -> None:
    """The chunk cache and this run's result must land in the shared results folder, where the
    submitting machine and `jtbd forget` look; `jtbd code --pool` sets it for each run."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    here = Path(PREFECT_LOCAL_STORAGE_PATH.value()).expanduser().resolve()
    if here != settings.results_path.resolve():
        raise TranscriptFailed(f"this run stores results in {here}, not in the data folder's {settings.results_path}: "
                               "submit runs with jtbd code --pool")


def _state_problem(state: Any) -> str:
    try:
        state.result()
    except Exception as exc:
        return describe_error(exc)
    return state.message or "failed"


# --- deploy ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Deployed:
    deployment: str  # code_transcript/<pool>
    deployment_id: str
    pool_created: bool
    automation: str


def deployment_name(pool: str) -> str:
    return f"{FLOW_NAME}/{pool}"


def automation_name(pool: str) -> str:
    return f"jtbd: crash runs of {deployment_name(pool)} without heartbeats"


def deploy(pool: str, crash_after: int = CRASH_AFTER) -> Deployed:
    """The process work pool (made if missing), the deployment of code_transcript on it, and the
    automation that marks its runs Crashed `crash_after` seconds after their last sign of life."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import EntrypointType
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    if crash_after < 2 * HEARTBEAT_SECONDS:
        raise PoolError(f"--crash-after is {crash_after}: it must be at least {2 * HEARTBEAT_SECONDS} seconds "
                        f"(runs send a heartbeat every {HEARTBEAT_SECONDS} s)")
    api = api_url()
    created = False
    with _client(api) as client:
        try:
            found = client.read_work_pool(pool)
            if found.type != "process":
                raise PoolError(f"--pool is {pool!r}: a {found.type} work pool on {api}; jtbd deploys to a "
                                "process pool (choose another name)")
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process",
                                                   base_job_template=ProcessWorker.get_default_base_job_template()))
            created = True
    runner = code_transcript.to_deployment(name=pool, entrypoint_type=EntrypointType.MODULE_PATH,
                                           job_variables={"env": dict(RUN_ENV)},
                                           description="jtbd-coder: one transcript per run (jtbd code --pool)")
    deployment_id = runner.apply(work_pool_name=pool)
    automation = _crash_automation(pool, str(deployment_id), crash_after)
    return Deployed(deployment_name(pool), str(deployment_id), created, automation)


def _crash_automation(pool: str, deployment_id: str, crash_after: int) -> str:
    """Prefect's own zombie-run automation (its docs' "detect zombie flows"), for this deployment:
    after a run starts or beats, a beat or an end must follow within `crash_after` seconds."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    name = automation_name(pool)
    try:
        Automation.read(name=name).delete()  # re-deploying replaces it (a new deployment id, a new window)
    except ValueError:
        pass
    ends = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}
    trigger = EventTrigger(
        after={"prefect.flow-run.heartbeat", "prefect.flow-run.Running", "prefect.flow-run.Pending"},
        expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Running", *ends},
        match=ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
        match_related=ResourceSpecification({"prefect.resource.id": f"prefect.deployment.{deployment_id}",
                                             "prefect.resource.role": "deployment"}),
        for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
        within=timedelta(seconds=crash_after))
    action = ChangeFlowRunState(state=StateType.CRASHED,
                                message=f"no heartbeat for {crash_after} s: its worker or machine was lost")
    Automation(name=name, trigger=trigger, actions=[action]).create()
    return name


# --- submit and follow -------------------------------------------------------------------------

def api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        raise PoolError("--pool needs a Prefect server that the workers share: set PREFECT_API_URL, e.g. "
                        "PREFECT_API_URL=http://prefect.example.org:4200/api")
    return url


def _client(api: str, check: bool = True) -> Any:
    """A client of the server, checked to answer within TIMEOUT (else PoolError)."""
    import httpx

    from prefect.client.orchestration import get_client

    if not check:
        return get_client(sync_client=True)
    try:
        httpx.get(api.rstrip("/") + "/health", timeout=TIMEOUT).raise_for_status()
    except (httpx.HTTPError, httpx.InvalidURL) as err:
        reason = f"no answer within {TIMEOUT:g} s" if isinstance(err, httpx.TimeoutException) else \
            (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise PoolError(f"PREFECT_API_URL is {api!r}: no Prefect server answers there ({reason}); start it with "
                        "prefect server start, or correct the URL") from None
    return get_client(sync_client=True)


def preflight(pool: str) -> Any:
    """The pool's deployment, before anything is copied or submitted (PoolError when it is not there)."""
    from prefect.exceptions import ObjectNotFound

    api = api_url()
    with _client(api) as client:
        try:
            return client.read_deployment_by_name(deployment_name(pool))
        except ObjectNotFound:
            raise PoolError(f"--pool is {pool!r}: the Prefect server at {api} has no deployment "
                            f"{deployment_name(pool)}; run jtbd deploy --pool {pool}") from None


def inputs_folder(data_dir: str | Path, transcript_id: str) -> Path:
    """Where a transcript's file is copied for the workers: one folder per transcript id (hashed:
    an id may hold '/'), so `jtbd forget` finds it without reading anything."""
    return Path(data_dir) / "inputs" / hashlib.sha256(transcript_id.encode()).hexdigest()[:32]


def forget_inputs(data_dir: str | Path, transcript_ids: set[str]) -> dict[str, list[str]]:
    """Delete the copies of these transcripts' files left for workers; the files removed, per id."""
    gone: dict[str, list[str]] = {}
    for tid in sorted(transcript_ids):
        folder = inputs_folder(data_dir, tid)
        if folder.is_dir():
            gone[tid] = sorted(str(p) for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder)
    return gone


@dataclass
class _Run:
    """One transcript on the pool: its current flow run and how often it was submitted."""
    path: str
    transcript: Transcript
    source: SourceFile
    keys: list[str]  # its chunks' cache keys: progress is their result files appearing
    input_path: str = ""
    run_id: Any = None
    attempts: int = 0
    done_keys: set[str] = field(default_factory=set)
    report: TranscriptReport | None = None
    going: bool = False  # still going when this command stopped following it: its copy stays for its worker


def submit_batch(paths: list[str], settings: Settings, out_dir: str, pool: str,
                 roles: dict[str, tuple[list[str], list[str]]] | None = None, resubmits: int = RESUBMITS,
                 poll_seconds: float = POLL_SECONDS, wait_seconds: float | None = None) -> BatchSummary:
    """Code a batch on the pool's workers: the same summary and run folder as run_batch."""
    started = time.perf_counter()
    deployment = preflight(pool)
    settings = _with_absolute_paths(settings)
    strategy = load_strategy(settings.strategy, settings.prompts_dir)
    decide_with = pipeline.decision_for(strategy, settings)  # a bad [decide] table or file fails here, not in every run
    provenance = Provenance(prompt_version=strategy.version, schema_version=schema_version(),
                            model=backends.model_label(settings))
    summary = BatchSummary(out_dir=out_dir, decision=decide_with["decision"], **provenance.model_dump())
    ReviewStore.open(settings.review_db_url).close()  # a database it cannot open fails before any run
    runs = _plan(paths, settings, strategy, provenance, summary, roles or {})
    batch = uuid.uuid4().hex[:12]
    env = {**(deployment.job_variables or {}).get("env", {}), "PREFECT_LOCAL_STORAGE_PATH": str(settings.results_path),
           "PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS": str(settings.effective_concurrency)}
    with _client(api_url(), check=False) as client:
        earlier = _earlier_runs(client, deployment.id, runs, settings, roles or {})
        for run in runs.values():
            if run.path in earlier:  # a stopped submission's run, still going: follow it, do not code twice
                flow_run = earlier[run.path]
                run.run_id, run.input_path, run.attempts = flow_run.id, flow_run.parameters["input_path"], 1
                summary.followed.append(run.path)
                progress.emit("note", f"following {run.path}: its run {flow_run.name} from an earlier submission "
                                      f"is {flow_run.state.name.lower()}")
                continue
            run.input_path = _copy_input(settings, run, batch)
            _submit(client, deployment.id, run, settings, env, roles or {}, batch)
        _follow(client, runs, summary, resubmits, poll_seconds, wait_seconds, settings,
                lambda run: _submit(client, deployment.id, run, settings, env, roles or {}, batch))
    coded = []
    for run in runs.values():
        if run.input_path and not run.going:  # a stopped batch leaves its copies to its runs (and to forget)
            shutil.rmtree(Path(run.input_path).parent, ignore_errors=True)
            _remove_if_empty(Path(run.input_path).parent.parent)
        if run.report is not None:
            coded.append(run.report.coded)
            _add_report(summary, run)
    summary.wall_seconds = round(time.perf_counter() - started, 1)
    texts = {r.transcript.id: r.transcript.text for r in runs.values() if r.report is not None}
    write_run(Path(out_dir), coded, summary.as_dict(), texts)
    return summary


def _with_absolute_paths(settings: Settings) -> Settings:
    """The folders and files the settings name, as absolute paths: a worker runs in a folder of its own."""
    from jtbd.settings import with_changes

    named = {"data_dir": settings.data_dir, "prompts_dir": settings.prompts_dir, "model_path": settings.model_path}
    if getattr(settings, "decision", "auto") not in ("auto", "handmade"):
        named["decision"] = settings.decision
    absolute = {k: str(Path(v).expanduser().resolve()) for k, v in named.items() if v}
    changed = {k: v for k, v in absolute.items() if v != getattr(settings, k)}
    return with_changes(settings, **changed) if changed else settings


def _plan(paths: list[str], settings: Settings, strategy: Any, provenance: Provenance, summary: BatchSummary,
          roles: dict[str, tuple[list[str], list[str]]]) -> dict[str, _Run]:
    """Here, as a local run does it: find, identify (against the shared store), parse and plan."""
    found = discover(paths, max_bytes=settings.max_file_bytes)
    summary.transcripts_failed.extend(found.problems)
    summary.skipped.extend(found.skipped)
    sources = _sources(found.files, summary)
    stored = _store(settings, False).sources(list(sources.values())) if sources else {}
    chosen, collisions = pipeline.identify(sources, stored)
    summary.transcripts_failed.extend(collisions)
    summary.transcript_ids = chosen
    progress.emit("transcripts_total", len(chosen))
    runs: dict[str, _Run] = {}
    jobs: dict[str, list[pipeline.ChunkJob]] = {}
    default_roles = (list(settings.interviewers), [])
    for path, tid in chosen.items():
        try:
            transcript = load_transcript(Path(path), *roles.get(path, default_roles),
                                         max_bytes=settings.max_file_bytes).model_copy(update={"id": tid})
        except Exception as exc:  # TranscriptError, or an unreadable file: this one fails alone
            summary.transcripts_failed.append((path, describe_error(exc)))
            progress.emit("transcript_done", path, ok=False)
            continue
        summary.speakers[path] = speaker_roles(transcript)
        jobs[path] = pipeline.plan_transcript(transcript, settings, strategy, provenance)
        runs[path] = _Run(path, transcript, sources[path], [j.cache_key for j in jobs[path]])
        summary.chunks += len(jobs[path])
    size = pipeline.batch_size(jobs, pipeline.is_cached_in(settings.results_path))
    progress.emit("chunks_total", size["chunks"])
    progress.emit("batch_planned", sentences=size["sentences"], chunks=size["chunks"],
                  uncached_chunks=size["uncached_chunks"],
                  seconds=progress.estimate_seconds(settings.backend, size["uncached_sentences"],
                                                    size["uncached_chunks"]))
    for run in runs.values():
        run.done_keys = {k for k in run.keys if (settings.results_path / k).exists()}
    return runs


def _copy_input(settings: Settings, run: _Run, batch: str) -> str:
    folder = inputs_folder(settings.data_dir, run.transcript.id) / batch
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / Path(run.source.path).name  # the name is the transcript's `source`, as on a local run
    shutil.copyfile(run.source.path, target)
    return str(target)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _parameters(run: _Run, settings: Settings, roles: dict[str, tuple[list[str], list[str]]]) -> dict[str, Any]:
    """A run's parameters: what codes the transcript, and where its copy is."""
    interviewers, interviewees = roles.get(run.path, (list(settings.interviewers), []))
    return {"transcript_id": run.transcript.id, "source_path": run.source.path,
            "source_sha256": run.source.sha256, "input_path": run.input_path,
            "settings": settings.public() | {"interviewers": list(settings.interviewers)},
            "interviewers": list(interviewers), "interviewees": list(interviewees)}


def _earlier_runs(client: Any, deployment_id: Any, runs: dict[str, _Run], settings: Settings,
                  roles: dict[str, tuple[list[str], list[str]]]) -> dict[str, Any]:
    """Path -> a run of the deployment not yet ended (scheduled, pending, running) that an earlier
    submission made for the same file with the same settings, its copy still there: the submitting
    machine was stopped and the command run again. The newest such run per file."""
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                                FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags)
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    going = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]
    flow_runs, offset = [], 0
    while True:  # a page at a time: a busy pool can hold more going runs than the server answers at once
        page = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=going)),
                                          tags=FlowRunFilterTags(all_=["jtbd"])),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=PAGE, offset=offset)
        flow_runs.extend(page)
        if len(page) < PAGE:
            break
        offset += PAGE
    wanted = {}
    for run in runs.values():
        same = _parameters(run, settings, roles)
        same.pop("input_path")
        wanted[json.dumps(same, sort_keys=True, default=str)] = run.path
    found: dict[str, Any] = {}
    for flow_run in flow_runs:  # newest first
        parameters = dict(flow_run.parameters or {})
        input_path = parameters.pop("input_path", "")
        path = wanted.get(json.dumps(parameters, sort_keys=True, default=str))
        if path and path not in found and input_path and Path(input_path).is_file():
            found[path] = flow_run
    return found


def _submit(client: Any, deployment_id: Any, run: _Run, settings: Settings, env: dict[str, str],
            roles: dict[str, tuple[list[str], list[str]]], batch: str) -> None:
    parameters = _parameters(run, settings, roles)
    run.attempts += 1
    created = client.create_flow_run_from_deployment(
        deployment_id, parameters=parameters, job_variables={"env": env}, tags=["jtbd", f"jtbd-batch-{batch}"],
        idempotency_key=f"{batch}:{run.transcript.id}:{run.attempts}")
    run.run_id = created.id


def _follow(client: Any, runs: dict[str, _Run], summary: BatchSummary, resubmits: int, poll_seconds: float,
            wait_seconds: float | None, settings: Settings, resubmit: Callable[[_Run], None]) -> None:
    """Read the runs' states until each has ended: a Completed run's report is read (then deleted),
    a Crashed one re-submitted (its finished chunks are cached), a Failed or Cancelled one failed."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    pending = {r.run_id: r for r in runs.values()}
    deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
    waiting_said = False
    started = time.monotonic()
    errors = 0
    while pending:
        ids = list(pending)  # a page at a time: the server answers at most PAGE runs a request
        try:
            flow_runs = [r for at in range(0, len(ids), PAGE) for r in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids[at:at + PAGE])), limit=PAGE)]
            errors = 0
        except Exception as exc:  # httpx's errors, Prefect's HTTP status errors: the runs go on meanwhile
            errors += 1
            if errors >= FOLLOW_ERRORS:
                raise PoolError(f"lost the Prefect server while following the runs ({describe_error(exc)}); "
                                "they go on; the same command later codes again only what is not cached") from None
            time.sleep(poll_seconds)
            continue
        cached = _cached(settings)
        for flow_run in flow_runs:
            run = pending[flow_run.id]
            _advance(run, cached)
            state = flow_run.state
            if state is None or not state.is_final():
                continue
            del pending[flow_run.id]
            if state.is_crashed() and run.attempts <= resubmits:
                progress.emit("run_resubmitted", run.path, attempt=run.attempts + 1, reason=state.message or "crashed")
                summary.resubmitted.append(run.path)
                resubmit(run)
                pending[run.run_id] = run
            else:
                _ended(run, state, summary, settings)
        if not waiting_said and pending and time.monotonic() - started > 30 and all(
                (r.state is None or r.state.is_scheduled()) for r in flow_runs):
            waiting_said = True
            progress.emit("note", "no worker has started a run for 30 s: is one polling the pool? "
                                  "prefect worker start --pool NAME")
        if pending and deadline is not None and time.monotonic() > deadline:
            for run in pending.values():
                run.going = True
                summary.transcripts_failed.append((run.path, f"its run did not end within {wait_seconds:g} s; it goes "
                                                             "on, and the same command again follows it"))
                progress.emit("transcript_done", run.path, ok=False)
            return
        if pending:
            time.sleep(poll_seconds)


def _cached(settings: Settings) -> set[str]:
    try:
        return set(os.listdir(settings.results_path))
    except OSError:
        return set()


def _advance(run: _Run, cached: set[str]) -> None:
    """Progress as the local bar shows it: a chunk is done when its result is in the shared cache."""
    for key in run.keys:
        if key not in run.done_keys and key in cached:
            run.done_keys.add(key)
            progress.emit("chunk_done", key)


def _ended(run: _Run, state: Any, summary: BatchSummary, settings: Settings) -> None:
    if state.is_completed():
        try:
            run.report = _read_report(state)
        except Exception as exc:
            summary.transcripts_failed.append((run.path, f"its run ended but its result could not be read "
                                                         f"({describe_error(exc)}); is the data folder shared?"))
            progress.emit("transcript_done", run.path, ok=False)
            return
        summary.transcripts_ok.append(run.path)
        progress.emit("transcript_done", run.path, ok=True)
        return
    problem = _failure(settings, run.run_id)
    if problem is None:  # a run without a record: its state says it (a run of an earlier version, a crash)
        problem = (state.message or state.name or "failed").strip()
        problem = problem.split("TranscriptFailed: ", 1)[-1]  # "Flow run encountered an exception: TranscriptFailed: ..."
    if state.is_crashed():
        problem = f"its run crashed {run.attempts} times (last: {problem})"
    summary.transcripts_failed.append((run.path, problem))
    progress.emit("transcript_done", run.path, ok=False)


def _failure(settings: Settings, run_id: Any) -> str | None:
    """A failed run's one-line problem from its record in the shared results folder, deleted once read."""
    path = settings.results_path / FAILED_RECORD.format(run_id)
    record = failure_record(path)
    if record is not None:
        path.unlink(missing_ok=True)
    return record and record["problem"]


def _read_report(state: Any) -> TranscriptReport:
    """The run's result record from the shared results folder, deleted once read: the run folder
    here and the stores keep the codes, and nothing else needs it."""
    report = state.result()
    if not isinstance(report, TranscriptReport):
        raise TypeError(f"a {type(report).__name__}, not a transcript report")
    key = getattr(state.data, "storage_key", None)
    if key:
        Path(key).unlink(missing_ok=True)
    return report


def _add_report(summary: BatchSummary, run: _Run) -> None:
    report = run.report
    assert report is not None
    summary.cache_hits += report.cache_hits
    summary.rejected_quotes += report.rejected_quotes
    for kind, n in report.codes.items():
        summary.codes[kind] = summary.codes.get(kind, 0) + n
    for key in ("llm_calls", "prompt_tokens", "completion_tokens", "llm_seconds"):
        setattr(summary, key, type(getattr(summary, key))(getattr(summary, key) + report.meter.get(key, 0)))
    summary.llm_seconds = round(summary.llm_seconds, 1)

