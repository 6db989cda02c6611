"""The prompt-regression gate: replay the default model coding the gold set, score it, compare to the baseline.

The cassettes are real answers of llama.cpp's server running the default model
(scripts/record_cassettes.py). A changed prompt, schema or chunking changes the
requests, so they are no longer in the cassette: the gate then fails and names
the command that re-records and re-scores. Scores that drop by more than the
documented tolerance against eval/baseline.json fail too.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from conftest import RERECORD, ROOT, server_settings

BASELINES = {split: ROOT / "eval" / f"baseline-{split}.json" for split in ("dev", "test")}
SPLITS = ("test",)  # the held-out split; dev is for tuning (see eval/RESULTS.md)


def _evaluate(split, my_vcr, data_dir, tmp_path):
    from jtbd.eval.runner import bundled_gold, evaluate

    with my_vcr.use_cassette(f"eval/{split}.yaml.gz"):
        ev = evaluate(bundled_gold(split), server_settings(data_dir), tmp_path / split)
    for path, problem in ev.summary["transcripts_failed"]:
        if "overwrite existing cassette" in problem or "CannotOverwrite" in problem:
            pytest.fail(f"prompts, schemas or chunking changed the LLM requests for {Path(path).name}, so the "
                        f"recorded answers no longer apply. Re-record the cassettes and re-score with:\n"
                        f"    {RERECORD}\n(it fails if the scores drop; --update-baseline accepts them)")
    assert not ev.summary["transcripts_failed"], ev.summary["transcripts_failed"]
    return ev


@pytest.fixture(scope="module")
def gate_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("gate")


@pytest.fixture(scope="module")
def evaluations(prefect_harness, my_vcr, gate_tmp):
    return {split: _evaluate(split, my_vcr, gate_tmp / "data", gate_tmp) for split in SPLITS}


def test_gold_problems_are_listed_and_everything_else_is_scored(evaluations, my_vcr, gate_tmp, capsys):
    """A user's folder with a quote nobody said in one gold file and a file that is not JSON:
    the quote's code is left out, the unreadable file too, and the rest is coded (the same
    requests, replayed) and scored as before."""
    import shutil

    from jtbd.eval.runner import evaluate

    full = evaluations["test"]
    good, bad = full.gold[0], full.gold[1]
    folder = gate_tmp / "user-gold"
    folder.mkdir()
    for g in (good, bad):
        shutil.copy(g.transcript_path, folder)
        shutil.copy(g.gold_path, folder)
    broken = json.loads(bad.gold_path.read_text())
    broken["codes"][0]["quote"] = "words nobody said in this interview"
    (folder / bad.gold_path.name).write_text(json.dumps(broken))
    (folder / "unreadable.gold.json").write_text('{"transcript": "unreadable.txt", "codes": [,]}')
    with my_vcr.use_cassette("eval/test.yaml.gz"):
        ev = evaluate(folder, server_settings(gate_tmp / "data"), gate_tmp / "user-run")
    assert sorted(g.id for g in ev.gold) == sorted([good.id, bad.id])
    loaded = {g.id: g for g in ev.gold}
    assert [c.quote for c in loaded[bad.id].codes] == [c.quote for c in bad.codes[1:]]
    assert [c.quote for c in loaded[good.id].codes] == [c.quote for c in good.codes]
    quote_problem, file_problem = ev.summary["gold_problems"]
    assert quote_problem.startswith(f"{folder / bad.gold_path.name}: code 0: quote not found")
    assert file_problem.startswith(f"{folder / 'unreadable.gold.json'}: bad JSON")
    assert not ev.summary["transcripts_failed"]
    for g in (good, bad):
        ids = [c.id for c in ev.predicted[g.transcript.id].codes]
        assert ids and ids == [c.id for c in full.predicted[g.transcript.id].codes]
    assert ev.scores_dict()["gold_problems"] == [quote_problem, file_problem]
    assert "gold_problems" not in full.scores_dict()
    assert ev.scores.strict["force (all)"].tp + ev.scores.strict["force (all)"].fn == sum(
        c.kind == "force" for g in ev.gold for c in g.codes)

    # The command says so and exits 1 (the same settings as flags: every chunk a cache hit).
    from jtbd.cli import main

    settings = server_settings(gate_tmp / "data")
    flags = ["--backend", "openai", "--base-url", settings.base_url, "--model", settings.model,
             "--llm-mode", settings.llm_mode, "--extra-body", settings.extra_body, "--concurrency", "1",
             "--data-dir", settings.data_dir]
    capsys.readouterr()
    with my_vcr.use_cassette("eval/test.yaml.gz"):
        assert main(["eval", "--gold", str(folder), "--out", str(gate_tmp / "user-cli"), *flags]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "gold problems" in err and "code 0: quote not found" in err and "unreadable.gold.json: bad JSON" in err


def _hard_wrap(text: str, width: int = 64) -> str:
    """The same file as a web page prints it: every turn's line broken at spaces into lines of
    about `width` characters. Only single spaces between words become line breaks, so the file
    keeps its length and every offset."""
    out = list(text)
    column = 0
    for i, char in enumerate(text):
        column = 0 if char == "\n" else column + 1
        if char == " " and column > width and text[i - 1] != " " and text[i + 1] not in " \n":
            out[i], column = "\n", 0
    return "".join(out)


def test_a_hard_wrapped_copy_in_the_readme_format_scores_the_same(evaluations, my_vcr, gate_tmp):
    """A held-out transcript re-saved hard-wrapped, its gold file cut down to the format in the
    README (no speaker lists, no notes) with the quotes copied from the wrapped file, line breaks
    and all: the same turns, the same requests (replayed), the same gold spans and scores."""
    import shutil

    from jtbd.eval.runner import evaluate

    full = evaluations["test"]
    [original] = [g for g in full.gold if g.transcript_path.suffix == ".txt"]
    text = original.transcript_path.read_text(encoding="utf-8")
    wrapped = _hard_wrap(text)
    assert wrapped.count("\n") > text.count("\n") + 100 and len(wrapped) == len(text)
    codes = []
    for code in json.loads(original.gold_path.read_text())["codes"]:
        at = text.index(code["quote"])
        codes.append({k: v for k, v in code.items() if k != "note"} | {"quote": wrapped[at:at + len(code["quote"])]})
    assert sum("\n" in c["quote"] for c in codes) >= 5  # quotes that now cross a line break
    folder = gate_tmp / "wrapped-gold"
    folder.mkdir()
    (folder / original.transcript_path.name).write_text(wrapped, encoding="utf-8")
    (folder / original.gold_path.name).write_text(json.dumps({"transcript": original.transcript_path.name,
                                                              "codes": codes}))
    as_bundled = gate_tmp / "bundled-gold"
    as_bundled.mkdir()
    shutil.copy(original.transcript_path, as_bundled)
    shutil.copy(original.gold_path, as_bundled)
    with my_vcr.use_cassette("eval/test.yaml.gz"):
        ev = evaluate(folder, server_settings(gate_tmp / "data"), gate_tmp / "wrapped-run")
        before = evaluate(as_bundled, server_settings(gate_tmp / "data"), gate_tmp / "bundled-run")
    assert ev.summary["gold_problems"] == [] and not ev.summary["transcripts_failed"]
    [gold] = ev.gold
    assert gold.transcript.text == original.transcript.text
    assert [(c.char_start, c.char_end) for c in gold.codes] == [(c.char_start, c.char_end) for c in original.codes]
    tid = original.transcript.id
    assert [c.id for c in ev.predicted[tid].codes] == [c.id for c in full.predicted[tid].codes]
    assert ev.scores_dict() == before.scores_dict()

    # The same wrapped file, but the quotes copied as running text (from a page that showed the
    # file unwrapped): a space where the file has a line break breaks the format's rule, yet the
    # span is certain. Scored the same, each listed as a note, not as a problem.
    running = gate_tmp / "running-text-gold"
    running.mkdir()
    (running / original.transcript_path.name).write_text(wrapped, encoding="utf-8")
    as_text = [c | {"quote": " ".join(c["quote"].split())} for c in codes]
    (running / original.gold_path.name).write_text(json.dumps({"transcript": original.transcript_path.name,
                                                               "codes": as_text}))
    with my_vcr.use_cassette("eval/test.yaml.gz"):
        loose = evaluate(running, server_settings(gate_tmp / "data"), gate_tmp / "running-run")
    crossing = sum("\n" in c["quote"] for c in codes)
    assert loose.summary["gold_problems"] == [] and len(loose.summary["gold_notes"]) == crossing
    assert [(c.char_start, c.char_end) for c in loose.gold[0].codes] == [(c.char_start, c.char_end)
                                                                          for c in original.codes]
    scored = loose.scores_dict()
    assert scored.pop("gold_notes") == loose.summary["gold_notes"]
    assert scored == before.scores_dict()


def test_gold_scores_meet_the_baseline(evaluations):
    from jtbd.eval.score import compare_to_baseline

    from jtbd.eval.runner import write_json

    for split, ev in evaluations.items():
        scores = ev.scores_dict()
        if os.environ.get("JTBD_UPDATE_BASELINE") == "1":
            write_json(BASELINES[split], scores)
            continue
        baseline = json.loads(BASELINES[split].read_text())
        drops = compare_to_baseline(scores, baseline)
        assert not drops, (f"{split}: extraction got worse than {BASELINES[split].name}:\n  " + "\n  ".join(drops)
                           + f"\nIf that is intended, accept it with: {RERECORD} --update-baseline")


def test_every_predicted_quote_is_grounded(evaluations):
    for ev in evaluations.values():
        gold_by_id = {g.transcript.id: g.transcript for g in ev.gold}
        for tid, coded in ev.predicted.items():
            transcript = gold_by_id[tid]
            for code in coded.codes:
                g = code.grounding
                assert transcript.text[g.char_start:g.char_end] == code.quote
                assert transcript.turns[g.turn_index].is_coded


def test_scores_beat_the_no_skill_baseline(evaluations):
    for split, ev in evaluations.items():
        scores = ev.scores_dict()
        assert scores["force_f1_strict"] > scores["no_skill_all_push"]["force_f1_strict"], split


def test_a_worse_prediction_fails_the_gate(evaluations):
    """The gate's comparison, fed the recorded predictions with a third of the forces dropped."""
    from jtbd.eval.runner import score_gold
    from jtbd.eval.score import compare_to_baseline, scores_to_dict

    ev = evaluations["test"]
    worse = {}
    for tid, coded in ev.predicted.items():
        forces = [c for c in coded.codes if c.kind == "force"]
        keep = [c for c in coded.codes if c.kind != "force"] + forces[::3]
        worse[tid] = coded.model_copy(update={"codes": keep})
    drops = compare_to_baseline(scores_to_dict(score_gold(ev.gold, worse)), ev.scores_dict())
    assert any("force" in line for line in drops), drops


def test_jtbd_fit_learns_from_a_coded_gold_folder_and_jtbd_code_decides_with_it(evaluations, my_vcr, gate_tmp, capsys):
    """`jtbd fit` on three of the coded held-out interviews (the cache makes it free: no request is
    sent): it prints each transcript's held-out score beside the rules and the no-skill baseline,
    writes a decision tied to the served model's name, and `jtbd code --decision FILE` codes with it
    what the fit's own decision gives on the same ratings; a decision for another model is refused."""
    import shutil

    from jtbd.cli import main
    from jtbd.coding.learned import LearnedDecision

    full = evaluations["test"]
    folder = gate_tmp / "fit-gold"
    folder.mkdir()
    for g in full.gold[:3]:
        shutil.copy(g.transcript_path, folder)
        shutil.copy(g.gold_path, folder)
    settings = server_settings(gate_tmp / "data")
    flags = ["--backend", "openai", "--base-url", settings.base_url, "--model", settings.model,
             "--llm-mode", settings.llm_mode, "--extra-body", settings.extra_body, "--concurrency", "1",
             "--data-dir", settings.data_dir]
    out = gate_tmp / "fitted" / "decision.json"
    capsys.readouterr()
    with my_vcr.use_cassette("eval/test.yaml.gz", allow_playback_repeats=True) as cassette:
        assert main(["fit", "--gold", str(folder), "--out", str(out), *flags]) == 0
        assert cassette.play_count == 0  # every chunk came from the cache
    said = " ".join(capsys.readouterr().out.split())
    for g in full.gold[:3]:
        assert f"{g.id}: strict force F1" in said
    assert re.search(r"held out: strict force F1 [0-9.]+ \(hand-made rules [0-9.]+, no-skill [0-9.]+\), kappa", said)
    decision = LearnedDecision.load(out)
    assert decision.model == settings.model and sorted(decision.fitted_on) == sorted(g.id for g in full.gold[:3])
    assert decision.sentences > 100 and set(decision.held_out) >= {"force_f1_strict", "kappa"}

    # The flow itself (the command would first ask the recorded server for its models).
    from jtbd.flows.code_batch import run_batch
    from jtbd.settings import with_changes

    one = full.gold[0]
    run = gate_tmp / "fit-code-run"
    with my_vcr.use_cassette("eval/test.yaml.gz", allow_playback_repeats=True):
        path = str(one.transcript_path)
        summary = run_batch([path], with_changes(settings, decision=str(out), study="fitcheck"), str(run),
                            roles={path: (list(one.interviewers), list(one.interviewees))}, ids={path: one.transcript.id})
    assert summary.transcripts_ok and summary.llm_calls == 0 and summary.decision.startswith(f"learned ({out}")
    coded = [json.loads(line) for line in (run / "codes.jsonl").read_text().splitlines()]
    rated = [c for c in coded if c["kind"] in ("force", "trigger")]
    from jtbd.eval.runner import code_gold

    with my_vcr.use_cassette("eval/test.yaml.gz", allow_playback_repeats=True):
        ratings = code_gold([one], settings, gate_tmp / "fit-ratings").ratings[one.transcript.id]
    expected = decision.decide(ratings, one.transcript.text)
    assert rated and all(0.0 <= c["score"] <= 1.0 for c in rated)  # the learned score is a chance
    assert sorted((c["grounding"]["char_start"], c["grounding"]["char_end"]) for c in rated) == \
        sorted((d.char_start, d.char_end) for d in expected)

    other = gate_tmp / "fitted" / "other.json"
    other.write_text(out.read_text().replace(f'"model": "{settings.model}"', '"model": "another-model"'))
    capsys.readouterr()
    assert main(["code", str(one.transcript_path), "--decision", str(other), "--study", "fitcheck",
                 "--out", str(gate_tmp / "fit-other"), *flags]) == 2
    assert "fitted on another-model's ratings" in " ".join(capsys.readouterr().err.split())
