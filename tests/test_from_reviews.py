"""Learning from reviews (coding/from_reviews.py, flows/redecide.py, `jtbd redecide`): review decisions
become the right examples; a study's decision is fitted from them towards the bundled one; a
re-decision reads only the cache and never changes a reviewed code; `jtbd forget` removes what it
learned from an interview.

The unit tests put hand-made codes on the example interview into a real ReviewStore on SQLite. The
rest work as tests/test_studies.py does: the example coded once from the cassette by the real flow
(Chroma, the review store, MiniLM), each test on its own copy of that data folder."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import EXAMPLE, RECORD_BASE_URL, RECORD_MODEL, cli_runner, code_example_once, copy_of_coded

CASSETTE = "flow/espresso_machine.yaml"
TID = "espresso_machine"
SERVER_FLAGS = ["--backend", "openai", "--base-url", RECORD_BASE_URL, "--model", RECORD_MODEL, "--llm-mode",
                "json_object_schema", "--extra-body", '{"repeat_penalty": 1.0}', "--concurrency", "1",
                "--timeout", "900", "--task-retries", "0"]


# --- reviews as examples: hand-made codes in a real review store ----------------------------------------

def _code(transcript, sentence, kind: str, label: str = "", **extra) -> dict:
    from jtbd.coding.extract import grounding_for
    from jtbd.coding.ground import Span
    from jtbd.coding.outputs import code_record
    from jtbd.schemas.codebook import Alignment, Force, JobStory, Provenance, Trigger

    span = Span(sentence.turn_index, sentence.char_start, sentence.char_end, Alignment.exact, 100.0)
    common = {"quote": transcript.text[sentence.char_start:sentence.char_end],
              "grounding": grounding_for(span, transcript),
              "provenance": Provenance(prompt_version="p", schema_version="s", model="m"), **extra}
    if kind == "force":
        return code_record(Force(force=label, score=0.5, **common))
    if kind == "trigger":
        return code_record(Trigger(score=0.5, **common))
    return code_record(JobStory(situation="the old machine broke", motivation="make coffee at home",
                                outcome="skip the queue", dimension="functional", **common))


@pytest.fixture()
def reviewed_example(tmp_path):
    """The example interview with eight suggestions on its first eight interviewee sentences (and a job
    story on the fourth), in a review store; (store, transcript, its rated sentences, the codes)."""
    from jtbd.coding.decide import RatedSentence
    from jtbd.coding.parse import load_transcript
    from jtbd.coding.reviews import ReviewStore
    from jtbd.coding.sentences import split_sentences
    from jtbd.schemas.codebook import RATED_LABELS

    transcript = load_transcript(EXAMPLE)
    sentences = split_sentences(transcript)
    rated = [RatedSentence(s.turn_index, s.char_start, s.char_end, {label: -2.0 for label in RATED_LABELS})
             for s in sentences]
    s = sentences
    codes = {"A": _code(transcript, s[0], "force", "push"), "B": _code(transcript, s[1], "force", "pull"),
             "C": _code(transcript, s[2], "force", "habit"), "D": _code(transcript, s[3], "trigger"),
             "D-job": _code(transcript, s[3], "job"), "E": _code(transcript, s[4], "force", "push"),
             "G": _code(transcript, s[6], "force", "pull"), "H": _code(transcript, s[7], "force", "anxiety")}
    store = ReviewStore.open(f"sqlite:///{tmp_path / 'reviews.sqlite3'}")
    store.save_coded("default", transcript, str(EXAMPLE), list(codes.values()))
    yield store, transcript, rated, codes
    store.close()


def _examples(store, transcript, rated):
    from jtbd.coding.decide import unique_sentences
    from jtbd.coding.from_reviews import label_sentences, standing_answers
    from jtbd.coding.learned import CLASSES

    sentences = unique_sentences(rated)
    labelled = label_sentences(sentences, store.reviewed("default", TID), standing_answers(store.history("default")),
                               TID)
    return ({sentences[i].char_start: CLASSES[c] for i, c in zip(labelled.rows, labelled.classes)},
            labelled.answered, labelled.complete)


def test_reviews_become_the_right_examples(reviewed_example):
    store, transcript, rated, codes = reviewed_example
    at = {name: code["grounding"]["char_start"] for name, code in codes.items()}
    decide = lambda name, action, **kw: store.decide("default", TID, codes[name]["id"], action, "ann", **kw)  # noqa: E731
    decide("A", "accept")
    decide("B", "relabel", code={**codes["B"], "force": "anxiety"})
    decide("C", "reject")
    decide("D", "reject")  # the trigger is wrong, but the job story on the same sentence is kept
    decide("D-job", "accept")
    decide("G", "accept")
    decide("G", "reset")  # taken back: nobody's answer stands on it
    decide("H", "note", note="maybe")  # a note is not an answer
    sixth = rated[5]
    added = _code(transcript, sixth, "force", "habit")
    store.decide("default", TID, added["id"], "add", "ann", code=added)
    examples, answered, complete = _examples(store, transcript, rated)
    # E, G, H and every sentence nobody answered are not examples: the review is not complete, so the
    # added code is not one either (it was chosen because it is a code)
    assert examples == {at["A"]: "push", at["B"]: "anxiety", at["C"]: "none", at["D"]: "job"}
    assert (answered, complete) == (4, False)

    decide("E", "reject")
    decide("G", "accept")
    decide("H", "reject")  # every force and trigger answered: the review is complete
    examples, answered, complete = _examples(store, transcript, rated)
    assert complete and answered == 8 and len(examples) == len(rated)  # every sentence, once
    assert {k: v for k, v in examples.items() if v != "none"} == {
        at["A"]: "push", at["B"]: "anxiety", at["D"]: "job", sixth.char_start: "habit", at["G"]: "pull"}


def test_a_re_decision_leaves_reviewed_codes_and_changes_only_the_rest(reviewed_example):
    from jtbd.coding.from_reviews import kept_reviewed
    from jtbd.schemas.codebook import CodedTranscript

    store, transcript, rated, codes = reviewed_example
    store.decide("default", TID, codes["A"]["id"], "accept", "ann")
    store.decide("default", TID, codes["C"]["id"], "reject", "ann")
    sentences = {s.char_start: s for s in rated}
    c_sentence = sentences[codes["C"]["grounding"]["char_start"]]
    tail = type(c_sentence)(c_sentence.turn_index, c_sentence.char_start + 5, c_sentence.char_end, {})
    new_codes = [
        {**codes["A"], "force": "pull", "score": 0.9},  # the accepted code's id, relabelled by the new decision
        _code(transcript, tail, "force", "anxiety"),  # on the rejected sentence, another span
        _code(transcript, rated[10], "force", "habit"),  # where nobody decided anything
        codes["D-job"],
    ]
    rerun = CodedTranscript(transcript=TID, source=EXAMPLE.name, codes=new_codes)
    kept = {c.id: c.model_dump(mode="json") for c in kept_reviewed(rerun, store, "default").codes}
    a = kept[codes["A"]["id"]]
    assert (a["force"], a["score"]) == ("push", 0.5)  # the suggestion the reviewer accepted, as it was
    assert codes["C"]["id"] in kept  # rejected: its suggestion stays, so it stays rejected
    assert new_codes[1]["id"] not in kept  # a new code on a decided sentence is dropped
    assert new_codes[2]["id"] in kept and codes["D-job"]["id"] in kept
    assert codes["E"]["id"] not in kept  # an unreviewed suggestion the new decision no longer makes goes
    for name in ("B", "D", "E", "G", "H"):  # answer the rest: the review is complete
        store.decide("default", TID, codes[name]["id"], "reject", "ann")
    kept = {c.id for c in kept_reviewed(rerun, store, "default").codes}
    assert new_codes[2]["id"] not in kept  # what a complete review left uncoded is not suggested again
    assert codes["D-job"]["id"] in kept  # jobs and quotes are not the decision's


# --- the study decision through the product ---------------------------------------------------------------

@pytest.fixture(scope="module")
def coded_once(prefect_harness, my_vcr, tmp_path_factory):
    return code_example_once(my_vcr, tmp_path_factory.mktemp("from-reviews"))


@pytest.fixture()
def study(coded_once, tmp_path, monkeypatch):
    """A copy of the coded data folder: (settings, the first run's codes by id)."""
    return copy_of_coded(coded_once, tmp_path, monkeypatch)


@pytest.fixture()
def jtbd(monkeypatch, capsys):
    """`jtbd ARGV` in process: (exit status, stdout, stderr)."""
    return cli_runner(monkeypatch, capsys)


def _reviews(settings):
    from jtbd.coding.reviews import ReviewStore

    return ReviewStore.open(settings.review_db_url)


def _standing(settings) -> dict[str, tuple]:
    """Every code a person decided on: its status, label, span, reviewer and code as they stand."""
    with _reviews(settings) as reviews:
        return {r.code["id"]: (r.status, r.code.get("label"), r.code["grounding"]["char_start"],
                               r.code["grounding"]["char_end"], r.decision.reviewer, r.code)
                for r in reviews.reviewed("default") if r.decision is not None}


def _forces(codes) -> list[dict]:
    return sorted((c for c in codes.values() if c["kind"] in ("force", "trigger")), key=lambda c: -c["score"])


def _review_some(settings, codes) -> None:
    """Accept two forces, relabel two, reject three, add one, note one: eight sentences answered."""
    forces = _forces(codes)
    other = lambda c: next(f for f in ("push", "pull", "anxiety", "habit") if f != c.get("force"))  # noqa: E731
    with _reviews(settings) as reviews:
        transcript = reviews.transcript("default", TID)
        for c in forces[:2]:
            reviews.decide("default", TID, c["id"], "accept", "ann")
        for c in forces[2:4]:
            reviews.decide("default", TID, c["id"], "relabel", "bob", code={**c, "kind": "force", "force": other(c)})
        for c in forces[4:7]:
            reviews.decide("default", TID, c["id"], "reject", "ann")
        reviews.decide("default", TID, forces[7]["id"], "note", "ann", note="check the recording")
        turn = transcript.interviewee_turns()[-1]
        added = {**forces[0], "quote": turn.text[:20], "grounding": {"char_start": turn.char_start,
                                                                     "char_end": turn.char_start + 20},
                 "kind": "force", "force": "habit", "id": f"{TID}:force:{turn.char_start}-{turn.char_start + 20}"}
        reviews.decide("default", TID, added["id"], "add", "bob", code=added)


def _llm_calls(said: str) -> int:
    return int(re.search(r"LLM calls\s*│\s*(\d+)", said).group(1))


def test_a_redecision_makes_no_model_call_and_leaves_every_reviewed_code_as_it_was(study, jtbd, my_vcr, tmp_path,
                                                                                 monkeypatch):
    from jtbd.coding import from_reviews
    from jtbd.coding.from_reviews import study_decision_path
    from jtbd.coding.learned import LearnedDecision
    from jtbd.coding.pipeline import decision_for
    from jtbd.prompts import load_strategy

    settings, codes = study
    monkeypatch.setattr(from_reviews, "MIN_EXAMPLES", 5)  # one short interview cannot give 30
    _review_some(settings, codes)
    before = _standing(settings)
    with _reviews(settings) as reviews:
        history = reviews.history("default")
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True) as cassette:
        status, said, err = jtbd("redecide", *SERVER_FLAGS, "--data-dir", settings.data_dir,
                                 "--out", str(tmp_path / "run2"))
        assert cassette.play_count == 0
    assert status == 0, err
    assert _llm_calls(said) == 0 and "jtbd redecide: summary" in said
    path = study_decision_path(settings.data_dir, "default")
    assert "learned from 7 answered sentences in 1 interview (0 reviewed completely; 7 examples: " in said
    assert f"written to {path}" in said and re.search(r"decision\s*│ learned from study default's reviews", said)
    assert _standing(settings) == before  # status, label, span, reviewer and code of each, as they were
    with _reviews(settings) as reviews:
        assert reviews.history("default") == history  # the re-decision decided nothing itself
        suggested = reviews.suggested("default", TID)
    decided = [before[i][2:4] for i in before if before[i][1].startswith(("force", "trigger"))]
    for code_id, code in suggested.items():  # a new force or trigger never lands on a decided span
        if code_id not in before and code["kind"] in ("force", "trigger"):
            g = code["grounding"]
            assert not any(min(e, g["char_end"]) > max(b, g["char_start"]) for b, e in decided), code_id
    study_decision = LearnedDecision.load(path)
    bundled = LearnedDecision.from_json(load_strategy().learned, "bundled")
    assert study_decision.fitted_on == [TID] and study_decision.coef != bundled.coef
    assert study_decision.reviews["answered"] == 7 and len(study_decision.reviews["fits"]) == 1
    assert TID.encode() in path.read_bytes() and b"coffee" not in path.read_bytes()  # ids and weights, no words
    # `jtbd code` into the study now decides with it; another study keeps the bundled decision
    from jtbd.settings import with_changes
    assert "learned" in decision_for(load_strategy(), settings) and \
        decision_for(load_strategy(), settings)["learned"].coef == study_decision.coef
    assert decision_for(load_strategy(), with_changes(settings, study="pilot"))["learned"].coef == bundled.coef


def test_a_study_with_few_reviews_keeps_the_bundled_decision(study, jtbd, my_vcr, tmp_path):
    from jtbd.coding.from_reviews import (InterviewReviews, fit_from_reviews, standing_answers,
                                          study_decision_path)
    from jtbd.coding.learned import LearnedDecision
    from jtbd.flows.redecide import cached_ratings
    from jtbd.prompts import load_strategy

    settings, codes = study
    forces = _forces(codes)
    with _reviews(settings) as reviews:
        for c in forces[:3]:
            reviews.decide("default", TID, c["id"], "accept", "ann")
        for c in forces[3:6]:
            reviews.decide("default", TID, c["id"], "reject", "ann")
        suggested = reviews.suggested("default", TID)
        transcript = reviews.transcript("default", TID)
        reviewed, history = reviews.reviewed("default", TID), reviews.history("default")
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True) as cassette:
        status, said, err = jtbd("redecide", *SERVER_FLAGS, "--data-dir", settings.data_dir,
                                 "--out", str(tmp_path / "run2"))
        assert cassette.play_count == 0
    assert status == 0, err
    assert "nothing learned yet: 6 answered sentences" in said and "needs 30 answered sentences" in said
    assert not study_decision_path(settings.data_dir, "default").exists()
    with _reviews(settings) as reviews:
        assert reviews.suggested("default", TID) == suggested  # the bundled decision decides as before

    # Below the minimum nothing is fitted; above it the prior holds a few examples near the bundled weights.
    strategy = load_strategy(settings.strategy)
    bundled = LearnedDecision.from_json(strategy.learned, "bundled")
    rated = cached_ratings(transcript, settings, strategy)
    assert rated  # the flow's own cache keys find every chunk of the stored transcript
    few = [InterviewReviews(TID, transcript.text, rated, reviewed, standing_answers(history))]
    def coded(decision) -> dict[int, str]:
        return {x.sentence.char_start: x.label for x in decision.decide(rated, transcript.text)}

    def overlap(a: dict, b: dict) -> tuple[float, float]:  # sentences coded by both / either; same label
        both = a.keys() & b.keys()
        return len(both) / len(a.keys() | b.keys()), sum(a[k] == b[k] for k in both) / max(1, len(both))

    held = fit_from_reviews(bundled, few, minimum=0).decision
    loose = fit_from_reviews(bundled, few, minimum=0, strength=0.01).decision
    sentences, labels = overlap(coded(held), coded(bundled))
    assert sentences >= 0.85 and labels >= 0.9
    assert overlap(coded(loose), coded(bundled))[0] < 0.5  # without the prior, six answers remake the decision
    moved = lambda d: np.abs(np.asarray(d.coef) - bundled.coef).max()  # noqa: E731
    assert moved(held) < 0.1 * moved(loose)


def test_a_redecision_reads_only_the_cache(study, jtbd, my_vcr, tmp_path):
    settings, codes = study
    with _reviews(settings) as reviews:
        suggested = reviews.suggested("default", TID)
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True) as cassette:
        status, said, err = jtbd("redecide", *SERVER_FLAGS, "--chunk-tokens", "900", "--data-dir", settings.data_dir,
                                 "--out", str(tmp_path / "run2"))
        assert cassette.play_count == 0
    assert status == 1 and _llm_calls(said) == 0
    assert re.search(r"espresso_machine.txt: not re-decided: \d+ of its \d+ chunks are not in the cache", err), err
    with _reviews(settings) as reviews:
        assert reviews.suggested("default", TID) == suggested


def test_forget_removes_the_study_decision_it_learned_from(study, jtbd, my_vcr, tmp_path, monkeypatch):
    from jtbd.coding import from_reviews
    from jtbd.coding.from_reviews import study_decision_path

    settings, codes = study
    monkeypatch.setattr(from_reviews, "MIN_EXAMPLES", 5)
    _review_some(settings, codes)
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True):
        assert jtbd("redecide", *SERVER_FLAGS, "--data-dir", settings.data_dir, "--out", str(tmp_path / "r"))[0] == 0
    path = study_decision_path(settings.data_dir, "default")
    assert path.is_file()
    status, said, _ = jtbd("forget", TID, "--data-dir", settings.data_dir)
    assert status == 0 and f"{TID}: the study's decision learned from its reviews removed ({path}" in said
    assert not path.exists()
