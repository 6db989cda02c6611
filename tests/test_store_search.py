"""CodeStore.search with filters: the id-only widening and the exact path for rare values give the
same codes as Chroma's own `where` query, on a small real Chroma store with hand-made vectors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from jtbd.coding import store as store_module
from jtbd.coding.store import CodeStore, FacetIndex, id_facets, open_collection

FORCES = ("push", "pull", "anxiety", "habit")


class WordVectors:
    """A deterministic embedder: each text's vector from a hash-seeded generator (no model)."""

    name = "test-vectors"

    def embed(self, texts):
        return [np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:4], "big")).normal(size=16).tolist() for t in texts]


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    rng = np.random.default_rng(7)
    ids, metas, docs = [], [], []
    for i in range(600):
        transcript = f"call:{i % 30:02d}" if i % 3 else f"interview-{i % 7}"  # some ids hold ':'
        kind = ("force", "force", "force", "trigger", "job", "quote")[i % 6]
        force = FORCES[i // 6 % 4] if kind == "force" else ""
        label = {"force": f"force.{force}", "job": "job.functional"}.get(kind, kind)
        ids.append(f"{transcript}:{label}:{i * 10}-{i * 10 + 9}")
        metas.append({"transcript": transcript, "kind": kind, "force": force, "speaker": f"P{i % 5}"})
        docs.append(f"quote {i}")
    collection = open_collection(str(tmp_path_factory.mktemp("chroma")), name="jtbd_codes")
    collection.upsert(ids=ids, documents=docs, metadatas=metas, embeddings=rng.normal(size=(600, 16)).tolist())
    return CodeStore(collection, WordVectors())


def _index_of(store, status=lambda i: "") -> FacetIndex:
    """The index its owner would keep: each code's metadata, with a review status of its own."""
    got = store.collection.get(include=["metadatas"])
    index = FacetIndex()
    by_transcript = {}
    for n, (code_id, meta) in enumerate(zip(got["ids"], got["metadatas"])):
        facets = {key: meta[key] for key in ("transcript", "kind", "force", "speaker")}
        by_transcript.setdefault(meta["transcript"], {})[code_id] = {**facets, "status": status(n)}
    for transcript, entries in by_transcript.items():
        index.replace(transcript, entries)
    return index


FILTERS = [{}, {"kind": "force"}, {"force": "habit"}, {"kind": "trigger"}, {"transcript": "call:07"},
           {"transcript": "interview-3", "kind": "force"}, {"speaker": "P2"}, {"speaker": "P1", "kind": "quote"},
           {"kind": "force", "force": "push", "transcript": "call:11"}, {"transcript": "nobody"},
           {"kind": "force", "force": "trigger"}]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "none")
@pytest.mark.parametrize("k", [1, 5, 40])
def test_filtered_search_gives_what_chromas_where_gives(small_store, filters, k):
    for query in ("worried about the price", "we always did it this way", "a friend told me"):
        hits = small_store.search(query, k=k, **filters)
        vector = small_store.embedder.embed([query])
        expected = small_store._query(vector, k, store_module.where_clause(**filters))
        assert [h.id for h in hits] == [h.id for h in expected]
        assert [h.quote for h in hits] == [h.quote for h in expected] and [h.meta for h in hits] == [h.meta for h in expected]
        assert [h.distance for h in hits] == pytest.approx([h.distance for h in expected], abs=1e-5)
        assert all(h.meta[key] == value for h in hits for key, value in filters.items())


def test_every_path_is_taken(small_store, monkeypatch):
    taken = []
    for name in ("_widened", "_exact", "_query"):
        inner = getattr(small_store, name)
        monkeypatch.setattr(small_store, name, lambda *a, _n=name, _f=inner: taken.append(_n) or _f(*a))
    small_store.search("price", k=5, kind="force")  # common: the widened id-only query answers
    assert taken == ["_widened"]
    taken.clear()
    monkeypatch.setattr(store_module, "WIDEST", 100)
    small_store.search("price", k=5, transcript="call:07")  # rare (20 of 600): its own vectors
    assert taken == ["_widened", "_exact"]
    taken.clear()
    small_store.search("price", k=5, speaker="P2")  # not in the id: Chroma's where
    assert taken == ["_query"]
    taken.clear()
    monkeypatch.setattr(store_module, "EXACT_MOST", 10)
    small_store.search("price", k=5, transcript="call:07", kind="force")  # 20 read by transcript: too many
    assert taken == ["_widened", "_exact", "_query"]


def test_the_id_says_kind_force_and_transcript():
    assert id_facets("call:07:force.push:10-19") == {"kind": "force", "force": "push", "transcript": "call:07"}
    assert id_facets("a/b:job.social:1-2") == {"kind": "job", "force": "", "transcript": "a/b"}
    assert id_facets("x:trigger:1-2") == {"kind": "trigger", "force": "", "transcript": "x"}
    assert id_facets("no-colon") is None


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()) or "none")
@pytest.mark.parametrize("k", [1, 5, 40])
@pytest.mark.parametrize("compared_most", [20_000, 0], ids=["compared", "vector-index"])
def test_search_with_a_facet_index_gives_what_chromas_where_gives(small_store, filters, k, compared_most, monkeypatch):
    monkeypatch.setattr(store_module, "COMPARED_MOST", compared_most)  # 0: every filter from the vector index
    index = _index_of(small_store)
    for query in ("worried about the price", "we always did it this way", "a friend told me"):
        hits = small_store.search(query, k=k, index=index, **filters)
        vector = small_store.embedder.embed([query])
        expected = small_store._query(vector, k, store_module.where_clause(**filters))
        read = small_store.nearest(vector, 200, index)  # what an unfiltered search read first: not asked again
        assert small_store.nearest(vector, k, index, read=read, **filters) == [(h.id, h.distance) for h in hits]
        assert [h.id for h in hits] == [h.id for h in expected] and [h.quote for h in hits] == [h.quote for h in expected]
        assert [h.meta for h in hits] == [h.meta for h in expected]
        assert [h.distance for h in hits] == pytest.approx([h.distance for h in expected], abs=1e-5)


def test_a_facet_chroma_does_not_hold_is_searched_exactly_and_common_values_from_the_vector_index(small_store,
                                                                                                  monkeypatch):
    statuses = ("accepted", "rejected") + ("suggested",) * 18  # 5% accepted: rare; 90% suggested: common
    index = _index_of(small_store, status=lambda n: statuses[n % 20])
    got = small_store.collection.get(include=["embeddings", "metadatas"])
    vector = small_store.embedder.embed(["worried about the price"])
    q = np.asarray(vector[0]) / np.linalg.norm(vector[0])
    distance = {i: 1 - float(np.dot(e, q) / np.linalg.norm(e)) for i, e in zip(got["ids"], got["embeddings"])}
    monkeypatch.setattr(store_module, "WIDEST", 100)  # as 3,000 of 100,000 codes: 5% is rare here
    monkeypatch.setattr(store_module, "COMPARED_MOST", 100)  # as 20,000 of 100,000 codes
    taken = []
    for name in ("_widened", "_compared"):
        inner = getattr(small_store, name)
        monkeypatch.setattr(small_store, name, lambda *a, _n=name, _f=inner, **kw: taken.append(_n) or _f(*a, **kw))
    for status, kind, path in (("accepted", "", "_compared"), ("suggested", "force", "_widened"),
                               ("rejected", "quote", "_compared")):
        taken.clear()
        wanted = {key: value for key, value in (("status", status), ("kind", kind)) if value}
        passing = [i for i, ok in zip(distance, index.passes(list(distance), wanted)) if ok]
        assert sorted(passing) == sorted(index.passing(wanted))
        expected = sorted(passing, key=lambda i: distance[i])[:8]
        found = small_store.nearest(vector, 8, index, **wanted)
        assert [i for i, _ in found] == expected and taken[-1] == path, (status, kind, taken)
        assert [d for _, d in found] == pytest.approx([distance[i] for i in expected], abs=1e-5)

    def kept(ids):
        return [bool(index._loaded[index._row[i]]) for i in ids]

    # the rare path kept the vectors it read; a transcript coded again drops its own, a decision does not
    transcript = next(t for t, ids in index._of.items() if any(i in index.passing({"status": "accepted"}) for i in ids))
    mine = [i for i in index._of[transcript] if index.passes([i], {"status": "accepted"})[0]]
    assert mine and all(kept(mine))
    entries = {i: {"transcript": transcript, "status": "accepted"} for i in index._of[transcript]}
    index.replace(transcript, entries, recoded=False)
    assert all(kept(mine))
    index.replace(transcript, entries)
    assert not any(kept(mine))
    found = small_store.nearest(vector, 50, index, status="accepted", transcript=transcript)
    assert sorted(i for i, _ in found) == sorted(entries)  # the new facets count at once
    index.replace(transcript, {})
    assert small_store.nearest(vector, 5, index, transcript=transcript) == [] and len(index) == 600 - len(entries)


def test_the_facet_index_reads_every_vector_once_and_skips_what_chroma_does_not_hold(small_store):
    index = _index_of(small_store)
    index.replace("mine", {"mine:quote:1-5": {"transcript": "mine", "kind": "quote"}})  # a person's own: not in Chroma
    index.replace("interview-3", {})  # gone: its rows are dropped when the rows are arranged
    vector = np.asarray(small_store.embedder.embed(["a friend told me"])[0], dtype=np.float32)
    vector /= np.linalg.norm(vector)
    asked = [({"kind": "quote"}, 3), ({"kind": "force", "force": "habit"}, 40), ({"speaker": "P2"}, 7)]
    before = [index.nearest(small_store.collection, vector, k, wanted) for wanted, k in asked]  # rows as they came
    index.load_vectors(small_store.collection, batch=64)
    assert int(index._loaded.sum()) == len(index) - 1 and bool(index._read.all()) and len(index._ids) == len(index)
    # arranged: each kind's rows side by side (the facet with the fewest values first: status, one value here)
    kinds = np.array([kind for code_id, kind in zip(index._ids, index._columns["kind"]) if code_id != "mine:quote:1-5"])
    assert int((np.diff(kinds) != 0).sum()) == 3
    assert [index.nearest(small_store.collection, vector, k, wanted) for wanted, k in asked] == before
    assert "mine:quote:1-5" not in dict(before[0]) and len(before[1]) == 40
    index.drop_vectors()
    assert not index._loaded.any() and not index._read.any()
