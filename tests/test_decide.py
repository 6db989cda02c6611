"""Ratings to codes: the first-token parser and the per-transcript decision, on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jtbd.coding.backends import LLM, CallMeter, labels_from_top, top_tokens
from jtbd.coding.decide import (
    CODES, MIN_STD, RatedSentence, coded_chances, decide, decision_settings, expected_f1_count, fit_count_model,
    standardised_margins, tail_clause, turn_neighbours_mean,
)
from jtbd.schemas.codebook import RATED_LABELS, SentenceRating

LABELS = RATED_LABELS


def test_top_tokens_map_to_labels_by_prefix_case_and_space():
    top = [("pull", -0.5), (" Pull", -2.0), ("an", -1.0), ("none", -1.5), ("push", -3.0), ("{", -4.0)]
    got = labels_from_top(top, LABELS)
    assert got["pull"] == pytest.approx(math.log(math.exp(-0.5) + math.exp(-2.0)), abs=1e-4)  # variants add up
    assert got["anxiety"] == -1.0  # "an" is a prefix of anxiety only
    assert (got["none"], got["push"]) == (-1.5, -3.0)
    # habit and trigger are not in the top tokens: one nat below the lowest seen
    assert got["habit"] == got["trigger"] == -5.0


def test_ambiguous_and_one_letter_tokens_count_for_no_label():
    got = labels_from_top([("pu", -0.1), ("p", -0.2), ("h", -0.3), ("none", -2.0)], LABELS)
    assert got["push"] == got["pull"] == got["habit"] == -3.0  # "pu" fits push and pull: neither
    assert got["none"] == -2.0


def test_top_tokens_reads_objects_and_dicts_and_names_a_missing_logprobs():
    answer = {"choices": [{"logprobs": {"content": [{"top_logprobs": [{"token": "push", "logprob": -0.1}]}]}}]}
    assert top_tokens(answer) == [("push", -0.1)]
    with pytest.raises(ValueError, match="top_logprobs"):
        top_tokens({"choices": [{"logprobs": None}]})


def test_llm_rate_without_a_rating_backend_is_a_clear_error():
    llm = LLM(create=lambda **_: None, model="m", meter=CallMeter())
    with pytest.raises(RuntimeError, match="cannot rate"):
        llm.rate([], LABELS)


def test_sentence_rating_needs_every_label_and_log_probabilities():
    full = {label: -1.0 for label in LABELS}
    assert list(SentenceRating(logprobs=full).logprobs) == list(LABELS)
    with pytest.raises(ValueError, match="no log-probability for habit"):
        SentenceRating(logprobs={k: v for k, v in full.items() if k != "habit"})
    with pytest.raises(ValueError, match="<= 0"):
        SentenceRating(logprobs=full | {"push": 0.5})


def rated(start: int, **logprobs: float) -> RatedSentence:
    base = {label: -3.0 for label in LABELS}
    return RatedSentence(0, start, start + 5, base | logprobs)


def test_standardised_margins_by_hand():
    # push margins over none: 0, 2, 4 -> mean 2, std sqrt(8/3); pull margins: -2, -1, 1
    sentences = [rated(0, none=-1.0, push=-1.0), rated(10, none=-2.0, push=0.0), rated(20, none=-4.0, push=0.0)]
    z_any, z_code = standardised_margins(sentences)
    assert z_code[:, CODES.index("push")] == pytest.approx(np.array([-2.0, 0.0, 2.0]) / math.sqrt(8 / 3))
    pull = np.array([-2.0, -1.0, 1.0])
    assert z_code[:, CODES.index("pull")] == pytest.approx((pull - pull.mean()) / pull.std())
    # any: log(sum of the five code probabilities) - log P(none), standardised the same way
    any_code = np.array([np.logaddexp.reduce([s.logprobs[c] for c in CODES]) - s.logprobs["none"]
                         for s in sentences])
    assert z_any == pytest.approx((any_code - any_code.mean()) / max(any_code.std(), MIN_STD))
    # a spread below MIN_STD is not blown up: near-equal ratings stay near z = 0
    flat = [rated(i, none=-1.0 - 0.01 * i) for i in range(5)]
    assert np.abs(standardised_margins(flat)[0]).max() < 0.1


def test_decide_keeps_the_sentences_that_stand_out_with_the_code_they_lean_to():
    # Ten sentences where the model says "pull" for everything (a biased rater);
    # sentence 3 leans to push and sentence 7 to anxiety far more than the others do.
    sentences = [rated(i * 10, pull=-0.3, none=-1.5) for i in range(10)]
    sentences[3] = rated(30, push=-0.2, pull=-2.5, none=-3.5)
    sentences[7] = rated(70, anxiety=-0.2, pull=-2.5, none=-3.5)
    decisions = decide(sentences, threshold=1.5)
    assert [(d.sentence.char_start, d.label) for d in decisions] == [(30, "push"), (70, "anxiety")]
    assert all(d.score >= 1.5 for d in decisions)
    # raw argmax codes eight of the ten as pull, the two that matter included neither as push nor anxiety
    raw = [max(CODES + ("none",), key=s.logprobs.get) for s in sentences]
    assert raw.count("pull") == 8


def test_decide_thresholds_codes_and_duplicates():
    sentences = [rated(i * 10, none=-0.5) for i in range(8)] + [rated(80, trigger=-0.2, none=-0.5)]
    assert [d.label for d in decide(sentences, threshold=2.0)] == ["trigger"]
    assert decide(sentences, threshold=2.0, codes=("push", "pull", "anxiety", "habit")) == []
    assert decide(sentences, threshold=99.0) == []
    twice = sentences + [rated(80, trigger=-3.0, none=-0.5)]  # the same sentence from an overlapping chunk
    assert [d.label for d in decide(twice, threshold=2.0)] == ["trigger"]  # the first rating is kept
    assert decide([], threshold=0.0) == []


def test_length_weight_gates_on_words_and_model_together():
    # Four sentences the model rates alike except one, and of different lengths:
    # "Yeah." (1 word) stands out to the model, the 16-word sentence does not.
    text = "Yeah. " + " ".join(["word"] * 16) + ". Two words. Four words in here."
    spans = [(0, 5), (6, 86), (88, 98), (100, 119)]
    assert [len(text[a:b].split()) for a, b in spans] == [1, 16, 2, 4]
    logprobs = [{"push": -0.5, "none": -2.0}, {"none": -0.5}, {"none": -0.5}, {"none": -0.5}]
    sentences = [RatedSentence(0, a, b, {label: -3.0 for label in LABELS} | lp) for (a, b), lp in zip(spans, logprobs)]
    # the model alone codes "Yeah."
    assert [d.sentence.char_start for d in decide(sentences, threshold=1.0)] == [0]
    # words and model weighed equally: gate = (z_any + z_words) / sqrt(2), by hand
    z_any, _ = standardised_margins(sentences)
    words = np.log([1.0, 16.0, 2.0, 4.0])
    gate = (z_any + (words - words.mean()) / words.std()) / math.sqrt(2)
    decisions = decide(sentences, threshold=0.5, text=text, length_weight=1.0)
    assert [(d.sentence.char_start, d.score) for d in decisions] == [(6, round(gate[1], 3))]
    assert gate[0] < 0.5 <= gate[1]  # "Yeah." falls below the gate once its length counts
    with pytest.raises(ValueError, match="needs the transcript text"):
        decide(sentences, threshold=0.5, length_weight=1.0)


def test_label_weight_breaks_near_ties_toward_the_model_preference():
    # habit's margin over none is push's plus two nats on both sentences, so their z
    # columns are identical; the other codes are flat (z = 0).
    sentences = [rated(0, push=-3.0, habit=-1.0, none=-1.0), rated(10, push=-4.0, habit=-2.0, none=-1.0)]
    _, z_code = standardised_margins(sentences)
    assert z_code[:, CODES.index("push")] == pytest.approx([1.0, -1.0])
    assert z_code[:, CODES.index("habit")] == pytest.approx([1.0, -1.0])
    plain = {d.sentence.char_start: d.label for d in decide(sentences, threshold=-9.0)}
    weighted = {d.sentence.char_start: d.label for d in decide(sentences, threshold=-9.0, label_weight=0.5)}
    assert plain[0] == "push"  # an exact tie goes to the first code
    assert weighted[0] == "habit"  # the model prefers habit by two nats
    # sentence 10: pull (z 0, raw -3) beats habit (z -1, raw -2 + half a nat of preference)
    assert plain[10] == weighted[10] == "pull"


def test_a_label_offset_moves_the_label_not_the_gate():
    sentences = [rated(0, push=-2.0, anxiety=-1.0, none=-3.0), rated(10, push=-2.0, anxiety=-4.0, none=-3.0),
                 rated(20, push=-5.0, anxiety=-5.0, none=-1.0)]
    _, z_code = standardised_margins(sentences)
    assert z_code[0, CODES.index("anxiety")] - z_code[0, CODES.index("push")] == pytest.approx(0.518, abs=1e-3)
    plain = decide(sentences, threshold=0.0)
    offset = decide(sentences, threshold=0.0, label_offsets={"anxiety": -0.6})
    assert [d.label for d in plain] == ["anxiety", "push"] and [d.label for d in offset] == ["push", "push"]
    assert [d.score for d in plain] == [d.score for d in offset]  # the same sentences are coded, with the same gate
    assert decide(sentences, threshold=0.0, label_offsets={"anxiety": -0.5})[0].label == "anxiety"  # 0.5 < 0.518
    assert decide(sentences, threshold=0.0, label_offsets={"push": -5.0})[0].label == "anxiety"


def test_turn_neighbours_mean_stays_in_the_turn_and_leaves_the_sentence_out():
    sentences = [RatedSentence(turn, 10 * i, 10 * i + 5, {}) for i, turn in enumerate([0, 0, 0, 0, 2, 4, 4])]
    values = np.array([[1.0], [2.0], [4.0], [8.0], [16.0], [32.0], [64.0]])
    assert turn_neighbours_mean(sentences, values, 1)[:, 0].tolist() == [2.0, 2.5, 5.0, 4.0, 0.0, 64.0, 32.0]
    # two either side: the first sentence sees 2 and 4, the third sees 1, 2 and 8 (16 is another turn)
    assert turn_neighbours_mean(sentences, values, 2)[:, 0].tolist() == [3.0, 13 / 3, 11 / 3, 3.0, 0.0, 64.0, 32.0]


def test_the_turn_around_a_sentence_leans_its_label_not_its_gate():
    # Turn 0: two sentences lean push, the third anxiety a little more than push. Turn 1: one clear
    # anxiety sentence, alone in its turn. Turn 2: a sentence that leans to none and is not coded.
    def said(turn, start, **logprobs):
        return RatedSentence(turn, start, start + 5, {label: -3.0 for label in LABELS} | logprobs)

    sentences = [said(0, 0, push=-1.0, none=-2.0), said(0, 10, push=-1.0, none=-2.0),
                 said(0, 20, push=-1.3, anxiety=-1.2, none=-2.0), said(1, 30, anxiety=-0.5, none=-2.0),
                 said(2, 40, none=-0.1)]
    _, z_code = standardised_margins(sentences)
    push, anxiety = CODES.index("push"), CODES.index("anxiety")
    # by hand: sentence 20's own anxiety lead is smaller than its neighbour's push lead
    assert 0 < z_code[2, anxiety] - z_code[2, push] < z_code[1, push] - z_code[1, anxiety]
    own = decide(sentences, threshold=0.0)
    leaned = decide(sentences, threshold=0.0, context_weight=1.0, context_sentences=1)
    assert [d.label for d in own] == ["push", "push", "anxiety", "anxiety"]
    assert [d.label for d in leaned] == ["push", "push", "push", "anxiety"]  # turn 1 has no neighbour to lean on
    assert [d.score for d in own] == [d.score for d in leaned]  # the same sentences coded, the same gate
    # no neighbours asked for: no lean, whatever the weight
    assert [d.label for d in decide(sentences, threshold=0.0, context_weight=5.0)] == [d.label for d in own]


def test_decision_settings_defaults_and_unknown_codes():
    class S:
        decide = {"threshold": 2}

    assert decision_settings(S()) == {"threshold": 2.0, "codes": CODES, "length_weight": 0.0, "label_weight": 0.0,
                                      "label_offsets": {}, "tail_share": 1.0, "context_weight": 0.0,
                                      "context_sentences": 0, "count_model": {}, "count_range": (0.5, 2.0)}
    S.decide = {"context_weight": 1, "context_sentences": 3}
    assert decision_settings(S())["context_weight"] == 1.0 and decision_settings(S())["context_sentences"] == 3
    for bad in (-1, 1.5, True, "3"):
        S.decide = {"context_sentences": bad}
        with pytest.raises(ValueError, match="context_sentences must be a whole number"):
            decision_settings(S())
    S.decide = {"label_offsets": {"anxiety": -1}}
    assert decision_settings(S())["label_offsets"] == {"anxiety": -1.0}
    S.decide = {"codes": ["push", "pull"], "label_offsets": {"anxiety": -1}}
    with pytest.raises(ValueError, match="label_offsets for codes not decided: anxiety"):
        decision_settings(S())
    for bad in (-1.0, {"anxiety": "low"}):
        S.decide = {"label_offsets": bad}
        with pytest.raises(ValueError, match="label_offsets must be a table of code = number"):
            decision_settings(S())
    S.decide = {"threshold": 1, "length_weight": 1, "label_weight": 0.5}
    assert decision_settings(S())["length_weight"] == 1.0 and decision_settings(S())["label_weight"] == 0.5
    S.decide = {"codes": ["push", "jobs"]}
    with pytest.raises(ValueError, match="unknown codes to decide: jobs"):
        decision_settings(S())
    S.decide = {"treshold": 1.0}
    with pytest.raises(ValueError, match=r"unknown \[decide\] settings: treshold"):
        decision_settings(S())


def test_expected_f1_count_by_hand():
    chances = np.array([0.9, 0.8, 0.1, 0.1])  # coders mark about 1.9 of these sentences
    # best first: k = 1, 2, 3, 4 expect 0.9/2.9, 1.7/3.9, 1.8/4.9, 1.9/5.9 -> 2 is best
    assert expected_f1_count(chances, np.array([0, 1, 2, 3])) == 2
    # the same chances taken worst first: 0.1/2.9, 0.2/3.9, 1.0/4.9, 1.9/5.9 -> all four
    assert expected_f1_count(chances, np.array([3, 2, 1, 0])) == 4
    # a denser interview (more sentences a coder would mark) gets more codes
    assert expected_f1_count(np.array([0.9, 0.8, 0.6, 0.5, 0.1]), np.arange(5)) == 4
    assert expected_f1_count(np.zeros(0), np.zeros(0, dtype=int)) == 0
    # p = logistic(intercept + any_code * margin + log_words * log(words))
    p = coded_chances(np.array([0.0, 2.0]), np.array([1.0, math.e]), {"intercept": -1.0, "any_code": 0.5, "log_words": 1.0})
    assert p == pytest.approx([1 / (1 + math.exp(1.0)), 1 / (1 + math.exp(-1.0))])


def test_count_model_codes_more_of_an_interview_the_model_rates_higher_within_the_range():
    # Two interviews whose sentences rank the same way (the z of each sentence is the same)
    # but whose "any code" margins differ by a constant: the gate codes the same sentences in
    # both; the count model codes more of the one where more sentences look like codes.
    text = " ".join(["one two three four five six seven eight."] * 20)
    spans = [(i * 41, i * 41 + 40) for i in range(20)]
    assert all(text[a:b].endswith("eight.") for a, b in spans)

    def interview(shift):
        return [RatedSentence(0, a, b, {label: -4.0 + shift for label in LABELS}
                              | {"pull": -0.3 - 0.15 * i + shift, "none": -1.0})
                for i, (a, b) in enumerate(spans)]

    low, high = interview(-3.0), interview(0.0)
    at_threshold = [d.sentence.char_start for d in decide(low, threshold=1.0, text=text)]
    assert at_threshold == [d.sentence.char_start for d in decide(high, threshold=1.0, text=text)]
    model = {"intercept": -2.0, "any_code": 1.0, "log_words": 0.0}
    n_low = len(decide(low, threshold=1.0, text=text, count_model=model))
    n_high = len(decide(high, threshold=1.0, text=text, count_model=model))
    assert n_low < len(at_threshold) < n_high <= 2 * len(at_threshold)
    # the sentences coded are the best by gate, whatever their number
    coded = [d.sentence.char_start for d in decide(high, threshold=1.0, text=text, count_model=model)]
    assert coded == [a for a, _ in spans[:n_high]]
    # the range bounds the count: a model sure of every sentence doubles it; one that gives every
    # sentence a tiny chance, falling down the gate, would code only the first and is held at half
    sure = decide(high, threshold=1.0, text=text, count_model={"intercept": 20.0})
    assert len(sure) == 2 * len(at_threshold)
    unsure = decide(high, threshold=1.0, text=text, count_model={"intercept": -20.0, "any_code": 1.5},
                     count_range=(0.5, 3.0))
    assert len(unsure) == len(at_threshold) // 2
    with pytest.raises(ValueError, match="count_model needs the transcript text"):
        decide(high, threshold=1.0, count_model=model)


def test_fit_count_model_recovers_the_chances_it_was_drawn_from():
    # 4,000 sentences of 1-30 words, each rated with an "any code" margin m, marked by a coder
    # with chance logistic(-3 + 0.8 m + 1.0 log(words)); the fit finds those coefficients.
    rng = np.random.default_rng(7)
    words = rng.integers(1, 31, 4000)
    margins = rng.uniform(-2.0, 4.0, 4000)
    marked = rng.random(4000) < 1 / (1 + np.exp(-(-3.0 + 0.8 * margins + np.log(words))))
    text, rated, spans = "", [], []
    for n, m, coded in zip(words, margins, marked):
        start = len(text)
        text += " ".join(["word"] * int(n)) + ". "
        rated.append(RatedSentence(0, start, len(text) - 1, {label: -30.0 for label in LABELS} | {"pull": 0.0, "none": -m}))
        if coded:
            spans.append((start, start + 4))  # a gold code on the sentence's first word
    half = len(rated) // 2
    # two interviews; the second rated twice over (overlapping chunks): each sentence counts once
    model = fit_count_model([(rated[:half], text, spans), (rated[half:] + rated[half:], text, spans)])
    assert model == pytest.approx({"intercept": -3.0, "any_code": 0.8, "log_words": 1.0}, abs=0.25)
    # the chances it gives follow the draws: as many sentences marked as it expects
    chances = coded_chances(margins, words.astype(float), model)
    assert chances.sum() == pytest.approx(marked.sum(), rel=0.05)
    with pytest.raises(ValueError, match="no rated sentences"):
        fit_count_model([([], text, spans)])


def test_decision_settings_check_the_count_model():
    class S:
        decide = {"count_model": {"intercept": -7, "any_code": 0.6, "log_words": 1.7}, "count_range": [0.5, 1.5]}

    settings = decision_settings(S())
    assert settings["count_model"] == {"any_code": 0.6, "intercept": -7.0, "log_words": 1.7}
    assert settings["count_range"] == (0.5, 1.5)
    for bad in ({"slope": 1.0}, {"intercept": "high"}, [1.0], {"intercept": True}):
        S.decide = {"count_model": bad}
        with pytest.raises(ValueError, match="count_model must be a table of intercept, any_code and log_words"):
            decision_settings(S())
    for bad in ([1.5, 2.0], [0.5, 0.9], [0.5], "wide", [-0.1, 2.0]):
        S.decide = {"count_range": bad}
        with pytest.raises(ValueError, match=r"count_range must be \[low, high\]"):
            decision_settings(S())


def test_decision_settings_reject_a_tail_share_outside_zero_to_one():
    class S:
        decide = {"tail_share": 0.5}

    assert decision_settings(S())["tail_share"] == 0.5
    for bad in (0, -0.5, 1.5):
        S.decide = {"tail_share": bad}
        with pytest.raises(ValueError, match=r"tail_share must be in \(0, 1\]"):
            decision_settings(S())


FRIDGE = "Most nights it would get to seven, and one of us would open the fridge and just stand there."


@pytest.mark.parametrize(("sentence", "share", "tail"), [
    # the last clause is long enough: the tail starts after the comma
    (FRIDGE, 0.5, "and one of us would open the fridge and just stand there."),
    # it is too short for the share asked: the whole sentence
    (FRIDGE, 0.8, FRIDGE),
    (FRIDGE, 1.0, FRIDGE),
    # several boundaries: the latest one that still leaves the share
    ("So I went, I looked, I checked it again, and the whole thing was gone for good.", 0.5,
     "I checked it again, and the whole thing was gone for good."),
    ("So I went, I looked, I checked it again, and the whole thing was gone for good.", 0.3,
     "and the whole thing was gone for good."),
    # an opening quote mark after the boundary is left out; a semicolon, colon and dash are boundaries
    ("And Gary said, in front of everybody, 'I've closed a lot of business out of that sheet.'", 0.5,
     "I've closed a lot of business out of that sheet.'"),
    ("It was the price; nine hundred dollars for a thing that vacuums the floor.", 0.5,
     "nine hundred dollars for a thing that vacuums the floor."),
    ("Here is the thing: nobody at all had looked at it since the Monday before.", 0.5,
     "nobody at all had looked at it since the Monday before."),
    ("I tried it - and honestly it never once did what the advert had promised.", 0.5,
     "and honestly it never once did what the advert had promised."),
    # no boundary, or a comma with no space after it (a number): the whole sentence
    ("It cost 1,200 pounds and I never used it once in the whole year.", 0.5,
     "It cost 1,200 pounds and I never used it once in the whole year."),
    ("Yeah.", 0.5, "Yeah."),
    ("", 0.5, ""),
])
def test_tail_clause_cuts_at_the_latest_boundary_that_keeps_the_share(sentence, share, tail):
    start = tail_clause(sentence, share)
    assert sentence[start:] == tail
    assert len(sentence) - start >= share * len(sentence)


def test_decide_codes_the_tail_clause_and_needs_the_text():
    text = "Yeah. " + FRIDGE
    sentences = [RatedSentence(0, 0, 5, {label: -3.0 for label in LABELS} | {"none": -0.1}),
                 RatedSentence(0, 6, len(text), {label: -3.0 for label in LABELS} | {"push": -0.1, "none": -3.0})]
    whole = decide(sentences, threshold=0.5, text=text)
    assert [(d.label, text[d.char_start:d.char_end]) for d in whole] == [("push", FRIDGE)]
    cut = decide(sentences, threshold=0.5, text=text, tail_share=0.5)
    assert [(d.label, text[d.char_start:d.char_end]) for d in cut] == [
        ("push", "and one of us would open the fridge and just stand there.")]
    assert cut[0].sentence == whole[0].sentence and cut[0].score == whole[0].score  # only the span moves
    # a reader who coded the whole sentence still overlaps the tail by at least half the longer span
    assert (cut[0].char_end - cut[0].char_start) >= 0.5 * len(FRIDGE)
    with pytest.raises(ValueError, match="needs the transcript text"):
        decide(sentences, threshold=0.5, tail_share=0.5)
