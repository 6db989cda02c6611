"""Chunking: offsets that slice back to each chunk, full in-order coverage, bounded overlap."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jtbd.coding.chunk import CHARS_PER_TOKEN, chunk_transcript, chunk_windows, estimate_tokens
from jtbd.coding.extract import build_excerpt, rating_windows
from jtbd.coding.parse import load_transcript, parse_transcript
from jtbd.coding.sentences import split_sentences
from jtbd.prompts import load_strategy
from jtbd.schemas.transcript import Transcript

SPEAKERS = ("Interviewer", "Dana", "Tom")
VOCAB = ("we", "had", "the", "old", "machine", "for", "years", "and", "it", "kept", "breaking",
         "every", "winter", "so", "honestly", "price", "coffee", "morning", "train", "grinder")
ENDS = (". ", "? ", "! ", ", ")

FAST = settings(max_examples=60, deadline=None)


def parse(text: str, name: str = "chunky.txt") -> Transcript:
    return parse_transcript(text, name, "txt")


# A turn is a list of sentences; a sentence a list of vocabulary indices plus an ending.
sentence_st = st.tuples(st.lists(st.integers(0, len(VOCAB) - 1), min_size=1, max_size=14),
                        st.sampled_from(ENDS))
turn_st = st.tuples(st.sampled_from(SPEAKERS), st.lists(sentence_st, min_size=1, max_size=8))
turns_st = st.lists(turn_st, min_size=1, max_size=14).filter(
    lambda turns: any(speaker != "Interviewer" for speaker, _ in turns))


def render(turns, unique_words: bool) -> str:
    """'Speaker: sentences' lines. With unique_words every word carries a serial number,
    so every piece of the text occurs once (a chunk's position is unambiguous)."""
    serial = itertools.count()
    lines = []
    for speaker, sentences in turns:
        said = []
        for words, end in sentences:
            tokens = [VOCAB[w] + (str(next(serial)) if unique_words else "") for w in words]
            said.append(" ".join(tokens) + end)
        lines.append(f"{speaker}: {''.join(said).strip()}")
    return "\n".join(lines) + "\n"


def sizes():
    return st.integers(8, 160).flatmap(lambda size: st.tuples(st.just(size), st.integers(0, size - 1)))


def assert_basic(transcript: Transcript, chunks, chunk_tokens: int) -> None:
    assert chunks, "a non-empty transcript gives at least one chunk"
    for i, chunk in enumerate(chunks):
        assert chunk.index == i
        assert chunk.transcript_id == transcript.id
        assert chunk.key == f"{transcript.id}#{i}"
        assert chunk.text
        assert transcript.text[chunk.char_start:chunk.char_end] == chunk.text
        assert estimate_tokens(chunk.text) <= chunk_tokens
    for prev, cur in zip(chunks, chunks[1:]):
        assert cur.char_start > prev.char_start


def assert_covers_in_order(transcript: Transcript, chunks, overlap_tokens: int) -> None:
    assert chunks[0].char_start == 0
    assert chunks[-1].char_end == len(transcript.text)
    for prev, cur in zip(chunks, chunks[1:]):
        assert cur.char_start <= prev.char_end, "a gap between consecutive chunks"
        assert cur.char_end > prev.char_end, "a chunk that adds nothing"
        shared = transcript.text[cur.char_start:prev.char_end]
        if overlap_tokens == 0:
            assert shared == ""
        elif shared:
            assert estimate_tokens(shared) <= overlap_tokens
            assert len(shared) < overlap_tokens * CHARS_PER_TOKEN


@FAST
@given(turns=turns_st, size=sizes())
def test_chunks_slice_cover_and_overlap_within_bounds(turns, size):
    chunk_tokens, overlap_tokens = size
    transcript = parse(render(turns, unique_words=True))
    chunks = chunk_transcript(transcript, chunk_tokens, overlap_tokens)
    assert_basic(transcript, chunks, chunk_tokens)
    assert_covers_in_order(transcript, chunks, overlap_tokens)


@FAST
@given(turns=turns_st, size=sizes())
# Found by hypothesis: the second piece was located at a later occurrence of its words, where the
# third piece starts too, so two chunks started at the same offset.
@example(turns=[("Interviewer", [([14, 14, 14, 0, 0], ". ")]), ("Dana", [([0], ". ")])], size=(9, 3))
def test_repetitive_vocabulary_still_slices_back(turns, size):
    """With a tiny vocabulary the same words recur; each chunk's offsets still slice to its text."""
    chunk_tokens, overlap_tokens = size
    transcript = parse(render(turns, unique_words=False))
    assert_basic(transcript, chunk_transcript(transcript, chunk_tokens, overlap_tokens), chunk_tokens)


@FAST
@given(turns=turns_st, extra=st.integers(1, 60), overlap_share=st.floats(0, 0.9))
def test_short_turns_are_never_split(turns, extra, overlap_share):
    transcript = parse(render(turns, unique_words=True))
    longest = max(estimate_tokens(line + "\n") for line in transcript.text.splitlines())
    chunk_tokens = longest + extra  # every turn's line fits in a chunk
    overlap_tokens = int(chunk_tokens * overlap_share)
    chunks = chunk_transcript(transcript, chunk_tokens, overlap_tokens)
    assert_covers_in_order(transcript, chunks, overlap_tokens)
    line_starts = {0} | {i + 1 for i, ch in enumerate(transcript.text) if ch == "\n"}
    for chunk in chunks:
        assert chunk.char_start in line_starts, "a chunk starts mid-turn"
        assert chunk.char_end in line_starts, "a chunk ends mid-turn"
        assert chunk.text.endswith("\n")


def test_whole_transcript_in_one_chunk_when_it_fits(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("Interviewer: What happened?\nDana: The grinder broke. So I looked around.\n")
    transcript = load_transcript(path)
    [chunk] = chunk_transcript(transcript, 900, 120)
    assert (chunk.char_start, chunk.char_end, chunk.text) == (0, len(transcript.text), transcript.text)
    assert chunk.key == "tiny#0"


def test_long_turn_is_split_at_sentence_ends(tmp_path):
    sentences = [f"Sentence number {n} is about the grinder{n} breaking again." for n in range(30)]
    path = tmp_path / "long.txt"
    path.write_text("Interviewer: Tell me everything.\nDana: " + " ".join(sentences) + "\n")
    transcript = load_transcript(path)
    chunks = chunk_transcript(transcript, 40, 10)
    assert len(chunks) > 3
    assert_basic(transcript, chunks, 40)
    assert_covers_in_order(transcript, chunks, 10)
    for chunk in chunks[:-1]:  # cut after ". " (the separator is kept at the end), never mid-sentence
        assert chunk.text.endswith((". ", "\n")), chunk.text[-20:]


@pytest.mark.parametrize(("chunk_tokens", "overlap_tokens"), [(100, 100), (100, 150)])
def test_overlap_must_be_smaller_than_chunk(chunk_tokens, overlap_tokens):
    transcript = parse("Interviewer: Why?\nDana: Because it broke.\n")
    with pytest.raises(ValueError, match="overlap"):
        chunk_transcript(transcript, chunk_tokens, overlap_tokens)


def test_chunking_is_deterministic():
    transcript = parse(render([("Interviewer", [([1, 2, 3], "? ")]), ("Dana", [([4, 5, 6, 7] * 9, ". ")] * 6)],
                              unique_words=False))
    assert chunk_transcript(transcript, 30, 8) == chunk_transcript(transcript, 30, 8)


REPEATING = "Interviewer: How was it?\nDana: It was fine.\n" * 12


def test_repeated_turns_are_still_covered_to_the_end():
    transcript = parse(REPEATING)
    chunks = chunk_transcript(transcript, 30, 6)
    assert_covers_in_order(transcript, chunks, 6)


def test_every_interviewee_sentence_is_shown_in_some_chunk():
    transcript = parse(REPEATING)
    shown = {s.char_start for chunk in chunk_transcript(transcript, 30, 6)
             for s in build_excerpt(transcript, chunk).numbered.values()}
    coded = {s.char_start for s in split_sentences(transcript) if transcript.turns[s.turn_index].is_coded}
    assert shown == coded


@FAST
@given(turns=turns_st, size=sizes(), window=sizes())
def test_windows_slice_cover_and_overlap_within_their_chunk(turns, size, window):
    transcript = parse(render(turns, unique_words=True))
    window_tokens, window_overlap = window
    for chunk in chunk_transcript(transcript, *size):
        windows = chunk_windows(chunk, window_tokens, window_overlap)
        assert windows and windows[0].char_start == chunk.char_start and windows[-1].char_end == chunk.char_end
        for w in windows:
            assert (w.transcript_id, w.index) == (chunk.transcript_id, chunk.index)
            assert transcript.text[w.char_start:w.char_end] == w.text
            assert estimate_tokens(w.text) <= window_tokens
        for prev, cur in zip(windows, windows[1:]):
            assert prev.char_start < cur.char_start <= prev.char_end < cur.char_end
            assert estimate_tokens(transcript.text[cur.char_start:prev.char_end]) <= max(window_overlap, 1)


@FAST
@given(turns=turns_st, size=sizes(), window=sizes())
def test_a_rating_pass_rates_each_sentence_of_a_chunk_once(turns, size, window):
    """With windows or without, the sentences rated are the chunk's numbered sentences, each once,
    each named by its number in the excerpt it is asked in."""
    transcript = parse(render(turns, unique_words=True))
    rate = load_strategy("rate").passes[0]
    for chunk in chunk_transcript(transcript, *size):
        expected = [(s.char_start, s.char_end) for s in build_excerpt(transcript, chunk).numbered.values()]
        for prompt in (replace(rate, window=None), replace(rate, window=window)):
            excerpts = rating_windows(transcript, chunk, prompt)
            asked = [(e.numbered[n].char_start, e.numbered[n].char_end) for e, numbers in excerpts for n in numbers]
            assert asked == expected
            if prompt.window is None:
                assert len(excerpts) <= 1

