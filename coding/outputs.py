"""Write a run folder: codes.jsonl, codes.csv, one JSON and one Markdown report per transcript,
and the normalised text each transcript's offsets index (`<id>.normalised.txt`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable

from jtbd.schemas.codebook import KINDS, CodedTranscript
from jtbd.schemas.transcript import format_timestamp

CSV_FIELDS = ["id", "transcript", "source", "kind", "label", "force", "dimension", "statement", "quote",
              "speaker", "timestamp", "line", "char_start", "char_end", "alignment", "score", "prompt_version", "model"]


def code_row(code: Any) -> dict[str, Any]:
    g = code.grounding
    return {
        "id": code.id, "transcript": g.transcript, "source": g.source, "kind": code.kind,
        "label": code.label, "force": getattr(getattr(code, "force", None), "value", ""),
        "dimension": getattr(getattr(code, "dimension", None), "value", ""),
        "statement": getattr(code, "statement", ""), "quote": code.quote, "speaker": g.speaker,
        "timestamp": format_timestamp(g.start_seconds),
        "line": "" if g.source_line is None else g.source_line, "char_start": g.char_start,
        "char_end": g.char_end, "alignment": g.alignment.value,
        "score": "" if code.score is None else code.score,
        "prompt_version": code.provenance.prompt_version, "model": code.provenance.model,
    }


def code_record(code: Any) -> dict[str, Any]:
    """One line of codes.jsonl: the stored code plus its id, label and (for jobs) the job story."""
    extra = {"statement": code.statement} if hasattr(code, "statement") else {}
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
        writer.writerows(code_row(c) for c in codes)
    for ct in coded:
        (out / f"{ct.transcript}.json").write_text(ct.model_dump_json(indent=2), encoding="utf-8")
        (out / f"{ct.transcript}.md").write_text(markdown_report(ct), encoding="utf-8")
        if texts and ct.transcript in texts:
            # newline="" keeps the text byte for byte, so offsets hold on every platform
            with open(out / f"{ct.transcript}.normalised.txt", "w", encoding="utf-8", newline="") as f:
                f.write(texts[ct.transcript])
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")


_HEADINGS = {"job": "Jobs", "trigger": "Triggers", "force": "Forces of progress", "quote": "Quotable lines"}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def markdown_report(ct: CodedTranscript) -> str:
    counts = f"{_count(len(ct.codes), 'code')}, {_count(len(ct.rejected), 'rejected quote')}."
    lines = [f"# {ct.source}", "", counts, ""]
    for kind in KINDS:
        mine = [c for c in ct.codes if c.kind == kind]
        lines += [f"## {_HEADINGS[kind]} ({len(mine)})", ""]
        for code in sorted(mine, key=lambda c: (c.label, c.grounding.char_start)):
            lines.append(_markdown_item(code))
        lines.append("")
    return "\n".join(lines)


def _markdown_item(code: Any) -> str:
    g = code.grounding
    where = [format_timestamp(g.start_seconds)] if g.start_seconds is not None else []
    where += [f"line {g.source_line}"] if g.source_line is not None else []
    when = f" [{', '.join(where)}]" if where else ""
    head = {"force": f"**{code.label.split('.')[-1]}**", "job": f"**{code.label.split('.')[-1]}** {getattr(code, 'statement', '')}"}
    prefix = head.get(code.kind, "")
    # A quote that starts in lower case begins mid-sentence (a tail clause, an aligned fragment): say so.
    lead = "\u2026" if code.quote[:1].islower() else ""
    return f"- {prefix}{' ' if prefix else ''}> \"{lead}{code.quote}\" - {g.speaker}{when}"
