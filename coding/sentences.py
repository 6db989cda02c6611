"""Split interviewee turns into sentences with exact offsets.

Sentences are the unit the default extraction strategy labels (the model
answers with sentence numbers, so every code is grounded by construction)
and the unit of the no-skill baseline and the sentence-level kappa.
Run-on speech of more than 60 words is cut near its middle, at a comma, or,
in speech-to-text output with no punctuation at all, before a word that
usually starts a clause ("and", "but", "so" ...), so that no code has to be a
whole minute of speech.

A full stop after an abbreviation is a boundary only where the next word says
so (see `_ends_sentence`): "Mr. Hughes", "e.g. Slack" and "nine a.m. after
work" stay one sentence, "up at 6 a.m. Then I" and "capital S. It was" split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jtbd.schemas.transcript import Transcript, Turn

# A sentence ends at . ? ! (optionally followed by a closing quote or bracket)
# and whitespace; spoken transcripts also break on " -- ".
_BOUNDARY = re.compile(r"(?<=[.?!])([\"')\]]?)\s+|\s+--\s+")
MIN_WORDS = 3  # shorter fragments ("Yeah.", "Right, so.") join the next sentence
MAX_WORDS = 60  # run-on speech is split at a comma near the middle (or a word, when there is none)
# Where an unpunctuated run (speech-to-text without punctuation) is best cut: before a word that
# usually starts a clause in speech.
_CLAUSE_WORD = re.compile(r"\s+(?=(?:and|but|so|because|cause|then|which|um|uh|like)\b)", re.I)

# Abbreviations, lower-cased, without their last full stop. Titles stand before a name and the
# others before what they introduce: their full stop never ends a sentence.
_TITLES = frozenset({"mr", "mrs", "ms", "mx", "dr", "prof", "rev"})
_NEVER_LAST = frozenset({"e.g", "i.e", "vs", "cf", "viz", "approx", "a.k.a"})
# Usually before a name ("St. Albans", "the U.S. Army"), as single capital initials are ("J. K.
# Rowling"), but a sentence may end on them ("capital S. It was ..."): a boundary only when the next
# word is one that starts sentences and is no name (_STARTERS).
_BEFORE_NAMES = frozenset({"st", "mt", "u.s", "u.k"})
# Often the last word of a sentence, whose full stop then ends it too ("up at 6 a.m. Then I ...",
# "and so on, etc. Anyway"): a boundary when the next word is capitalised, unless it is a day, a
# month or a time zone ("7 a.m. Monday"). Any other dotted abbreviation ("Ph.D.") is read the same.
_MAY_END = frozenset({"etc", "a.m", "p.m", "jr", "sr", "inc", "ltd", "co", "corp"})
_DOTTED = re.compile(r"(?:[a-z]\.)+[a-z]")
_CALENDAR = frozenset("""monday tuesday wednesday thursday friday saturday sunday january february march
    april may june july august september october november december gmt bst utc est edt cst cdt mst mdt pst
    pdt cet cest""".split())
# Capitalised words that begin sentences in speech and are not names (compared lower-cased, without
# an 's / 'm / 'll ... ending).
_STARTERS = frozenset("""i it we he she they you this that these those there here what why how who
    where which when whenever a an the my our your his her their its no yes yeah yep nope not
    well oh ok okay um uh er erm so and but or then because cause if while after before once
    anyway honestly actually basically obviously really just maybe now also still even only
    like right sure see look""".split())
_ASIDE = re.compile(r"(?:\[[^\]]{0,40}\]|\([^)]{0,40}\))\s+")  # "[laughs] " / "(laughs) " before the next word
_NEXT_WORD = re.compile(r"[\"'“‘(\[]*([\w'’]*)")


@dataclass(frozen=True)
class Sentence:
    turn_index: int
    char_start: int
    char_end: int
    text: str


def split_turn(turn: Turn) -> list[Sentence]:
    pieces = _raw_pieces(turn.text)
    pieces = _join_fragments(pieces, turn.text)
    pieces = [p for piece in pieces for p in _split_long(piece, turn.text)]
    return [
        Sentence(turn.index, turn.char_start + a, turn.char_start + b, turn.text[a:b])
        for a, b in pieces
    ]


def split_sentences(transcript: Transcript, coded_only: bool = True) -> list[Sentence]:
    turns = transcript.interviewee_turns() if coded_only else transcript.turns
    return [s for turn in turns for s in split_turn(turn)]


def _raw_pieces(text: str) -> list[tuple[int, int]]:
    pieces, start = [], 0
    for m in _BOUNDARY.finditer(text):
        if not _ends_sentence(text, m):
            continue
        end = m.start() + len(m.group(1) or "")  # keep a closing quote with its sentence
        pieces.append((start, end))
        start = m.end()
    pieces.append((start, len(text)))
    return [_trim(text, a, b) for a, b in pieces if text[a:b].strip()]


def _ends_sentence(text: str, m: re.Match) -> bool:
    """Whether a boundary match is a sentence end: "?", "!" and " -- " always are; a full stop
    after an abbreviation only when the next word says so.

    Mr., Mrs., Ms., Dr., e.g., i.e., vs. never end a sentence. After a.m., p.m., etc. a
    capitalised next word starts a new one: punctuated transcripts write one full stop for
    both the abbreviation and the sentence, and a lowercase word cannot start a sentence,
    so "at nine a.m. after work" is one sentence and "at 6 a.m. Then I" two. A capitalised
    day, month or time zone continues ("7 a.m. Monday"). After a single capital initial, St.
    or U.S. the capitalised word is usually a name ("J. K. Rowling", "the U.S. Army"), so
    only a word that starts sentences and is never a name ("It", "The", "So", "Honestly")
    splits: "capital S. It was a shared sheet".
    """
    if "-" in m.group(0) or text[m.start() - 1] != ".":
        return True
    # The word before the full stop, without it (20 characters are more than any abbreviation).
    word = re.split(r"[\s\"'(\[]", text[max(0, m.start() - 20):m.start()])[-1][:-1]
    key = word.lower()
    if key in _TITLES or key in _NEVER_LAST:
        return False
    initial = len(word) == 1 and word.isupper() and word != "I"  # "... and so did I. Megan said"
    if not (initial or key in _BEFORE_NAMES or key in _MAY_END or _DOTTED.fullmatch(key)):
        return True  # an ordinary word: its full stop ends the sentence
    aside = _ASIDE.match(text, m.end())
    following = _NEXT_WORD.match(text, aside.end() if aside else m.end()).group(1)
    if not following:
        return True
    if initial or key in _BEFORE_NAMES:
        return following[0].isupper() and re.split(r"['’]", following)[0].lower() in _STARTERS
    return following[0].isupper() and following.lower() not in _CALENDAR


def _trim(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def _join_fragments(pieces: list[tuple[int, int]], text: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    carry: int | None = None
    for a, b in pieces:
        start = carry if carry is not None else a
        if len(text[start:b].split()) < MIN_WORDS:
            carry = start
            continue
        out.append((start, b))
        carry = None
    if carry is not None:
        if out:
            out[-1] = (out[-1][0], pieces[-1][1])
        else:
            out.append((carry, pieces[-1][1]))
    return out


def _split_long(piece: tuple[int, int], text: str) -> list[tuple[int, int]]:
    a, b = piece
    if len(text[a:b].split()) <= MAX_WORDS:
        return [piece]
    middle = (b - a) // 2
    cuts = [m.end() for m in re.finditer(r",\s", text[a:b])]
    if not cuts:  # no punctuation at all: before a clause word in the middle half, else the middle word
        cuts = [m.start() for m in _CLAUSE_WORD.finditer(text[a:b]) if abs(m.start() - middle) <= (b - a) // 4]
        cuts = cuts or [m.start() for m in re.finditer(r"\s+", text[a:b])]
    cut = min(cuts, key=lambda c: abs(c - middle))
    left, right = _trim(text, a, a + cut), _trim(text, a + cut, b)
    return _split_long(left, text) + _split_long(right, text)
