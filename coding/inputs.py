"""Turn the paths a researcher gives (files and folders) into transcript files."""

from __future__ import annotations

import os
from pathlib import Path

from jtbd.coding.parse import DEFAULT_MAX_BYTES, SUPPORTED_SUFFIXES, file_problem

SKIPPED_SUFFIXES = (".gold.json",)  # hand-coded gold files live beside transcripts


def discover(paths: list[str | Path],
             max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to code, and (path, problem) for every path that cannot be coded: among them FIFOs,
    devices and files over `max_bytes` (Settings.max_file_bytes), found by stat, never opened."""
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            # Not only is_file(): a FIFO or a link to a device named *.txt is said, not silently left out.
            for child in sorted(p for p in path.rglob("*") if not p.is_dir()):
                _consider(child, files, problems, explicit=False, max_bytes=max_bytes)
        elif path.exists():
            _consider(path, files, problems, explicit=True, max_bytes=max_bytes)
        else:
            problems.append((str(path), "no such file or folder"))
    return list(dict.fromkeys(files)), problems


def _consider(path: Path, files: list[Path], problems: list[tuple[str, str]], explicit: bool,
              max_bytes: int) -> None:
    name = path.name.lower()
    # hidden files, gold files, and the "~$name.docx" lock file Word keeps beside an open document
    if name.startswith((".", "~$")) or name.endswith(SKIPPED_SUFFIXES):
        return
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        if explicit or path.suffix:
            problems.append((str(path), f"unsupported file type {path.suffix or '(none)'}; "
                                        f"supported: {', '.join(SUPPORTED_SUFFIXES)}"))
        return
    problem = _stat_problem(path, max_bytes)
    if problem:
        problems.append((str(path), problem))
    else:
        files.append(path)


def _stat_problem(path: Path, max_bytes: int) -> str | None:
    try:
        return file_problem(os.stat(path), max_bytes)  # follows links: what a read would get
    except OSError as error:  # a link to nothing, a file removed meanwhile, no permission
        return f"cannot read the file: {error.strerror}"
