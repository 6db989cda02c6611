"""Merging codes from overlapping chunks: one code per passage and label, deterministically."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from jtbd.coding.merge import SAME_SPAN_RATIO, merge_codes, same_code
from jtbd.schemas.codebook import (
    Alignment, Dimension, Force, ForceType, Grounding, JobStory, Provenance, Quote, Trigger,
)

FAST = settings(max_examples=60, deadline=None)
PROV = Provenance(prompt_version="p", schema_version="s", model="m")
LABELS = ("force.push", "force.pull", "force.anxiety", "force.habit", "trigger", "quote", "job.functional")


def code(label: str, start: int, end: int, score: float = 100.0, transcript: str = "t", note: str | None = None):
    alignment = Alignment.exact if score == 100.0 else Alignment.fuzzy
    g = Grounding(transcript=transcript, source=f"{transcript}.txt", speaker="Dana", turn_index=1,
                  char_start=start, char_end=end, alignment=alignment, alignment_score=score)
    common = dict(quote="x" * (end - start), grounding=g, provenance=PROV, note=note)
    kind, _, sub = label.partition(".")
    if kind == "force":
        return Force(force=ForceType(sub), **common)
    if kind == "job":
        return JobStory(situation="s", motivation="m", outcome="o", dimension=Dimension(sub), **common)
    return {"trigger": Trigger, "quote": Quote}[kind](**common)


def key(c) -> tuple:
    g = c.grounding
    return (g.transcript, c.label, g.char_start, g.char_end, g.alignment_score)


def keys(codes) -> list[tuple]:
    return [key(c) for c in codes]


def test_duplicate_from_overlapping_chunks_is_merged():
    first = code("force.push", 100, 160)  # the same sentence, coded in chunk 0 and again in chunk 1
    again = code("force.push", 100, 160)
    assert keys(merge_codes([first, again])) == [key(first)]


def test_overlap_of_half_the_shorter_span_is_the_same_code():
    long, short = code("force.push", 100, 200), code("force.push", 150, 250)  # 50 of 100 shared
    assert same_code(long, short)
    assert len(merge_codes([long, short])) == 1
    barely = code("force.push", 151, 251)  # 49 shared: under SAME_SPAN_RATIO
    assert SAME_SPAN_RATIO == 0.5 and not same_code(long, barely)
    assert len(merge_codes([long, barely])) == 2


def test_contained_span_is_the_same_code_and_the_longer_is_kept_at_equal_score():
    outer, inner = code("trigger", 10, 90), code("trigger", 40, 60)
    assert keys(merge_codes([inner, outer])) == [key(outer)]


def test_better_aligned_code_wins_over_longer():
    fuzzy_long = code("force.anxiety", 10, 90, score=92.0)
    exact_short = code("force.anxiety", 20, 80)
    assert keys(merge_codes([fuzzy_long, exact_short])) == [key(exact_short)]


def test_earlier_code_wins_a_full_tie():
    a, b = code("quote", 10, 50), code("quote", 20, 60)
    assert keys(merge_codes([b, a])) == [key(a)]


def test_different_labels_on_the_same_words_are_all_kept():
    codes = [code(label, 100, 160) for label in LABELS]
    merged = merge_codes(codes)
    assert sorted(c.label for c in merged) == sorted(LABELS)
    assert keys(merged) == sorted(keys(merged), key=lambda k: (k[2], k[1]))


def test_non_overlapping_and_touching_spans_are_kept():
    codes = [code("force.pull", 0, 10), code("force.pull", 10, 20), code("force.pull", 50, 60)]
    assert keys(merge_codes(codes)) == keys(codes)


def test_same_span_in_different_transcripts_is_kept():
    codes = [code("force.push", 5, 25, transcript="a"), code("force.push", 5, 25, transcript="b")]
    assert len(merge_codes(codes)) == 2


def test_output_is_ordered_by_offset_then_label():
    codes = [code("trigger", 300, 320), code("force.push", 40, 90), code("force.habit", 40, 90), code("quote", 0, 30)]
    merged = merge_codes(codes)
    assert [(c.grounding.char_start, c.label) for c in merged] == [
        (0, "quote"), (40, "force.habit"), (40, "force.push"), (300, "trigger")]


def test_empty_input():
    assert merge_codes([]) == []
    assert merge_codes(iter([])) == []


code_st = st.builds(
    code,
    st.sampled_from(LABELS[:3]),
    st.integers(0, 300),
    st.integers(0, 300),
    st.sampled_from([100.0, 100.0, 95.5, 91.0]),
    st.sampled_from(["t", "t", "u"]),
).filter(lambda c: c.grounding.char_end > c.grounding.char_start)


@FAST
@given(codes=st.lists(code_st, max_size=25), seed=st.integers(0, 2**16))
def test_merge_properties(codes, seed):
    merged = merge_codes(codes)
    # a subset of the input, no two alike, every input code represented
    assert all(any(m is c for c in codes) for m in merged)
    assert not any(same_code(a, b) for i, a in enumerate(merged) for b in merged[i + 1:])
    assert all(any(m is c or same_code(m, c) for m in merged) for c in codes)
    # sorted, and independent of input order
    assert keys(merged) == sorted(keys(merged), key=lambda k: (k[2], k[1]))
    shuffled = list(codes)
    random.Random(seed).shuffle(shuffled)
    again = keys(merge_codes(shuffled))
    assert sorted(again) == sorted(keys(merged))  # the same codes are kept
    for transcript in ("t", "u"):  # in the same order (the flow merges one transcript at a time)
        assert [k for k in again if k[0] == transcript] == [k for k in keys(merged) if k[0] == transcript]
    assert keys(merge_codes(merged)) == keys(merged)  # idempotent
    # a chunk's duplicate of every code changes nothing
    assert keys(merge_codes(codes + [c.model_copy(update={"note": "from chunk 2"}) for c in codes])) == keys(merged)
