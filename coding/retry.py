"""Which LLM errors are worth retrying (timeouts, connection drops, 429 and 5xx), and each error as one line.

instructor may wrap the client's exception (after its own re-asks), so the
whole cause chain is inspected. Validation errors that survived the bounded
re-asks are not transient: retrying the same prompt would fail the same way.
"""

from __future__ import annotations

from typing import Any

TRANSIENT_STATUS = {408, 409, 429, 500, 502, 503, 504}


def _chain(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_transient(exc: Any) -> bool:
    if not isinstance(exc, BaseException):
        return False
    import openai

    for e in _chain(exc):
        if isinstance(e, (openai.APITimeoutError, openai.APIConnectionError, TimeoutError, ConnectionError)):
            return True
        if isinstance(e, openai.APIStatusError) and e.status_code in TRANSIENT_STATUS:
            return True
    return False


def describe_error(exc: BaseException) -> str:
    """One line: the error and, when it wraps another, the root cause (e.g. a connection error's reason).
    Our own errors (a `problem` attribute) already say it in the researcher's words, without the
    file's path or a cause."""
    problem = getattr(exc, "problem", None)
    if isinstance(problem, str):
        return problem
    root, seen = exc, {id(exc)}
    while (nxt := root.__cause__ or root.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        root = nxt
    if root is exc:
        return _first_line(exc) or type(exc).__name__
    cause = f"{type(root).__name__}: {_first_line(root)}" if _first_line(root) else type(root).__name__
    return f"{_first_line(exc) or type(exc).__name__} (caused by {cause})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
