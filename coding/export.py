"""Export a study's reviewed codes: CSV, JSON lines, Markdown, a gold folder, a REFI-QDA project.

Pure functions from the reviewed codes (`jtbd.coding.reviews.ReviewedCode`) and the stored
transcripts to the bytes of each file (`build_export`); reading the review store (`gather`) and
writing files (`write_export`) are the only I/O, at the edge, for `jtbd export` and the web page.

Which codes (`select`): "reviewed" is what a person stands behind (accepted, changed or added);
"suggestions" the model's codes nobody has reviewed yet; "all" everything not rejected.

- csv / json / md: as the run folder's codes.csv, codes.jsonl and Markdown reports
  (coding/outputs.py), with each code's review status (and who decided, when).
- gold: one ``<id>.gold.json`` per interview in the format `jtbd eval --gold` reads
  (docs/evaluation.md), beside ``<id>.txt``: the normalised text the codes' offsets index, so
  every quote is in it character for character and parses back to the same turns.
- qdpx: a REFI-QDA 1.0 project (the exchange format ATLAS.ti, MAXQDA, NVivo and QualCoder
  import): ``project.qde`` (namespace urn:QDA-XML:project:1.0, checked against the standard's
  Project.xsd in tests/test_export.py) and ``Sources/<guid>.txt`` per transcript, each code a
  PlainTextSelection at its character offsets with a Coding of the codebook's code.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
import zipfile
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Sequence
from xml.etree import ElementTree as ET

from pydantic import TypeAdapter

from jtbd.coding.ground import MIN_QUOTE_CHARS
from jtbd.coding.outputs import (CSV_FIELDS, code_record, code_row, markdown_report, spreadsheet_safe,
                                 study_report)
from jtbd.coding.text import strip_controls
from jtbd.schemas.codebook import Code, CodedTranscript, Dimension, ForceType
from jtbd.schemas.transcript import Role, Transcript

FORMATS = ("csv", "json", "md", "gold", "qdpx")
STATUS_FILTERS = ("reviewed", "all", "suggestions")
REVIEWED = ("accepted", "changed", "added")  # what a person stands behind
SUGGESTED = "suggested"
REJECTED = "rejected"
ORPHANED = "orphaned"  # a reviewed code whose model suggestion a later run no longer makes

EXPORT_CSV_FIELDS = ["status", *CSV_FIELDS, "note", "reviewer", "decided_at"]
QDA_NAMESPACE = "urn:QDA-XML:project:1.0"
QDA_SCHEMA_LOCATION = f"{QDA_NAMESPACE} http://schema.qdasoftware.org/versions/Project/v1.0/Project.xsd"
_GUIDS = uuid.UUID("1f0d1a51-6a3c-4d4e-9a59-0b8f3e7a2c11")  # namespace of this tool's deterministic GUIDs
_CODE_ADAPTER: TypeAdapter = TypeAdapter(Code)


# --- which codes --------------------------------------------------------------------------------


_STANDING = {"accept": "accepted", "relabel": "changed", "respan": "changed", "add": "added", "reject": "rejected"}


def effective_status(item: Any) -> str:
    """The status a code is exported under. An orphaned code (reviewed, and no longer suggested by
    the latest run) keeps what its decision said: the person's word stands when the suggestion is
    gone. One whose only decisions were notes stays "orphaned" (only "all" exports it); `gather`
    gives an orphaned code whose latest decision is a note the decision before it."""
    if item.status != ORPHANED:
        return item.status
    action = getattr(item.decision, "action", None)
    return _STANDING.get(action, ORPHANED)


def select(reviewed: Iterable[Any], status: str = "reviewed") -> list[Any]:
    """The reviewed codes a status filter keeps, in transcript order then offset order."""
    if status not in STATUS_FILTERS:
        raise ValueError(f"--status is {status!r}: it must be one of {', '.join(STATUS_FILTERS)}")
    wanted: Callable[[str], bool] = {
        "reviewed": lambda s: s in REVIEWED,
        "suggestions": lambda s: s == SUGGESTED,
        "all": lambda s: s != REJECTED,
    }[status]
    kept = [item for item in reviewed if wanted(effective_status(item))]
    return sorted(kept, key=_order)


def transcript_of(item: Any) -> str:
    """The transcript a reviewed code belongs to (a rejected code a person had added has no code left)."""
    grounding = item.code.get("grounding") or {}
    return str(grounding.get("transcript") or getattr(item.decision, "transcript", ""))


def _order(item: Any) -> tuple:
    g = item.code["grounding"]
    return g["transcript"], g["char_start"], g["char_end"], item.code.get("kind", "")


def as_code(item: Any) -> Any:
    """The codebook model (Force, Trigger, JobStory, Quote) of a reviewed code's JSON."""
    return _CODE_ADAPTER.validate_python(item.code)


def _reviewer(item: Any) -> str:
    return str(getattr(item.decision, "reviewer", "") or "")


def _decided_at(item: Any) -> str:
    when = getattr(item.decision, "at", None)
    if isinstance(when, datetime):
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).isoformat(timespec="seconds")
    return str(when or "")


def _note(item: Any) -> str:
    """The reviewer's note on the latest decision, else the code's own."""
    return str(getattr(item.decision, "note", "") or item.code.get("note") or "")


def _code_id(item: Any) -> str:
    """The id the review store knows the code by (a changed code keeps the id of the suggestion it changed)."""
    return str(item.code.get("id") or as_code(item).id)


# --- the export ---------------------------------------------------------------------------------


class Note(str):
    """A line about an export that is worth knowing but left nothing out (a suggestion not reviewed
    yet, a gold quote said twice in an interview); any other problem line left something out."""


@dataclass
class Export:
    """The files of one export (relative path -> bytes) and a line per thing left out or worth knowing."""

    format: str
    files: dict[str, bytes]
    problems: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # codes exported per status
    interviews: int = 0

    @property
    def left_out(self) -> list[str]:
        """The problems that left a code or an interview out of the files."""
        return [p for p in self.problems if not isinstance(p, Note)]

    def zip_bytes(self) -> bytes:
        """The files as one zip (a gold folder for download); a qdpx is a zip already."""
        if self.format == "qdpx":
            return next(iter(self.files.values()))
        return _zip(self.files, _FIXED_TIME)


def build_export(fmt: str, reviewed: Sequence[Any], transcripts: dict[str, Transcript | None], *,
                 study: str = "default", status: str = "reviewed", reviewer: str = "",
                 now: datetime | None = None, origin: str = "jtbd-coder") -> Export:
    """Every file of an export of `reviewed` (all of a study's reviewed codes: the filter is
    applied here) in format `fmt`. `transcripts` maps a transcript id to its stored transcript
    (needed for gold and qdpx only; None when the store has no text for it)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format is {fmt!r}: it must be one of {', '.join(FORMATS)}")
    chosen = select(reviewed, status)
    now = now or datetime.now(timezone.utc)
    counts = Counter(effective_status(item) for item in chosen)
    interviews = len({item.code["grounding"]["transcript"] for item in chosen})
    if fmt == "csv":
        files, problems = {"codes.csv": csv_text(chosen).encode("utf-8")}, []
    elif fmt == "json":
        files, problems = {"codes.jsonl": jsonl_text(chosen).encode("utf-8")}, []
    elif fmt == "md":
        files, problems = {"report.md": markdown_text(chosen, study=study, status=status).encode("utf-8")}, []
    elif fmt == "gold":
        files, problems = gold_files(reviewed, transcripts, status=status, study=study)
        interviews = sum(name.endswith(".gold.json") for name in files)
    else:
        data, problems = qdpx_bytes(chosen, transcripts, study=study, reviewer=reviewer, now=now, origin=origin)
        files = {f"{_safe_name(study)}.qdpx": data}
    return Export(fmt, files, problems, counts, interviews)


# --- csv, json lines, markdown ------------------------------------------------------------------


def export_row(item: Any) -> dict[str, Any]:
    """One row of the exported codes.csv: the run folder's row plus review status, note, who and when."""
    row = {**code_row(as_code(item)), "id": _code_id(item)}
    extra = {"status": effective_status(item), "note": _note(item), "reviewer": _reviewer(item),
             "decided_at": _decided_at(item)}
    return {**{k: strip_controls(v) for k, v in extra.items()}, **row}


def csv_text(items: Sequence[Any]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_CSV_FIELDS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(spreadsheet_safe(export_row(item)) for item in items)
    return buffer.getvalue()


def export_record(item: Any) -> dict[str, Any]:
    """One line of the exported codes.jsonl: the run folder's record plus a "review" object."""
    review = {"status": effective_status(item), "reviewer": _reviewer(item) or None,
              "decided_at": _decided_at(item) or None, "note": _note(item) or None}
    return {**code_record(as_code(item)), "id": _code_id(item), "review": review}


def jsonl_text(items: Sequence[Any]) -> str:
    return "".join(json.dumps(export_record(item), ensure_ascii=False) + "\n" for item in items)


_FILTER_WORDS = {"reviewed": "reviewed codes (accepted, changed or added by a person)",
                 "suggestions": "model suggestions not reviewed yet",
                 "all": "every code not rejected (reviewed codes and open suggestions)"}


def markdown_text(items: Sequence[Any], study: str = "default", status: str = "reviewed") -> str:
    """The study report and one report per interview, as the run folder has them, each code
    followed by its review status."""
    coded, status_of = _coded_transcripts(items)
    counts = Counter(effective_status(item) for item in items)
    said = ", ".join(f"{counts[s]} {s}" for s in (*REVIEWED, SUGGESTED, ORPHANED) if counts[s]) or "no codes"
    head = [f"# jtbd export: study {_md_text(study)}", "",
            f"{_FILTER_WORDS[status].capitalize()}: {said}. Each code is followed by its review status: "
            "*(suggested)* is the model's, not yet reviewed.", ""]
    parts = ["\n".join(head), study_report(coded, status_of=status_of)]
    parts += [markdown_report(ct, status_of=status_of) for ct in coded]
    return "\n".join(parts)


def _coded_transcripts(items: Sequence[Any]) -> tuple[list[CodedTranscript], Callable[[Any], str]]:
    statuses: dict[int, str] = {}
    by_transcript: dict[str, list[Any]] = {}
    sources: dict[str, str] = {}
    for item in items:
        code = as_code(item)
        statuses[id(code)] = effective_status(item)
        by_transcript.setdefault(code.grounding.transcript, []).append(code)
        sources.setdefault(code.grounding.transcript, code.grounding.source)
    # Constructed, not validated: the reports get the very code objects, so identity finds each one's
    # status (two codes may share an id: a relabelled code beside the model's own at the same span).
    coded = [CodedTranscript.model_construct(transcript=tid, source=sources[tid], codes=codes, rejected=[])
             for tid, codes in by_transcript.items()]
    return coded, lambda code: statuses.get(id(code), "")


def _md_text(text: str) -> str:
    return re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", text)


# --- the gold folder ----------------------------------------------------------------------------


def gold_files(reviewed: Sequence[Any], transcripts: dict[str, Transcript | None], *, status: str = "reviewed",
               study: str = "default") -> tuple[dict[str, bytes], list[str]]:
    """``<id>.gold.json`` and ``<id>.txt`` (the normalised text) per interview, and a line per
    code or interview left out or worth knowing about.

    With "reviewed", an interview is in the folder when a person decided anything in it (a
    folder of interviews where every suggestion was rejected is a fair gold: none of them holds);
    its suggestions not reviewed yet are not gold, so `jtbd eval` will count the model's matching
    codes as false alarms: said per interview."""
    chosen = select(reviewed, status)
    by_tid: dict[str, list[Any]] = {}
    for item in chosen:
        by_tid.setdefault(item.code["grounding"]["transcript"], []).append(item)
    pending = Counter(transcript_of(item) for item in reviewed if effective_status(item) == SUGGESTED)
    if status == "reviewed":
        decided = {transcript_of(item) for item in reviewed if effective_status(item) != SUGGESTED}
        for tid in decided:
            by_tid.setdefault(tid, [])
    files: dict[str, bytes] = {}
    problems: list[str] = []
    for tid in sorted(by_tid):
        transcript = transcripts.get(tid)
        if transcript is None:
            problems.append(f"{tid}: left out: the store holds no text of this transcript (code it again)")
            continue
        gold, found = gold_file(transcript, by_tid[tid], study=study, status=status)
        problems += [type(p)(f"{tid}: {p}") for p in found]  # keeps a Note a Note
        if status == "reviewed" and pending[tid]:
            plural = "s" if pending[tid] != 1 else ""
            problems.append(Note(f"{tid}: {pending[tid]} suggestion{plural} not reviewed yet: "
                            "not in the gold, so jtbd eval counts the model's matching codes as false alarms"))
        name = _gold_name(tid)
        files[f"{name}.gold.json"] = (json.dumps(gold, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        files[f"{name}.txt"] = transcript.text.encode("utf-8")
    return files, problems


def _gold_name(tid: str) -> str:
    """The path of an interview's files without the suffix: its id ("p01/interview" keeps its folder)."""
    parts = [p for p in PurePosixPath(tid).parts if p not in ("", ".", "..", "/")]
    return "/".join(parts) or "transcript"


def gold_file(transcript: Transcript, items: Sequence[Any], *, study: str = "default",
              status: str = "reviewed") -> tuple[dict[str, Any], list[str]]:
    """One interview's gold file as a dict, and every code left out (or placed elsewhere) and why."""
    interviewers = sorted({t.speaker for t in transcript.turns if t.role is Role.interviewer})
    interviewees = sorted({t.speaker for t in transcript.turns if t.role is Role.interviewee})
    codes: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: set[tuple] = set()
    for item in sorted(items, key=_order):
        gold, problem = _gold_code(item, transcript)
        if problem:
            problems.append(problem)
            continue
        key = (gold["kind"], gold.get("force"), gold["quote"])
        if key in seen:
            problems.append(f"left out a second {_label(item)} with the same quote (the gold format has no offsets "
                            f"to tell them apart): {_short(gold['quote'])}")
            continue
        seen.add(key)
        first = _first_in_interviewee_turn(gold["quote"], transcript)
        if first is not None and first != item.code["grounding"]["char_start"]:
            problems.append(Note(f"the quote of a {_label(item)} is also said earlier in the interview; the gold "
                                 f"format places a quote at its first occurrence: {_short(gold['quote'])}"))
        codes.append(gold)
    problems += _round_trip_problems(transcript, interviewers, interviewees)
    name = PurePosixPath(_gold_name(transcript.id)).name
    data = {"transcript": f"{name}.txt", "interviewers": interviewers, "interviewees": interviewees,
            "export": {"tool": "jtbd-coder", "study": study, "status": status, "source": transcript.source},
            "codes": codes}
    return data, problems


def _gold_code(item: Any, transcript: Transcript) -> tuple[dict[str, Any], str | None]:
    code = item.code
    g = code["grounding"]
    start, end, quote = g["char_start"], g["char_end"], code.get("quote") or ""
    if transcript.text[start:end] != quote:
        return {}, f"left out a {_label(item)} whose quote is not the transcript's text at its offsets: {_short(quote)}"
    if quote != quote.strip() or len(quote) < MIN_QUOTE_CHARS:
        return {}, (f"left out a {_label(item)}: a gold quote must be at least {MIN_QUOTE_CHARS} characters "
                    f"without spaces around it: {quote!r}")
    turn = transcript.turn_at(start)
    if turn is None or not turn.is_coded or end > turn.char_end:
        return {}, f"left out a {_label(item)} outside one interviewee turn: {_short(quote)}"
    gold: dict[str, Any] = {"kind": code["kind"]}
    if code["kind"] == "force":
        gold["force"] = code["force"]
    if code["kind"] == "job":
        model = as_code(item)
        gold["dimension"] = model.dimension.value
        gold["statement"] = model.statement
    gold["quote"] = quote
    note = _note(item)
    if note:
        gold["note"] = note
    gold["status"] = effective_status(item)
    return gold, None


def _first_in_interviewee_turn(quote: str, transcript: Transcript) -> int | None:
    for turn in transcript.interviewee_turns():
        at = turn.text.find(quote)
        if at >= 0:
            return turn.char_start + at
    return None


def _round_trip_problems(transcript: Transcript, interviewers: list[str], interviewees: list[str]) -> list[str]:
    """The gold tools parse ``<id>.txt`` again: say so if that would not give the same turns."""
    from jtbd.coding.parse import TranscriptError, parse_transcript

    name = PurePosixPath(_gold_name(transcript.id)).name
    try:
        again = parse_transcript(transcript.text, f"{name}.txt", "txt", interviewers, interviewees)
    except TranscriptError as err:
        return [f"its normalised text does not parse back as a .txt transcript ({err}): jtbd eval cannot load it"]
    if again.text != transcript.text:
        return ["its normalised text parses back to a different text: some gold quotes may not be found"]
    if [(t.speaker, t.role) for t in again.turns] != [(t.speaker, t.role) for t in transcript.turns]:
        return ["its normalised text parses back with other speaker roles: some gold quotes may not be found"]
    return []


# --- the REFI-QDA project -----------------------------------------------------------------------

_CODE_COLOURS = {"job": "#8C564B", "trigger": "#1F77B4", "quote": "#7F7F7F", "force": "#555555",
                 "push": "#D62728", "pull": "#2CA02C", "anxiety": "#FF7F0E", "habit": "#9467BD",
                 "functional": "#8C564B", "emotional": "#E377C2", "social": "#BCBD22"}
_CODE_DESCRIPTIONS = {
    "job": "Job story: the progress the interviewee is trying to make (When ..., I want to ..., so I can ...). "
           "The statement is the model's summary; the coded text is its evidence.",
    "functional": "A job about getting something done.",
    "emotional": "A job about how the interviewee wants to feel.",
    "social": "A job about how the interviewee wants to be seen by others.",
    "trigger": "The moment or event that started the search for something new.",
    "force": "The four forces of progress: push and pull drive the switch, anxiety and habit hold it back.",
    "push": "Push: a problem with the current way that pushes the interviewee away from it.",
    "pull": "Pull: what attracts the interviewee to the new way.",
    "anxiety": "Anxiety: a worry about the new way that holds the switch back.",
    "habit": "Habit: attachment to the current way that holds the switch back.",
    "quote": "A quotable line: vivid, specific words worth citing.",
}
# The codebook: (name, children). A parent with children is a category (isCodable false).
_CODEBOOK = (("job", tuple(d.value for d in Dimension)), ("trigger", ()),
             ("force", tuple(f.value for f in ForceType)), ("quote", ()))


def guid(*parts: str) -> str:
    """A GUID derived from names: the same study exported twice gets the same GUIDs, so a QDA
    program that imports it again can tell what is the same."""
    return str(uuid.uuid5(_GUIDS, "\x1f".join(parts)))


def _code_path(code: dict[str, Any]) -> tuple[str, ...]:
    if code["kind"] == "force":
        return ("force", code["force"])
    if code["kind"] == "job":
        return ("job", code["dimension"])
    return (code["kind"],)


def qdpx_bytes(items: Sequence[Any], transcripts: dict[str, Transcript | None], *, study: str = "default",
               reviewer: str = "", now: datetime | None = None,
               origin: str = "jtbd-coder") -> tuple[bytes, list[str]]:
    """The .qdpx (a zip of project.qde and Sources/) of these codes, and a line per code or
    transcript left out."""
    now = now or datetime.now(timezone.utc)
    qde, sources, problems = project_qde(items, transcripts, study=study, reviewer=reviewer, now=now, origin=origin)
    files = {"project.qde": qde, **{f"Sources/{name}": data for name, data in sources.items()}}
    return _zip(files, now), problems


def project_qde(items: Sequence[Any], transcripts: dict[str, Transcript | None], *, study: str = "default",
                reviewer: str = "", now: datetime | None = None,
                origin: str = "jtbd-coder") -> tuple[bytes, dict[str, bytes], list[str]]:
    """project.qde's XML, the Sources/ files it names (file name -> bytes), and the problems."""
    now = now or datetime.now(timezone.utc)
    stamp = _xml_datetime(now)
    ET.register_namespace("", QDA_NAMESPACE)
    q = _QName(QDA_NAMESPACE)
    model_user = guid("user", "model", "jtbd-coder")
    users = {"jtbd-coder (model suggestions)": model_user}
    for name in sorted({reviewer, *(_reviewer(item) for item in items)} - {""}):
        users[name] = guid("user", "person", name)
    project = ET.Element(q("Project"), {
        "name": _xml_safe(f"jtbd-coder study {study}"), "origin": _xml_safe(origin),
        "creatingUserGUID": users.get(reviewer, model_user), "creationDateTime": stamp,
        "{http://www.w3.org/2001/XMLSchema-instance}schemaLocation": QDA_SCHEMA_LOCATION})
    users_el = ET.SubElement(project, q("Users"))
    for name, user_guid in users.items():
        ET.SubElement(users_el, q("User"), {"guid": user_guid, "name": _xml_safe(name)})

    code_guids: dict[tuple[str, ...], str] = {}
    codes_el = ET.SubElement(ET.SubElement(project, q("CodeBook")), q("Codes"))
    for name, children in _CODEBOOK:
        code_guids[(name,)] = guid("code", name)
        parent = ET.SubElement(codes_el, q("Code"), {"guid": code_guids[(name,)], "name": name,
                                                     "isCodable": "false" if children else "true",
                                                     "color": _CODE_COLOURS[name]})
        ET.SubElement(parent, q("Description")).text = _CODE_DESCRIPTIONS[name]
        for child in children:
            code_guids[(name, child)] = guid("code", name, child)
            child_el = ET.SubElement(parent, q("Code"), {"guid": code_guids[(name, child)], "name": child,
                                                         "isCodable": "true", "color": _CODE_COLOURS[child]})
            ET.SubElement(child_el, q("Description")).text = _CODE_DESCRIPTIONS[child]

    by_tid: dict[str, list[Any]] = {}
    for item in items:
        by_tid.setdefault(item.code["grounding"]["transcript"], []).append(item)
    problems: list[str] = []
    sources: dict[str, bytes] = {}
    notes: list[tuple[str, str, str, str]] = []  # (guid, name, text, creating user)
    sources_el = ET.Element(q("Sources"))
    for tid in sorted(by_tid):
        transcript = transcripts.get(tid)
        if transcript is None:
            problems.append(f"{tid}: left out: the store holds no text of this transcript (code it again)")
            continue
        source_guid = guid("source", study, tid)
        sources[f"{source_guid}.txt"] = transcript.text.encode("utf-8")
        source_el = ET.SubElement(sources_el, q("TextSource"), {
            "guid": source_guid, "name": _xml_safe(tid), "plainTextPath": f"internal://{source_guid}.txt",
            "creatingUser": model_user, "creationDateTime": stamp})
        speakers = ", ".join(f"{t.speaker} ({t.role.value})" for t in _first_turns(transcript))
        ET.SubElement(source_el, q("Description")).text = _xml_safe(
            f"{transcript.source}: the normalised transcript jtbd-coder coded (one line per speaker turn). "
            f"Speakers: {speakers}.")
        for item in sorted(by_tid[tid], key=_order):
            selection, note, problem = _selection(q, item, transcript, code_guids, users, model_user, stamp)
            if problem:
                problems.append(f"{tid}: {problem}")
                continue
            source_el.append(selection)
            if note:
                notes.append(note)
    if len(sources_el):
        project.append(sources_el)
    if notes:
        notes_el = ET.SubElement(project, q("Notes"))
        for note_guid, name, text, user in notes:
            note_el = ET.SubElement(notes_el, q("Note"), {"guid": note_guid, "name": _xml_safe(name),
                                                          "creatingUser": user, "creationDateTime": stamp})
            ET.SubElement(note_el, q("PlainTextContent")).text = _xml_safe(text)
    ET.SubElement(project, q("Description")).text = _xml_safe(
        f"Jobs-to-be-Done codes of study {study!r} exported by jtbd-coder: jobs (by dimension), triggers, "
        "the four forces of progress and quotable lines, each a selection of the interviewee's exact words. "
        "A selection's description says whether a person accepted, changed or added it, or it is the "
        "model's suggestion.")
    ET.indent(project, space=" ")
    xml = ET.tostring(project, encoding="utf-8", xml_declaration=True)
    return xml, sources, problems


def _selection(q: "_QName", item: Any, transcript: Transcript, code_guids: dict[tuple[str, ...], str],
               users: dict[str, str], model_user: str, stamp: str) -> tuple[Any, Any, str | None]:
    code = item.code
    g = code["grounding"]
    start, end = g["char_start"], g["char_end"]
    if not (0 <= start < end <= len(transcript.text)) or transcript.text[start:end] != code.get("quote"):
        return None, None, f"left out a {_label(item)} whose quote is not the transcript's text at its offsets"
    path = _code_path(code)
    if path not in code_guids:
        return None, None, f"left out a code of unknown kind {code.get('kind')!r}"
    status = effective_status(item)
    person = _reviewer(item)
    user = users.get(person, model_user) if status != SUGGESTED else model_user
    code_id = f"{g['transcript']}\x1f{_code_id(item)}"
    selection = ET.Element(q("PlainTextSelection"), {
        "guid": guid("selection", code_id, status), "name": _xml_safe(f"{'.'.join(path)}: {_clip(code['quote'], 50)}"),
        "startPosition": str(start), "endPosition": str(end), "creatingUser": user, "creationDateTime": stamp})
    ET.SubElement(selection, q("Description")).text = _xml_safe(_describe(item, status, person))
    coding = ET.SubElement(selection, q("Coding"), {"guid": guid("coding", code_id, status), "creatingUser": user,
                                                     "creationDateTime": stamp})
    ET.SubElement(coding, q("CodeRef"), {"targetGUID": code_guids[path]})
    note_text = _note(item)
    note = None
    if note_text:
        note_guid = guid("note", code_id, status)
        ET.SubElement(selection, q("NoteRef"), {"targetGUID": note_guid})
        note = (note_guid, f"note on {'.'.join(path)} at {start}-{end}", note_text, user)
    return selection, note, None


def _describe(item: Any, status: str, person: str) -> str:
    code = item.code
    who = {"accepted": "accepted", "changed": "changed", "added": "added", ORPHANED: "noted"}.get(status)
    said = f"{who} by {person}" if who and person else (who or "model suggestion, not reviewed yet")
    if status == ORPHANED:
        said += " (neither accepted nor rejected; the model no longer suggests it)"
    if status == SUGGESTED and code.get("score") is not None:
        said += f" (score {code['score']:.2f})"
    parts = [f"{'.'.join(_code_path(code))}: {said}."]
    if code["kind"] == "job":
        parts.append(f"Job story (model-written): {as_code(item).statement}")
    g = code["grounding"]
    where = [f"speaker {g.get('speaker')}"] if g.get("speaker") else []
    where += [f"line {g['source_line']} of {g.get('source')}"] if g.get("source_line") is not None else []
    if g.get("start_seconds") is not None:
        seconds = int(g["start_seconds"])
        where.append(f"at {seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}")
    if where:
        parts.append("; ".join(where) + ".")
    return " ".join(parts)


def _first_turns(transcript: Transcript) -> list[Any]:
    seen: set[str] = set()
    return [t for t in transcript.turns if t.speaker not in seen and not seen.add(t.speaker)]


class _QName:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def __call__(self, tag: str) -> str:
        return f"{{{self.namespace}}}{tag}"


# XML 1.0 allows tab, newline, carriage return and everything from U+0020 except surrogates, FFFE, FFFF.
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    return _NOT_XML.sub("", text)


def _xml_datetime(when: datetime) -> str:
    when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


_FIXED_TIME = datetime(2020, 1, 1, tzinfo=timezone.utc)


def _zip(files: dict[str, bytes], when: datetime) -> bytes:
    buffer = io.BytesIO()
    stamp = when.timetuple()[:6] if when.year >= 1980 else (1980, 1, 1, 0, 0, 0)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def _label(item: Any) -> str:
    return ".".join(_code_path(item.code)) if item.code.get("kind") in ("force", "job") else str(item.code.get("kind"))


def _clip(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def _short(text: str, limit: int = 60) -> str:
    return repr(_clip(text, limit))


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "-", name).strip("-.") or "study"


# --- the edge: read the review store, write the files -------------------------------------------


def gather(store: Any, study: str, fmt: str) -> tuple[list[Any], dict[str, Transcript | None]]:
    """All of a study's reviewed codes and, for gold and qdpx, the stored transcripts they index."""
    reviewed = _standing_of_orphans(store, study, list(store.reviewed(study)))
    transcripts: dict[str, Transcript | None] = {}
    if fmt in ("gold", "qdpx"):
        ids = {transcript_of(item) for item in reviewed}
        transcripts = {tid: store.transcript(study, tid) for tid in sorted(ids)}
    return reviewed, transcripts


def _standing_of_orphans(store: Any, study: str, reviewed: list[Any]) -> list[Any]:
    """An orphaned code whose latest decision is a note gets the latest decision that is not (with
    the note), so `effective_status` knows whether a person accepted or changed it."""
    noted = [i for i, item in enumerate(reviewed) if item.status == ORPHANED
             and getattr(item.decision, "action", None) == "note"]
    if not noted:
        return reviewed
    history: dict[tuple[str, str], list[Any]] = {}
    for decision in store.history(study):
        history.setdefault((decision.transcript, decision.code_id), []).append(decision)
    out = list(reviewed)
    for i in noted:
        latest = reviewed[i].decision
        standing = [d for d in history.get((latest.transcript, latest.code_id), []) if d.action != "note"]
        if standing:
            out[i] = replace(reviewed[i], decision=replace(standing[-1], note=latest.note or standing[-1].note))
    return out


def export_study(store: Any, study: str, fmt: str, status: str = "reviewed", reviewer: str = "",
                 now: datetime | None = None, origin: str = "jtbd-coder") -> Export:
    """Read a study from a `ReviewStore` and build its export (what `jtbd export` and the web page call)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format is {fmt!r}: it must be one of {', '.join(FORMATS)}")
    select((), status)  # refuse a bad filter before reading the store
    reviewed, transcripts = gather(store, study, fmt)
    return build_export(fmt, reviewed, transcripts, study=study, status=status, reviewer=reviewer, now=now,
                        origin=origin)


_MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/x-ndjson; charset=utf-8",
                "md": "text/markdown; charset=utf-8", "gold": "application/zip", "qdpx": "application/zip"}


def download(export: Export, study: str, status: str) -> tuple[str, str, bytes]:
    """(file name, media type, bytes) of an export as one download: a gold folder is zipped."""
    stem = f"{_safe_name(study)}-{status}"
    if export.format == "gold":
        return f"{stem}-gold.zip", _MEDIA_TYPES["gold"], export.zip_bytes()
    name, data = next(iter(export.files.items()))
    suffix = PurePosixPath(name).suffix
    return f"{stem}{suffix}", _MEDIA_TYPES[export.format], data


def write_export(export: Export, out: Path | str) -> list[Path]:
    """Write an export to `out`: the file itself for csv, json, md and qdpx; a folder for gold
    (created if needed; files of an earlier export there are replaced). Returns the paths written."""
    out = Path(out)
    if export.format != "gold":
        if out.is_dir():
            raise FileExistsError(f"--out {out} is a folder: give a file name for --format {export.format}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(next(iter(export.files.values())))
        return [out]
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file: --format gold writes a folder")
    written = []
    for name, data in export.files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)  # bytes: the text is kept character for character, line ends too
        written.append(path)
    return written


def other_gold_files(export: Export, out: Path | str) -> list[Path]:
    """`*.gold.json` files already in a gold folder that this export did not write: `jtbd eval`
    would score them too."""
    out = Path(out)
    if export.format != "gold" or not out.is_dir():
        return []
    mine = {out / name for name in export.files}
    return sorted(p for p in out.rglob("*.gold.json") if p not in mine)
