"""Turn the paths a researcher gives (files and folders) into transcript files."""

from __future__ import annotations

from pathlib import Path

from jtbd.coding.parse import SUPPORTED_SUFFIXES

SKIPPED_SUFFIXES = (".gold.json",)  # hand-coded gold files live beside transcripts


def discover(paths: list[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to code, and (path, problem) for every path that cannot be coded."""
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                _consider(child, files, problems, explicit=False)
        elif path.exists():
            _consider(path, files, problems, explicit=True)
        else:
            problems.append((str(path), "no such file or folder"))
    return list(dict.fromkeys(files)), problems


def _consider(path: Path, files: list[Path], problems: list[tuple[str, str]], explicit: bool) -> None:
    name = path.name.lower()
    # hidden files, gold files, and the "~$name.docx" lock file Word keeps beside an open document
    if name.startswith((".", "~$")) or name.endswith(SKIPPED_SUFFIXES):
        return
    if path.suffix.lower() in SUPPORTED_SUFFIXES:
        files.append(path)
    elif explicit or path.suffix:
        problems.append((str(path), f"unsupported file type {path.suffix or '(none)'}; "
                                    f"supported: {', '.join(SUPPORTED_SUFFIXES)}"))
