"""The transcript model every input format normalises to.

`Transcript.text` is the normalised text: one line per turn, rendered as
``"{speaker}: {text}\\n"``. Every offset in the product (turns, chunks, codes,
gold spans) is a character offset into this string, so a code's quote is
always ``transcript.text[char_start:char_end]``.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field


class Role(str, Enum):
    interviewer = "interviewer"
    interviewee = "interviewee"
    other = "other"  # a third party (a spouse who joins); not coded


class Segment(BaseModel):
    """One cue / segment / line of the source file inside a turn (turns merge consecutive cues)."""

    char_start: int
    char_end: int
    start: float | None = None
    end: float | None = None
    line: int | None = Field(default=None, description="the line of the source file where this cue's text begins (1-based)")


class Turn(BaseModel):
    index: int
    speaker: str
    role: Role
    text: str
    start: float | None = Field(default=None, description="seconds from the start of the recording")
    end: float | None = None
    char_start: int = Field(description="offset of the turn's text (after the label) in Transcript.text")
    char_end: int
    segments: list[Segment] = Field(default_factory=list)

    def segment_at(self, offset: int) -> Segment | None:
        """The cue containing `offset`, if any."""
        return next((seg for seg in self.segments if seg.char_start <= offset < seg.char_end), None)

    def time_at(self, offset: int) -> float | None:
        """Start time of the cue containing `offset`, else the turn's start."""
        seg = self.segment_at(offset)
        return seg.start if seg is not None and seg.start is not None else self.start

    def line_at(self, offset: int) -> int | None:
        """The source file's line where the cue containing `offset` begins, if known."""
        seg = self.segment_at(offset)
        return seg.line if seg is not None else None

    @property
    def is_coded(self) -> bool:
        return self.role is Role.interviewee


class Transcript(BaseModel):
    id: str = Field(description="stable id: the file stem")
    source: str = Field(description="the file name")
    format: str = Field(description="txt | md | docx | vtt | srt | json")
    text: str
    turns: list[Turn]
    interviewers: list[str]

    def interviewee_turns(self) -> list[Turn]:
        return [t for t in self.turns if t.is_coded]

    def turn_at(self, offset: int) -> Turn | None:
        """The turn whose text contains `offset`, if any."""
        for turn in self.turns:
            if turn.char_start <= offset < turn.char_end:
                return turn
        return None


def format_timestamp(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
