"""A tiny event hook so the CLI can draw progress while the flow's tasks run.

Tasks run in threads of the same process; they call `emit`, and whoever
listens (the CLI's progress bar) is told. With no listener it does nothing.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

Listener = Callable[..., None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def listen(listener: Listener) -> Callable[[], None]:
    with _lock:
        _listeners.append(listener)

    def stop() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return stop


def emit(event: str, *args: Any, **kwargs: Any) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event, *args, **kwargs)


# Measured with the default model in process on the 2-core reference machine (README benchmark):
# the three examples' 212 sentences and 3 chunks took about 10 minutes of coding.
LOCAL_SECONDS_PER_SENTENCE = 1.5
LOCAL_SECONDS_PER_CHUNK = 100.0  # the jobs-and-quotes pass


def estimate_seconds(backend: str, sentences: int, chunks: int) -> float | None:
    """How long coding will take in process; None for a server, whose speed is unknown here."""
    if backend != "local":
        return None
    return sentences * LOCAL_SECONDS_PER_SENTENCE + chunks * LOCAL_SECONDS_PER_CHUNK
