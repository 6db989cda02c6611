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


# --- job statements: the model's own words, checked against their evidence -------
#
# A job story's quote is grounded like any other; its statement ("When ..., I want to ...,
# so I can ...") is written by the model. A statement is kept only when it reads as a summary
# of its evidence (the quote and the turn it sits in): enough of its content words are said
# there, and it does not carry instructions to a model (an interview that says "ignore all
# previous instructions" must not come back as a stored job story).

# Hand-written statements are summaries in the coder's words: in the gold set (eval/gold, 37 jobs) the
# median one has 25% of its content words in its quote's turn, and 35 of 37 have at least 10% (the two
# others infer past the words: "he gives me stick if I miss one" -> "a friend who notices whether I
# showed up"). A statement written from another turn, or from nothing, shares none.
SUPPORT_SHARE = 0.10
MIN_STEM = 3  # "pay" / "payment"; shorter words ("it", "go") say nothing about the evidence
STEM_CHARS = 4  # "worry" / "worried", "cancel" / "cancelling": the first four letters stand for the word

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
_STOP_WORDS = frozenset("""
    a about above after again against all also am an and any are as at be because been before being below
    between both but by can could did do does doing down during each even ever every few for from further get
    gets got had has have having he her here hers herself him himself his how i if in into is it its itself
    just let like made make me more most much my myself no nor not now of off on once one only or other our
    ours ourselves out over own really same she should so some still such than that the their theirs them
    themselves then there these they thing things this those through to too under until up very was way we
    were what when where which while who whom why will with without would you your yours yourself
    want wanted wants able need needs
    i'm i've i'd i'll it's don't didn't doesn't isn't wasn't can't couldn't won't wouldn't we're we've they're
    that's there's he's she's you're
""".split())
_INSTRUCTIONS = re.compile(
    r"\b(?:ignore|disregard|forget|override|bypass)\b[\w\s,'-]{0,40}?\b(?:instructions?|prompts?|guidelines)\b"
    r"|\bsystem prompt\b|\bdeveloper mode\b|\bjailbreak", re.IGNORECASE)


def content_words(text: str) -> list[str]:
    """The words that carry a statement's meaning: no stop words, no template words, no short words."""
    words = _WORD.findall(text.lower().replace("\u2019", "'"))
    return [w for w in words if len(w) >= MIN_STEM and w not in _STOP_WORDS]


def _same_stem(a: str, b: str) -> bool:
    n = min(len(a), len(b), STEM_CHARS)
    return a[:n] == b[:n]


def statement_support(parts: Iterable[str], evidence: str) -> float:
    """The share of the statement's content words whose stem is said in `evidence` (1.0 when it
    has none: no words, nothing to invent)."""
    words = [w for part in parts for w in content_words(part)]
    if not words:
        return 1.0
    said = set(content_words(evidence))
    return sum(any(_same_stem(w, e) for e in said) for w in words) / len(words)


def unsupported_statement(parts: Iterable[str], evidence: str, share: float = SUPPORT_SHARE) -> str | None:
    """Why a model-written job statement cannot be kept beside `evidence`, or None when it can."""
    parts = list(parts)
    instruction = next((m.group(0) for part in parts if (m := _INSTRUCTIONS.search(part))), None)
    if instruction:
        return f"job statement reads as an instruction to the model ({instruction!r}), not as the interviewee's job"
    support = statement_support(parts, evidence)
    if support < share:
        return (f"job statement not supported by its evidence: {support:.0%} of its content words are said "
                f"in the quote and its turn (at least {share:.0%} needed)")
    return None


def copied_from_examples(parts: Iterable[str], examples: str, interview: str) -> str | None:
    """Why a model-written job statement reads as a copy of the prompt's worked examples (a part whose
    content words are, for half of them or more, words of the examples that the interview never
    says: "When I drove to the office" in an interview about meal kits), or None."""
    shown, said = set(content_words(examples)), set(content_words(interview))
    for part in parts:
        words = content_words(part)
        foreign = [w for w in words if any(_same_stem(w, e) for e in shown) and not any(_same_stem(w, e) for e in said)]
        if words and len(foreign) >= 0.5 * len(words):
            return (f"job statement copies the prompt's worked examples ({', '.join(repr(w) for w in foreign)}: "
                    f"words this interview never says)")
    return None
