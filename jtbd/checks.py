"""Checks of `jtbd code`'s options that need I/O, run before any work.

Value ranges are checked where settings are loaded (jtbd.settings); these look at
the disk and the network: without them a bad --out or an unreachable server is found
only after the model has coded every transcript.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from jtbd.settings import Settings, source_of

if TYPE_CHECKING:
    import httpx

TIMEOUT = 5.0  # seconds: a server on the same network answers in milliseconds
OPENAI_URL = "https://api.openai.com/v1"  # the OpenAI client's own default without a base URL


class OptionError(ValueError):
    """A bad option; str() is one line naming it, its value and what is allowed."""


def check_code_options(out_dir: str | None, settings: Settings) -> None:
    """Raise OptionError for the first option of `jtbd code` that would fail later."""
    _check_out(out_dir)
    _check_decision(settings)
    if settings.chroma_url:
        _check_chroma(settings)
    if "openai" in (settings.backend, settings.embeddings):
        _check_model_server(settings)


def check_redecide_options(out_dir: str | None, settings: Settings) -> None:
    """`jtbd redecide`: as `jtbd code`, but no model server is needed (it makes no model call)."""
    _check_out(out_dir)
    _check_decision(settings)
    if settings.chroma_url:
        _check_chroma(settings)
    if settings.embeddings == "openai":
        _check_model_server(settings)


def check_pool_options(pool: str, settings: Settings) -> None:
    """`jtbd code --pool`: what every worker must share, then the Prefect server and the pool's
    deployment (jtbd.flows.pool.PoolError), before any file is copied or run submitted."""
    from jtbd.flows.pool import preflight

    if not pool.strip():
        raise OptionError("--pool is '': it must name a Prefect work pool (see 'jtbd deploy --pool NAME')")
    if not settings.chroma_url:
        raise OptionError(f"--pool is {pool!r}: the workers need one Chroma server for the study's codes; give "
                          "--chroma-url (e.g. http://localhost:8000, started with chroma run)")
    preflight(pool)


def _check_decision(settings: Settings) -> None:
    """A --decision file that cannot be read, or was fitted on another model's ratings."""
    if settings.decision in ("auto", "handmade"):
        return
    from jtbd.coding.pipeline import decision_for
    from jtbd.prompts import load_strategy

    try:
        decision_for(load_strategy(settings.strategy, settings.prompts_dir), settings)
    except (ValueError, OSError) as err:
        raise OptionError(f"--decision is {settings.decision!r}: {err}") from None


def _check_out(out_dir: str | None) -> None:
    if not out_dir:
        return
    path = Path(out_dir)
    # The nearest part that exists: the run folder and its parents are made from there.
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        what = "it is" if existing == path else f"{existing} is"
        raise OptionError(f"--out is {out_dir!r}: {what} a file, not a folder; give a new folder or an existing one")


def _check_chroma(settings: Settings) -> None:
    # chromadb.HttpClient (1.5.9) has no timeout (httpx timeout=None) and already calls the
    # server in its constructor, so a silent host would hang there; its heartbeat URL is asked here.
    parts = urlsplit(settings.chroma_url)
    host = parts.hostname or "localhost"  # as jtbd.coding.store.open_collection reads the URL
    host = f"[{host}]" if ":" in host else host
    url = f"{'https' if parts.scheme == 'https' else 'http'}://{host}:{parts.port or 8000}/api/v2/heartbeat"
    where = f"{source_of(settings, 'chroma_url')} is {settings.chroma_url!r}"
    response = _get(url, where, "no Chroma server answers there")
    if response.status_code != 200 or "nanosecond heartbeat" not in response.text:
        raise OptionError(f"{where}: the server there is not a Chroma server this version can use "
                          f"(HTTP {response.status_code} for {url})")


def _check_model_server(settings: Settings) -> None:
    base = settings.base_url or OPENAI_URL
    where = f"{source_of(settings, 'base_url')} is {base!r}" if settings.base_url else f"no --base-url (so {base})"
    # Any HTTP answer will do: 401 without a key or 404 on a server without /models shows it is there.
    # No API key is sent: this asks only whether something answers.
    _get(base.rstrip("/") + "/models", where, "no model server answers there")


def _get(url: str, where: str, problem: str) -> httpx.Response:
    import httpx  # here: every command imports this module, few need the network

    try:
        return httpx.get(url, timeout=TIMEOUT)
    except (httpx.HTTPError, httpx.InvalidURL) as err:
        reason = f"no answer within {TIMEOUT:g} s" if isinstance(err, httpx.TimeoutException) else _first_line(err)
        raise OptionError(f"{where}: {problem} ({reason}, GET {url}); start it or correct the URL") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
