#!/usr/bin/env python3
"""Benchmarks: how fast search answers and how long coding takes, on this machine.

Speed and memory are measured here, not asserted in timed tests. Both parts use the real
parts (the MiniLM embedder, a persistent Chroma store, the flow with the configured model)
in a temporary data folder, so your own store and cache are never touched:

  search  fills a store with every interviewee sentence of the bundled gold set, each stored
          as a code (about 1,500 codes: a study of ten interviews coded densely), then times
          analysts' queries with no filter, with a code filter and with a transcript filter.
  code    codes the given transcripts with the configured backend (by default the offline
          model in process), then codes them again to time a re-run the cache serves.

    python scripts/benchmark.py                     # both parts, examples/espresso_machine.txt
    python scripts/benchmark.py search              # search only (about 20 seconds)
    python scripts/benchmark.py code --transcripts examples/ --out bench.json

Peak memory is the process's maximum resident set so far: search runs first, so its figure
is the embedder and Chroma's; the code part's includes the model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TRANSCRIPT = ROOT / "examples" / "espresso_machine.txt"
# What an analyst types: solution-free situations and feelings, not a transcript's own words.
QUERIES = (
    "worried about losing my data", "it was too expensive", "we always did it this way",
    "the old one kept breaking", "a friend recommended it", "I was embarrassed in front of my team",
    "the moment I decided to cancel", "setting it up took ages", "I felt guilty wasting money",
    "it saves me time every morning", "afraid it would not work for us", "my partner did not want to change",
)
REPEATS = 5  # each query timed this many times, after one untimed warm-up query per filter


def peak_rss_mb() -> float:
    """The process's peak resident set so far, in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """Median, 95th percentile and maximum of a list of latencies, in milliseconds."""
    if not seconds:
        raise ValueError("latency_summary: no measurements")
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms)) - 1))]
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 1), "p95_ms": round(p95, 1),
            "max_ms": round(ms[-1], 1)}


def sentence_codes(gold_root: Path) -> list[tuple[Any, list[Any], list[tuple[str, str]]]]:
    """(transcript, codes, contexts) with one code per interviewee sentence, labelled in turn
    push, pull, anxiety, habit, trigger: benchmark data of a realistic size, not a coding."""
    from jtbd.coding.decide import CODES, Decision, RatedSentence
    from jtbd.coding.extract import context_of, decided_codes
    from jtbd.coding.sentences import split_sentences
    from jtbd.eval.runner import load_gold_folder
    from jtbd.schemas.codebook import Provenance

    provenance = Provenance(prompt_version="benchmark", schema_version="benchmark", model="none")
    out = []
    for gold in load_gold_folder(gold_root):
        transcript = gold.transcript
        decisions = []
        for i, s in enumerate(split_sentences(transcript)):  # interviewee sentences only
            rated = RatedSentence(s.turn_index, s.char_start, s.char_end, {})
            decisions.append(Decision(rated, CODES[i % len(CODES)], 0.0, s.char_start, s.char_end))
        codes = decided_codes(decisions, transcript, provenance)
        out.append((transcript, codes, [context_of(c, transcript) for c in codes]))
    return out


def bench_search(data_dir: Path) -> dict[str, Any]:
    from jtbd.coding.embed import MiniLMEmbedder
    from jtbd.coding.store import CodeStore, open_collection
    from jtbd.eval.runner import bundled_gold

    prepared = sentence_codes(bundled_gold("all"))
    t0 = time.perf_counter()
    embedder = MiniLMEmbedder()
    load_seconds = time.perf_counter() - t0
    store = CodeStore(open_collection(str(data_dir / "chroma")), embedder)
    t0 = time.perf_counter()
    for transcript, codes, contexts in prepared:
        store.replace_transcript(transcript.id, codes, contexts)
    index_seconds = time.perf_counter() - t0
    stored = store.count()
    some_transcript = prepared[0][0].id
    filters = {"no filter": {}, "kind=force, force=push": {"kind": "force", "force": "push"},
               f"transcript={some_transcript}": {"transcript": some_transcript}}
    queries: dict[str, Any] = {}
    for name, where in filters.items():
        store.search(QUERIES[0], k=10, **where)  # warm-up, not timed
        times, returned, outside = [], 0, 0
        for _ in range(REPEATS):
            for query in QUERIES:
                t0 = time.perf_counter()
                hits = store.search(query, k=10, **where)
                times.append(time.perf_counter() - t0)
                returned += len(hits)
                outside += sum(any(hit.meta[key] != value for key, value in where.items()) for hit in hits)
        queries[name] = {**latency_summary(times), "hits_per_query": round(returned / len(times), 1),
                         "hits_outside_filter": outside}
    return {"codes_stored": stored, "transcripts": len(prepared),
            "embedder_load_seconds": round(load_seconds, 2), "index_seconds": round(index_seconds, 2),
            "codes_per_second": round(stored / index_seconds, 1), "queries_top10": queries,
            "peak_rss_mb": peak_rss_mb()}


def interviewee_words(paths: list[str]) -> int:
    from jtbd.coding.inputs import discover
    from jtbd.coding.parse import load_transcript

    words = 0
    for path in discover(paths)[0]:
        transcript = load_transcript(path)
        words += sum(len(t.text.split()) for t in transcript.interviewee_turns())
    return words


def bench_code(paths: list[str], data_dir: Path) -> dict[str, Any]:
    from jtbd.coding import progress
    from jtbd.flows.code_batch import run_batch
    from jtbd.settings import load_settings

    settings = load_settings({"data_dir": str(data_dir)})
    words = interviewee_words(paths)
    rated: list[int] = []
    stop = progress.listen(lambda event, *a, **k: rated.append(1) if event == "sentence_rated" else None)
    try:
        t0 = time.perf_counter()
        first = run_batch(paths, settings, str(data_dir / "run1")).as_dict()
        first_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = run_batch(paths, settings, str(data_dir / "run2")).as_dict()
        again_seconds = time.perf_counter() - t0
    finally:
        stop()
    if first["transcripts_failed"]:
        raise RuntimeError(f"coding failed: {first['transcripts_failed']}")
    return {"transcripts": len(first["transcripts_ok"]), "interviewee_words": words,
            "model": first["model"], "llm_calls": first["llm_calls"], "sentences_rated": len(rated),
            "prompt_tokens": first["prompt_tokens"], "completion_tokens": first["completion_tokens"],
            "llm_seconds": first["llm_seconds"], "wall_seconds": round(first_seconds, 1),
            "interviewee_words_per_minute": round(words / first_seconds * 60, 1),
            "seconds_per_sentence": round(first_seconds / max(1, len(rated)), 2),
            "codes": first["codes"], "rerun_wall_seconds": round(again_seconds, 1),
            "rerun_llm_calls": again["llm_calls"], "rerun_cache_hits": again["cache_hits"],
            "peak_rss_mb": peak_rss_mb()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", choices=("all", "search", "code"), default="all")
    parser.add_argument("--transcripts", nargs="+", default=[str(DEFAULT_TRANSCRIPT)],
                        help="files or folders to code (default: examples/espresso_machine.txt)")
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "platform": platform.platform()}}
    with tempfile.TemporaryDirectory(prefix="jtbd-bench-") as tmp:
        if args.part in ("all", "search"):
            results["search"] = bench_search(Path(tmp) / "search")
            print(json.dumps({"search": results["search"]}, indent=2), flush=True)
        if args.part in ("all", "code"):
            results["code"] = bench_code(args.transcripts, Path(tmp) / "code")
            print(json.dumps({"code": results["code"]}, indent=2), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
