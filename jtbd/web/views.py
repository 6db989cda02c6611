"""What the pages show, as plain data: codes with their review status, the review's agreement with
the model, a turn's text cut into highlighted pieces, search facets. No web framework here, so
every page's JSON twin is the same data the template renders."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Sequence

from jtbd.eval.score import cohen_kappa
from jtbd.schemas.transcript import Transcript, Turn, format_timestamp

FORCES = ("push", "pull", "anxiety", "habit")
KINDS = ("force", "trigger", "job", "quote")
DIMENSIONS = ("functional", "emotional", "social")
BY_PERSON = ("accepted", "changed", "added")
STATUS_WORDS = {"suggested": "model suggestion", "accepted": "accepted by a person",
                "changed": "changed by a person", "added": "added by a person",
                "rejected": "rejected by a person", "orphaned": "reviewed; the model no longer suggests it"}


@dataclass(frozen=True)
class CodeView:
    id: str
    anchor: str  # safe in an HTML id and a URL fragment: "span-<anchor>" marks the text, "code-<anchor>" the card
    transcript: str
    kind: str
    force: str
    dimension: str
    quote: str
    statement: str  # a job story: a summary of the quote (the model's unless statement_source says a person's)
    score: float | None
    start: int
    end: int
    speaker: str
    turn: int
    seconds: float | None
    line: int | None
    status: str
    note: str
    reviewer: str
    decided_at: str
    suggested_as: str  # what the model said, when a person changed it
    decision_action: str = ""  # the latest decision's action: accept, reject, relabel, respan, note, add
    statement_source: str = ""  # "model" or "reviewer" for a job story; "" for the other kinds
    context_before: str = ""
    context_after: str = ""

    @property
    def label(self) -> str:
        return {"force": f"force.{self.force}", "job": f"job.{self.dimension}"}.get(self.kind, self.kind)

    @property
    def what(self) -> str:
        """The code in a word: its force type, or its kind."""
        return self.force if self.kind == "force" else self.kind

    @property
    def by_person(self) -> bool:
        """A person stands behind it: accepted, changed or added (an orphaned code by its decision)."""
        return self.status in BY_PERSON or (self.status == "orphaned" and self.decision_action in _ANSWERS
                                            and self.decision_action != "reject")

    @property
    def kept(self) -> bool:
        """Counted in the pictures and lists: everything but what a person rejected."""
        return self.status != "rejected"

    @property
    def lead(self) -> str:
        """A quote that starts in lower case begins mid-sentence (a tail clause): shown with an ellipsis."""
        return "\u2026" if self.quote[:1].islower() else ""

    @property
    def timestamp(self) -> str:
        return format_timestamp(self.seconds) if self.seconds is not None else ""

    def as_json(self) -> dict[str, Any]:
        # Every field is a plain value: a shallow copy is what asdict's deep copy gives, at a tenth of the cost.
        return {**{name: getattr(self, name) for name in _FIELDS}, "label": self.label, "what": self.what, "lead": self.lead,
                "by_person": self.by_person, "status_words": STATUS_WORDS.get(self.status, ""),
                "timestamp": self.timestamp}


_FIELDS = tuple(f.name for f in fields(CodeView))


def anchor_of(code_id: str) -> str:
    """A code id (`transcript:force.push:120-180`, a transcript id may hold '/') as an HTML id."""
    tail = code_id.split(":", 1)[1] if ":" in code_id else code_id
    return re.sub(r"[^A-Za-z0-9_-]", "-", tail)


def _get(code: dict[str, Any], name: str, default: Any = None) -> Any:
    """A field of a code dict: at the top (a Chroma record, a flat row) or under `grounding`."""
    if name in code and code[name] is not None:
        return code[name]
    value = (code.get("grounding") or {}).get(name)
    return default if value is None else value


def _label_of(code: dict[str, Any] | None) -> str:
    if not code:
        return ""
    kind = _get(code, "kind", "")
    if kind == "force":
        return f"force.{_get(code, 'force', '')}"
    if kind == "job":
        return f"job.{_get(code, 'dimension', '')}"
    return kind


def code_view(reviewed: Any, transcript: Transcript | None = None, note: str = "") -> CodeView:
    """A ReviewedCode (coding/reviews.py) as the pages show it; `note`: the reviewer's latest standing note
    (review.latest_notes: a later decision without one does not erase it, an undone one is gone)."""
    code, decision = reviewed.code, reviewed.decision
    start, end = int(_get(code, "char_start", 0)), int(_get(code, "char_end", 0))
    code_id = _get(code, "id", "") or (decision.code_id if decision else "")
    seconds = _get(code, "start_seconds")
    seconds = None if seconds is None or seconds < 0 else float(seconds)
    line = _get(code, "source_line")
    line = None if line is None or line < 0 else int(line)
    turn = _get(code, "turn_index", -1)
    before, after = "", ""
    if transcript is not None:
        found = transcript.turn_at(start)
        if found is not None:
            turn = found.index
            seconds = seconds if seconds is not None else found.time_at(start)
            line = line if line is not None else found.line_at(start)
            before, after = context(transcript, found, start, end)
    suggested = decision.suggestion if decision is not None else None
    changed = bool(suggested) and _label_of(suggested) != _label_of(code)
    score = _get(code, "score")
    return CodeView(
        id=code_id, anchor=anchor_of(code_id), transcript=_get(code, "transcript", "") or (
            decision.transcript if decision else ""),
        kind=_get(code, "kind", ""), force=_get(code, "force", "") or "", dimension=_get(code, "dimension", "") or "",
        quote=_get(code, "quote", ""), statement=statement_of(code),
        score=None if score in (None, "") else float(score), start=start, end=end,
        speaker=_get(code, "speaker", ""), turn=int(turn), seconds=seconds, line=line,
        status=reviewed.status, note=note,
        reviewer=decision.reviewer if decision else "", decided_at=_when(decision),
        suggested_as=_label_of(suggested) if changed else "",
        context_before=_get(code, "context_before", before) or before,
        context_after=_get(code, "context_after", after) or after,
        decision_action=decision.action if decision else "",
        statement_source=(_get(code, "statement_source") or "model") if statement_of(code) else "",
    )


def statement_of(code: dict[str, Any]) -> str:
    """A job story's statement, as JobStory.statement words it: the model's summary of the quote."""
    if _get(code, "statement"):
        return _get(code, "statement")
    if _get(code, "kind") != "job" or not _get(code, "situation"):
        return ""
    return f"When {code['situation']}, I want to {code.get('motivation', '')}, so I can {code.get('outcome', '')}."


CONTEXT_CHARS = 160


def context(transcript: Transcript, turn: Turn, start: int, end: int) -> tuple[str, str]:
    """The words before and after a span in its turn; at the turn's edge, the turn before or after
    it (the interviewer's question, the answer's follow-up) with its speaker."""
    before = transcript.text[max(turn.char_start, start - CONTEXT_CHARS):start].lstrip()
    after = transcript.text[end:min(turn.char_end, end + CONTEXT_CHARS)].rstrip()
    if not before.strip() and turn.index > 0:
        prev = transcript.turns[turn.index - 1]
        before = f"{prev.speaker}: {prev.text[-CONTEXT_CHARS:]}"
    if not after.strip() and turn.index + 1 < len(transcript.turns):
        nxt = transcript.turns[turn.index + 1]
        after = f"{nxt.speaker}: {nxt.text[:CONTEXT_CHARS]}"
    return before, after


def _when(decision: Any) -> str:
    if decision is None or decision.at is None:
        return ""
    return decision.at.strftime("%Y-%m-%d %H:%M")


# --- the model's agreement with the reviewer ---------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    suggested: int  # codes the model suggested (every status but `added`)
    reviewed: int  # of them, answered by a person: accepted, changed or rejected
    accepted: int
    changed: int
    rejected: int
    added: int
    precision: float | None  # reviewed suggestions whose label the person kept (accepted, or only respanned)
    kept: float | None  # accepted or changed: the passage was worth a code, whatever its label
    kappa: float | None  # Cohen's kappa on the force type, model against person, over the kept forces
    kappa_pairs: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Tally:
    """What the agreement counts, for some codes (an interview's): so a study's is the sum of its
    interviews' without reading every code again."""
    counts: Counter  # codes per status as answered_as counts them
    right: int  # reviewed suggestions whose label the person kept
    pairs: tuple[tuple[str, str], ...]  # force type, model against person, over the kept forces


def tally(reviewed: Iterable[Any]) -> Tally:
    counts: Counter[str] = Counter()
    pairs: list[tuple[str, str]] = []
    right = 0
    for item in reviewed:
        status = answered_as(item)
        counts[status] += 1
        suggestion = item.decision.suggestion if item.decision else None
        if status not in ("accepted", "changed") or not suggestion:
            continue
        right += _label_of(suggestion) == _label_of(item.code)
        if _get(suggestion, "kind") == "force" and _get(item.code, "kind") == "force":
            pairs.append((_get(suggestion, "force"), _get(item.code, "force")))
    return Tally(counts, right, tuple(pairs))


def agreement(reviewed: Iterable[Any]) -> Agreement:
    """How far the model's suggestions agree with the reviewer, over what was reviewed so far."""
    return agreement_of([tally(reviewed)])


def agreement_of(tallies: Iterable[Tally]) -> Agreement:
    counts: Counter[str] = Counter()
    pairs: list[tuple[str, str]] = []
    right = 0
    for part in tallies:
        counts.update(part.counts)
        right += part.right
        pairs += part.pairs
    done = counts["accepted"] + counts["changed"] + counts["rejected"]
    kappa = cohen_kappa(pairs)
    return Agreement(
        suggested=sum(n for status, n in counts.items() if status not in ("added", "withdrawn")), reviewed=done,
        accepted=counts["accepted"], changed=counts["changed"], rejected=counts["rejected"], added=counts["added"],
        precision=round(right / done, 3) if done else None,
        kept=round((counts["accepted"] + counts["changed"]) / done, 3) if done else None,
        kappa=None if kappa is None else round(kappa, 3), kappa_pairs=len(pairs))


_ANSWERS = {"accept": "accepted", "reject": "rejected", "relabel": "changed", "respan": "changed", "add": "added"}


def answered_as(item: Any) -> str:
    """The status a code counts under: a code a person added stays added whatever they did to it
    later ("withdrawn" once they rejected it: no suggestion of the model's either way); an orphaned
    code (its suggestion gone from the latest run) counts as the decision it holds; a kept suggestion
    counts as accepted when its label and span are the model's, else as changed."""
    if item.decision is not None and item.decision.suggestion is None:
        return "withdrawn" if item.status == "rejected" else "added"
    status = item.status
    if status == "orphaned":
        status = _ANSWERS.get(item.decision.action if item.decision else "", "suggested")
    if status in ("accepted", "changed"):  # an undo can leave a changed code accepted: the codes tell
        return "accepted" if _same(item.decision.suggestion, item.code) else "changed"
    return status


def _same(a: dict, b: dict) -> bool:
    """The same label on the same span."""
    return _label_of(a) == _label_of(b) and all(_get(a, k) == _get(b, k) for k in ("char_start", "char_end"))


# --- how agreement moves as reviews accumulate --------------------------------------------------

TREND_BATCH = 20  # reviewed suggestions a point of the trend


@dataclass(frozen=True)
class _Answered:
    """A code as its latest answer leaves it, in the shape `tally` reads (a ReviewedCode's)."""
    status: str
    decision: Any
    code: dict


def review_trend(history: Sequence[Any], redecided: Sequence[Any] = (), size: int = TREND_BATCH) -> dict[str, Any]:
    """The model's agreement with the reviewer by review order: the study's reviewed suggestions in the
    order a person first answered them (after any reset that took an answer back), in batches of `size`,
    a batch also ending at a re-decision (`redecided`: when each was made, datetimes), so a batch's
    suggestions all came from one decision; each batch's agreement as the page counts it. Read from the
    decisions alone (ReviewStore.history, oldest first): a few thousand rows, not every code."""
    first: dict[tuple[str, str], tuple[int, Any]] = {}
    last: dict[tuple[str, str], Any] = {}
    for n, d in enumerate(history):
        key = (d.transcript, d.code_id)
        if d.action == "reset":  # taken back: the code is a suggestion again, until answered anew
            first.pop(key, None)
            last.pop(key, None)
        elif d.action != "note":
            first.setdefault(key, (n, d.at))
            last[key] = d
    answered = sorted((first[key], _Answered("rejected" if d.action == "reject" else "accepted", d,
                                             d.code or d.suggestion or {}))
                      for key, d in last.items())
    marks = sorted(redecided)
    batches: list[list[tuple[Any, _Answered]]] = []
    for (_, at), item in answered:
        if answered_as(item) not in ("accepted", "changed", "rejected"):
            continue  # a person's own code: no suggestion to agree with
        period = sum(m <= at for m in marks)
        if not batches or len(batches[-1]) == size or batches[-1][0][0] != period:
            batches.append([])
        batches[-1].append((period, item))
    out, done = [], 0
    for batch in batches:
        agreed = agreement_of([tally(item for _, item in batch)])
        out.append({"first": done + 1, "last": done + len(batch), "after_redecisions": batch[0][0],
                    **{k: v for k, v in agreed.as_json().items() if k in ("reviewed", "accepted", "changed",
                                                                          "rejected", "precision", "kept", "kappa",
                                                                          "kappa_pairs")}})
        done += len(batch)
    return {"batch_size": size, "reviewed": done, "batches": out,
            "redecisions": [{"at": m.isoformat(timespec="seconds"),
                             "after_reviewed": sum(b["reviewed"] for b in out if b["after_redecisions"] < period)}
                            for period, m in enumerate(marks, start=1)]}


# --- a turn cut into highlighted pieces ---------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    start: int  # offset in Transcript.text
    text: str
    codes: tuple[CodeView, ...]  # the codes covering it, the narrowest last (its colour shows)
    opens: tuple[CodeView, ...]  # codes that start here: their anchors go here


def pieces(turn: Turn, codes: Sequence[CodeView]) -> list[Piece]:
    """The turn's text cut at every code boundary, each piece with the codes that cover it."""
    mine = [c for c in codes if c.start < turn.char_end and c.end > turn.char_start and c.end > c.start]
    cuts = sorted({turn.char_start, turn.char_end} | {min(max(o, turn.char_start), turn.char_end)
                                                      for c in mine for o in (c.start, c.end)})
    out = []
    for a, b in zip(cuts, cuts[1:]):
        covering = sorted((c for c in mine if c.start < b and c.end > a), key=lambda c: (-(c.end - c.start), c.id))
        opens = tuple(c for c in mine if max(c.start, turn.char_start) == a)
        out.append(Piece(a, turn.text[a - turn.char_start: b - turn.char_start], tuple(covering), opens))
    return out


def codes_by_turn(turns: Sequence[Turn], codes: Sequence[CodeView]) -> dict[int, list[CodeView]]:
    """Per turn index, the codes whose span overlaps the turn (what `pieces` keeps of them), in the
    codes' order: so a page cuts each turn against its own few codes, not against all of them."""
    order = sorted(turns, key=lambda t: t.char_start)
    starts = [t.char_start for t in order]
    out: dict[int, list[CodeView]] = {}
    for c in codes:
        first = max(0, bisect_right(starts, c.start) - 1)
        for turn in order[first:bisect_left(starts, c.end)]:
            if c.start < turn.char_end and c.end > turn.char_start and c.end > c.start:
                out.setdefault(turn.index, []).append(c)
    return out


def codes_starting_in(turns: Sequence[Turn], codes: Sequence[CodeView]) -> dict[int, list[str]]:
    """Per turn index, the ids of the codes that start in the turn's text, in the codes' order."""
    order = sorted(turns, key=lambda t: t.char_start)
    starts = [t.char_start for t in order]
    out: dict[int, list[str]] = {}
    for c in codes:
        at = bisect_right(starts, c.start) - 1  # turns do not overlap: only this one can hold the start
        if at >= 0 and order[at].char_start <= c.start < order[at].char_end:
            out.setdefault(order[at].index, []).append(c.id)
    return out


# --- facets -------------------------------------------------------------------------------------

FACETS = ("kind", "force", "interview", "speaker", "status")


def facet_value(code: CodeView, facet: str) -> str:
    return {"kind": code.kind, "force": code.force, "interview": code.transcript, "speaker": code.speaker,
            "status": code.status}[facet]


def matches(code: CodeView, filters: dict[str, str], min_score: float | None, skip: str = "") -> bool:
    if min_score is not None and (code.score is None or code.score < min_score):
        return False
    return all(facet_value(code, name) == value for name, value in filters.items() if value and name != skip)


def facet_counts(codes: Sequence[CodeView], filters: dict[str, str], min_score: float | None
                 ) -> dict[str, list[tuple[str, int]]]:
    """Per facet, each value's count among the codes that pass every *other* filter (as search sites
    count them: choosing a value shows what the other values would give)."""
    wanted = {name: value for name, value in filters.items() if value}
    counts: dict[str, Counter[str]] = {facet: Counter() for facet in FACETS}
    for c in codes:
        if min_score is not None and (c.score is None or c.score < min_score):
            continue
        values = {facet: facet_value(c, facet) for facet in FACETS}
        missed = [name for name, value in wanted.items() if values[name] != value]
        if len(missed) > 1:
            continue
        for facet in missed or FACETS:  # one filter missed: the code counts for that facet alone
            counts[facet][values[facet]] += 1
    return {facet: sorted(((v, n) for v, n in counted.items() if v), key=lambda item: (-item[1], item[0]))
            for facet, counted in counts.items()}
