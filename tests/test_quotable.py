"""Quotable lines are copied by the model (not named by number) and stored as the whole
interviewee sentences the copy covers; a copy found nowhere is reported, never stored."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jtbd.coding.chunk import chunk_transcript
from jtbd.coding.extract import build_excerpt, drafts_to_codes, quotable_span
from jtbd.coding.merge import merge_codes
from jtbd.coding.parse import parse_transcript
from jtbd.schemas.codebook import Alignment, JobsAndQuotes, Provenance, Quote

TEXT = (
    "Interviewer: Hi, thanks for joining.\n"
    "Dana: Hi! Happy to. The dog might bark.\n"
    "Interviewer: What happened with the old grinder?\n"
    "Dana: It sounded like a jet engine every morning. I was so embarrassed when my brother visited. "
    "Then it just died on a Sunday.\n"
    "Interviewer: It sounded like a jet engine, you said?\n"
    "Dana: Yes. Honestly I cried a bit.\n"
)
PROVENANCE = Provenance(prompt_version="p", schema_version="s", model="m")


@pytest.fixture(scope="module")
def chunk_of_all():
    transcript = parse_transcript(TEXT, "grinder.txt", "txt")
    [chunk] = chunk_transcript(transcript, 900, 120)
    return transcript, build_excerpt(transcript, chunk)


def _sentence(transcript, words):
    start = transcript.text.index(words)
    return start, start + len(words)


def test_an_exact_copy_is_its_sentence(chunk_of_all):
    transcript, excerpt = chunk_of_all
    span = quotable_span("It sounded like a jet engine every morning.", transcript, excerpt)
    assert (span.char_start, span.char_end) == _sentence(transcript, "It sounded like a jet engine every morning.")
    assert span.alignment == Alignment.exact


def test_a_loose_or_partial_copy_widens_to_the_whole_sentences_it_covers(chunk_of_all):
    transcript, excerpt = chunk_of_all
    span = quotable_span("I was so embarassed when my brother visited", transcript, excerpt)  # a typo, no period
    assert (span.char_start, span.char_end) == _sentence(transcript, "I was so embarrassed when my brother visited.")
    two = quotable_span("every morning. I was so embarrassed", transcript, excerpt)
    assert (two.char_start, two.char_end) == _sentence(
        transcript, "It sounded like a jet engine every morning. I was so embarrassed when my brother visited.")


def test_interviewer_words_are_not_quotable(chunk_of_all):
    transcript, excerpt = chunk_of_all
    # the interviewer echoes the line: only the interviewee's own sentence can be the quote
    span = quotable_span("It sounded like a jet engine, you said?", transcript, excerpt)
    assert span is None or transcript.turns[span.turn_index].is_coded
    assert quotable_span("What happened with the old grinder?", transcript, excerpt) is None


def test_the_jobs_pass_stores_copies_once_and_reports_what_it_cannot_find(chunk_of_all):
    transcript, excerpt = chunk_of_all
    draft = JobsAndQuotes(quotable=[
        "Honestly I cried a bit.",
        "  Honestly I cried a bit. ",  # the same line twice: stored once
        "The new one is whisper quiet and I love it.",  # nowhere in the transcript
    ])
    codes, rejected = drafts_to_codes(draft, transcript, excerpt, PROVENANCE)
    codes = merge_codes(codes)  # what the flow stores
    [sentence] = [s.text for s in excerpt.numbered.values() if "Honestly I cried a bit." in s.text]
    assert [c.quote for c in codes] == [sentence]
    assert all(isinstance(c, Quote) for c in codes)
    g = codes[0].grounding
    assert transcript.text[g.char_start:g.char_end] == codes[0].quote
    assert g.model_quote == (None if sentence == "Honestly I cried a bit." else "Honestly I cried a bit.")
    assert rejected == [{"transcript": transcript.id, "code": "quote",
                         "quote": "The new one is whisper quiet and I love it.",
                         "reason": "not found in an interviewee turn of this chunk"}]


@pytest.mark.parametrize(("when", "want", "outcome", "statement"), [
    ("When In March the old one died", "I want to To find a quiet one", "so I can sleep",
     "When in March the old one died, I want to find a quiet one, so I can sleep."),
    ("whenever the kids are asleep", "to vacuum", "so that I can keep the evenings free.",
     "When whenever the kids are asleep, I want to vacuum, so I can keep the evenings free."),
    ("After the session", "square the cost", "to learn the method properly",
     "When after the session, I want to square the cost, so I can learn the method properly."),
    ("Priya starts her shift", "totally forget the floors", "Sunday is mine",
     "When Priya starts her shift, I want to totally forget the floors, so I can Sunday is mine."),
])
def test_a_job_story_drops_the_template_words_the_model_repeats(chunk_of_all, when, want, outcome, statement):
    from jtbd.schemas.codebook import JobDraft

    transcript, excerpt = chunk_of_all
    draft = JobsAndQuotes(jobs=[JobDraft(sentence=min(excerpt.numbered), when=when, i_want_to=want, so_i_can=outcome,
                                         dimension="functional")])
    [job], _ = drafts_to_codes(draft, transcript, excerpt, PROVENANCE)
    assert job.statement == statement  # a name keeps its capital; what the model says wrong stays wrong


def test_the_copy_the_model_wrote_is_kept_when_it_differs(chunk_of_all):
    transcript, excerpt = chunk_of_all
    codes, _ = drafts_to_codes(JobsAndQuotes(quotable=["it just died on a sunday"]), transcript, excerpt, PROVENANCE)
    [quote] = codes
    assert quote.quote == "Then it just died on a Sunday."
    assert quote.grounding.model_quote == "it just died on a sunday"


def test_quotable_lines_are_at_most_three_and_bounded():
    with pytest.raises(ValidationError):
        JobsAndQuotes(quotable=["a b c", "d e f", "g h i", "j k l"])
    with pytest.raises(ValidationError):
        JobsAndQuotes(quotable=["word " * 100])
    assert JobsAndQuotes(quotable=["  ", "It broke."]).quotable == ["It broke."]
    schema = JobsAndQuotes.model_json_schema()["properties"]["quotable"]
    assert schema["maxItems"] == 3 and schema["items"] == {"maxLength": 300, "type": "string"}
