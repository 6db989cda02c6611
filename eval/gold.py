"""The gold set: hand-coded transcripts, loaded and aligned to exact offsets.

A gold file ``<id>.gold.json`` sits beside its transcript ``<id>.<ext>`` (see
eval/CODING_GUIDE.md section 9). Every gold quote must be the interviewee's
words character for character, inside one turn and one cue: the scorer
compares spans, so a quote that only fuzzy-matches would move the target.
`validate_gold` lists every violation; `load_gold` refuses a file that has any;
`load_gold_scorable` (what `jtbd eval` uses on a folder) leaves out only the
codes that break a rule, so one mistyped quote does not cost a whole interview.

Only ``"transcript"`` and ``"codes"`` are required, so a set written to the
format in the README loads as it is:

- ``"interviewers"`` / ``"interviewees"`` (speaker labels) are optional. When
  neither is given, the roles are inferred as ``jtbd code`` infers them, and
  the speakers the gold quotes were taken from are the ones coded: a second
  interviewee (a couple interviewed together) or a talkative interviewer
  cannot turn the coders' own quotes into violations.
- A quote copied from a hard-wrapped file holds the file's line breaks
  ("waking up with\nmy back"); the parser joins the lines of a turn with one
  space, so a quote that is in the file as written is aligned with its
  whitespace collapsed, across the lines of its turn.
- A note is what the coding guide asks of our own set, not a condition for
  scoring: a code without one loads.
- Three violations leave a code's span and meaning certain (`ScoredAnyway`):
  a quote exact in one interviewee turn of the parsed text but with a space
  where the file has a line break or a cue edge; a quote whose words are in
  one interviewee turn in the same order but not character for character
  (curly against straight apostrophes, case, punctuation, or quote marks or a
  speaker label around it: copied through a word processor); and a job
  statement not in the job-story form. `validate_gold` and `load_gold` report them;
  `load_gold_scorable` keeps their codes.

The parse function is a parameter so the gold tools work (and are tested)
without depending on one parser implementation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from jtbd.coding.ground import MIN_QUOTE_CHARS, Span, ground_quote
from jtbd.eval.score import FORCE_TYPES, KINDS, is_job_story
from jtbd.schemas.codebook import Alignment, Dimension
from jtbd.schemas.transcript import Role, Transcript, Turn

GOLD_SUFFIX = ".gold.json"
DIMENSIONS = tuple(d.value for d in Dimension)
NEEDS_NOTE = ("force", "trigger", "quote")  # the coding guide: jobs need no note (tests check our set)
NO_FUZZY = 101  # above rapidfuzz's 0-100 scale, so the fuzzy step can never pass

ParseFn = Callable[..., Transcript]


class ScoredAnyway(str):
    """A violation of the format that leaves the code's span and meaning certain, so `jtbd eval`
    still scores it: a quote that is exact in the parsed text of one interviewee turn but crosses
    a line break or a cue edge of the file (copied from a page that rendered a hard-wrapped file
    as running text, or across two subtitle cues), a quote whose words are in one interviewee turn
    in order but differ in case, punctuation or typography (its span is the one they match), or a
    job statement not in the job-story form.
    `validate_gold` and `load_gold` report it like any other."""


class GoldError(ValueError):
    """A gold file that violates the format; `problems` holds one line per violation."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class GoldCode:
    kind: str
    quote: str
    force: str | None = None
    dimension: str | None = None
    statement: str | None = None
    note: str | None = None
    # filled in by alignment
    char_start: int | None = None
    char_end: int | None = None
    turn_index: int | None = None


@dataclass
class GoldSet:
    gold_path: Path
    transcript_path: Path
    transcript: Transcript
    codes: list[GoldCode]
    interviewers: list[str]
    interviewees: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return gold_id(self.gold_path)


def _default_parse(path: Path, interviewers: Sequence[str] = (), interviewees: Sequence[str] = ()) -> Transcript:
    # Imported late: the parser is a separate module and the gold tools must load without it.
    from jtbd.coding.parse import load_transcript

    return load_transcript(path, interviewers=interviewers, interviewees=interviewees)


def gold_id(gold_path: Path) -> str:
    return Path(gold_path).name.removesuffix(GOLD_SUFFIX)


def find_gold_files(folder: Path | str) -> list[Path]:
    """Every ``*.gold.json`` under `folder`, sorted so runs are reproducible."""
    return sorted(Path(folder).rglob(f"*{GOLD_SUFFIX}"))


def load_gold(gold_path: Path | str, parse: ParseFn = _default_parse) -> GoldSet:
    """Read, parse and align one gold file; raise GoldError listing every violation."""
    gold, problems, _ = _check(Path(gold_path), parse)
    if problems:
        raise GoldError(problems)
    return gold


def load_gold_scorable(gold_path: Path | str, parse: ParseFn = _default_parse) -> tuple[GoldSet | None, list[str]]:
    """For scoring someone's set: the file with the codes that pass, and every violation.

    A code that breaks a rule (a quote not in the transcript, a duplicate ...) is left out, not
    the whole interview; the file itself is left out (None) only when it cannot be read, its
    transcript is missing or does not parse. A `ScoredAnyway` violation keeps its code."""
    gold, problems, bad = _check(Path(gold_path), parse)
    if gold is not None and bad:
        gold = replace(gold, codes=[c for i, c in enumerate(gold.codes) if i not in bad])
    return gold, problems


def validate_gold(gold_path: Path | str, parse: ParseFn = _default_parse) -> list[str]:
    """Every violation in one gold file, one line each naming file, code index and problem."""
    return _check(Path(gold_path), parse)[1]


# --- the checks ----------------------------------------------------------------


def _check(gold_path: Path, parse: ParseFn) -> tuple[GoldSet | None, list[str], set[int]]:
    """The gold set (None if the file cannot be used at all), every violation, and the indices
    of the codes that violate a rule."""
    data, problem = _read_json(gold_path)
    if problem:
        return None, [f"{gold_path}: {problem}"], set()
    transcript_path, problems = _transcript_path(gold_path, data)
    if transcript_path is None:
        return None, problems, set()
    interviewers, interviewees = list(data.get("interviewers") or []), list(data.get("interviewees") or [])
    named = bool(interviewers or interviewees)  # before any are taken from the quotes
    transcript, problem = _parse(transcript_path, interviewers, interviewees, parse)
    if problem:
        return None, problems + [f"{gold_path}: {problem}"], set()
    source = _file_text(transcript_path)
    codes = [_gold_code(raw) for raw in data["codes"]]
    if not named:
        quoted = _quoted_speakers(codes, transcript, source)
        if quoted and quoted != {t.speaker for t in transcript.interviewee_turns()}:
            interviewees = sorted(quoted)
            transcript, problem = _parse(transcript_path, interviewers, interviewees, parse)
            if problem:
                return None, problems + [f"{gold_path}: {problem}"], set()
    bad = set()
    for index, code in enumerate(codes):
        found = _code_problems(code, transcript, source, named)
        problems += [type(p)(f"{gold_path}: code {index}: {p}") for p in found]  # keeps ScoredAnyway
        bad.update([index] if any(not isinstance(p, ScoredAnyway) for p in found) else [])
    for index, problem in _duplicates(codes):
        problems.append(f"{gold_path}: code {index}: {problem}")
        bad.add(index)
    return GoldSet(gold_path, transcript_path, transcript, codes, interviewers, interviewees), problems, bad


def _read_json(gold_path: Path) -> tuple[dict | None, str | None]:
    try:
        data = json.loads(gold_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"bad JSON: {err}"
    if not isinstance(data, dict):
        return None, "bad JSON: the top level must be an object"
    if not isinstance(data.get("codes"), list) or not all(isinstance(c, dict) for c in data["codes"]):
        return None, 'bad JSON: "codes" must be a list of objects'
    for key in ("interviewers", "interviewees"):
        if data.get(key) is not None and not _string_list(data[key]):
            return None, f'"{key}" must be a list of speaker labels'
    return data, None


def _string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _transcript_path(gold_path: Path, data: dict) -> tuple[Path | None, list[str]]:
    name = data.get("transcript")
    if not isinstance(name, str) or not name:
        return None, [f'{gold_path}: missing transcript: no "transcript" file name']
    problems = []
    if Path(name).name != name or Path(name).stem != gold_id(gold_path):
        problems.append(
            f"{gold_path}: transcript name mismatch: {name!r} is not "
            f"'{gold_id(gold_path)}.<ext>' beside the gold file"
        )
    path = gold_path.parent / name
    if not path.is_file():
        return None, problems + [f"{gold_path}: missing transcript: {path} does not exist"]
    return path, problems


def _parse(path: Path, interviewers: list[str], interviewees: list[str],
           parse: ParseFn) -> tuple[Transcript | None, str | None]:
    try:
        transcript = parse(path, interviewers=interviewers, interviewees=interviewees)
    except Exception as err:  # a report, not a crash: any parser failure is one more violation
        return None, f"transcript does not parse: {type(err).__name__}: {err}"
    return transcript, None


def _file_text(path: Path) -> str:
    """The transcript file as written (for quotes that keep its line breaks, each read as \\n),
    decoded as the parser decodes it; "" if unreadable."""
    from jtbd.coding.parse import TranscriptError, read_text

    try:
        return read_text(path).replace("\r\n", "\n").replace("\r", "\n")
    except TranscriptError:
        return ""


def _quoted_speakers(codes: list[GoldCode], transcript: Transcript, source: str) -> set[str]:
    """The speakers whose turns hold the gold quotes, when no roles were named: an inferred
    interviewee's turn first, then any turn the parser did not take for an interviewer's."""
    speakers = set()
    for code in codes:
        if not isinstance(code.quote, str) or not code.quote.strip():
            continue
        found = [t for t in transcript.turns if _find(code.quote, t.text, source) >= 0]
        mine = [t for t in found if t.is_coded] or [t for t in found if t.role is not Role.interviewer]
        speakers.update(t.speaker for t in mine[:1])
    return speakers


def _wrapped(quote: str, source: str) -> str | None:
    """The quote as the parser renders it, when it holds the file's line breaks (or runs of
    spaces) and is in the file as written; else None."""
    collapsed = " ".join(quote.split())
    if collapsed != quote and quote.replace("\r\n", "\n") in source:  # source: newlines read as \n
        return collapsed
    return None


def _find(quote: str, text: str, source: str) -> int:
    """Where `quote` is in a turn's `text`: as written, or as rendered from a hard-wrapped file."""
    at = text.find(quote)
    wrapped = _wrapped(quote, source) if at < 0 else None
    return text.find(wrapped) if wrapped else at


def _gold_code(raw: dict) -> GoldCode:
    return GoldCode(
        kind=raw.get("kind"), quote=raw.get("quote"), force=raw.get("force"),
        dimension=raw.get("dimension"), statement=raw.get("statement"), note=raw.get("note"),
    )


def _code_problems(code: GoldCode, transcript: Transcript, source: str = "", named: bool = True) -> list[str]:
    problems = _label_problems(code)
    if not isinstance(code.quote, str) or not code.quote.strip():
        return problems + ["no quote"]
    return problems + _align(code, transcript, source, named)


def _label_problems(code: GoldCode) -> list[str]:
    if code.kind not in KINDS:
        return [f"unknown kind {code.kind!r} (expected one of {', '.join(KINDS)})"]
    problems = []
    if code.kind == "force" and code.force is None:
        problems.append("force code without a force type")
    if code.force is not None and code.force not in FORCE_TYPES:
        problems.append(f"unknown force {code.force!r} (expected one of {', '.join(FORCE_TYPES)})")
    if code.dimension is not None and code.dimension not in DIMENSIONS:
        problems.append(f"unknown dimension {code.dimension!r} (expected one of {', '.join(DIMENSIONS)})")
    if code.kind == "job":
        problems += _job_problems(code)
    return problems


def _job_problems(code: GoldCode) -> list[str]:
    problems = [] if code.dimension is not None else ["job without a dimension"]
    if not code.statement:
        return problems + ["job without a statement"]
    if not isinstance(code.statement, str):
        problems.append(f"job statement is not text: {code.statement!r}")
    elif not is_job_story(code.statement):  # its quote's span is still certain, and so is the statement
        problems.append(ScoredAnyway(f"job statement is not 'When ..., I want to ..., so I can ...' "
                                     f"(jtbd eval scores it as written): {code.statement!r}"))
    return problems


# --- alignment -----------------------------------------------------------------


def _align(code: GoldCode, transcript: Transcript, source: str = "", named: bool = True) -> list[str]:
    """Set the code's offsets if its quote is exact inside one interviewee cue (or, copied from
    a hard-wrapped file, inside one turn); else say why not, and set them anyway where the span
    is certain (a `ScoredAnyway` problem)."""
    quote = code.quote
    if quote != quote.strip():
        return [f"quote has leading or trailing whitespace: {_short(quote)}"]
    if len(quote) < MIN_QUOTE_CHARS:
        return [f"quote shorter than {MIN_QUOTE_CHARS} characters: {quote!r}"]
    span = ground_quote(quote, transcript, threshold=NO_FUZZY)
    exact = _exact_span(quote, transcript, span)
    found = exact or _wrapped_span(quote, transcript, source)  # contiguous in the file: its own line breaks
    if found is None:
        why = _why_not_found(quote, transcript, span, named)
        if span is None or span.alignment is Alignment.fuzzy:
            return [why]
        # The same words in the same order in one interviewee turn, but not character for character:
        # curly against straight apostrophes, case, punctuation, quote marks or a speaker label around it.
        _place(code, span)
        return [ScoredAnyway(f"{why}; jtbd eval scores the span it matches: "
                             f"{_short(transcript.text[span.char_start:span.char_end])}")]
    _place(code, found)
    turn = transcript.turns[_turn_position(transcript, found.turn_index)]
    if exact and not _inside_one_segment(turn, found.char_start, found.char_end):
        return [ScoredAnyway(f"quote spans two cues of turn {turn.index} ({turn.speaker}), so it is not in "
                             f"the file as written (a line break or a cue edge where the quote has a space); "
                             f"jtbd eval scores it as the parsed text joins them: {_short(quote)}")]
    return []


def _place(code: GoldCode, span: Span) -> None:
    code.char_start, code.char_end, code.turn_index = span.char_start, span.char_end, span.turn_index


def _wrapped_span(quote: str, transcript: Transcript, source: str) -> Span | None:
    """The span of a quote that keeps the file's line breaks, in the parsed text (lines joined by a space)."""
    wrapped = _wrapped(quote, source)
    return _in_interviewee_turn(wrapped, transcript) if wrapped else None


def _in_interviewee_turn(text: str, transcript: Transcript) -> Span | None:
    for turn in transcript.interviewee_turns():
        at = turn.text.find(text)
        if at >= 0:
            start = turn.char_start + at
            return Span(turn.index, start, start + len(text), Alignment.exact, 100.0)
    return None


def _exact_span(quote: str, transcript: Transcript, span: Span | None) -> Span | None:
    """The grounded span if it is the gold quote character for character.

    ground_quote strips wrapping quote marks before aligning, so a quote that
    rightly ends on the speaker's closing ' ("he said, 'nights are there.'")
    aligns one character short: then the quote as written is looked up in
    the interviewee turns.
    """
    if span is not None and span.alignment is Alignment.exact:
        if transcript.text[span.char_start:span.char_end] == quote:
            return span
    return _in_interviewee_turn(quote, transcript)


def _why_not_found(quote: str, transcript: Transcript, span: Span | None, named: bool = True) -> str:
    others = [t for t in transcript.turns if not t.is_coded and quote in t.text]
    if others:
        speakers = ", ".join(sorted({f"{t.speaker} ({t.role.value})" for t in others}))
        hint = "" if named else ' (roles inferred: name the "interviewers" if they are wrong)'
        return f"quote found only in a turn that is not coded: {speakers}{hint}: {_short(quote)}"
    if _spans_turns(quote, transcript.turns):
        return f"quote spans two turns: {_short(quote)}"
    return f"quote not found exactly in an interviewee turn{_closest(span)}: {_short(quote)}"


def _closest(span: Span | None) -> str:
    if span is None:
        return ""
    if span.alignment is Alignment.exact:
        return f" (turn {span.turn_index} has it without the quote marks, '...' or speaker label around it)"
    return f" (closest: {span.alignment.value} match in turn {span.turn_index}, case or punctuation differ)"


def _spans_turns(quote: str, turns: Sequence[Turn]) -> bool:
    """The quote's head ends one turn and its tail starts the next (copied across a line break)."""
    for before, after in zip(turns, turns[1:]):
        for cut in range(1, len(quote)):
            head, tail = quote[:cut].rstrip(), quote[cut:].lstrip()
            if head and tail and before.text.endswith(head) and after.text.startswith(tail):
                return True
    return False


def _turn_position(transcript: Transcript, turn_index: int) -> int:
    return next(i for i, t in enumerate(transcript.turns) if t.index == turn_index)


def _inside_one_segment(turn: Turn, start: int, end: int) -> bool:
    """A turn merges consecutive cues; a gold quote must lie inside one of them."""
    if not turn.segments:
        return True
    return any(s.char_start <= start and end <= s.char_end for s in turn.segments)


def _duplicates(codes: list[GoldCode]) -> list[tuple[int, str]]:
    seen: dict[tuple, int] = {}
    found = []
    for index, code in enumerate(codes):
        key = json.dumps([code.kind, code.force, code.quote])  # hashable even if a field is a list
        if key in seen:
            found.append((index, f"duplicate of code {seen[key]} (same kind, force and quote)"))
        else:
            seen[key] = index
    return found


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
