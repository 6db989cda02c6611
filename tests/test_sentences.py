"""Sentence splitting: run-on speech without punctuation is cut into pieces a code can point at."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from jtbd.coding.parse import parse_transcript
from jtbd.coding.sentences import split_sentences

# Speech-to-text output: filler, clause words and content words, never a full stop.
SPOKEN = ("um", "like", "you", "know", "and", "so", "but", "because", "then", "the", "bank", "app",
          "kept", "logging", "me", "out", "every", "week", "I", "was", "done")
FAST = settings(max_examples=60, deadline=None)


def parse(text: str):
    return parse_transcript(text, "run_on.txt", "txt")


UNPUNCTUATED = ("we had the old machine for years and it kept breaking every winter so honestly I was "
                "fed up with it but the price of a new one scared me because my partner thought we "
                "should wait and then the grinder went too so one morning before the train I just "
                "ordered the one my sister has and it has been fine since then really fine")


def test_unpunctuated_run_on_speech_is_cut_before_a_clause_word():
    """Speech-to-text without punctuation: one 70-word "sentence" is cut into pieces of at most
    60 words, before a clause word near its middle, so a code can point at part of it."""
    transcript = parse(f"Interviewer: What happened?\nDana: {UNPUNCTUATED}\n")
    sentences = split_sentences(transcript)
    assert len(UNPUNCTUATED.split()) > 60 and len(sentences) == 2
    assert all(len(s.text.split()) <= 60 for s in sentences)
    assert " ".join(s.text for s in sentences) == UNPUNCTUATED  # nothing lost, nothing added
    assert sentences[1].text.split()[0] in {"and", "but", "so", "because", "then"}
    assert all(transcript.text[s.char_start:s.char_end] == s.text for s in sentences)


@FAST
@given(st.lists(st.sampled_from(SPOKEN), min_size=61, max_size=400))
def test_a_turn_without_punctuation_splits_into_pieces_of_at_most_60_words(words):
    transcript = parse("Interviewer: And?\nDana: " + " ".join(words) + "\n")
    sentences = split_sentences(transcript)
    assert all(1 <= len(s.text.split()) <= 60 for s in sentences)
    assert " ".join(s.text for s in sentences).split() == words
    assert all(transcript.text[s.char_start:s.char_end] == s.text for s in sentences)
