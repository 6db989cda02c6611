"""A review decision as the workbench takes it: the form's fields turned into ReviewStore.decide calls.

The store checks every decision against the stored transcript (a code's span inside one interviewee
turn, its quote the text there) and records it; nothing here trusts the browser's offsets or labels.
An undo is a new decision (or two) restoring the code's state before its latest decision (a reset
when that decision was the first: the code is the model's suggestion again); each of them carries a
note starting with UNDO, so a second undo goes one step further back instead of redoing, and the
history says what happened. A reset asked for directly takes every decision on the code back at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from jtbd.schemas.transcript import Transcript

UNDO = "undo: "
KINDS = ("force", "trigger", "quote", "job")
FORCES = ("push", "pull", "anxiety", "habit")
DIMENSIONS = ("functional", "emotional", "social")
_STATES = {"accept": "accepted", "relabel": "changed", "respan": "changed", "add": "added", "reject": "rejected"}


class UnknownCode(LookupError):
    """The decision names a code the interview does not have."""


@dataclass(frozen=True)
class Outcome:
    code_id: str
    message: str
    decisions: tuple[Any, ...]


def apply(store: Any, study: str, transcript: Transcript, form: dict[str, str], reviewer: str) -> Outcome:
    """Record the decision the form asks for; ValueError (one line) when it does not fit."""
    action = form.get("action", "")
    note = form.get("note", "").strip()
    if action == "add":
        return _add(store, study, transcript, form, reviewer)
    code_id = form.get("code_id", "")
    current = find(store, study, transcript.id, code_id)
    decide = _decider(store, study, transcript.id, code_id, reviewer)
    if action in ("accept", "reject"):
        return Outcome(code_id, f"{action}ed {_label(current.code)}", (decide(action, note=note),))
    if action == "note":
        return Outcome(code_id, "note saved", (decide("note", note=form.get("note", "")),))
    if action == "relabel":
        changed = relabelled(current.code, form.get("kind", ""), form.get("force", ""), form.get("dimension", ""))
        return Outcome(code_id, f"relabelled {_label(current.code)} as {_label(changed)}",
                       (decide("relabel", code=changed, note=note),))
    if action == "respan":
        start, end = span_of(transcript, form)
        return Outcome(code_id, f"span of {_label(current.code)} set to {start}-{end}",
                       (decide("respan", code=respanned(current.code, transcript, start, end), note=note),))
    if action == "undo":
        return _undo(store, study, transcript.id, current, decide)
    if action == "reset":
        return Outcome(code_id, f"{_label(current.code)} is the model's suggestion again",
                       (decide("reset", note=note),))
    raise ValueError(f"unknown action {action!r}: it must be accept, reject, relabel, respan, note, add, undo or reset")


def find(store: Any, study: str, transcript_id: str, code_id: str) -> Any:
    for item in store.reviewed(study, transcript_id):
        if item.code.get("id") == code_id or (item.decision is not None and item.decision.code_id == code_id):
            return item
    raise UnknownCode(f"no code {code_id!r} in interview {transcript_id!r}")


def _decider(store: Any, study: str, transcript_id: str, code_id: str, reviewer: str) -> Any:
    def decide(action: str, code: dict | None = None, note: str = "") -> Any:
        return store.decide(study, transcript_id, code_id, action, reviewer, code=code, note=note)
    return decide


# --- codes as a person changes them ------------------------------------------------------------


def relabelled(code: dict, kind: str, force: str, dimension: str) -> dict:
    """The code with another kind, force type or job dimension (its span and words kept)."""
    kind = kind or code.get("kind", "")
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: it must be one of {', '.join(KINDS)}")
    base = {k: v for k, v in code.items() if k not in ("kind", "force", "dimension", "situation", "motivation",
                                                        "outcome", "statement_source")}
    if kind == "force":
        force = force or code.get("force") or ""
        if force not in FORCES:
            raise ValueError(f"force {force!r}: it must be one of {', '.join(FORCES)}")
        return {**base, "kind": "force", "force": force}
    if kind == "job":
        if code.get("kind") != "job":  # a job story is a statement a person would have to write
            raise ValueError("only a job story's dimension can be changed here; a job needs its statement")
        dimension = dimension or code.get("dimension", "")
        if dimension not in DIMENSIONS:
            raise ValueError(f"dimension {dimension!r}: it must be one of {', '.join(DIMENSIONS)}")
        return {**code, "dimension": dimension}
    return {**base, "kind": kind}


def span_of(transcript: Transcript, form: dict[str, str]) -> tuple[int, int]:
    """The selected offsets, without the spaces a selection picks up at its ends."""
    try:
        start, end = int(form.get("start", "")), int(form.get("end", ""))
    except ValueError:
        raise ValueError("a selection needs start and end, whole numbers (character offsets)") from None
    text = transcript.text
    start, end = max(0, min(start, end)), min(len(text), max(start, end))
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start >= end:
        raise ValueError("the selection holds no words")
    return start, end


def respanned(code: dict, transcript: Transcript, start: int, end: int) -> dict:
    return {**code, "quote": transcript.text[start:end],
            "grounding": {**(code.get("grounding") or {}), "char_start": start, "char_end": end}}


def _add(store: Any, study: str, transcript: Transcript, form: dict[str, str], reviewer: str) -> Outcome:
    start, end = span_of(transcript, form)
    kind, force = form.get("kind", ""), form.get("force", "")
    if kind == "job":
        raise ValueError("a job story needs its statement: add the passage as a quote or a force and note the job")
    code = relabelled({"kind": kind or "force", "quote": transcript.text[start:end],
                       "grounding": {"char_start": start, "char_end": end}}, kind or "force", force, "")
    label = _label(code)
    code_id = f"{transcript.id}:{label}:{start}-{end}"  # as the model's codes are named
    try:
        rejected = find(store, study, transcript.id, code_id).status == "rejected"
    except UnknownCode:
        rejected = False
    if rejected:  # the same words with the same label, rejected before: taking it back is accepting it
        decision = store.decide(study, transcript.id, code_id, "accept", reviewer, note=form.get("note", "").strip())
        return Outcome(code_id, f"added {label} again (it had been rejected)", (decision,))
    decision = store.decide(study, transcript.id, code_id, "add", reviewer, code=code, note=form.get("note", "").strip())
    return Outcome(code_id, f"added {label}", (decision,))


# --- undo ---------------------------------------------------------------------------------------


def _undo(store: Any, study: str, transcript_id: str, current: Any, decide: Any) -> Outcome:
    code_id = current.code.get("id") or current.decision.code_id
    history = store.history(study, transcript_id, code_id)
    steps = standing_steps(history)
    if not steps:
        raise ValueError("nothing to undo on this code: no decision stands on it")
    undone = steps.pop()
    target_state, target_code = state_after(steps)
    suggestion = next((d.suggestion for d in history if d.suggestion), None) or (
        current.code if current.status in ("suggested", "orphaned") else None)
    mark = f"{UNDO}{undone[-1].action} of {undone[-1].at:%Y-%m-%d %H:%M:%S}"
    if all(d.action == "note" for d in undone):  # the state stands; the mark takes the note back
        actions: list[tuple[str, dict | None]] = [("note", None)]
    else:
        actions = restoring(target_state, target_code or suggestion, current.status, current.code, suggestion)
    made = tuple(decide(action, code=code, note=mark) for action, code in actions)
    return Outcome(code_id, f"undid the {undone[-1].action} of {_label(current.code)}", made)


def standing_steps(history: Sequence[Any]) -> list[list[Any]]:
    """The decisions still standing, as steps: each undo (its decisions share one note) takes back
    the step before it."""
    steps: list[list[Any]] = []
    i = 0
    while i < len(history):
        d = history[i]
        if d.note.startswith(UNDO):
            while i + 1 < len(history) and history[i + 1].note == d.note:
                i += 1
            if steps:
                steps.pop()
        else:
            steps.append([d])
        i += 1
    return steps


def state_after(steps: Sequence[Sequence[Any]]) -> tuple[str | None, dict | None]:
    """(state, code) after these decisions: None before any decision but notes, and after a reset."""
    state, code = None, None
    for step in steps:
        for d in step:
            if d.action in _STATES:
                state, code = _STATES[d.action], d.code
            elif d.action == "reset":
                state, code = None, None
    return state, code


def restoring(target: str | None, target_code: dict | None, status: str, code: dict,
              suggestion: dict | None) -> list[tuple[str, dict | None]]:
    """The decisions that bring a code from `status`/`code` back to `target`/`target_code`."""
    if target is None:  # back to before the code's first decision (or to after a reset)
        return [("reset", None)]
    if target == "rejected":
        return [("reject", None)]
    base = code or suggestion  # a rejected code shows the version that was rejected
    if not base or not target_code:
        raise ValueError("this code cannot be restored: the review store holds no version of it to go back to")
    steps: list[tuple[str, dict | None]] = [("accept", None)] if status == "rejected" else []
    span = lambda c: ((c.get("grounding") or {}).get("char_start"), (c.get("grounding") or {}).get("char_end"))  # noqa: E731
    if span(base) != span(target_code):
        moved = {**base, "quote": target_code["quote"],
                 "grounding": {**base["grounding"], **{k: target_code["grounding"][k] for k in ("char_start", "char_end")}}}
        steps.append(("respan", moved))
    if _label(base) != _label(target_code):
        steps.append(("relabel", target_code))
    if target == "accepted" and (not steps or steps[-1][0] != "accept"):
        steps.append(("accept", None))
    return steps


def latest_notes(history: Sequence[Any]) -> dict[str, str]:
    """Each code's latest standing note (a later decision without one leaves it; an undone one is gone)."""
    by_code: dict[str, list[Any]] = {}
    for d in history:
        by_code.setdefault(d.code_id, []).append(d)
    notes = {}
    for code_id, decisions in by_code.items():
        said = [d.note for step in standing_steps(decisions) for d in step if d.note]
        if said:
            notes[code_id] = said[-1]
    return notes


def _label(code: dict | None) -> str:
    if not code:
        return "code"
    kind = code.get("kind", "")
    return {"force": f"force.{code.get('force', '')}", "job": f"job.{code.get('dimension', '')}"}.get(kind, kind)
