"""Transcript text made safe to store, write and print: no terminal control characters.

A transcript pasted from a terminal or a hostile file can hold escape sequences (an OSC
"ESC ] 0 ; title BEL" retitles the window; an unterminated one swallows the rest of the
output) and other control characters. The parser removes them before the normalised text
is built, so offsets index clean text; the writers and `jtbd search` remove them again,
for stores and caches written before that.
"""

from __future__ import annotations

import re

# A whole ANSI sequence (a CSI colour "ESC [ 31 m", an OSC title "ESC ] 0 ; x BEL", or their
# one-byte C1 forms), so no residue like "[31m" is left in a quote; an unterminated OSC loses
# its ESC only, never the rest of the line.
_SEQUENCE = (r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
             r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c\n\r]*(?:\x07|\x1b\\|\x9c)")
# C0 controls but tab, line feed and carriage return (line breaks count lines); DEL; C1 controls.
_CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_CONTROLS = re.compile(rf" *(?:{_SEQUENCE}|{_CONTROL})+ *")
# Controls an editor shows as a gap between words (vertical tab, form feed, the information
# separators, NEL): they become a space, so the words they separate stay apart.
_GAP = re.compile(r"[ \x0b\x0c\x1c-\x1f\x85]")


def _replacement(found: re.Match) -> str:
    return " " if _GAP.search(found.group()) else ""


def strip_controls(text: str) -> str:
    """`text` without control characters: one space where they stood between spaced words
    or were spacing themselves, nothing where they stood inside a word."""
    return _CONTROLS.sub(_replacement, text)
