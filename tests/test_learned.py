"""The learned decision (coding/learned.py): its fit, its features, its file, and when it applies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jtbd.coding.decide import CODES, RatedSentence
from jtbd.coding.learned import (
    CLASSES, LearnedDecision, fit_multinomial, sentence_classes, sentence_features,
)
from jtbd.schemas.codebook import RATED_LABELS


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_the_fit_reaches_the_penalised_optimum_and_finds_the_generating_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 4))
    truth = rng.normal(size=(4, len(CLASSES))) * 2
    y = np.array([rng.choice(len(CLASSES), p=p) for p in _softmax(x @ truth)])
    w, b = fit_multinomial(x, y, l2=0.001)
    p = _softmax(x @ w + b)
    gradient = x.T @ (p - np.eye(len(CLASSES))[y]) / len(y) + 0.001 * w
    assert np.abs(gradient).max() < 1e-3  # the optimum: the penalised gradient vanishes
    assert np.abs(p.sum(axis=0) - np.bincount(y, minlength=len(CLASSES))).max() < 1  # intercepts match the counts
    # Softmax weights are defined up to a constant per feature: compare them centred across classes.
    centred = lambda m: m - m.mean(axis=1, keepdims=True)  # noqa: E731
    assert np.corrcoef(centred(w).ravel(), centred(truth).ravel())[0, 1] > 0.95


def test_a_stronger_penalty_shrinks_the_weights():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 3)), rng.integers(0, len(CLASSES), 200)
    y[x[:, 0] > 1] = 0
    small, _ = fit_multinomial(x, y, l2=0.001)
    large, _ = fit_multinomial(x, y, l2=1.0)
    assert np.abs(large).sum() < 0.5 * np.abs(small).sum()


def _sentence(i: int, turn: int = 0, **logprobs: float) -> RatedSentence:
    return RatedSentence(turn, 10 * i, 10 * i + 9, {label: -3.0 for label in RATED_LABELS} | logprobs)


def test_a_sentence_takes_the_class_of_the_code_overlapping_it_most_else_job_evidence_else_none():
    sentences = [_sentence(i) for i in range(4)]  # spans 0-9, 10-19, 20-29, 30-39
    spans = [(0, 12, "push"), (12, 19, "anxiety"), (20, 29, "job"), (21, 25, "trigger"), (30, 39, "job")]
    got = [CLASSES[c] for c in sentence_classes(sentences, spans)]
    # 1: anxiety covers 7 characters of it, push 2; 2: a trigger beats the job evidence around it
    assert got == ["push", "anxiety", "trigger", "job"]
    assert [CLASSES[c] for c in sentence_classes(sentences, [])] == ["none"] * 4


def test_features_are_one_row_per_sentence_and_the_groups_add_columns():
    text = " ".join(["word"] * 30)
    rated = [_sentence(i, turn=i // 2, push=-1.0 - i) for i in range(4)] + [_sentence(0, push=-9.0)]  # a repeat
    sentences, ratings = sentence_features(rated, text, ["ratings"])
    assert len(sentences) == 4 and ratings.shape[0] == 4  # the repeated sentence is rated once: the first rating
    assert ratings[0, RATED_LABELS.index("push")] == -1.0
    _, more = sentence_features(rated, text, ["ratings", "length", "position", "context"])
    assert more.shape == (4, ratings.shape[1] * 2 + 4)
    with pytest.raises(ValueError, match="unknown feature groups: vibes"):
        sentence_features(rated, text, ["vibes"])
    with pytest.raises(ValueError, match="needs the embedder"):
        sentence_features(rated, text, ["minilm"])


def _decision_on(transcripts: int = 4, seed: int = 0) -> tuple[LearnedDecision, list, str]:
    """A decision fitted where "push" ratings mark push sentences: it must learn to read them."""
    rng = np.random.default_rng(seed)
    text = " ".join(["word"] * 400)
    examples, held = [], None
    for t in range(transcripts + 1):
        marked = rng.random(30) < 0.3
        rated = [_sentence(i, turn=i // 3, push=(-0.5 if m else -4.0) + rng.normal(0, 0.3), none=-1.0)
                 for i, m in enumerate(marked)]
        spans = [(s.char_start, s.char_end, "push") for s, m in zip(rated, marked) if m]
        if t == transcripts:
            held = (rated, marked)
            continue
        sentences, features = sentence_features(rated, text, ["ratings", "length"])
        examples.append((features, sentence_classes(sentences, spans)))
    return LearnedDecision.fit(examples, ["ratings", "length"], 0.1, "abc", model="m"), held, text


def test_the_learned_decision_codes_what_its_examples_coded():
    decision, (rated, marked), text = _decision_on()
    decisions = decision.decide(rated, text)
    coded = {d.sentence.char_start for d in decisions}
    truth = {s.char_start for s, m in zip(rated, marked) if m}
    assert len(coded & truth) >= 0.8 * len(truth) and len(coded - truth) <= 2
    assert {d.label for d in decisions} == {"push"}
    assert all(0.0 <= d.score <= 1.0 for d in decisions)


def test_the_file_round_trips_and_a_broken_one_is_named(tmp_path):
    decision, (rated, _), text = _decision_on()
    path = tmp_path / "decision.json"
    decision.save(path)
    again = LearnedDecision.load(path)
    assert [d.sentence for d in again.decide(rated, text)] == [d.sentence for d in decision.decide(rated, text)]
    assert path.stat().st_size < 1_000_000
    data = json.loads(path.read_text())
    (tmp_path / "short.json").write_text(json.dumps(data | {"intercept": data["intercept"][:3]}))
    with pytest.raises(ValueError, match="short.json: the coefficients do not match 7 classes"):
        LearnedDecision.load(tmp_path / "short.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="other.json: not a learned decision file"):
        LearnedDecision.load(tmp_path / "other.json")
    with pytest.raises(ValueError, match="missing.json: cannot read"):
        LearnedDecision.load(tmp_path / "missing.json")


def test_it_applies_to_the_model_file_it_was_fitted_on_or_a_server_of_that_name():
    decision, _, _ = _decision_on()
    assert decision.applies_to("abc", "anything")
    assert not decision.applies_to("def", "m")  # another file, whatever its name
    assert decision.applies_to(None, "m")  # a server: its name is all there is
    assert not decision.applies_to(None, "other")


def test_decision_for_falls_back_to_the_rules_for_another_model_and_refuses_a_file_that_does_not_fit(tmp_path):
    from jtbd.coding.model_files import DEFAULT_MODEL_NAME
    from jtbd.coding.pipeline import decision_for
    from jtbd.prompts import load_strategy
    from jtbd.settings import Settings

    strategy = load_strategy()
    on_default = decision_for(strategy, Settings())
    assert isinstance(on_default.get("learned"), LearnedDecision)
    assert on_default["learned"].model == DEFAULT_MODEL_NAME
    other = decision_for(strategy, Settings(backend="openai", model="llama3", base_url="http://127.0.0.1:1/v1"))
    assert "learned" not in other and "fitted on qwen" in other["decision"] and "llama3" in other["decision"]
    assert "learned" not in decision_for(strategy, Settings(decision="handmade"))
    decision, _, _ = _decision_on()
    path = tmp_path / "mine.json"
    decision.save(path)
    with pytest.raises(ValueError, match="mine.json learned decision was fitted on m's ratings"):
        decision_for(strategy, Settings(decision=str(path)))
    mine = decision_for(strategy, Settings(decision=str(path), backend="openai", model="m",
                                           base_url="http://127.0.0.1:1/v1"))
    assert mine["learned"].coef == LearnedDecision.load(path).coef


def test_every_code_the_learned_decision_gives_is_one_of_the_rated_codes():
    assert set(CLASSES) == set(CODES) | {"job", "none"}
