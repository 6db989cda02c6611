"""The workbench (`jtbd serve`), driven in process through its ASGI interface with httpx.

Two studies: the example interview coded from the cassette by the real flow (Chroma, the review
store, MiniLM), for search and the pages as a researcher first sees them; and a hostile transcript
put straight into a ReviewStore on SQLite with hand-made codes, for escaping, review round trips,
refusals and errors, where every expected number is known.
"""

from __future__ import annotations

import asyncio
import html
import re
import sqlite3
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, run_paths, server_settings

EXAMPLE = ROOT / "examples" / "espresso_machine.txt"
CASSETTE = "flow/espresso_machine.yaml"
LOOPBACK = "http://127.0.0.1:8765"

HOSTILE = """\
Interviewer: What did you use before?
Dana: A spreadsheet called <script>alert("pwned")</script> and it broke every Monday, honestly.
Interviewer: And then?
Dana: My boss wrote {{ 7*7 }} in the budget cell and I said: this is the day we switch tools.
Dana: I worried the new tool would lose our history <b>forever</b>.
"""


# --- a synchronous client over the ASGI app -------------------------------------------------------


class Client:
    """httpx on the app's ASGI interface, one request at a time, keeping cookies like a browser."""

    def __init__(self, app, base_url: str = LOOPBACK) -> None:
        self.app, self.base_url, self.cookies = app, base_url, httpx.Cookies()

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url, cookies=self.cookies) as client:
                response = await client.request(method, url, **kwargs)
                self.cookies.update(client.cookies)
                return response
        return asyncio.run(go())

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)


def _csrf(page: httpx.Response) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text).group(1)


class _Elements(HTMLParser):
    """Every element's tag and attributes, and the text of the document (for checks that parse the HTML)."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parsed(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    return parser


# --- the hostile study: a ReviewStore on SQLite in tmp_path ----------------------------------------


def _hostile_codes(transcript):
    from jtbd.coding.extract import grounding_for
    from jtbd.coding.ground import Span
    from jtbd.schemas.codebook import Alignment, Force, JobStory, Provenance, Trigger

    provenance = Provenance(prompt_version="test", schema_version="test", model="test-model")

    def code(cls, words: str, score: float, **extra):
        start = transcript.text.index(words)
        turn = transcript.turn_at(start)
        grounding = grounding_for(Span(turn.index, start, start + len(words), Alignment.exact, 100.0), transcript)
        return cls(quote=words, grounding=grounding, provenance=provenance, score=score, **extra)

    return [
        code(Force, 'A spreadsheet called <script>alert("pwned")</script> and it broke every Monday', 2.0,
             force="push"),
        code(Trigger, "My boss wrote {{ 7*7 }} in the budget cell", 1.5),
        code(Force, "I worried the new tool would lose our history <b>forever</b>.", 1.2, force="habit"),
        code(JobStory, "it broke every Monday, honestly.", None, situation="the <em>weekly</em> report breaks",
             motivation="keep one list that works", outcome="stop fixing it on Mondays", dimension="functional"),
    ]


@pytest.fixture()
def hostile(tmp_path):
    """Settings for a data folder whose review store holds the hostile transcript and four suggestions
    (push, trigger, a worry the model mislabelled habit, a job story), and the open ReviewStore."""
    from jtbd.coding.parse import load_transcript
    from jtbd.coding.reviews import ReviewStore
    from jtbd.settings import Settings

    path = tmp_path / "hostile.txt"
    path.write_text(HOSTILE, encoding="utf-8")
    transcript = load_transcript(path)
    settings = Settings(data_dir=str(tmp_path / "data"), reviewer="maya", study="default")
    store = ReviewStore.open(settings.review_db_url, timeout=0.5)
    store.save_coded("default", transcript, str(path),
                     [c.model_dump(mode="json") for c in _hostile_codes(transcript)])
    yield settings, store
    store.close()


def _client(settings, store, **kwargs) -> Client:
    from jtbd.web.app import create_app

    return Client(create_app(settings, reviews=store, **kwargs))


def _code_ids(client: Client, interview: str = "hostile") -> dict[str, str]:
    codes = client.get(f"/interview/{interview}.json").json()["codes"]
    return {c["label"]: c["id"] for c in codes}


def _decide(client: Client, csrf: str, **fields) -> httpx.Response:
    return client.post("/review", data={"csrf_token": csrf, "interview": "hostile", **fields},
                       headers={"accept": "application/json"})


def test_transcript_text_is_escaped_everywhere(hostile):
    client = _client(*hostile)
    for url in ("/", "/interview/hostile", "/search?kind=force", "/search?q=&status=suggested"):
        page = client.get(url)
        assert page.status_code == 200, url
        assert "<script>alert" not in page.text and "<b>forever" not in page.text, url
        scripts = [attrs.get("src") for tag, attrs in _parsed(page.text).elements if tag == "script"]
        assert scripts == ["/static/htmx.min.js", "/static/app.js"], url  # no script from the transcript
    page = client.get("/interview/hostile")
    text = "".join(_parsed(page.text).text)
    assert '<script>alert("pwned")</script>' in text  # shown as the words it is
    assert "{{ 7*7 }}" in text and "49" not in text  # not evaluated by the template engine
    assert "&lt;script&gt;" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def test_each_page_has_a_json_twin_with_the_same_data(hostile):
    client = _client(*hostile)
    study = client.get("/.json").json()
    assert [i["id"] for i in study["interviews"]] == ["hostile"]
    assert study["interviews"][0]["codes"] == {"push": 1, "pull": 0, "anxiety": 0, "habit": 1, "trigger": 1,
                                               "job": 1, "quote": 0}
    assert study["forces"]["push"]["count"] == 1 and study["forces"]["habit"]["count"] == 1
    assert [t["quote"] for t in study["triggers"]] == ["My boss wrote {{ 7*7 }} in the budget cell"]
    assert study["review"]["suggested"] == 4 and study["review"]["reviewed"] == 0
    assert [(j["statement"], j["statement_source"]) for j in study["jobs"]] == [
        ("When the <em>weekly</em> report breaks, I want to keep one list that works, so I can stop fixing it on "
         "Mondays.", "model")]
    assert study["timeline"][0]["axis"] == "position"
    assert {e["format"] for e in study["exports"]} == {"csv", "json", "md", "gold", "qdpx"}

    interview = client.get("/interview/hostile.json").json()
    transcript_text = "".join(f"{t['speaker']}: {t['text']}\n" for t in interview["turns"])
    for code in interview["codes"]:
        assert transcript_text[code["start"]:code["end"]] == code["quote"]  # the offsets index the text shown
        assert code["status"] == "suggested" and not code["by_person"]
    assert client.get("/search.json?kind=force").json()["total"] == 2
    for url in ("/", "/interview/hostile", "/search"):
        markup = client.get(url).text
        assert f'href="{"/.json" if url == "/" else url + ".json"}"' in markup  # each page links its twin


def test_the_pictures_are_drawn_from_the_codes(hostile):
    client = _client(*hostile)
    page = _parsed(client.get("/").text)
    quadrants = {a["id"]: a for tag, a in page.elements if tag == "g" and a.get("class") == "quadrant"}
    assert {q: a["data-count"] for q, a in quadrants.items()} == {
        "quadrant-push": "1", "quadrant-pull": "0", "quadrant-habit": "1", "quadrant-anxiety": "0"}
    links = [a["href"] for tag, a in page.elements if tag == "a" and a.get("class") == "quadrant-link"]
    assert "/search?kind=force&force=push" in links  # a click lists the quadrant's codes
    rows = [a for tag, a in page.elements if tag == "g" and a.get("class") == "timeline-row"]
    assert [(r["data-transcript"], r["data-axis"]) for r in rows] == [("hostile", "by position")]
    marks = [a for tag, a in page.elements if tag == "a" and a.get("class") == "timeline-code"]
    assert [m["data-kind"] for m in marks] == ["push", "trigger", "habit"]  # in the order told


def test_job_statements_are_marked_model_written_beside_their_evidence(hostile):
    client = _client(*hostile)
    for url in ("/", "/interview/hostile"):
        markup = client.get(url).text
        job = markup[markup.index('class="job-' if url == "/" else 'data-kind="job"'):]
        job = job[:job.index("</li>")]
        assert 'class="model-written"' in job and "the &lt;em&gt;weekly&lt;/em&gt; report breaks" in job
        assert "it broke every Monday, honestly." in job  # the evidence, in the interviewee's words


def test_codes_are_highlighted_in_place_and_link_both_ways(hostile):
    client = _client(*hostile)
    markup = client.get("/interview/hostile").text
    page = _parsed(markup)
    ids = {a.get("id") for _, a in page.elements}
    for code in client.get("/interview/hostile.json").json()["codes"]:
        anchor = code["anchor"]
        assert f"span-{anchor}" in ids and f"code-{anchor}" in ids
        assert f'href="#code-{anchor}"' in markup and f'href="#span-{anchor}"' in markup
    segs = [a for tag, a in page.elements if a.get("class", "").startswith("seg")]
    marks = [a for a in segs if "hl" in a["class"].split()]
    assert {m["class"].split()[2] for m in marks} == {"k-push", "k-trigger", "k-habit", "k-job"}
    assert all("st-suggested" in m["class"] for m in marks)
    # the push and the job story overlap on "it broke every Monday": that piece names both codes
    both = [m for m in marks if len(m["data-codes"].split()) == 2]
    assert len(both) == 1 and "multi" in both[0]["class"]
    start = int(both[0]["data-s"])
    assert HOSTILE[start:start + len("it broke every Monday")] == "it broke every Monday"


def test_a_review_round_trip_changes_the_status_and_the_agreement(hostile):
    client = _client(*hostile)
    csrf = _csrf(client.get("/interview/hostile"))
    ids = _code_ids(client)
    assert _decide(client, csrf, code_id=ids["force.push"], action="accept").json()["saved"]
    answer = _decide(client, csrf, code_id=ids["force.habit"], action="relabel", kind="force", force="anxiety").json()
    assert answer["saved"] and answer["code"]["status"] == "changed" and answer["code"]["suggested_as"] == "force.habit"
    answer = _decide(client, csrf, code_id=ids["trigger"], action="reject").json()
    assert answer["code"]["status"] == "rejected"
    review = answer["review"]
    # 3 of 4 reviewed: the push kept as is, the habit relabelled, the trigger rejected
    assert (review["reviewed"], review["accepted"], review["changed"], review["rejected"]) == (3, 1, 1, 1)
    assert review["precision"] == pytest.approx(1 / 3, abs=1e-3) and review["kept"] == pytest.approx(2 / 3, abs=1e-3)
    # force type, model against person: push-push, habit-anxiety; kappa over those two pairs
    from jtbd.eval.score import cohen_kappa

    assert review["kappa_pairs"] == 2 and review["kappa"] == pytest.approx(cohen_kappa([("push", "push"),
                                                                                         ("habit", "anxiety")]), abs=1e-3)
    study = client.get("/.json").json()
    assert study["review"]["reviewed"] == 3 and study["interviews"][0]["review"]["reviewed"] == 3
    assert study["forces"]["anxiety"]["count"] == 1 and study["forces"]["habit"]["count"] == 0
    assert study["triggers"] == []  # rejected: out of the lists and pictures
    page = client.get("/interview/hostile").text
    assert "the model suggested" in page and "✓ accepted" in page and "✓ changed" in page
    assert client.get("/search.json?status=rejected").json()["total"] == 1


def test_note_undo_and_add_are_decisions_too(hostile):
    client = _client(*hostile)
    csrf = _csrf(client.get("/interview/hostile"))
    ids = _code_ids(client)
    push = ids["force.push"]
    assert _decide(client, csrf, code_id=push, action="note", note="check the <i>date</i>").json()["saved"]
    assert _decide(client, csrf, code_id=push, action="accept").json()["code"]["note"] == "check the <i>date</i>"
    assert _decide(client, csrf, code_id=push, action="reject").json()["code"]["status"] == "rejected"
    undone = _decide(client, csrf, code_id=push, action="undo").json()
    assert undone["saved"] and undone["code"]["status"] == "accepted"  # back to before the rejection
    again = _decide(client, csrf, code_id=push, action="undo").json()
    # the acceptance was the code's first state-changing decision: undoing it makes the code a suggestion again
    assert again["saved"] and again["code"]["status"] == "suggested" and again["code"]["decision_action"] == "reset"
    assert again["review"]["reviewed"] == 0 and again["code"]["note"] == "check the <i>date</i>"  # the note stays
    further = _decide(client, csrf, code_id=push, action="undo").json()  # one step further back: the note
    assert further["saved"] and (further["code"]["status"], further["code"]["note"]) == ("suggested", "")
    assert "nothing to undo" in _decide(client, csrf, code_id=push, action="undo").json()["message"]
    habit = ids["force.habit"]
    _decide(client, csrf, code_id=habit, action="relabel", kind="force", force="anxiety")
    _decide(client, csrf, code_id=habit, action="reject")
    undone = _decide(client, csrf, code_id=habit, action="undo").json()
    assert (undone["code"]["force"], undone["code"]["suggested_as"]) == ("anxiety", "force.habit")
    assert undone["review"]["changed"] == 1 and undone["review"]["rejected"] == 0  # the relabel stands again
    # a selection of interviewee words (with the spaces a selection picks up) becomes a new code
    text = client.get("/interview/hostile.json").json()
    turn = next(t for t in text["turns"] if "budget" in t["text"])
    start = turn["char_start"] + turn["text"].index("this is the day") - 1
    added = _decide(client, csrf, action="add", kind="trigger", start=start, end=start + 1 + len("this is the day we switch tools")).json()
    assert added["saved"] and added["code"]["status"] == "added" and added["code"]["quote"] == "this is the day we switch tools"
    assert added["review"]["added"] == 1
    # a person's own code withdrawn is no rejected suggestion; adding the same words again takes it back
    withdrawn = _decide(client, csrf, code_id=added["code"]["id"], action="reject").json()
    assert withdrawn["code"]["status"] == "rejected" and withdrawn["code"]["quote"] == added["code"]["quote"]
    assert (withdrawn["review"]["suggested"], withdrawn["review"]["added"]) == (4, 0)
    again = _decide(client, csrf, action="add", kind="trigger", start=start + 1,
                    end=start + 1 + len("this is the day we switch tools")).json()
    assert again["saved"] and again["code"]["id"] == added["code"]["id"] and again["review"]["added"] == 1
    interviewer = next(t for t in text["turns"] if t["speaker"] == "Interviewer")
    refused = _decide(client, csrf, action="add", kind="quote", start=interviewer["char_start"],
                      end=interviewer["char_end"])
    assert refused.status_code == 400 and not refused.json()["saved"]
    assert "not inside one interviewee turn" in refused.json()["message"]


def test_a_reset_takes_every_decision_on_a_code_back_and_counts_it_a_suggestion(hostile):
    client = _client(*hostile)
    csrf = _csrf(client.get("/interview/hostile"))
    ids = _code_ids(client)
    habit = ids["force.habit"]
    _decide(client, csrf, code_id=habit, action="relabel", kind="force", force="anxiety")
    assert _decide(client, csrf, code_id=habit, action="reject").json()["review"]["rejected"] == 1
    reset = _decide(client, csrf, code_id=habit, action="reset").json()
    assert reset["saved"] and "suggestion again" in reset["message"]
    assert (reset["code"]["status"], reset["code"]["force"], reset["code"]["suggested_as"]) == ("suggested", "habit", "")
    assert (reset["review"]["reviewed"], reset["review"]["rejected"], reset["review"]["precision"]) == (0, 0, None)
    assert client.get("/search.json?status=suggested").json()["total"] == 4
    refused = _decide(client, csrf, code_id=habit, action="reset")  # nothing stands on it any more
    assert refused.status_code == 400 and "suggestion already" in refused.json()["message"]
    exported = client.get("/export?format=json&status=reviewed")
    assert exported.status_code == 200 and exported.content == b""  # nothing reviewed to export


def test_the_trend_shows_agreement_by_review_order_and_each_re_decision(hostile):
    """The study page's trend: the reviewed suggestions in the order first answered, in batches (of 20
    on the page), a batch also ending at a re-decision; the same counts as the agreement beside it."""
    from datetime import datetime, timezone

    from jtbd.coding.from_reviews import study_decision_path
    from jtbd.coding.learned import LearnedDecision
    from jtbd.prompts import load_strategy
    from jtbd.web.views import review_trend

    settings, store = hostile
    client = _client(settings, store)
    csrf = _csrf(client.get("/interview/hostile"))
    ids = _code_ids(client)
    assert client.get("/.json").json()["review_trend"] == {"batch_size": 20, "reviewed": 0, "batches": [],
                                                            "redecisions": []}
    _decide(client, csrf, code_id=ids["force.push"], action="accept")
    _decide(client, csrf, code_id=ids["trigger"], action="reject")
    _decide(client, csrf, code_id=ids["trigger"], action="undo")  # taken back: answered anew below, later
    _decide(client, csrf, code_id=ids["force.habit"], action="relabel", kind="force", force="anxiety")
    _decide(client, csrf, code_id=ids["trigger"], action="accept")
    study = client.get("/.json").json()
    [batch] = study["review_trend"]["batches"]
    assert (batch["first"], batch["last"], batch["accepted"], batch["changed"], batch["rejected"]) == (1, 3, 2, 1, 0)
    assert {k: batch[k] for k in ("reviewed", "precision", "kept", "kappa")} == \
        {k: study["review"][k] for k in ("reviewed", "precision", "kept", "kappa")}
    in_twos = review_trend(store.history("default"), size=2)["batches"]
    assert [(b["first"], b["last"], b["precision"]) for b in in_twos] == [(1, 2, 0.5), (3, 3, 1.0)]  # push, habit | trigger
    # `jtbd redecide` keeps when it fitted the study's decision in its file: the batch ends there
    path = study_decision_path(settings.data_dir, "default")
    path.parent.mkdir(parents=True)
    decision = LearnedDecision.from_json(load_strategy().learned, "bundled")
    decision.reviews = {"fits": [{"at": datetime.now(timezone.utc).isoformat(), "answered": 3}]}
    decision.save(path)
    _decide(client, csrf, code_id=ids["job.functional"], action="accept")
    trend = client.get("/.json").json()["review_trend"]
    assert [(b["first"], b["last"], b["after_redecisions"], b["precision"]) for b in trend["batches"]] == [
        (1, 3, 0, pytest.approx(2 / 3, abs=1e-3)), (4, 4, 1, 1.0)]
    assert [r["after_reviewed"] for r in trend["redecisions"]] == [3]
    page = _parsed(client.get("/").text)
    drawn = [a for tag, a in page.elements if tag == "g" and a.get("class") == "trend-batch"]
    assert [(a["data-first"], a["data-last"]) for a in drawn] == [("1", "3"), ("4", "4")]
    assert [a["data-after"] for tag, a in page.elements if tag == "g" and a.get("class") == "trend-redecision"] == ["3"]


def test_a_decision_without_the_csrf_token_is_refused_and_not_saved(hostile):
    settings, store = hostile
    client = _client(settings, store)
    ids = _code_ids(client)
    for token in ("", "forged"):
        refused = _decide(client, token, code_id=ids["force.push"], action="accept")
        assert refused.status_code == 403 and "security token" in refused.json()["error"]
    assert [r.status for r in store.reviewed("default", "hostile")] == ["suggested"] * 4
    other = _client(settings, store)  # another server: another secret
    assert _decide(other, _csrf(client.get("/")), code_id=ids["force.push"], action="accept").status_code == 403


def test_htmx_decisions_answer_with_the_parts_of_the_page_they_change(hostile):
    client = _client(*hostile)
    csrf = _csrf(client.get("/interview/hostile"))
    ids = _code_ids(client)
    answer = client.post("/review", data={"interview": "hostile", "code_id": ids["force.push"], "action": "accept"},
                         headers={"hx-request": "true", "x-csrf-token": csrf})
    assert answer.status_code == 200
    swapped = {a["id"] for _, a in _parsed(answer.text).elements if a.get("hx-swap-oob") == "true"}
    push = client.get("/interview/hostile.json").json()["codes"][0]
    assert swapped == {"review-stats", "interview-pictures", f"code-{push['anchor']}", f"turn-{push['turn']}"}
    assert 'data-saved="true"' in answer.text and "&lt;script&gt;" in answer.text
    turn = client.get("/interview/hostile.json").json()["turns"][3]
    added = client.post("/review", data={"interview": "hostile", "action": "add", "kind": "quote",
                                         "start": turn["char_start"], "end": turn["char_start"] + 9},
                        headers={"hx-request": "true", "x-csrf-token": csrf})
    swapped = {a["id"] for _, a in _parsed(added.text).elements if a.get("hx-swap-oob") == "true"}
    assert swapped == {"review-stats", "interview-pictures", "code-list", "transcript"}  # renumbered
    plain = client.post("/review", data={"csrf_token": csrf, "interview": "hostile", "code_id": ids["trigger"],
                                         "action": "reject"}, follow_redirects=False)
    assert plain.status_code == 303 and plain.headers["location"].startswith("/interview/hostile#code-")


def test_unknown_interview_code_and_study_are_404_pages_that_say_what(hostile):
    client = _client(*hostile)
    for url, said in (("/interview/nobody", "no interview 'nobody'"), ("/?study=elsewhere", "no study 'elsewhere'"),
                      ("/nowhere", "no page at /nowhere")):
        page = client.get(url)
        assert page.status_code == 404 and said in html.unescape(page.text), url
        assert 'id="error-message"' in page.text
    assert client.get("/interview/nobody.json").json() == {"error": "no interview 'nobody' in study 'default'",
                                                            "status": 404}
    csrf = _csrf(client.get("/"))
    missing = _decide(client, csrf, code_id="hostile:force.push:1-2", action="accept")
    assert missing.status_code == 404 and "no code 'hostile:force.push:1-2'" in missing.json()["message"]


def test_a_locked_database_says_the_decision_was_not_saved(hostile):
    settings, store = hostile
    client = _client(settings, store)
    csrf = _csrf(client.get("/interview/hostile"))
    ids = _code_ids(client)
    other = sqlite3.connect(Path(settings.data_dir) / "reviews.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
    try:
        answer = _decide(client, csrf, code_id=ids["force.push"], action="accept")
        page = client.post("/review", data={"csrf_token": csrf, "interview": "hostile", "code_id": ids["force.push"],
                                            "action": "accept"}, headers={"hx-request": "true"})
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert answer.status_code == 503 and not answer.json()["saved"]
    assert answer.json()["message"].startswith("not saved: ") and "locked" in answer.json()["message"]
    assert page.status_code == 503 and 'data-saved="false"' in page.text and "not saved" in page.text
    assert [r.status for r in store.reviewed("default", "hostile")] == ["suggested"] * 4


def test_off_loopback_every_request_needs_the_token(hostile):
    settings, store = hostile
    client = _client(settings, store, token="s3cret")
    client.base_url = "http://192.168.1.20:8765"
    assert client.get("/").status_code == 401
    assert client.get("/interview/hostile.json").status_code == 401
    assert client.get("/?token=wrong").status_code == 401
    entry = client.get("/interview/hostile?token=s3cret", follow_redirects=False)
    assert entry.status_code == 303 and entry.headers["location"] == "/interview/hostile"  # token out of the URL
    assert client.get("/interview/hostile").status_code == 200  # the cookie from then on
    bare = Client(client.app, "http://192.168.1.20:8765")
    assert bare.get("/.json", headers={"authorization": "Bearer s3cret"}).status_code == 200
    # without a token the server answers only requests addressed to this computer (no DNS rebinding)
    loopback = _client(settings, store)
    assert loopback.get("/").status_code == 200
    loopback.base_url = "http://evil.example:8765"
    assert loopback.get("/").status_code == 400


def test_the_export_route_downloads_the_study(hostile):
    client = _client(*hostile)
    page = client.get("/export?format=csv&status=all")
    assert page.status_code == 200 and "attachment" in page.headers["content-disposition"]
    assert "<script>alert" in page.text  # a CSV holds the words; escaping is the viewer's job there
    assert client.get("/export?format=pdf").status_code == 400


# --- the example coded by the real flow -------------------------------------------------------------


@pytest.fixture(scope="module")
def coded(prefect_harness, my_vcr, tmp_path_factory):
    """The example interview coded once from the cassette into a fresh data folder."""
    settings = server_settings(tmp_path_factory.mktemp("web") / "data", reviewer="maya")
    with my_vcr.use_cassette(CASSETTE):
        summary = run_paths([EXAMPLE], settings, tmp_path_factory.mktemp("run"))
    assert summary.transcripts_ok == [str(EXAMPLE)], summary.transcripts_failed
    return settings


def test_the_coded_example_shows_on_every_page(coded):
    from jtbd.web.app import create_app

    client = Client(create_app(coded))
    study = client.get("/.json").json()
    assert [i["id"] for i in study["interviews"]] == ["espresso_machine"]
    counts = study["interviews"][0]["codes"]
    assert sum(counts.values()) == study["review"]["suggested"] > 0
    assert sum(study["forces"][f]["count"] for f in ("push", "pull", "anxiety", "habit")) == \
        sum(counts[f] for f in ("push", "pull", "anxiety", "habit"))
    for job in study["jobs"]:
        assert job["statement_source"] == "model" and job["statement"].startswith("When ")
    markup = client.get("/").text
    assert markup.count('<li class="job-item">') == len(study["jobs"])
    interview = client.get("/interview/espresso_machine.json").json()
    assert len(interview["codes"]) == sum(counts.values()) + sum(1 for c in interview["codes"] if c["status"] == "rejected")
    assert client.get("/interview/espresso_machine").status_code == 200


def test_semantic_search_with_facets_and_quote_cards(coded):
    from jtbd.web.app import create_app

    client = Client(create_app(coded))
    everything = client.get("/search.json?q=worried+about+the+price&k=50").json()
    assert everything["mode"] == "semantic" and everything["results"]
    similarities = [r["similarity"] for r in everything["results"]]
    assert similarities == sorted(similarities, reverse=True)
    kinds = dict(everything["facets"]["kind"])
    assert sum(kinds.values()) == everything["total"]
    anxiety = client.get("/search.json?q=worried+about+the+price&kind=force&force=anxiety").json()
    assert anxiety["results"] and {(r["kind"], r["force"]) for r in anxiety["results"]} == {("force", "anxiety")}
    assert dict(anxiety["facets"]["force"]).get("anxiety") == anxiety["total"]
    assert dict(anxiety["facets"]["force"]).keys() >= {"anxiety"}  # the other values stay countable
    card = anxiety["results"][0]
    assert card["href"] == f"/interview/espresso_machine#span-{card['anchor']}"
    assert card["speaker"] and card["line"] and (card["context_before"] or card["context_after"])
    markup = client.get("/search?q=worried+about+the+price&kind=force&force=anxiety").text
    assert markup.count('class="quote-card') == len(anxiety["results"])
    assert 'data-facet="force"' in markup and "force=anxiety" in markup
    strict = client.get("/search.json?q=worried+about+the+price&min_score=0.99").json()
    assert strict["total"] == 0
    assert client.get("/search?q=x&min_score=lots").status_code == 400


def test_a_code_a_person_adds_is_found_by_meaning_too(coded):
    """Codes a person adds live in the review store, not in Chroma; search embeds them with the same model."""
    from jtbd.web.app import create_app

    client = Client(create_app(coded))
    csrf = _csrf(client.get("/interview/espresso_machine"))
    turn = next(t for t in client.get("/interview/espresso_machine.json").json()["turns"] if "beagle" in t["text"].lower()
                or "dog refuses" in t["text"])
    start = turn["char_start"] + turn["text"].index("The dog refuses")
    end = start + len("The dog refuses to go out in the rain")
    added = client.post("/review", data={"csrf_token": csrf, "interview": "espresso_machine", "action": "add",
                                         "kind": "quote", "start": start, "end": end},
                        headers={"accept": "application/json"}).json()
    assert added["saved"] and added["code"]["reviewer"] == "maya"
    found = client.get("/search.json?q=my+dog+hates+going+out+when+it+rains&status=added").json()
    assert [r["quote"] for r in found["results"]] == ["The dog refuses to go out in the rain"]
    assert found["results"][0]["similarity"] > 0.3 and dict(found["facets"]["status"])["added"] == 1


def test_pages_keep_up_with_what_another_process_writes(coded, tmp_path):
    """The app keeps a study's codes between requests (a 100,000-code study is too slow to read on each);
    what another reviewer decides or a re-run of `jtbd code` stores shows on the next request, in the
    pages and in search with facets."""
    import shutil

    from jtbd.coding.reviews import ReviewStore
    from jtbd.settings import with_changes
    from jtbd.web.app import create_app

    shutil.copytree(coded.data_dir, tmp_path / "data")
    settings = with_changes(coded, data_dir=str(tmp_path / "data"))
    client = Client(create_app(settings))
    q = "/search.json?q=worried+about+the+price&k=100"
    forces = [r for r in client.get(q).json()["results"] if r["kind"] == "force"]
    target, other = forces[0], forces[1]
    moved = next(f for f in ("push", "pull", "anxiety", "habit") if f != target["force"])
    with ReviewStore.open(settings.review_db_url) as elsewhere:  # another reviewer, another process
        code = next(i.code for i in elsewhere.reviewed("default", "espresso_machine") if i.code["id"] == target["id"])
        elsewhere.decide("default", "espresso_machine", target["id"], "relabel", "ann", code={**code, "force": moved})
        elsewhere.decide("default", "espresso_machine", other["id"], "reject", "ann")
    assert target["id"] in {r["id"] for r in client.get(f"{q}&force={moved}").json()["results"]}
    assert target["id"] not in {r["id"] for r in client.get(f"{q}&force={target['force']}").json()["results"]}
    assert [r["id"] for r in client.get(f"{q}&status=rejected").json()["results"]] == [other["id"]]
    assert client.get("/.json").json()["review"]["rejected"] == 1
    assert client.get("/interview/espresso_machine.json").json()["study_review"]["changed"] == 1
    with ReviewStore.open(settings.review_db_url) as elsewhere:  # a re-run no longer suggests an open code
        items = elsewhere.reviewed("default", "espresso_machine")
        dropped = next(i.code["id"] for i in items if i.status == "suggested")
        elsewhere.save_coded("default", elsewhere.transcript("default", "espresso_machine"),
                             elsewhere.source_path("default", "espresso_machine"),
                             [i.code for i in items if i.status != "rejected" and i.code["id"] not in (dropped, target["id"])]
                             + [code])
    codes = {c["id"] for c in client.get("/interview/espresso_machine.json").json()["codes"]}
    assert dropped not in codes and target["id"] in codes
    assert dropped not in {r["id"] for r in client.get(q).json()["results"]}  # Chroma still holds it: not shown


def test_the_catalogue_reads_again_only_what_changed_and_forgets_a_forgotten_interview(hostile):
    from jtbd.web.catalogue import Catalogue

    settings, store = hostile
    catalogue = Catalogue(store, "default").refresh()
    first = catalogue._interviews["hostile"]
    assert len(catalogue.codes()) == 4 and len(catalogue.index) == 4 and catalogue.agreement().reviewed == 0
    assert catalogue.refresh()._interviews["hostile"] is first  # nothing changed: nothing read
    push = next(c.id for c in catalogue.codes() if c.force == "push")
    store.decide("default", "hostile", push, "reject", "maya")
    assert catalogue.refresh().code(push).status == "rejected" and catalogue.agreement("hostile").rejected == 1
    assert catalogue.index.passing({"status": "rejected"}) == [push]
    store.forget("default", ["hostile"])
    assert catalogue.refresh().codes() == [] and len(catalogue.index) == 0 and catalogue.transcripts() == {}


def _served(monkeypatch, capsys, *argv):
    """`jtbd serve ARGV` up to the point uvicorn would start: (exit status, what it said, the app it got)."""
    import uvicorn

    import jtbd.cli

    started = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda server: started.append(server.config))
    status = jtbd.cli.main(["serve", *argv])
    said = capsys.readouterr()
    return status, said.out + said.err, started[0].app if started else None


def _free_port() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def test_serve_off_loopback_prints_a_generated_token_and_requires_it(hostile, monkeypatch, capsys):
    settings, store = hostile
    store.close()  # the command opens its own
    port = _free_port()
    status, said, app = _served(monkeypatch, capsys, "--data-dir", settings.data_dir, "--host", "0.0.0.0",
                                "--port", port)
    token = re.search(rf"http://0\.0\.0\.0:{port}/\?token=(\S+)", said).group(1)
    assert status == 0 and "every request needs a token" in said
    client = Client(app, "http://10.0.0.5:8765")
    assert client.get("/").status_code == 401
    assert client.get(f"/?token={token}", follow_redirects=True).status_code == 200  # then the cookie
    status, said, app = _served(monkeypatch, capsys, "--data-dir", settings.data_dir, "--port", port)
    assert status == 0 and f"serving study 'default' on http://127.0.0.1:{port}/ " in said and "token" not in said
    assert Client(app).get("/").status_code == 200
    status, said, _ = _served(monkeypatch, capsys, "--data-dir", settings.data_dir, "--study", "nope", "--port", port)
    assert status == 2 and "--study is 'nope': no such study" in said and "(studies: default)" in said


def test_another_study_of_the_same_database_keeps_its_name_in_every_link(hostile):
    from jtbd.coding.parse import load_transcript

    settings, store = hostile
    path = Path(settings.data_dir).parent / "other.txt"
    path.write_text("Interviewer: Why?\nSam: The old one broke and I bought the first one I saw.\n", encoding="utf-8")
    store.save_coded("onboarding", load_transcript(path), str(path), [])
    client = _client(settings, store)
    page = client.get("/?study=onboarding")
    assert page.status_code == 200 and 'href="/interview/other?study=onboarding"' in page.text
    assert client.get("/interview/other.json?study=onboarding").json()["study"] == "onboarding"
    assert client.get("/interview/other").status_code == 404  # not in the served study
    assert 'href="/?study=onboarding"' in client.get("/").text  # the study page lists the others
