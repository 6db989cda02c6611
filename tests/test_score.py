"""The scorer against hand-computed cases."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jtbd.coding.sentences import split_sentences
from jtbd.eval.gold import GoldCode
from jtbd.eval.score import (
    ALL_FORCES, Coded, all_push_baseline, all_sentences_baseline, coded_from_code, coded_from_gold,
    PRF, cohen_kappa, compare_to_baseline, intervals, is_job_story, match, match_report, score_codes,
    scores_to_dict, sentence_force,
)
from jtbd.schemas.codebook import (
    Alignment, Dimension, Force, ForceType, Grounding, JobStory, Provenance,
)
from jtbd.schemas.transcript import Role, Transcript, Turn


def make_transcript(turns: list[tuple[str, str]], interviewers=("Interviewer",)) -> Transcript:
    """Render (speaker, words) turns the way every parser does: "{speaker}: {text}\\n"."""
    text, built = "", []
    for index, (speaker, words) in enumerate(turns):
        start = len(text) + len(speaker) + 2
        text += f"{speaker}: {words}\n"
        role = Role.interviewer if speaker in interviewers else Role.interviewee
        built.append(Turn(index=index, speaker=speaker, role=role, text=words,
                          char_start=start, char_end=start + len(words)))
    return Transcript(id="t", source="t.txt", format="txt", text=text, turns=built,
                      interviewers=list(interviewers))


def span(start: int, end: int, kind: str = "force", force: str | None = "push", **kw) -> Coded:
    return Coded(kind, force if kind == "force" else None, start, end, "", **kw)


def pred(start: int, end: int, kind: str = "force", force: str | None = "push", **kw) -> Coded:
    return span(start, end, kind, force, source="pred", **kw)


def scores_of(gold, predicted, rejected=0, transcript=None, similarity=None):
    return score_codes([(gold, predicted, rejected, transcript)], similarity=similarity)


# --- precision, recall, F1 ------------------------------------------------------


def test_empty_predictions_recall_zero_precision_none():
    s = scores_of([span(0, 20)], [])
    row = s.strict["force"]
    assert (row.tp, row.fp, row.fn) == (0, 0, 1)
    assert row.recall == 0.0
    assert row.precision is None
    assert row.f1 == 0.0


def test_empty_gold_precision_zero_recall_none():
    row = scores_of([], [pred(0, 20)]).strict["push"]
    assert (row.tp, row.fp, row.fn) == (0, 1, 0)
    assert row.precision == 0.0
    assert row.recall is None
    assert row.f1 == 0.0


def test_both_empty_reports_none_not_zero():
    s = scores_of([], [])
    for table in (s.strict, s.lenient):
        for row in table.values():
            assert (row.tp, row.fp, row.fn) == (0, 0, 0)
            assert row.precision is row.recall is row.f1 is None
    assert s.kappa is None and s.grounding_rate is None


def test_two_identical_predictions_for_one_gold_are_one_hit_one_false_positive():
    row = scores_of([span(0, 20)], [pred(0, 20), pred(0, 20)]).strict["push"]
    assert (row.tp, row.fp, row.fn) == (1, 1, 0)
    assert row.precision == 0.5 and row.recall == 1.0
    assert row.f1 == pytest.approx(2 / 3)


@pytest.mark.parametrize("inner, strict_tp", [
    ((5, 15), 1),  # 10 shared chars >= 0.5 * 20
    ((5, 14), 0),  # 9 shared chars < 0.5 * 20
])
def test_prediction_nested_inside_gold(inner, strict_tp):
    s = scores_of([span(0, 20)], [pred(*inner)])
    assert s.strict["push"].tp == strict_tp
    assert s.lenient["push"].tp == 1


@pytest.mark.parametrize("shifted, strict_tp", [
    ((9, 29), 1),   # 11 of 20 shared: above half
    ((10, 30), 1),  # 10 of 20 shared: exactly half counts
    ((11, 31), 0),  # 9 of 20 shared: below half
    ((19, 39), 0),  # 1 shared char: lenient only
])
def test_partial_overlap_around_the_strict_threshold(shifted, strict_tp):
    s = scores_of([span(0, 20)], [pred(*shifted)])
    assert s.strict["force"].tp == strict_tp
    assert s.lenient["force"].tp == 1


def test_adjacent_spans_do_not_overlap():
    assert scores_of([span(0, 20)], [pred(20, 40)]).lenient["force"].tp == 0


def test_strict_threshold_uses_the_longer_span():
    # a short prediction inside a long gold span: 10 shared chars, but the gold span is 40
    assert scores_of([span(0, 40)], [pred(10, 20)]).strict["force"].tp == 0


def test_wrong_force_type_is_a_miss_and_a_confusion_cell():
    s = scores_of([span(0, 20)], [pred(0, 20, force="pull")])
    assert (s.strict["push"].fn, s.strict["pull"].fp, s.strict["force"].tp) == (1, 1, 0)
    assert s.lenient["force"].tp == 0
    assert s.confusion["push"]["pull"] == 1
    assert s.confusion["push"]["push"] == 0


def test_kinds_never_match_each_other():
    s = scores_of([span(0, 20, kind="trigger")], [pred(0, 20, kind="quote")])
    assert (s.strict["trigger"].fn, s.strict["quote"].fp) == (1, 1)


def test_greedy_prefers_the_larger_overlap_ratio():
    # gold A [0,20), gold B [15,35); pred [14,34) overlaps B by 19 and A by 6
    pairs = match([span(0, 20), span(15, 35)], [pred(14, 34)], "lenient")
    assert pairs == [(1, 0)]


def test_force_all_is_the_micro_average_of_the_four_types():
    gold = [span(0, 20), span(30, 50, force="pull"), span(60, 80, force="habit")]
    predicted = [pred(0, 20), pred(30, 50, force="anxiety"), pred(100, 120, force="habit")]
    s = scores_of(gold, predicted)
    total = s.strict[ALL_FORCES]
    assert (total.tp, total.fp, total.fn) == (1, 2, 2)
    assert (s.strict["force"].tp, s.strict["force"].fp, s.strict["force"].fn) == (1, 2, 2)


def test_counts_pool_across_transcripts():
    s = score_codes([([span(0, 20)], [pred(0, 20)], 0), ([span(0, 20)], [], 0)])
    assert (s.strict["push"].tp, s.strict["push"].fn) == (1, 1)
    assert s.strict["push"].recall == 0.5


# --- confusion and kappa --------------------------------------------------------


def test_confusion_pairs_by_largest_overlap_ignoring_type():
    # typed matching pairs gold with the push prediction; type-blind pairing takes the bigger overlap
    s = scores_of([span(0, 20)], [pred(0, 20, force="pull"), pred(10, 20)])
    assert s.strict["push"].tp == 1
    assert s.confusion["push"]["pull"] == 1
    assert s.confusion["spurious"]["push"] == 1


def test_confusion_missed_and_spurious():
    s = scores_of([span(0, 20, force="habit")], [pred(100, 120, force="anxiety")])
    assert s.confusion["habit"]["missed"] == 1
    assert s.confusion["spurious"]["anxiety"] == 1
    assert s.kappa is None  # no overlapping pair to agree or disagree on


def test_kappa_on_a_hand_computed_table():
    # gold \ pred   push pull anxiety habit | total
    #   push          3    1     0      0   |   4
    #   pull          0    2     0      0   |   2
    #   anxiety       0    0     1      1   |   2
    #   habit         1    0     0      1   |   2
    #   total         4    3     1      2   |  10
    # po = (3+2+1+1)/10 = 0.7
    # pe = (4*4 + 2*3 + 2*1 + 2*2)/100 = 28/100 = 0.28
    # kappa = (0.7 - 0.28) / (1 - 0.28) = 0.42 / 0.72 = 7/12
    table = [("push", "push")] * 3 + [("pull", "pull")] * 2 + [
        ("anxiety", "anxiety"), ("habit", "habit"), ("push", "pull"), ("anxiety", "habit"), ("habit", "push"),
    ]
    assert cohen_kappa(table) == pytest.approx(7 / 12)
    gold = [span(100 * i, 100 * i + 20, force=g) for i, (g, _) in enumerate(table)]
    predicted = [pred(100 * i, 100 * i + 20, force=p) for i, (_, p) in enumerate(table)]
    s = scores_of(gold, predicted)
    assert s.kappa == pytest.approx(7 / 12)
    assert s.confusion["anxiety"]["habit"] == 1 and s.confusion["push"]["push"] == 3


def test_perfect_agreement_kappa_is_one():
    assert cohen_kappa([("push", "push"), ("pull", "pull"), ("habit", "habit")]) == 1.0


def test_kappa_undefined_when_one_category_throughout():
    assert cohen_kappa([("push", "push")] * 4) is None
    assert cohen_kappa([]) is None


def test_kappa_of_systematic_disagreement_is_negative():
    # po = 0, pe = (1*1 + 1*1)/4 = 0.5 -> kappa = -1
    assert cohen_kappa([("push", "pull"), ("pull", "push")]) == pytest.approx(-1.0)


INTERVIEW = make_transcript([
    ("Interviewer", "What were you using before?"),
    ("Dana", "The old one kept dying on me every week. Their demo looked really great to me. "
             "I was worried about the price though. We had used the same one for years."),
])


def _sentence(n: int):
    return split_sentences(INTERVIEW)[n]


def _on_sentence(n: int, force: str, source: str = "gold") -> Coded:
    s = _sentence(n)
    return Coded("force", force, s.char_start, s.char_end, s.text, source=source)


def test_kappa_sentences_on_a_hand_computed_case():
    assert len(split_sentences(INTERVIEW)) == 4
    gold = [_on_sentence(0, "push"), _on_sentence(1, "pull"), _on_sentence(3, "habit")]
    predicted = [_on_sentence(0, "push", "pred"), _on_sentence(2, "push", "pred"), _on_sentence(3, "habit", "pred")]
    # sentence labels (gold, pred): (push, push) (pull, none) (none, push) (habit, habit)
    # po = 2/4; gold marginals push 1 pull 1 none 1 habit 1, pred push 2 none 1 habit 1
    # pe = (1*2 + 1*0 + 1*1 + 1*1)/16 = 0.25 -> kappa = (0.5 - 0.25) / 0.75 = 1/3
    s = scores_of(gold, predicted, transcript=INTERVIEW)
    assert s.kappa_sentences == pytest.approx(1 / 3)


def test_kappa_sentences_needs_the_transcript():
    assert score_codes([([span(0, 20)], [pred(0, 20)], 0)]).kappa_sentences is None


def test_sentence_takes_the_force_that_overlaps_it_most():
    codes = [span(15, 40, force="pull"), span(0, 10, force="push")]
    assert sentence_force(0, 20, codes) == "push"
    assert sentence_force(50, 60, codes) == "none"


# --- grounding and jobs -----------------------------------------------------------


def test_grounding_rate_counts_rejected_model_quotes():
    s = scores_of([], [pred(0, 10), pred(20, 30), pred(40, 50)], rejected=1)
    assert s.grounding_rate == 0.75


VALID_JOB = "When I get home late, I want to cook in ten minutes, so I can eat with my kids."


@pytest.mark.parametrize("statement, ok", [
    (VALID_JOB, True),
    ("When I get home late, I want to cook quickly, so I can relax", True),
    ("I want to cook quickly, so I can relax.", False),
    ("When I get home late, I want to cook quickly.", False),
    ("When , I want to cook, so I can relax.", False),
    ("", False),
    (None, False),
])
def test_job_story_form(statement, ok):
    assert is_job_story(statement) is ok


def test_job_format_validity_and_statement_similarity():
    def same_or_quarter(a: str, b: str) -> float:
        return 1.0 if a == b else 0.25

    other = "When money is tight, I want to see my spend, so I can save."
    first = (
        [span(0, 10, kind="job", statement=VALID_JOB), span(20, 30, kind="job", statement=other)],
        [pred(0, 10, kind="job", statement=VALID_JOB), pred(40, 50, kind="job", statement="cook faster")],
        0,
    )
    second = ([span(0, 10, kind="job", statement=other)], [], 0)  # no predicted job: best is 0
    s = score_codes([first, second], similarity=same_or_quarter)
    assert s.job_format_validity == 0.5
    assert s.job_similarity == pytest.approx((1.0 + 0.25 + 0.0) / 3)
    assert score_codes([first, second]).job_similarity is None


# --- converters -----------------------------------------------------------------


def _grounding(start: int, end: int) -> Grounding:
    return Grounding(transcript="t", source="t.txt", speaker="Dana", turn_index=1,
                     char_start=start, char_end=end, alignment=Alignment.exact)


PROVENANCE = Provenance(prompt_version="p1", schema_version="s1", model="m")


def test_coded_from_stored_force_and_job():
    force = Force(quote="kept dying", grounding=_grounding(5, 15), provenance=PROVENANCE, force=ForceType.anxiety)
    job = JobStory(quote="kept dying", grounding=_grounding(5, 15), provenance=PROVENANCE,
                   situation="I get home late", motivation="cook fast", outcome="eat with my kids",
                   dimension=Dimension.emotional)
    c = coded_from_code(force)
    assert (c.kind, c.force, c.start, c.end, c.source, c.ref) == ("force", "anxiety", 5, 15, "pred", force)
    j = coded_from_code(job)
    assert (j.kind, j.force, j.dimension) == ("job", None, "emotional")
    assert is_job_story(j.statement)


def test_coded_from_gold_needs_alignment():
    aligned = GoldCode(kind="force", force="habit", quote="the same one", char_start=3, char_end=15, turn_index=1)
    c = coded_from_gold(aligned)
    assert (c.kind, c.force, c.start, c.end, c.source) == ("force", "habit", 3, 15, "gold")
    with pytest.raises(ValueError):
        coded_from_gold(GoldCode(kind="quote", quote="never aligned"))


# --- report, baseline, regressions ---------------------------------------------------


def test_match_report_lists_hits_misses_and_false_positives():
    gold = [span(0, 20), span(50, 70, kind="trigger")]
    predicted = [pred(2, 20), pred(100, 120, kind="quote")]
    report = match_report(gold, predicted)
    assert report.hits == [(gold[0], predicted[0])]
    assert report.misses == [gold[1]]
    assert report.false_positives == [predicted[1]]


def test_all_push_baseline_codes_every_interviewee_sentence_and_nothing_else():
    t = make_transcript([
        ("Interviewer", "So tell me about the old vacuum and the new one."),
        ("Dana", "It kept dying on me every week. The robot one looked amazing."),
        ("Interviewer", "Anything else you remember about it?"),
        ("Dana", "Honestly I was worried about the price."),
    ])
    baseline = all_push_baseline(t)
    assert [c.text for c in baseline] == [
        "It kept dying on me every week.", "The robot one looked amazing.", "Honestly I was worried about the price.",
    ]
    assert all(c.kind == "force" and c.force == "push" and c.source == "pred" for c in baseline)
    assert all(t.text[c.start:c.end] == c.text for c in baseline)
    assert all(t.turn_at(c.start).role is Role.interviewee for c in baseline)

    push_sentence, pull_sentence = baseline[0], baseline[1]
    gold = [span(push_sentence.start, push_sentence.end), span(pull_sentence.start, pull_sentence.end, force="pull")]
    s = scores_of(gold, baseline, transcript=t)
    assert (s.strict["push"].tp, s.strict["push"].fp, s.strict["pull"].fn) == (1, 2, 1)
    assert s.strict[ALL_FORCES].f1 == pytest.approx(2 / (2 + 2 + 1))
    assert [c.kind for c in all_sentences_baseline(t, "quote")] == ["quote"] * 3


BASELINE = {
    "force_f1_strict": 0.41, "force_f1_lenient": 0.60, "kappa": 0.62, "kappa_sentences": 0.5,
    "grounding_rate": 1.0, "recall_job": 0.40, "recall_trigger": 0.5, "recall_force": 0.45, "recall_quote": None,
}


def test_compare_to_baseline_lists_drops_beyond_tolerance():
    current = BASELINE | {
        "force_f1_strict": 0.35,    # -0.06: beyond 0.03
        "kappa": 0.60,              # -0.02: within 0.03
        "grounding_rate": 0.985,    # -0.015: beyond 0.01
        "recall_job": 0.37,         # -0.03 exactly (float noise aside): within
        "force_f1_lenient": 0.70,   # an improvement
        "recall_quote": 0.1,        # no baseline value: nothing to compare
        "kappa_sentences": None,    # vanished
    }
    assert compare_to_baseline(current, BASELINE, {}) == [
        "force_f1_strict: 0.41 -> 0.35 (-0.06, tolerance 0.03)",
        "kappa_sentences: 0.50 -> None (missing, tolerance 0.03)",
        "grounding_rate: 1.00 -> 0.985 (-0.015, tolerance 0.01)",
    ]


def test_compare_to_baseline_honours_a_tighter_tolerance():
    current = BASELINE | {"kappa": 0.60}
    assert compare_to_baseline(current, BASELINE) == []
    assert compare_to_baseline(current, BASELINE, {"kappa": 0.01}) == ["kappa: 0.62 -> 0.60 (-0.02, tolerance 0.01)"]


def test_scores_to_dict_is_json_and_carries_the_headline():
    gold = [span(0, 20), span(30, 50, kind="trigger")]
    s = scores_of(gold, [pred(0, 20)], rejected=1)
    d = json.loads(json.dumps(scores_to_dict(s)))
    assert d["force_f1_strict"] == 1.0 and d["recall_trigger"] == 0.0 and d["recall_job"] is None
    assert d["grounding_rate"] == 0.5
    assert d["strict"]["force (all)"] == d["strict"]["force"]
    assert d["confusion"]["push"]["push"] == 1
    assert compare_to_baseline(d, d) == []


# --- 95% bootstrap intervals ------------------------------------------------------


def _with_counts(tp: int, fp: int, fn: int, pairs: dict[tuple[str, str], int] | None = None):
    """Scores whose pooled force counts and overlapping type pairs are exactly these."""
    s = scores_of([], [])
    s.strict[ALL_FORCES] = PRF(tp, fp, fn)
    s.lenient[ALL_FORCES] = PRF(tp, fp, fn)
    for (g, p), n in (pairs or {}).items():
        s.confusion[g][p] = n
    return s


def test_intervals_of_nothing_scored_are_none():
    assert intervals(scores_of([], [])) == {"force_f1_strict": None, "force_f1_lenient": None, "kappa": None}
    d = json.loads(json.dumps(scores_to_dict(scores_of([], []))))
    assert d["ci95"] == {"force_f1_strict": None, "force_f1_lenient": None, "kappa": None}


def test_interval_of_a_perfect_run_is_a_point():
    ci = intervals(_with_counts(10, 0, 0, {("push", "push"): 5, ("pull", "pull"): 5}))
    assert ci["force_f1_strict"] == (1.0, 1.0)
    assert ci["kappa"] == (1.0, 1.0)  # resamples with one label throughout have no kappa and are left out


def test_interval_of_one_hit_one_miss_by_hand():
    # Two items, tp and fn: a resample is (2 tp) F1 1, (tp, fn) F1 2/3 or (2 fn) F1 0, with
    # probabilities 1/4, 1/2, 1/4: the 2.5th percentile is 0, the 97.5th is 1.
    assert intervals(_with_counts(1, 0, 1))["force_f1_strict"] == (0.0, 1.0)


def test_interval_holds_the_score_narrows_with_more_codes_and_is_reproducible():
    small = _with_counts(16, 89, 59, {("push", "push"): 4, ("push", "anxiety"): 4, ("pull", "pull"): 7,
                                      ("anxiety", "anxiety"): 8, ("habit", "habit"): 2, ("habit", "pull"): 2})
    large = _with_counts(160, 890, 590, {pair: 10 * n for pair, n in {("push", "push"): 4, ("push", "anxiety"): 4,
                                                                    ("pull", "pull"): 7, ("anxiety", "anxiety"): 8,
                                                                    ("habit", "habit"): 2, ("habit", "pull"): 2}.items()})
    f1 = small.strict[ALL_FORCES].f1
    (lo, hi), (big_lo, big_hi) = intervals(small)["force_f1_strict"], intervals(large)["force_f1_strict"]
    assert lo < f1 < hi and big_lo < f1 < big_hi
    assert big_hi - big_lo < (hi - lo) / 2  # ten times the codes: about a third of the width
    k_lo, k_hi = intervals(small)["kappa"]
    assert 0.0 < k_lo < k_hi < 1.0
    assert intervals(small) == intervals(small)  # a fixed seed: the same codes, the same interval


def test_one_metrics_interval_does_not_move_when_another_metrics_counts_do():
    pairs = {("push", "push"): 6, ("push", "anxiety"): 3, ("pull", "pull"): 5, ("anxiety", "pull"): 2}
    a, b = _with_counts(16, 89, 59, pairs), _with_counts(17, 80, 58, pairs)
    assert intervals(a)["kappa"] == intervals(b)["kappa"]
    assert intervals(a)["force_f1_strict"] != intervals(b)["force_f1_strict"]


# --- properties ---------------------------------------------------------------------

_spans = st.lists(
    st.tuples(
        st.integers(0, 60), st.integers(1, 30), st.sampled_from(["push", "pull"]), st.sampled_from(["force", "quote"]),
    ),
    max_size=6,
)


@given(_spans, _spans)
def test_matching_is_one_to_one_and_strict_never_beats_lenient(gold_raw, pred_raw):
    gold = [span(a, a + n, kind, force) for a, n, force, kind in gold_raw]
    predicted = [pred(a, a + n, kind, force) for a, n, force, kind in pred_raw]
    strict, lenient = match(gold, predicted, "strict"), match(gold, predicted, "lenient")
    for pairs in (strict, lenient):
        assert len({g for g, _ in pairs}) == len({p for _, p in pairs}) == len(pairs)
    assert len(strict) <= len(lenient)
    s = scores_of(gold, predicted)
    for table in (s.strict, s.lenient):
        assert sum(table[k].tp + table[k].fn for k in ("force", "quote")) == len(gold)
        assert sum(table[k].tp + table[k].fp for k in ("force", "quote")) == len(predicted)
