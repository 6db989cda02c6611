"""The workbench in a real browser, used the way a researcher uses it.

The example interview is coded from its cassette by the real flow into a fresh data folder; `jtbd serve`
itself (the command, in a thread) serves it on 127.0.0.1 and a free port; Playwright drives Debian's
Chromium through it: the study page with its pictures, a search narrowed by a facet, a quote opened in
its interview, codes accepted, rejected and relabelled with the keyboard, a code added by selecting
words with the mouse and pressing a key, every export downloaded from the page's links, and the
interview coded again to show that no decision is lost. A hostile transcript (`<script>`, `{{ }}`,
an `onerror` image) must show as the words it is, with nothing run.

Chromium comes from Debian (Playwright's own browser download is not used): the README's test command
installs it. Without it these tests fail and say how to install it. Each page is written as a
screenshot to runs/screenshots/browser/ (runs/ is never committed), to be looked at.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import threading
import time
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, run_paths, server_settings

CHROMIUM = "/usr/bin/chromium"
INSTALL = "apt-get update && apt-get install -y chromium postgresql"  # postgresql: tests/test_scale_out.py
EXAMPLE = ROOT / "examples" / "espresso_machine.txt"
CASSETTE = "flow/espresso_machine.yaml"
SHOTS = ROOT / "runs" / "screenshots" / "browser"
XSD = ROOT / "tests" / "data" / "refi-qda" / "Project.xsd"
EXPORTS = ("csv", "json", "md", "gold", "qdpx")
WAIT_MS = 15_000  # the longest any step may take (a decision is a few ms; search embeds the query)

HOSTILE = """\
Interviewer: What did you use before?
Dana: A spreadsheet called <script>window.pwned = "script"</script> and it broke every Monday, honestly.
Interviewer: And then?
Dana: My boss wrote {{ 7*7 }} in the budget cell and I said: this is the day we switch tools.
Dana: I worried the new tool would lose our history <img src=x onerror="window.pwned = 'img'"> forever.
"""


# --- the browser, the coded study and the server ---------------------------------------------------------


def _missing() -> str:
    """What the browser tests lack to run, said with the command that installs it; "" when nothing."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return (f"the browser tests drive Debian's Chromium at {CHROMIUM}, which is not installed. Install it with "
                f"the README's test command, or on its own: {INSTALL} (as root, or prefix apt-get with sudo)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ("the browser tests need Playwright for Python: .venv/bin/pip install -e '.[local,test]' "
                "(the README's test command)")
    return ""


def test_debian_chromium_and_playwright_are_installed():
    """Never skipped: without the browser the tests below would prove nothing, so the run fails and says why."""
    if _missing():
        pytest.fail(_missing(), pytrace=False)


@pytest.fixture(scope="module")
def chromium() -> str:
    if _missing():
        pytest.fail(_missing(), pytrace=False)
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: Chromium's sandbox cannot start as root (CI runs as root); the pages are our own.
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    return SHOTS


@pytest.fixture(scope="module")
def study(chromium, prefect_harness, my_vcr, tmp_path_factory):
    """The example coded once from its cassette into a fresh data folder (study "default"), and the hostile
    transcript with four hand-made suggestions in study "hostile" of the same review database."""
    folder = tmp_path_factory.mktemp("browser")
    settings = server_settings(folder / "data", reviewer="maya")
    with my_vcr.use_cassette(CASSETTE):
        summary = run_paths([EXAMPLE], settings, folder / "run1")
    assert summary.transcripts_ok == [str(EXAMPLE)], summary.transcripts_failed
    _save_hostile(settings, folder / "hostile.txt")
    return settings


def _save_hostile(settings, path: Path) -> None:
    from jtbd.coding.extract import grounding_for
    from jtbd.coding.ground import Span
    from jtbd.coding.parse import load_transcript
    from jtbd.coding.reviews import ReviewStore
    from jtbd.schemas.codebook import Alignment, Force, Provenance, Quote, Trigger

    path.write_text(HOSTILE, encoding="utf-8")
    transcript = load_transcript(path)
    provenance = Provenance(prompt_version="test", schema_version="test", model="test-model")

    def code(cls, words: str, score: float, **extra):
        start = transcript.text.index(words)
        span = Span(transcript.turn_at(start).index, start, start + len(words), Alignment.exact, 100.0)
        return cls(quote=words, grounding=grounding_for(span, transcript), provenance=provenance, score=score,
                   **extra).model_dump(mode="json")

    codes = [code(Force, 'A spreadsheet called <script>window.pwned = "script"</script> and it broke every Monday',
                  2.0, force="push"),
             code(Trigger, "My boss wrote {{ 7*7 }} in the budget cell", 1.5),
             code(Force, "I worried the new tool would lose our history <img src=x onerror=\"window.pwned = 'img'\"> "
                         "forever.", 1.2, force="anxiety"),
             code(Quote, "this is the day we switch tools.", 0.5)]
    with ReviewStore.open(settings.review_db_url) as store:
        store.save_coded("hostile", transcript, str(path), codes)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(study):
    """`jtbd serve --data-dir DIR --reviewer maya --port PORT` in a thread: the command a researcher runs."""
    import uvicorn

    from jtbd.cli import main

    started: list[uvicorn.Server] = []
    exits: list[object] = []
    run = uvicorn.Server.run

    def keep(server_, *args, **kwargs):  # uvicorn's own run, with a handle to stop it afterwards
        started.append(server_)
        return run(server_, *args, **kwargs)

    def serve() -> None:
        try:
            exits.append(main(["serve", "--data-dir", study.data_dir, "--reviewer", "maya", "--port", str(port)]))
        except BaseException as err:  # noqa: BLE001  (said below, in the test's thread)
            exits.append(err)

    port = _free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(uvicorn.Server, "run", keep)
        thread = threading.Thread(target=serve, name="jtbd-serve", daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not (started and started[0].started):
            if exits or time.monotonic() > deadline:
                pytest.fail(f"jtbd serve did not start on 127.0.0.1:{port}: {exits or 'no answer in 60 s'}")
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    started[0].should_exit = True
    thread.join(timeout=15)


class Visit:
    """One browser tab on the workbench: JavaScript errors and Content-Security-Policy reports are collected
    (a page that shows transcript text must raise neither)."""

    def __init__(self, browser, base: str, shots: Path, downloads: Path | None = None) -> None:
        self.base, self.shots = base, shots
        self.context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
        self.context.set_default_timeout(WAIT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda err: self.errors.append(f"page error: {err}"))
        self.page.on("console", lambda msg: self.errors.append(f"console {msg.type}: {msg.text}")
                     if msg.type == "error" else None)
        self.page.on("response", lambda r: self.errors.append(f"{r.status} {r.request.method} {r.url}")
                     if r.status >= 400 else None)

    def open(self, path: str):
        answer = self.page.goto(self.base + path)
        assert answer is not None and answer.status == 200, (path, answer and answer.status)
        return self.page

    def shot(self, name: str, full_page: bool = True) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def json(self, path: str) -> dict:
        answer = self.page.request.get(self.base + path)
        assert answer.ok, (path, answer.status)
        return answer.json()

    def close(self) -> None:
        self.context.close()
        assert not self.errors, self.errors


@pytest.fixture()
def visit(browser, server, shots):
    tab = Visit(browser, server, shots)
    yield tab
    tab.close()


# --- helpers that act as a person does --------------------------------------------------------------------


def _expect():
    from playwright.sync_api import expect

    return expect


def _press(page, key: str) -> None:
    """A review key; waits for the server's answer to be swapped in and the page to settle on it.

    The page scrolls to the next current code once the answer has settled, a moment after the swap:
    a mouse aimed before that lands on other words.
    """
    page.evaluate("delete document.body.dataset.settled")
    with page.expect_response(lambda r: r.url.endswith("/review") and r.request.method == "POST") as answer:
        page.keyboard.press(key)
    assert answer.value.status == 200, answer.value.text()
    _expect()(page.locator("#flash-message")).to_have_attribute("data-saved", "true")
    _expect()(page.locator("body")).to_have_attribute("data-settled", "true")


def _current(page) -> dict:
    item = page.locator("#code-list .code-item.current")
    _expect()(item).to_have_count(1)
    assert _on_top(item), "the current code is not in sight in the margin"
    return item.evaluate("el => ({...el.dataset, quote: el.querySelector('.code-quote q').textContent})")


def _item(page, code_id: str):
    return page.locator(f'#code-list .code-item[data-code-id="{code_id}"]')


def _on_top(locator) -> bool:
    """Is the element on screen and not covered by another (the sticky review bar, say)? A person sees it."""
    return locator.evaluate("""el => {
      const box = el.getBoundingClientRect();
      const x = box.left + box.width / 2, y = box.top + Math.min(12, box.height / 2);
      if (y < 0 || y > window.innerHeight) return false;
      const seen = document.elementFromPoint(x, y);
      return Boolean(seen) && el.contains(seen);
    }""")


def _select_words(page, words: str) -> None:
    """Drag the mouse over these words in an interviewee's turn, as a person selects them."""
    points = page.evaluate("""(words) => {
      for (const text of document.querySelectorAll('#transcript .turn[data-role="interviewee"] .turn-text')) {
        const nodes = []; let all = '';
        const walk = document.createTreeWalker(text, NodeFilter.SHOW_TEXT);
        while (walk.nextNode()) {
          const node = walk.currentNode;
          if (node.parentElement.closest('.seg')) { nodes.push([node, all.length]); all += node.data; }
        }
        const at = all.indexOf(words);
        if (at < 0) continue;
        text.scrollIntoView({block: 'center'});
        const box = (i) => {
          for (const [node, s] of nodes) if (i >= s && i < s + node.data.length) {
            const range = document.createRange(); range.setStart(node, i - s); range.setEnd(node, i - s + 1);
            return range.getBoundingClientRect();
          }
        };
        const first = box(at), last = box(at + words.length - 1);
        return {x1: first.left + 1, y1: first.top + first.height / 2, x2: last.right - 1, y2: last.top + last.height / 2};
      }
      return null;
    }""", words)
    assert points, f"{words!r} is not in an interviewee's turn"
    page.mouse.move(points["x1"], points["y1"])
    page.mouse.down()
    page.mouse.move(points["x2"], points["y2"], steps=8)
    page.mouse.up()
    chosen = " ".join(page.evaluate("window.getSelection().toString()").split())
    assert words in chosen, f"the drag selected {chosen!r}, not {words!r}: did the page move under the mouse?"
    bar = page.locator("#selection-bar")
    _expect()(bar).to_be_visible()
    rows = bar.locator("button").evaluate_all("bs => new Set(bs.map(b => Math.round(b.getBoundingClientRect().top))).size")
    assert rows == 1, "the selection bar's buttons wrap onto a second line"


# --- the tests --------------------------------------------------------------------------------------------


def test_the_study_page_shows_the_interview_its_forces_and_timeline(visit):
    page = visit.open("/")
    expect = _expect()
    expect(page.locator("#study-name")).to_have_text("default")
    rows = page.locator("#interviews .interview-row")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("a.interview-link")).to_have_text("espresso_machine")
    study = visit.json("/.json")
    forces = page.locator("svg.forces-diagram g.quadrant")
    expect(forces).to_have_count(4)
    for force in ("push", "pull", "anxiety", "habit"):
        quadrant = page.locator(f"svg.forces-diagram #quadrant-{force}")
        expect(quadrant).to_be_visible()
        expect(quadrant).to_have_attribute("data-count", str(study["forces"][force]["count"]))
    assert sum(study["forces"][f]["count"] for f in ("push", "pull", "anxiety", "habit")) > 0
    spilled = page.evaluate("""() => Array.from(document.querySelectorAll('svg.forces-diagram g.quadrant'), g => {
        const box = g.querySelector('rect').getBBox();
        return Array.from(g.querySelectorAll('text'), t => t.getBBox().x + t.getBBox().width <= box.x + box.width - 2
                          ? '' : t.textContent).filter(Boolean);
      }).flat()""")
    assert spilled == [], "quotes run over their quadrant's edge"
    timeline = page.locator("svg.timeline g.timeline-row")
    expect(timeline).to_have_count(1)
    expect(timeline).to_have_attribute("data-transcript", "espresso_machine")
    marks = page.locator("svg.timeline a.timeline-code")
    assert marks.count() == len(study["timeline"][0]["codes"]) > 0
    expect(page.locator("#review-summary")).to_have_attribute("data-reviewed", "0")
    visit.shot("01-study")
    # a click on a quadrant lists its codes
    page.locator("svg.forces-diagram #quadrant-push a.quadrant-link .quadrant-title").click()
    page.wait_for_url(re.compile(r"/search\?kind=force&force=push$"))
    cards = page.locator("#results .quote-card")
    expect(cards).to_have_count(study["forces"]["push"]["count"])


def test_search_narrowed_by_a_facet_then_a_quote_opened_in_its_interview(visit):
    page = visit.open("/")
    expect = _expect()
    page.keyboard.press("/")  # the search key
    expect(page.locator("#top-search input")).to_be_focused()
    page.keyboard.type("worried about the price")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/search\?q=worried\+about\+the\+price"))
    expect(page.locator("#results")).to_have_attribute("data-mode", "semantic")
    anxiety = page.locator('section.facet[data-facet="force"] a.facet-value[data-value="anxiety"]')
    expect(anxiety).to_be_visible()
    anxiety.click()
    page.wait_for_url(re.compile(r"force=anxiety"))
    expect(page.locator('section.facet[data-facet="force"] a.facet-value.chosen')).to_have_text("✕ anxiety")
    cards = page.locator("#results .quote-card")
    assert cards.count() > 0
    assert set(cards.evaluate_all("cs => cs.map(c => c.querySelector('.label').textContent)")) == {"force.anxiety"}
    first = cards.first
    quote = first.locator("q").text_content()
    visit.shot("02-search-anxiety")
    href = first.locator("a.open-link").get_attribute("href")
    assert href.startswith("/interview/espresso_machine#span-"), href
    anchor = href.rsplit("#span-", 1)[1]
    first.locator("a.open-link").click()
    page.wait_for_url(re.compile(r"/interview/espresso_machine#"))
    current = page.locator(f"#code-{anchor}")
    expect(current).to_have_class(re.compile(r"\bcurrent\b"))  # the code opened is the current one
    expect(page.locator(f"#span-{anchor}")).to_be_in_viewport()  # and its words are on screen
    assert current.locator(".code-quote q").text_content() == quote
    marked = page.locator("#transcript mark.hl.current")
    assert marked.count() >= 1 and marked.first.text_content().strip()[:10] in quote  # its words marked
    expect(page.locator("#review-bar")).to_be_visible()
    assert _on_top(current), "the code opened is hidden (under the review bar?)"
    visit.shot("03-interview-from-search", full_page=False)


@pytest.fixture(scope="module")
def reviewed(browser, server, shots):
    """The keyboard review of the example, as a researcher does it: j to the first code, a, then r on
    the next; on to a suggested force and 1-4 to relabel it; then words selected with the mouse and 2
    adds them as a pull. Returns what was decided: {code id: (status, force)} and the added code."""
    tab = Visit(browser, server, shots)
    page = tab.open("/interview/espresso_machine")
    expect = _expect()
    decided: dict[str, tuple[str, str]] = {}
    page.keyboard.press("j")
    first = _current(page)
    page.keyboard.press("j")
    assert _current(page)["codeId"] != first["codeId"]
    page.keyboard.press("k")  # back up to the first code
    assert _current(page)["codeId"] == first["codeId"] == page.locator("#code-list .code-item").first.get_attribute(
        "data-code-id")
    _press(page, "a")
    expect(_item(page, first["codeId"])).to_have_attribute("data-status", "accepted")
    decided[first["codeId"]] = ("accepted", first["force"])
    second = _current(page)  # an accepted code moves the review on to the next
    assert second["codeId"] != first["codeId"]
    _press(page, "r")
    expect(_item(page, second["codeId"])).to_have_attribute("data-status", "rejected")
    decided[second["codeId"]] = ("rejected", second["force"])
    for _ in range(200):  # j on to a force nobody has reviewed
        if (_current(page)["kind"], _current(page)["status"]) == ("force", "suggested"):
            break
        page.keyboard.press("j")
    force = _current(page)
    new = next(f for f in ("push", "pull", "anxiety", "habit") if f != force["force"])
    _press(page, str(("push", "pull", "anxiety", "habit").index(new) + 1))
    expect(_item(page, force["codeId"])).to_have_attribute("data-status", "changed")
    expect(_item(page, force["codeId"])).to_have_attribute("data-force", new)
    expect(_item(page, force["codeId"]).locator(".was")).to_contain_text(f"the model suggested force.{force['force']}")
    decided[force["codeId"]] = ("changed", new)
    tab.shot("04-interview-reviewed-by-keyboard", full_page=False)
    for _ in range(200):  # on to another code nobody has reviewed: accepted by mistake, taken back with u
        page.keyboard.press("j")
        if _current(page)["status"] == "suggested":
            break
    mistake = _current(page)
    _press(page, "a")
    expect(_item(page, mistake["codeId"])).to_have_attribute("data-status", "accepted")
    expect(page.locator("#review-summary")).to_have_attribute("data-reviewed", "4")
    _press(page, "u")
    expect(_item(page, mistake["codeId"])).to_have_attribute("data-status", "suggested")
    expect(_item(page, mistake["codeId"]).locator(".who")).to_contain_text("reset by maya")
    expect(page.locator("#review-summary")).to_have_attribute("data-reviewed", "3")

    words = "negotiating with him every morning"
    _select_words(page, words)
    tab.shot("05-interview-words-selected", full_page=False)
    _press(page, "2")
    added = page.locator('#code-list .code-item[data-status="added"]')
    expect(added).to_have_count(1)
    expect(added.locator(".code-quote q")).to_have_text("…" + words)  # words from mid-sentence: marked so
    expect(added).to_have_attribute("data-force", "pull")
    added_id = added.get_attribute("data-code-id")
    decided[added_id] = ("added", "pull")
    expect(page.locator("#review-summary")).to_have_attribute("data-reviewed", "3")
    tab.shot("06-interview-code-added", full_page=False)
    tab.close()
    return decided, added_id, words


def test_accept_reject_relabel_and_add_by_keyboard(reviewed, visit):
    decided, added_id, words = reviewed
    page = visit.open("/interview/espresso_machine")  # a fresh page: what the database holds
    codes = {c["id"]: c for c in visit.json("/interview/espresso_machine.json")["codes"]}
    for code_id, (status, force) in decided.items():
        assert (codes[code_id]["status"], codes[code_id]["force"]) == (status, force), code_id
        assert codes[code_id]["reviewer"] == "maya"
        _expect()(_item(page, code_id)).to_have_attribute("data-status", status)
    assert codes[added_id]["quote"] == words and codes[added_id]["by_person"]
    review = visit.json("/interview/espresso_machine.json")["review"]
    assert (review["reviewed"], review["accepted"], review["changed"], review["rejected"], review["added"]) == \
        (3, 1, 1, 1, 1)
    # the text shows who decided: a person's code underlined solid, a rejected one struck through
    rejected = next(i for i, (s, _) in decided.items() if s == "rejected")
    assert "st-rejected" in (_item(page, rejected).get_attribute("class") or "")
    visit.shot("07-interview-after-review")


def test_every_export_link_downloads_the_review(reviewed, visit, tmp_path):
    import xmlschema

    from jtbd.eval.runner import load_gold_files

    decided, added_id, words = reviewed
    page = visit.open("/")
    page.locator("#exports summary").click()
    kept = {i for i, (status, _) in decided.items() if status != "rejected"}
    got: dict[str, Path] = {}
    for fmt in EXPORTS:
        link = page.locator(f'#exports a.export-link[data-format="{fmt}"][data-status="reviewed"]')
        with page.expect_download() as download:
            link.click()
        name = download.value.suggested_filename
        assert name == f"default-reviewed{'-gold.zip' if fmt == 'gold' else '.jsonl' if fmt == 'json' else '.' + fmt}"
        got[fmt] = tmp_path / name
        download.value.save_as(got[fmt])
    visit.shot("08-study-exports-open", full_page=False)

    rows = list(csv.DictReader(io.StringIO(got["csv"].read_text(encoding="utf-8"))))
    assert {r["id"] for r in rows} == kept
    assert {r["id"]: r["status"] for r in rows}[added_id] == "added"
    records = [json.loads(line) for line in got["json"].read_text(encoding="utf-8").splitlines()]
    assert {r["id"] for r in records} == kept
    assert words in got["md"].read_text(encoding="utf-8")
    gold = tmp_path / "gold"
    with zipfile.ZipFile(got["gold"]) as archive:
        archive.extractall(gold)
    loaded, problems, notes = load_gold_files(gold)  # what `jtbd eval --gold` reads
    assert problems == [] and len(loaded) == 1
    assert words in {c.quote for c in loaded[0].codes}
    with zipfile.ZipFile(got["qdpx"]) as archive:
        qde = archive.read("project.qde").decode("utf-8")
    xmlschema.XMLSchema(str(XSD)).validate(qde)
    assert words in "".join(zipfile.ZipFile(got["qdpx"]).read(n).decode("utf-8")
                            for n in zipfile.ZipFile(got["qdpx"]).namelist() if n.startswith("Sources/"))


def test_coding_the_interview_again_keeps_every_decision(reviewed, visit, study, my_vcr, tmp_path):
    decided, added_id, words = reviewed
    page = visit.open("/interview/espresso_machine")
    before = visit.json("/interview/espresso_machine.json")
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True):
        summary = run_paths([EXAMPLE], study, tmp_path / "run2")  # `jtbd code` on the same file again
    assert summary.transcripts_ok == [str(EXAMPLE)], summary.transcripts_failed
    page.reload()
    after = visit.json("/interview/espresso_machine.json")
    assert after["review"] == before["review"]
    codes = {c["id"]: c for c in after["codes"]}
    for code_id, (status, force) in decided.items():
        assert (codes[code_id]["status"], codes[code_id]["force"]) == (status, force), code_id
        _expect()(_item(page, code_id)).to_have_attribute("data-status", status)
    assert codes[added_id]["quote"] == words
    visit.shot("09-interview-after-coding-again", full_page=False)
    # search still reads the re-coded store
    visit.open("/search?q=worried+about+the+price")
    assert page.locator("#results .quote-card").count() > 0


def test_a_hostile_transcript_shows_as_text_and_runs_nothing(visit):
    expect = _expect()
    for path, name in (("/interview/hostile?study=hostile", "10-hostile-interview"),
                       ("/?study=hostile", "11-hostile-study"),
                       ("/search?study=hostile&kind=force", "12-hostile-search")):
        page = visit.open(path)
        assert page.evaluate("window.pwned") is None, path  # neither the script nor the image's onerror ran
        scripts = page.evaluate("Array.from(document.scripts, s => s.getAttribute('src'))")
        assert scripts == ["/static/htmx.min.js", "/static/app.js"], path
        assert page.locator("main img, main script").count() == 0, path
        text = page.locator("main").text_content()  # with the SVG titles: the full quotes
        assert '<script>window.pwned = "script"</script>' in text, path
        assert "<img src=x onerror=" in text, path
        visit.shot(name)
    page = visit.open("/interview/hostile?study=hostile")
    turn = page.locator("#transcript .turn", has_text="budget cell")
    expect(turn).to_contain_text("My boss wrote {{ 7*7 }} in the budget cell")  # not evaluated by the templates
    assert "49" not in turn.inner_text()


def test_the_readme_test_command_installs_chromium_and_postgresql_and_ci_runs_that_command():
    """A fresh machine needs only the README's two commands: the second brings the browser these tests drive
    (and the database server the scale-out test starts), and .ci/run runs exactly it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
    test_command = next(c for c in commands if c.endswith(".venv/bin/pytest"))
    assert test_command.startswith(INSTALL + " && ")
    ci = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line and not line.startswith("#")]
    assert test_command in ci and "export DEBIAN_FRONTEND=noninteractive" in " ".join(ci)
