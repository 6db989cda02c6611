"""Speaker-turn-aware chunks with overlap, each knowing its offset.

The normalised transcript has one turn per line, so langchain's recursive
splitter with "\\n" as its first separator cuts between turns and only falls
back to sentence and word boundaries inside a turn longer than a chunk. Sizes
are in estimated tokens so a chunk plus the prompt fits the backend's context.
"""

from __future__ import annotations

from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from jtbd.schemas.transcript import Transcript

CHARS_PER_TOKEN = 3.6  # measured on English interview speech with the Qwen2.5 tokenizer
_SEPARATORS = ["\n", ". ", "? ", "! ", ", ", " ", ""]


@dataclass(frozen=True)
class Chunk:
    transcript_id: str
    index: int
    char_start: int
    char_end: int
    text: str

    @property
    def key(self) -> str:
        return f"{self.transcript_id}#{self.index}"


def estimate_tokens(text: str) -> int:
    return int(len(text) / CHARS_PER_TOKEN) + 1


def _splitter(chunk_tokens: int, overlap_tokens: int) -> RecursiveCharacterTextSplitter:
    if overlap_tokens >= chunk_tokens:
        raise ValueError("chunk overlap must be smaller than the chunk size")
    return RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=overlap_tokens,
        length_function=estimate_tokens,
        separators=_SEPARATORS,
        keep_separator="end",
        strip_whitespace=False,
    )


def _spans(text: str, chunk_tokens: int, overlap_tokens: int) -> list[tuple[int, int]]:
    """(start, end) of each piece of `text`, in order, each located after the previous one."""
    spans: list[tuple[int, int]] = []
    for piece in _splitter(chunk_tokens, overlap_tokens).split_text(text):
        start = _locate(text, piece, spans[-1] if spans else None)
        if spans and start == spans[-1][0]:
            # Highly repetitive text: the splitter repeated a piece, or the previous piece was located
            # at a later occurrence of its words, where this one starts too. One covers the other
            # (both are the text from `start`): keep the longer, so chunks still start in order.
            spans[-1] = (start, max(spans[-1][1], start + len(piece)))
            continue
        spans.append((start, start + len(piece)))
    return spans


def chunk_transcript(transcript: Transcript, chunk_tokens: int = 900, overlap_tokens: int = 120) -> list[Chunk]:
    text = transcript.text
    return [Chunk(transcript.id, i, a, b, text[a:b]) for i, (a, b) in enumerate(_spans(text, chunk_tokens, overlap_tokens))]


def chunk_windows(chunk: Chunk, window_tokens: int, overlap_tokens: int) -> list[Chunk]:
    """The chunk cut the same way into smaller windows (same transcript offsets, same index).

    A rating pass reads one window at a time: a 1.5B model rates a sentence better when the
    excerpt before its question is short (eval/RESULTS.md, variant 15)."""
    return [Chunk(chunk.transcript_id, chunk.index, chunk.char_start + a, chunk.char_start + b, chunk.text[a:b])
            for a, b in _spans(chunk.text, window_tokens, overlap_tokens)]


def _locate(full: str, piece: str, prev: tuple[int, int] | None) -> int:
    """Offset of `piece`: each piece starts after the previous one's start and no later than its end.

    The last such occurrence is taken, so repeated text (the same short turn
    twice) can never move a chunk backwards and leave a gap. (langchain's own
    start_index assumes the overlap is measured in characters, which it is
    not here, so offsets are found and checked locally.)
    """
    if prev is None:
        at = 0 if full.startswith(piece) else -1
    else:
        at = full.rfind(piece, prev[0] + 1, prev[1] + len(piece))
        if at < 0:  # the splitter dropped separator text or repeated a piece: take the next occurrence
            at = full.find(piece, prev[0])
    if at < 0:
        raise ValueError("chunk text not found in transcript: splitter changed the text")
    return at
