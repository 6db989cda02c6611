"""The review store (coding/reviews.py) on a real SQLite file: its schema from the migrations,
decisions that outlive new suggestions, orphans, studies kept apart, refused decisions in one
line, concurrent reviewers, a locked or unreachable database, and forgetting a participant."""

from __future__ import annotations

import fnmatch
import sqlite3
import threading
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT
from jtbd.coding.extract import grounding_for
from jtbd.coding.ground import Span
from jtbd.coding.outputs import code_record
from jtbd.coding.parse import load_transcript
from jtbd.coding.reviews import ACTIONS, ReviewStore, ReviewStoreError
from jtbd.schemas.codebook import Alignment, Force, JobStory, Provenance

EXAMPLE = ROOT / "examples" / "espresso_machine.txt"
RUN = Provenance(prompt_version="p1", schema_version="s1", model="m1")


@pytest.fixture()
def transcript():
    return load_transcript(EXAMPLE)


@pytest.fixture()
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'data' / 'reviews.sqlite3'}"


@pytest.fixture()
def store(url):
    with ReviewStore.open(url) as opened:
        yield opened


def _span(transcript, turn_no: int, words: int = 6) -> Span:
    """The first `words` words of the transcript's `turn_no`-th interviewee turn."""
    turn = transcript.interviewee_turns()[turn_no]
    end = turn.char_start + len(" ".join(turn.text.split(" ")[:words]))
    return Span(turn.index, turn.char_start, end, Alignment.exact, 100.0)


def _force(transcript, turn_no: int, force: str = "push", words: int = 6, score: float = 1.5) -> dict:
    span = _span(transcript, turn_no, words)
    code = Force(quote=transcript.text[span.char_start:span.char_end], force=force, score=score,
                 grounding=grounding_for(span, transcript), provenance=RUN)
    return code_record(code)  # as codes.jsonl and the store hold it


def _job(transcript, turn_no: int) -> dict:
    span = _span(transcript, turn_no, 8)
    code = JobStory(quote=transcript.text[span.char_start:span.char_end], situation="mornings are rushed",
                    motivation="make good coffee fast", outcome="catch my train", dimension="functional",
                    grounding=grounding_for(span, transcript), provenance=RUN)
    return code_record(code)


def _by_id(reviewed) -> dict:
    return {r.code["id"]: r for r in reviewed}


# --- schema ------------------------------------------------------------------------------------

def test_the_migrations_create_the_schema_from_scratch_in_wal_mode(url, tmp_path):
    path = tmp_path / "data" / "reviews.sqlite3"
    assert not path.parent.exists()
    ReviewStore.open(url).close()
    con = sqlite3.connect(path)
    tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"transcripts", "suggestions", "decisions", "jtbd_review_version"} <= tables
    columns = {row[1] for row in con.execute("PRAGMA table_info(decisions)")}
    assert {"study", "transcript_id", "code_id", "action", "reviewer", "at", "suggestion", "code", "note"} <= columns
    columns = {row[1] for row in con.execute("PRAGMA table_info(transcripts)")}
    assert {"study", "transcript_id", "source", "source_path", "text", "turns", "interviewers"} <= columns
    assert con.execute("SELECT version_num FROM jtbd_review_version").fetchall() == [("0003",)]
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # the web app asks every transcript's version on each request: from the index, not the rows and their text
    plan = con.execute("EXPLAIN QUERY PLAN SELECT transcript_id, coded_at FROM transcripts WHERE study = 's'").fetchall()
    assert "COVERING INDEX transcripts_coded" in str(plan)
    # the database refuses an action the store does not know, whoever writes it
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO decisions (study, transcript_id, code_id, action, reviewer, at) "
                    "VALUES ('s', 't', 'c', 'approve', 'ann', '2026-01-01')")
    con.close()
    ReviewStore.open(url).close()  # opened again: already at the head, nothing to do


def test_the_migrations_ship_in_the_package_data():
    """An installed package has no source tree: every migration file must match a package-data pattern."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["jtbd.coding"]
    files = [p.relative_to(ROOT / "coding").as_posix() for p in (ROOT / "coding" / "migrations").rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]
    assert "migrations/env.py" in files and any(f.startswith("migrations/versions/") for f in files)
    assert [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)] == []


def test_a_transcript_comes_back_whole_for_the_interview_page(store, transcript):
    store.save_coded("default", transcript, str(EXAMPLE), [_force(transcript, 1)])
    assert store.transcript("default", "espresso_machine") == transcript  # turns, speakers, roles, times, offsets
    assert store.source_path("default", "espresso_machine") == str(EXAMPLE)
    assert store.transcript("default", "nobody") is None and store.transcript("other", "espresso_machine") is None
    assert store.transcript_ids("default") == ["espresso_machine"]


# --- decisions and new runs --------------------------------------------------------------------

def test_a_new_run_never_overwrites_a_decision(store, transcript):
    a, b, c, d = (_force(transcript, n) for n in (1, 2, 3, 4))
    store.save_coded("default", transcript, str(EXAMPLE), [a, b, c])
    store.decide("default", "espresso_machine", a["id"], "accept", "ann")
    relabelled = {**b, "force": "anxiety"}
    store.decide("default", "espresso_machine", b["id"], "relabel", "ann", code=relabelled)
    store.decide("default", "espresso_machine", c["id"], "reject", "ann", note="the interviewer's words")
    # the next run suggests a again, changed (another score and prompt), b and c as before, and d
    changed_a = {**a, "score": 9.0, "provenance": {**a["provenance"], "prompt_version": "p2"}}
    store.save_coded("default", transcript, str(EXAMPLE), [changed_a, b, c, d])
    now = _by_id(store.reviewed("default", "espresso_machine"))
    assert {i: r.status for i, r in now.items()} == {
        a["id"]: "accepted", b["id"]: "changed", c["id"]: "rejected", d["id"]: "suggested"}
    assert now[a["id"]].code == a  # the reviewer's version, not the changed suggestion
    assert now[b["id"]].code["force"] == "anxiety" and now[b["id"]].decision.action == "relabel"
    assert now[c["id"]].decision.note == "the interviewer's words"
    assert now[d["id"]].code == d and now[d["id"]].decision is None


def test_a_reviewed_code_whose_suggestion_is_gone_stays_orphaned(store, transcript):
    a, b, c = (_force(transcript, n) for n in (1, 2, 3))
    store.save_coded("default", transcript, str(EXAMPLE), [a, b, c])
    store.decide("default", "espresso_machine", a["id"], "accept", "ann")
    store.decide("default", "espresso_machine", b["id"], "reject", "ann")
    store.save_coded("default", transcript, str(EXAMPLE), [])  # the next run finds none of them
    now = _by_id(store.reviewed("default"))
    assert {i: r.status for i, r in now.items()} == {a["id"]: "orphaned", b["id"]: "rejected"}  # c: never reviewed
    assert now[a["id"]].code == a and now[b["id"]].code == b
    # an orphan can still be decided on, answering the suggestion it was made from
    decision = store.decide("default", "espresso_machine", a["id"], "reject", "bob")
    assert decision.suggestion == a and decision.code is None
    assert _by_id(store.reviewed("default"))[a["id"]].status == "rejected"


def test_a_reset_makes_a_code_the_models_suggestion_again_and_keeps_the_history(store, transcript):
    a, b, c = (_force(transcript, n) for n in (1, 2, 3))
    store.save_coded("default", transcript, str(EXAMPLE), [a, b, c])
    tid = "espresso_machine"
    store.decide("default", tid, a["id"], "accept", "ann")
    store.decide("default", tid, b["id"], "relabel", "ann", code={**b, "force": "habit"})
    store.decide("default", tid, c["id"], "reject", "ann")
    reset = [store.decide("default", tid, code["id"], "reset", "bob") for code in (a, b, c)]
    assert [(d.action, d.reviewer, d.code, d.suggestion) for d in reset] == [("reset", "bob", x, x) for x in (a, b, c)]
    now = _by_id(store.reviewed("default"))
    assert {i: (r.status, r.code) for i, r in now.items()} == {x["id"]: ("suggested", x) for x in (a, b, c)}
    assert now[a["id"]].decision.action == "reset" and now[a["id"]].decision.reviewer == "bob"
    # append-only: the decisions taken back are still there, the reset after them
    assert [d.action for d in store.history("default", tid, b["id"])] == ["relabel", "reset"]
    # a new run keeps a reset code a suggestion (its new version), and drops one it no longer suggests
    changed_a = {**a, "score": 9.0}
    store.save_coded("default", transcript, str(EXAMPLE), [changed_a, b])
    now = _by_id(store.reviewed("default"))
    assert {i: (r.status, r.code) for i, r in now.items()} == {a["id"]: ("suggested", changed_a),
                                                               b["id"]: ("suggested", b)}
    # decided again after a reset: the latest decision counts
    store.decide("default", tid, a["id"], "reject", "ann")
    assert _by_id(store.reviewed("default"))[a["id"]].status == "rejected"


def test_a_reset_needs_a_suggestion_to_go_back_to(store, transcript):
    a, b = _force(transcript, 1), _force(transcript, 2)
    store.save_coded("default", transcript, str(EXAMPLE), [a, b])
    tid = "espresso_machine"
    added = _force(transcript, 4, "pull")
    store.decide("default", tid, added["id"], "add", "ann", code=added)
    store.decide("default", tid, b["id"], "accept", "ann")
    store.save_coded("default", transcript, str(EXAMPLE), [a])  # b orphaned
    for code_id, problem in ((a["id"], "the model's suggestion already"), (added["id"], "reject it to withdraw it"),
                             (b["id"], "no longer suggests this code")):
        with pytest.raises(ValueError, match=problem):
            store.decide("default", tid, code_id, "reset", "ann")
    with pytest.raises(ValueError, match="reset takes no code"):
        store.decide("default", tid, a["id"], "reset", "ann", code=a)
    assert [d.action for d in store.history("default", tid)] == ["add", "accept"]


def test_a_store_of_the_first_schema_is_upgraded_keeping_its_decisions(url, transcript):
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from jtbd.coding.reviews import MIGRATIONS, VERSION_TABLE

    first = ReviewStore.open(url)  # at the head; then taken back to the first schema, as an older version left it
    a = _force(transcript, 1)
    first.save_coded("default", transcript, str(EXAMPLE), [a])
    first.decide("default", "espresso_machine", a["id"], "accept", "ann", note="kept")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with first.engine.begin() as conn:
        config.attributes.update(connection=conn, version_table=VERSION_TABLE)
        command.downgrade(config, "0001")
        assert conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == "0001"
        with pytest.raises(sa.exc.IntegrityError):  # the first schema knows no reset
            with conn.begin_nested():
                conn.execute(sa.text("INSERT INTO decisions (study, transcript_id, code_id, action, reviewer, at) "
                                     "VALUES ('default', 'espresso_machine', 'x', 'reset', 'ann', '2026-01-01')"))
    first.close()
    with ReviewStore.open(url) as store:
        [kept] = store.history("default")
        assert (kept.action, kept.reviewer, kept.note) == ("accept", "ann", "kept")
        store.decide("default", "espresso_machine", a["id"], "reset", "ann")
        assert store.reviewed("default")[0].status == "suggested"


def test_the_versions_say_which_transcript_changed_and_the_stamp_whether_any_did(store, transcript):
    a = _force(transcript, 1)
    store.save_coded("default", transcript, str(EXAMPLE), [a])
    stamp, versions = store.stamp("default"), store.versions("default")
    assert store.stamp("default") == stamp and list(versions) == ["espresso_machine"]
    assert versions["espresso_machine"][1:] == (0, None)
    decision = store.decide("default", "espresso_machine", a["id"], "accept", "ann")
    assert store.stamp("default") != stamp
    assert store.versions("default")["espresso_machine"][0] == versions["espresso_machine"][0]  # the same run
    assert store.versions("default")["espresso_machine"][1] == 1
    stamp = store.stamp("default")
    store.save_coded("default", transcript, str(EXAMPLE), [a])  # coded again
    assert store.stamp("default") != stamp and store.versions("default")["espresso_machine"][0] > decision.at
    assert store.versions("pilot") == {} and store.stamp("pilot") == (0, None, 0, None)
    store.forget("default", ["espresso_machine"])
    assert store.versions("default") == {} and store.stamp("default") == (0, None, 0, None)


def test_respan_relabel_and_add_are_re_grounded_in_the_stored_transcript(store, transcript):
    a = _force(transcript, 1, words=6)
    store.save_coded("default", transcript, str(EXAMPLE), [a])
    longer = _span(transcript, 1, words=9)
    sent = {"kind": "force", "force": "push", "quote": transcript.text[longer.char_start:longer.char_end],
            "grounding": {"char_start": longer.char_start, "char_end": longer.char_end, "speaker": "Interviewer",
                          "turn_index": 0}}  # a client's wrong speaker and turn are not kept
    decision = store.decide("default", "espresso_machine", a["id"], "respan", "ann", code=sent)
    turn = transcript.turns[longer.turn_index]
    g = decision.code["grounding"]
    assert (g["speaker"], g["turn_index"], g["char_end"]) == ("Tom", turn.index, longer.char_end)
    assert g["start_seconds"] == turn.start and g["source_line"] == turn.line_at(longer.char_start)
    assert decision.code["provenance"] == a["provenance"] and decision.code["id"] == a["id"]
    added = _job(transcript, 5)
    made = store.decide("default", "espresso_machine", "mine-1", "add", "bob", code=added, note="missed by the model")
    assert made.suggestion is None and made.code["provenance"]["model"] == "reviewer bob"
    now = _by_id(store.reviewed("default"))
    assert (now[a["id"]].status, now["mine-1"].status) == ("changed", "added")
    assert (now["mine-1"].code["kind"], now["mine-1"].code["dimension"]) == ("job", "functional")
    assert now["mine-1"].code["statement_source"] == "reviewer"  # not the model's summary
    store.save_coded("default", transcript, str(EXAMPLE), [a])  # a re-run: the added code is no orphan
    assert _by_id(store.reviewed("default"))["mine-1"].status == "added"
    store.decide("default", "espresso_machine", "mine-1", "reject", "ann")  # what was rejected stays readable
    assert _by_id(store.reviewed("default"))["mine-1"].code == made.code


def _refusals(transcript, a: dict, job: dict) -> list[tuple[str, str, dict | None, str]]:
    interviewer = transcript.turns[0]
    tom = transcript.interviewee_turns()[1]
    across = (tom.char_start, transcript.interviewee_turns()[2].char_start + 5)
    q = lambda s, e: transcript.text[s:e]  # noqa: E731
    at = lambda s, e, **kw: {**a, "quote": q(s, e), "grounding": {"char_start": s, "char_end": e}, **kw}  # noqa: E731
    g = a["grounding"]
    return [
        ("approve", a["id"], None, "unknown action 'approve'"),
        ("accept", "espresso_machine:force.push:1-2", None, "no code"),
        ("respan", a["id"], at(interviewer.char_start, interviewer.char_start + 20), "not inside one interviewee turn"),
        ("respan", a["id"], at(*across), "not inside one interviewee turn"),
        ("respan", a["id"], {**at(g["char_start"], g["char_end"] + 4), "quote": a["quote"]}, "the quote is not"),
        ("relabel", a["id"], {**a, "force": "fear"}, "force: Input should be 'push', 'pull', 'anxiety' or 'habit'"),
        ("relabel", a["id"], {**a, "kind": "pain"}, "does not match any of the expected tags"),
        ("relabel", a["id"], {**job, "grounding": a["grounding"], "quote": a["quote"], "dimension": "financial"},
         "dimension: Input should be 'functional', 'emotional' or 'social'"),
        ("relabel", a["id"], at(g["char_start"], g["char_end"] + 4), "relabel keeps the span"),
        ("respan", a["id"], {**at(g["char_start"], g["char_end"] + 4), "force": "habit"}, "respan keeps the label"),
        ("reject", a["id"], a, "reject takes no code"),
        ("relabel", a["id"], None, "relabel needs the changed code"),
        ("note", a["id"], None, "a note needs its text"),
        ("add", a["id"], a, "already exists"),
        ("reset", a["id"], None, "the model's suggestion already"),
    ]


def test_a_decision_that_does_not_fit_is_refused_in_one_line_and_not_recorded(store, transcript):
    a, job = _force(transcript, 1), _job(transcript, 4)
    store.save_coded("default", transcript, str(EXAMPLE), [a, job])
    refusals = _refusals(transcript, a, job)
    assert {action for action, *_ in refusals} >= set(ACTIONS)
    for action, code_id, code, said in refusals:
        with pytest.raises(ValueError) as refused:
            store.decide("default", "espresso_machine", code_id, action, "ann", code=code)
        assert said in str(refused.value) and "\n" not in str(refused.value), (action, str(refused.value))
    with pytest.raises(ValueError, match="no transcript 'nobody' in study 'default'"):
        store.decide("default", "nobody", a["id"], "accept", "ann")
    with pytest.raises(ValueError, match="reviewer"):
        store.decide("default", "espresso_machine", a["id"], "accept", " ")
    assert store.history("default") == []
    assert {r.status for r in store.reviewed("default")} == {"suggested"}


# --- studies -----------------------------------------------------------------------------------

def test_two_studies_are_kept_apart(store, transcript):
    a = _force(transcript, 1)
    store.save_coded("default", transcript, str(EXAMPLE), [a])
    store.save_coded("pilot-2", transcript, "/elsewhere/espresso_machine.txt", [a, _force(transcript, 2)])
    store.decide("pilot-2", "espresso_machine", a["id"], "reject", "ann")
    assert store.studies() == {"default": 1, "pilot-2": 1}
    assert [r.status for r in store.reviewed("default")] == ["suggested"]
    assert sorted(r.status for r in store.reviewed("pilot-2")) == ["rejected", "suggested"]
    assert store.source_path("default", "espresso_machine") == str(EXAMPLE)
    with pytest.raises(ValueError, match="study"):
        store.save_coded("my study", transcript, str(EXAMPLE), [])


# --- concurrency and failures ------------------------------------------------------------------

def test_two_reviewers_on_one_file_lose_no_decision(url, transcript):
    codes = [_force(transcript, n) for n in range(1, 7)]
    with ReviewStore.open(url) as first:
        first.save_coded("default", transcript, str(EXAMPLE), codes)
    stores = [ReviewStore.open(url), ReviewStore.open(url)]
    made, problems = [], []

    def review(reviewer: str, store: ReviewStore) -> None:
        for i in range(30):
            code = codes[i % len(codes)]
            try:
                made.append(store.decide("default", "espresso_machine", code["id"], ("accept", "reject")[i % 2],
                                         reviewer, note=f"{reviewer} {i}"))
            except Exception as exc:  # noqa: BLE001  (the test says which)
                problems.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=review, args=(f"reviewer{n}", stores[n % 2])) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    history = stores[0].history("default")
    assert problems == []
    assert len(made) == len(history) == 4 * 30
    assert {(d.reviewer, d.note) for d in history} == {(d.reviewer, d.note) for d in made}
    # last write wins per code: each code stands as the last decision committed on it
    now = _by_id(stores[1].reviewed("default"))
    for code in codes:
        last = [d for d in history if d.code_id == code["id"]][-1]
        assert now[code["id"]].decision == last
        assert now[code["id"]].status == {"accept": "accepted", "reject": "rejected"}[last.action]
    for s in stores:
        s.close()


def test_a_locked_database_is_one_line_and_the_decision_is_not_recorded(url, tmp_path, transcript):
    a = _force(transcript, 1)
    store = ReviewStore.open(url, timeout=0.3)
    store.save_coded("default", transcript, str(EXAMPLE), [a])
    holder = sqlite3.connect(tmp_path / "data" / "reviews.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer, mid-transaction
    try:
        with pytest.raises(ReviewStoreError) as locked:
            store.decide("default", "espresso_machine", a["id"], "accept", "ann")
        assert "\n" not in str(locked.value)
        said = str(locked.value)
        assert "is locked by another writer" in said and "the decision was not recorded" in said
        assert store.reviewed("default")[0].status == "suggested"  # readers are not blocked
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.history("default") == []
    assert store.decide("default", "espresso_machine", a["id"], "accept", "ann").action == "accept"
    store.close()


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(ReviewStoreError) as unusable:
        ReviewStore.open(f"sqlite:///{tmp_path / 'a-file' / 'reviews.sqlite3'}")
    assert str(unusable.value).startswith("cannot open the review database") and "\n" not in str(unusable.value)
    with pytest.raises(ReviewStoreError) as unreachable:
        ReviewStore.open("postgresql://ann:hunter2@127.0.0.1:1/reviews", timeout=2)
    said = str(unreachable.value)
    assert "review database" in said and "127.0.0.1" in said and "hunter2" not in said and "\n" not in said


# --- forgetting ----------------------------------------------------------------------------------

def _files_holding(folder: Path, words: bytes) -> list[str]:
    return [p.name for p in folder.iterdir() if p.is_file() and words in p.read_bytes()]


def test_forget_removes_every_row_of_the_transcript_and_its_words_from_the_file(store, transcript, tmp_path):
    a, b = _force(transcript, 1), _force(transcript, 2)
    store.save_coded("default", transcript, str(EXAMPLE), [a, b])
    store.save_coded("pilot", transcript, str(EXAMPLE), [a])
    store.decide("default", "espresso_machine", a["id"], "accept", "ann")
    store.decide("default", "espresso_machine", b["id"], "note", "ann", note="Biscuit the beagle")
    folder = tmp_path / "data"
    words = "refuses to go out in the rain".encode()
    assert _files_holding(folder, words)
    assert store.forget("default", ["espresso_machine"]) == {"transcripts": 1, "suggestions": 2, "decisions": 2}
    assert store.transcript("default", "espresso_machine") is None and store.reviewed("default") == []
    assert store.studies() == {"pilot": 1}  # the other study's copy is its own
    assert store.forget("pilot", ["espresso_machine"]) == {"transcripts": 1, "suggestions": 1, "decisions": 0}
    assert _files_holding(folder, words) == [] and _files_holding(folder, b"Biscuit the beagle") == []
    assert store.forget("pilot", ["espresso_machine"]) == {"transcripts": 0, "suggestions": 0, "decisions": 0}
