#!/usr/bin/env python3
"""llama.cpp's OpenAI-compatible server (llama-cpp-python[server]), with log-probabilities computed lazily.

    python scripts/serve_llama.py --model file.gguf --n_ctx 6144 --port 8765 ...   (the server's own flags)

The rating calls of the default strategy ask for ``top_logprobs`` of a single
answer token. llama-cpp-python 0.3.36 answers that by computing
``log_softmax`` over *every* position of the context (``Llama.logits_to_logprobs(
self._scores)[token_offset:]``): for a 3,500-token excerpt that is 530 million
floats, 2.5-4.5 s of numpy per call on the reference machine, more than the
model's own work. This launcher makes that call compute only the rows that are
then sliced out. The answers are unchanged (``log_softmax`` is per row), so
the cassettes hold exactly what the stock server returns, sooner.
"""

from __future__ import annotations

import sys

import numpy as np


def _patch() -> None:
    from llama_cpp import Llama

    full = Llama.logits_to_logprobs

    class RowsOnDemand:
        """``logits_to_logprobs(all rows)``, evaluated only for the rows that are indexed."""

        def __init__(self, logits: np.ndarray) -> None:
            self.logits = logits

        def __getitem__(self, index):  # type: ignore[no-untyped-def]
            return full(self.logits[index])

        def __len__(self) -> int:
            return len(self.logits)

        def __iter__(self):  # type: ignore[no-untyped-def]
            return (full(row) for row in self.logits)

    def logits_to_logprobs(logits, axis: int = -1):  # type: ignore[no-untyped-def]
        if isinstance(logits, np.ndarray) and logits.ndim == 2 and axis == -1:
            return RowsOnDemand(logits)
        return full(logits, axis=axis)

    Llama.logits_to_logprobs = staticmethod(logits_to_logprobs)


def main() -> None:
    _patch()
    from llama_cpp.server.__main__ import main as serve

    sys.argv[0] = "llama_cpp.server"
    serve()


if __name__ == "__main__":
    main()
