"""Merge codes from overlapping chunks so a passage is coded once.

Chunks overlap, so the same words can come back twice. Two codes are the same
when they have the same label and their spans overlap by at least half of the
shorter one; the better-aligned (then longer, then earlier) one is kept.
Different labels on the same words are both kept: a line can be a push and a
quote at once.
"""

from __future__ import annotations

from typing import Any, Iterable

SAME_SPAN_RATIO = 0.5


def overlap(a: Any, b: Any) -> int:
    ga, gb = a.grounding, b.grounding
    return max(0, min(ga.char_end, gb.char_end) - max(ga.char_start, gb.char_start))


def same_code(a: Any, b: Any) -> bool:
    if a.label != b.label or a.grounding.transcript != b.grounding.transcript:
        return False
    shorter = min(a.grounding.char_end - a.grounding.char_start, b.grounding.char_end - b.grounding.char_start)
    return shorter > 0 and overlap(a, b) >= SAME_SPAN_RATIO * shorter


def _preference(code: Any) -> tuple:
    g = code.grounding
    return (-g.alignment_score, -(g.char_end - g.char_start), g.char_start)


def merge_codes(codes: Iterable[Any]) -> list[Any]:
    kept: list[Any] = []
    for code in sorted(codes, key=_preference):
        if not any(same_code(code, other) for other in kept):
            kept.append(code)
    return sorted(kept, key=lambda c: (c.grounding.char_start, c.label))
