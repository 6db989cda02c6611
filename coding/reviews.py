"""The review store: each study's coded transcripts, the model's suggestions and the reviewers'
decisions, in any SQLAlchemy database (SQLite at <data_dir>/reviews.sqlite3 by default).

    transcripts   the whole transcript as the interview page shows it (text, turns, speakers,
                  roles, timestamps, offsets), per study
    suggestions   the latest run's codes of each transcript, as the model made them
    decisions     append-only: accept | reject | relabel | respan | note | add | reset, by whom,
                  when, the suggestion it answers and the code it leaves

A code's standing is its latest decision, so re-coding never overwrites a human: a suggestion
that comes back keeps its decision (an accepted one the reviewer's version), and a reviewed code
whose suggestion is gone stays, "orphaned" (a rejected one just stays rejected). A reset takes a
person's decision back without erasing it: the code is the model's suggestion again, as if nobody
had decided it (and leaves the store when a later run no longer suggests it). Every write is
one transaction that commits or raises: on SQLite in WAL mode, writers take the lock when they
begin (BEGIN IMMEDIATE) and wait for it up to the busy timeout, so two reviewers' decisions
queue instead of failing, the later one wins and the history keeps both. The schema is created
and upgraded by the Alembic migrations beside this module when a store is opened.
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from jtbd.coding.extract import grounding_for
from jtbd.coding.ground import Span
from jtbd.coding.outputs import code_record
from jtbd.schemas.codebook import KINDS, Alignment, Code, Provenance, schema_version
from jtbd.schemas.transcript import Transcript, Turn
from jtbd.settings import STUDY_NAME

ACTIONS = ("accept", "reject", "relabel", "respan", "note", "add", "reset")
STATUSES = ("suggested", "accepted", "rejected", "changed", "added", "orphaned")
BUSY_TIMEOUT = 30.0  # seconds a writer waits for another one's lock before it gives up, saying so
MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "jtbd_review_version"  # not alembic_version: the database may be shared with an app of its own

_CODE: TypeAdapter[Any] = TypeAdapter(Code)
_STANDING = {"accept": "accepted", "relabel": "changed", "respan": "changed", "add": "added"}
_MIGRATING = threading.Lock()  # Alembic's `context` and `op` are module globals: one migration at a time

# The tables as the migrations make them (coding/migrations/versions), for queries only.
_meta = sa.MetaData()
_JSON = sa.JSON(none_as_null=True)
_when = functools.partial(sa.Column, type_=sa.DateTime(timezone=True), nullable=False)
transcripts = sa.Table(
    "transcripts", _meta,
    sa.Column("study", sa.Text, primary_key=True), sa.Column("transcript_id", sa.Text, primary_key=True),
    sa.Column("source", sa.Text), sa.Column("source_path", sa.Text), sa.Column("format", sa.Text),
    sa.Column("text", sa.Text), sa.Column("turns", _JSON), sa.Column("interviewers", _JSON), _when("coded_at"),
)
suggestions = sa.Table(
    "suggestions", _meta,
    sa.Column("study", sa.Text, primary_key=True), sa.Column("transcript_id", sa.Text, primary_key=True),
    sa.Column("code_id", sa.Text, primary_key=True), sa.Column("code", _JSON), sa.Column("provenance", _JSON),
    _when("suggested_at"),
)
decisions = sa.Table(
    "decisions", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("study", sa.Text), sa.Column("transcript_id", sa.Text), sa.Column("code_id", sa.Text),
    sa.Column("action", sa.Text), sa.Column("reviewer", sa.Text), _when("at"),
    sa.Column("suggestion", _JSON), sa.Column("code", _JSON), sa.Column("note", sa.Text),
)


@dataclass(frozen=True)
class Decision:
    code_id: str
    study: str
    transcript: str
    action: str
    reviewer: str
    at: datetime
    suggestion: dict | None  # the suggestion it answers; None for add
    code: dict | None  # the code it leaves; None for reject
    note: str = ""


@dataclass(frozen=True)
class ReviewedCode:
    code: dict  # the code as it now stands: the reviewer's version, else the suggestion
    status: str  # one of STATUSES
    decision: Decision | None  # the latest decision, if any


class ReviewStoreError(RuntimeError):
    """The database could not be opened, read or written; str() is one line, the password hidden."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem  # describe_error shows it as it is


@dataclass(frozen=True)
class _Standing:
    """A code folded from its current suggestion and its decisions, oldest first."""
    suggestion: dict | None  # this run's suggestion, else the last one a decision answered
    present: bool  # the latest run suggested it
    state: str | None  # accepted | rejected | changed | added; None before any such decision, or after a reset
    code: dict | None  # the reviewer's version, else the suggestion; None when rejected
    last: dict | None  # the latest version of it there was (what a rejection rejected)
    reset: bool = False  # the latest decision is a reset: nobody's decision stands on it

    @property
    def gone(self) -> bool:
        """Reset, and no longer suggested: an unreviewed suggestion a later run dropped, so no code at all."""
        return self.reset and not self.present

    @property
    def known(self) -> bool:
        return not self.gone and (self.suggestion is not None or self.state is not None)

    @property
    def status(self) -> str:
        if self.state == "rejected":
            return "rejected"
        if not self.present and self.state != "added":
            return "orphaned"
        return self.state or "suggested"

    @property
    def shown(self) -> dict:
        return self.code or self.last or self.suggestion or {}


def _fold(suggestion: dict | None, history: Sequence[Decision]) -> _Standing:
    last_suggestion, state, code = suggestion, None, suggestion
    last = None
    for d in history:
        if suggestion is None and d.suggestion is not None:
            last_suggestion = d.suggestion
        if d.action == "reject":
            state, code = "rejected", None
        elif d.action == "reset":
            state, code = None, suggestion
        elif d.action != "note":
            state, code = _STANDING[d.action], d.code
        last = d.code or last
    if suggestion is not None and state is None:
        last = suggestion  # a new run's version of a code nobody changed
    reset = bool(history) and history[-1].action == "reset"
    return _Standing(last_suggestion, suggestion is not None, state, code, last, reset)


class ReviewStore:
    def __init__(self, engine: Engine, where: str, timeout: float) -> None:
        self.engine, self.where, self.timeout = engine, where, timeout
        self._writer = engine.execution_options(jtbd_write=True)

    @classmethod
    def open(cls, url: str, timeout: float | None = None) -> "ReviewStore":
        """Open the database at `url`, creating or upgrading its tables; on SQLite: WAL mode and a
        busy timeout of `timeout` seconds (default BUSY_TIMEOUT)."""
        where, timeout = _shown_url(url), BUSY_TIMEOUT if timeout is None else timeout
        try:
            engine = _engine(url, timeout)
        except (SQLAlchemyError, ImportError, OSError, ValueError) as err:  # no driver, a bad URL, no folder
            raise ReviewStoreError(f"cannot open the review database {where}: {_first_line(err)}") from None
        store = cls(engine, where, timeout)
        try:
            with store._database("it could not be opened"):
                store._migrate()
        except BaseException:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "ReviewStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------------

    def studies(self) -> dict[str, int]:
        """Each study with its number of transcripts."""
        query = sa.select(transcripts.c.study, sa.func.count()).group_by(transcripts.c.study)
        with self._reading() as conn:
            return {study: n for study, n in sorted(conn.execute(query).all())}

    def transcript_ids(self, study: str) -> list[str]:
        query = sa.select(transcripts.c.transcript_id).where(transcripts.c.study == study)
        with self._reading() as conn:
            return sorted(conn.execute(query).scalars())

    def transcript(self, study: str, transcript_id: str) -> Transcript | None:
        with self._reading() as conn:
            return _transcript(conn, study, transcript_id)

    def source_path(self, study: str, transcript_id: str) -> str | None:
        """The file the transcript was last coded from."""
        query = sa.select(transcripts.c.source_path).where(*_of(transcripts, study, transcript_id))
        with self._reading() as conn:
            return conn.execute(query).scalar()

    def reviewed(self, study: str, transcript_id: str | None = None) -> list[ReviewedCode]:
        """Every code of the study (or of one transcript) as it stands, in transcript and text order."""
        with self._reading() as conn:
            suggested = {(r.transcript_id, r.code_id): r.code
                         for r in conn.execute(sa.select(suggestions).where(*_of(suggestions, study, transcript_id)))}
            histories: dict[tuple[str, str], list[Decision]] = {}
            for d in _decisions(conn, study, transcript_id):
                histories.setdefault((d.transcript, d.code_id), []).append(d)
        out = []
        for key in suggested.keys() | histories.keys():
            history = histories.get(key, [])
            standing = _fold(suggested.get(key), history)
            if standing.gone:
                continue
            out.append(ReviewedCode(standing.shown, standing.status, history[-1] if history else None))
        return sorted(out, key=lambda r: (r.code.get("grounding", {}).get("transcript", ""),
                                          r.code.get("grounding", {}).get("char_start", 0), r.code.get("id", "")))

    def suggested(self, study: str, transcript_id: str) -> dict[str, dict]:
        """The latest run's suggestions of a transcript, by code id, as the model made them."""
        query = sa.select(suggestions.c.code_id, suggestions.c.code).where(*_of(suggestions, study, transcript_id))
        with self._reading() as conn:
            return {code_id: code for code_id, code in conn.execute(query)}

    def stamp(self, study: str) -> tuple:
        """The study's version, from its indexes alone: transcripts and when the latest was coded,
        decisions and the latest one's id. Equal: nothing was coded, decided or forgotten since."""
        coded = sa.select(sa.func.count(), sa.func.max(transcripts.c.coded_at)).where(transcripts.c.study == study)
        decided = sa.select(sa.func.count(), sa.func.max(decisions.c.id)).where(decisions.c.study == study)
        with self._reading() as conn:
            return (*conn.execute(coded).one(), *conn.execute(decided).one())

    def versions(self, study: str) -> dict[str, tuple]:
        """Each transcript's version: when it was last coded, and its decisions' count and latest id. A
        reader that keeps a study's codes (the web app) reads a transcript again when its version
        changed (the count also notices a decision committed after a later-numbered one)."""
        coded = sa.select(transcripts.c.transcript_id, transcripts.c.coded_at).where(transcripts.c.study == study)
        decided = (sa.select(decisions.c.transcript_id, sa.func.count(), sa.func.max(decisions.c.id))
                   .where(decisions.c.study == study).group_by(decisions.c.transcript_id))
        with self._reading() as conn:
            counts = {tid: (n, last) for tid, n, last in conn.execute(decided)}
            return {tid: (_utc(at), *counts.get(tid, (0, None))) for tid, at in conn.execute(coded)}

    def history(self, study: str, transcript_id: str | None = None, code_id: str | None = None) -> list[Decision]:
        """Every decision, oldest first (the order they were committed in)."""
        with self._reading() as conn:
            return [d for d in _decisions(conn, study, transcript_id) if code_id is None or d.code_id == code_id]

    # --- writing ---------------------------------------------------------------------------------

    def save_coded(self, study: str, transcript: Transcript, source_path: str, codes: list[dict]) -> None:
        """Store the transcript and this run's codes as its suggestions, in one transaction."""
        with self.saving_coded(study, transcript, source_path, codes):
            pass

    @contextmanager
    def saving_coded(self, study: str, transcript: Transcript, source_path: str,
                     codes: list[dict]) -> Iterator[None]:
        """save_coded whose transaction commits when the with-block ends, and is rolled back when it
        raises: the flow writes the codes to Chroma inside it, so a failure of either leaves neither."""
        if not isinstance(study, str) or not STUDY_NAME.fullmatch(study):
            raise ValueError(f"study {study!r}: a study name is letters, digits, - and _")
        now = _now()
        rows = {}
        for code in codes:  # checked before the transaction: a bad code is the caller's mistake
            try:
                dumped = _dumped(_CODE.validate_python(code))
            except ValidationError as err:
                raise ValueError(f"a code of {transcript.id!r} is not valid: {_first_error(err)}") from None
            rows[dumped["id"]] = {"study": study, "transcript_id": transcript.id, "code_id": dumped["id"],
                                  "code": dumped, "provenance": dumped["provenance"], "suggested_at": now}
        values = {"source": transcript.source, "source_path": source_path, "format": transcript.format,
                  "text": transcript.text, "turns": [t.model_dump(mode="json") for t in transcript.turns],
                  "interviewers": list(transcript.interviewers), "coded_at": now}
        with self._write("the coded transcript was not saved") as conn:
            where = _of(transcripts, study, transcript.id)
            if not conn.execute(sa.update(transcripts).where(*where).values(**values)).rowcount:
                conn.execute(sa.insert(transcripts).values(study=study, transcript_id=transcript.id, **values))
            conn.execute(sa.delete(suggestions).where(*_of(suggestions, study, transcript.id)))
            if rows:
                conn.execute(sa.insert(suggestions), list(rows.values()))
            yield

    def decide(self, study: str, transcript_id: str, code_id: str, action: str, reviewer: str,
               code: dict | None = None, note: str = "") -> Decision:
        """Record a reviewer's decision on a code; raises ValueError (one line) for a decision that does
        not fit the code or the transcript, ReviewStoreError when the database cannot take it."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: it must be one of {', '.join(ACTIONS)}")
        if not isinstance(reviewer, str) or not reviewer.strip():
            raise ValueError("a decision needs the reviewer's name")
        if not isinstance(note, str):
            raise ValueError("a note must be text")
        # Read and written in one write transaction: the code cannot change between the check and the insert.
        with self._write("the decision was not recorded") as conn:
            transcript = _transcript(conn, study, transcript_id)
            if transcript is None:
                raise ValueError(f"no transcript {transcript_id!r} in study {study!r}")
            current = conn.execute(sa.select(suggestions.c.code).where(
                *_of(suggestions, study, transcript_id), suggestions.c.code_id == code_id)).scalar()
            history = [d for d in _decisions(conn, study, transcript_id) if d.code_id == code_id]
            standing = _fold(current, history)
            result = _resulting(action, standing, code, note, transcript, code_id, reviewer)
            decision = Decision(code_id, study, transcript_id, action, reviewer, _now(),
                                None if action == "add" else standing.suggestion, result, note)
            conn.execute(sa.insert(decisions).values(
                study=study, transcript_id=transcript_id, code_id=code_id, action=action, reviewer=reviewer,
                at=decision.at, suggestion=decision.suggestion, code=result, note=note))
        return decision

    def forget(self, study: str, transcript_ids: list[str]) -> dict[str, int]:
        """Delete the transcripts with their suggestions and decisions (a participant withdrew): the
        rows removed per table. A SQLite file is then compacted and its write-ahead log emptied, so the
        words leave the file too."""
        ids = list(transcript_ids)
        removed = {}
        with self._write("nothing was removed") as conn:
            for table in (decisions, suggestions, transcripts):  # rows that point at a transcript first
                removed[table.name] = conn.execute(sa.delete(table).where(
                    table.c.study == study, table.c.transcript_id.in_(ids))).rowcount
        if any(removed.values()):
            self._compact()
        return {name: removed[name] for name in ("transcripts", "suggestions", "decisions")}

    # --- the database ----------------------------------------------------------------------------

    def _migrate(self) -> None:
        head = _head()
        with self.engine.connect() as conn:
            if _version(conn) == head:
                return
        from alembic import command
        from alembic.config import Config
        from alembic.util import CommandError

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
        # In the writer's transaction: a second process opening a new database waits, then finds it made.
        with _MIGRATING, self._writer.begin() as conn:
            if conn.dialect.name == "postgresql":  # its DDL takes no table lock: two creators would clash
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7242803)")
            config.attributes.update(connection=conn, version_table=VERSION_TABLE)
            try:
                command.upgrade(config, "head")
            except CommandError:
                raise ReviewStoreError(f"the review database {self.where} has schema version {_version(conn)!r}, "
                                       "which this jtbd-coder does not know: it was written by a newer one, "
                                       "upgrade jtbd-coder") from None

    def _compact(self) -> None:
        if self.engine.dialect.name != "sqlite":
            return  # a server reclaims deleted rows itself (PostgreSQL's VACUUM)
        with self._database("the rows were removed but the file was not compacted"):
            raw = self.engine.raw_connection()
            try:
                sqlite = raw.driver_connection  # outside any transaction: VACUUM needs that
                sqlite.execute("VACUUM")
                busy = sqlite.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                raw.close()
        if busy:
            raise ReviewStoreError(f"the rows were removed from the review database {self.where}, but another "
                                   "program has it open and its write-ahead log still holds them: close that "
                                   "program (the web app) and forget again")

    @contextmanager
    def _database(self, failed: str) -> Iterator[None]:
        """A database error as one line that says what did not happen."""
        try:
            yield
        except SQLAlchemyError as err:
            reason = _first_line(getattr(err, "orig", None) or err)
            if "locked" in reason or "busy" in reason:
                raise ReviewStoreError(f"the review database {self.where} is locked by another writer (waited "
                                       f"{self.timeout:g} s): {failed}; try again") from None
            raise ReviewStoreError(f"the review database {self.where} cannot be used ({reason}): {failed}") from None

    @contextmanager
    def _write(self, failed: str) -> Iterator[Connection]:
        with self._database(failed), self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._database("the review records could not be read"), self.engine.connect() as conn:
            yield conn


# --- what a decision leaves -----------------------------------------------------------------------

def _resulting(action: str, standing: _Standing, code: dict | None, note: str, transcript: Transcript,
               code_id: str, reviewer: str) -> dict | None:
    """The code a decision leaves (None for a rejection), after checking that the decision fits."""
    where = f"in transcript {transcript.id!r}"
    if action == "add":
        if standing.known:
            raise ValueError(f"code {code_id!r} already exists {where}: relabel or respan it instead of adding it")
        if code is None:
            raise ValueError("add needs the code to add")
        human = Provenance(prompt_version="human", schema_version=schema_version(), model=f"reviewer {reviewer}")
        return _reviewers_statement(_checked(code, transcript, code_id, human.model_dump()), None)
    if not standing.known:
        raise ValueError(f"no code {code_id!r} {where}")
    if action in ("accept", "reject", "note", "reset") and code is not None:
        raise ValueError(f"{action} takes no code: relabel or respan to change one")
    if action == "reset":
        return _reset(standing)
    if action == "accept":
        return standing.shown
    if action == "reject":
        return None
    if action == "note":
        if not note.strip():
            raise ValueError("a note needs its text")
        return standing.code
    if code is None:
        raise ValueError(f"{action} needs the changed code")
    now = standing.shown
    changed = _checked(code, transcript, code_id, now.get("provenance"))
    span = lambda c: (c["grounding"]["char_start"], c["grounding"]["char_end"])  # noqa: E731
    if action == "relabel" and span(changed) != span(now):
        raise ValueError(f"relabel keeps the span {'-'.join(map(str, span(now)))}: respan to move it")
    if action == "respan" and _label(changed) != _label(now):
        raise ValueError(f"respan keeps the label {_label(now)}: relabel to change it")
    return _reviewers_statement(changed, now)


def _reset(standing: _Standing) -> dict:
    """The suggestion a reset returns a code to, after checking there is one to return to."""
    if standing.suggestion is None:
        raise ValueError("a code a person added has no model suggestion to go back to: reject it to withdraw it")
    if not standing.present:
        raise ValueError("the latest run no longer suggests this code: there is no suggestion to go back to")
    if standing.state is None:
        raise ValueError("no decision stands on this code: it is the model's suggestion already")
    return standing.suggestion  # this run's: present, so the one the latest run made


def _reviewers_statement(code: dict, was: dict | None) -> dict:
    """A job story whose statement the reviewer wrote says so (the model's say statement_source "model")."""
    story = ("situation", "motivation", "outcome")
    if code["kind"] == "job" and (was is None or any(code.get(k) != was.get(k) for k in story)
                                  or was.get("statement_source") == "reviewer"):
        return {**code, "statement_source": "reviewer"}
    return code


def _checked(code: Any, transcript: Transcript, code_id: str, provenance: dict | None) -> dict:
    """A reviewer's code re-grounded in the stored transcript: its span inside one interviewee turn,
    its quote the text at its offsets, its kind, force and dimension valid per the codebook. Its
    grounding and provenance are the store's, whatever the client sent."""
    if not isinstance(code, dict):
        raise ValueError("a code must be a JSON object")
    g = code.get("grounding") if isinstance(code.get("grounding"), dict) else {}
    start, end = g.get("char_start"), g.get("char_end")
    if type(start) is not int or type(end) is not int:
        raise ValueError("a code needs grounding.char_start and grounding.char_end, whole numbers")
    turn = transcript.turn_at(start) if 0 <= start < end else None
    if turn is None or not turn.is_coded or end > turn.char_end:
        raise ValueError(f"the span {start}-{end} is not inside one interviewee turn of {transcript.id!r}")
    words = transcript.text[start:end]
    if code.get("quote") != words:
        shown = words if len(words) <= 60 else words[:57] + "..."
        raise ValueError(f"the quote is not the transcript's text at {start}-{end} ({shown!r})")
    grounding = grounding_for(Span(turn.index, start, end, Alignment.exact, 100.0), transcript)
    try:
        parsed = _CODE.validate_python({**code, "grounding": grounding.model_dump(), "provenance": provenance})
    except ValidationError as err:
        raise ValueError(f"the code is not valid: {_first_error(err)}") from None
    return {**_dumped(parsed), "id": code_id}  # the code it changes or adds keeps the id decisions name it by


def _dumped(code: Any) -> dict:
    return code_record(code)  # as a line of codes.jsonl: id, label, the job story and the stored code


def _label(code: dict) -> str:
    return _CODE.validate_python(code).label  # force.push, job.emotional, trigger, quote


def _first_error(err: ValidationError) -> str:
    problem = err.errors(include_url=False)[0]
    loc = [str(part) for part in problem["loc"]]
    loc = loc[1:] if loc and loc[0] in KINDS else loc  # the union's tag
    return f"{'.'.join(loc)}: {problem['msg']}" if loc else problem["msg"]


# --- rows ---------------------------------------------------------------------------------------

def _of(table: sa.Table, study: str, transcript_id: str | None) -> list[Any]:
    conditions = [table.c.study == study]
    return conditions + ([table.c.transcript_id == transcript_id] if transcript_id is not None else [])


def _transcript(conn: Connection, study: str, transcript_id: str) -> Transcript | None:
    row = conn.execute(sa.select(transcripts).where(*_of(transcripts, study, transcript_id))).first()
    if row is None:
        return None
    return Transcript(id=row.transcript_id, source=row.source, format=row.format, text=row.text,
                      turns=[Turn.model_validate(t) for t in row.turns], interviewers=row.interviewers)


def _decisions(conn: Connection, study: str, transcript_id: str | None) -> list[Decision]:
    query = sa.select(decisions).where(*_of(decisions, study, transcript_id)).order_by(decisions.c.id)
    return [Decision(r.code_id, r.study, r.transcript_id, r.action, r.reviewer, _utc(r.at), r.suggestion, r.code,
                     r.note or "") for r in conn.execute(query)]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


# --- the engine -----------------------------------------------------------------------------------

def _engine(url: str, timeout: float) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        connect = {"connect_timeout": max(1, int(timeout))} if parsed.get_backend_name() == "postgresql" else {}
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect)
    if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, connect_args={"timeout": timeout})
    sa.event.listen(engine, "connect", functools.partial(_sqlite_connected, timeout=timeout))
    sa.event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connected(dbapi_connection: Any, _record: Any, timeout: float) -> None:
    dbapi_connection.isolation_level = None  # the driver's own BEGIN comes late and deferred: _sqlite_begin's
    for pragma in (f"busy_timeout = {int(timeout * 1000)}", "journal_mode = WAL", "foreign_keys = ON",
                   "secure_delete = ON"):  # secure_delete: a forgotten transcript's pages are zeroed
        dbapi_connection.execute(f"PRAGMA {pragma}")


def _sqlite_begin(conn: Connection) -> None:
    # A writer takes the lock when it begins, and waits for it: a deferred one that read first could
    # not upgrade its lock after another writer committed, and would fail instead of waiting.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("jtbd_write") else "BEGIN")


@functools.cache
def _head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def _version(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def _shown_url(url: str) -> str:
    """The URL without its password; a SQLite file as its path."""
    try:
        parsed = make_url(url)
    except Exception:
        return repr(url.split("@")[-1])
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database
    return parsed.render_as_string(hide_password=True)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
