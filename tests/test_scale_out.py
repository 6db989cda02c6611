"""Scale-out with the real servers (issue 26, docs/scale-out.md): Prefect's server, Chroma's server,
llama.cpp's server with the default model, PostgreSQL from Debian's packages and two Prefect
process workers, all on loopback, started here (tests/scale_out_services.py).

A batch of two short interviews (of two chunks and one) is coded once in process as the
reference, then submitted to the pool with `jtbd code --pool`. While a worker holds a run with one
chunk finished and one not, the worker and its run's process are SIGKILLed (a machine lost). The run's
heartbeats stop, Prefect's automation (made by `jtbd deploy`) marks it Crashed, `jtbd code --pool`
submits it again and the other worker finishes it. The model server is reached through a proxy
that keeps every request, so the calls after the kill are counted chunk by chunk, and that has
the server forget its kept prompt before each one, so an answer depends on its request alone and
the pool run's codes can be compared with the reference's exactly (scale_out_services.CountingProxy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

# In plain `pytest` (and so in CI): the README's test command installs Debian's postgresql. Its
# codes-equal-the-reference check compares generated job stories of two runs, so the proxy has the
# server forget its kept prompt before each request. `pytest -m 'not scale_out'` leaves it out.
pytestmark = pytest.mark.scale_out

sys.path.insert(0, str(Path(__file__).parent))
from scale_out_services import BIN, MODEL_ALIAS, Services, descendants, kill_tree  # noqa: E402

from jtbd.coding.chunk import chunk_transcript  # noqa: E402
from jtbd.coding.parse import load_transcript  # noqa: E402
from jtbd.coding.sentences import split_sentences  # noqa: E402

TRANSCRIPTS = {
    "call-north.txt": """Interviewer: When did you first think about replacing the old planner?
Rosa: The paper planner fell apart in January, and I missed two client calls that week.
Interviewer: And then?
Rosa: My sister showed me the calendar app on her phone. I still worried my notes would get lost.
""",
    "call-south.txt": """Interviewer: What was going on when you started looking?
Omar: Our van broke down three times in one month. I was nervous about the monthly fee of the leasing plan.
""",
}
CHUNK_TOKENS, OVERLAP_TOKENS = 60, 5  # call-north: two chunks (its run is killed between them); call-south: one
CHUNKS = {"call-north": 2, "call-south": 1}
POOL = "scale-test"
CRASH_AFTER = 60  # the shortest `jtbd deploy` allows: two heartbeats of 30 s
KILL_WITHIN = 900  # seconds to see a run with one chunk done and one not
BATCH_WITHIN = 1500  # seconds for the pool batch, crash detection and re-submission included


def _model_flags(base_url: str) -> list[str]:
    return ["--backend", "openai", "--base-url", base_url, "--model", MODEL_ALIAS, "--llm-mode", "json_object_schema",
            "--extra-body", '{"repeat_penalty": 1.0}', "--chunk-tokens", str(CHUNK_TOKENS),
            "--overlap-tokens", str(OVERLAP_TOKENS), "--concurrency", "1", "--timeout", "900"]


def _jtbd(services: Services, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "jtbd"), *args], env={**os.environ, **services.env}, capture_output=True,
                          text=True, timeout=timeout, cwd=services.root)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    services = Services(tmp_path_factory.mktemp("scale-out"))
    try:
        started = time.monotonic()
        services.prefect_server()
        chroma = services.chroma_server()
        database = services.postgres()
        # JTBD_TEST_MODEL_THREADS: fewer threads than cores on a machine shared with other work
        proxy = services.model_server(threads=int(os.environ.get("JTBD_TEST_MODEL_THREADS") or os.cpu_count() or 2),
                                      fresh_prompts=True)  # each answer a function of its request alone
        yield services, chroma, database, proxy, round(time.monotonic() - started, 1)
    finally:
        services.close()


def _chunks(folder: Path) -> dict[str, list[set[str]]]:
    """Each interview's chunks, as the sentences only that chunk holds (what tells its requests apart)."""
    out = {}
    for name in TRANSCRIPTS:
        transcript = load_transcript(folder / name)
        chunks = chunk_transcript(transcript, CHUNK_TOKENS, OVERLAP_TOKENS)
        sentences = split_sentences(transcript)
        inside = [{s.text for s in sentences if c.char_start <= s.char_start < c.char_end} for c in chunks]
        out[Path(name).stem] = [mine - set().union(*(o for o in inside if o is not mine)) for mine in inside]
    return out


def _chunk_of(request: dict, chunks: dict[str, list[set[str]]]) -> tuple[str, int]:
    excerpt = request["messages"][-1]["content"]
    found = [(tid, i) for tid, parts in chunks.items() for i, unique in enumerate(parts)
             if unique and all(s in excerpt for s in unique)]
    assert len(found) == 1, f"a model request that names {len(found)} chunks"
    return found[0]


def _cached_chunks(results: Path) -> dict[str, str]:
    """Cached chunk result file name -> its chunk key (<transcript id>#<n>)."""
    from prefect.results import ResultRecord

    import jtbd.flows.code_batch  # noqa: F401  (registers the serializer the records name)

    return {p.name: ResultRecord.deserialize(p.read_bytes()).result.chunk_key
            for p in results.glob("jtbd-chunk-*")} if results.is_dir() else {}


def _flow_runs(api: str, **state: list[str]) -> list[dict]:
    body = {"flow_runs": {"state": {"type": {"any_": state["types"]}}}} if state else {}
    response = httpx.post(f"{api}/flow_runs/filter", json={**body, "limit": 200}, timeout=30)
    response.raise_for_status()
    return [run for run in response.json() if run["parameters"].get("transcript_id")]


def _kill_worker_holding_partial_run(services: Services, workers: dict[str, subprocess.Popen], data: Path,
                                     keys: dict[str, str], chunks_per_transcript: dict[str, int],
                                     submitter: subprocess.Popen, log: Path) -> tuple[float, str, set[str]]:
    """SIGKILL the worker (and its run's process) of a Running run whose transcript has some but not
    all chunks in the cache; the kill time, the transcript and the chunks cached at that moment."""
    api = services.env["PREFECT_API_URL"]
    deadline = time.monotonic() + KILL_WITHIN
    while time.monotonic() < deadline:
        assert submitter.poll() is None, f"jtbd code --pool ended before a run was interrupted: {log.read_text()[-3000:]}"
        cached = {keys[name] for name in os.listdir(data / "results") if name in keys} \
            if (data / "results").is_dir() else set()
        for run in _flow_runs(api, types=["RUNNING"]):
            tid = run["parameters"]["transcript_id"]
            done = {k for k in cached if k.startswith(tid + "#")}
            pid = int(str(run.get("infrastructure_pid") or "0").rpartition(":")[2] or 0)
            if not (0 < len(done) < chunks_per_transcript[tid]) or not pid:
                continue
            holder = next((name for name, w in workers.items() if pid in descendants(w.pid)), None)
            if holder is None:
                continue
            kill_tree(workers[holder])
            killed_at = time.time()
            cached_now = {keys[n] for n in os.listdir(data / "results") if n in keys}
            return killed_at, tid, cached_now
        time.sleep(0.5)
    raise AssertionError(f"no run with one chunk done and one not within {KILL_WITHIN} s")


def test_a_killed_worker_s_transcript_is_resubmitted_and_only_its_unfinished_chunks_call_the_model(
        servers, tmp_path):
    services, chroma, database, proxy, startup = servers
    timings = {"servers_started_s": startup}
    folder = tmp_path / "interviews"
    folder.mkdir()
    for name, text in TRANSCRIPTS.items():
        (folder / name).write_text(text)
    chunks = _chunks(folder)
    assert {tid: len(parts) for tid, parts in chunks.items()} == CHUNKS and all(map(all, chunks.values()))

    # The reference: the same batch in process, uninterrupted, against the same model server.
    started = time.monotonic()
    reference = _jtbd(services, "code", str(folder), "--data-dir", str(tmp_path / "reference"),
                      "--out", str(tmp_path / "reference-run"), *_model_flags(proxy.url), timeout=BATCH_WITHIN)
    assert reference.returncode == 0, reference.stderr[-3000:]
    timings["reference_s"] = round(time.monotonic() - started, 1)
    reference_requests = [_chunk_of(body, chunks) for _, body in proxy.snapshot()]
    per_chunk = {c: reference_requests.count(c) for c in set(reference_requests)}
    every_chunk = {(tid, i) for tid, n in CHUNKS.items() for i in range(n)}
    assert set(per_chunk) == every_chunk
    keys = _cached_chunks(tmp_path / "reference" / "results")  # the same keys: same model input, same server
    assert len(keys) == len(every_chunk)

    # A Prefect server without the pool's deployment: refused before anything is copied or submitted.
    undeployed = _jtbd(services, "code", str(folder), "--pool", POOL, "--data-dir", str(tmp_path / "shared"),
                       "--chroma-url", chroma, *_model_flags(proxy.url), timeout=300)
    assert undeployed.returncode == 2
    assert f"has no deployment code_transcript/{POOL}; run jtbd deploy --pool {POOL}" in undeployed.stderr
    assert not (tmp_path / "shared").exists()

    deployed = _jtbd(services, "deploy", "--pool", POOL, "--crash-after", str(CRASH_AFTER), timeout=300)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    workers = {name: services.worker(POOL, name) for name in ("worker-1", "worker-2")}

    data = tmp_path / "shared"  # the data folder every worker and the submitting machine share
    calls_before = len(proxy.snapshot())
    started = time.monotonic()
    submitter, log = services.start("submit", [str(BIN / "jtbd"), "code", str(folder), "--pool", POOL,
                                               "--data-dir", str(data), "--chroma-url", chroma, "--db", database,
                                               "--out", str(tmp_path / "pool-run"), *_model_flags(proxy.url)])
    try:
        killed_at, killed, cached_at_kill = _kill_worker_holding_partial_run(
            services, workers, data, keys, CHUNKS, submitter, log)
        timings["killed_after_s"] = round(time.monotonic() - started, 1)
        submitter.wait(timeout=BATCH_WITHIN)
    finally:
        if submitter.poll() is None:
            kill_tree(submitter)
    timings["pool_batch_s"] = round(time.monotonic() - started, 1)
    output = log.read_text()
    assert submitter.returncode == 0, output[-3000:]
    assert f"re-submitted: {folder / (killed + '.txt')}" in output

    # Every transcript coded once: one Completed run each, the killed one Crashed, then done again.
    api = services.env["PREFECT_API_URL"]
    completed = [r["parameters"]["transcript_id"] for r in _flow_runs(api, types=["COMPLETED"])]
    assert sorted(completed) == sorted(chunks)
    assert [r["parameters"]["transcript_id"] for r in _flow_runs(api, types=["CRASHED"])] == [killed]
    summary = json.loads((tmp_path / "pool-run" / "summary.json").read_text())
    assert sorted(summary["transcripts_ok"]) == sorted(str(folder / n) for n in TRANSCRIPTS)
    assert summary["transcripts_failed"] == [] and summary["resubmitted"] == [str(folder / (killed + ".txt"))]

    # The codes equal the uninterrupted reference's, in Chroma's server and in PostgreSQL, none twice.
    from jtbd.coding.reviews import ReviewStore
    from jtbd.coding.store import open_collection

    ref_ids = open_collection(str(tmp_path / "reference" / "chroma"), "", "jtbd_codes").get(include=[])["ids"]
    pool_ids = open_collection("", chroma, "jtbd_codes").get(include=[])["ids"]
    assert ref_ids and sorted(pool_ids) == sorted(ref_ids)
    run_ids = [json.loads(line)["id"] for line in (tmp_path / "pool-run" / "codes.jsonl").read_text().splitlines()]
    assert sorted(run_ids) == sorted(ref_ids)  # the run folder written here, from the runs' results
    with ReviewStore.open(database) as reviews:
        assert reviews.transcript_ids("default") == sorted(chunks)
        suggested = [r.code["id"] for tid in chunks for r in reviews.reviewed("default", tid)]
    assert sorted(suggested) == sorted(ref_ids)

    # Model calls after the kill: only for chunks not cached at that moment, each at most as often as
    # the whole chunk took in the reference (the killed chunk is asked again from its start).
    after = [_chunk_of(body, chunks) for at, body in proxy.snapshot()[calls_before:] if at > killed_at]
    unfinished = every_chunk - {(k.split("#")[0], int(k.split("#")[1])) for k in cached_at_kill}
    assert set(after) <= unfinished, f"model calls after the kill for finished chunks: {set(after) - unfinished}"
    assert any(tid == killed for tid, _ in after)  # its unfinished chunk was coded again
    for chunk in set(after):
        assert after.count(chunk) <= per_chunk[chunk]
    timings |= {"reference_calls": len(reference_requests), "pool_calls": len(proxy.snapshot()) - calls_before,
                "calls_after_kill": len(after)}
    (tmp_path / "timings.json").write_text(json.dumps(timings))
    print("scale-out timings:", json.dumps(timings))

    # Nothing of the batch is left for the workers: the copies of the files and the runs' results are gone.
    assert not any((data / "inputs").rglob("*.txt"))
    assert sorted(p.name for p in (data / "results").iterdir()) == sorted(keys)
