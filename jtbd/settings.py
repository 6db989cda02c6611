"""Settings: command-line flags > environment (JTBD_*) > a config file > defaults.

The config file is TOML with the same keys as `Settings`, read from
``--config``, ``$JTBD_CONFIG``, ``./jtbd.toml`` or
``~/.config/jtbd-coder/config.toml`` (the first that exists). API keys are
read from the environment only, never from a file, and never printed.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


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
    for f in fields(Settings):
        for var in _ENV_ALIASES.get(f.name, (f"JTBD_{f.name.upper()}",)):
            if os.environ.get(var):
                values[f.name] = _coerce(f.name, os.environ[var], f"environment variable {var}")
                break
    for key, value in (flags or {}).items():
        if value not in (None, (), ""):
            values[key] = _coerce(key, value, "--" + key.replace("_", "-"))
    settings = replace(Settings(), **values)
    _check(settings)
    return settings


def _check(s: Settings) -> None:
    if s.backend not in ("local", "openai"):
        raise ValueError(f"backend must be 'local' or 'openai', not {s.backend!r}")
    if s.backend == "openai" and not s.model:
        raise ValueError("the openai backend needs a model name: --model or JTBD_MODEL")
    if s.overlap_tokens >= s.chunk_tokens:
        raise ValueError("overlap_tokens must be smaller than chunk_tokens")
