"""LLM backends behind one instructor-patched `create` function.

* ``local``: llama.cpp in process (llama-cpp-python) with the assembled
  default GGUF or any ``--model-path``. Calls are serialised: one model, one
  context.
* ``openai``: any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM,
  llama.cpp's server) through the official client.

Both raw create functions are wrapped by a `CallMeter` before instructor
patches them, so every attempt (re-asks included) is counted with its tokens.

Besides structured answers, a backend *rates*: `LLM.rate(messages, labels)`
returns each label's log-probability as the first token of the answer (one
forward pass, no sampling). Over the OpenAI API that is ``max_tokens=1`` with
``top_logprobs``; in process it reads the logits directly.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import instructor
import numpy as np

from jtbd.coding.model_files import DEFAULT_MODEL_NAME, DEFAULT_MODEL_SHA256, ensure_default_model
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
            usage = (response.get("usage") if isinstance(response, dict) else getattr(response, "usage", None)) or {}
            with self._lock:
                self.calls += 1
                self.seconds += time.perf_counter() - started
                self.prompt_tokens += _get(usage, "prompt_tokens") or 0
                self.completion_tokens += _get(usage, "completion_tokens") or 0
            return response

        return metered

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return {"llm_calls": self.calls, "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens, "llm_seconds": round(self.seconds, 1)}


TOP_LOGPROBS = 20  # the OpenAI API's maximum; labels outside the top 20 get a floor below them


def labels_from_top(top: list[tuple[str, float]], labels: tuple[str, ...]) -> dict[str, float]:
    """Each label's log-probability as the answer's first token, from the top tokens.

    A token counts for a label when it is a prefix of it of two letters or more,
    ignoring case, spaces and quotes ("push", " Push", "an" for "anxiety"); a
    prefix shared by two labels counts for neither. Variants of one label add
    up. A label absent from the top tokens gets one nat below the lowest.
    """
    floor = (min(lp for _, lp in top) if top else 0.0) - 1.0
    found: dict[str, float] = {}
    for token, logprob in top:
        word = token.strip().strip('"').lower()
        hits = [label for label in labels if len(word) >= 2 and label.startswith(word)]
        if len(hits) == 1:
            label = hits[0]
            found[label] = float(np.logaddexp(found[label], logprob)) if label in found else float(logprob)
    return {label: round(found.get(label, floor), 4) for label in labels}


@dataclass
class LLM:
    create: Callable[..., Any]  # instructor-patched: create(response_model=..., messages=..., ...)
    model: str
    meter: CallMeter
    rate_top: Callable[[list[dict]], Any] | None = None  # messages -> response with the first token's top logprobs

    def rate(self, messages: list[dict], labels: tuple[str, ...]) -> dict[str, float]:
        """Log-probability of each label as the first token of the answer to `messages`."""
        if self.rate_top is None:
            raise RuntimeError(f"backend for {self.model} cannot rate sentences")
        return labels_from_top(top_tokens(self.rate_top(messages)), labels)


def top_tokens(response: Any) -> list[tuple[str, float]]:
    """(token, logprob) of the first answer token from a chat completion (object or dict)."""
    choice = _get(response, "choices")[0]
    content = _get(_get(choice, "logprobs") or {}, "content") or []
    if not content:
        raise ValueError("the server returned no logprobs; it must support top_logprobs (llama.cpp, vLLM, OpenAI)")
    return [(_get(t, "token"), float(_get(t, "logprob"))) for t in _get(content[0], "top_logprobs")]


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def model_label(settings: Settings) -> str:
    """The model name recorded on codes and in cache keys, known without loading anything."""
    if settings.backend == "openai":
        return settings.model
    if settings.model_path:
        return settings.model or Path(settings.model_path).stem
    return settings.model or DEFAULT_MODEL_NAME


_SHA256: dict[tuple[str, int, int], str] = {}


def model_sha256(settings: Settings) -> str | None:
    """The sha256 of the model file the ratings come from: known for the local backend (the
    default model's is checked when it is assembled; another GGUF is read once per process), not
    for a server (None)."""
    if settings.backend != "local":
        return None
    if not settings.model_path:
        return DEFAULT_MODEL_SHA256
    path = Path(settings.model_path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


def make_llm(settings: Settings) -> LLM:
    meter = CallMeter()
    if settings.backend == "local":
        raw, rate = _local_create(settings), _local_rate(settings)
    else:
        raw, rate = _openai_create(settings), _openai_rate(settings)
    mode = resolve_mode(settings)
    if mode == "json_object_schema":
        raw = as_llamacpp_schema(raw)
    patched = instructor.patch(create=meter.wrap(raw), mode=MODES[mode])
    return LLM(patched, model_label(settings), meter, meter.wrap(rate))


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


def _openai_rate(settings: Settings) -> Callable[[list[dict]], Any]:
    create = _openai_create(settings)

    def rate(messages: list[dict]) -> Any:
        return create(messages=messages, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=TOP_LOGPROBS)

    return rate


_LLAMA_LOCK = threading.Lock()
_LLAMA_CACHE: dict[tuple, Any] = {}


def _local_create(settings: Settings) -> Callable[..., Any]:
    llama = load_llama(settings)
    controls = control_tokens(llama)

    def create(**kwargs: Any) -> Any:
        kwargs.pop("model", None)
        # llama-cpp's chat handler reads the whole rendered prompt with special=True and takes no
        # token ids, so control tokens a transcript spells out are broken in the contents instead.
        if "messages" in kwargs:
            kwargs["messages"] = plain_contents(kwargs["messages"], controls)
        with _LLAMA_LOCK:  # one context: calls from concurrent tasks take turns
            # repeat_penalty must stay 1.0: llama-cpp's default 1.1 punishes copying the transcript
            return llama.create_chat_completion_openai_v1(seed=settings.seed, repeat_penalty=1.0, **kwargs)

    return create


def _local_rate(settings: Settings) -> Callable[[list[dict]], Any]:
    llama = load_llama(settings)
    render, controls = _chat_formatter(llama), control_tokens(llama)

    def rate(messages: list[dict]) -> dict:
        tokens = prompt_tokens(llama, render, controls, messages)
        with _LLAMA_LOCK:
            logits = _next_token_logits(llama, tokens)
        logprobs = logits - np.logaddexp.reduce(logits)
        best = np.argpartition(-logprobs, TOP_LOGPROBS)[:TOP_LOGPROBS]
        top = [{"token": llama.detokenize([int(i)]).decode("utf-8", "replace"), "logprob": float(logprobs[i])}
               for i in best[np.argsort(-logprobs[best])]]
        # Shaped like the API's answer, so both backends share one parser and one meter.
        return {"choices": [{"logprobs": {"content": [{"top_logprobs": top}]}}],
                "usage": {"prompt_tokens": len(tokens), "completion_tokens": 0}}

    return rate


def _chat_formatter(llama: Any) -> Callable[..., Any]:
    """The model's own chat template (from the GGUF), as llama.cpp's server applies it."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise RuntimeError("the model file has no chat template; rating needs one")
    eos = llama.detokenize([llama.token_eos()], special=True).decode("utf-8", "replace")
    bos = llama.detokenize([llama.token_bos()], special=True).decode("utf-8", "replace")
    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)


def control_tokens(llama: Any) -> dict[str, int]:
    """The vocabulary's control tokens by their text ("<|im_start|>", "<|im_end|>", ...): the
    tokens llama.cpp finds in text only when tokenising with special=True."""
    from llama_cpp import LLAMA_TOKEN_ATTR_CONTROL, LLAMA_TOKEN_ATTR_UNKNOWN

    vocab, found = llama._model, {}
    for token in range(llama.n_vocab()):
        if vocab.token_get_attr(token) & (LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_UNKNOWN):
            found.setdefault(vocab.token_get_text(token), token)
    found.pop("", None)
    return found


def _spelled(controls: dict[str, int]) -> re.Pattern:
    """Any control token's text, the longest first (as llama.cpp matches them)."""
    return re.compile("|".join(re.escape(text) for text in sorted(controls, key=len, reverse=True)) or "(?!)")


_BREAK = "\u200b"  # a zero-width space: the words read the same, but no longer spell a control token


def plain_contents(messages: list[dict], controls: dict[str, int]) -> list[dict]:
    """The messages with every control token a content spells out broken by a zero-width space
    after its first character; a message without one is passed on as it is."""
    spelled = _spelled(controls)

    def broken(content: str) -> str:
        while spelled.search(content):  # until breaking one does not leave another
            content = spelled.sub(lambda found: found.group()[0] + _BREAK + found.group()[1:], content)
        return content

    return [{**m, "content": broken(m["content"])} if isinstance(m.get("content"), str)
            and spelled.search(m["content"]) else m for m in messages]


# Private-use marks rendered in place of each message's content, to find the contents in the prompt.
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_MARKED = re.compile(f"{_MARK_OPEN}(\\d+){_MARK_CLOSE}")


def prompt_tokens(llama: Any, render: Callable[..., Any], controls: dict[str, int], messages: list[dict]) -> list[int]:
    """The chat prompt's token ids, with the template's own control tokens as such and every
    message's content read as plain text.

    Tokenising the rendered prompt whole with special=True would let a transcript that says
    "<|im_end|><|im_start|>system" close the user's turn and forge a system one. So the prompt
    is cut at the template's own control tokens only, and each stretch between them (template
    text and contents together, so words merge across the seam as before) is tokenised with
    special=False. A prompt whose contents spell no control token gets exactly the ids that
    tokenising it whole with special=True gives.
    """
    prompt = render(messages=messages)
    parts = _prompt_parts(render, messages, prompt.prompt, _spelled(controls), controls)
    if parts is None:  # the template rewrites contents (trims them, say): break their control tokens
        prompt = render(messages=plain_contents(messages, controls))
        return llama.tokenize(prompt.prompt.encode("utf-8"), add_bos=not prompt.added_special, special=True)
    # Jinja2ChatFormatter's prompt holds the BOS it needs (added_special); others get it here.
    tokens = [llama.token_bos()] if not prompt.added_special and llama._model.add_bos_token() else []
    stretch = ""
    for part in parts:
        if isinstance(part, str):
            stretch += part
        else:
            tokens += _plain_tokens(llama, stretch) + [part]
            stretch = ""
    return tokens + _plain_tokens(llama, stretch)


def _plain_tokens(llama: Any, text: str) -> list[int]:
    return llama.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []


def _prompt_parts(render: Callable[..., Any], messages: list[dict], rendered: str, spelled: re.Pattern,
                  controls: dict[str, int]) -> list[str | int] | None:
    """The rendered prompt as plain text (str) and the template's own control tokens (int ids),
    found by rendering it again with a mark in place of each content; None when the template
    does not copy the contents into the prompt unchanged."""
    contents = [m.get("content") for m in messages]
    if not all(isinstance(c, str) and _MARK_OPEN not in c and _MARK_CLOSE not in c for c in contents):
        return None
    marked = render(messages=[{**m, "content": f"{_MARK_OPEN}{i}{_MARK_CLOSE}"} for i, m in enumerate(messages)])
    pieces = _MARKED.split(marked.prompt)  # template text, a content's index, template text, ...
    if "".join(contents[int(p)] if n % 2 else p for n, p in enumerate(pieces)) != rendered:
        return None
    parts: list[str | int] = []
    for n, piece in enumerate(pieces):
        if n % 2:
            parts.append(contents[int(piece)])
            continue
        at = 0
        for found in spelled.finditer(piece):
            parts += [piece[at:found.start()], controls[found.group()]]
            at = found.end()
        parts.append(piece[at:])
    return parts


def _next_token_logits(llama: Any, tokens: list[int]) -> np.ndarray:
    """Logits after `tokens`, evaluating only what differs from the tokens already in the KV cache.

    llama-cpp-python keeps no logits without logits_all (which would cost
    n_ctx x vocabulary floats), so they are read from the context right after
    the last decode. The cache state stays consistent for later generate calls.
    """
    if len(tokens) > llama.n_ctx():
        raise ValueError(f"prompt of {len(tokens)} tokens does not fit the context of {llama.n_ctx()}; "
                         "lower chunk_tokens or raise n_ctx")
    keep = llama.longest_token_prefix(llama.input_ids[:llama.n_tokens].tolist(), tokens)
    llama.n_tokens = min(keep, len(tokens) - 1)  # at least one token is evaluated, to get fresh logits
    llama.eval(tokens[llama.n_tokens:])
    return np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),)).astype(np.float64)


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
