"""Hardening: inputs that are no transcript files (FIFOs, devices, huge files), and options that
would fail only after the model work: refused before any work, in one line, with exit status 2."""

from __future__ import annotations

import http.server
import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import isolate_env
from jtbd.coding.inputs import discover
from jtbd.coding.parse import TranscriptError, load_transcript
from jtbd.settings import Settings, load_settings

TRANSCRIPT = "Interviewer: What were you using before?\nPriya: A shared spreadsheet, and I hated it.\n"


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch) -> Path:
    """No JTBD_*/OPENAI_* variables, an empty home, an empty working directory and data folder."""
    isolate_env(tmp_path, monkeypatch)
    monkeypatch.setenv("JTBD_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def _transcript(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TRANSCRIPT, encoding="utf-8")
    return path


def _with_deadline(fn, *args, **kwargs) -> tuple[bool, dict]:
    """(still running after 5 s, {"value": ...} or {"error": ...}): a read of a FIFO blocks forever."""
    result: dict = {}

    def run() -> None:
        try:
            result["value"] = fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001  (the test looks at it)
            result["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    return thread.is_alive(), result


def _release(fifo: Path) -> None:
    """Open the FIFO as a writer and close it: a reader blocked on it gets end-of-file and ends."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:  # no reader waiting
        pass


# --- 7. special files and the size limit -----------------------------------------


def test_fifo_beside_a_transcript_is_a_problem_and_nothing_blocks(tmp_path):
    good = _transcript(tmp_path / "interviews" / "good.txt")
    fifo = tmp_path / "interviews" / "fifo.txt"
    os.mkfifo(fifo)
    for given in ([good.parent], [fifo, good]):  # found walking a folder, and given by name
        hung, result = _with_deadline(discover, given)
        assert not hung, "discover blocked on a FIFO"
        files, problems, _ = result["value"]
        assert files == [good]
        [(path, problem)] = problems
        assert path == str(fifo) and "not a regular file (a FIFO)" in problem


def test_fifo_given_to_load_transcript_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    try:
        hung, result = _with_deadline(load_transcript, fifo)
        assert not hung, "load_transcript blocked on a FIFO"
    finally:
        _release(fifo)
    assert isinstance(result.get("error"), TranscriptError)
    assert str(result["error"]) == f"{fifo}: not a regular file (a FIFO); give the transcript file itself"


def test_link_to_dev_zero_is_refused(tmp_path):
    link = tmp_path / "calls" / "zero.txt"
    link.parent.mkdir()
    link.symlink_to("/dev/zero")
    # discover first: on a version without the check it returns the link, and this fails
    # before anything reads /dev/zero (which would fill memory)
    for given in ([link], [link.parent]):
        files, problems, _ = discover(given)
        assert files == [] and problems == [(str(link), "not a regular file (a character device); "
                                                        "give the transcript file itself")]
    with pytest.raises(TranscriptError, match=r"zero\.txt: not a regular file \(a character device\)"):
        load_transcript(link)


def test_file_over_the_configured_limit_is_refused_naming_size_and_limit(monkeypatch, tmp_path):
    monkeypatch.setenv("JTBD_MAX_FILE_MB", "0.01")  # 10,485 bytes
    limit = load_settings().max_file_bytes
    assert limit == 10_485
    small = _transcript(tmp_path / "small.txt")
    big = tmp_path / "big.txt"
    big.write_text((TRANSCRIPT * 240)[:20_000], encoding="utf-8")
    files, problems, _ = discover([big, small], max_bytes=limit)
    assert files == [small]
    [(path, problem)] = problems
    expected = ("file is too large: 20,000 bytes, over the limit of 10,485 bytes (max_file_mb); if it is a "
                "transcript, raise max_file_mb in the environment (JTBD_MAX_FILE_MB) or the config file")
    assert (path, problem) == (str(big), expected)
    with pytest.raises(TranscriptError) as raised:
        load_transcript(big, max_bytes=limit)
    assert str(raised.value) == f"{big}: {expected}"
    assert load_transcript(small, max_bytes=limit).turns


def test_default_limit_refuses_a_21_mb_file_unread(tmp_path):
    from jtbd.coding.parse import DEFAULT_MAX_BYTES

    assert Settings().max_file_mb == 20 and DEFAULT_MAX_BYTES == Settings().max_file_bytes == 20 * 2**20
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as f:
        f.truncate(21 * 2**20)  # sparse: no disk used
    files, problems, _ = discover([huge])
    assert files == [] and problems == [(str(huge), problems[0][1])]
    assert "too large: 21.0 MB, over the limit of 20.0 MB" in problems[0][1]
    with pytest.raises(TranscriptError, match="too large: 21.0 MB"):
        load_transcript(huge)


# --- 11. options checked before any work ------------------------------------------


@pytest.fixture()
def cli(monkeypatch, capsys, clean_env):
    """Run `jtbd` in process; any coding or store opening fails the test (nothing may start)."""
    from rich.console import Console

    import jtbd.cli
    import jtbd.flows.code_batch

    def no_work(*args, **kwargs):
        pytest.fail("work started although an option is bad")

    monkeypatch.setattr(jtbd.flows.code_batch, "run_batch", no_work)
    monkeypatch.setattr(jtbd.cli, "_open_store", no_work)
    # main's console wraps at 80 columns when stderr is no terminal (main's own print, outside
    # this change); a wide one shows whether the message itself is one line.
    monkeypatch.setattr(jtbd.cli, "console", Console(stderr=True, width=1000))

    def run(*argv: str) -> tuple[int, list[str]]:
        code = jtbd.cli.main(list(argv))
        said = capsys.readouterr()
        assert said.out == ""
        return code, said.err.splitlines()

    yield run
    from jtbd.coding import backends

    assert not backends._LLMS and not backends._LLAMA_CACHE  # no model was loaded
    assert not (clean_env / "data").exists() and not (clean_env / "cwd" / "runs").exists()


def _refused(result: tuple[int, list[str]], *names: str) -> str:
    code, lines = result
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and all(n in lines[0] for n in names), lines[0]
    return lines[0]


@pytest.mark.parametrize(("flags", "env", "named"), [
    (["--concurrency", "-1"], {}, "--concurrency is -1: it must be 0 (automatic"),
    ([], {"JTBD_CONCURRENCY": "-2"}, "environment variable JTBD_CONCURRENCY is -2: it must be 0"),
    (["--chunk-tokens", "0"], {}, "--chunk-tokens is 0: it must be 1 or more"),
    (["--chunk-tokens", "-5"], {}, "--chunk-tokens is -5: it must be 1 or more"),
    (["--overlap-tokens", "-1"], {}, "--overlap-tokens is -1: it must be 0 or more"),
    ([], {"JTBD_N_CTX": "0"}, "environment variable JTBD_N_CTX is 0: it must be 1 or more"),
    ([], {"JTBD_TIMEOUT": "0"}, "environment variable JTBD_TIMEOUT is 0.0: it must be a number of seconds above 0"),
    ([], {"JTBD_TIMEOUT": "nan"}, "environment variable JTBD_TIMEOUT is nan"),
    ([], {"JTBD_MAX_RETRIES": "-1"}, "environment variable JTBD_MAX_RETRIES is -1: it must be 0 or more"),
    ([], {"JTBD_TASK_RETRIES": "-1"}, "environment variable JTBD_TASK_RETRIES is -1: it must be 0 or more"),
    ([], {"JTBD_MAX_FILE_MB": "0"}, "environment variable JTBD_MAX_FILE_MB is 0.0: it must be a number of MB"),
    (["--extra-body", "{repeat_penalty: 1}"], {}, "--extra-body is '{repeat_penalty: 1}': it must be a JSON object"),
    (["--extra-body", "[1, 2]"], {}, "--extra-body is '[1, 2]': it must be a JSON object, e.g. "
                                     "'{\"repeat_penalty\": 1.0}' (not an object but a list)"),
    (["--backend", "openai", "--model", "m", "--base-url", "localhost:8080/v1"], {},
     "--base-url is 'localhost:8080/v1': it must be a URL that starts with http:// or https://"),
    (["--chroma-url", "chroma:8000"], {}, "--chroma-url is 'chroma:8000': it must be a URL that starts with http://"),
])
def test_bad_values_are_refused_before_any_work(cli, clean_env, monkeypatch, flags, env, named):
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    _refused(cli("code", str(_transcript(clean_env / "t.txt")), *flags), named)


def test_a_bad_value_in_the_config_file_names_the_file_and_key(cli, clean_env):
    (clean_env / "cwd" / "jtbd.toml").write_text("timeout = 0\n")  # found in the working directory
    _refused(cli("code", str(_transcript(clean_env / "t.txt"))), "error: jtbd.toml: timeout is 0.0: it must be")


def test_overlap_not_below_chunk_names_both(cli, clean_env, monkeypatch):
    monkeypatch.setenv("JTBD_CHUNK_TOKENS", "300")
    _refused(cli("code", str(_transcript(clean_env / "t.txt")), "--overlap-tokens", "300"),
             "--overlap-tokens is 300: overlap_tokens must be smaller than chunk_tokens "
             "(environment variable JTBD_CHUNK_TOKENS is 300)")


@pytest.mark.parametrize("out", ["out.txt", "out.txt/run1"])
def test_out_naming_a_file_is_refused_before_coding(cli, clean_env, out):
    (clean_env / "out.txt").write_text("not a folder")
    given = str(clean_env / out)
    _refused(cli("code", str(_transcript(clean_env / "t.txt")), "--out", given),
             f"--out is {given!r}: ", "a file, not a folder")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_chroma_url_is_refused_before_coding(cli, clean_env):
    url = f"http://127.0.0.1:{_free_port()}"
    _refused(cli("code", str(_transcript(clean_env / "t.txt")), "--chroma-url", url),
             f"--chroma-url is {url!r}: no Chroma server answers there")


def test_unreachable_model_server_is_refused_before_coding_and_the_key_is_not_shown(cli, clean_env, monkeypatch):
    monkeypatch.setenv("JTBD_API_KEY", "sk-secret-4711")
    url = f"http://127.0.0.1:{_free_port()}/v1"
    line = _refused(cli("code", str(_transcript(clean_env / "t.txt")), "--backend", "openai", "--model", "m",
                        "--base-url", url), f"--base-url is {url!r}: no model server answers there")
    assert "sk-secret-4711" not in line


def test_a_server_that_never_answers_times_out(monkeypatch):
    from jtbd import checks

    monkeypatch.setattr(checks, "TIMEOUT", 0.5)
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        settings = load_settings({"backend": "openai", "model": "m", "base_url": url})
        with pytest.raises(checks.OptionError, match=r"no model server answers there \(no answer within 0.5 s"):
            checks.check_code_options(None, settings)


@contextmanager
def _http_server(status: int, body: bytes = b""):
    """A tiny server answering every GET with `status`; yields its URL and the requests' (path, headers)."""
    seen: list[tuple[str, dict]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's name)
            seen.append((self.path, dict(self.headers)))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [404, 401])
def test_a_model_server_that_answers_any_status_passes(monkeypatch, tmp_path, status):
    from jtbd.checks import check_code_options

    monkeypatch.setenv("JTBD_API_KEY", "sk-secret-4711")
    with _http_server(status) as (url, seen):
        settings = load_settings({"backend": "openai", "model": "m", "base_url": url + "/v1"})
        check_code_options(str(tmp_path / "new-run"), settings)
    assert [path for path, _ in seen] == ["/v1/models"]
    assert "sk-secret-4711" not in repr(seen)  # the check sends no key


def test_a_chroma_server_that_answers_its_heartbeat_passes(tmp_path):
    from jtbd.checks import OptionError, check_code_options

    with _http_server(200, b'{"nanosecond heartbeat": 1}') as (url, seen):
        check_code_options(None, load_settings({"chroma_url": url}))
    assert [path for path, _ in seen] == ["/api/v2/heartbeat"]
    with _http_server(404) as (url, _), pytest.raises(OptionError, match="not a Chroma server"):
        check_code_options(None, load_settings({"chroma_url": url}))


@pytest.mark.parametrize(("argv", "named"), [
    (["-k", "0", "coffee"], "-k is 0: it must be 1 or more"),
    (["-k", "-1", "coffee"], "-k is -1: it must be 1 or more"),
    ([""], "the search query is '': it must say what to look for"),
    (["   "], "the search query is '   ': it must say what to look for"),
])
def test_search_refuses_bad_k_and_empty_query_before_opening_the_store(cli, argv, named):
    _refused(cli("search", *argv), named)
