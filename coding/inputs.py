"""Turn the paths a researcher gives (files and folders) into transcript files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from jtbd.coding.parse import DEFAULT_MAX_BYTES, SUPPORTED_SUFFIXES, file_problem

SKIPPED_SUFFIXES = (".gold.json",)  # hand-coded gold files live beside transcripts
# Files Windows leaves in folders (the Mac's .DS_Store is hidden, so skipped already).
SYSTEM_FILES = ("thumbs.db", "desktop.ini")

# What else lies in a study folder: the recordings, notes, consent forms, screenshots. Such a file
# is no transcript and no failure of the batch; it is listed as skipped, with why.
_KINDS = {
    "audio, not a transcript": (".mp3", ".m4a", ".wav", ".aac", ".ogg", ".flac", ".opus", ".wma", ".aif",
                                ".aiff", ".amr"),
    "video, not a transcript": (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".wmv"),
    "an image, not a transcript": (".png", ".jpg", ".jpeg", ".gif", ".heic", ".webp", ".tif", ".tiff", ".bmp",
                                   ".svg"),
    "an archive; unpack it to code the transcripts inside": (".zip", ".7z", ".rar", ".gz", ".tar", ".tgz"),
    # a transcript may hide among these: the reason says how to have it coded
    "a document format that is not read; save a transcript as .docx or .txt to code it":
        (".pdf", ".doc", ".rtf", ".odt", ".pages"),
    "a spreadsheet or slides, not a transcript": (".xlsx", ".xls", ".csv", ".tsv", ".ods", ".numbers", ".pptx",
                                                 ".ppt", ".key", ".odp"),
}
NOT_TRANSCRIPTS = {suffix: reason for reason, suffixes in _KINDS.items() for suffix in suffixes}


class Discovery(NamedTuple):
    """What a batch's paths hold, each file in one list only."""

    files: list[Path]  # the transcripts to code
    problems: list[tuple[str, str]]  # (path, problem): cannot be coded; the batch fails for them
    skipped: list[tuple[str, str]]  # (path, reason): found in a folder, not a transcript


def discover(paths: list[str | Path], max_bytes: int = DEFAULT_MAX_BYTES) -> Discovery:
    """The transcripts to code, and (path, problem) for every path that cannot be coded: among
    them FIFOs, devices and files over `max_bytes` (Settings.max_file_bytes), found by stat, never
    opened. In folders, hidden folders are not searched, and recordings, documents, images and
    archives are skipped with a reason; given by name, such a file is a problem."""
    found = Discovery([], [], [])
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in _folder_files(path):
                _consider(child, found, explicit=False, max_bytes=max_bytes)
        elif path.exists():
            _consider(path, found, explicit=True, max_bytes=max_bytes)
        else:
            found.problems.append((str(path), "no such file or folder"))
    return found._replace(files=list(dict.fromkeys(found.files)))


def _folder_files(folder: Path) -> list[Path]:
    """Everything but folders below `folder`, hidden folders (.obsidian, .git: an app's settings,
    never transcripts) not searched. Not only regular files: a FIFO or a link to a device named
    *.txt is said, not silently left out."""
    found = []
    for parent, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found.extend(Path(parent, name) for name in names)
    return sorted(found)


def _consider(path: Path, found: Discovery, explicit: bool, max_bytes: int) -> None:
    name = path.name.lower()
    # hidden files, gold files, and the "~$name.docx" lock file Word keeps beside an open document
    if name.startswith((".", "~$")) or name.endswith(SKIPPED_SUFFIXES) or (not explicit and name in SYSTEM_FILES):
        return
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        if not explicit and suffix in NOT_TRANSCRIPTS:
            found.skipped.append((str(path), NOT_TRANSCRIPTS[suffix]))
        elif explicit or suffix:  # asked for by name, or of a kind that might be a transcript
            found.problems.append((str(path), f"unsupported file type {path.suffix or '(none)'}; "
                                              f"supported: {', '.join(SUPPORTED_SUFFIXES)}"))
        return
    problem = _stat_problem(path, max_bytes)
    if problem:
        found.problems.append((str(path), problem))
    else:
        found.files.append(path)


def _stat_problem(path: Path, max_bytes: int) -> str | None:
    try:
        return file_problem(os.stat(path), max_bytes)  # follows links: what a read would get
    except OSError as error:  # a link to nothing, a file removed meanwhile, no permission
        return f"cannot read the file: {error.strerror}"
