"""Transcript ids: one per source file within a store, stable across re-runs, readable."""

from __future__ import annotations

from pathlib import Path

import pytest

from jtbd.coding.identity import SourceFile, StoredSource, candidate_ids, source_file, transcript_ids


def _src(path: str, sha: str = "") -> SourceFile:
    return SourceFile(path, sha or path)  # a distinct file unless told otherwise


def test_a_lone_file_is_named_by_its_stem():
    assert transcript_ids([_src("/study/call-07.txt")], {}) == {"/study/call-07.txt": "call-07"}


def test_one_folder_per_participant_keeps_each_interview_apart():
    ids = transcript_ids([_src("/study/p01/interview.txt"), _src("/study/p02/interview.txt"),
                          _src("/study/notes/kickoff.md")], {})
    assert ids == {"/study/p01/interview.txt": "p01/interview", "/study/p02/interview.txt": "p02/interview",
                   "/study/notes/kickoff.md": "kickoff"}


def test_two_formats_of_one_name_are_told_apart_by_extension():
    ids = transcript_ids([_src("/study/call.txt"), _src("/study/call.vtt")], {})
    assert ids == {"/study/call.txt": "call.txt", "/study/call.vtt": "call.vtt"}


def test_a_second_batch_does_not_take_the_id_of_another_stored_file(tmp_path):
    first = tmp_path / "p01" / "interview.txt"
    first.parent.mkdir()
    first.write_text("x")
    stored = {"interview": StoredSource("interview.txt", str(first), "sha-of-p01")}
    ids = transcript_ids([_src(str(tmp_path / "p02" / "interview.txt"))], stored)
    assert ids == {str(tmp_path / "p02" / "interview.txt"): "p02/interview"}


def test_a_stored_file_keeps_its_id_when_coded_again_in_a_larger_batch():
    """p01 was coded alone as 'interview'; coded beside p02 it must not become 'p01/interview'."""
    stored = {"interview": StoredSource("interview.txt", "/study/p01/interview.txt", "a")}
    ids = transcript_ids([_src("/study/p01/interview.txt", "a"), _src("/study/p02/interview.txt", "b")], stored)
    assert ids == {"/study/p01/interview.txt": "interview", "/study/p02/interview.txt": "p02/interview"}


def test_a_moved_or_copied_file_is_known_by_its_bytes():
    stored = {"bank_switch": StoredSource("bank_switch.vtt", "/clone/eval/gold/test/bank_switch.vtt", "same")}
    ids = transcript_ids([_src("/site-packages/jtbd/eval/gold/test/bank_switch.vtt", "same")], stored)
    assert ids == {"/site-packages/jtbd/eval/gold/test/bank_switch.vtt": "bank_switch"}


def test_a_store_written_before_paths_were_kept_still_matches_by_name():
    stored = {"call-07": StoredSource("call-07.txt")}
    assert transcript_ids([_src("/study/call-07.txt")], stored) == {"/study/call-07.txt": "call-07"}


def test_ids_do_not_depend_on_the_order_files_are_given():
    files = [_src("/a/x/call.txt"), _src("/b/x/call.txt"), _src("/c/call.vtt")]
    assert transcript_ids(files, {}) == transcript_ids(list(reversed(files)), {})
    assert len(set(transcript_ids(files, {}).values())) == 3


def test_candidates_grow_from_the_stem():
    assert candidate_ids("/s/p01/interview.txt") == ["interview", "p01/interview", "s/p01/interview",
                                                      "interview.txt", "p01/interview.txt", "s/p01/interview.txt"]


def test_source_file_hashes_the_bytes(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("same")
    b.write_text("same")
    assert source_file(a).sha256 == source_file(b).sha256 and source_file(a).path != source_file(b).path


@pytest.mark.parametrize("n", [2, 5])
def test_many_same_named_files_get_distinct_ids(n):
    files = [_src(f"/study/p{i:02d}/interview.txt") for i in range(n)]
    assert len(set(transcript_ids(files, {}).values())) == n


def test_the_store_is_asked_only_about_entries_that_could_concern_the_batch(tmp_path):
    """Before every batch the flow reads what the store knows of its files; a study's other
    transcripts are not read (a large store would take seconds to read whole)."""
    from jtbd.coding.store import CodeStore, open_collection

    collection = open_collection(str(tmp_path / "chroma"))
    rows = {"interview": ("/s/p01/interview.txt", "a"), "call-07": ("/s/call-07.vtt", "b"),
            "unrelated": ("/s/unrelated.txt", "c"), "moved": ("/old/place/moved.txt", "d")}
    collection.upsert(ids=[f"{t}:force:0-1" for t in rows], embeddings=[[1.0, 0.0]] * len(rows),
                      metadatas=[{"transcript": t, "source": Path(p).name, "source_path": p, "source_sha256": sha}
                                 for t, (p, sha) in rows.items()])
    store = CodeStore(collection, None)
    batch = [SourceFile("/s/p02/interview.txt", "x"), SourceFile("/s/call-07.vtt", "y"),
             SourceFile("/new/moved-copy.txt", "d")]
    # an id p02's file could take, its own path, and the same bytes coded from elsewhere
    assert set(store.sources(batch)) == {"interview", "call-07", "moved"}
    assert set(store.sources()) == set(rows) and store.sources([]) == {}
