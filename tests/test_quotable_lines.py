"""Quotable lines chosen from the ratings (coding/quotable.py), their fit (eval/fit_quotes.py), the
bundled file, and how a run uses them (pipeline.quotable_for, finish_transcript)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from jtbd.coding.decide import RatedSentence, decision_settings
from jtbd.coding.quotable import FORMAT, GROUPS, QuotableLines, by_rules, quote_labels
from jtbd.eval.fit_quotes import fit_quotes
from jtbd.eval.gold import GoldCode, GoldSet
from jtbd.prompts import load_strategy
from jtbd.schemas.codebook import RATED_LABELS
from jtbd.coding.parse import parse_transcript

ROOT = Path(__file__).resolve().parents[1]


def _sentence(start: int, end: int, turn: int = 0, none: float = -0.1, push: float = -4.0) -> RatedSentence:
    return RatedSentence(turn, start, end, {label: -5.0 for label in RATED_LABELS} | {"none": none, "push": push})


def test_a_sentence_is_a_quotable_line_when_it_shares_half_of_the_shorter_span():
    sentences = [_sentence(0, 40), _sentence(41, 80), _sentence(81, 120)]
    # a clause of the first (10 of its 40 characters, all of the span); 5 characters of the second's 39
    # with a 30-character span: less than half of the shorter; the third's half exactly
    labels = quote_labels(sentences, [(30, 40), (75, 105), (81, 100)])
    assert labels.tolist() == [1, 0, 1]
    assert quote_labels(sentences, []).tolist() == [0, 0, 0]


def _interview(n: int, rng: np.random.Generator, quotable_every: int = 4):
    """n one-sentence turns; every `quotable_every`-th stands out in the ratings and is a gold quote."""
    words = [("We talked about the weather and then the usual things again." if i % quotable_every
              else "It sounded like a jet engine in a cathedral every single morning at six.") for i in range(n)]
    text = "".join(f"Interviewer: And then?\nMaya: {w}\n" for w in words)
    transcript = parse_transcript(text, f"t{n}.txt", "txt", interviewers=("Interviewer",))
    assert len(transcript.interviewee_turns()) == n
    rated, quotes = [], []
    for turn in transcript.interviewee_turns():
        start, end = turn.char_start, turn.char_end
        standout = "jet engine" in transcript.text[start:end]
        noise = rng.normal(0, 0.3)
        rated.append(RatedSentence(turn.index, start, end, {label: -5.0 for label in RATED_LABELS}
                                   | {"none": -2.5 + noise if standout else -0.1 + noise, "push": -0.3 if standout else -4.0}))
        if standout:
            quotes.append((start, end))
    return transcript, rated, quotes


def _gold(transcript, quotes) -> GoldSet:
    codes = [GoldCode(kind="quote", quote=transcript.text[a:b], char_start=a, char_end=b) for a, b in quotes]
    return GoldSet(Path(f"{transcript.id}.gold.json"), Path(transcript.source), transcript, codes, [])


def test_a_fitted_chooser_finds_the_lines_that_stand_out_and_keeps_to_the_density_cap():
    rng = np.random.default_rng(0)
    interviews = [_interview(n, rng) for n in (40, 44, 48)]
    gold = [_gold(t, q) for t, _, q in interviews]
    ratings = {g.id: rated for g, (_, rated, _) in zip(gold, interviews)}
    fitted = fit_quotes(gold, ratings, "sha", l2=0.03, model="m")
    caps = [int(np.ceil(7 * sum(len(t.text[r.char_start:r.char_end].split()) for r in rated) / 2000))
            for t, rated, _ in interviews]
    # held out, every line it takes is one that stands out, as many as the density cap lets it take
    assert fitted.held_out["quote_precision"] == 1.0 and fitted.held_out["lines"] == sum(caps)
    assert fitted.chooser.fitted_on == [g.id for g in gold] and fitted.chooser.sentences == 132
    transcript, rated, quotes = interviews[0]
    chosen = fitted.chooser.choose(rated, transcript.text)
    words = sum(len(transcript.text[r.char_start:r.char_end].split()) for r in rated)
    assert 0 < len(chosen) <= int(np.ceil(7 * words / 2000))
    assert all((r.char_start, r.char_end) in quotes for r, _ in chosen)  # only lines that stand out
    assert [p for _, p in chosen] == sorted((p for _, p in chosen), reverse=True)  # best first
    tight = replace(fitted.chooser, per_2000_words=1.0)
    assert len(tight.choose(rated, transcript.text)) == int(np.ceil(words / 2000))


def test_the_rules_take_the_sentences_that_stand_out_most_half_the_cap():
    rng = np.random.default_rng(1)
    transcript, rated, quotes = _interview(60, rng)
    chosen = by_rules(rated, transcript.text)
    words = sum(len(transcript.text[r.char_start:r.char_end].split()) for r in rated)
    assert len(chosen) == int(np.ceil(3.5 * words / 2000))
    assert all((r.char_start, r.char_end) in quotes for r, _ in chosen)
    assert by_rules([], transcript.text) == []


def test_the_file_round_trips_and_a_wrong_one_is_refused(tmp_path):
    rng = np.random.default_rng(2)
    interviews = [_interview(n, rng) for n in (30, 34)]
    gold = [_gold(t, q) for t, _, q in interviews]
    fitted = fit_quotes(gold, {g.id: r for g, (_, r, _) in zip(gold, interviews)}, "abc", model="m")
    path = tmp_path / "q.json"
    fitted.chooser.save(path)
    again = QuotableLines.load(path)
    transcript, rated, _ = interviews[0]
    assert again.choose(rated, transcript.text) == fitted.chooser.choose(rated, transcript.text)
    assert again.applies_to("abc", "other") and not again.applies_to("def", "m")
    assert again.applies_to(None, "m") and not again.applies_to(None, "")  # a server: by the model's name
    data = json.loads(path.read_text())
    for broken, problem in ((dict(data, format="x"), "not a quotable-lines file"),
                            (dict(data, coef=data["coef"][:-1]), "one value per feature"),
                            (dict(data, extra=1), "extra")):
        path.write_text(json.dumps(broken))
        with pytest.raises(ValueError, match=problem):
            QuotableLines.load(path)
    path.write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        QuotableLines.load(path)


def test_the_bundled_chooser_is_the_default_strategys_and_fits_the_bundled_decision():
    strategy = load_strategy("rate")
    chooser = QuotableLines.from_json(strategy.quotable, "bundled")
    decision = json.loads((ROOT / "prompts" / "learned_decision.json").read_text())
    assert chooser.format == FORMAT and chooser.groups == list(GROUPS)
    assert (chooser.model_sha256, chooser.model) == (decision["model_sha256"], decision["model"])
    assert chooser.fitted_on == decision["fitted_on"]  # the dev split, as the decision
    assert (ROOT / "prompts" / "quotable_lines.json").stat().st_size < 100_000
    assert load_strategy("rate-v25").quotable == ""  # the old default: the model copies its lines


def test_the_chooser_is_part_of_the_strategys_version_not_of_what_the_model_is_asked(tmp_path):
    strategy = load_strategy("rate")
    data = json.loads(strategy.quotable)
    (tmp_path / "quotable_lines.json").write_text(json.dumps(dict(data, intercept=data["intercept"] + 1)))
    mine = load_strategy("rate", str(tmp_path))
    assert mine.version != strategy.version  # the codes may differ: a new version on every code
    assert mine.passes_version == strategy.passes_version  # the cached answers still serve


def test_a_run_takes_quotable_lines_from_the_ratings_as_whole_sentences(tmp_path):
    from jtbd.coding import pipeline
    from jtbd.schemas.codebook import Provenance
    from jtbd.settings import Settings

    rng = np.random.default_rng(3)
    transcript, rated, quotes = _interview(40, rng)
    gold = [_gold(t, q) for t, _, q in (_interview(36, rng), _interview(44, rng))]
    fitted = fit_quotes(gold, {g.id: r for g, r in zip(gold, [_interview(36, np.random.default_rng(4))[1],
                                                                 _interview(44, np.random.default_rng(5))[1]])}, "sha")
    provenance = Provenance(prompt_version="p", schema_version="s", model="m")
    result = pipeline.ChunkResult("k", rated=rated)
    for chooser in (fitted.chooser, "rules"):
        decide_with = {**decision_settings(load_strategy("rate")), "quotable": chooser}
        finished = pipeline.finish_transcript(transcript, [result], provenance, decide_with)
        lines = [c for c in finished.coded.codes if c.kind == "quote"]
        assert lines, chooser
        for code in lines:
            g = code.grounding
            assert (g.char_start, g.char_end) in quotes  # a whole sentence that stands out
            assert code.quote == transcript.text[g.char_start:g.char_end] and code.score is not None
    # another model: the rules, and the run says so
    strategy = load_strategy("rate")
    other = Settings(backend="openai", base_url="http://127.0.0.1:9/v1", model="another-model")
    said = pipeline.quotable_for(strategy, other)
    assert said["quotable"] == "rules" and "another-model" in said["quotes"]
    assert pipeline.quotable_for(load_strategy("rate-v25"), other) == {}
