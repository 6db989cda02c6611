"""Settings: command-line flags > environment (JTBD_*) > a config file > defaults.

The config file is TOML with the same keys as `Settings`, read from
``--config``, ``$JTBD_CONFIG``, ``./jtbd.toml`` or
``~/.config/jtbd-coder/config.toml`` (the first that exists). API keys are
read from the environment only, never from a file, and never printed.
"""

from __future__ import annotations

import json
import math
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MB = 2**20  # bytes in the MB of max_file_mb
# Larger transcript files are refused before they are read. An hour of interview is
# 7,000-10,000 words, about 60 kB of text or 1 MB as .docx; 20 MB leaves room for a
# day-long workshop or a .docx full of screenshots, yet stops a mislabelled recording,
# a log or a disk image from filling memory.
DEFAULT_MAX_FILE_MB = 20.0


def _data_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME")
    return (Path(base) if base else Path.home() / ".local" / "share") / "jtbd-coder"


@dataclass(frozen=True)
class Settings:
    backend: str = "local"  # local | openai
    model: str = ""  # openai: the served model's name; local: defaults to the GGUF's name
    model_path: str = ""  # local: any GGUF; default: the assembled Qwen2.5-Coder-1.5B
    base_url: str = ""  # openai: any OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp ...)
    extra_body: str = ""  # openai: JSON merged into each request, e.g. {"repeat_penalty": 1.0} for llama.cpp
    llm_mode: str = "auto"  # auto: json_object_schema for llama.cpp in process, tools for servers
    strategy: str = "rate"  # see prompts/passes.toml
    chunk_tokens: int = 2500  # fewer, larger chunks: prompt tokens are the cost on a CPU
    overlap_tokens: int = 200
    n_ctx: int = 6144
    n_threads: int = 0  # 0: every core
    concurrency: int = 0  # 0: 1 for the in-process model, 4 for a server
    max_retries: int = 2  # re-asks after a validation error
    task_retries: int = 3  # retries of a chunk after a transient error (timeout, 429, 5xx), with backoff
    timeout: float = 180.0
    seed: int = 0
    data_dir: str = field(default_factory=lambda: str(_data_home()))
    chroma_url: str = ""  # empty: a persistent store under data_dir
    collection: str = "jtbd_codes"
    embeddings: str = "local"  # local (MiniLM int8 ONNX) | openai
    embedding_model: str = "text-embedding-3-small"
    interviewers: tuple[str, ...] = ()
    max_file_mb: float = DEFAULT_MAX_FILE_MB  # larger transcript files are refused unread

    @property
    def api_key(self) -> str:
        # Local servers accept any key; the OpenAI client insists on one.
        return os.environ.get("JTBD_API_KEY") or os.environ.get("OPENAI_API_KEY") or "not-needed"

    @property
    def effective_concurrency(self) -> int:
        if self.concurrency > 0:
            return self.concurrency
        return 1 if self.backend == "local" else 4

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * MB)

    @property
    def chroma_path(self) -> Path:
        return Path(self.data_dir) / "chroma"

    @property
    def results_path(self) -> Path:
        return Path(self.data_dir) / "results"

    def public(self) -> dict[str, Any]:
        """Every setting, safe to print or store (no secrets live in Settings)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


_ENV_ALIASES = {"base_url": ("JTBD_BASE_URL", "OPENAI_BASE_URL")}


def _coerce(name: str, value: Any, source: str = "") -> Any:
    kind = type(getattr(Settings(), name))
    if kind is tuple:
        return tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(value, str) else tuple(value)
    try:
        return kind(value)
    except (TypeError, ValueError) as err:
        where = f"{source}: " if source else ""
        raise ValueError(f"{where}setting {name!r} must be {kind.__name__}, not {value!r}") from err


def config_file(explicit: str | None = None) -> Path | None:
    for candidate in (explicit, os.environ.get("JTBD_CONFIG"), "jtbd.toml",
                      Path.home() / ".config" / "jtbd-coder" / "config.toml"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    if explicit:
        raise FileNotFoundError(f"config file {explicit} does not exist")
    return None


def load_settings(flags: dict[str, Any] | None = None, config: str | None = None) -> Settings:
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}  # how each value was given, so a bad one is named as the user wrote it
    path = config_file(config)
    if path:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a valid TOML settings file ({err})") from err
        for key, value in table.items():
            if key not in {f.name for f in fields(Settings)}:
                raise ValueError(f"{path}: unknown setting {key!r}")
            values[key] = _coerce(key, value, str(path))
            sources[key] = f"{path}: {key}"
    for f in fields(Settings):
        for var in _ENV_ALIASES.get(f.name, (f"JTBD_{f.name.upper()}",)):
            if os.environ.get(var):
                values[f.name] = _coerce(f.name, os.environ[var], f"environment variable {var}")
                sources[f.name] = f"environment variable {var}"
                break
    for key, value in (flags or {}).items():
        if value not in (None, (), ""):
            sources[key] = "--" + key.replace("_", "-")
            values[key] = _coerce(key, value, sources[key])
    settings = replace(Settings(), **values)
    _check(settings, sources)
    # Not a field (it is no setting): checks that need I/O (jtbd.checks) name options by it too.
    object.__setattr__(settings, "_sources", sources)
    return settings


def source_of(settings: Settings, name: str, sources: dict[str, str] | None = None) -> str:
    """How a setting was given: '--chunk-tokens', 'environment variable JTBD_CHUNK_TOKENS' or
    'jtbd.toml: chunk_tokens'; 'setting chunk_tokens' for a default or a value set in code."""
    known = sources if sources is not None else getattr(settings, "_sources", {})
    return known.get(name, f"setting {name}")


def _shown(value: Any) -> str:
    """A value in one line: repr escapes line breaks; a long JSON body is cut."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# setting: (test, what is allowed). Outside these a value fails late (after the model is
# loaded, or in every chunk) or hangs, so it is refused before any work.
_RANGES = {
    "chunk_tokens": (lambda v: v >= 1, "1 or more"),
    "overlap_tokens": (lambda v: v >= 0, "0 or more"),
    "concurrency": (lambda v: v >= 0, "0 (automatic: 1 for the local model, 4 for a server) or more"),
    "n_ctx": (lambda v: v >= 1, "1 or more (tokens of the local model's context)"),
    "n_threads": (lambda v: v >= 0, "0 (every core) or more"),
    "max_retries": (lambda v: v >= 0, "0 or more"),
    "task_retries": (lambda v: v >= 0, "0 or more"),
    "timeout": (lambda v: math.isfinite(v) and v > 0, "a number of seconds above 0"),
    "max_file_mb": (lambda v: math.isfinite(v) and v > 0, "a number of MB above 0"),
}


def _check(s: Settings, sources: dict[str, str] | None = None) -> None:
    def bad(name: str, allowed: str) -> ValueError:
        return ValueError(f"{source_of(s, name, sources)} is {_shown(getattr(s, name))}: {allowed}")

    if s.backend not in ("local", "openai"):
        raise bad("backend", "backend must be 'local' or 'openai'")
    for name, (ok, allowed) in _RANGES.items():
        if not ok(getattr(s, name)):
            raise bad(name, f"it must be {allowed}")
    for name, example in (("base_url", "http://localhost:8080/v1"), ("chroma_url", "http://localhost:8000")):
        if getattr(s, name) and not _is_http_url(getattr(s, name)):
            # Without a scheme the clients read "localhost" as one and retry a connection for half a minute.
            raise bad(name, f"it must be a URL that starts with http:// or https://, e.g. {example}")
    problem = _json_object_problem(s.extra_body) if s.extra_body else ""
    if problem:  # else each transcript fails with it, after the model work before it
        raise bad("extra_body", f"it must be a JSON object, e.g. '{{\"repeat_penalty\": 1.0}}' ({problem})")
    if s.backend == "openai" and not s.model:
        raise ValueError("the openai backend needs a model name: --model or JTBD_MODEL")
    if s.overlap_tokens >= s.chunk_tokens:
        raise bad("overlap_tokens", f"overlap_tokens must be smaller than chunk_tokens "
                                    f"({source_of(s, 'chunk_tokens', sources)} is {s.chunk_tokens})")


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _json_object_problem(text: str) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return f"not valid JSON: {err.msg} at column {err.colno}"
    except (RecursionError, ValueError):  # nested too deeply, or an integer of thousands of digits
        return "not valid JSON"
    kinds = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true or false"}
    return "" if isinstance(value, dict) else f"not an object but {kinds.get(type(value), 'null')}"
