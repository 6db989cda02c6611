"""Align a model's quote back to exact offsets in the transcript.

Nothing is trusted because the model said so. A quote is searched for inside
interviewee turns only, in three steps, and the first that succeeds wins:

1. exact: the quote is a substring of one turn's text;
2. normalized: equal after folding case, dropping punctuation and collapsing
   whitespace (the model "fixed" a comma or a capital);
3. fuzzy: rapidfuzz's partial-ratio alignment of the normalized strings
   scores at least ``FUZZY_THRESHOLD`` (0-100), the matched region is widened
   to whole words, and the quote is not longer than the turn.

The stored quote is always the transcript's own text at the aligned offsets;
the model's wording is kept beside it when it differed. A quote that cannot be
aligned returns None: the caller rejects and counts it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from rapidfuzz import fuzz

from jtbd.schemas.codebook import Alignment
from jtbd.schemas.transcript import Transcript, Turn

FUZZY_THRESHOLD = 90.0
MIN_QUOTE_CHARS = 8  # shorter strings match almost anywhere by chance

_LABEL = re.compile(r"^\s*(?:\[[\d:.]+\]\s*)?(?:([A-Z][\w .'()-]{0,40}?):\s+)")
# Labels stripped even when the speaker is unknown; any other "Words: " is kept,
# because speech has colons too ("I told my wife: we're done").
_GENERIC_LABEL = re.compile(r"(?i)^(?:speaker\s*\d+|interviewer\s*\d*|interviewee|customer|participant|respondent|"
                            r"user|[A-Z]{1,3}\d?)$")
_WRAPPERS = "\"'`“”‘’«» "


@dataclass(frozen=True)
class Span:
    turn_index: int
    char_start: int
    char_end: int
    alignment: Alignment
    score: float


def clean_quote(quote: str, speakers: Iterable[str] = ()) -> str:
    """Strip what models wrap around a quote: quote marks, a speaker label, ellipses.

    A leading "Name: " is a label only if Name is one of `speakers` or a generic
    label such as "Speaker 2" or "Interviewer".
    """
    q = quote.strip().strip(_WRAPPERS)
    label = _LABEL.match(q)
    names = {s.strip().lower() for s in speakers}
    if label and (label.group(1).strip().lower() in names or _GENERIC_LABEL.match(label.group(1).strip())):
        q = q[label.end():]
    q = q.strip().strip(_WRAPPERS)
    for dots in ("...", "…"):
        q = q.removeprefix(dots).removesuffix(dots)
    return q.strip().strip(_WRAPPERS)


def ground_quote(
    quote: str, transcript: Transcript, turns: Iterable[Turn] | None = None,
    threshold: float = FUZZY_THRESHOLD,
) -> Span | None:
    """Align `quote` inside one of `turns` (default: every interviewee turn)."""
    q = clean_quote(quote, {t.speaker for t in transcript.turns})
    if len(q) < MIN_QUOTE_CHARS:
        return None
    candidates = [t for t in (turns if turns is not None else transcript.turns) if t.is_coded]
    for step in (_exact, _normalized):
        for turn in candidates:
            span = step(q, turn)
            if span:
                return span
    return _fuzzy(q, candidates, threshold)


def _exact(q: str, turn: Turn) -> Span | None:
    at = turn.text.find(q)
    if at < 0:
        return None
    return Span(turn.index, turn.char_start + at, turn.char_start + at + len(q), Alignment.exact, 100.0)


def normalize(text: str) -> tuple[str, list[int]]:
    """Fold case, drop punctuation, collapse whitespace; map each output char to its source index."""
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if ch.isalnum():
            out.append(ch.lower())
            index.append(i)
        elif (ch.isspace() or ch in "-/") and out and out[-1] != " ":
            out.append(" ")
            index.append(i)
    while out and out[-1] == " ":
        out.pop()
        index.pop()
    return "".join(out), index


def _normalized(q: str, turn: Turn) -> Span | None:
    nq, _ = normalize(q)
    nt, index = normalize(turn.text)
    at = nt.find(nq) if nq else -1
    if at < 0:
        return None
    a, b = index[at], index[at + len(nq) - 1] + 1
    return Span(turn.index, turn.char_start + a, turn.char_start + b, Alignment.normalized, 100.0)


def _fuzzy(q: str, turns: list[Turn], threshold: float) -> Span | None:
    nq, _ = normalize(q)
    best: Span | None = None
    for turn in turns:
        nt, index = normalize(turn.text)
        if not nt or len(nq) > len(nt) * 1.1:
            continue
        hit = fuzz.partial_ratio_alignment(nq, nt, score_cutoff=threshold)
        if hit is None or (best and hit.score <= best.score):
            continue
        a, b = _widen_to_words(turn.text, index[hit.dest_start], index[hit.dest_end - 1] + 1)
        best = Span(turn.index, turn.char_start + a, turn.char_start + b, Alignment.fuzzy, round(hit.score, 1))
    return best


def _widen_to_words(text: str, a: int, b: int) -> tuple[int, int]:
    while a > 0 and text[a - 1].isalnum():
        a -= 1
    while b < len(text) and text[b].isalnum():
        b += 1
    return a, b
