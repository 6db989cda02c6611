"""The researcher's workbench (`jtbd serve`): browse, search, see and review a study's codes.

Server-rendered pages from Jinja templates (autoescaped: transcript text is always text), a little
JavaScript (htmx, vendored, and static/app.js), no build step. Every page has a JSON twin: the same
URL with `.json` (`/.json` for the study page), from the same data the template renders. Facets and
filters live in the query string. The served study is the settings' one; `?study=NAME` opens
another of the same store.

    GET  /                         the study: interviews, forces of progress, triggers, jobs, timeline
    GET  /interview/<id>           one interview: transcript with its codes highlighted, review
    GET  /search?q=&kind=&force=&interview=&speaker=&status=&min_score=&k=
    POST /review                   a review decision: action=accept|reject|relabel|respan|note|add|undo|reset
                                   (CSRF token in the form or X-CSRF-Token)
    GET  /export?format=csv|json|md|gold|qdpx&status=reviewed|all|suggestions

Writes go to the review store (coding/reviews.py); pages read the study's codes from the catalogue
(jtbd/web/catalogue.py), which keeps them and reads again what changed there. Search asks the
study's Chroma collection for ids and distances through CodeStore.nearest, with the catalogue's
facet index and the same embedder as `jtbd search`.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jtbd.coding.from_reviews import redecision_times, study_decision_path
from jtbd.coding.reviews import ReviewedCode, ReviewStore, ReviewStoreError
from jtbd.schemas.transcript import Transcript, format_timestamp
from jtbd.settings import Settings, source_of, study_collection
from jtbd.web import review, svg
from jtbd.web.catalogue import Catalogue
from jtbd.web.security import Guard, csrf_ok
from jtbd.web.views import (DIMENSIONS, FACETS, FORCES, KINDS, STATUS_WORDS, CodeView, agreement,
                            anchor_of, code_view, codes_by_turn, codes_starting_in, facet_counts, matches,
                            pieces, review_trend)

HERE = Path(__file__).parent
EXPORT_FORMATS = ("csv", "json", "md", "gold", "qdpx")
EXPORT_STATUSES = ("reviewed", "all", "suggestions")
MAX_BODY = 64 * 1024  # a review decision is a few hundred bytes
SEARCH_POOL = 200  # the nearest quotes a search reads; its facet counts are over them


class NotFound(Exception):
    """What was asked for does not exist: the message says what."""


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Workbench:
    settings: Settings
    reviews: ReviewStore
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    _stores: dict[str, Any] = field(default_factory=dict)
    _catalogues: dict[str, Catalogue] = field(default_factory=dict)
    _embedder: Any = None
    _vectors: dict[str, Any] = field(default_factory=dict)  # quotes of codes a person added, embedded

    def __post_init__(self) -> None:
        self.env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=True,
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.env.globals.update(FORCES=FORCES, KINDS=KINDS, DIMENSIONS=DIMENSIONS, STATUS_WORDS=STATUS_WORDS,
                                COLOURS=svg.COLOURS, EXPORT_FORMATS=EXPORT_FORMATS, EXPORT_STATUSES=EXPORT_STATUSES,
                                pieces=pieces, format_timestamp=format_timestamp)

    # --- the study ----------------------------------------------------------------------------------

    def study_of(self, request: Request, given: str | None = None) -> str:
        """The study asked for (?study=, else the served one); an unknown one other than the served
        one is not found (the served one may have no interviews yet)."""
        study = given or request.query_params.get("study") or self.settings.study
        if study != self.settings.study and study not in self.reviews.studies():
            known = ", ".join(self.reviews.studies()) or "none"
            raise NotFound(f"no study {study!r} in the review database {self.reviews.where} (studies: {known})")
        return study

    def links(self, study: str) -> Callable[..., str]:
        """A URL on this server, keeping ?study= when it is not the served study."""
        def link(path: str, **params: Any) -> str:
            if study != self.settings.study:
                params = {"study": study, **params}
            shown = {k: v for k, v in params.items() if v not in (None, "")}
            return path + ("?" + urlencode(shown) if shown else "")
        return link

    def catalogue(self, study: str) -> Catalogue:
        """The study's codes as the pages show them, up to date with the review store."""
        if study not in self._catalogues:
            self._catalogues.setdefault(study, Catalogue(self.reviews, study))  # one, if two requests come at once
        return self._catalogues[study].refresh()

    def warm(self, study: str) -> None:
        """Read the study, its codes' vectors and the embedding model before a request needs them (a
        server's start: at 100,000 codes, seconds that would otherwise fall on the first searches)."""
        catalogue = self.catalogue(study)
        store = self.code_store(study)
        if store is not None:
            store.embedder.embed(["warm"])
            catalogue.index.load_vectors(store.collection)

    def code_store(self, study: str) -> Any:
        """The study's Chroma collection with the embedder `jtbd search` uses; None when it has none."""
        if study not in self._stores:
            from jtbd.coding.store import CodeStore, open_collection

            s = self.settings
            collection = None
            if s.chroma_url or s.chroma_path.exists():
                collection = open_collection(str(s.chroma_path), s.chroma_url, study_collection(s.collection, study),
                                             create=False)
            if collection is None:
                return None
            self._stores[study] = CodeStore(collection, self.embedder())
        return self._stores[study]

    def embedder(self) -> Any:
        if self._embedder is None:
            from jtbd.coding.embed import embedder_for

            self._embedder = embedder_for(self.settings)
        return self._embedder

    def added_similarity(self, wanted: list[float], added: list[CodeView]) -> dict[str, float]:
        """Codes a person added are in the review store, not in Chroma: their quotes are embedded here
        (once each) and compared with the query's vector the way Chroma compares (cosine)."""
        if not added:
            return {}
        from jtbd.coding.embed import cosine

        missing = [c.quote for c in added if c.quote not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self.embedder().embed(missing)))
        return {c.id: round(cosine(wanted, self._vectors[c.quote]), 3) for c in added}

    def views(self, study: str, transcript_id: str | None = None, transcripts: dict[str, Transcript | None] | None = None,
              items: list[ReviewedCode] | None = None) -> list[CodeView]:
        """The codes as they stand, each with its reviewer's latest standing note."""
        items = self.reviews.reviewed(study, transcript_id) if items is None else items
        history = self.reviews.history(study, transcript_id)
        notes = review.latest_notes(history)
        transcripts = transcripts or {}
        return [code_view(item, transcripts.get(_tid(item)), notes.get(_code_id(item), "")) for item in items]

    # --- rendering ----------------------------------------------------------------------------------

    def render(self, request: Request, template: str, data: dict[str, Any], status: int = 200,
               **extra: Any) -> Response:
        """The page, or its JSON twin when the path ends in .json."""
        if request.url.path.endswith(".json"):
            return JSONResponse(data, status_code=status)
        study = data.get("study", self.settings.study)
        context = {"data": data, "csrf": self.csrf, "link": self.links(study), "served_study": self.settings.study,
                   "json_url": _json_url(request), **extra}
        return HTMLResponse(self.env.get_template(template).render(context), status_code=status)

    def fragment(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render({"csrf": self.csrf, **context})


# --- pages --------------------------------------------------------------------------------------------


def study_page(bench: Workbench, request: Request) -> Response:
    study = bench.study_of(request)
    link = bench.links(study)
    catalogue = bench.catalogue(study)
    transcripts = catalogue.transcripts()
    ids = list(transcripts)
    kept = [c for c in catalogue.codes() if c.kept]
    rows = _timeline_rows(ids, transcripts, kept, link)
    interviews = []
    for tid in ids:
        mine = [c for c in kept if c.transcript == tid]
        counts = {name: sum(c.what == name for c in mine) for name in (*FORCES, "trigger", "job", "quote")}
        t = transcripts[tid]
        interviews.append({"id": tid, "source": t.source if t else tid, "href": link(_interview_path(tid)),
                           "codes": counts, "review": catalogue.agreement(tid).as_json()})
    trend = review_trend(bench.reviews.history(study),
                         redecision_times(study_decision_path(bench.settings.data_dir, study)))
    data = {
        "study": study, "studies": bench.reviews.studies(), "interviews": interviews,
        "review": catalogue.agreement().as_json(),
        "review_trend": trend,
        "forces": _forces_data(kept, per_quadrant=3, spread=True),
        "triggers": [c.as_json() for c in kept if c.kind == "trigger"],
        "jobs": [c.as_json() for c in kept if c.kind == "job"],
        "timeline": [_timeline_data(row) for row in rows],
        "exports": _exports(link),
    }
    pictures = {
        "forces_svg": _forces_svg(kept, link, 3, True),
        "timeline_svg": svg.timeline_svg(rows, lambda c: _code_href(c, link)),
        "trend_svg": svg.trend_svg(trend),
    }
    return bench.render(request, "study.html", data, triggers=[c for c in kept if c.kind == "trigger"],
                        jobs=[c for c in kept if c.kind == "job"], code_href=lambda c: _code_href(c, link),
                        **pictures)


def interview_page(bench: Workbench, request: Request) -> Response:
    study = bench.study_of(request)
    transcript = _find_interview(bench, study, request.path_params["tid"], request.url.path.endswith(".json"))
    data, extra = interview_data(bench, study, transcript)
    return bench.render(request, "interview.html", data, **extra)


def interview_data(bench: Workbench, study: str, transcript: Transcript) -> tuple[dict[str, Any], dict[str, Any]]:
    link = bench.links(study)
    catalogue = bench.catalogue(study)
    codes = catalogue.codes(transcript.id)
    kept = [c for c in codes if c.kept]
    row = _row(transcript, kept, link)
    numbers = {c.id: n for n, c in enumerate(codes, start=1)}
    starting = codes_starting_in(transcript.turns, codes)
    data = {
        "study": study,
        "interview": {"id": transcript.id, "source": transcript.source, "format": transcript.format,
                      "interviewers": list(transcript.interviewers), "href": link(_interview_path(transcript.id))},
        "turns": [{"index": t.index, "speaker": t.speaker, "role": t.role.value, "start": t.start,
                   "timestamp": format_timestamp(t.start), "char_start": t.char_start, "char_end": t.char_end,
                   "text": t.text, "codes": starting.get(t.index, [])}
                  for t in transcript.turns],
        "codes": [{**c.as_json(), "number": numbers[c.id]} for c in codes],
        "review": catalogue.agreement(transcript.id).as_json(),
        "study_review": catalogue.agreement().as_json(),
        "forces": _forces_data(kept, per_quadrant=2, spread=False),
        "timeline": [_timeline_data(row)],
        "exports": _exports(link),
    }
    extra = {"transcript": transcript, "codes": codes, "numbers": numbers,
             "turn_codes": codes_by_turn(transcript.turns, codes),
             "code_href": lambda c: _code_href(c, link),
             "forces_svg": _forces_svg(kept, link, 2, False, interview=transcript.id),
             "timeline_svg": svg.timeline_svg([row], lambda c: "#span-" + c.anchor, row_height=70)}
    return data, extra


def search_page(bench: Workbench, request: Request) -> Response:
    study = bench.study_of(request)
    link = bench.links(study)
    params = request.query_params
    q = params.get("q", "").strip()
    filters = {name: params.get(name, "").strip() for name in FACETS}
    min_score = _number(params.get("min_score"), "min_score")
    k = int(_number(params.get("k"), "k") or 20)
    if k < 1:
        raise Refused(400, f"k is {k}: it must be 1 or more (how many results to show)")
    catalogue = bench.catalogue(study)
    notice = ""
    if q:
        pool, similarity, notice = _nearest(bench, study, q, catalogue, filters, k)
    else:
        pool, similarity = sorted(catalogue.codes(), key=lambda c: (c.score is None, -(c.score or 0.0), c.transcript,
                                                                   c.start)), {}
    scored = (lambda c: similarity.get(c.id)) if q else (lambda c: c.score)
    found = [c for c in pool if matches(c, filters, None) and _at_least(scored(c), min_score)]
    facets = facet_counts([c for c in pool if _at_least(scored(c), min_score)], filters, None)
    results = [{**c.as_json(), "similarity": similarity.get(c.id), "href": _code_href(c, link)} for c in found[:k]]
    data = {"study": study, "study_review": catalogue.agreement().as_json(), "q": q, "filters": filters,
            "min_score": min_score, "k": k,
            "mode": "semantic" if q else "browse", "total": len(found), "pool": len(pool), "notice": notice,
            "facets": {name: [[value, n] for value, n in counts] for name, counts in facets.items()},
            "results": results}
    return bench.render(request, "search.html", data, facet_link=_facet_links(link, q, filters, params),
                        more_link=link("/search", q=q, **filters, min_score=params.get("min_score"), k=k * 5))


def _nearest(bench: Workbench, study: str, q: str, catalogue: Catalogue, filters: dict[str, str],
             k: int) -> tuple[list[CodeView], dict[str, float], str]:
    """The codes nearest the query (SEARCH_POOL of them, unfiltered: Chroma answers that fastest),
    then the filtered nearest if the pool holds too few of them (the catalogue's facet index says
    which pass, as the page shows them); each with its similarity. Ids and distances only: the
    cards are the catalogue's."""
    store = bench.code_store(study)
    if store is None:
        return [], {}, f"study {study!r} has no search index yet: run 'jtbd code --study {study}'"
    vector = bench.embedder().embed([q])
    hits = store.nearest(vector, SEARCH_POOL, catalogue.index)
    wanted = {"kind": filters["kind"], "force": filters["force"], "transcript": filters["interview"],
              "speaker": filters["speaker"], "status": filters["status"]}
    nearest = [catalogue.code(i) for i, _ in hits]
    if any(wanted.values()) and sum(c is not None and matches(c, filters, None) for c in nearest) < k:
        hits += store.nearest(vector, k, catalogue.index, read=hits, **wanted)
    similarity = {i: round(1.0 - distance, 3) for i, distance in hits}
    similarity.update(bench.added_similarity(vector[0], catalogue.added()))
    pool = sorted((c for c in map(catalogue.code, similarity) if c is not None),
                  key=lambda c: (-similarity[c.id], c.id))
    return pool, similarity, ""


def _at_least(value: float | None, minimum: float | None) -> bool:
    return minimum is None or (value is not None and value >= minimum)


def _facet_links(link: Callable[..., str], q: str, filters: dict[str, str], params: Any) -> Callable[[str, str], str]:
    def facet_link(name: str, value: str) -> str:
        chosen = {**filters, name: "" if filters.get(name) == value else value}  # a second click clears it
        return link("/search", q=q, **chosen, min_score=params.get("min_score"), k=params.get("k"))
    return facet_link


# --- review --------------------------------------------------------------------------------------------


async def review_post(bench: Workbench, request: Request) -> Response:
    form = await _form(request)
    if not csrf_ok(bench.csrf, request.headers.get("x-csrf-token") or form.get("csrf_token", "")):
        raise Refused(403, "this form's security token is missing or out of date (was the server restarted?): "
                           "reload the page and decide again; nothing was saved")
    return await run_in_threadpool(_review, bench, request, form)


def _review(bench: Workbench, request: Request, form: dict[str, str]) -> Response:
    study = bench.study_of(request, form.get("study"))
    transcript = _find_interview(bench, study, form.get("interview", ""), False)
    link = bench.links(study)
    saved, status, message, code_id, renumbered = False, 200, "", form.get("code_id", ""), False
    try:
        outcome = review.apply(bench.reviews, study, transcript, form, bench.settings.reviewer_name)
        saved, message, code_id = True, outcome.message, outcome.code_id
        renumbered = form.get("action") == "add"  # a new code: the numbers after it move
    except ValueError as err:  # the decision does not fit the code or the transcript
        status, message = 400, f"not saved: {err}"
    except ReviewStoreError as err:  # locked, unreachable: the decision is not in the database
        status, message = 503, f"not saved: {err.problem}"
    except review.UnknownCode as err:
        status, message = 404, f"not saved: {err}"
    if request.headers.get("hx-request"):
        return _review_fragments(bench, study, transcript, saved, message, code_id, status, renumbered)
    if "application/json" in request.headers.get("accept", ""):
        items = bench.reviews.reviewed(study, transcript.id)  # read once: the code and the agreement
        current = next((c for c in bench.views(study, transcript.id, items=items) if c.id == code_id), None)
        return JSONResponse({"saved": saved, "message": message, "code": current.as_json() if current else None,
                             "review": agreement(items).as_json()},
                            status_code=status)
    if not saved:
        raise Refused(status, message)
    return RedirectResponse(link(_interview_path(transcript.id)) + "#code-" + anchor_of(code_id), status_code=303)


def _review_fragments(bench: Workbench, study: str, transcript: Transcript, saved: bool, message: str,
                      code_id: str, status: int, renumbered: bool) -> Response:
    """For htmx: the message, and the parts of the interview page a decision changes, swapped in
    place by id (hx-swap-oob): the code and its turn; the whole list and transcript when a code was
    added (the codes are numbered in text order)."""
    data, extra = interview_data(bench, study, transcript)
    turns = {c.turn for c in extra["codes"] if c.id == code_id}
    context = {"data": data, "link": bench.links(study), **extra, "saved": saved, "message": message,
               "code_id": code_id, "changed_turns": turns, "served_study": bench.settings.study,
               "renumbered": renumbered}
    html = bench.fragment("_review_response.html", **context)
    return HTMLResponse(html, status_code=status)


# --- export --------------------------------------------------------------------------------------------


def export_page(bench: Workbench, request: Request) -> Response:
    study = bench.study_of(request)
    fmt, status = request.query_params.get("format", ""), request.query_params.get("status", "reviewed")
    try:
        from jtbd.coding.export import download, export_study
    except ImportError:
        raise NotFound("export is not available in this version of jtbd-coder") from None
    if fmt not in EXPORT_FORMATS:
        raise Refused(400, f"format is {fmt!r}: it must be one of {', '.join(EXPORT_FORMATS)}")
    if status not in EXPORT_STATUSES:
        raise Refused(400, f"status is {status!r}: it must be one of {', '.join(EXPORT_STATUSES)}")
    export = export_study(bench.reviews, study, fmt, status, reviewer=bench.settings.reviewer_name)
    name, media_type, body = download(export, study, status)
    return Response(body, media_type=media_type,
                    headers={"Content-Disposition": f"attachment; filename=\"{quote(name)}\""})


# --- helpers -------------------------------------------------------------------------------------------


def _tid(item: ReviewedCode) -> str:
    return (item.code.get("grounding") or {}).get("transcript") or (item.decision.transcript if item.decision else "")


def _code_id(item: ReviewedCode) -> str:
    return item.code.get("id") or (item.decision.code_id if item.decision else "")


def _interview_path(tid: str) -> str:
    return "/interview/" + quote(tid, safe="/")


def _code_href(code: CodeView, link: Callable[..., str]) -> str:
    return link(_interview_path(code.transcript)) + "#span-" + code.anchor


def _json_url(request: Request) -> str:
    path = request.url.path
    path = "/.json" if path == "/" else path + ".json"
    return path + (("?" + request.url.query) if request.url.query else "")


def _find_interview(bench: Workbench, study: str, tid: str, as_json: bool) -> Transcript:
    """The interview of this id; for a JSON twin the id without `.json`, unless the study has an
    interview whose id ends in .json (call.json, beside call.txt) and none without it."""
    candidates = [tid.removesuffix(".json"), tid] if as_json else [tid]
    for candidate in candidates:
        transcript = bench.reviews.transcript(study, candidate) if candidate else None
        if transcript is not None:
            return transcript
    raise NotFound(f"no interview {candidates[0]!r} in study {study!r}")


def _number(text: str | None, name: str) -> float | None:
    if text in (None, ""):
        return None
    try:
        return float(text)
    except ValueError:
        raise Refused(400, f"{name} is {text!r}: it must be a number") from None


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise Refused(413, "the request is too large for a review decision")
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise Refused(400, "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise Refused(400, "the request body must be a JSON object")
        return {str(k): "" if v is None else str(v) for k, v in data.items()}
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise Refused(400, "the form is not UTF-8") from None


def _forces_data(codes: list[CodeView], per_quadrant: int, spread: bool) -> dict[str, Any]:
    forces = [c for c in codes if c.kind == "force"]
    return {force: {"count": sum(c.force == force for c in forces),
                    "strongest": [c.as_json() for c in svg.strongest([c for c in forces if c.force == force],
                                                                     per_quadrant, spread)]}
            for force in FORCES}


def _forces_svg(codes: list[CodeView], link: Callable[..., str], per_quadrant: int, spread: bool,
                interview: str = "") -> Markup:
    return svg.forces_svg(codes, per_quadrant, spread,
                          lambda force: link("/search", kind="force", force=force, interview=interview),
                          lambda c: _code_href(c, link))


def _row(transcript: Transcript, codes: list[CodeView], link: Callable[..., str]) -> svg.TimelineRow:
    times = [t for turn in transcript.turns for t in (turn.start, turn.end) if t is not None]
    return svg.TimelineRow(transcript.id, link(_interview_path(transcript.id)), max(times) if times else None,
                           len(transcript.text), [c for c in codes if c.transcript == transcript.id
                                                  and c.kind in ("trigger", "force")])


def _timeline_rows(ids: list[str], transcripts: dict[str, Transcript | None], codes: list[CodeView],
                   link: Callable[..., str]) -> list[svg.TimelineRow]:
    return [_row(transcripts[tid], codes, link) for tid in ids if transcripts.get(tid) is not None]


def _timeline_data(row: svg.TimelineRow) -> dict[str, Any]:
    return {"interview": row.transcript, "axis": "time" if row.duration else "position", "duration": row.duration,
            "codes": [{"id": c.id, "what": c.what, "position": round(svg.position(row, c), 4),
                       "timestamp": c.timestamp} for c in sorted(row.codes, key=lambda c: c.start)]}


def _exports(link: Callable[..., str]) -> list[dict[str, str]]:
    return [{"format": fmt, "status": status, "href": link("/export", format=fmt, status=status)}
            for fmt in EXPORT_FORMATS for status in EXPORT_STATUSES]


# --- the application -----------------------------------------------------------------------------------


def create_app(settings: Settings, reviews: ReviewStore | None = None, token: str = "",
               db_timeout: float = 10.0) -> Starlette:
    """The workbench over the settings' data folder (or the given review store). With a `token`, every
    request must carry it (?token= once, then a cookie; or Authorization: Bearer)."""
    store = reviews or ReviewStore.open(settings.review_db_url, timeout=db_timeout)
    bench = Workbench(settings, store)

    def page(handler: Callable[[Workbench, Request], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            return handler(bench, request)
        return endpoint

    async def post(request: Request) -> Response:
        return await review_post(bench, request)

    routes = [
        Route("/", page(study_page)), Route("/.json", page(study_page)), Route("/index.json", page(study_page)),
        Route("/search", page(search_page)), Route("/search.json", page(search_page)),
        Route("/interview/{tid:path}", page(interview_page)),
        Route("/review", post, methods=["POST"]),
        Route("/export", page(export_page)),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    def problem(request: Request, status: int, message: str) -> Response:
        if request.url.path.endswith(".json") or "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"error": message, "status": status}, status_code=status)
        return bench.render(request, "error.html", {"study": settings.study, "status": status, "message": message},
                            status=status)

    async def not_found(request: Request, exc: Exception) -> Response:
        message = str(exc) if isinstance(exc, NotFound) else f"no page at {request.url.path}"
        return problem(request, 404, message)

    async def refused(request: Request, exc: Exception) -> Response:
        return problem(request, getattr(exc, "status", 400), str(exc))

    async def unavailable(request: Request, exc: Exception) -> Response:
        return problem(request, 503, getattr(exc, "problem", str(exc)))

    async def wrong_method(request: Request, exc: Exception) -> Response:
        return problem(request, 405, f"{request.method} is not allowed at {request.url.path}")

    app = Starlette(routes=routes, exception_handlers={
        NotFound: not_found, 404: not_found, 405: wrong_method, Refused: refused, ReviewStoreError: unavailable})
    app.state.bench = bench
    return Guard(app, token)  # type: ignore[return-value]


# --- serving -------------------------------------------------------------------------------------------


def _warm(bench: Workbench, study: str) -> None:
    try:
        bench.warm(study)
    except Exception:  # noqa: BLE001 - a warm-up only: the request that needs what failed says why
        pass


def serve(settings: Settings, host: str, port: int, token: str, said: Callable[[str], None],
          known_study: bool = False) -> None:
    """Run the workbench with uvicorn until interrupted. Off loopback a token is required: the given one,
    else a generated one, said with the address. `known_study`: the study was named, so it must exist."""
    import socket

    import uvicorn

    from jtbd.web.security import is_loopback

    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(24)
        said(f"--host {host} is not this computer only: every request needs a token, generated for this run "
             "(or give one with --token)")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:  # one line, not a traceback
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: closed connections may linger
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ValueError(f"--port {port}: cannot listen on {host}:{port} ({err.strerror or err})") from None
    reviews = ReviewStore.open(settings.review_db_url, timeout=10.0)
    studies = reviews.studies()
    if known_study and settings.study not in studies:
        reviews.close()
        raise ValueError(f"{source_of(settings, 'study')} is {settings.study!r}: no such study in the review database "
                         f"{reviews.where} (studies: {', '.join(studies) or 'none yet: run jtbd code --study NAME'})")
    app = create_app(settings, reviews=reviews, token=token)
    threading.Thread(target=_warm, args=(app.state.bench, settings.study), daemon=True).start()
    shown = f"[{host}]" if ":" in host else host
    where = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    said(f"serving study {settings.study!r} on {where}  (Ctrl-C stops it)")
    if host in ("0.0.0.0", "::"):
        said(f"from another computer: http://{socket.gethostname()}:{port}/" + (f"?token={token}" if token else ""))
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)).run()
