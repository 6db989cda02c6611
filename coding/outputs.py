"""Write a run folder: codes.jsonl, codes.csv, one JSON and one Markdown report per transcript,
the study's Markdown report across transcripts (`study.md`), and the normalised text each
transcript's offsets index (`<id>.normalised.txt`)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable

from jtbd.coding.text import strip_controls
from jtbd.schemas.codebook import KINDS, CodedTranscript, ForceType
from jtbd.schemas.transcript import format_timestamp

CSV_FIELDS = ["id", "transcript", "source", "kind", "label", "force", "dimension", "statement", "statement_source", "quote",
              "speaker", "timestamp", "line", "char_start", "char_end", "alignment", "score", "prompt_version", "model"]


def code_row(code: Any) -> dict[str, Any]:
    g = code.grounding
    row = {
        "id": code.id, "transcript": g.transcript, "source": g.source, "kind": code.kind,
        "label": code.label, "force": getattr(getattr(code, "force", None), "value", ""),
        "dimension": getattr(getattr(code, "dimension", None), "value", ""),
        "statement": getattr(code, "statement", ""), "statement_source": getattr(code, "statement_source", ""),
        "quote": code.quote, "speaker": g.speaker,
        "timestamp": format_timestamp(g.start_seconds),
        "line": "" if g.source_line is None else g.source_line, "char_start": g.char_start,
        "char_end": g.char_end, "alignment": g.alignment.value,
        "score": "" if code.score is None else code.score,
        "prompt_version": code.provenance.prompt_version, "model": code.provenance.model,
    }
    # Quotes cached by an older version can hold terminal escapes; `cat codes.csv` must not run them.
    return {key: strip_controls(value) if isinstance(value, str) else value for key, value in row.items()}


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every text cell a spreadsheet would run as a formula (one starting with =, +, -,
    @, a tab or a carriage return: a transcript's "=HYPERLINK(...)") led by a single quote, as OWASP
    advises for CSV files; numbers (a score, an offset) are left as they are."""
    return {key: "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value
            for key, value in row.items()}


def code_record(code: Any) -> dict[str, Any]:
    """One line of codes.jsonl: the stored code plus its id, label and (for jobs) the job story."""
    extra = {"statement": code.statement, "statement_source": code.statement_source} if hasattr(code, "statement") else {}
    return {"id": code.id, "label": code.label, **extra, **code.model_dump(mode="json")}


def write_run(out: Path, coded: Iterable[CodedTranscript], summary: dict[str, Any],
              texts: dict[str, str] | None = None) -> None:
    """`texts` maps a transcript id to its normalised text: every code's char_start:char_end
    slices its quote out of that file, so the offsets can be checked without the tool."""
    out.mkdir(parents=True, exist_ok=True)
    coded = list(coded)
    codes = [c for ct in coded for c in ct.codes]
    with open(out / "codes.jsonl", "w", encoding="utf-8") as f:
        for code in codes:
            f.write(json.dumps(code_record(code), ensure_ascii=False) + "\n")
    with open(out / "codes.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(spreadsheet_safe(code_row(c)) for c in codes)
    for ct in coded:
        (out / ct.transcript).parent.mkdir(parents=True, exist_ok=True)  # an id may be "p01/interview"
        (out / f"{ct.transcript}.json").write_text(ct.model_dump_json(indent=2), encoding="utf-8")
        (out / f"{ct.transcript}.md").write_text(markdown_report(ct), encoding="utf-8")
        if texts and ct.transcript in texts:
            # newline="" keeps the text byte for byte, so offsets hold on every platform
            with open(out / f"{ct.transcript}.normalised.txt", "w", encoding="utf-8", newline="") as f:
                f.write(texts[ct.transcript])
    (out / "study.md").write_text(study_report(coded), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")


_HEADINGS = {"job": "Jobs", "trigger": "Triggers", "force": "Forces of progress", "quote": "Quotable lines"}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def markdown_report(ct: CodedTranscript, status_of: Callable[[Any], str] | None = None) -> str:
    """`status_of` (an export's review status of a code) is shown after each code when given."""
    jobs = sum(r.get("code") == "job" for r in ct.rejected)  # a statement its evidence does not back
    counts = f"{_count(len(ct.codes), 'code')}, {_count(len(ct.rejected) - jobs, 'rejected quote')}" \
             + (f", {_count(jobs, 'rejected job statement')}." if jobs else ".")
    if status_of is not None:  # an export of reviewed codes: "rejected" would read as a reviewer's rejections
        counts = f"{_count(len(ct.codes), 'code')}."
    lines = [f"# {ct.source}", "", counts, ""]
    lines += forces_diagram(ct.codes, per_quadrant=2) + [""]
    for kind in KINDS:
        mine = [c for c in ct.codes if c.kind == kind]
        lines += [f"## {_HEADINGS[kind]} ({len(mine)})", ""]
        for code in sorted(mine, key=lambda c: (c.label, c.grounding.char_start)):
            lines.append(_markdown_item(code, status_of=status_of))
        lines.append("")
    story = sorted((c for c in ct.codes if c.kind in ("trigger", "force")), key=lambda c: c.grounding.char_start)
    lines += [f"## The story in order ({len(story)})", "",
              "Triggers and forces as the interviewee told them, for the timeline.", ""]
    lines += [_markdown_item(code, tag=True, status_of=status_of) for code in story]
    return strip_controls("\n".join(lines) + "\n")  # no terminal escapes from older caches, as in code_row


# The forces of progress diagram: push and pull drive the switch, anxiety and habit hold it back.
_QUADRANTS = (("push", "pull"), ("habit", "anxiety"))
_QUADRANT_HINTS = {"push": "away from the old way", "pull": "towards the new one",
                   "habit": "holds on to the old way", "anxiety": "holds back from the new one"}


def _strongest(codes: list[Any], n: int, spread: bool = False) -> list[Any]:
    """The n codes rated surest (highest score first, unrated last); `spread` takes one per
    transcript before a second from any."""
    ranked = sorted(codes, key=lambda c: (c.score is None, -(c.score or 0.0), c.grounding.char_start))
    if not spread:
        return ranked[:n]
    seen: set[str] = set()
    first = [c for c in ranked if c.grounding.transcript not in seen and not seen.add(c.grounding.transcript)]
    chosen = {id(c) for c in first}  # by identity: comparing models field by field is slow in a large study
    return (first + [c for c in ranked if id(c) not in chosen])[:n]


def _cell(force: str, codes: list[Any], per_quadrant: int, spread: bool) -> str:
    mine = [c for c in codes if c.kind == "force" and c.force.value == force]
    head = f"**{force}** ({len(mine)}): {_QUADRANT_HINTS[force]}"
    quotes = [f"\u201c{_lead(c.quote)}{_short(c.quote)}\u201d" + (f" ({c.grounding.transcript})" if spread else "")
              for c in _strongest(mine, per_quadrant, spread)]
    return _table_cell("<br>".join([head, *quotes]))


def forces_diagram(codes: list[Any], per_quadrant: int, spread: bool = False) -> list[str]:
    """The four forces as a two-by-two Markdown table: each quadrant's count and its surest quotes."""
    rows = [f"| {_cell(a, codes, per_quadrant, spread)} | {_cell(b, codes, per_quadrant, spread)} |"
            for a, b in _QUADRANTS]
    return ["| drives the switch | |", "|---|---|", rows[0], "| **holds it back** | |", rows[1]]


def _table_cell(text: str) -> str:
    """Text for a Markdown table cell: a '|' in it would end the cell."""
    return text.replace("|", "\\|")


def _short(text: str, limit: int = 140) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def study_report(coded: list[CodedTranscript], status_of: Callable[[Any], str] | None = None) -> str:
    """Across a run's transcripts: codes per interview, the study's forces diagram with its surest
    quotes (one per interview before a second from any), and every trigger and job story."""
    forces = [f.value for f in ForceType]
    lines = ["# Study: the forces of progress across interviews", "",
             f"{_count(len(coded), 'interview')}, {_count(sum(len(ct.codes) for ct in coded), 'code')}.", "",
             "| interview | " + " | ".join([*forces, "trigger", "job", "quote"]) + " |",
             "|---|" + "---:|" * (len(forces) + 3)]
    for ct in coded:
        n = Counter(c.force.value if c.kind == "force" else c.kind for c in ct.codes)
        lines.append(f"| {_table_cell(ct.source)} | " + " | ".join(str(n[k]) for k in [*forces, "trigger", "job", "quote"]) + " |")
    codes = [c for ct in coded for c in ct.codes]
    lines += ["", "## Forces of progress", ""] + forces_diagram(codes, per_quadrant=3, spread=True)
    for kind in ("trigger", "job"):
        mine = [c for c in codes if c.kind == kind]
        lines += ["", f"## {_HEADINGS[kind]} ({len(mine)})", ""]
        ordered = sorted(mine, key=lambda c: (c.grounding.transcript, c.grounding.char_start))
        lines += [_markdown_item(c, source=True, status_of=status_of) for c in ordered]
    return strip_controls("\n".join(lines) + "\n")  # no terminal escapes from older caches, as in code_row


def _markdown_item(code: Any, tag: bool = False, source: bool = False,
                   status_of: Callable[[Any], str] | None = None) -> str:
    """One code as a list item; `tag` names triggers too (for a list of mixed kinds), `source`
    names the transcript file (for a list across transcripts), `status_of` gives its review status."""
    g = code.grounding
    where = [g.source] if source else []
    where += [format_timestamp(g.start_seconds)] if g.start_seconds is not None else []
    where += [f"line {g.source_line}"] if g.source_line is not None else []
    when = f" [{', '.join(where)}]" if where else ""
    # A job's statement is the model's summary: said so, and followed by the evidence it summarises.
    head = {"force": f"**{code.label.split('.')[-1]}**",
            "job": f"**{code.label.split('.')[-1]}** (model-written) {getattr(code, 'statement', '')} Evidence:"}
    if tag:
        head["trigger"] = "**trigger**"
    prefix = head.get(code.kind, "")
    status = f" *({status_of(code)})*" if status_of is not None and status_of(code) else ""
    return f"- {prefix}{' ' if prefix else ''}> \"{_lead(code.quote)}{code.quote}\" - {g.speaker}{when}{status}"


def _lead(quote: str) -> str:
    """A quote that starts in lower case begins mid-sentence (a tail clause, an aligned fragment): say so."""
    return "\u2026" if quote[:1].islower() else ""
