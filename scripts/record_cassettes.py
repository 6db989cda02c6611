#!/usr/bin/env python3
"""Re-record the cassettes from the real default model and re-score the gold set.

    pip install -e '.[local,server,test]'
    python scripts/record_cassettes.py                     # fails if the gold scores drop
    python scripts/record_cassettes.py --update-baseline   # accept the new scores (review the diff)
    python scripts/record_cassettes.py --rescore           # only [decide] changed: re-score the
                                                           # recorded answers, no server, no model

Starts llama.cpp's OpenAI-compatible server (llama-cpp-python[server]) on the
default model at 127.0.0.1:8765, deletes the old cassettes, and runs the flow
and gate tests in record mode, so every cassette holds the server's real
answers to today's prompts. Takes 22 to 91 minutes on 2 CPU cores (the same machine runs up to
four times slower on some days).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import CASSETTES, RECORD_HOST, RECORD_MODEL, RECORD_PORT  # noqa: E402

# Each recorded test file and the cassette folder it owns.
RECORDED_TESTS = {"tests/test_flow.py": "flow", "tests/test_eval_gate.py": "eval"}


def start_server(threads: int) -> subprocess.Popen:
    from jtbd.coding.model_files import ensure_default_model

    model = ensure_default_model()
    # llama.cpp's server, launched through serve_llama.py so top_logprobs cost one row, not the whole context.
    cmd = [sys.executable, str(ROOT / "scripts" / "serve_llama.py"), "--model", str(model), "--model_alias", RECORD_MODEL,
           "--n_ctx", "6144", "--n_threads", str(threads), "--n_threads_batch", str(threads),
           "--n_batch", "512", "--host", RECORD_HOST, "--port", str(RECORD_PORT)]
    print("starting:", " ".join(cmd), flush=True)
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"llama.cpp server exited with status {server.returncode}; "
                             "is llama-cpp-python[server] installed? pip install -e '.[local,server,test]'")
        try:
            urllib.request.urlopen(f"http://{RECORD_HOST}:{RECORD_PORT}/v1/models", timeout=5)
            return server
        except OSError:
            time.sleep(2)
    server.kill()
    raise SystemExit("llama.cpp server did not answer within 5 minutes")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update-baseline", action="store_true",
                        help="write the re-recorded gold scores to eval/baseline-{dev,test}.json")
    parser.add_argument("--rescore", action="store_true",
                        help="replay the recorded answers and write the gold scores to the baseline: for a change "
                             "to [decide] in prompts/passes.toml, which changes no request")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("tests", nargs="*", help=f"test files to re-record (default: {' '.join(RECORDED_TESTS)})")
    args = parser.parse_args()
    args.tests = args.tests or list(RECORDED_TESTS)
    unknown = [t for t in args.tests if t not in RECORDED_TESTS]
    if unknown:
        parser.error(f"not a recorded test file: {', '.join(unknown)}")
    # The pytest script, not "python -m pytest": that would put the repository root first on sys.path,
    # where ./jtbd shadows the installed package and its jtbd.coding, jtbd.eval ... mapping.
    pytest = str(Path(sys.executable).with_name("pytest"))
    if args.rescore:
        env = {**os.environ, "JTBD_CASSETTE_MODE": "none", "JTBD_UPDATE_BASELINE": "1"}
        return subprocess.call([pytest, "-p", "no:cacheprovider", "tests/test_eval_gate.py"], cwd=ROOT, env=env)
    server = start_server(args.threads)
    try:
        for test in args.tests:
            shutil.rmtree(CASSETTES / RECORDED_TESTS[test], ignore_errors=True)
        env = {**os.environ, "JTBD_CASSETTE_MODE": "once"}
        if args.update_baseline:
            env["JTBD_UPDATE_BASELINE"] = "1"
        return subprocess.call([pytest, "-p", "no:cacheprovider", "-m", "not live", *args.tests],
                               cwd=ROOT, env=env)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
