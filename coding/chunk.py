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


def chunk_transcript(transcript: Transcript, chunk_tokens: int = 900, overlap_tokens: int = 120) -> list[Chunk]:
    if overlap_tokens >= chunk_tokens:
        raise ValueError("chunk overlap must be smaller than the chunk size")
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=overlap_tokens,
        length_function=estimate_tokens,
        separators=_SEPARATORS,
        keep_separator="end",
        strip_whitespace=False,
    )
    chunks: list[Chunk] = []
    for text in splitter.split_text(transcript.text):
        start = _locate(transcript.text, text, chunks[-1] if chunks else None)
        if chunks and (start, start + len(text)) == (chunks[-1].char_start, chunks[-1].char_end):
            continue  # the splitter repeated a chunk (highly repetitive text): code it once
        chunks.append(Chunk(transcript.id, len(chunks), start, start + len(text), text))
    return chunks


def _locate(full: str, piece: str, prev: Chunk | None) -> int:
    """Offset of `piece`: each chunk starts after the previous one's start and no later than its end.

    The last such occurrence is taken, so repeated text (the same short turn
    twice) can never move a chunk backwards and leave a gap. (langchain's own
    start_index assumes the overlap is measured in characters, which it is
    not here, so offsets are found and checked locally.)
    """
    if prev is None:
        at = 0 if full.startswith(piece) else -1
    else:
        at = full.rfind(piece, prev.char_start + 1, prev.char_end + len(piece))
        if at < 0:  # the splitter dropped separator text or repeated a chunk: take the next occurrence
            at = full.find(piece, prev.char_start)
    if at < 0:
        raise ValueError("chunk text not found in transcript: splitter changed the text")
    return at
