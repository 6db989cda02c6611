"""The code_batch flow end to end, replaying recorded llama.cpp server responses.

Real Prefect (one temporary server per session), real Chroma in a temporary
folder, real MiniLM embeddings; only the model's HTTP answers come from the
cassette. Faults a real server will not produce on demand (429s, timeouts,
broken JSON) are injected around the recorded answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import RERECORD, ROOT, run_paths as _run, server_settings

EXAMPLE = ROOT / "examples" / "espresso_machine.txt"
CASSETTE = "flow/espresso_machine.yaml"
SHORT = ROOT / "tests" / "data" / "short_interview.txt"


def _fail_on_cassette_miss(summary) -> None:
    for path, problem in summary.transcripts_failed:
        if "overwrite existing cassette" in problem or "CannotOverwrite" in problem:
            pytest.fail(f"{path}: the LLM requests changed (prompts, schemas or chunking?) and are not in "
                        f"the cassette; re-record with: {RERECORD}")


@pytest.fixture()
def coded(prefect_harness, my_vcr, data_dir, tmp_path):
    """The example transcript coded once from the cassette, plus its settings and run folder."""
    settings = server_settings(data_dir)
    with my_vcr.use_cassette(CASSETTE):
        summary = _run([EXAMPLE], settings, tmp_path / "run1")
    _fail_on_cassette_miss(summary)
    return settings, summary, tmp_path / "run1"


def _stored(settings):
    from jtbd.coding.store import open_collection

    col = open_collection(str(settings.chroma_path), "", settings.collection)
    return col.get(include=["documents", "metadatas"])


def test_codes_are_grounded_in_interviewee_turns(coded):
    from jtbd.coding.parse import load_transcript

    settings, summary, run = coded
    assert summary.transcripts_ok == [str(EXAMPLE)] and not summary.transcripts_failed
    assert summary.llm_calls >= summary.chunks >= 1
    assert summary.prompt_tokens > 0 and summary.completion_tokens > 0
    transcript = load_transcript(EXAMPLE)
    # the run folder holds the text the offsets index, so anyone can check them without the tool
    with open(run / "espresso_machine.normalised.txt", encoding="utf-8", newline="") as f:
        normalised = f.read()
    assert normalised == transcript.text
    source_lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    lines = (run / "codes.jsonl").read_text().splitlines()
    assert len(lines) == sum(summary.codes.values()) > 0
    for line in lines:
        code = json.loads(line)
        g = code["grounding"]
        assert normalised[g["char_start"]:g["char_end"]] == code["quote"]
        # and the source file's line it names holds the quote's first words, for Ctrl-F in the original
        assert " ".join(code["quote"].split()[:3]) in source_lines[g["source_line"] - 1]
        turn = transcript.turns[g["turn_index"]]
        assert turn.is_coded and turn.char_start <= g["char_start"] < g["char_end"] <= turn.char_end
        assert code["provenance"]["prompt_version"] == summary.prompt_version
        assert code["provenance"]["model"] == settings.model


def test_rated_codes_are_sentences_or_their_tail_clauses(coded):
    """[decide] tail_share: each force or trigger ends where its interviewee sentence ends and starts at the
    sentence's start or at a clause boundary inside it, keeping at least tail_share of the sentence."""
    from jtbd.coding.decide import tail_clause
    from jtbd.coding.parse import load_transcript
    from jtbd.coding.sentences import split_sentences
    from jtbd.prompts import load_strategy

    _, _, run = coded
    share = load_strategy().decide["tail_share"]
    transcript = load_transcript(EXAMPLE)
    by_end = {s.char_end: s for s in split_sentences(transcript)}
    cut = 0
    for line in (run / "codes.jsonl").read_text().splitlines():
        code = json.loads(line)
        if code["kind"] not in ("force", "trigger"):
            continue
        g = code["grounding"]
        sentence = by_end[g["char_end"]]
        assert g["char_start"] == sentence.char_start + tail_clause(sentence.text, share)
        cut += g["char_start"] > sentence.char_start
    assert share < 1 and cut > 0  # the example's long sentences are coded by their last clauses


def test_quotable_lines_are_whole_interviewee_sentences(coded):
    """The model copies its quotable lines; each is stored as the whole sentences the copy covers."""
    from jtbd.coding.parse import load_transcript
    from jtbd.coding.sentences import split_sentences

    _, _, run = coded
    transcript = load_transcript(EXAMPLE)
    starts = {s.char_start for s in split_sentences(transcript)}
    ends = {s.char_end for s in split_sentences(transcript)}
    quotes = [json.loads(line) for line in (run / "codes.jsonl").read_text().splitlines()]
    quotes = [c for c in quotes if c["kind"] == "quote"]
    assert quotes, "the recorded run stored no quotable line"
    for code in quotes:
        g = code["grounding"]
        assert g["char_start"] in starts and g["char_end"] in ends, code["quote"]
    spans = [(c["grounding"]["char_start"], c["grounding"]["char_end"]) for c in quotes]
    assert len(set(spans)) == len(spans)


def test_the_markdown_report_marks_quotes_that_start_mid_sentence(coded):
    _, _, run = coded
    report = (run / "espresso_machine.md").read_text()
    codes = [json.loads(line) for line in (run / "codes.jsonl").read_text().splitlines()]
    mid = [c["quote"] for c in codes if c["quote"][:1].islower()]
    assert mid  # tail clauses such as "and one of us would ..."
    for quote in mid:
        assert f'> "\u2026{quote}"' in report
    for quote in (c["quote"] for c in codes if not c["quote"][:1].islower()):
        assert f'> "{quote}"' in report


def test_store_holds_exactly_the_run(coded):
    settings, summary, run = coded
    stored = _stored(settings)
    ids_in_run = {json.loads(line)["id"] for line in (run / "codes.jsonl").read_text().splitlines()}
    assert set(stored["ids"]) == ids_in_run
    for meta in stored["metadatas"]:
        assert meta["transcript"] == "espresso_machine" and meta["speaker"] != "Interviewer"
        assert meta["prompt_version"] == summary.prompt_version


def test_run_folder_has_every_output(coded):
    _, summary, run = coded
    for name in ("codes.jsonl", "codes.csv", "summary.json", "espresso_machine.json", "espresso_machine.md",
                 "espresso_machine.normalised.txt", "study.md"):
        assert (run / name).is_file(), name
    # the study report counts this run's codes per interview, as codes.jsonl holds them
    kinds = [c.get("force") or c["kind"] for c in map(json.loads, (run / "codes.jsonl").read_text().splitlines())]
    counts = " | ".join(str(kinds.count(k)) for k in ("push", "pull", "anxiety", "habit", "trigger", "job", "quote"))
    assert f"| espresso_machine.txt | {counts} |" in (run / "study.md").read_text()
    report = (run / "espresso_machine.md").read_text()
    assert "##" in report
    import csv

    with (run / "codes.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    rated = [r for r in rows if r["kind"] in ("force", "trigger")]
    records = {c["id"]: c for c in map(json.loads, (run / "codes.jsonl").read_text().splitlines())}
    assert rated and all(0.0 < float(r["score"]) <= 1.0 for r in rated)  # sortable: the chance it is coded
    assert [float(r["score"]) for r in rated] == [records[r["id"]]["score"] for r in rated]
    quotes = [r for r in rows if r["kind"] == "quote"]  # chosen from the ratings: the chance a coder marks it
    assert quotes and all(0.0 < float(r["score"]) <= 1.0 for r in quotes)
    assert all(r["score"] == "" for r in rows if r["kind"] == "job")
    assert json.loads((run / "summary.json").read_text())["chunks"] == summary.chunks
    # every code says where it is in the source file: its line, in the CSV and in the report
    assert all(r["line"] == str(records[r["id"]]["grounding"]["source_line"]) for r in rows)
    assert all(f"line {r['line']}]" in report for r in rows)


def test_rerun_makes_no_llm_calls_and_does_not_duplicate(coded, my_vcr, tmp_path):
    settings, first, _ = coded
    before = _stored(settings)["ids"]
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True) as cassette:
        second = _run([EXAMPLE], settings, tmp_path / "run2")
        assert cassette.play_count == 0  # every chunk came from the persisted cache
    assert second.llm_calls == 0 and second.cache_hits == second.chunks == first.chunks
    assert second.codes == first.codes
    assert sorted(_stored(settings)["ids"]) == sorted(before)


def test_a_new_decision_threshold_re_decides_from_cached_ratings(coded, my_vcr, tmp_path, monkeypatch):
    """The decision is not part of the chunk cache key: a stricter one makes no LLM call and keeps fewer codes."""
    from conftest import stricter

    from jtbd.flows import code_batch
    from jtbd.prompts import load_strategy

    settings, first, _ = coded
    strict = stricter(load_strategy(settings.strategy))
    monkeypatch.setattr(code_batch, "load_strategy", lambda name, folder="": strict)
    with my_vcr.use_cassette(CASSETTE, allow_playback_repeats=True) as cassette:
        second = _run([EXAMPLE], settings, tmp_path / "run2")
        assert cassette.play_count == 0
    assert second.llm_calls == 0 and second.cache_hits == second.chunks
    rated = ("force", "trigger")
    assert 0 < sum(second.codes[k] for k in rated) < sum(first.codes[k] for k in rated)
    assert second.codes["job"] == first.codes["job"] and second.codes["quote"] == first.codes["quote"]
    stored = _stored(settings)["metadatas"]
    assert stored and all(m["prompt_version"] == "stricter" for m in stored)  # the store holds this run only


def test_search_finds_a_quote_by_meaning(coded):
    from jtbd.coding.embed import make_embedder
    from jtbd.coding.store import CodeStore, open_collection

    settings, _, run = coded
    codes = [json.loads(line) for line in (run / "codes.jsonl").read_text().splitlines()]
    target = max(codes, key=lambda c: len(c["quote"]))
    store = CodeStore(open_collection(str(settings.chroma_path), "", settings.collection),
                      make_embedder("local", "", "", "", 10))
    # Ask in other words: the target's quote with its first words dropped and lower-cased.
    words = target["quote"].split()
    query = " ".join(words[len(words) // 3:]).lower()
    hits = store.search(query, k=3)
    assert target["id"] in [h.id for h in hits]
    [hit] = [h for h in hits if h.id == target["id"]]
    assert hit.meta["source_line"] == target["grounding"]["source_line"] > 0
    from jtbd.cli import quote_card

    assert f"espresso_machine.txt line {hit.meta['source_line']}  |" in quote_card(hit)
    only = store.search(query, k=5, kind=target["kind"])
    assert only and all(h.meta["kind"] == target["kind"] for h in only)


def test_bad_file_fails_alone_and_leaves_nothing_in_the_store(prefect_harness, my_vcr, data_dir, tmp_path):
    bad = tmp_path / "broken.vtt"
    bad.write_text("this is not WEBVTT\n\n00:01 --> nonsense\n")
    settings = server_settings(data_dir)
    with my_vcr.use_cassette(CASSETTE):
        summary = _run([bad, EXAMPLE], settings, tmp_path / "run")
    _fail_on_cassette_miss(summary)
    assert summary.transcripts_ok == [str(EXAMPLE)]
    [(path, problem)] = summary.transcripts_failed
    assert path == str(bad) and problem
    assert {m["transcript"] for m in _stored(settings)["metadatas"]} == {"espresso_machine"}


def _faulty(monkeypatch, fault, times):
    """Wrap the real OpenAI create so its first `times` calls fail with `fault()` before reaching the cassette."""
    from jtbd.coding import backends

    real = backends._openai_create
    calls = {"n": 0}

    def patched(settings):
        create = real(settings)

        def maybe_fail(**kwargs):
            calls["n"] += 1
            if calls["n"] <= times:
                raise fault()
            return create(**kwargs)

        return maybe_fail

    monkeypatch.setattr(backends, "_openai_create", patched)
    backends._LLMS.clear()
    return calls


def _status_error(code):
    import httpx2
    from openai import APIStatusError, RateLimitError, InternalServerError

    request = httpx2.Request("POST", "http://127.0.0.1:8765/v1/chat/completions")
    response = httpx2.Response(code, request=request, json={"error": {"message": "injected"}})
    cls = {429: RateLimitError, 500: InternalServerError}.get(code, APIStatusError)
    return lambda: cls("injected", response=response, body=None)


@pytest.mark.parametrize("code", [429, 500])
def test_transient_errors_are_retried(prefect_harness, my_vcr, data_dir, tmp_path, monkeypatch, code):
    calls = _faulty(monkeypatch, _status_error(code), times=1)
    settings = server_settings(data_dir, task_retries=2)
    monkeypatch.setattr("jtbd.flows.code_batch.RETRY_DELAYS", [0.1, 0.1])
    with my_vcr.use_cassette(CASSETTE):
        summary = _run([EXAMPLE], settings, tmp_path / "run")
    _fail_on_cassette_miss(summary)
    assert summary.transcripts_ok == [str(EXAMPLE)], summary.transcripts_failed
    assert calls["n"] > summary.llm_calls  # the injected failure never reached the meter


def test_a_permanent_error_fails_the_transcript_and_stores_nothing(prefect_harness, my_vcr, data_dir,
                                                                   tmp_path, monkeypatch):
    _faulty(monkeypatch, _status_error(401), times=10_000)
    settings = server_settings(data_dir, task_retries=2)
    with my_vcr.use_cassette(CASSETTE):
        summary = _run([EXAMPLE], settings, tmp_path / "run")
    [(path, problem)] = summary.transcripts_failed
    assert "injected" in problem
    assert not summary.transcripts_ok and summary.llm_calls == 0
    assert not settings.chroma_path.exists() or not _stored(settings)["ids"]


def test_the_quotes_strategy_stores_only_quotes_found_in_interviewee_turns(prefect_harness, my_vcr, data_dir,
                                                                          tmp_path):
    """`--strategy quotes`, the path for larger models: the model copies each quote; every stored code is
    aligned back to an interviewee turn (exact, normalised or fuzzy), and a copy found nowhere is rejected."""
    from jtbd.coding.parse import load_transcript

    settings = server_settings(data_dir, strategy="quotes")
    with my_vcr.use_cassette("flow/quotes_short.yaml"):
        summary = _run([SHORT], settings, tmp_path / "run")
    _fail_on_cassette_miss(summary)
    assert summary.transcripts_ok == [str(SHORT)], summary.transcripts_failed
    transcript = load_transcript(SHORT)
    codes = [json.loads(line) for line in (tmp_path / "run" / "codes.jsonl").read_text().splitlines()]
    assert {c["kind"] for c in codes} & {"force", "trigger"}  # the model coded forces by copying quotes
    for code in codes:
        g = code["grounding"]
        assert transcript.text[g["char_start"]:g["char_end"]] == code["quote"]
        assert transcript.turns[g["turn_index"]].is_coded
    rejected = json.loads((tmp_path / "run" / "short_interview.json").read_text())["rejected"]
    assert summary.rejected_quotes == len(rejected)


def test_broken_json_is_reasked(prefect_harness, my_vcr, data_dir, tmp_path, monkeypatch):
    """The first answer is cut off mid-JSON (as a looping model hitting max_tokens would be); instructor re-asks."""
    from jtbd.coding import backends

    real = backends._openai_create
    state = {"broken": 0, "structured": 0}

    def patched(settings):
        create = real(settings)

        def breaks_first(**kwargs):
            response = create(**kwargs)
            if "response_format" in kwargs:  # a JSON answer (rating calls answer with one token)
                state["structured"] += 1
                if state["broken"] == 0:
                    state["broken"] += 1
                    response.choices[0].message.content = response.choices[0].message.content[:25]
            return response

        return breaks_first

    monkeypatch.setattr(backends, "_openai_create", patched)
    backends._LLMS.clear()
    settings = server_settings(data_dir)
    with my_vcr.use_cassette("flow/broken_json.yaml"):  # holds the re-ask too: it was recorded with this fault
        summary = _run([SHORT], settings, tmp_path / "run")
    _fail_on_cassette_miss(summary)
    assert state["broken"] == 1
    assert summary.transcripts_ok == [str(SHORT)], summary.transcripts_failed
    assert state["structured"] >= 2  # the jobs-and-quotes pass, then at least one re-ask


def test_a_server_without_logprobs_fails_the_transcript_with_a_clear_reason(prefect_harness, my_vcr, data_dir,
                                                                            tmp_path, monkeypatch):
    """Rating needs top_logprobs; a server that drops them is named, not silently coded as nothing."""
    from jtbd.coding import backends

    real = backends._openai_create

    def patched(settings):
        create = real(settings)

        def no_logprobs(**kwargs):
            response = create(**kwargs)
            if kwargs.get("logprobs"):
                response.choices[0].logprobs = None
            return response

        return no_logprobs

    monkeypatch.setattr(backends, "_openai_create", patched)
    backends._LLMS.clear()
    settings = server_settings(data_dir)
    with my_vcr.use_cassette("flow/broken_json.yaml", allow_playback_repeats=True):
        summary = _run([SHORT], settings, tmp_path / "run")
    [(path, problem)] = summary.transcripts_failed
    assert path == str(SHORT) and "top_logprobs" in problem
    assert not settings.chroma_path.exists() or not _stored(settings)["ids"]


def test_list_and_forget_a_transcript(coded, capsys, monkeypatch):
    """A participant withdraws: `jtbd forget` removes their codes from the store and the cached model
    results that hold their words; `jtbd list` shows what is stored before and after."""
    import sys

    from rich.console import Console

    import jtbd.cli
    from jtbd.cli import main

    monkeypatch.setattr(jtbd.cli, "out", Console(file=sys.stdout, width=300))  # a wide terminal: no wrapping
    monkeypatch.setattr(jtbd.cli, "console", Console(file=sys.stderr, width=300))

    settings, summary, _ = coded
    flags = ["--data-dir", settings.data_dir]
    results = Path(settings.results_path)
    assert len(list(results.glob("jtbd-chunk-*"))) == summary.chunks > 0
    assert main(["list", "--study", "default", *flags]) == 0  # without --study: the studies
    listed = capsys.readouterr().out
    assert "espresso_machine" in listed and "espresso_machine.txt" in listed and f"force {summary.codes['force']}" in listed
    assert main(["forget", "espresso_machine", "no_such_call", *flags]) == 1  # one id unknown: said, the rest done
    said = capsys.readouterr()
    stored = sum(summary.codes.values())
    assert f"espresso_machine: {stored} codes removed from the store" in said.out
    assert f"{summary.chunks} cached chunk result{'' if summary.chunks == 1 else 's'} removed" in said.out
    assert "nothing stored or cached for: no_such_call" in said.err
    assert _stored(settings)["ids"] == [] and list(results.glob("jtbd-chunk-*")) == []
    assert main(["list", "--study", "default", *flags]) == 0
    assert "coded transcripts in study default: 0" in capsys.readouterr().out
