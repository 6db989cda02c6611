"""`jtbd export`: a study's reviewed codes as CSV, JSON lines, Markdown, a gold folder that `jtbd eval`
reads, and a REFI-QDA project checked against the standard's schema.

A real review store (SQLite in tmp_path) holds tests/data/short_interview.txt with seven model
suggestions; a reviewer accepts two (one with a note), rejects one, relabels one, adds a code of
their own and leaves two open. Every format is exported from that store.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from jtbd.coding.export import (
    QDA_NAMESPACE, Note, build_export, download, effective_status, export_study, gather, gold_files, select,
    write_export,
)

ROOT = Path(__file__).resolve().parents[1]
SHORT = ROOT / "tests" / "data" / "short_interview.txt"
XSD = ROOT / "tests" / "data" / "refi-qda" / "Project.xsd"
STUDY = "onboarding"
WHEN = datetime(2026, 5, 20, 9, 30, tzinfo=timezone.utc)
Q = f"{{{QDA_NAMESPACE}}}"

PUSH = "Every month I spent two full evenings chasing people for receipts, and I hated it."
TRIGGER = "In March our accountant found a four thousand dollar mistake in the spreadsheet, right before the audit."
PULL = "The new app reads the receipt from a photo, so nobody has to type anything."
ANXIETY = "But I was nervous that my older colleagues would refuse to install another app on their phones."
HABIT = "we had used it for six years and everyone knew where everything was."
JOB = "That was the day I started searching."
QUOTE = "That sold me in the demo."


def _transcript():
    from jtbd.coding.parse import load_transcript

    return load_transcript(SHORT)


def _code(transcript, quote: str, kind: str, **fields) -> dict:
    """A grounded code of the codebook (as its JSON), at the quote's place in an interviewee turn."""
    from jtbd.coding.extract import grounding_for
    from jtbd.coding.ground import Span
    from jtbd.schemas.codebook import Alignment, schema_version

    start = transcript.text.index(quote)
    turn = transcript.turn_at(start)
    assert turn is not None and turn.is_coded
    position = transcript.turns.index(turn)
    grounding = grounding_for(Span(position, start, start + len(quote), Alignment.exact, 100.0), transcript)
    provenance = {"prompt_version": "test", "schema_version": schema_version(), "model": "test-model"}
    return {"kind": kind, "quote": quote, "grounding": grounding.model_dump(mode="json"), "provenance": provenance,
            "score": 0.5, **fields}


def _code_id(code: dict) -> str:
    from pydantic import TypeAdapter

    from jtbd.schemas.codebook import Code

    return TypeAdapter(Code).validate_python(code).id


@pytest.fixture()
def reviewed_study(tmp_path):
    """The review store and the model's suggestions, by name, after the reviewer's decisions."""
    from jtbd.coding.reviews import ReviewStore

    transcript = _transcript()
    suggestions = {
        "push": _code(transcript, PUSH, "force", force="push"),
        "trigger": _code(transcript, TRIGGER, "trigger"),
        "pull": _code(transcript, PULL, "force", force="pull"),
        "habit_as_push": _code(transcript, HABIT, "force", force="push"),  # the model's mistake
        "job": _code(transcript, JOB, "job", situation="the accountant found a costly spreadsheet mistake",
                     motivation="find a safer way to collect expenses", outcome="pass the audit",
                     dimension="functional"),
        "quote": _code(transcript, QUOTE, "quote"),
    }
    store = ReviewStore.open(f"sqlite:///{tmp_path / 'reviews.sqlite3'}")
    store.save_coded(STUDY, transcript, str(SHORT), list(suggestions.values()))
    tid, ids = transcript.id, {name: _code_id(code) for name, code in suggestions.items()}
    store.decide(STUDY, tid, ids["push"], "accept", "maya")
    store.decide(STUDY, tid, ids["push"], "note", "maya", note="Two evenings a month: the cost she names first.")
    store.decide(STUDY, tid, ids["trigger"], "accept", "maya")
    store.decide(STUDY, tid, ids["quote"], "reject", "maya")
    store.decide(STUDY, tid, ids["habit_as_push"], "relabel", "maya",
                 code={**suggestions["habit_as_push"], "force": "habit"})
    added = _code(transcript, ANXIETY, "force", force="anxiety", score=None)
    store.decide(STUDY, tid, _code_id(added), "add", "maya", code=added, note="The model missed this one.")
    yield store, transcript, suggestions
    store.close()


def _export(store, fmt: str, status: str = "reviewed"):
    return export_study(store, STUDY, fmt, status=status, reviewer="maya", now=WHEN, origin="jtbd-coder test")


# --- which codes ----------------------------------------------------------------------------------


def test_status_filters_keep_what_a_person_stands_behind_or_the_open_suggestions(reviewed_study):
    store, _, _ = reviewed_study
    everything = store.reviewed(STUDY)
    assert Counter(item.status for item in everything) == {
        "accepted": 2, "changed": 1, "added": 1, "rejected": 1, "suggested": 2}

    def quotes(status):
        return {item.code["quote"] for item in select(everything, status)}

    assert quotes("reviewed") == {PUSH, TRIGGER, HABIT, ANXIETY}
    assert quotes("suggestions") == {PULL, JOB}
    assert quotes("all") == {PUSH, TRIGGER, HABIT, ANXIETY, PULL, JOB}  # all but the rejected quote
    with pytest.raises(ValueError, match="--status"):
        select(everything, "accepted")


def test_a_reviewed_code_the_model_no_longer_suggests_is_still_exported_as_reviewed(reviewed_study):
    store, transcript, suggestions = reviewed_study
    # A re-run no longer suggests the accepted push (whose latest decision is a note) nor the relabelled code.
    kept = [code for name, code in suggestions.items() if name not in ("push", "habit_as_push")]
    store.save_coded(STUDY, transcript, str(SHORT), kept)
    everything = store.reviewed(STUDY)
    assert Counter(item.status for item in everything)["orphaned"] == 2
    export = _export(store, "json")
    rows = [json.loads(line) for line in export.files["codes.jsonl"].decode().splitlines()]
    assert {r["quote"]: r["review"]["status"] for r in rows} == {
        PUSH: "accepted", TRIGGER: "accepted", HABIT: "changed", ANXIETY: "added"}
    # the note, the latest decision on the push, stays with it
    assert next(r for r in rows if r["quote"] == PUSH)["review"]["note"].startswith("Two evenings")
    # Alone, a latest decision that is a note does not say whether a person accepted the code: gather
    # (what the export reads the store with) looks at the decision before it.
    assert sorted(effective_status(i) for i in everything if i.status == "orphaned") == ["changed", "orphaned"]


def test_a_reset_code_is_exported_as_a_suggestion_not_as_reviewed(reviewed_study):
    store, transcript, suggestions = reviewed_study
    for name in ("push", "quote", "habit_as_push"):  # accepted, rejected, relabelled: each taken back
        store.decide(STUDY, transcript.id, _code_id(suggestions[name]), "reset", "maya")
    everything = gather(store, STUDY, "gold")[0]
    assert Counter(effective_status(item) for item in everything) == {"accepted": 1, "added": 1, "suggested": 5}
    rows = list(csv.DictReader(io.StringIO(_export(store, "csv").files["codes.csv"].decode())))
    assert {r["quote"] for r in rows} == {TRIGGER, ANXIETY}
    rows = list(csv.DictReader(io.StringIO(_export(store, "csv", "suggestions").files["codes.csv"].decode())))
    assert {r["quote"]: r["status"] for r in rows} == {q: "suggested" for q in (PUSH, QUOTE, HABIT, PULL, JOB)}
    assert next(r for r in rows if r["quote"] == HABIT)["force"] == "push"  # the model's label again
    gold = json.loads(_export(store, "gold").files["short_interview.gold.json"])
    assert sorted(c["quote"] for c in gold["codes"]) == sorted([TRIGGER, ANXIETY])


# --- csv, json lines, markdown --------------------------------------------------------------------


def test_csv_is_the_run_folders_columns_with_the_review_status(reviewed_study, tmp_path):
    from jtbd.coding.outputs import CSV_FIELDS

    store, transcript, _ = reviewed_study
    export = _export(store, "csv")
    [path] = write_export(export, tmp_path / "out" / "codes.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert set(CSV_FIELDS) <= set(rows[0]) and {"status", "reviewer", "decided_at", "note"} <= set(rows[0])
    by_quote = {r["quote"]: r for r in rows}
    assert set(by_quote) == {PUSH, TRIGGER, HABIT, ANXIETY}
    assert (by_quote[HABIT]["status"], by_quote[HABIT]["force"]) == ("changed", "habit")
    assert (by_quote[ANXIETY]["status"], by_quote[ANXIETY]["reviewer"]) == ("added", "maya")
    assert by_quote[PUSH]["note"].startswith("Two evenings") and by_quote[PUSH]["decided_at"].startswith("20")
    for row in rows:
        assert transcript.text[int(row["char_start"]):int(row["char_end"])] == row["quote"]
    all_rows = list(csv.DictReader(io.StringIO(_export(store, "csv", "all").files["codes.csv"].decode())))
    assert Counter(r["status"] for r in all_rows) == {"accepted": 2, "changed": 1, "added": 1, "suggested": 2}


def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_starts_with_a_quote(reviewed_study):
    store, transcript, suggestions = reviewed_study
    pull, job = _code_id(suggestions["pull"]), _code_id(suggestions["job"])
    store.decide(STUDY, transcript.id, pull, "accept", "maya", note='=HYPERLINK("http://evil.example","open me")')
    store.decide(STUDY, transcript.id, job, "accept", "@maya", note="-2 days before the audit\t+1")
    rows = list(csv.DictReader(io.StringIO(_export(store, "csv").files["codes.csv"].decode())))
    by_quote = {r["quote"]: r for r in rows}
    assert by_quote[PULL]["note"] == '\'=HYPERLINK("http://evil.example","open me")'
    assert (by_quote[JOB]["note"], by_quote[JOB]["reviewer"]) == ("'-2 days before the audit\t+1", "'@maya")
    assert by_quote[PUSH]["note"].startswith("Two evenings")  # text that starts otherwise is left alone
    assert all(not r[name].startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows for name in r)


def test_json_lines_are_the_run_folders_records_with_a_review_object(reviewed_study):
    from pydantic import TypeAdapter

    from jtbd.schemas.codebook import Code

    store, _, _ = reviewed_study
    export = _export(store, "json", "suggestions")
    records = [json.loads(line) for line in export.files["codes.jsonl"].decode("utf-8").splitlines()]
    assert {r["quote"] for r in records} == {PULL, JOB}
    for record in records:
        assert record["review"] == {"status": "suggested", "reviewer": None, "decided_at": None, "note": None}
        TypeAdapter(Code).validate_python(record)  # each line is still a stored code
    job = next(r for r in records if r["kind"] == "job")
    assert job["statement"].startswith("When the accountant found") and job["statement_source"] == "model"


def test_markdown_is_the_study_and_interview_reports_with_each_codes_status(reviewed_study):
    store, _, _ = reviewed_study
    text = _export(store, "md", "all").files["report.md"].decode("utf-8")
    assert text.startswith(f"# jtbd export: study {STUDY}")
    assert "# Study: the forces of progress across interviews" in text and "# short_interview.txt" in text
    lines = text.splitlines()
    assert any(PUSH in line and line.endswith("*(accepted)*") for line in lines)
    assert any(HABIT in line and "**habit**" in line and line.endswith("*(changed)*") for line in lines)
    assert any(PULL in line and line.endswith("*(suggested)*") for line in lines)
    assert QUOTE not in text  # rejected


# --- the gold folder ------------------------------------------------------------------------------


def test_the_gold_folder_loads_with_no_problem_and_scores_the_model_against_the_review(reviewed_study, tmp_path):
    from jtbd.cli import main
    from jtbd.eval.runner import load_gold_files, score_gold
    from jtbd.schemas.codebook import CodedTranscript

    store, transcript, suggestions = reviewed_study
    export = _export(store, "gold")
    folder = tmp_path / "gold"
    write_export(export, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["short_interview.gold.json", "short_interview.txt"]
    with open(folder / "short_interview.txt", encoding="utf-8", newline="") as f:
        assert f.read() == transcript.text  # the normalised text, byte for byte: offsets and quotes hold
    data = json.loads((folder / "short_interview.gold.json").read_text(encoding="utf-8"))
    assert data["transcript"] == "short_interview.txt"
    assert data["interviewers"] == ["Interviewer"] and data["interviewees"] == ["Priya"]
    assert {(c["kind"], c.get("force"), c["quote"]) for c in data["codes"]} == {
        ("force", "push", PUSH), ("trigger", None, TRIGGER), ("force", "habit", HABIT), ("force", "anxiety", ANXIETY)}
    # the two open suggestions are not gold: said, because jtbd eval will count them as false alarms
    assert any("2 suggestions not reviewed yet" in p for p in export.problems)

    gold, problems, notes = load_gold_files(folder)  # what `jtbd eval --gold` loads
    assert (problems, notes) == ([], [])
    [loaded] = gold
    assert loaded.transcript.text == transcript.text and loaded.transcript.id == transcript.id
    assert all(transcript.text[c.char_start:c.char_end] == c.quote for c in loaded.codes)
    assert main(["gold", "check", str(folder)]) == 0

    # The model's own suggestions scored against this reviewer's codes, with eval's scorer.
    predicted = CodedTranscript(transcript=transcript.id, source=transcript.source,
                                codes=list(suggestions.values()))
    scores = score_gold(gold, {transcript.id: predicted})
    forces = scores.strict["push"], scores.strict["habit"], scores.strict["anxiety"], scores.strict["pull"]
    assert [(p.tp, p.fp, p.fn) for p in forces] == [(1, 1, 0), (0, 0, 1), (0, 0, 1), (0, 1, 0)]
    assert (scores.strict["trigger"].tp, scores.strict["quote"].fp, scores.strict["job"].fp) == (1, 1, 1)
    assert scores.confusion["habit"]["push"] == 1  # the relabelled code: the model said push


def test_an_interview_with_every_suggestion_rejected_is_an_empty_gold_file_not_left_out(reviewed_study):
    store, transcript, _ = reviewed_study
    for item in store.reviewed(STUDY):
        if item.status != "rejected":
            store.decide(STUDY, transcript.id, item.code["id"], "reject", "maya")
    files, problems = gold_files(store.reviewed(STUDY), {transcript.id: transcript})
    assert json.loads(files["short_interview.gold.json"])["codes"] == [] and problems == []


def test_a_gold_quote_said_twice_is_flagged_and_a_duplicate_left_out(reviewed_study):
    from jtbd.coding.reviews import ReviewedCode

    _, transcript, suggestions = reviewed_study
    push = ReviewedCode({**suggestions["push"], "id": "a"}, "accepted", None)
    again = ReviewedCode({**suggestions["push"], "id": "b"}, "added", None)
    files, problems = gold_files([push, again], {transcript.id: transcript})
    assert len(json.loads(files["short_interview.gold.json"])["codes"]) == 1
    [problem] = problems
    assert problem.startswith(f"{transcript.id}: left out a second force.push with the same quote")


# --- the REFI-QDA project -------------------------------------------------------------------------


def _qdpx(export) -> tuple[zipfile.ZipFile, ET.Element, bytes]:
    [(name, data)] = export.files.items()
    assert name == f"{STUDY}.qdpx"
    archive = zipfile.ZipFile(io.BytesIO(data))
    qde = archive.read("project.qde")
    return archive, ET.fromstring(qde), qde


def test_the_qdpx_project_is_valid_against_the_refi_qda_schema(reviewed_study):
    import xmlschema

    store, _, _ = reviewed_study
    schema = xmlschema.XMLSchema(str(XSD))
    for status in ("reviewed", "all", "suggestions"):
        _, _, qde = _qdpx(_export(store, "qdpx", status))
        schema.validate(qde.decode("utf-8"))  # raises, naming the element, if anything is out of the standard


def test_the_qdpx_project_holds_the_transcript_codebook_users_and_selections_at_the_quotes(reviewed_study):
    store, transcript, _ = reviewed_study
    archive, root, _ = _qdpx(_export(store, "qdpx", "all"))
    assert root.tag == f"{Q}Project" and root.get("origin") == "jtbd-coder test"
    assert [u.get("name") for u in root.iter(f"{Q}User")] == ["jtbd-coder (model suggestions)", "maya"]

    codes = {c.get("guid"): c for c in root.iter(f"{Q}Code")}
    top = [c.get("name") for c in root.find(f"{Q}CodeBook/{Q}Codes")]
    assert top == ["job", "trigger", "force", "quote"]
    force = next(c for c in root.find(f"{Q}CodeBook/{Q}Codes") if c.get("name") == "force")
    assert [c.get("name") for c in force.findall(f"{Q}Code")] == ["push", "pull", "anxiety", "habit"]
    assert force.get("isCodable") == "false"

    [source] = root.iter(f"{Q}TextSource")
    path = source.get("plainTextPath")
    assert path == f"internal://{source.get('guid')}.txt"
    text = archive.read(f"Sources/{source.get('guid')}.txt").decode("utf-8")
    assert text == transcript.text

    coded = {}
    for selection in source.findall(f"{Q}PlainTextSelection"):
        start, end = int(selection.get("startPosition")), int(selection.get("endPosition"))
        [code_ref] = selection.findall(f"{Q}Coding/{Q}CodeRef")
        coded[text[start:end]] = codes[code_ref.get("targetGUID")].get("name")
    assert coded == {PUSH: "push", TRIGGER: "trigger", HABIT: "habit", ANXIETY: "anxiety", PULL: "pull",
                     JOB: "functional"}  # each selection is exactly its quote, coded with its code

    users = {u.get("name"): u.get("guid") for u in root.iter(f"{Q}User")}
    by_quote = {text[int(s.get("startPosition")):int(s.get("endPosition"))]: s
                for s in source.findall(f"{Q}PlainTextSelection")}
    assert by_quote[ANXIETY].get("creatingUser") == users["maya"]
    assert by_quote[PULL].get("creatingUser") == users["jtbd-coder (model suggestions)"]
    assert "model suggestion" in by_quote[PULL].find(f"{Q}Description").text
    assert "Job story (model-written): When the accountant" in by_quote[JOB].find(f"{Q}Description").text
    notes = {n.get("guid"): n.find(f"{Q}PlainTextContent").text for n in root.iter(f"{Q}Note")}
    [note_ref] = by_quote[ANXIETY].findall(f"{Q}NoteRef")
    assert notes[note_ref.get("targetGUID")] == "The model missed this one."


def test_exporting_twice_gives_the_same_guids(reviewed_study):
    store, _, _ = reviewed_study
    guids = [sorted(e.get("guid") for e in _qdpx(_export(store, "qdpx"))[1].iter() if e.get("guid"))
             for _ in range(2)]
    assert guids[0] == guids[1] and len(set(guids[0])) == len(guids[0])


def test_transcript_text_that_is_not_xml_safe_or_markup_stays_text(reviewed_study):
    import xmlschema

    _, transcript, suggestions = reviewed_study
    from jtbd.coding.reviews import ReviewedCode

    note = "<script>alert(1)</script> & {{ x }} \x0b"
    export = build_export("qdpx", [ReviewedCode({**suggestions["push"], "note": note}, "accepted", None)],
                          {transcript.id: transcript}, study=STUDY, reviewer="maya", now=WHEN)
    _, root, qde = _qdpx(export)
    xmlschema.XMLSchema(str(XSD)).validate(qde.decode("utf-8"))
    assert [n.find(f"{Q}PlainTextContent").text for n in root.iter(f"{Q}Note")] == [note.replace("\x0b", "")]


# --- downloads and the command line ----------------------------------------------------------------


def test_a_download_is_one_file_a_gold_folder_a_zip(reviewed_study):
    store, _, _ = reviewed_study
    name, media, data = download(_export(store, "gold"), STUDY, "reviewed")
    assert (name, media) == (f"{STUDY}-reviewed-gold.zip", "application/zip")
    assert sorted(zipfile.ZipFile(io.BytesIO(data)).namelist()) == ["short_interview.gold.json",
                                                                     "short_interview.txt"]
    name, media, data = download(_export(store, "csv"), STUDY, "all")
    assert (name, media) == (f"{STUDY}-all.csv", "text/csv; charset=utf-8") and data.startswith(b"status,id,")
    assert download(_export(store, "qdpx"), STUDY, "reviewed")[0] == f"{STUDY}-reviewed.qdpx"


@pytest.fixture()
def run_jtbd(monkeypatch, capsys, tmp_path):
    """`jtbd ARGV` in process with no JTBD_* variables or config file: (status, stdout, stderr lines)."""
    import os

    from rich.console import Console

    import jtbd.cli

    for var in [v for v in os.environ if v.startswith(("JTBD_", "OPENAI_"))]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(jtbd.cli, "console", Console(stderr=True, width=1000))
    monkeypatch.setattr(jtbd.cli, "out", Console(width=1000))

    def run(*argv: str) -> tuple[int, str, list[str]]:
        status = jtbd.cli.main(list(argv))
        said = capsys.readouterr()
        return status, said.out, said.err.splitlines()

    return run


def test_jtbd_export_writes_each_format_and_says_what_it_wrote(reviewed_study, run_jtbd, tmp_path):
    store, transcript, _ = reviewed_study
    where = ["--data-dir", str(tmp_path), "--study", STUDY, "--reviewer", "maya"]
    status, said, errors = run_jtbd("export", "--format", "gold", "--out", str(tmp_path / "gold"), *where)
    assert status == 0, errors
    assert said.strip() == (f"exported 4 codes (accepted 2, added 1, changed 1) of 1 interview in study {STUDY} "
                            f"to {tmp_path / 'gold'} (2 files)")
    assert errors == [f"note: {transcript.id}: 2 suggestions not reviewed yet: not in the gold, so jtbd eval counts "
                      "the model's matching codes as false alarms"]
    assert run_jtbd("gold", "check", str(tmp_path / "gold"))[0] == 0
    for fmt, name in (("csv", "codes.csv"), ("json", "codes.jsonl"), ("md", "report.md"), ("qdpx", "study.qdpx")):
        status, said, errors = run_jtbd("export", "--format", fmt, "--status", "all", "--out",
                                        str(tmp_path / "out" / name), *where)
        assert (status, errors) == (0, []), (fmt, errors)
        assert said.startswith("exported 6 codes (accepted 2, added 1, changed 1, suggested 2)")
        assert (tmp_path / "out" / name).stat().st_size > 0
    with zipfile.ZipFile(tmp_path / "out" / "study.qdpx") as archive:
        root = ET.fromstring(archive.read("project.qde"))
    assert root.get("origin").startswith("jtbd-coder ") and root.get("name") == f"jtbd-coder study {STUDY}"


@pytest.mark.parametrize(("argv", "said"), [
    (["--study", "nosuch"], "error: --study is 'nosuch': no such study in the review database (studies: onboarding"),
    (["--status", "accepted"], "error: Invalid value for '--status'"),
    (["--format", "xlsx"], "error: Invalid value for '--format'"),
])
def test_jtbd_export_refuses_an_unknown_study_status_or_format_in_one_line(reviewed_study, run_jtbd, tmp_path,
                                                                             argv, said):
    base = {"--format": "csv", "--out": str(tmp_path / "x.csv"), "--data-dir": str(tmp_path)}
    base.update(dict(zip(argv[::2], argv[1::2])))
    status, shown, errors = run_jtbd("export", *[x for pair in base.items() for x in pair])
    assert (status, shown, len(errors)) == (2, "", 1) and errors[0].startswith(said), errors


def test_jtbd_export_without_a_review_database_says_to_code_first(run_jtbd, tmp_path):
    status, _, errors = run_jtbd("export", "--format", "csv", "--out", "x.csv", "--data-dir", str(tmp_path / "none"))
    assert status == 2 and errors == [f"error: no review database yet in {tmp_path / 'none'}; run 'jtbd code' first"]


def test_the_web_pages_export_route_returns_the_file(reviewed_study, tmp_path):
    from starlette.testclient import TestClient

    from jtbd.settings import Settings
    from jtbd.web.app import create_app

    store, _, _ = reviewed_study
    client = TestClient(create_app(Settings(data_dir=str(tmp_path), study=STUDY), reviews=store),
                        base_url="http://127.0.0.1:8765")  # the workbench answers loopback Host names only
    got = client.get("/export", params={"format": "gold", "status": "reviewed"})
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
    assert f"{STUDY}-reviewed-gold.zip" in got.headers["content-disposition"]
    assert "short_interview.gold.json" in zipfile.ZipFile(io.BytesIO(got.content)).namelist()
    got = client.get("/export", params={"format": "qdpx", "status": "all"})
    assert got.status_code == 200 and "project.qde" in zipfile.ZipFile(io.BytesIO(got.content)).namelist()
    got = client.get("/export", params={"format": "csv", "status": "suggestions"})
    assert got.status_code == 200 and got.text.count("\r\n") == 3  # the header and the two open suggestions


def test_every_input_format_round_trips_through_a_gold_export(tmp_path):
    """The bundled gold set (.txt, .md, .vtt, .srt, .json) as reviewed codes, exported as gold and
    loaded again: the same spans, no problem, whatever the original file's format."""
    from jtbd.coding.extract import grounding_for
    from jtbd.coding.ground import Span
    from jtbd.coding.reviews import ReviewedCode
    from jtbd.eval.runner import bundled_gold, load_gold_files
    from jtbd.schemas.codebook import Alignment

    originals, _, _ = load_gold_files(bundled_gold("all"))
    assert {g.transcript.format for g in originals} == {"txt", "md", "vtt", "srt", "json"}
    provenance = {"prompt_version": "gold", "schema_version": "x", "model": "coder"}
    items, transcripts, spans = [], {}, {}
    for g in originals:
        transcripts[g.transcript.id] = g.transcript
        for c in g.codes:
            if c.kind == "job":
                continue  # a gold job has a statement, not the parts a stored job keeps
            position = next(i for i, t in enumerate(g.transcript.turns) if t.index == c.turn_index)
            span = Span(position, c.char_start, c.char_end, Alignment.exact, 100.0)
            code = {"kind": c.kind, "quote": g.transcript.text[c.char_start:c.char_end], "provenance": provenance,
                    "grounding": grounding_for(span, g.transcript).model_dump(mode="json"),
                    **({"force": c.force} if c.force else {})}
            items.append(ReviewedCode(code, "accepted", None))
            spans.setdefault(g.transcript.id, set()).add((c.kind, c.force, c.char_start, c.char_end))
    assert sum(map(len, spans.values())) > 200
    files, problems = gold_files(items, transcripts)
    assert problems == []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    loaded, problems, notes = load_gold_files(tmp_path)
    assert (problems, notes) == ([], [])
    assert len(loaded) == len(originals)
    for g in loaded:
        assert g.transcript.text == transcripts[g.transcript.id].text
        assert {(c.kind, c.force, c.char_start, c.char_end) for c in g.codes} == spans[g.transcript.id]


def test_a_gold_quote_also_said_earlier_is_kept_with_a_note(tmp_path):
    from jtbd.coding.parse import parse_transcript
    from jtbd.coding.reviews import ReviewedCode

    text = ("Interviewer: Why did you switch?\nSam: It kept crashing on me. Every single week.\n"
            "Interviewer: And then?\nSam: Then it was worse. It kept crashing on me.\n")
    transcript = parse_transcript(text, "crash.txt", "txt", interviewers=["Interviewer"])
    later = _code(transcript, "Then it was worse. It kept crashing on me.", "force", force="push")
    start = transcript.text.rindex("It kept crashing on me.")
    later["quote"] = "It kept crashing on me."
    later["grounding"].update(char_start=start, char_end=start + len(later["quote"]))
    files, problems = gold_files([ReviewedCode(later, "accepted", None)], {transcript.id: transcript})
    [note] = problems
    assert "also said earlier in the interview" in note and isinstance(note, Note)  # said, and nothing left out
    assert json.loads(files["crash.gold.json"])["codes"][0]["quote"] == "It kept crashing on me."


# --- end to end: coded by the flow (replayed from its cassette), reviewed, exported --------------------


def test_a_study_coded_by_the_flow_exports_a_gold_folder_eval_loads_and_a_valid_qdpx(
        prefect_harness, my_vcr, data_dir, tmp_path, run_jtbd):
    import xmlschema

    from conftest import ROOT as REPO, run_paths, server_settings
    from jtbd.coding.reviews import ReviewStore
    from jtbd.eval.runner import load_gold_files, score_gold
    from jtbd.schemas.codebook import CodedTranscript
    from jtbd.settings import with_changes

    settings = with_changes(server_settings(data_dir), study=STUDY)
    with my_vcr.use_cassette("flow/espresso_machine.yaml"):
        summary = run_paths([REPO / "examples" / "espresso_machine.txt"], settings, tmp_path / "run")
    assert summary.transcripts_ok and not summary.transcripts_failed, summary.transcripts_failed
    with ReviewStore.open(settings.review_db_url) as store:
        codes = store.reviewed(STUDY)
        forces = [item for item in codes if item.code["kind"] == "force"]
        assert len(forces) >= 3
        tid = forces[0].code["grounding"]["transcript"]
        store.decide(STUDY, tid, forces[0].code["id"], "accept", "maya")
        store.decide(STUDY, tid, forces[1].code["id"], "reject", "maya")
        other = next(f for f in ("push", "pull", "anxiety", "habit") if f != forces[2].code["force"])
        store.decide(STUDY, tid, forces[2].code["id"], "relabel", "maya", code={**forces[2].code, "force": other})
        suggested = [item.code for item in codes]  # the model's codes as it made them

    where = ["--data-dir", str(data_dir), "--study", STUDY]
    assert run_jtbd("export", "--format", "gold", "--out", str(tmp_path / "gold"), *where)[0] == 0
    gold, problems, notes = load_gold_files(tmp_path / "gold")
    assert (problems, notes) == ([], [])
    [g] = gold
    assert {(c.force, c.quote) for c in g.codes} == {(forces[0].code["force"], forces[0].code["quote"]),
                                                      (other, forces[2].code["quote"])}
    predicted = CodedTranscript(transcript=tid, source=g.transcript.source, codes=suggested)
    scores = score_gold(gold, {g.transcript.id: predicted})
    assert sum(p.tp for name, p in scores.strict.items() if name in ("push", "pull", "anxiety", "habit")) == 1
    assert scores.confusion[other][forces[2].code["force"]] == 1  # the relabelled code: what the model said

    assert run_jtbd("export", "--format", "qdpx", "--status", "all", "--out", str(tmp_path / "s.qdpx"), *where)[0] == 0
    with zipfile.ZipFile(tmp_path / "s.qdpx") as archive:
        qde = archive.read("project.qde")
        [source] = [n for n in archive.namelist() if n.startswith("Sources/")]
        text = archive.read(source).decode("utf-8")
    xmlschema.XMLSchema(str(XSD)).validate(qde.decode("utf-8"))
    root = ET.fromstring(qde)
    quotes = {text[int(s.get("startPosition")):int(s.get("endPosition"))] for s in root.iter(f"{Q}PlainTextSelection")}
    assert quotes == {item.code["quote"] for item in codes if item is not forces[1]}
