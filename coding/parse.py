"""Read an interview transcript file into a `Transcript`.

Every format (plain text, Markdown, Word, WebVTT, SubRip, JSON segments) is first
read into cues -- one source line, subtitle cue or JSON segment each, with an
optional speaker and times -- and then normalised the same way: a cue without
a speaker continues the previous speaker, consecutive cues of one speaker
merge into one `Turn`, and every cue keeps its exact offsets as a `Segment`.
A Word .docx file is read as its paragraphs' text, one a line, and then as
plain text. Only `load_transcript` and `read_text` touch the disk; everything
else is pure.
"""

from __future__ import annotations

import codecs
import contextlib
import html
import io
import itertools
import json
import math
import os
import re
import stat
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from xml.etree import ElementTree

from jtbd.coding.text import strip_controls
from jtbd.schemas.transcript import Role, Segment, Transcript, Turn
from jtbd.settings import DEFAULT_MAX_FILE_MB, MB

SUPPORTED_SUFFIXES = (".txt", ".md", ".docx", ".vtt", ".srt", ".json")
_SUPPORTED = ", ".join(SUPPORTED_SUFFIXES)
QUESTION_SHARE = 0.3  # share of turns with a '?' that marks an unlabelled speaker as interviewer


class TranscriptError(ValueError):
    """A transcript that cannot be read; str() is one line naming the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem.replace("\n", " ")
        super().__init__(f"{self.path}: {self.problem}")


class _Problem(ValueError):
    """A problem found by a pure parser, before it knows which file it is in."""


@dataclass(frozen=True)
class _Cue:
    text: str
    speaker: str | None = None
    start: float | None = None
    end: float | None = None
    line: int | None = None  # where the cue's text begins in the source file (1-based)


# --- plain text and Markdown --------------------------------------------------

_TS = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,3})?"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# "[00:01:12] ", "(00:01:12) ", "[01:12] " or a bare "00:01:12 " before the label.
_STAMP_PREFIX = re.compile(rf"(?P<open>[\[(])?(?P<ts>{_TS})(?(open)[\])]|(?=\s))\s*")
_MD_LABEL = re.compile(r"\*\*(?P<label>[^*:]+?)\s*(?::\s*\*\*|\*\*\s*:)\s*(?P<text>.*)")
_LABEL_STAMP = rf"\s*[\[(]{_TS}[\])]"  # "Speaker 1 (00:03):" as Rev exports
# The colon must be followed by a space or end the line, so "at 10:30" is no label.
_LABEL = re.compile(rf"(?P<label>[^:]+?(?:{_LABEL_STAMP})?)\s*:(?:\s+(?P<text>.*))?")
_BRACKET_LABEL = re.compile(r"\[(?P<label>[^\]\d][^\]]*)\]\s*(?P<text>.*)")
_BARE_STAMP = re.compile(rf"[\[(]?(?P<ts>{_TS})[\])]?")  # a line that is only a time
_OTTER_HEADER = re.compile(rf"(?P<label>[^\s:][^:]*?)\s{{2,}}(?P<ts>{_TS})")  # "Dana Reyes  0:03"
# Looser headers, tried only in a file with no other labels: "Dana Reyes 0:03", "Dana Reyes - 00:00:03".
_LOOSE_HEADER = re.compile(rf"(?P<label>[^\s:\[\]][^:\[\]]*?)(?:\s+[-\u2013\u2014|\u00b7]\s+|\s)\[?(?P<ts>{_TS})\]?")
# Also only there: "Dana — text", "Dana - text", "Dana<TAB>text", "Dana [00:01:12] text" and "Q. text" / "A. text".
_LOOSE_LABEL = re.compile(
    r"(?P<label>[^\s:\[\]\-\u2013\u2014][^:\[\]\t]*?)(?:\t+|\s+(?:--?|[\u2013\u2014])\s+)(?P<text>\S.*)"
    rf"|(?P<stamped>[^\s:\[\]\-\u2013\u2014][^:\[\]\t]*?{_LABEL_STAMP})\s+(?P<after>\S.*)"
    r"|(?P<letter>[QAIR])\.\s+(?P<said>\S.*)"
)
_STAMP_AFTER_LABEL = re.compile(rf"[\[(](?P<ts>{_TS})[\])]\s*")  # "Dana: [00:01:12] text"
_DASH = re.compile(r"[-\u2013\u2014]+\s*")  # "- Dana: text", a subtitle's mark of a new speaker
_ROLE_WORDS = "interviewer|moderator|researcher|facilitator|host"
_SPEAKER_LIKE = re.compile(
    rf"(?:{_ROLE_WORDS}|interviewee|participant|respondent|speaker|q|a|i|int|p|r)(?:\s*\d+|\s+[a-z])?", re.I
)
# First words that start sentences, headers or sound notes, never a speaker's name.
_NOT_SPEAKERS = frozenset(
    "so and but well here here's there this that the it it's my our note notes yes no okay ok"
    " also then now because basically honestly anyway interview transcript date time title"
    " subject topic location duration recorded recording summary participants laughs laughter"
    " laughing crosstalk inaudible unintelligible music applause silence pause noise sighs"
    " right sure exactly yeah yep mhm hmm uh um totally absolutely true great thanks cool wow oh".split()
)


def _seconds(stamp: str) -> float:
    parts = stamp.replace(",", ".").split(":")
    return sum(float(p) * 60**i for i, p in enumerate(reversed(parts)))


def _looks_like_name(label: str) -> bool:
    words = re.sub(r"\([^)]*\)", " ", label).split()  # "Sam (Interviewer)" is named Sam
    return bool(words) and all(w[0].isupper() and not any(c.isdigit() for c in w) for w in words)


def _is_speaker_label(label: str, counts: Counter, recurring: bool = False) -> bool:
    """Guard against sentences with a colon ("Here's the thing: it broke") posing as labels.
    With `recurring`, a label must also head two lines or more (the looser label forms)."""
    words = label.split()
    if not words or len(words) > 4 or len(label) > 40:
        return False
    if words[0].lower().strip(".,!?'\"") in _NOT_SPEAKERS:
        return False
    if recurring:
        return counts[label] >= 2
    return counts[label] >= 2 or bool(_SPEAKER_LIKE.fullmatch(label)) or _looks_like_name(label)


def _split_label(text: str, brackets: bool = False, separators: bool = False) -> tuple[str | None, str]:
    """The label and the text after it; `separators` also reads the loose separator forms."""
    loose = separators and _LOOSE_LABEL.fullmatch(text)
    if loose:
        label = loose["label"] or loose["stamped"] or loose["letter"]
        return label.strip(), (loose["text"] or loose["after"] or loose["said"]).strip()
    match = (brackets and _BRACKET_LABEL.fullmatch(text)) or _MD_LABEL.fullmatch(text)
    match = match or _LABEL.fullmatch(text)
    if not match:
        return None, text
    label = match["label"].strip()
    dash = _DASH.match(label)
    return (label[dash.end():] if dash and dash.end() < len(label) else label), (match["text"] or "").strip()


def _read_line(line: str, loose: bool = False) -> tuple[str | None, _Cue, _Cue]:
    """The line's label candidate, its cue if that is a speaker label, and its cue if not.
    `loose` also reads "Name 0:03" / "Name - 0:03" headers and "[Name] text" labels."""
    header = _OTTER_HEADER.fullmatch(line) or (loose and _LOOSE_HEADER.fullmatch(line))
    if header:
        return header["label"].strip(), _Cue("", header["label"].strip(), _seconds(header["ts"])), _Cue(line)
    stamp = _STAMP_PREFIX.match(line)
    start = _seconds(stamp["ts"]) if stamp else None
    rest = line[stamp.end() :] if stamp else line
    # A bare "10:30 ..." without a label is speech, not a timestamp: keep it whole.
    plain = _Cue(rest, start=start) if stamp and stamp["open"] else _Cue(line)
    label, said = _split_label(rest, brackets=loose, separators=loose)
    if label is None:
        return None, plain, plain
    time_only = _BARE_STAMP.fullmatch(said) if loose else None
    if time_only:  # "[Dana Reyes] 10:03:04" on its own line: a header for the lines below
        return label, _Cue("", label, _seconds(time_only["ts"])), plain
    stamped = re.search(rf"{_LABEL_STAMP}$", label)
    if stamped:
        label, start = label[: stamped.start()], _seconds(stamped.group().strip(" \t[]()"))
    after = _STAMP_AFTER_LABEL.match(said)
    if after and start is None:  # "Dana: [00:01:12] text"
        said, start = said[after.end() :], _seconds(after["ts"])
    return label, _Cue(said, label, start), plain


def _txt_cues(text: str) -> list[_Cue]:
    numbered = [(n, line.strip()) for n, line in enumerate(_LINE_BREAK.split(text), 1) if line.strip()]
    cues = _txt_pass(numbered, loose=False)
    if not any(cue.speaker for cue in cues):
        # No "Name:" label anywhere: try the looser forms, each label heading two lines or more.
        cues = _txt_pass(numbered, loose=True)
    return cues


def _txt_pass(numbered: list[tuple[int, str]], loose: bool) -> list[_Cue]:
    lines = [line for _, line in numbered]
    headers = _name_over_stamp(lines)  # each a label-only cue that lends its time to the next
    stamps = set(headers)  # the header's next line is its time, not speech
    if loose and not headers:
        headers = dict.fromkeys(_name_alone(lines))
        stamps = set()
    read = {i: _read_line(line, loose) for i, line in enumerate(lines) if i not in headers and i - 1 not in stamps}
    counts = Counter(label for label, _, _ in read.values() if label)
    labelled = {i: said for i, (label, said, _) in read.items() if label and _is_speaker_label(label, counts, loose)}
    labels = [line if i in headers else labelled[i].speaker if i in labelled else None for i, line in enumerate(lines)]
    in_answers = _labels_in_answers(labels, [i in labelled and bool(labelled[i].text) for i in range(len(lines))])
    cues = []
    for i, (number, line) in enumerate(numbered):
        if i in headers:
            cues.append(_Cue("", line, headers[i]))
        elif i in read:
            cues.append(replace(labelled[i] if i in labelled and i not in in_answers else read[i][2], line=number))
    return cues


def _name_over_stamp(lines: list[str]) -> dict[int, float]:
    """Speaker headers exported as the name alone on a line and the time alone on the next
    ("Dana Reyes" / "00:01:12", as Riverside and some Descript exports write them): the
    line index of each name and its time in seconds. A file needs two such headers."""
    found = {}
    for i, (line, following) in enumerate(zip(lines, lines[1:])):
        stamp = _BARE_STAMP.fullmatch(following)
        if stamp and _header_name(line):
            found[i] = _seconds(stamp["ts"])
    return found if len(found) >= 2 else {}


def _header_name(line: str) -> bool:
    """A line that could be a speaker's name standing alone as a header."""
    words = line.split()
    return (0 < len(words) <= 4 and len(line) <= 40 and line[-1] not in ".,;:!?\"'"
            and words[0].lower() not in _NOT_SPEAKERS
            and bool(_looks_like_name(line) or _SPEAKER_LIKE.fullmatch(line)))


def _name_alone(lines: list[str]) -> list[int]:
    """Speaker headers written as the name alone on a line, with no colon or time, and the
    turn's text on the lines below ("DANA" / "So it broke again...", as screenplay-style and
    some podcast transcripts write them). Read only in a file with no other labels, and only
    when two names or more each head two turns or more (a one-off emphasis or title line does
    not recur): the line indexes of those headers."""
    found: dict[str, list[int]] = {}
    for i, (line, following) in enumerate(zip(lines, lines[1:])):
        if _header_name(line) and not _header_name(following):
            found.setdefault(line, []).append(i)
    recurring = [indexes for indexes in found.values() if len(indexes) >= 2]
    return sorted(i for indexes in recurring for i in indexes) if len(recurring) >= 2 else []


def _label_prefixes(cues: list[_Cue], brackets: bool) -> list[_Cue]:
    """Speakers from a "Name: text" (or "[Name] text") prefix of cues that have none."""
    split = [(c, *_split_label(c.text, brackets)) if c.speaker is None else (c, None, c.text) for c in cues]
    counts = Counter(label for _, label, _ in split if label)
    found = [label if label and _is_speaker_label(label, counts) else None for _, label, _ in split]
    in_answers = _labels_in_answers([cue.speaker or label for (cue, _, _), label in zip(split, found)],
                                    [bool(label and said) for (_, _, said), label in zip(split, found)])
    return [
        replace(cue, speaker=label, text=said) if label and i not in in_answers else cue
        for i, ((cue, _, said), label) in enumerate(zip(split, found))
    ]


def _labels_in_answers(labels: list[str | None], spoken: list[bool]) -> set[int]:
    """Lines whose label is words of an answer, not a speaker: "Price: it was double..." and
    "Support: nobody answered..." as an interviewee lists what went wrong. `labels` is each line's
    speaker label (None for a line without one), `spoken` whether text follows it on the line.

    A speaker recurs as a turn header and alternates with others. So where two labels or more
    each head two lines or more, name labels that each head a single line are text of the answer
    they follow when two or more of them come in a row (a list). A single one stays a speaker (a
    husband who says hello once), and so do role labels ("Speaker 3", "Interviewer 2"), another
    spelling of a speaker's name, a label alone on its line (a header) and labels before the first
    speaker's turn.
    """
    variants = _name_variants(Counter(label for label in labels if label))
    named = [variants.get(label, label) for label in labels]
    heads = Counter(label for label in named if label)
    if sum(n >= 2 for n in heads.values()) < 2:  # no conversation to measure against (a 2-line file)
        return set()

    def once(i: int) -> bool:
        return spoken[i] and heads[named[i]] == 1 and not _role_label(named[i])

    runs = [list(run) for _, run in itertools.groupby((i for i, label in enumerate(named) if label), key=once)]
    # the first run is before any speaker's turn: a title block ("Attendees: ...", "Product: ...")
    return {i for run in runs[1:] if len(run) >= 2 and once(run[0]) for i in run}


# --- subtitles: WebVTT and SubRip ---------------------------------------------

_VTT_TIME = r"(?:\d+:)?\d{2}:\d{2}[.,]\d{3}"
_VTT_TIMING = re.compile(rf"(?P<start>{_VTT_TIME})\s+-->\s+(?P<end>{_VTT_TIME})(?:\s.*)?")
_SRT_TIME = r"\d{1,2}:\d{2}:\d{2}[,.]\d{1,3}"
_SRT_TIMING = re.compile(rf"(?P<start>{_SRT_TIME})\s*-->\s*(?P<end>{_SRT_TIME})(?:\s.*)?")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?\s+([^>]*)>")  # <v Name>, <v.loud Name>
# Styling tags (<c>, <i>, <b>, </v>, <font ...>), inline <00:00:01.000> times, {\an8} positions.
_TAG = re.compile(r"</?(?:[a-zA-Z][^<>]*)?>|<\d{1,2}:[\d:.]+>|\{\\[^{}]*\}")
_VTT_META = re.compile(r"(?:NOTE|STYLE|REGION)(?:\s.*)?")


def _malformed(fmt: str, number: int, expected: str, got: str) -> _Problem:
    shown = got if len(got) <= 60 else got[:57] + "..."
    return _Problem(f"malformed {fmt}: line {number}: expected {expected}, got {shown!r}")


def _blocks(text: str) -> list[list[tuple[int, str]]]:
    """Blank-line separated blocks of (line number, stripped line)."""
    blocks: list[list[tuple[int, str]]] = [[]]
    for number, line in enumerate(_LINE_BREAK.split(text), 1):
        if line.strip():
            blocks[-1].append((number, line.strip()))
        elif blocks[-1]:
            blocks.append([])
    return [block for block in blocks if block]


def _clean(text: str) -> str:
    # After unescaping: "&#12;" is a form feed, a control character the raw text did not show.
    return strip_controls(html.unescape(_TAG.sub("", text))).strip()


def _voiced(raw: str, start: float, end: float, line: int | None) -> list[_Cue]:
    """One cue per voice in the cue text (crosstalk cues can hold several)."""
    parts = _VOICE.split(raw)
    pieces = [(None, parts[0]), *zip(parts[1::2], parts[2::2])]
    cues = [_Cue(_clean(said), (name or "").strip() or None, start, end, line) for name, said in pieces]
    return [cue for cue in cues if cue.text]


def _vtt_cue(block: list[tuple[int, str]]) -> list[_Cue]:
    if "-->" not in block[0][1] and len(block) > 1:
        block = block[1:]  # a cue identifier
    (number, timing), *body = block
    match = _VTT_TIMING.fullmatch(timing)
    if not match:
        raise _malformed("WebVTT", number, "a cue timing 'hh:mm:ss.mmm --> hh:mm:ss.mmm'", timing)
    first_line = body[0][0] if body else None
    return _voiced(" ".join(line for _, line in body), _seconds(match["start"]), _seconds(match["end"]), first_line)


def _vtt_cues(text: str) -> list[_Cue]:
    blocks = _blocks(text)
    (number, first), *header = blocks[0]
    if not re.match(r"WEBVTT(?:[ \t]|$)", first):
        raise _malformed("WebVTT", number, "the 'WEBVTT' header on the first line", first)
    for number, line in (line for line in header if "-->" in line[1]):
        raise _malformed("WebVTT", number, "a blank line between the header and the first cue", line)
    cues = [cue for block in blocks[1:] if not _VTT_META.fullmatch(block[0][1]) for cue in _vtt_cue(block)]
    return _label_prefixes(cues, brackets=False)


def _srt_cue(block: list[tuple[int, str]]) -> list[_Cue]:
    (number, first), *rest = block
    if first.isdigit() and rest:
        (number, first), *rest = rest  # the cue number, which some tools leave out
    match = _SRT_TIMING.fullmatch(first)
    if not match:
        raise _malformed("SRT", number, "a cue number and a timing 'hh:mm:ss,mmm --> hh:mm:ss,mmm'", first)
    text = _clean(" ".join(line for _, line in rest))
    return [_Cue(text, None, _seconds(match["start"]), _seconds(match["end"]), rest[0][0])] if text else []


def _srt_cues(text: str) -> list[_Cue]:
    return _label_prefixes([cue for block in _blocks(text) for cue in _srt_cue(block)], brackets=True)


# --- JSON segments ------------------------------------------------------------

_SPEAKER_KEYS = ("speaker", "speaker_label", "speaker_name")
_JSON_SHAPE = ("a list of segments, or an object with a 'segments' (or 'utterances') list,"
               " each segment an object with 'speaker', 'text' and optional 'start'/'end' seconds")
_JSON_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}


def _describe(value: object) -> str:
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)[:6]}"
    return _JSON_TYPES.get(type(value), "a number")


def _json_items(data: object) -> list:
    items = data
    if isinstance(data, dict):
        items = next((data[k] for k in ("segments", "utterances") if isinstance(data.get(k), list)), None)
    if not isinstance(items, list):
        raise _Problem(f"unexpected JSON shape: expected {_JSON_SHAPE}; got {_describe(data)}")
    return items


def _json_time(item: dict, key: str, number: int) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite(_as_float(value, key, number), key, number)
    if isinstance(value, str) and re.fullmatch(rf"\d+(?:\.\d+)?|{_TS}", value.strip()):
        return _finite(_seconds(value.strip()), key, number)
    shown = _describe(value) if isinstance(value, (dict, list)) else repr(value)  # a nested repr can be huge
    problem = f"'{key}' must be seconds or 'hh:mm:ss', got {shown if len(shown) <= 60 else shown[:57] + '...'}"
    raise _Problem(f"unexpected JSON shape: segment {number}: {problem}")


def _as_float(value: int | float, key: str, number: int) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise _Problem(f"segment {number}: '{key}' is too large to be a time") from None


def _finite(seconds: float, key: str, number: int) -> float:
    """Python's json reads NaN and Infinity (and 1e999 as Infinity): none of them is a time."""
    if math.isfinite(seconds):
        return seconds
    what = "NaN" if math.isnan(seconds) else "-Infinity" if seconds < 0 else "Infinity"
    raise _Problem(f"segment {number}: '{key}' is {what}, not a time")


def _json_speaker(item: dict) -> str | None:
    value = next((item[k] for k in _SPEAKER_KEYS if item.get(k) not in (None, "")), None)
    if isinstance(value, str):
        return strip_controls(value).strip() or None
    return None if value is None else f"Speaker {value}"  # diarisation tools number speakers 0, 1, ...


def _json_cue(item: object, number: int, line: int | None) -> list[_Cue]:
    if not isinstance(item, dict) or not isinstance(item.get("text"), str):
        problem = f"expected an object with a 'text' string, got {_describe(item)}"
        raise _Problem(f"unexpected JSON shape: segment {number}: {problem}")
    # JSON escapes control characters ("\u001b"), so they are removed here, after decoding.
    said = (strip_controls(part).strip() for part in _LINE_BREAK.split(item["text"]))
    text = " ".join(part for part in said if part)
    times = _json_time(item, "start", number), _json_time(item, "end", number)
    return [_Cue(text, _json_speaker(item), *times, line)] if text else []


def _json_text_lines(text: str, items: list) -> list[int | None]:
    """The line of each segment's "text" value in the file, found in file order as JSON writes
    the string (escaped or not); None for one that cannot be found."""
    lines, at, line = [], 0, 1  # `line` is the line of offset `at`
    for item in items:
        said = item.get("text") if isinstance(item, dict) else None
        found = -1
        if isinstance(said, str):
            for written in dict.fromkeys((json.dumps(said, ensure_ascii=False), json.dumps(said))):
                found = text.find(written, at)
                if found >= 0:
                    break
        if found < 0:
            lines.append(None)
            continue
        line += text.count("\n", at, found)
        lines.append(line)
        at = found + len(written)  # a JSON string holds no raw line break
    return lines


_A_DAY = 86_400.0  # seconds: no interview is longer, so larger times are milliseconds
_FIVE_MINUTES = 300.0


def _ms(value: float | None) -> float | None:
    return None if value is None else value / 1000.0


def _json_cues(text: str) -> list[_Cue]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise _Problem(f"malformed JSON: line {error.lineno} column {error.colno}: {error.msg}") from None
    except RecursionError:  # json's decoder recurses once per level of nesting
        raise _Problem("not a transcript JSON: nested too deeply (expected a flat list of segments)") from None
    except ValueError:  # the only other one: an integer past Python's 4,300-digit limit
        raise _Problem("not a transcript JSON: a number is too long to read") from None
    items = _json_items(data)
    lines = _json_text_lines(text, items)
    cues = [cue for number, (item, line) in enumerate(zip(items, lines), 1) for cue in _json_cue(item, number, line)]
    if _in_milliseconds(cues):  # as some transcription services write them
        cues = [replace(cue, start=_ms(cue.start), end=_ms(cue.end)) for cue in cues]
    return cues


def _in_milliseconds(cues: list[_Cue]) -> bool:
    """Whether the segments' times are milliseconds: a time over a day's worth of seconds, or
    whole numbers only, with segments that start a median of over five minutes apart, which
    no conversation does (a short file in milliseconds: segments 4,000 apart, not 4,000 seconds)."""
    times = [t for cue in cues for t in (cue.start, cue.end) if t is not None]
    if not times:
        return False
    starts = [cue.start for cue in cues if cue.start is not None]
    gaps = sorted(b - a for a, b in zip(starts, starts[1:]) if b > a)
    whole = all(t == int(t) for t in times)
    return max(times) > _A_DAY or (whole and bool(gaps) and gaps[len(gaps) // 2] > _FIVE_MINUTES)


# --- roles --------------------------------------------------------------------

_INTERVIEWER_WORD = re.compile(rf"(?<!\w)(?:{_ROLE_WORDS})s?(?!\w)", re.I)


def _labelled_interviewer(label: str) -> bool:
    return bool(_INTERVIEWER_WORD.search(label) or re.fullmatch(r"(?:q|i|int)\.?", label, re.I))


def _role_label(label: str) -> bool:
    """A label naming a role, not a person: "Interviewer", "Speaker 2", "P3", "Q"."""
    return bool(_SPEAKER_LIKE.fullmatch(label)) or _labelled_interviewer(label)


def _names_match(name: str, label: str) -> bool:
    """Case-insensitive whole-word match: "sam" matches "Sam (Interviewer)", not "Samantha"."""
    name = name.strip()
    return bool(name) and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", label, re.IGNORECASE) is not None


def _named(speakers: list[str], names, who: str) -> list[str]:
    found = [s for s in speakers if any(_names_match(n, s) for n in names)]
    if not found:
        given = ", ".join(repr(n) for n in names)
        raise _Problem(f"no speaker matches the {who} name(s) {given}; speakers are: {', '.join(speakers)}")
    return found


_FIRST_PERSON = re.compile(r"(?<![\w'])(?:i|i'm|i'd|i've|i'll|me|my|mine|myself|we|we're|we'd|we've|our|us)(?![\w'])", re.I)
_SECOND_PERSON = re.compile(r"(?<![\w'])(?:you(?!\s+know\b)|you're|you'd|you've|you'll|your|yours|yourself)(?![\w'])", re.I)


def _own_story_words(turns: list[tuple[str, str]], speaker: str) -> float:
    """A speaker's words, weighted by how much they talk about themselves.

    The weight is the share of first-person pronouns (I, me, my, we, ...) among
    first- and second-person ones (you, your, ...; "you know" is filler, not
    counted): an interviewee tells their own story, an interviewer asks about
    and reflects back "you". A speaker with neither gets 0.5.
    """
    text = " ".join(t for s, t in turns if s == speaker)
    first, second = len(_FIRST_PERSON.findall(text)), len(_SECOND_PERSON.findall(text))
    share = first / (first + second) if first + second else 0.5
    return len(text.split()) * share


def _question_share(turns: list[tuple[str, str]], speaker: str) -> float:
    asked = ["?" in text for s, text in turns if s == speaker]
    return sum(asked) / len(asked)


def assign_roles(turns: list[tuple[str, str]], interviewers=(), interviewees=()) -> dict[str, Role]:
    """Each speaker's role, from the (speaker, text) of every merged turn.

    Names are matched case-insensitively as whole words: "Sam" matches the
    label "Sam (Interviewer)".

    1. If interviewer names are given, the speakers they match are the
       interviewers.
    2. Otherwise, speakers labelled like an interviewer are: a label containing
       the word interviewer, moderator, researcher, facilitator or host, or a
       label that is exactly "Q", "I" or "Int".
    3. If no label says so, the speaker who says the most words about
       themselves is the interviewee (their word count weighted by the share
       of first-person pronouns among first- and second-person ones, so an
       interviewer who talks more than the customer but says "you" is not
       taken for them), and each other speaker is an interviewer when at least 30%
       of their turns contain a '?', else a third party (role other).
    4. Everyone else is an interviewee -- unless interviewee names are given:
       then only the speakers they match are interviewees (and they replace
       the most-words guess of step 3), and the rest are role other.

    Raises ValueError when a given name matches no speaker, or when no
    interviewee is left.
    """
    speakers = list(dict.fromkeys(s for s, _ in turns))
    if interviewers:
        asking = _named(speakers, interviewers, "interviewer")
    else:
        asking = [s for s in speakers if _labelled_interviewer(s)]
    if interviewees:
        coded = _named(speakers, interviewees, "interviewee")
    elif asking:
        coded = [s for s in speakers if s not in asking]
    else:
        coded = [max(speakers, key=lambda s: _own_story_words(turns, s))]
    if not asking:
        asking = [s for s in speakers if s not in coded and _question_share(turns, s) >= QUESTION_SHARE]
    roles = {s: Role.interviewee if s in coded else Role.other for s in speakers}
    roles.update(dict.fromkeys(asking, Role.interviewer))
    if Role.interviewee not in roles.values():
        raise _Problem("no interviewee speech found; check --interviewer")
    return roles


# --- normalising --------------------------------------------------------------

_READERS = {"txt": _txt_cues, "md": _txt_cues, "docx": _txt_cues, "vtt": _vtt_cues, "srt": _srt_cues,
            "json": _json_cues}
_LABEL_HINTS = {
    "txt": "start each turn with a speaker label, 'Name: text' (e.g. 'Interviewer: ...')",
    "md": "start each turn with a speaker label, 'Name: text' or '**Name:** text'",
    "docx": "start each turn's paragraph with a speaker label, 'Name: text' (e.g. 'Interviewer: ...')",
    "vtt": "give each cue a <v Name> voice tag or a 'Name: text' prefix",
    "srt": "start each cue with 'Name: text' or '[Name] text'",
    "json": "give each segment a 'speaker'",
}


def _merge_name_variants(cues: list[_Cue]) -> list[_Cue]:
    """One person under several labels is one speaker: "Brian Walker:" at first and "Brian:"
    after it, or "BRIAN:" beside "Brian:". A name label whose words begin exactly one longer
    name label (case aside) becomes that label, and spellings that differ only in case become
    the commonest. Role labels ("Interviewer", "Speaker 2", "Sam (Host)") are left as they are,
    and so is a first name that begins two full names ("Sam" beside "Sam Lee" and "Sam Ortiz")."""
    counts = Counter(c.speaker for c in cues if c.speaker)
    canonical = _name_variants(counts)
    if all(canonical.get(label, label) == label for label in counts):
        return cues
    return [replace(c, speaker=canonical.get(c.speaker, c.speaker)) if c.speaker else c for c in cues]


def _name_variants(counts: Counter) -> dict[str, str]:
    """The label each name label stands for (itself if none other), from how often each heads a line."""
    names = [label for label in counts if _looks_like_name(label) and not _SPEAKER_LIKE.fullmatch(label)
             and not _labelled_interviewer(label)]
    spellings: dict[tuple[str, ...], list[str]] = {}
    for label in names:
        spellings.setdefault(tuple(w.lower() for w in label.split()), []).append(label)
    canonical = {label: max(same, key=lambda s: (counts[s], s)) for same in spellings.values() for label in same}
    for words, same in spellings.items():
        longer = [w for w in spellings if len(w) > len(words) and w[:len(words)] == words]
        if len(longer) == 1:
            canonical.update(dict.fromkeys(same, canonical[spellings[longer[0]][0]]))
    return canonical


def _continue_speakers(cues: list[_Cue]) -> list[_Cue]:
    """Give unlabelled cues the previous speaker; a label-only cue lends its time to the next."""
    out, speaker, pending = [], None, None
    for cue in cues:
        speaker = cue.speaker or speaker
        if not cue.text:
            pending = cue.start  # an Otter header, or "Name:" alone on its line
        elif speaker is not None:  # text before the first label is a title or preamble
            out.append(replace(cue, speaker=speaker, start=cue.start if cue.start is not None else pending))
            pending = None
    return out


def _turn(index: int, speaker: str, cues: list[_Cue], offset: int, role: Role) -> Turn:
    segments, at = [], offset
    for cue in cues:
        segments.append(Segment(char_start=at, char_end=at + len(cue.text), start=cue.start, end=cue.end, line=cue.line))
        at += len(cue.text) + 1  # the joining space
    text = " ".join(cue.text for cue in cues)
    start = next((c.start for c in cues if c.start is not None), None)
    end = next((c.end for c in reversed(cues) if c.end is not None), None)
    return Turn(index=index, speaker=speaker, role=role, text=text, start=start, end=end,
                char_start=offset, char_end=offset + len(text), segments=segments)


def _render(grouped: list[tuple[str, list[_Cue]]], roles: dict[str, Role]) -> tuple[str, list[Turn]]:
    parts, turns, offset = [], [], 0
    for index, (speaker, cues) in enumerate(grouped):
        turn = _turn(index, speaker, cues, offset + len(speaker) + 2, roles[speaker])
        turns.append(turn)
        parts.append(f"{speaker}: {turn.text}\n")
        offset = turn.char_end + 1
    return "".join(parts), turns


def _parse(text: str, source: str, fmt: str, interviewers, interviewees) -> Transcript:
    if fmt not in _READERS:
        raise _Problem(f"unsupported format {fmt!r}; supported: {_SUPPORTED}")
    if not text.strip():
        raise _Problem("file is empty" if not text else "file contains only whitespace")
    if fmt != "json":
        # Before labels are read ("ESC[1mDana:ESC[0m hi" is Dana's turn); line breaks stay, so lines count true.
        text = strip_controls(text)
    cues = _READERS[fmt](text)
    if not any(cue.speaker for cue in cues):
        raise _Problem(f"no speaker labels found; {_LABEL_HINTS[fmt]}")
    cues = _merge_name_variants(cues)
    grouped = [(s, list(g)) for s, g in itertools.groupby(_continue_speakers(cues), key=lambda c: c.speaker)]
    if not grouped:
        raise _Problem("no speech found after the speaker labels")
    roles = assign_roles([(s, " ".join(c.text for c in g)) for s, g in grouped], interviewers, interviewees)
    normalised, turns = _render(grouped, roles)
    name = PurePath(source).name
    return Transcript(id=PurePath(name).stem, source=name, format=fmt, text=normalised, turns=turns,
                      interviewers=[s for s, role in roles.items() if role is Role.interviewer])


def parse_transcript(text: str, source: str, fmt: str, interviewers=(), interviewees=()) -> Transcript:
    """Parse decoded transcript text; `fmt` is a suffix without the dot (txt, md, docx, vtt, srt, json)."""
    fmt = fmt.lower().lstrip(".")
    try:
        return _parse(text.removeprefix("\ufeff"), source, fmt, interviewers, interviewees)
    except _Problem as problem:
        raise TranscriptError(source, str(problem)) from None


def speaker_roles(transcript: Transcript) -> list[tuple[str, str, int]]:
    """Who was found in a transcript, in order of first turn: (speaker label, role, number of
    turns), so a run's summary can show the role each speaker was given."""
    turns = Counter(turn.speaker for turn in transcript.turns)
    roles = {turn.speaker: turn.role.value for turn in transcript.turns}
    return [(speaker, role, turns[speaker]) for speaker, role in roles.items()]


# --- the file -----------------------------------------------------------------


DEFAULT_MAX_BYTES = int(DEFAULT_MAX_FILE_MB * MB)
_SPECIAL = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
            (stat.S_ISSOCK, "a socket"))


def file_problem(info: os.stat_result, max_bytes: int) -> str | None:
    """Why a file with this stat is not read, or None: a FIFO blocks a read forever, a device
    (/dev/zero) never ends, and a file of gigabytes fills memory before it could be refused."""
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a file"
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _SPECIAL if test(info.st_mode)), "a special file")
        return f"not a regular file ({kind}); give the transcript file itself"
    if info.st_size > max_bytes:
        return too_large(info.st_size, max_bytes)
    return None


def too_large(size: int, max_bytes: int) -> str:
    return (f"file is too large: {_megabytes(size)}, over the limit of {_megabytes(max_bytes)} (max_file_mb); "
            f"if it is a transcript, raise max_file_mb in the environment (JTBD_MAX_FILE_MB) or the config file")


def _megabytes(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB / 10 else f"{n:,} bytes"


def _read_bytes(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    try:
        # Non-blocking: opening a FIFO would wait for a writer. The checks use the open file,
        # so a path swapped between a check and the read cannot slip past them.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        with open(fd, "rb") as file:
            problem = file_problem(os.fstat(fd), max_bytes)
            data = b"" if problem else file.read(max_bytes + 1)
            if len(data) > max_bytes:  # it grew after its stat
                problem = too_large(max(len(data), os.fstat(fd).st_size), max_bytes)
    except OSError as error:
        known = {FileNotFoundError: "file not found", IsADirectoryError: "is a directory, not a file"}
        problem = known.get(type(error), f"cannot read the file: {error.strerror}")
        raise TranscriptError(path, problem) from None
    if problem:
        raise TranscriptError(path, problem)
    return data


def _decode(data: bytes, path: Path) -> str:
    # Word's and Notepad's "Unicode" text is UTF-16 with a byte order mark: full of NUL bytes, yet text.
    encoding = "UTF-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "UTF-8"
    if b"\x00" in data and encoding == "UTF-8":
        problem = f"looks like a binary file (it contains NUL bytes); export it as text: {_SUPPORTED}"
        raise TranscriptError(path, problem)
    try:
        return data.decode("utf-16" if encoding == "UTF-16" else "utf-8-sig")
    except UnicodeDecodeError as error:
        if encoding == "UTF-8":
            # Not UTF-8: most likely Windows "ANSI" (what Word and Notepad save there), curly quotes as 0x92.
            with contextlib.suppress(UnicodeDecodeError):
                return data.decode("cp1252")
            encoding = "UTF-8 or Windows-1252"
        line = data[: error.start].count(b"\n") + 1
        problem = f"not valid {encoding} (byte 0x{data[error.start]:02x} on line {line}); re-save the file as UTF-8"
        raise TranscriptError(path, problem) from None


_WORD = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
# Word writes a text box twice, as a drawing (mc:Choice) and as an older VML shape (mc:Fallback).
_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_PARAGRAPH = f"{_WORD}p"
_RUN_TEXT = {f"{_WORD}tab": "\t", f"{_WORD}br": "\n", f"{_WORD}cr": "\n"}  # w:t holds the words
_DOCX_LIMIT = 64 * 2**20  # bytes of document XML: a long interview is well under 1 MB


def _docx_text(data: bytes, path: Path) -> str:
    """A Word .docx file's text: one line per paragraph (in tables and text boxes too), in document
    order; a tab as a tab and a manual line break as a line break. Comments, headers and footers
    (other parts of the file) are left out."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            info = archive.getinfo("word/document.xml")
            if info.file_size > _DOCX_LIMIT:
                raise TranscriptError(path, f"the document's text is too large ({info.file_size} bytes)")
            root = ElementTree.fromstring(archive.read(info))
    except zipfile.BadZipFile:
        raise TranscriptError(path, "not a Word .docx file (it is not a zip archive); save it as .docx or .txt") from None
    except KeyError:
        raise TranscriptError(path, "not a Word .docx file (no word/document.xml inside)") from None
    except ElementTree.ParseError as error:
        raise TranscriptError(path, f"the document's XML does not parse: {error}") from None
    return "\n".join(_paragraph_text(p) for p in _in_order(root, stop=(_FALLBACK,)) if p.tag == _PARAGRAPH)


def _in_order(node: ElementTree.Element, stop: tuple[str, ...]) -> Iterator[ElementTree.Element]:
    """The elements below `node` in document order, leaving out `stop` elements and all inside
    them: a loop, not recursion, as a crafted file can nest thousands deep."""
    below = list(reversed(node))
    while below:
        element = below.pop()
        if element.tag not in stop:
            yield element
            below.extend(reversed(element))


def _paragraph_text(paragraph: ElementTree.Element) -> str:
    """The paragraph's own text. A text box anchored in it holds paragraphs of its own, each read as
    a line of its own, never glued onto this one."""
    parts = []
    for node in _in_order(paragraph, stop=(_PARAGRAPH, _FALLBACK)):
        if node.tag == f"{_WORD}t":
            parts.append(node.text or "")
        elif node.tag in _RUN_TEXT:
            parts.append(_RUN_TEXT[node.tag])
    return "".join(parts)


def _file_text(data: bytes, path: Path) -> str:
    return _docx_text(data, path) if path.suffix.lower() == ".docx" else _decode(data, path)


def read_text(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """A transcript file's text as `load_transcript` reads it (UTF-8, UTF-16 with a byte order
    mark, or Windows-1252; a .docx file's paragraphs, one a line), its line breaks as written."""
    path = Path(path)
    return _file_text(_read_bytes(path, max_bytes), path)


def load_transcript(path: str | Path, interviewers=(), interviewees=(),
                    max_bytes: int = DEFAULT_MAX_BYTES) -> Transcript:
    """Read a transcript file; raises TranscriptError naming the file and the problem (also for
    a FIFO, a device, or a file over `max_bytes`: Settings.max_file_bytes)."""
    path = Path(path)
    data = _read_bytes(path, max_bytes)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        shown = path.suffix or "(no extension)"
        raise TranscriptError(path, f"unsupported file type {shown!r}; supported: {_SUPPORTED}")
    try:
        return parse_transcript(_file_text(data, path), path.name, path.suffix[1:], interviewers, interviewees)
    except TranscriptError as error:
        raise TranscriptError(path, error.problem) from None
