"""scripts/benchmark.py: its arithmetic, its data and its search part on the real embedder and
Chroma. Times are measured by the script, never asserted here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from jtbd.coding.sentences import split_sentences
from jtbd.eval.runner import bundled_gold, load_gold_folder

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


def test_latency_summary_by_hand():
    # 1 ms .. 20 ms: median between 10 and 11; the 95th percentile is the 19th of 20 (nearest rank).
    summary = benchmark.latency_summary([n / 1000 for n in range(20, 0, -1)])
    assert summary == {"n": 20, "median_ms": 10.5, "p95_ms": 19.0, "max_ms": 20.0}
    assert benchmark.latency_summary([0.004]) == {"n": 1, "median_ms": 4.0, "p95_ms": 4.0, "max_ms": 4.0}
    with pytest.raises(ValueError, match="no measurements"):
        benchmark.latency_summary([])


def test_sentence_codes_are_every_interviewee_sentence_grounded():
    folder = bundled_gold("dev")
    prepared = benchmark.sentence_codes(folder)
    assert len(prepared) == len(load_gold_folder(folder))
    for transcript, codes, contexts in prepared:
        sentences = split_sentences(transcript)
        assert len(codes) == len(sentences) == len(contexts) > 50
        assert len({c.id for c in codes}) == len(codes)  # one stored code each, none overwritten
        assert {c.label for c in codes} == {"force.push", "force.pull", "force.anxiety", "force.habit", "trigger"}
        for code, sentence in zip(codes, sentences):
            g = code.grounding
            assert transcript.text[g.char_start:g.char_end] == code.quote == sentence.text
            assert transcript.turns[g.turn_index].is_coded


def test_search_part_fills_a_store_and_answers_every_query(tmp_path):
    result = benchmark.bench_search(tmp_path)
    expected = sum(len(codes) for _, codes, _ in benchmark.sentence_codes(bundled_gold("all")))
    assert result["codes_stored"] == expected and result["transcripts"] == 10
    first = load_gold_folder(bundled_gold("all"))[0].transcript.id
    assert set(result["queries_top10"]) == {"no filter", "kind=force, force=push", f"transcript={first}"}
    for row in result["queries_top10"].values():
        assert row["n"] == len(benchmark.QUERIES) * benchmark.REPEATS
        assert row["hits_per_query"] == 10.0 and row["hits_outside_filter"] == 0
        assert 0 < row["median_ms"] <= row["p95_ms"] <= row["max_ms"]
    assert (tmp_path / "chroma").is_dir()


def test_generated_sentences_are_distinct_and_their_ids_say_their_facets():
    from jtbd.coding.store import id_facets

    assert len({benchmark.generated_sentence(i) for i in range(20_000)}) == 20_000
    for i in (0, 7, 8, 9, 299, 300, 99_999):
        code_id, quote, meta = benchmark.generated_record(i)
        assert quote == benchmark.generated_sentence(i) and meta["char_end"] - meta["char_start"] == len(quote)
        assert id_facets(code_id) == {key: meta[key] for key in ("kind", "force", "transcript")}
    assert benchmark.generated_meta(299)["transcript"] != benchmark.generated_meta(300)["transcript"]


def test_workbench_part_on_a_tiny_store(tmp_path):
    # The real parts at toy sizes: a 600-word interview with 15 codes, 120 stored codes.
    result = benchmark.bench_workbench(n_codes=120, cache=tmp_path / "cache", words=600, codes=15, repeats=2,
                                       search_repeats=1, said=lambda line: None, queries=benchmark.QUERIES[:3])
    assert result["codes"] == 15 and result["interview_words"] >= 600 and result["interview_page"]["n"] == 2
    assert set(result["review_round_trip"]) == {"json", "htmx", "form"}
    search = result["search"]
    assert search["codes_stored"] == 120 and set(search["filters"]) == set(benchmark.SEARCH_FILTERS)
    for row in search["filters"].values():
        assert row["queries"] == 3 and row["same_results"] == row["queries"]
        assert all(0 < row[way]["median_ms"] <= row[way]["p95_ms"] for way in ("where", "ids", "now", "cold"))
    assert search["filters"]["no filter"]["hits_per_query"] == 10.0
    assert (tmp_path / "cache" / "chroma-120").is_dir()
    page = result["search_page"]  # the page over a review store of the same 120 codes
    assert page["codes"] == 120 and set(page["filters"]) == set(benchmark.PAGE_FILTERS)
    for row in page["filters"].values():
        assert all(0 < row[way]["median_ms"] <= row[way]["p95_ms"] for way in row if way != "results_per_query")
    assert page["filters"]["no filter"]["results_per_query"] == 20.0  # the page's k
    assert page["filters"]["status=accepted (0.3%)"]["results_per_query"] == 1.0  # the one code accepted there
    assert (tmp_path / "cache" / "reviews-120" / "complete").exists()
    never = lambda line: pytest.fail(f"rebuilt: {line}")  # noqa: E731
    vectors = benchmark.bench_vectors(120, tmp_path / "cache", said=never)  # kept, not embedded again
    assert benchmark.bench_store(vectors, tmp_path / "cache" / "chroma-120", said=never).count() == 120
    table = benchmark.workbench_table(result)
    assert "interview page" in table and "transcript (0.3%)" in table and "review round trip, htmx" in table
    assert "search page through the app" in table and "status=accepted (0.3%)" in table
