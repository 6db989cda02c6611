"""Schema-constrained extraction for one chunk, and turning drafts into grounded codes.

A chunk is shown to the model as an *excerpt*: every turn that overlaps the
chunk, labelled with its speaker and role, and every interviewee sentence
that starts inside the chunk numbered ``[1]``, ``[2]`` ... The model rates
each numbered sentence in turn (strategy ``rate``: the excerpt is a shared
prefix, the sentence comes last, and the chunk may be read in smaller
windows, `rating_windows`; coding/decide.py turns the ratings into codes per
transcript), answers with sentence numbers (``sentences``, and jobs in every
strategy) or with copied words (``quotes``, and quotable lines in every
strategy, aligned by `ground_quote`; a quotable line is widened to the whole
sentences it covers). Every way, a code's quote is the transcript's own
text at exact offsets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from jtbd.coding.chunk import Chunk, chunk_windows
from jtbd.coding.decide import Decision, RatedSentence
from jtbd.coding.ground import Span, copied_from_examples, ground_quote, unsupported_statement
from jtbd.coding.sentences import Sentence, split_sentences
from jtbd.prompts import PromptPass, Strategy
from jtbd.schemas.codebook import (
    DRAFT_MODELS, RATED_LABELS, Alignment, Force, ForceType, Grounding, Jobs, JobsAndQuotes, JobStory, Provenance,
    Quote, QuotedCodes, SentenceRating, Trigger,
)
from jtbd.schemas.transcript import Transcript, Turn

CONTEXT_CHARS = 160


@dataclass(frozen=True)
class Excerpt:
    text: str
    numbered: dict[int, Sentence]  # local number -> sentence
    turns: tuple[Turn, ...]


@dataclass
class ChunkResult:
    chunk_key: str
    codes: list[Any] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    rated: list[RatedSentence] = field(default_factory=list)  # decided per transcript, not per chunk


def build_excerpt(transcript: Transcript, chunk: Chunk, numbered: bool = True) -> Excerpt:
    by_turn: dict[int, list[Sentence]] = {}
    for s in split_sentences(transcript):
        by_turn.setdefault(s.turn_index, []).append(s)
    lines, numbers, turns = [], {}, []
    for turn in transcript.turns:
        if turn.char_end <= chunk.char_start or turn.char_start >= chunk.char_end:
            continue
        turns.append(turn)
        if turn.is_coded:
            mine = [s for s in by_turn.get(turn.index, []) if chunk.char_start <= s.char_start < chunk.char_end]
            if not mine:
                continue
            parts = []
            for s in mine:
                numbers[len(numbers) + 1] = s
                parts.append(f"[{len(numbers)}] {s.text}" if numbered else s.text)
            lines.append(f"{turn.speaker} (customer): {' '.join(parts)}")
        else:
            a, b = max(turn.char_start, chunk.char_start), min(turn.char_end, chunk.char_end)
            role = "interviewer" if turn.role.value == "interviewer" else "other"
            lines.append(f"{turn.speaker} ({role}): {transcript.text[a:b].strip()}")
    return Excerpt("\n".join(lines), numbers, tuple(turns))


def response_model_for(prompt: PromptPass, excerpt: Excerpt) -> tuple[type[BaseModel], int]:
    """The response model and max_tokens for one pass over one excerpt."""
    return DRAFT_MODELS[prompt.response_model], prompt.max_tokens


def run_pass(llm: Any, prompt: PromptPass, excerpt: Excerpt, max_retries: int) -> BaseModel:
    model, max_tokens = response_model_for(prompt, excerpt)
    return llm.create(
        response_model=model,
        messages=prompt.render(excerpt.text),
        context={"sentence_ids": set(excerpt.numbered)},
        max_retries=max_retries,
        max_tokens=max_tokens,  # small models loop: always cap
        temperature=0.0,
    )


def _quiet(event: str, *args: Any) -> None:
    return None


def rating_windows(transcript: Transcript, chunk: Chunk, prompt: PromptPass) -> list[tuple[Excerpt, list[int]]]:
    """The excerpts a rating pass reads the chunk in, each with the numbers of the sentences it rates.

    Without a window the chunk is one excerpt. With one, each window is an excerpt, and a sentence
    shown in two overlapping windows is rated once, in the first (where it has the most words
    before it); it keeps its number in the second, as context."""
    windows = chunk_windows(chunk, *prompt.window) if prompt.window else [chunk]
    out, seen = [], set()
    for window in windows:
        excerpt = build_excerpt(transcript, window)
        todo = [n for n, s in excerpt.numbered.items() if (s.char_start, s.char_end) not in seen]
        seen.update((excerpt.numbered[n].char_start, excerpt.numbered[n].char_end) for n in todo)
        if todo:
            out.append((excerpt, todo))
    return out


def rate_sentences(llm: Any, prompt: PromptPass, excerpt: Excerpt, notify: Any = _quiet,
                   numbers: list[int] | None = None) -> list[RatedSentence]:
    """One rating call per numbered sentence (or per one of `numbers`); the excerpt is the
    shared prefix of every call. The caller announces the total ("sentences_total")."""
    rated = []
    for number in list(excerpt.numbered) if numbers is None else numbers:
        sentence = excerpt.numbered[number]
        logprobs = llm.rate(prompt.render(excerpt.text, number, sentence.text), RATED_LABELS)
        rating = SentenceRating(logprobs=logprobs)  # every label, all <= 0, or a clear error
        rated.append(RatedSentence(sentence.turn_index, sentence.char_start, sentence.char_end, rating.logprobs))
        notify("sentence_rated")
    return rated


def code_chunk(llm: Any, transcript: Transcript, chunk: Chunk, strategy: Strategy,
               provenance: Provenance, max_retries: int = 2, notify: Any = _quiet) -> ChunkResult:
    result = ChunkResult(chunk.key)
    rating = any(p.item is not None for p in strategy.passes)
    in_windows = [p for p in strategy.passes if p.in_windows] if rating else []
    for prompt in strategy.passes:
        if prompt in in_windows:
            continue  # asked in the rating pass's windows, below
        if prompt.item is not None:  # rated one sentence at a time, in the pass's own excerpts
            windows = rating_windows(transcript, chunk, prompt)  # none: only interviewer speech here
            if windows:
                notify("sentences_total", sum(len(numbers) for _, numbers in windows))  # the chunk's, at once
            for window, numbers in windows:
                result.rated.extend(rate_sentences(llm, prompt, window, notify, numbers))
                for asked in in_windows:  # right after the window's ratings: their prompt is in the KV cache
                    _drafted(result, llm, asked, window, transcript, provenance, max_retries)
            continue
        _drafted(result, llm, prompt, build_excerpt(transcript, chunk, numbered=prompt.response_model != "QuotedCodes"),
                 transcript, provenance, max_retries)
    return result


def _drafted(result: ChunkResult, llm: Any, prompt: PromptPass, excerpt: Excerpt, transcript: Transcript,
             provenance: Provenance, max_retries: int) -> None:
    """One whole-excerpt pass: the model's draft turned into grounded codes, added to `result`."""
    if not excerpt.numbered:
        return  # only interviewer speech here: nothing to code
    draft = run_pass(llm, prompt, excerpt, max_retries)
    codes, rejected = drafts_to_codes(draft, transcript, excerpt, provenance)
    # A step of its own, not part of converting drafts: it needs no excerpt, so cached codes can take it too.
    codes, unsupported = keep_supported_jobs(codes, transcript)
    if prompt.examples:  # the rating pass's examples came first: a story may borrow from them (variant 10)
        codes, copied = drop_example_copies(codes, transcript, prompt)
        unsupported += copied
    result.codes.extend(codes)
    result.rejected.extend(rejected + unsupported)


def drop_example_copies(codes: list[Any], transcript: Transcript, prompt: PromptPass) -> tuple[list[Any], list[dict]]:
    """The codes without the job stories that copy the pass's worked examples rather than the interview."""
    shown = " ".join(m["content"] for m in prompt.examples)
    return _keep_jobs(codes, transcript, lambda code, parts: copied_from_examples(parts, shown, transcript.text))


def _keep_jobs(codes: list[Any], transcript: Transcript, problem: Any) -> tuple[list[Any], list[dict]]:
    """The codes without the job stories `problem(code, story parts)` finds a reason against, and one
    rejection with that reason for each."""
    kept, rejected = [], []
    for code in codes:
        why = None if code.kind != "job" else problem(code, (code.situation, code.motivation, code.outcome))
        if why is None:
            kept.append(code)
            continue
        rejected.append({"transcript": transcript.id, "code": "job", "quote": code.quote,
                         "statement": code.statement, "reason": why})
    return kept, rejected


def drafts_to_codes(draft: BaseModel, transcript: Transcript, excerpt: Excerpt,
                    provenance: Provenance) -> tuple[list[Any], list[dict]]:
    if isinstance(draft, (JobsAndQuotes, Jobs)):
        return _jobs_and_quotes(draft, transcript, excerpt, provenance)
    if isinstance(draft, QuotedCodes):
        return _quoted(draft, transcript, excerpt, provenance)
    raise TypeError(f"no converter for {type(draft).__name__}")


def decided_codes(decisions: list[Decision], transcript: Transcript, provenance: Provenance) -> list[Any]:
    """Codes for the sentences coding/decide.py kept (each span the sentence or its tail clause),
    each scored with its gate value."""
    return [_labelled(d.label, Span(d.sentence.turn_index, d.char_start, d.char_end, Alignment.exact, 100.0), transcript, provenance)
            .model_copy(update={"score": d.score}) for d in decisions]


def quotable_codes(chosen: list[tuple[RatedSentence, float]], transcript: Transcript,
                   provenance: Provenance) -> list[Quote]:
    """Quotable lines chosen from the ratings (coding/quotable.py), whole sentences, each scored with
    its chance (or, by the rules, how far it stands out)."""
    return [Quote(quote=transcript.text[r.char_start:r.char_end], grounding=grounding_for(_sentence_span(r), transcript),
                  provenance=provenance, score=score) for r, score in chosen]


def _sentence_span(s: Sentence | RatedSentence) -> Span:
    return Span(s.turn_index, s.char_start, s.char_end, Alignment.exact, 100.0)


def _quoted(draft: QuotedCodes, transcript: Transcript, excerpt: Excerpt,
            provenance: Provenance) -> tuple[list[Any], list[dict]]:
    codes, rejected = [], []
    for item in draft.items:
        span = ground_quote(item.quote, transcript, turns=excerpt.turns)
        if span is None:
            rejected.append(_not_found(transcript, item.code, item.quote))
            continue
        codes.append(_labelled(item.code, span, transcript, provenance, model_quote=item.quote))
    return codes, rejected


def _jobs_and_quotes(draft: JobsAndQuotes | Jobs, transcript: Transcript, excerpt: Excerpt,
                     provenance: Provenance) -> tuple[list[Any], list[dict]]:
    codes: list[Any] = []
    rejected: list[dict] = []
    for job in draft.jobs:
        s = excerpt.numbered[job.sentence]
        codes.append(JobStory(
            quote=s.text, grounding=grounding_for(_sentence_span(s), transcript), provenance=provenance,
            situation=_strip_lead(job.when, _SITUATION_LEADS), motivation=_strip_lead(job.i_want_to, _MOTIVATION_LEADS),
            outcome=_strip_lead(job.so_i_can, _OUTCOME_LEADS), dimension=job.dimension,
        ))
    for words in getattr(draft, "quotable", ()):  # the same line twice is stored once: coding/merge.py, as across chunks
        span = quotable_span(words, transcript, excerpt)
        if span is None:
            rejected.append(_not_found(transcript, "quote", words))
            continue
        codes.append(Quote(quote=transcript.text[span.char_start:span.char_end],
                           grounding=grounding_for(span, transcript, model_quote=words), provenance=provenance))
    return codes, rejected


def keep_supported_jobs(codes: list[Any], transcript: Transcript) -> tuple[list[Any], list[dict]]:
    """The codes without the job stories whose statement is not backed by its evidence (the job's
    quote and the turn it sits in), and one rejection with the reason for each job dropped. A quote
    is checked when it is grounded; a statement is the model's own words, so it is checked here."""
    return _keep_jobs(codes, transcript, lambda code, parts: unsupported_statement(
        parts, transcript.turns[code.grounding.turn_index].text))


def _not_found(transcript: Transcript, code: str, quote: str) -> dict:
    return {"transcript": transcript.id, "code": code, "quote": quote,
            "reason": "not found in an interviewee turn of this chunk"}


def quotable_span(words: str, transcript: Transcript, excerpt: Excerpt) -> Span | None:
    """The whole numbered sentences that the model's copied quotable line covers, or None when the
    words are not found in an interviewee turn of the excerpt. A quote card shows whole sentences,
    not the few characters a fuzzy alignment may add or drop at either end."""
    span = ground_quote(words, transcript, turns=excerpt.turns)
    if span is None:
        return None
    covered = [s for s in excerpt.numbered.values() if s.turn_index == span.turn_index
               and min(s.char_end, span.char_end) - max(s.char_start, span.char_start) > 0]
    if not covered:
        return span
    return Span(span.turn_index, min(s.char_start for s in covered), max(s.char_end for s in covered),
                span.alignment, span.score)


# What the statement template already says, as the model repeats it at the start of a part
# ("When In March ...", "I want to To avoid ..."): longest first.
_SITUATION_LEADS = ("when",)
_MOTIVATION_LEADS = ("i want to", "i'd like to", "want to", "to")
_OUTCOME_LEADS = ("so that i can", "so i can", "so that", "to")
# A part's first word that reads in lower case after the template's words: a function word, never a name.
_LOWER_FIRST = frozenset(
    "in on at after before during every each the a an my our their his her its this that these those some"
    " once since while whenever if as for with from by to of about".split()
)


def _strip_lead(text: str, leads: tuple[str, ...]) -> str:
    """A job story part without the template's own words repeated at its start, and with a
    capitalised function word lowered ("When In March" -> "When in March")."""
    text = text.strip().rstrip(".,")
    stripped = True
    while stripped:  # "I want to To find ...": the template's words, then the model's own
        stripped = False
        for lead in leads:
            if text.lower().startswith(lead + " "):
                text, stripped = text[len(lead):].strip(), True
                break
    first = text.split(" ", 1)[0]
    if first[:1].isupper() and first.lower() in _LOWER_FIRST:
        text = first.lower() + text[len(first):]
    return text


def _labelled(label: str, span: Span, transcript: Transcript, provenance: Provenance,
              model_quote: str | None = None) -> Any:
    grounding = grounding_for(span, transcript, model_quote)
    quote = transcript.text[span.char_start:span.char_end]
    if label == "trigger":
        return Trigger(quote=quote, grounding=grounding, provenance=provenance)
    return Force(quote=quote, grounding=grounding, provenance=provenance, force=ForceType(label))


def grounding_for(span: Span, transcript: Transcript, model_quote: str | None = None) -> Grounding:
    turn = transcript.turns[span.turn_index]
    quote = transcript.text[span.char_start:span.char_end]
    return Grounding(
        transcript=transcript.id, source=transcript.source, speaker=turn.speaker,
        turn_index=turn.index, char_start=span.char_start, char_end=span.char_end,
        start_seconds=turn.time_at(span.char_start), end_seconds=turn.end,
        source_line=turn.line_at(span.char_start), alignment=span.alignment, alignment_score=span.score,
        model_quote=model_quote if model_quote and model_quote != quote else None,
    )


def context_of(code: Any, transcript: Transcript, width: int = CONTEXT_CHARS) -> tuple[str, str]:
    """The words just before and after a code's quote, within its turn, for quote cards."""
    g = code.grounding
    turn = transcript.turns[g.turn_index]
    before = transcript.text[max(turn.char_start, g.char_start - width):g.char_start]
    after = transcript.text[g.char_end:min(turn.char_end, g.char_end + width)]
    return before.lstrip(), after.rstrip()
