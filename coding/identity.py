"""Transcript ids: unique per source file within a store, stable across re-runs, readable.

An id is the file's stem (`call-07`) unless that would name two different files:
then it grows by what tells them apart, the folders above it (`p01/interview`,
`p02/interview`) or, for two files in one folder, the extension (`call.txt`, `call.vtt`). A file the store
already holds (same path, or same bytes after a move or copy) keeps the id it
was stored under, so re-running any subset of a study never renames anything.
Pure: the flow gathers the facts (paths, content hashes, what the store holds).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceFile:
    path: str  # absolute, resolved
    sha256: str

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass(frozen=True)
class StoredSource:
    """What the store knows of the file an id was coded from (older stores knew only its name)."""
    name: str
    path: str = ""
    sha256: str = ""


class IdCollision(ValueError):
    """A source that no id tells apart from another in the batch or the store."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = path, problem


def source_file(path: str | Path) -> SourceFile:
    resolved = Path(path).resolve()
    return SourceFile(str(resolved), hashlib.sha256(resolved.read_bytes()).hexdigest())


def candidate_ids(path: str) -> list[str]:
    """From short to long: the stem with more and more folders above it, then the same with the
    extension (only files in one folder that differ by extension get that far)."""
    p = Path(path)
    folders = p.parent.parts[1:]  # without the root
    prefixes = [folders[len(folders) - depth:] for depth in range(len(folders) + 1)]
    out = ["/".join((*prefix, p.stem)) for prefix in prefixes] + ["/".join((*prefix, p.name)) for prefix in prefixes]
    return list(dict.fromkeys(out))


def _is_same(source: SourceFile, stored: StoredSource) -> bool:
    if stored.path == source.path or (stored.sha256 and stored.sha256 == source.sha256):
        return True
    # Written before paths were recorded, or moved since: the file name is all that can tell.
    return stored.name == source.name and (not stored.path or not Path(stored.path).exists())


def transcript_ids(sources: list[SourceFile], stored: dict[str, StoredSource]) -> dict[str, str]:
    """Map each source's path to its transcript id."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for source in sources:  # what the store holds keeps its id: the same path, else the same bytes
        known = ([tid for tid, s in stored.items() if s.path == source.path]
                 or [tid for tid, s in stored.items() if s.sha256 == source.sha256])
        if len(known) == 1 and known[0] not in taken:
            ids[source.path] = known[0]
            taken.add(known[0])
    pending = [s for s in sources if s.path not in ids]
    depth = 0
    while pending:
        tried = {s.path: _candidate(s, depth) for s in pending}
        counts: dict[str, int] = {}
        for tid in tried.values():
            counts[tid] = counts.get(tid, 0) + 1
        for source in list(pending):
            tid = tried[source.path]
            free = tid not in taken and (tid not in stored or _is_same(source, stored[tid]))
            if counts[tid] == 1 and free:
                ids[source.path] = tid
                taken.add(tid)
                pending.remove(source)
        depth += 1
        if pending and all(depth >= len(candidate_ids(s.path)) for s in pending):
            raise IdCollision(pending[0].path, f"no transcript id tells it apart from another file in this "
                                               f"batch or the store (last tried {tried[pending[0].path]!r})")
    return ids


def _candidate(source: SourceFile, depth: int) -> str:
    candidates = candidate_ids(source.path)
    return candidates[min(depth, len(candidates) - 1)]
