"""Split interviewee turns into sentences with exact offsets.

Sentences are the unit the default extraction strategy labels (the model
answers with sentence numbers, so every code is grounded by construction)
and the unit of the no-skill baseline and the sentence-level kappa.
Run-on speech of more than 60 words is cut near its middle, at a comma, or,
in speech-to-text output with no punctuation at all, before a word that
usually starts a clause ("and", "but", "so" ...), so that no code has to be a
whole minute of speech.
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
        end = m.start() + len(m.group(1) or "")  # keep a closing quote with its sentence
        pieces.append((start, end))
        start = m.end()
    pieces.append((start, len(text)))
    return [_trim(text, a, b) for a, b in pieces if text[a:b].strip()]


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
