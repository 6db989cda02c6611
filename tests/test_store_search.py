"""CodeStore.search with filters: the id-only widening and the exact path for rare values give the
same codes as Chroma's own `where` query, on a small real Chroma store with hand-made vectors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from jtbd.coding import store as store_module
from jtbd.coding.store import CodeStore, id_facets, open_collection

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
