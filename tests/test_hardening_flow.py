"""The hardening issue's flow-level cases, with real Prefect, real Chroma and real HTTP servers.

Failing model servers are real sockets on 127.0.0.1 (refused, silent, 429, 500): the openai
client sends its real request, with the Authorization header, to each of them.
"""

from __future__ import annotations

import base64
import http.server
import json
import shutil
import socket
import sys
import threading
from pathlib import Path

import pytest

from conftest import ROOT, run_paths as _run, server_settings

EXAMPLE = ROOT / "examples" / "espresso_machine.txt"
CASSETTE = "flow/espresso_machine.yaml"
SHORT = ROOT / "tests" / "data" / "short_interview.txt"
KEY = b"sk-test-SECRET-5f0c2a9e7d"


def _stored(settings):
    from jtbd.coding.store import open_collection

    return open_collection(str(settings.chroma_path), "", settings.collection).get(include=["metadatas"])


# --- 1. no key and no participant words on disk after a failed request ------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Status(http.server.BaseHTTPRequestHandler):
    status = 500

    def do_POST(self):  # noqa: N802 (the stdlib's name)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps({"error": {"message": "injected"}}).encode()
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _status_server(status: int):
    handler = type("Handler", (_Status,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v1", server.shutdown


def _silent_server():
    """Accepts connections and never answers: the client times out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    return f"http://127.0.0.1:{sock.getsockname()[1]}/v1", sock.close


def _refusing_server():
    return f"http://127.0.0.1:{_free_port()}/v1", lambda: None


def _forms(secret: bytes) -> list[bytes]:
    """The secret as it is, and base64-encoded at each of the three alignments inside a longer blob."""
    forms = [secret]
    for pad in range(3):
        encoded = base64.b64encode(b"x" * pad + secret)
        skip = (pad * 4 + 2) // 3 + 1
        forms.append(encoded[skip:-4])
    return forms


def _files_holding(roots, secret: bytes) -> list[str]:
    found = []
    for root in roots:
        for path in Path(root).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                flat = data.replace(b"\\n", b"").replace(b"\n", b"")  # base64 with its line breaks, raw or in JSON
                if any(form in data or form in flat for form in _forms(secret)):
                    found.append(str(path))
    return found


@pytest.mark.parametrize("server", [_refusing_server, _silent_server, lambda: _status_server(429),
                                    lambda: _status_server(500)], ids=["refused", "timeout", "429", "500"])
def test_a_failed_request_leaves_no_key_and_no_words_on_disk(prefect_harness, data_dir, tmp_path, monkeypatch,
                                                             server):
    monkeypatch.delenv("JTBD_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY.decode())
    monkeypatch.setattr("jtbd.flows.code_batch.RETRY_DELAYS", [0.1])
    base_url, stop = server()
    try:
        settings = server_settings(data_dir, base_url=base_url, task_retries=1, timeout=1.0)
        summary = _run([SHORT], settings, tmp_path / "run")
    finally:
        stop()
    [(path, problem)] = summary.transcripts_failed
    assert path == str(SHORT) and "\n" not in problem
    words = SHORT.read_text(encoding="utf-8").splitlines()[3].split(":", 1)[1].strip()[:40].encode()
    assert _files_holding([data_dir, tmp_path / "run"], KEY) == []
    assert _files_holding([data_dir], words) == []
    assert not settings.results_path.exists() or list(settings.results_path.iterdir()) == []


def test_prefect_s_database_holds_no_words_of_a_failed_transcript(prefect_harness, data_dir, tmp_path):
    # A failed task's exception becomes its state's message in Prefect's database, out of forget's
    # reach; a malformed line is quoted by the problem, so only the kind of error may go there.
    from prefect import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    from jtbd.flows.code_batch import run_batch

    words = "Priya Ramaswamy told me the old bank lost our savings"
    bad = tmp_path / "call-09.vtt"
    bad.write_text(words + "\n\n00:00:01.000 --> 00:00:04.000\n<v Ana>It was.\n", encoding="utf-8")
    import datetime

    started = datetime.datetime.now(datetime.timezone.utc)
    summary = run_batch([str(bad)], server_settings(data_dir), str(tmp_path / "run"))
    [(path, problem)] = summary.transcripts_failed
    assert path == str(bad) and "line 1" in problem and "Priya Ramaswamy" in problem  # said to the researcher
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(
            start_time=TaskRunFilterStartTime(after_=started)), limit=200)
        messages = [s.message or "" for run in runs for s in client.read_task_run_states(run.id)]
    assert any("TranscriptError" in m for m in messages)  # the failed parse is there, as a kind of error
    assert not [m for m in messages if "Priya" in m or "savings" in m]


# --- 2. forget finds everything that holds a transcript's words --------------------------------

@pytest.fixture()
def coded(prefect_harness, my_vcr, data_dir, tmp_path):
    settings = server_settings(data_dir)
    with my_vcr.use_cassette(CASSETTE):
        summary = _run([EXAMPLE], settings, tmp_path / "run1")
    assert summary.transcripts_ok == [str(EXAMPLE)], summary.transcripts_failed
    return settings, tmp_path / "run1"


def _cli(monkeypatch):
    from rich.console import Console

    import jtbd.cli

    monkeypatch.setattr(jtbd.cli, "out", Console(file=sys.stdout, width=300))
    monkeypatch.setattr(jtbd.cli, "console", Console(file=sys.stderr, width=300))
    return jtbd.cli.main


def test_forget_works_without_a_store_and_removes_cached_results(coded, capsys, monkeypatch):
    settings, _ = coded
    shutil.rmtree(settings.chroma_path)  # coded, but nothing reached the store (a failed store step)
    main = _cli(monkeypatch)
    assert main(["forget", "espresso_machine", "--data-dir", settings.data_dir]) == 0
    said = capsys.readouterr()
    assert "espresso_machine: 1 cached chunk result removed" in said.out
    assert list(settings.results_path.iterdir()) == []


def test_forget_leaves_none_of_the_participants_words_in_the_data_folder(coded, capsys, monkeypatch):
    settings, run = coded
    quotes = [json.loads(line)["quote"] for line in (run / "codes.jsonl").read_text().splitlines()]
    longest = max(quotes, key=len).encode()
    assert _files_holding([settings.data_dir], longest)  # the store and the cache hold it before
    old_failure = settings.results_path / "0f3c6b1e2d7a4c5b9e8f7a6b5c4d3e2f"  # an earlier version's record
    old_failure.write_text(json.dumps({"result": base64.encodebytes(longest).decode()}))
    main = _cli(monkeypatch)
    assert main(["forget", "espresso_machine", "--data-dir", settings.data_dir]) == 0
    said = capsys.readouterr().out
    assert "1 failure record of an earlier version removed" in said
    assert _files_holding([settings.data_dir], longest) == []


# --- 3. one id per source file, across batches --------------------------------------------------

def _participants(tmp_path, names=("p01", "p02")) -> list[Path]:
    """The example under one folder per participant, each file its own bytes (a trailing line) and
    the same words to the model, so the recorded answers replay for both."""
    paths = []
    for i, name in enumerate(names):
        path = tmp_path / "study" / name / "interview.txt"
        path.parent.mkdir(parents=True)
        path.write_text(EXAMPLE.read_text(encoding="utf-8") + "\n" * (i + 1), encoding="utf-8")
        paths.append(path)
    return paths


def test_same_named_files_in_participant_folders_are_kept_apart(prefect_harness, my_vcr, data_dir, tmp_path):
    first, second = _participants(tmp_path)
    settings = server_settings(data_dir)
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True):
        one = _run([tmp_path / "study"], settings, tmp_path / "run1")
        assert one.transcripts_ok == [str(first), str(second)], one.transcripts_failed
        # and across batches: the first participant coded again alone keeps its id and its codes
        again = _run([first], settings, tmp_path / "run2")
    stored = {m["transcript"] for m in _stored(settings)["metadatas"]}
    assert stored == {"p01/interview", "p02/interview"}
    assert (tmp_path / "run1" / "p01" / "interview.json").exists()
    assert (tmp_path / "run1" / "p02" / "interview.normalised.txt").exists()
    assert again.transcripts_ok == [str(first)] and again.cache_hits == again.chunks
    assert len(_stored(settings)["ids"]) == sum(one.codes.values())


def test_a_second_batch_with_another_file_of_the_same_name_does_not_replace_the_first(
        prefect_harness, my_vcr, data_dir, tmp_path):
    first, second = _participants(tmp_path)
    settings = server_settings(data_dir)
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True):
        _run([first], settings, tmp_path / "run1")
        _run([second], settings, tmp_path / "run2")
    by_transcript = {}
    for meta in _stored(settings)["metadatas"]:
        by_transcript.setdefault(meta["transcript"], set()).add(meta["source_path"])
    assert by_transcript == {"interview": {str(first)}, "p02/interview": {str(second)}}


# --- 9. each transcript reaches the store as soon as its own chunks are done ----------------------

def test_a_transcript_is_stored_before_the_next_ones_chunks_finish(prefect_harness, my_vcr, data_dir, tmp_path):
    from jtbd.coding import progress

    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    second.write_text(EXAMPLE.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    settings = server_settings(data_dir, concurrency=1)
    seen = {"first_chunk_done": False, "first_stored": threading.Event(), "waited": None}

    def listen(event, *args, **kwargs):
        if event == "chunk_done" and args[0].startswith("first#"):
            seen["first_chunk_done"] = True
        elif event == "transcript_done" and args[0] == str(first):
            seen["first_stored"].set()
        elif event == "sentence_rated" and seen["first_chunk_done"] and seen["waited"] is None:
            # the second transcript's chunk holds the only worker until the first is stored
            seen["waited"] = seen["first_stored"].wait(timeout=60)

    stop = progress.listen(listen)
    try:
        with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True):
            summary = _run([first, second], settings, tmp_path / "run")
    finally:
        stop()
    assert summary.transcripts_ok == [str(first), str(second)], summary.transcripts_failed
    assert seen["waited"] is True


# --- 8 and 10: an empty batch, and one line per bad input ---------------------------------------

def test_an_empty_batch_says_nothing_was_found(prefect_harness, data_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    main = _cli(monkeypatch)
    assert main(["code", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 1
    assert "no transcripts found" in capsys.readouterr().err


def test_each_bad_file_is_one_line_with_no_traceback(prefect_harness, data_dir, tmp_path, capfd, monkeypatch):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_text("")
    (bad / "broken.vtt").write_text("this is not WEBVTT\n")
    (bad / "nobody.txt").write_text("just some words with no speaker labels at all\n")
    (bad / "binary.json").write_bytes(b"\x00\x01\x02" * 100)
    main = _cli(monkeypatch)
    assert main(["code", str(bad), "--out", str(tmp_path / "run")]) == 1
    captured = capfd.readouterr()
    err = captured.err + captured.out
    assert "Traceback" not in err and "ERROR" not in err and "caused by" not in err and "_Problem" not in err
    for name in ("empty.txt", "broken.vtt", "nobody.txt", "binary.json"):
        lines = [line for line in err.splitlines() if name in line]
        assert len(lines) == 1, lines
        assert lines[0].count(name) == 1  # the path once, then the problem


# --- 7. the batch's size and time are said before the first model call ----------------------------

def test_the_batch_is_sized_before_any_model_call(prefect_harness, my_vcr, data_dir, tmp_path):
    from jtbd.coding import progress
    from jtbd.coding.parse import load_transcript
    from jtbd.coding.sentences import split_sentences
    from jtbd.cli import plan_line

    events = []
    stop = progress.listen(lambda event, *args, **kwargs: events.append((event, kwargs or args)))
    try:
        with my_vcr.use_cassette(CASSETTE):
            _run([EXAMPLE], server_settings(data_dir), tmp_path / "run1")
            _run([EXAMPLE], server_settings(data_dir), tmp_path / "run2")  # all cached now
    finally:
        stop()
    planned = [(i, kw) for i, (event, kw) in enumerate(events) if event == "batch_planned"]
    first_rating = next(i for i, (event, _) in enumerate(events) if event == "sentence_rated")
    [(at, fresh), (_, cached)] = planned
    assert at < first_rating
    assert fresh["sentences"] == len(split_sentences(load_transcript(EXAMPLE))) > 0
    assert fresh["uncached_chunks"] == fresh["chunks"] >= 1 and cached["uncached_chunks"] == 0
    totals = [args for event, args in events if event == "chunks_total"]  # the progress bar's denominator
    assert totals == [(fresh["chunks"],), (fresh["chunks"],)]
    assert fresh["seconds"] is None  # a server's speed is not known here
    line = plan_line(**{**fresh, "seconds": 4 * 3600.0})
    assert f"{fresh['sentences']} interviewee sentences" in line and "about 4.0 h on the local model" in line
