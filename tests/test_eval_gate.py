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
def evaluations(prefect_harness, my_vcr, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    return {split: _evaluate(split, my_vcr, tmp / "data", tmp) for split in SPLITS}


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
