"""Grounding against a planted-span oracle: known words at known offsets, quoted back in many ways."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jtbd.coding.extract import grounding_for
from jtbd.coding.ground import MIN_QUOTE_CHARS, Span, clean_quote, ground_quote
from jtbd.coding.parse import parse_transcript
from jtbd.schemas.codebook import Alignment
from jtbd.schemas.transcript import Role, Transcript

FAST = settings(max_examples=60, deadline=None)

# Filler speech (A) and planted words (B) share no word, so a planted span occurs exactly once.
# Neither uses q, x, z or j: the unrelated quotes are built from those letters only.
FILLER = ("we", "had", "the", "old", "one", "for", "years", "and", "it", "was", "fine", "until",
          "then", "kept", "breaking", "every", "week", "so", "started", "looking", "around", "store")
PLANTED = ("coffee", "grinder", "morning", "don't", "couldn't", "espresso", "kitchen", "brother",
           "bought", "cheap", "burnt", "smell", "honestly", "i'm", "missed", "frustrating", "wanted",
           "better", "pressure", "neighbour", "rattling", "paycheck", "weekend", "broken")
UNRELATED = ("zqx", "jazz", "quiz", "xjq", "zzz", "qajx", "jinx")
PUNCT = (",", ".", ";", "!", "?")


@dataclass(frozen=True)
class Planted:
    transcript: Transcript
    start: int
    end: int
    turn_index: int

    @property
    def text(self) -> str:
        return self.transcript.text[self.start:self.end]


def plant(before: list[str], words: list[str], after: list[str], *, speaker: str = "Dana",
          filler_turns: int = 2, other: bool = False) -> Planted:
    """A transcript of alternating turns; `words` planted between `before` and `after` in one of `speaker`'s turns."""
    span = " ".join(words)
    prefix = " ".join(before) + " " if before else ""
    planted_line = prefix + span + (" " + " ".join(after) if after else "") + "."
    lines = []
    for n in range(filler_turns):
        lines.append(f"Interviewer: so {FILLER[n % len(FILLER)]} what then?")
        lines.append(f"Dana: {' '.join(FILLER[n:n + 6])} and it was fine.")
    if speaker == "Dana":
        lines.append("Interviewer: and then?")
    lines.append(f"{speaker}: {planted_line}")  # a turn of its own: the lines around it are someone else's
    if speaker != "Interviewer":
        lines.append("Interviewer: and then what happened?")
    lines.append("Dana: it kept breaking every week so we started looking around.")
    roles = {"interviewees": ("Dana",)} if other else {}  # then any other speaker is a third party
    t = parse_transcript("\n".join(lines) + "\n", "planted.txt", "txt", **roles)
    turn = next(turn for turn in t.turns if turn.text == planted_line)
    start = turn.char_start + len(prefix)
    return Planted(t, start, start + len(span), turn.index)


def assert_sound(span: Span, t: Transcript) -> str:
    """Whatever was aligned: inside one interviewee turn, and the stored quote is the transcript's text."""
    turn = t.turns[span.turn_index]
    assert turn.role is Role.interviewee
    assert turn.char_start <= span.char_start < span.char_end <= turn.char_end
    quote = t.text[span.char_start:span.char_end]
    grounding = grounding_for(span, t, model_quote="whatever the model said")
    assert (grounding.char_start, grounding.char_end, grounding.turn_index) == (span.char_start, span.char_end, turn.index)
    assert grounding.speaker == turn.speaker and grounding.alignment is span.alignment
    return quote


filler_st = st.lists(st.sampled_from(FILLER), max_size=8)
words_st = st.lists(st.sampled_from(PLANTED), min_size=2, max_size=8, unique=True)
planted_st = st.builds(plant, filler_st, words_st, filler_st)


# --- (a) exact ----------------------------------------------------------------


@FAST
@given(p=planted_st)
def test_exact_span_gives_planted_offsets(p):
    span = ground_quote(p.text, p.transcript)
    assert span is not None
    assert (span.char_start, span.char_end, span.turn_index) == (p.start, p.end, p.turn_index)
    assert span.alignment is Alignment.exact and span.score == 100.0
    assert assert_sound(span, p.transcript) == p.text
    assert grounding_for(span, p.transcript, model_quote=p.text).model_quote is None  # same words: nothing kept


@FAST
@given(p=planted_st, wrap=st.sampled_from(['"{}"', "“{}”", "'{}'", "...{}...", "…{}", "Dana: {}",
                                           "[00:01:02] Dana: {}", "  “...{}”  ", "«{}»"]))
def test_wrapping_is_cleaned_and_still_exact(p, wrap):
    quote = wrap.format(p.text)
    assert clean_quote(quote, {"Dana"}) == p.text
    span = ground_quote(quote, p.transcript)
    assert span is not None and span.alignment is Alignment.exact
    assert (span.char_start, span.char_end) == (p.start, p.end)
    assert assert_sound(span, p.transcript) == p.text
    assert grounding_for(span, p.transcript, model_quote=quote).model_quote == quote


# --- (b) normalized -----------------------------------------------------------


def perturb(words: list[str], how: str, data) -> str:
    if how == "case":
        return " ".join(words).upper()
    if how == "title":
        return " ".join(words).title()
    if how == "whitespace":
        gaps = data.draw(st.lists(st.sampled_from(["  ", "\n", " \n ", "\t", "   "]),
                                  min_size=len(words) - 1, max_size=len(words) - 1))
        return words[0] + "".join(g + w for g, w in zip(gaps, words[1:]))
    if how == "curly":
        assume(any("'" in w for w in words))
        return " ".join(words).replace("'", "’")
    if how == "punctuation":
        marks = data.draw(st.lists(st.sampled_from(PUNCT), min_size=len(words) - 1, max_size=len(words) - 1))
        return words[0] + "".join(m + " " + w for m, w in zip(marks, words[1:]))
    raise AssertionError(how)


@FAST
@given(before=filler_st, words=words_st, after=filler_st, data=st.data(),
       how=st.sampled_from(["case", "title", "whitespace", "curly", "punctuation"]))
def test_perturbed_quote_is_normalized_to_planted_offsets(before, words, after, data, how):
    p = plant(before, words, after)
    quote = perturb(words, how, data)
    assume(quote != p.text)
    span = ground_quote(quote, p.transcript)
    assert span is not None
    assert span.alignment is Alignment.normalized
    # The planted span starts and ends with a letter, so the normalized alignment is exactly it.
    assert (span.char_start, span.char_end, span.turn_index) == (p.start, p.end, p.turn_index)
    assert assert_sound(span, p.transcript) == p.text


def test_normalized_alignment_in_a_punctuated_turn():
    p = plant([], ["honestly,", "i'm", "done"], [])
    span = ground_quote("Honestly I’m done", p.transcript)
    assert span.alignment is Alignment.normalized
    assert p.transcript.text[span.char_start:span.char_end] == "honestly, i'm done"


# --- (c) fuzzy ----------------------------------------------------------------


@st.composite
def long_planted(draw):
    order = draw(st.permutations(PLANTED))
    words, length = [], -1
    for word in order:
        words.append(word)
        length += len(word) + 1
        if length >= 60:
            break
    return plant(draw(filler_st), words, draw(filler_st))


@FAST
@given(p=long_planted(), data=st.data())
def test_small_typos_are_fuzzy_and_overlap_the_planted_span(p, data):
    letters = [i for i, ch in enumerate(p.text) if ch.isalpha()]
    where = data.draw(st.lists(st.sampled_from(letters), min_size=1, max_size=2, unique=True))
    quote = list(p.text)
    for i in where:
        quote[i] = data.draw(st.sampled_from([c for c in "abcdefghiklmnoprstuvwy" if c != p.text[i]]))
    quote = "".join(quote)
    span = ground_quote(quote, p.transcript)
    assert span is not None
    assert span.alignment is Alignment.fuzzy
    assert 90.0 <= span.score < 100.0
    assert span.turn_index == p.turn_index
    shared = max(0, min(span.char_end, p.end) - max(span.char_start, p.start))
    assert shared >= 0.8 * (p.end - p.start)
    assert shared >= 0.8 * (span.char_end - span.char_start)
    grounded = assert_sound(span, p.transcript)
    assert grounding_for(span, p.transcript, model_quote=quote).model_quote == quote
    assert grounded.strip()


def test_fuzzy_span_is_widened_to_whole_words():
    p = plant(["we", "had"], ["frustrating", "pressure", "every", "morning", "kitchen", "rattling"], ["so"])
    span = ground_quote("ustrating pressure evry morning kitchen rattl", p.transcript)
    assert span is not None and span.alignment is Alignment.fuzzy
    quote = p.transcript.text[span.char_start:span.char_end]
    assert quote.startswith("frustrating") and quote.endswith("rattling")


# --- (d) rejected -------------------------------------------------------------


@FAST
@given(p=planted_st, junk=st.lists(st.sampled_from(UNRELATED), min_size=3, max_size=8))
def test_unrelated_text_is_rejected(p, junk):
    assert ground_quote(" ".join(junk), p.transcript) is None


@FAST
@given(p=planted_st, cut=st.integers(1, MIN_QUOTE_CHARS - 1), data=st.data())
def test_too_short_quotes_are_rejected_even_when_present(p, cut, data):
    at = data.draw(st.integers(0, len(p.text) - cut))
    quote = p.text[at:at + cut]
    assert quote in p.transcript.text
    assert ground_quote(quote, p.transcript) is None
    assert ground_quote(f'"  {quote} "', p.transcript) is None  # wrappers don't count


@pytest.mark.parametrize("quote", ["", "   ", '""', "“…”", "Dana: ok"])
def test_empty_or_label_only_quotes_are_rejected(quote):
    p = plant(["we"], ["coffee", "grinder", "broken"], [])
    assert ground_quote(quote, p.transcript) is None


def test_quote_longer_than_any_turn_is_rejected():
    p = plant([], ["coffee", "grinder"], [])
    too_long = p.text + " " + " ".join(PLANTED * 3)
    assert ground_quote(too_long, p.transcript) is None


# --- (e) only interviewee turns -----------------------------------------------


@FAST
@given(before=filler_st, words=words_st, after=filler_st)
def test_quote_only_in_an_interviewer_turn_is_rejected(before, words, after):
    p = plant(before, words, after, speaker="Interviewer")
    assert p.transcript.turns[p.turn_index].role is Role.interviewer
    assert p.text in p.transcript.text
    assert ground_quote(p.text, p.transcript) is None
    assert ground_quote(p.text.upper(), p.transcript) is None
    # Even when the caller offers every turn, interviewer turns are skipped.
    assert ground_quote(p.text, p.transcript, turns=p.transcript.turns) is None


def test_quote_of_a_third_party_is_rejected():
    p = plant([], ["neighbour", "bought", "cheap", "espresso"], [], speaker="Sam", other=True)
    assert p.transcript.turns[p.turn_index].role is Role.other
    assert ground_quote(p.text, p.transcript) is None


def test_turns_restrict_the_search():
    p = plant(["we"], ["coffee", "grinder", "broken"], ["so"])
    t = p.transcript
    others = [turn for turn in t.turns if turn.index != p.turn_index]
    assert ground_quote(p.text, t, turns=others) is None
    assert ground_quote(p.text, t, turns=[]) is None
    span = ground_quote(p.text, t, turns=[t.turns[p.turn_index]])
    assert (span.char_start, span.char_end) == (p.start, p.end)


def test_first_interviewee_occurrence_wins_and_later_turn_is_reachable():
    text = ("Interviewer: the grinder broke again?\n"
            "Dana: the grinder broke again, twice.\n"
            "Interviewer: and?\n"
            "Dana: so the grinder broke again.\n")
    t = parse_transcript(text, "twice.txt", "txt")
    span = ground_quote("the grinder broke again", t)
    assert span.turn_index == 1 and t.text[span.char_start:span.char_end] == "the grinder broke again"
    span = ground_quote("the grinder broke again", t, turns=[t.turns[3]])
    assert span.turn_index == 3 and t.text[span.char_start:span.char_end] == "the grinder broke again"


# --- clean_quote --------------------------------------------------------------


@pytest.mark.parametrize(("raw", "clean"), [
    ('"It was a mess."', "It was a mess."),
    ("  “It was a mess.”  ", "It was a mess."),
    ("Dana: it was a mess", "it was a mess"),
    ("[00:01:02] Dana: it was a mess", "it was a mess"),
    ("Speaker 2: it was a mess", "it was a mess"),
    ("...it was a mess...", "it was a mess"),
    ("…it was a mess…", "it was a mess"),
    ("'“...it was a mess”'", "it was a mess"),
    ("it was a mess", "it was a mess"),
])
def test_clean_quote(raw, clean):
    assert clean_quote(raw, speakers={"Dana", "Interviewer"}) == clean


def test_verbatim_quote_with_a_colon_keeps_its_words():
    p = plant([], ["I", "told", "my", "wife:", "we", "are", "done", "with", "this", "gym"], [])
    span = ground_quote(p.text, p.transcript)
    assert span is not None
    assert (span.char_start, span.char_end) == (p.start, p.end)
