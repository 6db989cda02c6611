"""Sentence splitting after abbreviations (foundation issue): "Mr.", "a.m.", "e.g." ... inside a
sentence no longer end it, and a real sentence end after one still splits.

Each case has three words or more on either side of the abbreviation, so a wrong cut there gives
two sentences (shorter fragments are joined to the next sentence anyway and would hide it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jtbd.coding import sentences
from jtbd.coding.parse import load_transcript, parse_transcript
from jtbd.coding.sentences import split_sentences

ROOT = Path(__file__).resolve().parents[1]


def split(said: str) -> list[str]:
    transcript = parse_transcript(f"Interviewer: And then?\nDana: {said}\n", "abbr.txt", "txt")
    found = split_sentences(transcript)
    assert all(transcript.text[s.char_start:s.char_end] == s.text for s in found)
    return [s.text for s in found]


ONE_SENTENCE = [
    "Some of those were from, honestly, Mr. Pryce owes me for a sponge.",  # dev: bakery_card_reader
    "In the end Mrs. Okafor came in every Tuesday.",
    "I rang Ms. Patel about the contract twice.",
    "Then my doctor, Dr. Lewis, said my hearing had got worse.",
    "We met at St. Pancras before the train.",
    "It runs every day at ten a.m. downstairs, while I'm asleep.",  # dev: a gold quote of robot_vacuum
    "We watch it at eight p.m. when the kids are in bed.",
    "I get up at 7 a.m. Monday to Friday for work.",  # a day after a time continues it
    "We looked at other tools, e.g. Slack and Teams, before we chose.",
    "The cheaper one, i.e. the one my sister has, was fine.",
    "It was Xero vs. Sage for about a month.",
    "Bring the cables, chargers, etc. and the box it came in.",
    "My brother in the U.S. Army swears by it.",
    "I read it in a book by J. K. Rowling on the train.",
    "I've been there since 6 a.m. [laughs] and it's still not fixed.",
]


@pytest.mark.parametrize("said", ONE_SENTENCE)
def test_an_abbreviation_inside_a_sentence_does_not_end_it(said):
    assert split(said) == [said]


TWO_SENTENCES = [
    ("I got up at 6 a.m.", "Then I made the coffee."),
    ("We left the house at seven p.m.", "It was already dark outside."),
    ("She kept the receipts, the boxes, etc.", "Honestly it was a lot."),
    ("I started a trial account at eleven p.m.", "Kitchen table, still in my coat."),  # examples: timesheet_tool
    ("Our password was capital P, capital S.", "It was a shared sheet."),  # dev: crm_switch
    ("We lived in the U.S. for years.", "It was great."),
    ("We lived for years in the U.S.", "It was great for a while."),
    ("Their office is on Baker St.", "The rent is huge there."),
    ("And so did I, so did I.", "Megan said it was fine."),  # "I" is no initial
    ("It broke down again last week.", "Mr. Hughes came in the next day."),
]


@pytest.mark.parametrize("first, second", TWO_SENTENCES)
def test_a_sentence_that_ends_on_an_abbreviation_still_splits(first, second):
    assert split(f"{first} {second}") == [first, second]


def _bundled():
    from jtbd.eval.runner import load_gold_folder

    for split_name in ("dev", "test"):
        for gold in load_gold_folder(ROOT / "eval" / "gold" / split_name):
            yield f"{split_name}/{gold.transcript.id}", gold.transcript
    for path in sorted((ROOT / "examples").iterdir()):
        yield f"examples/{path.stem}", load_transcript(path)


# Every bundled sentence the rule changes: two sentences each, now one. None is in the test split
# or in a transcript the flow tests code, so no recorded request changed.
JOINED = {
    ("dev/bakery_card_reader", "Some of those were from, honestly, Mr. Pryce owes me for a Victoria sponge from "
                               "twenty twenty-one and he's moved to Spain."),
    ("dev/bakery_card_reader", "Mrs. Okafor, Mr. Hughes, Doreen with the little dog."),
    ("dev/robot_vacuum", "I'd come home and I'm not dragging that thing around at nine a.m. after twelve hours "
                         "on my feet."),
    ("dev/robot_vacuum", "I'd think about it, like when I'm lying in bed trying to sleep at ten a.m. and I can "
                         "here Biscuit shaking himself on the hallway floor, I'd be like, ugh, the floor."),
    ("dev/robot_vacuum", "It runs every day at ten a.m. downstairs, while I'm asleep, and I just come down to a "
                         "clean floor."),
    ("examples/language_app", "On nights there's that dead bit at four a.m. when everyone's asleep and I'd do "
                              "the listening with one earphone in."),
}


def test_the_bundled_sentences_that_change_are_exactly_these(monkeypatch):
    """Against the previous rule (every full stop before a space ends a sentence)."""
    now = {(name, s.text) for name, t in _bundled() for s in split_sentences(t)}
    monkeypatch.setattr(sentences, "_ends_sentence", lambda text, match: True, raising=False)
    before = {(name, s.text) for name, t in _bundled() for s in split_sentences(t)}
    assert now - before == JOINED
    assert {name for name, _ in before - now} == {name for name, _ in JOINED}
    assert len(before - now) == 2 * len(JOINED)
