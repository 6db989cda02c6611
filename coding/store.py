"""Store grounded codes in Chroma and search them by meaning.

One collection holds every code of every transcript of a study (jtbd_codes for the default
study, jtbd_codes__<study> for another: see Settings.study_collection). IDs are deterministic
(transcript + label + offsets), so a re-run upserts instead of duplicating.
A transcript is replaced as a unit: its vectors are computed first, then its
new codes are upserted and codes it no longer has are deleted, so a failure
never leaves half a transcript behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from jtbd.coding.embed import Embedder
from jtbd.coding.identity import StoredSource

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@dataclass(frozen=True)
class Hit:
    id: str
    quote: str
    distance: float
    meta: dict[str, Any]

    @property
    def score(self) -> float:
        return round(1.0 - self.distance, 3)


def open_collection(path: str = "", url: str = "", name: str = "jtbd_codes", create: bool = True) -> Any:
    """The collection; with create=False, None when the store has no collection of that name."""
    client = _client(path, url)
    if not create and name not in collection_names(path, url, client):
        return None
    # No embedding function: Chroma's default downloads a model. We pass vectors ourselves.
    return client.get_or_create_collection(name, embedding_function=None,
                                           metadata={"hnsw:space": "cosine"})


def collection_names(path: str = "", url: str = "", client: Any = None) -> list[str]:
    """Every collection of the store (one per study)."""
    return sorted(c if isinstance(c, str) else c.name for c in (client or _client(path, url)).list_collections())


def _client(path: str, url: str) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    quiet = ChromaSettings(anonymized_telemetry=False)
    if url:
        from urllib.parse import urlparse

        parts = urlparse(url)
        return chromadb.HttpClient(host=parts.hostname or "localhost", port=parts.port or 8000,
                                   ssl=parts.scheme == "https", settings=quiet)
    return chromadb.PersistentClient(path=path, settings=quiet)


def code_metadata(code: Any, context: tuple[str, str]) -> dict[str, Any]:
    g, p = code.grounding, code.provenance
    meta = {
        "transcript": g.transcript, "source": g.source, "speaker": g.speaker, "kind": code.kind,
        "label": code.label, "force": getattr(getattr(code, "force", None), "value", ""),
        "dimension": getattr(getattr(code, "dimension", None), "value", ""),
        "statement": getattr(code, "statement", ""), "note": code.note or "",
        "statement_source": getattr(code, "statement_source", ""),  # "model": a summary, not the quote's words
        "turn_index": g.turn_index, "char_start": g.char_start, "char_end": g.char_end,
        "start_seconds": g.start_seconds if g.start_seconds is not None else -1.0,
        "source_line": g.source_line if g.source_line is not None else -1,
        "alignment": g.alignment.value, "prompt_version": p.prompt_version,
        "schema_version": p.schema_version, "model": p.model,
        "context_before": context[0], "context_after": context[1],
    }
    return meta


class CodeStore:
    def __init__(self, collection: Any, embedder: Embedder | None) -> None:  # None: no upsert, no search
        self.collection = collection
        self.embedder = embedder

    def replace_transcript(self, transcript_id: str, codes: Sequence[Any],
                           contexts: Sequence[tuple[str, str]], source: dict[str, str] | None = None,
                           vectors: Sequence[Sequence[float]] | None = None) -> int:
        """`source`: where the transcript came from (source_path, source_sha256), kept on every code
        so a later batch tells this file apart from another of the same name. `vectors`: the codes'
        embeddings, when the caller computed them first (see `embed`)."""
        ids = [c.id for c in codes]
        vectors = self.embed(codes) if vectors is None else vectors
        if codes:
            metadatas = [{**code_metadata(c, ctx), **(source or {})} for c, ctx in zip(codes, contexts)]
            self.collection.upsert(ids=ids, documents=[c.quote for c in codes], embeddings=vectors,
                                   metadatas=metadatas)
        stale = set(self.ids_of(transcript_id)) - set(ids)
        if stale:
            self.collection.delete(ids=sorted(stale))
        return len(ids)

    def embed(self, codes: Sequence[Any]) -> list:
        """The codes' vectors: the slow step of storing, done before any write."""
        return self.embedder.embed([c.quote for c in codes]) if codes else []

    def delete_transcript(self, transcript_id: str) -> int:
        """Remove every code of a transcript; the number removed."""
        ids = self.ids_of(transcript_id)
        if ids:
            self.collection.delete(ids=ids)
        return len(ids)

    def transcripts(self) -> dict[str, dict[str, Any]]:
        """Each stored transcript id with its file name, codes per kind, models and prompt versions."""
        out: dict[str, dict[str, Any]] = {}
        for meta in self.collection.get(include=["metadatas"])["metadatas"]:
            entry = out.setdefault(meta["transcript"], {"source": meta["source"], "codes": {}, "models": set(),
                                                        "prompt_versions": set()})
            entry["codes"][meta["kind"]] = entry["codes"].get(meta["kind"], 0) + 1
            entry["models"].add(meta.get("model", ""))
            entry["prompt_versions"].add(meta.get("prompt_version", ""))
        return dict(sorted(out.items()))

    def sources(self) -> dict[str, StoredSource]:
        """Each stored transcript id with the file it was coded from, as far as the store knows it."""
        out: dict[str, StoredSource] = {}
        for meta in self.collection.get(include=["metadatas"])["metadatas"]:
            out.setdefault(meta["transcript"], StoredSource(meta["source"], meta.get("source_path", ""),
                                                            meta.get("source_sha256", "")))
        return out

    def ids_of(self, transcript_id: str) -> list[str]:
        return self.collection.get(where={"transcript": transcript_id}, include=[])["ids"]

    def count(self) -> int:
        return self.collection.count()

    def search(self, query: str, k: int = 10, **filters: str | None) -> list[Hit]:
        where = where_clause(**filters)
        result = self.collection.query(query_embeddings=self.embedder.embed([query]), n_results=k,
                                       where=where, include=["documents", "metadatas", "distances"])
        return [Hit(i, d, dist, m) for i, d, dist, m in zip(
            result["ids"][0], result["documents"][0], result["distances"][0], result["metadatas"][0])]


def where_clause(**filters: str | None) -> dict | None:
    """Chroma wants one condition bare and several under $and."""
    conditions = [{key: value} for key, value in filters.items() if value]
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else {"$and": conditions}


def scrub_log(chroma_path: Path, code_ids: Sequence[str]) -> int:
    """Overwrite deleted codes in a local store's write-ahead log, then VACUUM the file.

    Chroma keeps every upsert (the quote, its metadata and context, the vector) in its
    `embeddings_queue` table until the vector index flushes, every 1,000 writes by default,
    deleted or not, and SQLite keeps freed pages: a forgotten participant's words would stay in
    chroma.sqlite3. The entries of deleted ids are never read again but for replaying the index,
    so each keeps a placeholder vector of its length and no metadata. Returns the entries scrubbed.
    """
    import sqlite3
    import struct

    db = Path(chroma_path) / "chroma.sqlite3"
    if not code_ids or not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        marks = ",".join("?" * len(code_ids))
        rows = con.execute(f"SELECT seq_id, length(vector) FROM embeddings_queue WHERE id IN ({marks})",
                           list(code_ids)).fetchall()
        for seq_id, size in rows:
            n = (size or 0) // 4  # float32
            placeholder = struct.pack(f"{n}f", *([1.0] + [0.0] * (n - 1))) if n else None
            con.execute("UPDATE embeddings_queue SET vector = ?, metadata = NULL WHERE seq_id = ?",
                        (placeholder, seq_id))
        con.commit()
        con.execute("VACUUM")
    finally:
        con.close()
    return len(rows)
