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
from jtbd.coding.identity import SourceFile, StoredSource, candidate_ids

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

    def sources(self, files: Sequence[SourceFile] | None = None) -> dict[str, StoredSource]:
        """Each stored transcript id with the file it was coded from, as far as the store knows it;
        with `files`, only the entries that could concern them (an id one of them could take, or
        the same path or bytes), so a large store is not read whole before every batch."""
        where = None
        if files is not None:
            if not files:
                return {}
            where = {"$or": [{"transcript": {"$in": sorted({c for f in files for c in candidate_ids(f.path)})}},
                             {"source_path": {"$in": [f.path for f in files]}},
                             {"source_sha256": {"$in": [f.sha256 for f in files]}}]}
        out: dict[str, StoredSource] = {}
        for meta in self.collection.get(where=where, include=["metadatas"])["metadatas"]:
            out.setdefault(meta["transcript"], StoredSource(meta["source"], meta.get("source_path", ""),
                                                            meta.get("source_sha256", "")))
        return out

    def ids_of(self, transcript_id: str) -> list[str]:
        return self.collection.get(where={"transcript": transcript_id}, include=[])["ids"]

    def count(self) -> int:
        return self.collection.count()

    def search(self, query: str, k: int = 10, **filters: str | None) -> list[Hit]:
        """The k codes nearest the query among those whose metadata equals every given filter.

        Chroma answers an unfiltered query from its vector index in a few milliseconds, but a
        metadata `where` costs 20 to 40 times that on a store of 100,000 codes (docs/benchmarks.md),
        and so does reading the metadata of a wide result. So a filtered search reads only ids
        and distances: the nearest codes unfiltered, widened until k of them pass, the filter
        checked on the id itself (Code.id is `transcript:kind[.force|.dimension]:start-end`, so
        kind, force and transcript are in it), then the metadata of those k only, checked again.
        A rare value (too few among the nearest WIDEST: a transcript) is answered exactly from its
        own codes' vectors (a `get` by transcript, then cosine here); a filter on anything else
        (speaker) by Chroma's `where` query, as before."""
        vector = self.embedder.embed([query])
        wanted = {key: value for key, value in filters.items() if value}
        if not wanted:
            return self._query(vector, k, None)
        if not set(wanted) <= set(ID_FACETS):  # speaker: Chroma's where (no faster way measured)
            return self._query(vector, k, where_clause(**wanted))
        hits = self._widened(vector, k, wanted)
        return hits if hits is not None else self._exact(vector, k, wanted)

    def _query(self, vector: list, k: int, where: dict | None) -> list[Hit]:
        result = self.collection.query(query_embeddings=vector, n_results=k, where=where,
                                       include=["documents", "metadatas", "distances"])
        return [Hit(i, d, dist, m) for i, d, dist, m in zip(
            result["ids"][0], result["documents"][0], result["distances"][0], result["metadatas"][0])]

    def _widened(self, vector: list, k: int, wanted: dict[str, str]) -> list[Hit] | None:
        """The k nearest that pass, from unfiltered id-only queries; None when the value is too rare
        for that (or an id does not say its facets, or the metadata disagrees with the id)."""
        n = max(FIRST_POOL, 4 * k)
        while True:
            result = self.collection.query(query_embeddings=vector, n_results=n, include=["distances"])
            ids, distances = result["ids"][0], result["distances"][0]
            passing = []
            for code_id, distance in zip(ids, distances):
                facets = id_facets(code_id)
                if facets is None:
                    return None
                if all(facets[key] == value for key, value in wanted.items()):
                    passing.append((code_id, distance))
            if len(passing) >= k or len(ids) < n:  # enough, or the whole store was read: exact either way
                return self._fetched(passing[:k], wanted)
            if n >= WIDEST:
                return None
            # as many again as the share that passed says are needed, half as many more; none passed: the widest
            wider = round(1.5 * k * len(ids) / len(passing)) if passing else WIDEST
            if wider > WIDEST:  # too rare for this: the exact path reads its few codes
                return None
            n = min(WIDEST, max(wider, 2 * n))

    def _fetched(self, chosen: list[tuple[str, float]], wanted: dict[str, str]) -> list[Hit] | None:
        if not chosen:
            return []
        got = self.collection.get(ids=[i for i, _ in chosen], include=["documents", "metadatas"])
        found = {i: (d, m) for i, d, m in zip(got["ids"], got["documents"], got["metadatas"])}
        if set(found) != {i for i, _ in chosen} or any(
                found[i][1].get(key) != value for i, _ in chosen for key, value in wanted.items()):
            return None
        return [Hit(i, found[i][0], distance, found[i][1]) for i, distance in chosen]

    def _exact(self, vector: list, k: int, wanted: dict[str, str]) -> list[Hit]:
        """Cosine over the filtered codes' own vectors: read by transcript alone when it is given
        (one condition is the cheapest `where`), the other facets checked on the ids; Chroma's
        `where` query when more than EXACT_MOST codes come back."""
        import numpy as np

        where = where_clause(**wanted)
        narrow = {"transcript": wanted["transcript"]} if "transcript" in wanted else wanted
        got = self.collection.get(where=narrow, include=["embeddings"], limit=EXACT_MOST + 1)
        if len(got["ids"]) > EXACT_MOST:
            return self._query(vector, k, where)
        rows = []
        for row, code_id in enumerate(got["ids"]):
            facets = id_facets(code_id)
            if facets is None:
                return self._query(vector, k, where)
            if all(facets[key] == value for key, value in wanted.items()):
                rows.append(row)
        if not rows:
            return []
        matrix = np.asarray(got["embeddings"], dtype=np.float32)[rows]
        q = np.asarray(vector[0], dtype=np.float32)
        similarity = matrix @ q / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q) + 1e-12)
        order = np.argsort(-similarity, kind="stable")[:k]
        chosen = [(got["ids"][rows[i]], float(1.0 - similarity[i])) for i in order]
        return self._fetched(chosen, wanted) or self._query(vector, k, where)


ID_FACETS = ("kind", "force", "transcript")  # what a code's id says (see id_facets)
FIRST_POOL = 100  # the nearest codes a filtered search reads first (ids and distances only)
WIDEST = 3000  # the most it reads so: about 20 ms on two cores; rarer values go to _exact
EXACT_MOST = 1000  # the most codes _exact compares itself; more go to Chroma's where


def id_facets(code_id: str) -> dict[str, str] | None:
    """kind, force and transcript from a Code.id (`transcript:label:start-end`; a transcript id may
    hold ':'), as code_metadata stores them; None for an id of another shape."""
    parts = code_id.rsplit(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return None
    kind, _, rest = parts[1].partition(".")
    return {"kind": kind, "force": rest if kind == "force" else "", "transcript": parts[0]}


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
