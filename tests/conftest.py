"""Shared fixtures: one Prefect test server per session, isolated data folders, cassettes.

Cassettes hold real responses of llama.cpp's OpenAI-compatible server running
the default model (see scripts/record_cassettes.py). In CI they replay with
record mode "none": a request that is not in a cassette fails loudly.
"""

from __future__ import annotations

import jtbd.environment  # noqa: F401  (offline, quiet defaults before prefect loads)

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASSETTES = Path(__file__).parent / "cassettes"
# The server the cassettes were recorded from (scripts/record_cassettes.py starts it here).
RECORD_HOST, RECORD_PORT = "127.0.0.1", 8765
RECORD_BASE_URL = f"http://{RECORD_HOST}:{RECORD_PORT}/v1"
RECORD_MODEL = "qwen2.5-coder-1.5b-instruct-q4_k_m"
RERECORD = "python scripts/record_cassettes.py"


def cassette_mode() -> str:
    """"none" replays only; scripts/record_cassettes.py sets JTBD_CASSETTE_MODE=all to record anew."""
    return os.environ.get("JTBD_CASSETTE_MODE", "none")


def only_model_server(request):
    # Prefect's own API calls (httpx to its temporary server) pass through unrecorded.
    if request.port != RECORD_PORT or "/v1/" not in request.path:
        return None
    return request


def _raw(body) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else (body or b"")


def same_body(r1, r2) -> bool:
    """Byte-equal request bodies. vcrpy's own `body` matcher parses both as JSON and builds a
    difflib diff on every mismatch: with hundreds of 10 kB rating requests per cassette that is
    minutes of CPU per test. The client serialises the same request to the same bytes."""
    return _raw(r1.body) == _raw(r2.body)


class GzipPersister:
    """Cassettes named ``*.yaml.gz`` are stored gzip-compressed; others as plain YAML (vcrpy's own persister).

    The gold-set cassette repeats each 10 kB excerpt in hundreds of rating requests: about 9 MB
    of YAML that compresses to a small fraction of it. The content is the same recording.
    """

    @classmethod
    def load_cassette(cls, cassette_path, serializer):
        import gzip

        from vcr.persisters.filesystem import CassetteNotFoundError, FilesystemPersister
        from vcr.serialize import deserialize

        path = Path(cassette_path)
        if path.suffix != ".gz":
            return FilesystemPersister.load_cassette(path, serializer)
        if not path.is_file():
            raise CassetteNotFoundError()
        return deserialize(gzip.decompress(path.read_bytes()).decode("utf-8"), serializer)

    @staticmethod
    def save_cassette(cassette_path, cassette_dict, serializer):
        import gzip

        from vcr.persisters.filesystem import FilesystemPersister
        from vcr.serialize import serialize

        path = Path(cassette_path)
        if path.suffix != ".gz":
            return FilesystemPersister.save_cassette(path, cassette_dict, serializer)
        path.parent.mkdir(parents=True, exist_ok=True)
        # mtime=0: the same recording gives the same bytes, so git sees no change without one.
        path.write_bytes(gzip.compress(serialize(cassette_dict, serializer).encode("utf-8"), mtime=0))


def make_vcr():
    import vcr

    my_vcr = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode=cassette_mode(),
        match_on=["method", "path", "same_body"],
        filter_headers=["authorization", "api-key", "x-api-key", "openai-organization"],
        before_record_request=only_model_server,
        decode_compressed_response=True,
    )
    my_vcr.register_matcher("same_body", same_body)
    my_vcr.register_persister(GzipPersister)
    return my_vcr


@pytest.fixture(scope="session")
def my_vcr():
    return make_vcr()


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory):
    """One temporary Prefect server for the whole session (it takes several seconds to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def _fresh_llms():
    """A test that wraps the client in a fault must not leave that client cached for the next test."""
    from jtbd.coding import backends

    yield
    backends._LLMS.clear()


def isolate_env(tmp_path: Path, monkeypatch) -> Path:
    """No JTBD_*/OPENAI_* variables, an empty home and an empty working directory."""
    for var in list(os.environ):
        if var.startswith(("JTBD_", "OPENAI_")) or var == "XDG_DATA_HOME":
            monkeypatch.delenv(var)
    for folder in ("home", "cwd"):
        (tmp_path / folder).mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


def run_paths(paths, settings, out_dir):
    """The code_batch flow on these files or folders."""
    from jtbd.flows.code_batch import run_batch

    return run_batch([str(p) for p in paths], settings, str(out_dir))


EXAMPLE = ROOT / "examples" / "espresso_machine.txt"


def code_example_once(my_vcr, folder: Path) -> Path:
    """Code the bundled espresso example from its recording into folder/data and folder/run."""
    with my_vcr.use_cassette("flow/espresso_machine.yaml"):
        summary = run_paths([EXAMPLE], server_settings(folder / "data"), folder / "run")
    assert summary.transcripts_ok == [str(EXAMPLE)], summary.transcripts_failed
    return folder


def copy_of_coded(coded: Path, tmp_path: Path, monkeypatch):
    """A copy of a coded data folder in an isolated environment: (settings, the run's codes by id)."""
    import json
    import shutil

    isolate_env(tmp_path, monkeypatch)
    shutil.copytree(coded / "data", tmp_path / "data")
    codes = [json.loads(line) for line in (coded / "run" / "codes.jsonl").read_text().splitlines()]
    return server_settings(tmp_path / "data"), {c["id"]: c for c in codes}


def cli_runner(monkeypatch, capsys):
    """`jtbd ARGV` in process: (exit status, stdout, stderr), each stream captured as it is now."""
    import sys

    from rich.console import Console

    import jtbd.cli

    def run(*argv: str) -> tuple[int, str, str]:
        monkeypatch.setattr(jtbd.cli, "out", Console(file=sys.stdout, width=300))
        monkeypatch.setattr(jtbd.cli, "console", Console(file=sys.stderr, width=300))
        status = jtbd.cli.main(list(argv))
        said = capsys.readouterr()
        return status, said.out, said.err

    return run


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    """A private Chroma store and result cache for one test."""
    path = tmp_path / "data"
    monkeypatch.setenv("JTBD_DATA_DIR", str(path))
    return path


def server_settings(data_dir: Path, **overrides):
    """Settings that point at the recorded llama.cpp server."""
    from jtbd.settings import Settings, with_changes

    base = Settings(backend="openai", base_url=RECORD_BASE_URL, model=RECORD_MODEL,
                    llm_mode="json_object_schema", extra_body='{"repeat_penalty": 1.0}',
                    concurrency=1, timeout=900.0, data_dir=str(data_dir), task_retries=0)
    return with_changes(base, **overrides)


def stricter(strategy, shift: float = 1.5):
    """The strategy with a stricter learned decision: every code's intercept lowered by `shift`.
    Each sentence's odds of being coded shrink by the same factor, so the order of the sentences
    and their labels stay and only the least likely codes drop out; no request changes."""
    import dataclasses
    import json

    from jtbd.coding.decide import CODES

    data = json.loads(strategy.learned)
    data["intercept"] = [b - shift if c in CODES else b for b, c in zip(data["intercept"], data["classes"])]
    return dataclasses.replace(strategy, learned=json.dumps(data), version="stricter")
