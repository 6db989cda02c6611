"""`jtbd deploy` and `jtbd code --pool` without servers: the options checked before anything is
copied or submitted, what a run's parameters carry, and what `jtbd forget` removes of a pool run;
with the session's Prefect test server alone (no worker), that a second submission follows the
runs a stopped one left going. The other servers are in tests/test_scale_out.py."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

import jtbd.cli
from jtbd.flows import pool
from jtbd.schemas.codebook import CodedTranscript
from jtbd.settings import Settings

TRANSCRIPT = "Interviewer: Why did you switch?\nDana: The old tool lost my notes twice.\n"


@pytest.fixture()
def run(monkeypatch, capsys):
    from rich.console import Console

    monkeypatch.setattr(jtbd.cli, "console", Console(stderr=True, width=1000))

    def run(*argv: str) -> tuple[int, str, str]:
        status = jtbd.cli.main(list(argv))
        said = capsys.readouterr()
        return status, said.out, said.err

    return run


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the socket is: nothing listens there


@pytest.fixture()
def interview(tmp_path: Path) -> Path:
    path = tmp_path / "interviews" / "call-a.txt"
    path.parent.mkdir()
    path.write_text(TRANSCRIPT)
    return path


def test_pool_needs_a_chroma_server(run, interview, tmp_path):
    status, _, err = run("code", str(interview), "--pool", "team", "--data-dir", str(tmp_path / "data"))
    assert status == 2
    assert "--pool is 'team': the workers need one Chroma server" in err and "--chroma-url" in err
    assert not (tmp_path / "data").exists()


def test_pool_needs_a_prefect_server_url(run, interview, tmp_path):
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        status, _, err = run("code", str(interview), "--pool", "team", "--chroma-url", "http://127.0.0.1:9",
                             "--data-dir", str(tmp_path / "data"))
    assert status == 2
    assert "--pool needs a Prefect server that the workers share: set PREFECT_API_URL" in err


def test_an_unreachable_prefect_server_fails_before_any_model_call_or_copy(run, interview, tmp_path):
    api = f"http://127.0.0.1:{_closed_port()}/api"
    model = f"http://127.0.0.1:{_closed_port()}/v1"  # unreachable too: the Prefect check comes first
    started = time.monotonic()
    with temporary_settings(updates={PREFECT_API_URL: api}):
        status, _, err = run("code", str(interview), "--pool", "team", "--chroma-url", "http://127.0.0.1:9",
                             "--backend", "openai", "--base-url", model, "--model", "m",
                             "--data-dir", str(tmp_path / "data"))
    assert status == 2
    assert f"PREFECT_API_URL is '{api}': no Prefect server answers there" in err
    assert "model server" not in err and time.monotonic() - started < pool.TIMEOUT + 5
    assert not (tmp_path / "data").exists()  # nothing copied for workers


def test_deploy_checks_its_options_before_the_server(run):
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        status, _, err = run("deploy", "--pool", "team", "--crash-after", "45")
        assert status == 2 and "--crash-after is 45: it must be at least 60 seconds" in err
        status, _, err = run("deploy", "--pool", "team")
        assert status == 2 and "set PREFECT_API_URL" in err
    api = f"http://127.0.0.1:{_closed_port()}/api"
    with temporary_settings(updates={PREFECT_API_URL: api}):
        status, _, err = run("deploy", "--pool", "team")
    assert status == 2 and "no Prefect server answers there" in err


def test_deploy_help_shows_an_example(run):
    status, shown, _ = run("deploy", "--help")
    assert status == 0 and "jtbd deploy --pool interviews" in shown


def test_settings_survive_the_trip_through_a_runs_parameters(tmp_path):
    # The submitting machine sends Settings.public() as JSON; the worker validates it against the flow.
    settings = Settings(backend="openai", model="m", base_url="http://127.0.0.1:8080/v1", chroma_url="http://x:8000",
                        interviewers=("Maya", "Tom"), timeout=12.5, data_dir=str(tmp_path), study="s-1")
    sent = {"transcript_id": "call-a", "source_path": "/x/call-a.txt", "source_sha256": "0" * 64,
            "input_path": "/x/in/call-a.txt", "settings": settings.public() | {"interviewers": ["Maya", "Tom"]},
            "interviewers": ["Maya"], "interviewees": []}
    import json

    received = pool.code_transcript.validate_parameters(json.loads(json.dumps(sent)))
    assert received["settings"] == settings and isinstance(received["settings"], Settings)


def test_a_run_refuses_result_storage_outside_the_data_folder(tmp_path):
    settings = Settings(data_dir=str(tmp_path / "shared"))
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(tmp_path / "elsewhere")}):
        with pytest.raises(pool.TranscriptFailed, match="not in the data folder's"):
            pool._check_result_storage(settings)
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(settings.results_path)}):
        pool._check_result_storage(settings)


def _report_record(results: Path, transcript_id: str, name: str) -> Path:
    from prefect.results import ResultRecord, ResultRecordMetadata

    from jtbd.flows.code_batch import SuccessOnlySerializer

    report = pool.TranscriptReport(transcript_id, CodedTranscript(transcript=transcript_id, source="x.txt", codes=[]))
    serializer = SuccessOnlySerializer()
    record = ResultRecord(result=report, metadata=ResultRecordMetadata(storage_key=str(results / name),
                                                                        serializer=serializer))
    results.mkdir(parents=True, exist_ok=True)
    (results / name).write_bytes(record.serialize())
    return results / name


def test_forget_removes_a_transcripts_copies_and_unread_run_results_only(run, tmp_path):
    data = tmp_path / "data"
    mine = _report_record(data / "results", "call-a", "0f3c")
    theirs = _report_record(data / "results", "call-b", "9a1e")
    for tid in ("call-a", "call-b"):
        copy = pool.inputs_folder(data, tid) / "batch1" / f"{tid}.txt"
        copy.parent.mkdir(parents=True)
        copy.write_text(TRANSCRIPT)
        (data / "results" / pool.FAILED_RECORD.format(tid)).write_text(
            json.dumps({"transcript_id": tid, "problem": "malformed WebVTT: line 1: ... got 'their words'"}))
    status, said, _ = run("forget", "call-a", "--data-dir", str(data))
    assert status == 0
    assert "call-a: 2 unread pool run results removed" in said and "call-a: 1 file copied for pool workers removed" in said
    assert not mine.exists() and not pool.inputs_folder(data, "call-a").exists()
    assert not (data / "results" / pool.FAILED_RECORD.format("call-a")).exists()
    assert theirs.exists() and (pool.inputs_folder(data, "call-b") / "batch1" / "call-b.txt").exists()
    assert (data / "results" / pool.FAILED_RECORD.format("call-b")).exists()  # another's run may still read it


def test_inputs_folders_are_per_transcript_and_hide_the_id():
    a, b = pool.inputs_folder("/d", "p01/interview"), pool.inputs_folder("/d", "p02/interview")
    assert a != b and a.parent == Path("/d/inputs") and "interview" not in a.name


class _Runs:
    """A Prefect client that answers each run's states from a script: the crashes a killed worker
    leaves are injected here; tests/test_scale_out.py makes a real one."""

    def __init__(self, script: dict[str, list]) -> None:
        self.script = script

    def read_flow_runs(self, flow_run_filter, limit):
        from types import SimpleNamespace

        return [SimpleNamespace(id=i, state=self.script[i].pop(0) if len(self.script[i]) > 1 else self.script[i][0])
                for i in flow_run_filter.id.any_]


def _pending(tid: str, run_id, tmp_path: Path) -> "pool._Run":
    from jtbd.coding.identity import SourceFile
    from jtbd.schemas.transcript import Transcript

    transcript = Transcript(id=tid, source=f"{tid}.txt", format="txt", text="", turns=[], interviewers=[])
    return pool._Run(f"/x/{tid}.txt", transcript, SourceFile(f"/x/{tid}.txt", "0"), [], run_id=run_id, attempts=1)


def test_crashed_runs_are_submitted_again_up_to_the_limit_then_fail_in_one_line(tmp_path):
    from prefect.states import Completed, Crashed, Failed, Running

    from jtbd.coding import progress
    from jtbd.flows.code_batch import BatchSummary

    done = pool.TranscriptReport("call-a", CodedTranscript(transcript="call-a", source="call-a.txt", codes=[]))
    import uuid

    named = {}  # run ids are UUIDs: "a2" is call-a's second run
    uid = lambda name: named.setdefault(name, uuid.uuid4())  # noqa: E731
    script = {uid("a1"): [Running(), Crashed(message="no heartbeat for 60 s")], uid("a2"): [Completed(data=done)],
              uid("b1"): [Crashed()], uid("b2"): [Crashed()], uid("b3"): [Crashed(message="no heartbeat for 60 s")],
              uid("c1"): [Failed(message="Flow run encountered an exception: TranscriptFailed: the model server "
                                         "answered 500 four times")]}
    runs = {tid: _pending(tid, uid(f"{tid[-1]}1"), tmp_path) for tid in ("call-a", "call-b", "call-c")}
    submitted = []

    def resubmit(run):
        run.attempts += 1
        run.run_id = uid(f"{run.transcript.id[-1]}{run.attempts}")
        submitted.append(f"{run.transcript.id[-1]}{run.attempts}")

    events = []
    stop = progress.listen(lambda event, *args, **kwargs: events.append((event, args, kwargs)))
    summary = BatchSummary()
    try:
        pool._follow(_Runs(script), runs, summary, resubmits=2, poll_seconds=0, wait_seconds=30,
                     settings=Settings(data_dir=str(tmp_path)), resubmit=resubmit)
    finally:
        stop()
    assert sorted(submitted) == ["a2", "b2", "b3"]  # call-b: the first run and two re-submissions, all crashed
    assert sorted(summary.resubmitted) == ["/x/call-a.txt", "/x/call-b.txt", "/x/call-b.txt"]
    assert summary.transcripts_ok == ["/x/call-a.txt"] and runs["call-a"].report is done
    assert sorted(summary.transcripts_failed) == [
        ("/x/call-b.txt", "its run crashed 3 times (last: no heartbeat for 60 s)"),
        ("/x/call-c.txt", "the model server answered 500 four times")]
    assert ("run_resubmitted", ("/x/call-a.txt",), {"attempt": 2, "reason": "no heartbeat for 60 s"}) in events


def test_a_failed_runs_problem_travels_in_the_results_folder_not_in_prefect_s_database(prefect_harness, tmp_path):
    # The worker's flow, run here against the session's real Prefect test server, on a file whose
    # malformed first line the problem quotes: the server keeps the run's state, so the words must
    # not be in it; the submitting machine reads them from the shared results folder, then deletes them.
    from prefect import get_client

    from conftest import server_settings
    from jtbd.coding import progress
    from jtbd.flows.code_batch import BatchSummary

    settings = server_settings(tmp_path / "data")
    words = "Priya Ramaswamy told me the old bank lost our savings"
    bad = tmp_path / "call-09.vtt"
    bad.write_text(words + "\n\n00:00:01.000 --> 00:00:04.000\n<v Ana>It was.\n", encoding="utf-8")
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(settings.results_path)}):
        state = pool.code_transcript(transcript_id="call-09", source_path=str(bad), source_sha256="0" * 64,
                                     input_path=str(bad), settings=settings, interviewers=[], interviewees=[],
                                     return_state=True)
    assert state.is_failed()
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        messages = [s.message or "" for s in client.read_flow_run_states(run_id)]
    assert any("TranscriptFailed" in m for m in messages) and not [m for m in messages if "Priya" in m]
    record = settings.results_path / pool.FAILED_RECORD.format(run_id)
    assert record.stat().st_mode & 0o077 == 0  # the owner's only

    run = _pending("call-09", run_id, tmp_path)
    summary = BatchSummary()
    stop = progress.listen(lambda *a, **k: None)
    try:
        pool._ended(run, state, summary, settings)
    finally:
        stop()
    [(_, problem)] = summary.transcripts_failed
    assert "line 1" in problem and words in problem  # the researcher is told what is wrong
    assert not record.exists()


def test_the_pool_benchmark_counts_the_model_servers_busy_time_once_when_requests_overlap():
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark", Path(__file__).parents[1] / "scripts" / "benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    # two workers' requests: 0-2 and 1-3 overlap (3 s busy), 5-6 alone; a request inside another adds nothing
    assert benchmark._busy_seconds([(5, 6), (0, 2), (1, 3), (1.5, 2.5)]) == 4
    assert benchmark._busy_seconds([]) == 0


def test_a_second_submission_follows_the_runs_a_stopped_one_left_going(prefect_harness, tmp_path):
    # A real Prefect server (the session's harness), no worker: the runs stay Scheduled, as they do
    # while the workers are busy. The submitting machine stops following (its deadline here, Ctrl-C or
    # a lost laptop in life); the same command again must follow those runs, not code the files twice.
    from prefect import get_client

    from conftest import server_settings

    folder = tmp_path / "interviews"
    folder.mkdir()
    for name in ("call-a", "call-b"):
        (folder / f"{name}.txt").write_text(TRANSCRIPT.replace("Dana", name.title()))
    name = f"follow-{tmp_path.name[-12:]}"
    deployed = pool.deploy(name, crash_after=60)
    settings = server_settings(tmp_path / "data")
    paths = sorted(str(p) for p in folder.iterdir())

    def submit(settings, out):
        return pool.submit_batch([str(folder)], settings, str(tmp_path / out), name, poll_seconds=0.2,
                                 wait_seconds=1)

    def runs():
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        with get_client(sync_client=True) as client:
            return client.read_flow_runs(deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[deployed.deployment_id])))

    first = submit(settings, "run-1")
    assert [p for p, _ in first.transcripts_failed] == paths
    assert all("it goes on, and the same command again follows it" in why for _, why in first.transcripts_failed)
    submitted = {r.parameters["transcript_id"]: r.id for r in runs()}
    assert sorted(submitted) == ["call-a", "call-b"]
    for r in runs():  # its copies stay for the runs' workers
        assert Path(r.parameters["input_path"]).read_text() == (folder / f"{r.parameters['transcript_id']}.txt").read_text()

    again = submit(settings, "run-2")
    assert sorted(again.followed) == paths and again.resubmitted == []
    assert {r.parameters["transcript_id"]: r.id for r in runs()} == submitted  # no second run of either

    # Other settings code the files differently: that is a new run, not the earlier one.
    other = submit(server_settings(tmp_path / "data", chunk_tokens=900), "run-3")
    assert other.followed == []
    assert len(runs()) == 4

    # A run whose copy is gone (forgotten meanwhile) cannot be followed: the file is submitted anew.
    for r in runs():
        if r.parameters["transcript_id"] == "call-a" and r.id == submitted["call-a"]:
            Path(r.parameters["input_path"]).unlink()
    last = submit(settings, "run-4")
    assert last.followed == [str(folder / "call-b.txt")]
    with get_client(sync_client=True) as client:
        for r in runs():
            client.delete_flow_run(r.id)
