"""LLM backends behind one instructor-patched `create` function.

* ``local``: llama.cpp in process (llama-cpp-python) with the assembled
  default GGUF or any ``--model-path``. Calls are serialised: one model, one
  context.
* ``openai``: any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM,
  llama.cpp's server) through the official client.

Both raw create functions are wrapped by a `CallMeter` before instructor
patches them, so every attempt (re-asks included) is counted with its tokens.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import instructor

from jtbd.coding.model_files import DEFAULT_MODEL_NAME, ensure_default_model
from jtbd.settings import Settings

MODES = {
    "tools": instructor.Mode.TOOLS,
    "json": instructor.Mode.JSON,
    "md_json": instructor.Mode.MD_JSON,
    "json_schema": instructor.Mode.JSON_SCHEMA,
    # llama.cpp: OpenAI's json_schema request rewritten to llama.cpp's own
    # {"type": "json_object", "schema": ...}, which it enforces with a grammar.
    # The schema stays out of the prompt, so passes share the excerpt's KV cache.
    "json_object_schema": instructor.Mode.JSON_SCHEMA,
}


def resolve_mode(settings: Settings) -> str:
    if settings.llm_mode and settings.llm_mode != "auto":
        return settings.llm_mode
    return "json_object_schema" if settings.backend == "local" else "tools"


def as_llamacpp_schema(create: Callable[..., Any]) -> Callable[..., Any]:
    def rewritten(**kwargs: Any) -> Any:
        fmt = kwargs.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            kwargs["response_format"] = {"type": "json_object", "schema": fmt["json_schema"]["schema"]}
        return create(**kwargs)

    return rewritten


@dataclass
class CallMeter:
    """Counts real LLM requests and their usage (thread-safe)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def wrap(self, create: Callable[..., Any]) -> Callable[..., Any]:
        def metered(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            response = create(*args, **kwargs)
            usage = getattr(response, "usage", None)
            with self._lock:
                self.calls += 1
                self.seconds += time.perf_counter() - started
                self.prompt_tokens += getattr(usage, "prompt_tokens", 0) or 0
                self.completion_tokens += getattr(usage, "completion_tokens", 0) or 0
            return response

        return metered

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {"llm_calls": self.calls, "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens, "llm_seconds": round(self.seconds, 1)}


@dataclass
class LLM:
    create: Callable[..., Any]  # instructor-patched: create(response_model=..., messages=..., ...)
    model: str
    meter: CallMeter


def model_label(settings: Settings) -> str:
    """The model name recorded on codes and in cache keys, known without loading anything."""
    if settings.backend == "openai":
        return settings.model
    if settings.model_path:
        return settings.model or Path(settings.model_path).stem
    return settings.model or DEFAULT_MODEL_NAME


def make_llm(settings: Settings) -> LLM:
    meter = CallMeter()
    raw = _local_create(settings) if settings.backend == "local" else _openai_create(settings)
    mode = resolve_mode(settings)
    if mode == "json_object_schema":
        raw = as_llamacpp_schema(raw)
    patched = instructor.patch(create=meter.wrap(raw), mode=MODES[mode])
    return LLM(patched, model_label(settings), meter)


def _openai_create(settings: Settings) -> Callable[..., Any]:
    from openai import OpenAI

    # Transient errors are retried by the Prefect task (with backoff), not here,
    # so a retry is visible in the run and counted once.
    client = OpenAI(base_url=settings.base_url or None, api_key=settings.api_key,
                    timeout=settings.timeout, max_retries=0)

    extra = json.loads(settings.extra_body) if settings.extra_body else None

    def create(**kwargs: Any) -> Any:
        return client.chat.completions.create(model=settings.model, seed=settings.seed, extra_body=extra, **kwargs)

    return create


_LLAMA_LOCK = threading.Lock()
_LLAMA_CACHE: dict[tuple, Any] = {}


def _local_create(settings: Settings) -> Callable[..., Any]:
    llama = load_llama(settings)

    def create(**kwargs: Any) -> Any:
        kwargs.pop("model", None)
        with _LLAMA_LOCK:  # one context: calls from concurrent tasks take turns
            # repeat_penalty must stay 1.0: llama-cpp's default 1.1 punishes copying the transcript
            return llama.create_chat_completion_openai_v1(seed=settings.seed, repeat_penalty=1.0, **kwargs)

    return create


def load_llama(settings: Settings) -> Any:
    try:
        from llama_cpp import Llama
    except ImportError as err:
        raise RuntimeError(
            "the local backend needs llama-cpp-python: pip install 'jtbd-coder[local]' "
            "(or use --backend openai with a server)"
        ) from err
    path = Path(settings.model_path) if settings.model_path else ensure_default_model()
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    threads = settings.n_threads or os.cpu_count() or 1
    key = (str(path), settings.n_ctx, threads, settings.seed)
    with _LLAMA_LOCK:
        if key not in _LLAMA_CACHE:
            # n_ctx and n_threads must be set: llama-cpp's defaults (512, 1) are far too small.
            _LLAMA_CACHE[key] = Llama(model_path=str(path), n_ctx=settings.n_ctx, n_threads=threads,
                                      n_threads_batch=threads, n_batch=512, seed=settings.seed,
                                      verbose=False)
        return _LLAMA_CACHE[key]


@atexit.register
def _close_models() -> None:
    # Free llama.cpp models before interpreter shutdown; left to __del__ they raise at exit.
    with _LLAMA_LOCK:
        for llama in _LLAMA_CACHE.values():
            llama.close()
        _LLAMA_CACHE.clear()


_LLMS: dict[tuple, LLM] = {}
_LLMS_LOCK = threading.Lock()


def _llm_key(settings: Settings) -> tuple:
    return (settings.backend, settings.model, settings.model_path, settings.base_url, settings.llm_mode,
            settings.extra_body,
            settings.n_ctx, settings.n_threads, settings.seed, settings.timeout)


def get_llm(settings: Settings) -> LLM:
    """One LLM per configuration and process, created on first use (a fully cached run loads nothing)."""
    key = _llm_key(settings)
    with _LLMS_LOCK:
        if key not in _LLMS:
            _LLMS[key] = make_llm(settings)
        return _LLMS[key]


def meter_snapshot(settings: Settings) -> dict[str, float]:
    llm = _LLMS.get(_llm_key(settings))
    if llm is None:
        return {"llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "llm_seconds": 0.0}
    return llm.meter.snapshot()
