"""Which LLM errors are worth retrying: timeouts, connection drops, 429 and 5xx.

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
