"""A study's codes as the pages show them, kept in the web app's process: read from the review store
once, then again only for the interviews that changed (coded again, decided on, forgotten), which
one grouped query per request names. Reading and folding every code of a 100,000-code study took
5 to 10 s (docs/benchmarks.md); a page now reads what changed since the last one. Beside the codes,
the FacetIndex search filters on: each code's kind, force, interview, speaker and review status as
the page shows them (a person's relabel included), not as Chroma's metadata has them."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from jtbd.coding.store import FacetIndex
from jtbd.schemas.transcript import Transcript
from jtbd.web import review
from jtbd.web.views import Agreement, CodeView, Tally, agreement_of, code_view, tally


@dataclass(frozen=True)
class Interview:
    version: tuple  # ReviewStore.versions: when coded, decisions made
    transcript: Transcript | None
    codes: tuple[CodeView, ...]  # in text order
    tally: Tally
    added: tuple[CodeView, ...]  # a person's own codes: in the review store only, not in Chroma


class Catalogue:
    def __init__(self, reviews: Any, study: str) -> None:
        self.reviews, self.study = reviews, study
        self.index = FacetIndex()
        self._interviews: dict[str, Interview] = {}
        self._by_id: dict[str, CodeView] = {}
        self._stamp: tuple | None = None  # ReviewStore.stamp when last read
        self._agreement: Agreement | None = None  # the study's, until something changes
        self._lock = threading.Lock()  # one refresh at a time; readers see whole interviews, old or new

    def refresh(self) -> "Catalogue":
        """Read again the interviews whose version changed since the last call (all, the first time)."""
        with self._lock:
            stamp = self.reviews.stamp(self.study)
            if stamp == self._stamp:
                return self
            versions = self.reviews.versions(self.study)
            for tid in [t for t in self._interviews if t not in versions]:  # forgotten
                self._replace(tid, None, recoded=True)
            for tid, version in versions.items():
                had = self._interviews.get(tid)
                if had is None or had.version != version:
                    recoded = had is None or had.version[0] != version[0]
                    self._replace(tid, self._read(tid, version, None if recoded else had.transcript), recoded)
            self._stamp, self._agreement = stamp, None
        return self

    def transcripts(self) -> dict[str, Transcript | None]:
        return {tid: self._interviews[tid].transcript for tid in sorted(self._interviews)}

    def codes(self, transcript_id: str | None = None) -> list[CodeView]:
        """Every code of the study (or of one interview) as it stands, in interview and text order."""
        if transcript_id is not None:
            found = self._interviews.get(transcript_id)
            return list(found.codes) if found else []
        interviews = self._interviews
        return [c for tid in sorted(interviews) for c in interviews[tid].codes]

    def code(self, code_id: str) -> CodeView | None:
        return self._by_id.get(code_id)

    def added(self) -> list[CodeView]:
        return [c for interview in list(self._interviews.values()) for c in interview.added]

    def agreement(self, transcript_id: str | None = None) -> Agreement:
        if transcript_id is not None:
            found = self._interviews.get(transcript_id)
            return agreement_of([found.tally] if found else [])
        if self._agreement is None:
            self._agreement = agreement_of(i.tally for i in list(self._interviews.values()))
        return self._agreement

    def _read(self, tid: str, version: tuple, transcript: Transcript | None = None) -> Interview:
        """An interview's codes; its transcript too unless given (a decision leaves the text as it was)."""
        transcript = transcript or self.reviews.transcript(self.study, tid)
        items = self.reviews.reviewed(self.study, tid)
        notes = review.latest_notes(self.reviews.history(self.study, tid))
        codes = tuple(code_view(item, transcript, notes.get(_code_id(item), "")) for item in items)
        return Interview(version, transcript, codes, tally(items), tuple(c for c in codes if c.status == "added"))

    def _replace(self, tid: str, interview: Interview | None, recoded: bool) -> None:
        old = self._interviews.pop(tid, None)
        for c in old.codes if old else ():
            self._by_id.pop(c.id, None)
        if interview is not None:
            self._interviews[tid] = interview
            self._by_id.update((c.id, c) for c in interview.codes)
        # a person's own codes are not in Chroma: search compares them itself (Workbench.added_similarity)
        self.index.replace(tid, {c.id: {"transcript": c.transcript, "kind": c.kind, "force": c.force,
                                        "speaker": c.speaker, "status": c.status}
                                 for c in (interview.codes if interview else ()) if c.status != "added"}, recoded)


def _code_id(item: Any) -> str:
    return item.code.get("id") or (item.decision.code_id if item.decision else "")
