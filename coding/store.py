"""Store grounded codes in Chroma and search them by meaning.

One collection holds every code of every transcript of a study (jtbd_codes for the default
study, jtbd_codes__<study> for another: see Settings.study_collection). IDs are deterministic
(transcript + label + offsets), so a re-run upserts instead of duplicating.
A transcript is replaced as a unit: its vectors are computed first, then its
new codes are upserted and codes it no longer has are deleted, so a failure
never leaves half a transcript behind.
"""

from __future__ import annotations

import math
import os
import threading
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

    def search(self, query: str, k: int = 10, index: "FacetIndex | None" = None, **filters: str | None) -> list[Hit]:
        """The k codes nearest the query among those whose metadata equals every given filter; with
        an `index`, among those whose facets there equal them (see `nearest`).

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
        if index is not None:
            return self._fetched(self.nearest(vector, k, index, **wanted), {}) or []
        if not set(wanted) <= set(ID_FACETS):  # speaker: Chroma's where (no faster way measured)
            return self._query(vector, k, where_clause(**wanted))
        hits = self._fetched_or_none(self._widened(vector, k, _id_says(wanted), max(FIRST_POOL, 4 * k)), wanted)
        return hits if hits is not None else self._exact(vector, k, wanted)

    def nearest(self, vector: list, k: int, index: "FacetIndex", read: Sequence[tuple[str, float]] = (),
                **filters: str | None) -> list[tuple[str, float]]:
        """The k codes nearest `vector` ([one vector], as `embed` gives it) whose facets in `index` equal
        every given filter, as (id, distance): ids and distances only, which Chroma answers fast.
        `read`: the unfiltered nearest already read (by an unfiltered `nearest`), not asked again.

        The index says exactly which codes pass and how many. Up to COMPARED_MOST of them, their
        vectors in the index (or at most READ_MOST to read from Chroma by id first), the query is
        compared with each (exact, and at 17,500 codes faster than the vector index read wide).
        More, or their vectors not read yet: the unfiltered vector index, read wide enough that k
        should pass (1.5 times k over the share that passes, at most WIDEST) and widened if not;
        only when even WIDEST hold too few, compared with each after all."""
        wanted = {key: value for key, value in filters.items() if value}
        if not wanted:
            result = self.collection.query(query_embeddings=vector, n_results=k, include=["distances"])
            return list(zip(result["ids"][0], result["distances"][0]))
        passing, unread = index.count(wanted)
        if not passing:
            return []
        if passing <= COMPARED_MOST and unread <= READ_MOST:
            return self._compared(vector, k, index, wanted)
        pool = math.ceil(1.5 * k * len(index) / passing)
        if pool <= WIDEST:
            found = self._widened(vector, k, lambda ids: index.passes(ids, wanted), max(pool, k), patient=True,
                                  read=read)
            if found is not None:
                return found
        return self._compared(vector, k, index, wanted)

    def _compared(self, vector: list, k: int, index: "FacetIndex", wanted: dict[str, str]) -> list[tuple[str, float]]:
        """The k passing codes nearest the vector, by cosine over their own vectors."""
        import numpy as np

        q = np.asarray(vector[0], dtype=np.float32)
        return index.nearest(self.collection, q / (np.linalg.norm(q) or 1.0), k, wanted)

    def _query(self, vector: list, k: int, where: dict | None) -> list[Hit]:
        result = self.collection.query(query_embeddings=vector, n_results=k, where=where,
                                       include=["documents", "metadatas", "distances"])
        return [Hit(i, d, dist, m) for i, d, dist, m in zip(
            result["ids"][0], result["documents"][0], result["distances"][0], result["metadatas"][0])]

    def _widened(self, vector: list, k: int, passes: Any, n: int, patient: bool = False,
                 read: Sequence[tuple[str, float]] = ()) -> list[tuple[str, float]] | None:
        """The k nearest that pass (`passes(ids)`: a bool for each, or None when a code's facets cannot
        be told), from unfiltered id-only queries of n and more (the first from `read` when it holds
        as many); None when the value is too rare for that (`patient`: only when even WIDEST were too
        few)."""
        n = min(n, WIDEST)
        while True:
            if len(read) >= n:
                ids, distances = [i for i, _ in read], [d for _, d in read]
                n = len(ids)
            else:
                result = self.collection.query(query_embeddings=vector, n_results=n, include=["distances"])
                ids, distances = result["ids"][0], result["distances"][0]
            said = passes(ids)
            if said is None:
                return None
            passing = [(code_id, distance) for code_id, distance, ok in zip(ids, distances, said) if ok]
            if len(passing) >= k or len(ids) < n:  # enough, or the whole store was read: exact either way
                return passing[:k]
            if n >= WIDEST:
                return None
            # as many again as the share that passed says are needed, half as many more; none passed: the widest
            wider = round(1.5 * k * len(ids) / len(passing)) if passing else WIDEST
            if wider > WIDEST and not patient:  # too rare for this: the exact path reads its few codes
                return None
            n = min(WIDEST, max(wider, 2 * n))

    def _fetched_or_none(self, chosen: list[tuple[str, float]] | None, wanted: dict[str, str]) -> list[Hit] | None:
        return None if chosen is None else self._fetched(chosen, wanted)

    def _fetched(self, chosen: list[tuple[str, float]], wanted: dict[str, str]) -> list[Hit] | None:
        """The chosen codes' documents and metadata; None when one is missing or its metadata
        disagrees with `wanted` (what its id said)."""
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
# With a FacetIndex:
COMPARED_MOST = 20_000  # the most codes compared with the query directly: 10-30 ms on two cores, by load
READ_MOST = 1000  # the most vectors read from Chroma by id to compare (about 20 ms); more: the vector index


class FacetIndex:
    """The facets of every stored code, kept in this process by whoever owns the codes (the workbench
    reads them from the review store), so a filtered search knows which codes pass, and how many,
    without Chroma's metadata `where` (20-100 ms at 100,000 codes: docs/benchmarks.md). Facets are
    any names: transcript, kind, force, speaker, and the owner's own (a review status). The owner
    replaces a transcript's entries when they change. A row per code: each facet a column of small
    numbers, so a filter is a numpy mask over every code (well under a millisecond at 100,000), and
    the code's unit vector once read from Chroma (by id, when a filter first compares it, or all at
    once by `load_vectors`: 1.5 KB a code)."""

    def __init__(self) -> None:
        import numpy as np

        self._lock = threading.Lock()  # the web app searches in several threads while one refreshes
        self._row: dict[str, int] = {}  # id -> row
        self._ids: list[str | None] = []  # row -> id; None: a code no longer there
        self._of: dict[str, list[str]] = {}  # transcript -> its ids
        self._numbers: dict[str, dict[str, int]] = {}  # facet -> value -> its number in the column (from 1)
        self._columns: dict[str, Any] = {}  # facet -> a number per row (0: no value)
        self._alive = np.zeros(0, dtype=bool)
        self._read = np.zeros(0, dtype=bool)  # the row's vector was asked of Chroma
        self._loaded = np.zeros(0, dtype=bool)  # ... and is in _matrix (not: Chroma has no such code)
        self._matrix: Any = None  # float32, a row per code (made when the first vector is read)

    def __len__(self) -> int:
        return len(self._row)

    def replace(self, transcript: str, entries: dict[str, dict[str, str]], recoded: bool = True) -> None:
        """A transcript's codes (id -> facets) instead of the ones it had; `recoded`: it was coded again,
        so the vectors kept of its codes may be another quote's."""
        with self._lock:
            for code_id in self._of.pop(transcript, []):
                row = self._row[code_id]
                if code_id not in entries:
                    del self._row[code_id]
                    self._ids[row], self._alive[row] = None, False
                if code_id not in entries or recoded:
                    self._read[row] = self._loaded[row] = False
            for code_id, facets in entries.items():
                row = self._row.get(code_id)
                if row is None:
                    row = self._row[code_id] = self._append(code_id)
                for facet, value in facets.items():
                    self._column(facet)[row] = self._numbers.setdefault(facet, {}).setdefault(
                        value, len(self._numbers[facet]) + 1)
            if entries:
                self._of[transcript] = list(entries)

    def count(self, wanted: dict[str, str]) -> tuple[int, int]:
        """How many codes pass, and of them how many vectors were not read yet."""
        with self._lock:
            mask = self._mask(wanted)
            return int(mask.sum()), int((mask & ~self._read).sum())

    def passes(self, ids: Sequence[str], wanted: dict[str, str]) -> list[bool]:
        """Whether each code passes."""
        import numpy as np

        with self._lock:
            rows = np.fromiter((self._row.get(code_id, -1) for code_id in ids), dtype=np.int64, count=len(ids))
            return ((rows >= 0) & self._mask(wanted)[rows]).tolist()

    def passing(self, wanted: dict[str, str]) -> list[str]:
        """Every id that passes, in the order the codes came."""
        import numpy as np

        with self._lock:
            return [self._ids[row] for row in np.flatnonzero(self._mask(wanted))]

    def nearest(self, collection: Any, vector: Any, k: int, wanted: dict[str, str]) -> list[tuple[str, float]]:
        """The k passing codes nearest the unit vector, by cosine over their own vectors (read from
        Chroma first when they were not yet)."""
        import numpy as np

        with self._lock:
            mask = self._mask(wanted)
            unread = [self._ids[row] for row in np.flatnonzero(mask & ~self._read)]
        if unread:
            self._fill(collection, unread)
        with self._lock:
            rows = np.flatnonzero(self._mask(wanted) & self._loaded)
            if not len(rows):
                return []
            breaks = np.flatnonzero(np.diff(rows) != 1) + 1
            if len(breaks) < len(rows) // 64:  # long runs of neighbouring rows (see arrange): no copy of them
                runs = np.split(rows, breaks)
                similarity = np.concatenate([self._matrix[run[0]:run[-1] + 1] @ vector for run in runs])
            else:
                similarity = np.take(self._matrix, rows, axis=0) @ vector
            if len(rows) > k:  # the k best, then in order: a partition, not a sort of them all
                best = np.argpartition(-similarity, k - 1)[:k]
                rows, similarity = rows[best], similarity[best]
            order = np.lexsort((rows, -similarity))  # ties in the order the codes came
            return [(self._ids[rows[i]], float(1.0 - similarity[i])) for i in order]

    def load_vectors(self, collection: Any, batch: int = 5000) -> None:
        """Read every code's vector not read yet, then arrange the rows (a server's warm-up: then no
        filter waits for Chroma, and a common one multiplies its vectors where they lie)."""
        import numpy as np

        while True:
            with self._lock:
                unread = [self._ids[row] for row in np.flatnonzero(self._alive & ~self._read)[:batch]]
            if not unread:
                break
            self._fill(collection, unread)
        self.arrange()

    def arrange(self) -> None:
        """Put the rows in order of their facets, the one with the fewest values first (kind, then
        force, ...), so the codes of a common value lie side by side; the rows of codes no longer
        there are dropped."""
        import numpy as np

        with self._lock:
            live = np.flatnonzero(self._alive)
            facets = sorted(self._columns, key=lambda facet: len(self._numbers[facet]))
            order = live[np.lexsort([self._columns[facet][live] for facet in reversed(facets)])] if facets else live
            self._ids = [self._ids[row] for row in order]
            self._row = {code_id: row for row, code_id in enumerate(self._ids)}
            for facet, column in self._columns.items():
                self._columns[facet] = column[order]
            self._alive, self._read, self._loaded = self._alive[order], self._read[order], self._loaded[order]
            if self._matrix is not None:
                self._matrix = self._matrix[order]

    def drop_vectors(self) -> None:
        """Forget every vector read (the benchmark's cold case)."""
        with self._lock:
            self._read[:] = self._loaded[:] = False

    def _fill(self, collection: Any, ids: list[str]) -> None:
        import numpy as np

        got = collection.get(ids=ids, include=["embeddings"])  # outside the lock: the slow part
        vectors = np.asarray(got["embeddings"], dtype=np.float32).reshape(len(got["ids"]), -1)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        found = dict(zip(got["ids"], vectors))
        with self._lock:
            if self._matrix is None and found:
                self._matrix = np.zeros((len(self._alive), vectors.shape[1]), dtype=np.float32)
            for code_id in ids:
                row = self._row.get(code_id)
                if row is None:  # replaced meanwhile
                    continue
                self._read[row] = True  # asked: a code Chroma does not hold (a person's own) is not asked again
                if code_id in found:
                    self._matrix[row], self._loaded[row] = found[code_id], True

    def _mask(self, wanted: dict[str, str]) -> Any:
        mask = self._alive.copy()
        for facet, value in wanted.items():
            number = self._numbers.get(facet, {}).get(value)
            if number is None:
                return mask & False
            mask &= self._columns[facet] == number
        return mask

    def _append(self, code_id: str) -> int:
        import numpy as np

        row = len(self._ids)
        if row == len(self._alive):  # full: twice the room
            size = max(1024, 2 * row)
            self._alive, self._read, self._loaded = (np.concatenate([a, np.zeros(size - row, dtype=bool)])
                                                     for a in (self._alive, self._read, self._loaded))
            for facet, column in self._columns.items():
                self._columns[facet] = np.concatenate([column, np.zeros(size - row, dtype=np.int32)])
            if self._matrix is not None:
                self._matrix = np.concatenate([self._matrix, np.zeros((size - row, self._matrix.shape[1]),
                                                                      dtype=np.float32)])
        self._ids.append(code_id)
        self._alive[row] = True
        return row

    def _column(self, facet: str) -> Any:
        import numpy as np

        if facet not in self._columns:
            self._columns[facet] = np.zeros(len(self._alive), dtype=np.int32)
        return self._columns[facet]


def _id_says(wanted: dict[str, str]) -> Any:
    """Whether each code passes, as its id tells (None: an id of another shape)."""
    def passes(ids: Sequence[str]) -> list[bool] | None:
        said = [id_facets(code_id) for code_id in ids]
        if any(facets is None for facets in said):
            return None
        return [all(facets[key] == value for key, value in wanted.items()) for facets in said]
    return passes


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
