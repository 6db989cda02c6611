"""Studies and the review store through the product: the code_batch flow (from the cassette, as
tests/test_flow.py runs it), real Chroma, real SQLite, and the `jtbd` command line.

The example is coded once per module; each test works on its own copy of that data folder (the
Chroma store, the review database and the cached chunk results), so a re-run makes no model call."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conftest import (
    EXAMPLE, RECORD_BASE_URL, RECORD_MODEL, cli_runner, code_example_once, copy_of_coded, run_paths,
)

CASSETTE = "flow/espresso_machine.yaml"
TID = "espresso_machine"
SERVER_FLAGS = ["--backend", "openai", "--base-url", RECORD_BASE_URL, "--model", RECORD_MODEL, "--llm-mode",
                "json_object_schema", "--extra-body", '{"repeat_penalty": 1.0}', "--concurrency", "1",
                "--timeout", "900", "--task-retries", "0"]


@pytest.fixture(scope="module")
def coded_once(prefect_harness, my_vcr, tmp_path_factory):
    return code_example_once(my_vcr, tmp_path_factory.mktemp("studies"))


@pytest.fixture()
def study(coded_once, tmp_path, monkeypatch):
    """A copy of the coded data folder: (settings, the first run's codes by id)."""
    return copy_of_coded(coded_once, tmp_path, monkeypatch)


@pytest.fixture()
def jtbd(monkeypatch, capsys):
    """`jtbd ARGV` in process: (exit status, stdout, stderr). The options' network checks are skipped:
    the recorded server is not running."""
    import jtbd.cli

    monkeypatch.setattr(jtbd.cli, "check_code_options", lambda *args: None)
    return cli_runner(monkeypatch, capsys)


def _reviews(settings):
    from jtbd.coding.reviews import ReviewStore

    return ReviewStore.open(settings.review_db_url)


def _chroma_ids(settings, study: str = "default") -> list[str] | None:
    from jtbd.coding.store import open_collection
    from jtbd.settings import study_collection

    collection = open_collection(str(settings.chroma_path), "", study_collection(settings.collection, study),
                                 create=False)
    return None if collection is None else sorted(collection.get(include=[])["ids"])


def _statuses(reviews, study: str = "default") -> dict[str, str]:
    return {r.code["id"]: r.status for r in reviews.reviewed(study)}


def test_the_flow_saves_every_coded_interview_for_review(study):
    from jtbd.coding.parse import load_transcript

    settings, codes = study
    with _reviews(settings) as reviews:
        assert reviews.studies() == {"default": 1}
        assert reviews.transcript("default", TID) == load_transcript(EXAMPLE)  # the whole interview, every turn
        assert reviews.source_path("default", TID) == str(EXAMPLE.resolve())
        reviewed = reviews.reviewed("default", TID)
    assert {r.code["id"]: r.code for r in reviewed} == codes  # as codes.jsonl has them, ids included
    assert {r.status for r in reviewed} == {"suggested"} and _chroma_ids(settings) == sorted(codes)


def _decide_some(settings, codes) -> dict[str, str]:
    """Accept, relabel and reject a force each, note a job; the statuses they leave."""
    forces = sorted((c for c in codes.values() if c["kind"] == "force"), key=lambda c: c["score"])
    accepted, relabelled, rejected = forces[0]["id"], forces[1]["id"], forces[2]["id"]
    other = next(f for f in ("push", "pull", "anxiety", "habit") if f != forces[1]["force"])
    with _reviews(settings) as reviews:
        reviews.decide("default", TID, accepted, "accept", "ann")
        reviews.decide("default", TID, relabelled, "relabel", "ann", code={**forces[1], "force": other})
        reviews.decide("default", TID, rejected, "reject", "bob", note="the dog, not the coffee")
        return _statuses(reviews)


def test_decisions_survive_a_rerun_of_jtbd_code(study, jtbd, my_vcr, tmp_path):
    settings, codes = study
    before = _decide_some(settings, codes)
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True) as cassette:
        status, _, err = jtbd("code", str(EXAMPLE), *SERVER_FLAGS, "--data-dir", settings.data_dir,
                              "--out", str(tmp_path / "run2"))
        assert cassette.play_count == 0
    assert status == 0, err
    with _reviews(settings) as reviews:
        assert _statuses(reviews) == before
        assert sorted(before.values()).count("suggested") == len(codes) - 3
        assert len(reviews.history("default")) == 3
        now = {r.code["id"]: r for r in reviews.reviewed("default")}
    relabelled = next(i for i, s in before.items() if s == "changed")
    assert now[relabelled].code["force"] != codes[relabelled]["force"]  # the reviewer's label, not the model's


def test_a_reviewed_code_the_next_run_no_longer_suggests_is_orphaned(study, my_vcr, tmp_path, monkeypatch):
    """A stricter decision re-decides from the cached ratings: the lowest-scored forces drop out."""
    from conftest import stricter

    from jtbd.flows import code_batch
    from jtbd.prompts import load_strategy

    settings, codes = study
    before = _decide_some(settings, codes)
    strict = stricter(load_strategy(settings.strategy))
    monkeypatch.setattr(code_batch, "load_strategy", lambda name, folder="": strict)
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True):
        summary = run_paths([EXAMPLE], settings, tmp_path / "run2")
    assert summary.transcripts_ok == [str(EXAMPLE)] and summary.llm_calls == 0
    gone = set(codes) - set(_chroma_ids(settings))
    decided = {i for i, s in before.items() if s != "suggested"}
    assert decided <= gone  # the three decided forces were the lowest scored
    with _reviews(settings) as reviews:
        now = _statuses(reviews)
    expected = {"accepted": "orphaned", "changed": "orphaned", "rejected": "rejected"}
    assert {i: now[i] for i in decided} == {i: expected[before[i]] for i in decided}
    assert not (gone - decided) & set(now)  # a suggestion nobody reviewed just goes
    assert {s for i, s in now.items() if i not in decided} == {"suggested"}


def test_two_studies_are_kept_apart(study, jtbd, my_vcr, tmp_path):
    from jtbd.settings import with_changes

    settings, codes = study
    pilot = with_changes(settings, study="pilot")
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True):
        summary = run_paths([EXAMPLE], pilot, tmp_path / "run2")
    assert summary.transcripts_ok == [str(EXAMPLE)] and summary.llm_calls == 0
    assert _chroma_ids(settings, "pilot") == _chroma_ids(settings, "default") == sorted(codes)
    some = sorted(codes)[0]
    with _reviews(settings) as reviews:
        reviews.decide("pilot", TID, some, "reject", "ann")
        assert _statuses(reviews, "default")[some] == "suggested"
    status, said, _ = jtbd("forget", TID, "--study", "pilot", "--data-dir", settings.data_dir)
    assert status == 0 and f"{TID}: {len(codes)} codes removed from the store" in said
    assert f"{TID}: also in study default, kept there (jtbd forget {TID} --study default)" in said
    assert _chroma_ids(settings, "pilot") == [] and _chroma_ids(settings, "default") == sorted(codes)
    with _reviews(settings) as reviews:
        assert reviews.studies() == {"default": 1} and reviews.reviewed("pilot") == []
        assert len(reviews.reviewed("default")) == len(codes)
    status, said, _ = jtbd("search", "the queue at the coffee place", "--study", "pilot", "--data-dir",
                           settings.data_dir, "--json")
    assert status == 0 and said == ""  # the pilot study is empty; the default one was not searched


def _table_rows(said: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("│┃ ").split("│")]
            for line in said.splitlines() if "│" in line]


def test_jtbd_list_lists_the_studies_and_a_studys_transcripts(study, jtbd, my_vcr, tmp_path):
    from jtbd.settings import with_changes

    settings, codes = study
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True):
        run_paths([EXAMPLE], with_changes(settings, study="pilot-2"), tmp_path / "run2")
    status, said, _ = jtbd("list", "--data-dir", settings.data_dir)
    assert status == 0 and "studies: 2" in said
    assert _table_rows(said) == [["default", "1", "jtbd_codes"], ["pilot-2", "1", "jtbd_codes__pilot-2"]]
    status, said, _ = jtbd("list", "--study", "pilot-2", "--data-dir", settings.data_dir)
    assert status == 0 and "coded transcripts in study pilot-2: 1" in said and TID in said
    status, said, err = jtbd("list", "--study", "nope", "--data-dir", settings.data_dir)
    assert (status, said) == (2, "") and err.splitlines() == [
        "error: --study is 'nope': no such study in the store (studies: default, pilot-2; see 'jtbd list')"]
    status, _, err = jtbd("list", "--study", "no way", "--data-dir", settings.data_dir)
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("error: --study is 'no way': it must be a study name")


def test_forget_removes_the_transcripts_review_records(study, jtbd):
    settings, codes = study
    _decide_some(settings, codes)
    longest = max((c["quote"] for c in codes.values()), key=len).encode()
    # the review database's files (Chroma's and the cache's are tests/test_hardening_flow.py's)
    holding = lambda: [p.name for p in sorted(Path(settings.data_dir).glob("reviews.sqlite3*"))  # noqa: E731
                       if longest in p.read_bytes() or b"the dog, not" in p.read_bytes()]
    assert holding()
    status, said, _ = jtbd("forget", TID, "--data-dir", settings.data_dir)
    assert status == 0, said
    assert (f"{TID}: 1 transcript, {len(codes)} suggestions and 3 review decisions removed from the review "
            "database") in said
    with _reviews(settings) as reviews:
        assert reviews.studies() == {} and reviews.history("default") == []
    assert holding() == []


def test_a_review_database_that_cannot_take_a_transcript_fails_it_and_leaves_neither_store(study, my_vcr, tmp_path,
                                                                                          monkeypatch):
    from jtbd.coding import reviews as review_module
    from jtbd.coding.store import CodeStore
    from jtbd.settings import with_changes

    settings, _ = study
    monkeypatch.setattr(review_module, "BUSY_TIMEOUT", 0.5)
    holder = sqlite3.connect(Path(settings.data_dir) / "reviews.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a reviewer's write, in progress
    try:
        with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True):
            locked = run_paths([EXAMPLE], with_changes(settings, study="locked"), tmp_path / "run2")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    [(path, problem)] = locked.transcripts_failed
    assert path == str(EXAMPLE) and "\n" not in problem
    assert problem.startswith("could not store codes: the review database ")
    assert "is locked by another writer" in problem
    assert _chroma_ids(settings, "locked") in (None, [])  # Chroma is written inside the review transaction

    def chroma_down(*args, **kwargs):
        raise RuntimeError("Chroma is down")

    monkeypatch.setattr(CodeStore, "replace_transcript", chroma_down)
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True):
        down = run_paths([EXAMPLE], with_changes(settings, study="down"), tmp_path / "run3")
    assert down.transcripts_failed == [(str(EXAMPLE), "could not store codes: Chroma is down")]
    with _reviews(settings) as reviews:
        assert reviews.studies() == {"default": 1}  # neither failed study left a transcript to review


def test_a_review_database_it_cannot_open_stops_jtbd_code_before_any_model_call(study, jtbd, my_vcr, tmp_path):
    settings, _ = study
    (tmp_path / "a-file").write_text("not a folder")
    bad = f"sqlite:///{tmp_path / 'a-file' / 'reviews.sqlite3'}"
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True) as cassette:
        status, said, err = jtbd("code", str(EXAMPLE), *SERVER_FLAGS, "--data-dir", settings.data_dir,
                                 "--db", bad, "--out", str(tmp_path / "run2"))
        assert cassette.play_count == 0
    assert (status, said) == (2, "")
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: cannot open the review database {tmp_path / 'a-file' / 'reviews.sqlite3'}: ")
