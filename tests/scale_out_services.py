"""The real servers of a scale-out (docs/scale-out.md), started on loopback for tests and benchmarks:
Prefect's server, Prefect process workers, Chroma's server, llama.cpp's server with the default
model behind a counting proxy, and PostgreSQL from Debian's packages.

Each is a child process in its own session, with its output in a log file; `Services.close`
ends every process it started, and their children, by process id. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
MODEL_ALIAS = "local"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with status {process.returncode} before answering "
                               f"{url}: {_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (OSError, urllib.error.URLError):
            time.sleep(0.5)
    raise RuntimeError(f"nothing answered {url} within {seconds:g} s: {_tail(log)}")


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return "(no log)"
    return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])


def _upstream(url: str, body: bytes | None, method: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=900) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 502, b'{"error": "upstream unreachable"}'


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc), children first found first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_tree(process: subprocess.Popen, sig: int = signal.SIGKILL) -> list[int]:
    """Send `sig` to a process we started and to every process below it; the pids signalled."""
    pids = [process.pid, *descendants(process.pid)]
    _signal(pids, sig)
    return pids


class CountingProxy:
    """Forwards every request to the model server and keeps each chat request's body and time, and
    its (start, end): the test counts the model calls a run made and which chunk each was for; the
    benchmark adds up the model server's busy time.

    With `fresh_prompts`, each chat request is sent alone, after a one-token prompt that makes
    llama.cpp's server drop the prompt it kept: its answer then depends on that request only.
    Otherwise the server re-reads only the part of a prompt after what it shares with the one
    before, and the logits differ in the last digits with where that split falls; two workers'
    requests interleave differently from one process's, so a near tie in a generated quote can
    go either way and the code ids of a pool run and its reference would differ by chance."""

    def __init__(self, upstream: str, fresh_prompts: bool = False) -> None:
        self.upstream = upstream.rstrip("/")
        self.fresh_prompts = fresh_prompts
        self.serial = threading.Lock()
        self.requests: list[tuple[float, dict]] = []
        self.timings: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self, body: bytes | None) -> None:
                if body is not None and proxy.fresh_prompts and self.path.endswith("/chat/completions"):
                    with proxy.serial:
                        forget = json.dumps({"prompt": "x", "max_tokens": 1, "model": json.loads(body).get("model")})
                        _upstream(proxy.upstream + "/v1/completions", forget.encode(), "POST")
                        status, payload = _upstream(proxy.upstream + self.path, body, "POST")
                else:
                    status, payload = _upstream(proxy.upstream + self.path, body, self.command)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:  # the client gave up (its timeout, or its process was killed)
                    pass

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                started = time.time()
                if self.path.endswith("/chat/completions"):
                    with proxy.lock:
                        proxy.requests.append((started, json.loads(body)))
                self._forward(body)
                if self.path.endswith("/chat/completions"):
                    with proxy.lock:
                        proxy.timings.append((started, time.time()))

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{HOST}:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def snapshot(self) -> list[tuple[float, dict]]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Services:
    """Processes started for one test or benchmark, in `root` (logs, homes, data)."""
    root: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    proxies: list[CountingProxy] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # what a client of these servers needs

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None, user: str | None = None,
              cwd: Path | None = None) -> tuple[subprocess.Popen, Path]:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **self.env, **(env or {})}, start_new_session=True,
                                       user=user, cwd=cwd or self.root)
        self.processes.append(process)
        return process, log

    def prefect_server(self, seconds: float = 240) -> str:
        port = free_port()
        home = self.root / "prefect-home"
        home.mkdir(parents=True, exist_ok=True)
        env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "PREFECT_SERVER_UI_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
        process, log = self.start("prefect-server", [str(BIN / "prefect"), "server", "start", "--host", HOST,
                                                     "--port", str(port), "--no-ui"], env)
        api = f"http://{HOST}:{port}/api"
        wait_http(api + "/health", seconds, process, log)
        self.env.update(env, PREFECT_API_URL=api)
        return api

    def chroma_server(self, seconds: float = 120) -> str:
        port = free_port()
        process, log = self.start("chroma", [str(BIN / "chroma"), "run", "--path", str(self.root / "chroma-server"),
                                             "--host", HOST, "--port", str(port)])
        url = f"http://{HOST}:{port}"
        wait_http(url + "/api/v2/heartbeat", seconds, process, log)
        return url

    def model_server(self, threads: int = 2, seconds: float = 300, fresh_prompts: bool = False) -> CountingProxy:
        """llama.cpp's server on the default model, behind a CountingProxy (its URL is the base URL)."""
        from jtbd.coding.model_files import ensure_default_model

        port = free_port()
        cmd = [sys.executable, str(ROOT / "scripts" / "serve_llama.py"), "--model", str(ensure_default_model()),
               "--model_alias", MODEL_ALIAS, "--n_ctx", "6144", "--n_threads", str(threads),
               "--n_threads_batch", str(threads), "--n_batch", "512", "--host", HOST, "--port", str(port)]
        process, log = self.start("llama-server", cmd)
        wait_http(f"http://{HOST}:{port}/v1/models", seconds, process, log)
        proxy = CountingProxy(f"http://{HOST}:{port}", fresh_prompts)
        self.proxies.append(proxy)
        return proxy

    def postgres(self, seconds: float = 120) -> str:
        """A PostgreSQL cluster of Debian's packages in this folder (as the postgres user when we are
        root: initdb refuses root), trusting loopback; the SQLAlchemy URL of its database jtbd."""
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
        pg = bins[-1].parent
        data, sockets = self.root / "pg-data", self.root / "pg-socket"
        user = "postgres" if os.geteuid() == 0 else None
        for folder in (data, sockets):
            folder.mkdir(parents=True, exist_ok=True)
            if user:
                _chown(folder, user)
        subprocess.run([str(pg / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
                       check=True, capture_output=True, user=user, timeout=seconds, cwd=data)
        port = free_port()
        process, log = self.start("postgres", [str(pg / "postgres"), "-D", str(data), "-p", str(port), "-h", HOST,
                                               "-k", str(sockets), "-c", "fsync=off"], user=user, cwd=data)
        deadline = time.monotonic() + seconds
        while subprocess.run([str(pg / "pg_isready"), "-h", HOST, "-p", str(port)], capture_output=True).returncode:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {_tail(log)}")
            time.sleep(0.5)
        subprocess.run([str(pg / "createdb"), "-h", HOST, "-p", str(port), "-U", "postgres", "jtbd"],
                       check=True, capture_output=True, timeout=seconds)
        return f"postgresql+psycopg://postgres@{HOST}:{port}/jtbd"

    def worker(self, pool: str, name: str, query_seconds: float = 2, limit: int = 1) -> subprocess.Popen:
        env = {"PREFECT_WORKER_QUERY_SECONDS": str(query_seconds), "PREFECT_WORKER_PREFETCH_SECONDS": "0"}
        process, _ = self.start(f"worker-{name}", [str(BIN / "prefect"), "worker", "start", "--pool", pool,
                                                   "--name", name, "--type", "process", "--limit", str(limit),
                                                   "--install-policy", "never"], env)
        return process

    def close(self) -> None:
        for proxy in self.proxies:
            proxy.close()
        trees = [[p.pid, *descendants(p.pid)] for p in reversed(self.processes) if p.poll() is None]
        for pids in trees:
            _signal(pids, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for pids in trees:  # and whatever a process left running below it
            _signal([pid for pid in pids if Path(f"/proc/{pid}").exists()], signal.SIGKILL)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _chown(path: Path, user: str) -> None:
    import shutil

    shutil.chown(path, user=user)
    for parent in path.parents:  # the postgres user must reach the folder: search permission on the way
        if parent in (Path("/"), Path("/tmp")):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o011)
