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
  limit   the raw limit (offline model only): llama.cpp's prompt-evaluation speed at the sizes
          the product uses (an 800-token prefix; a 44-token question after a cached prefix) and
          its generation speed, measured before and after coding the transcripts through the
          product in the same run, with the product's time taken apart by perf_counter
          instrumentation (model evaluation, prefix re-evaluation on KV-cache misses, sampling,
          template rendering, tokenisation, instructor/pydantic, Prefect and persistence); the
          ratio is the product's model time over (tokens evaluated / prompt speed + tokens
          generated / generation speed).

  pool    the same batch in process and on a Prefect work pool of two process workers, against the
          same llama.cpp, Chroma and PostgreSQL servers (all started here, on loopback): wall time,
          the model server's busy time, run pick-up latency, and the orchestration overhead as a share
          of model time (needs llama-cpp-python[server] and Debian's postgresql).

  workbench  the three targets of `jtbd serve` (issue 28): the interview page of a 10,000-word
          interview with 300 codes (median of 20 renders through the ASGI app, SQLite review store);
          facet search with 100,000 codes in the store, each filter timed as CodeStore.search answered
          first (one Chroma query with a metadata `where`), with the code ids' facets, and with a
          FacetIndex (warm and cold), p50 and p95; the search page itself (HTML and .json) through the
          ASGI app over a review store of the same 100,000 codes; and a review decision's round trip
          (POST /review: JSON, htmx and form answers). The store holds real MiniLM vectors of
          generated interview-like sentences, embedded once (about 15 to 25 minutes on two cores; a
          re-run resumes) and kept with the store and the review store (built once, about 20 s) in
          ~/.cache/jtbd-coder/bench-store (--cache), outside git; later runs take a few minutes.

    python scripts/benchmark.py                     # both parts, examples/espresso_machine.txt
    python scripts/benchmark.py search              # search only (about 20 seconds)
    python scripts/benchmark.py code --transcripts examples/ --out bench.json
    python scripts/benchmark.py limit --out limit.json    # raw limit vs product (a few minutes)
    python scripts/benchmark.py workbench --out workbench.json   # page, facet search, review
    python scripts/benchmark.py pool --transcripts examples/ --out pool.json   # in process vs a work pool

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


def bench_code(paths: list[str], data_dir: Path, after_first: Any = None, strategy: str | None = None) -> dict[str, Any]:
    from jtbd.coding import progress
    from jtbd.flows.code_batch import run_batch
    from jtbd.settings import load_settings

    settings = load_settings({"data_dir": str(data_dir), **({"strategy": strategy} if strategy else {})})
    words = interviewee_words(paths)
    rated: list[int] = []
    stop = progress.listen(lambda event, *a, **k: rated.append(1) if event == "sentence_rated" else None)
    try:
        t0 = time.perf_counter()
        first = run_batch(paths, settings, str(data_dir / "run1")).as_dict()
        first_seconds = time.perf_counter() - t0
        if after_first is not None:
            after_first()
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


PREFIX_TOKENS, QUESTION_TOKENS, GENERATED_TOKENS = 800, 44, 32  # the sizes the product evaluates
BATCH_AS_PREFIX = 100  # an evaluation of this many tokens or more is timed against the prefix speed


RAW_DEPTHS = (0, 700, 1400)  # tokens already in the KV cache when the timed 800 are read (see raw_speeds)
RAW_REPEATS = {"prefix": 2, "question": 10, "generated": 2}


def raw_speeds(llama: Any, text: str) -> dict[str, Any]:
    """llama.cpp's own speed on this machine, without the product: an 800-token prefix, a 44-token
    question after it (10 times, the prefix kept) and 32 tokens generated one at a time (greedy,
    twice), each at three depths: after 0, 700 and 1,400 tokens already in the KV cache. A token costs
    more the more tokens it attends to, and the product reads its windows after about 1,200 tokens of
    system prompt and answered examples and asks its questions after about 2,000, so the limit is
    taken at the positions the product evaluates (`by_depth`); the flat numbers are depth 0."""
    import numpy as np

    tokens = llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    need = RAW_DEPTHS[-1] + PREFIX_TOKENS + QUESTION_TOKENS
    tokens = (tokens * (need // max(1, len(tokens)) + 1))[:need]
    llama.reset()
    by_depth = []
    for depth in RAW_DEPTHS:  # the tokens before `depth` are in the cache from the depth before
        end, asked_end = depth + PREFIX_TOKENS, depth + PREFIX_TOKENS + QUESTION_TOKENS
        prefill, asked, generated = [], [], []
        for _ in range(RAW_REPEATS["prefix"]):
            llama.n_tokens = depth  # what follows `depth` is dropped from the KV cache and read again
            t0 = time.perf_counter()
            llama.eval(tokens[depth:end])
            prefill.append(time.perf_counter() - t0)
        for _ in range(RAW_REPEATS["question"]):
            llama.n_tokens = end  # the prefix stays in the KV cache; only the question is read
            t0 = time.perf_counter()
            llama.eval(tokens[end:asked_end])
            asked.append(time.perf_counter() - t0)
        for _ in range(RAW_REPEATS["generated"]):
            llama.n_tokens = asked_end - 1
            llama.eval(tokens[asked_end - 1:asked_end])
            t0 = time.perf_counter()
            for _ in range(GENERATED_TOKENS):
                logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),))
                llama.eval([int(np.argmax(logits))])
            generated.append(time.perf_counter() - t0)
        by_depth.append({
            "depth": depth,
            "prefix_position": depth + PREFIX_TOKENS / 2,
            "prefix_tokens_per_second": round(PREFIX_TOKENS / statistics.median(prefill), 1),
            "question_position": end + QUESTION_TOKENS / 2,
            "question_tokens_per_second": round(QUESTION_TOKENS / statistics.median(asked), 1),
            "question_seconds": round(statistics.median(asked), 3),
            "generated_position": asked_end + GENERATED_TOKENS / 2,
            "generated_tokens_per_second": round(GENERATED_TOKENS / statistics.median(generated), 2)})
    llama.reset()
    flat = {k: v for k, v in by_depth[0].items() if k.endswith(("_per_second", "_seconds"))}
    return {**flat, "by_depth": by_depth}


def speed_at(points: list[tuple[float, float]], position: float) -> float:
    """Tokens a second at a position, linear between the measured (position, speed) points, the
    nearest measured speed beyond them."""
    points = sorted(points)
    if position <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if position <= x1:
            return y0 + (y1 - y0) * (position - x0) / (x1 - x0)
    return points[-1][1]


def limit_at_positions(evals: list[tuple[str, int, int]], by_depth: list[dict[str, Any]]) -> float:
    """Seconds llama.cpp alone needs for the product's evaluations, each (part, tokens already in
    the cache, tokens read) at the raw speed measured nearest its position: a prompt evaluation of
    100 tokens or more at the prefix speed, a shorter one at the question speed, a generated token
    at the generation speed."""
    curves = {part: [(d[f"{kind}_position"], d[f"{kind}_tokens_per_second"]) for d in by_depth]
              for part, kind in (("eval_prefix", "prefix"), ("eval_question", "question"),
                                 ("eval_generated", "generated"))}
    return sum(n / speed_at(curves[part], past + n / 2) for part, past, n in evals)


class Clock:
    """Seconds and counts per named part, from wrapped functions (perf_counter; thread-safe)."""

    def __init__(self) -> None:
        import threading

        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.local = threading.local()
        self.evals: list[tuple[str, int, int]] = []  # (part, tokens already in the cache, tokens read)

    def add(self, name: str, seconds: float, count: int = 1) -> None:
        with self.lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.counts[name] = self.counts.get(name, 0) + count

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        inner = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - t0)

        setattr(owner, attr, timed)


def wrap_eval(clock: Clock, llama: Any) -> None:
    """Time every llama.cpp evaluation of `llama`: a prompt evaluation (the first of a call, or any
    outside a structured call), counted as "eval_prefix" (100 tokens or more) or "eval_question", or
    a generated token (a 1-token evaluation after the first inside a structured call,
    "eval_generated"); and count as "reevaluated_tokens" the tokens of a prompt evaluation that an
    earlier call had already evaluated as the same prefix (what a KV cache that kept every earlier
    prefix would have saved)."""
    import numpy as np

    seen: list[np.ndarray] = []  # every prompt evaluated so far, for the re-evaluation count
    eval_inner = llama.eval

    def eval_timed(tokens: Any) -> Any:
        tokens = list(tokens)
        first = not getattr(clock.local, "evaluated", False)
        clock.local.evaluated = True
        in_create = getattr(clock.local, "in_create", False)
        past = llama.n_tokens
        t0 = time.perf_counter()
        try:
            return eval_inner(tokens)
        finally:
            dt = time.perf_counter() - t0
            if in_create and not first and len(tokens) == 1:
                clock.add("eval_generated", dt, 1)
                clock.evals.append(("eval_generated", past, 1))
            else:
                part = "eval_prefix" if len(tokens) >= BATCH_AS_PREFIX else "eval_question"
                clock.add(part, dt, len(tokens))
                clock.evals.append((part, past, len(tokens)))
                full = np.asarray(list(llama.input_ids[:past]) + tokens)
                best = 0
                for old in seen:
                    n = min(len(old), len(full))
                    differ = np.flatnonzero(old[:n] != full[:n])
                    best = max(best, int(differ[0]) if len(differ) else n)
                clock.add("reevaluated_tokens", 0.0, max(0, min(best, len(full) - 1) - past))
                seen.append(full)

    llama.eval = eval_timed


def instrument(clock: Clock, llama: Any, llm: Any) -> None:
    """Wrap the parts of the product's model path, the pipeline and Prefect's persistence with timers.

    Every llama.cpp evaluation is classed as a prompt evaluation (the first of a call) or a generated
    token (the 1-token evaluations after it, inside a structured call), and each prompt evaluation's
    tokens that some earlier call had already evaluated as a prefix are counted as re-evaluated: what
    a KV cache holding every earlier prefix would have saved."""
    import prefect.results

    from jtbd.coding import backends, pipeline
    from jtbd.coding.store import CodeStore
    from jtbd.flows import code_batch

    wrap_eval(clock, llama)
    clock.wrap(llama, "sample", "sample")
    clock.wrap(llama, "tokenize", "tokenize")

    def call_scope(owner: Any, attr: str, name: str, creating: bool) -> None:
        inner = getattr(owner, attr)

        def scoped(*args: Any, **kwargs: Any) -> Any:
            clock.local.evaluated, clock.local.in_create = False, creating
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                clock.add(name, time.perf_counter() - t0)
                clock.local.in_create = False

        setattr(owner, attr, scoped)

    call_scope(llama, "create_chat_completion_openai_v1", "raw_create", True)
    call_scope(llm, "rate_top", "raw_rate", False)
    clock.wrap(llm, "create", "instructor_create")
    clock.wrap(llm, "rate", "rate")
    clock.wrap(backends, "prompt_tokens", "rate_prompt_tokens")  # template rendering + tokenisation
    clock.wrap(backends, "_next_token_logits", "rate_logits")
    clock.wrap(pipeline, "run_job", "run_job")
    clock.wrap(pipeline, "finish_transcript", "finish_transcript")
    clock.wrap(CodeStore, "replace_transcript", "store")
    clock.wrap(code_batch, "write_run", "write_run")
    clock.wrap(prefect.results.ResultStore, "_persist_result_record", "prefect_persist")


def bench_limit(paths: list[str], data_dir: Path) -> dict[str, Any]:
    from jtbd.coding import backends
    from jtbd.settings import load_settings

    settings = load_settings({"data_dir": str(data_dir)})
    if settings.backend != "local":
        raise SystemExit("the limit part measures the in-process model: run it with the local backend")
    llm = backends.get_llm(settings)
    llama = backends.load_llama(settings)
    text = DEFAULT_TRANSCRIPT.read_text(encoding="utf-8")
    before = raw_speeds(llama, text)
    clock = Clock()
    instrument(clock, llama, llm)
    taken: dict[str, Any] = {}
    code = bench_code(paths, data_dir, lambda: taken.update(s=dict(clock.seconds), n=dict(clock.counts),
                                                            evals=list(clock.evals)))
    s, n = taken["s"], taken["n"]  # the first run's: the second is served by the cache
    del llama.eval, llama.sample, llama.tokenize, llama.create_chat_completion_openai_v1  # the class's own again
    after = raw_speeds(llama, text)
    speed = {key: round((before[key] + after[key]) / 2, 2) for key in before if key != "by_depth"}
    by_depth = [{key: (round((b[key] + a[key]) / 2, 2) if key.endswith(("_per_second", "_seconds")) else b[key])
                 for key in b} for b, a in zip(before["by_depth"], after["by_depth"])]
    positioned = limit_at_positions(taken["evals"], by_depth)

    def secs(name: str) -> float:
        return s.get(name, 0.0)

    prefix_tokens, question_tokens = n.get("eval_prefix", 0), n.get("eval_question", 0)
    generated = n.get("eval_generated", 0)
    limit = (prefix_tokens / speed["prefix_tokens_per_second"] + question_tokens / speed["question_tokens_per_second"]
             + generated / speed["generated_tokens_per_second"])
    model = code["llm_seconds"]
    evaluating = secs("eval_prefix") + secs("eval_question") + secs("eval_generated")
    # Inside the model calls: what is not llama.cpp evaluating tokens.
    rate_other = secs("raw_rate") - secs("rate_logits") - secs("rate_prompt_tokens")
    in_rate_eval = secs("rate_logits")
    create_eval = evaluating - in_rate_eval  # rate_logits holds the rating evaluations (and a tiny slice)
    create_other = secs("raw_create") - create_eval - secs("sample")
    chunk_coding = secs("run_job")
    parts = {
        "llama.cpp prompt evaluation (tokens evaluated)": (secs("eval_prefix") + secs("eval_question"),
                                                           prefix_tokens + question_tokens),
        "  of which prefix re-evaluated after a KV-cache miss (tokens, at the prefix speed)":
            (n.get("reevaluated_tokens", 0) / speed["prefix_tokens_per_second"], n.get("reevaluated_tokens", 0)),
        "llama.cpp generation (tokens generated)": (secs("eval_generated"), generated),
        "sampling with the JSON grammar": (secs("sample"), n.get("sample", 0)),
        "rating: chat-template rendering + tokenisation": (secs("rate_prompt_tokens"), n.get("rate_prompt_tokens", 0)),
        "  of which tokenisation (all calls)": (secs("tokenize"), n.get("tokenize", 0)),
        "rating: top-20 log-probabilities, detokenising": (rate_other, n.get("raw_rate", 0)),
        "structured calls: chat handler, template, grammar set-up": (create_other, n.get("raw_create", 0)),
        "instructor + pydantic (validation, re-asks' own cost)": (secs("instructor_create") - secs("raw_create"),
                                                                  n.get("instructor_create", 0)),
        "pipeline in a chunk outside model calls (excerpts, windows)":
            (chunk_coding - secs("instructor_create") - secs("rate"), n.get("run_job", 0)),
        "decide + merge (finish_transcript)": (secs("finish_transcript"), n.get("finish_transcript", 0)),
        "store: embeddings + Chroma": (secs("store"), n.get("store", 0)),
        "run folder (write_run)": (secs("write_run"), n.get("write_run", 0)),
        "Prefect result persistence": (secs("prefect_persist"), n.get("prefect_persist", 0)),
        "Prefect flow/task overhead, parsing, the rest": (code["wall_seconds"] - chunk_coding - secs("finish_transcript")
                                                          - secs("store") - secs("write_run") - secs("prefect_persist"), 0),
    }
    inside = {"prefix_tokens_per_second": round(prefix_tokens / secs("eval_prefix"), 1) if secs("eval_prefix") else None,
              "question_tokens_per_second": round(question_tokens / secs("eval_question"), 1) if secs("eval_question") else None,
              "generated_tokens_per_second": round(generated / secs("eval_generated"), 2) if secs("eval_generated") else None,
              "llama_cpp_seconds": round(evaluating, 1),
              "model_seconds_over_llama_cpp_seconds": round(model / evaluating, 3) if evaluating else None}
    return {"raw_speed_before": before, "raw_speed_after": after, "raw_speed": speed, "code": code,
            "speed_inside_product": inside, "clock": {"seconds": {k: round(v, 3) for k, v in s.items()}, "counts": n},
            "tokens_evaluated": prefix_tokens + question_tokens, "tokens_generated": generated,
            "limit_seconds": round(limit, 1), "model_seconds": model,
            "ratio_model_to_limit": round(model / limit, 2) if limit else None,
            "raw_speed_by_depth": by_depth, "limit_at_positions_seconds": round(positioned, 1),
            "ratio_model_to_limit_at_positions": round(model / positioned, 2) if positioned else None,
            "tokens_by_position": _tokens_by_position(taken["evals"]),
            "breakdown": {name: {"seconds": round(sec, 2), "count": cnt} for name, (sec, cnt) in parts.items()}}


VERSIONS = ("rate-v25", "rate")  # the default before issue 27's jobs pass and quotable lines, and now


def joined_interview(paths: list[str], out: Path) -> Path:
    """One long interview from several (an hour is 7,000 to 10,000 words; the gold interviews are
    1,500 to 5,000): their turns in order, relabelled Interviewer: / Customer:, as one .txt file."""
    from jtbd.coding.parse import load_transcript

    label = {"interviewer": "Interviewer", "interviewee": "Customer"}
    lines = [f"{label.get(turn.role.value, 'Other')}: {' '.join(turn.text.split())}"
             for path in paths for turn in load_transcript(Path(path)).turns]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    return out


def bench_versions(paths: list[str], root: Path, order: tuple[str, ...] = (*VERSIONS, *reversed(VERSIONS))) -> dict[str, Any]:
    """Code the same transcripts with each strategy in VERSIONS, in one process and one run, each from an
    empty data folder, in the order A B B A (a machine whose speed drifts during the run weighs on both
    alike), counting the tokens llama.cpp evaluates and generates in each run."""
    from jtbd.coding import backends
    from jtbd.settings import load_settings

    settings = load_settings({"data_dir": str(root / "warm")})
    if settings.backend != "local":
        raise SystemExit("the versions part measures the in-process model: run it with the local backend")
    llama = backends.load_llama(settings)
    clock = Clock()
    instrument(clock, llama, backends.get_llm(settings))  # tells a generated token from a prompt's
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
    try:
        for i, name in enumerate(order):
            before = dict(clock.counts)
            code = bench_code(paths, root / f"{i}-{name}", strategy=name)
            counts = {k: clock.counts.get(k, 0) - before.get(k, 0) for k in clock.counts}
            code["tokens_evaluated"] = counts.get("eval_prefix", 0) + counts.get("eval_question", 0)
            code["tokens_generated"] = counts.get("eval_generated", 0)
            runs[name].append(code)
            print(f"{name}: {code['wall_seconds']} s wall, {code['llm_seconds']} s in the model, "
                  f"{code['tokens_evaluated']} tokens evaluated, {code['tokens_generated']} generated, "
                  f"codes {code['codes']}", file=sys.stderr, flush=True)
    finally:
        del llama.eval, llama.sample, llama.tokenize, llama.create_chat_completion_openai_v1  # the class's own again
    mean = {name: {key: round(sum(r[key] for r in rs) / len(rs), 1)
                   for key in ("wall_seconds", "llm_seconds", "tokens_evaluated", "tokens_generated", "llm_calls")}
            for name, rs in runs.items()}
    old, new = mean[VERSIONS[0]], mean[VERSIONS[1]]
    return {"runs": runs, "mean": mean,
            "speed_up_wall": round(old["wall_seconds"] / new["wall_seconds"], 2),
            "speed_up_model": round(old["llm_seconds"] / new["llm_seconds"], 2),
            "tokens_evaluated_ratio": round(new["tokens_evaluated"] / old["tokens_evaluated"], 3)}


def versions_table(result: dict[str, Any]) -> str:
    rows = ["| | " + " | ".join(VERSIONS) + " |", "|---|" + "---|" * len(VERSIONS)]
    n = min(len(result["runs"][v]) for v in VERSIONS)
    for key, label in (("wall_seconds", f"wall (s, mean of {n})" if n > 1 else "wall (s)"), ("llm_seconds", "in the model (s)"),
                       ("tokens_evaluated", "tokens evaluated"), ("tokens_generated", "tokens generated"),
                       ("llm_calls", "model calls")):
        rows.append(f"| {label} | " + " | ".join(str(result["mean"][v][key]) for v in VERSIONS) + " |")
    rows.append(f"speed-up: wall {result['speed_up_wall']}x, model {result['speed_up_model']}x; "
                f"tokens evaluated {result['tokens_evaluated_ratio']:.0%} of before")
    return "\n".join(rows)


def _tokens_by_position(evals: list[tuple[str, int, int]]) -> dict[str, dict[str, float]]:
    """Per part: tokens read and their mean position (tokens already in the cache before each)."""
    out = {}
    for part in ("eval_prefix", "eval_question", "eval_generated"):
        mine = [(past, n) for p, past, n in evals if p == part]
        tokens = sum(n for _, n in mine)
        out[part] = {"tokens": tokens,
                     "mean_position": round(sum((past + n / 2) * n for past, n in mine) / tokens) if tokens else 0}
    return out


def limit_table(result: dict[str, Any]) -> str:
    speed, code = result["raw_speed"], result["code"]
    lines = [
        "raw limit (llama.cpp alone, mean of before and after coding; same run)",
        f"  prompt evaluation, {PREFIX_TOKENS}-token prefix   {speed['prefix_tokens_per_second']:8.1f} tokens/s"
        f"   (before {result['raw_speed_before']['prefix_tokens_per_second']}, after {result['raw_speed_after']['prefix_tokens_per_second']})",
        f"  prompt evaluation, {QUESTION_TOKENS}-token question {speed['question_tokens_per_second']:8.1f} tokens/s"
        f"   ({speed['question_seconds']} s a question)",
        f"  generation                        {speed['generated_tokens_per_second']:8.2f} tokens/s",
        "product (coding " + ", ".join(Path(p).name for p in code.get("paths", [])) + ")",
        f"  wall {code['wall_seconds']} s, model {code['llm_seconds']} s, {code['llm_calls']} calls, "
        f"{code['sentences_rated']} sentences rated, {result['tokens_evaluated']} tokens evaluated "
        f"(of {code['prompt_tokens']} prompt tokens sent), {result['tokens_generated']} generated",
        f"  raw limit for those tokens at the sizes above {result['limit_seconds']} s; "
        f"model time / limit = {result['ratio_model_to_limit']}",
        "  llama.cpp's own evaluation inside the product (the same moments as the product, so the machine's load "
        "cancels): prefix {prefix_tokens_per_second} tokens/s, questions {question_tokens_per_second} tokens/s, "
        "generation {generated_tokens_per_second} tokens/s; {llama_cpp_seconds} s, model time / that = "
        "{model_seconds_over_llama_cpp_seconds}".format(**result["speed_inside_product"]),
        "where the wall time goes                                                      seconds   count",
    ]
    if result.get("raw_speed_by_depth"):  # a result of a version before the depths has none
        at = result["tokens_by_position"]
        depth_lines = ["raw speed by position (tokens already in the KV cache; same run, mean of before and after)",
                       "  position of the prefix / question / generated tokens   prefix   question   generation (tokens/s)"]
        depth_lines += [f"  {d['prefix_position']:>6.0f} / {d['question_position']:>6.0f} / {d['generated_position']:>6.0f}"
                        f"                         {d['prefix_tokens_per_second']:8.1f} {d['question_tokens_per_second']:10.1f}"
                        f" {d['generated_tokens_per_second']:12.2f}" for d in result["raw_speed_by_depth"]]
        depth_lines.append(
            f"  the product's tokens, mean position: prefix {at['eval_prefix']['mean_position']} "
            f"({at['eval_prefix']['tokens']}), questions {at['eval_question']['mean_position']} "
            f"({at['eval_question']['tokens']}), generated {at['eval_generated']['mean_position']} "
            f"({at['eval_generated']['tokens']})")
        depth_lines.append(f"  raw limit for those tokens at their positions {result['limit_at_positions_seconds']} s; "
                           f"model time / limit = {result['ratio_model_to_limit_at_positions']}")
        lines[-1:-1] = depth_lines

    for name, row in result["breakdown"].items():
        lines.append(f"  {name:<76}{row['seconds']:8.1f}{row['count']:8d}")
    return "\n".join(lines)

# --- the workbench part: a 100,000-code store of real MiniLM embeddings, built once -----------------

BENCH_CACHE = Path(os.environ.get("JTBD_BENCH_CACHE", Path.home() / ".cache" / "jtbd-coder" / "bench-store"))
STORE_CODES = 100_000
CODES_PER_INTERVIEW = 300  # so 100,000 codes are about 333 interviews
_OPENERS = ("I think", "Honestly,", "To be fair,", "I remember that", "At the time", "Looking back,", "Well,",
            "The thing is,", "My feeling was that", "I guess", "You know,", "What happened was", "So basically",
            "In the end", "For a while", "Every single time", "Back then", "I'd say", "The truth is,", "Frankly,")
_WHO = ("I", "we", "my wife", "my husband", "my manager", "the team", "our finance person", "my kids",
        "a colleague", "my boss", "the IT guy", "my co-founder", "our accountant", "my neighbour", "the whole office")
_FEEL = ("was really frustrated", "felt stuck", "got worried", "was embarrassed", "was excited", "felt guilty",
         "was nervous", "got fed up", "was relieved", "felt overwhelmed", "was sceptical", "got annoyed",
         "was curious", "felt stupid", "was anxious", "felt confident", "was tired of it", "was not convinced")
_ABOUT = ("the old spreadsheet", "the monthly invoice", "the setup process", "losing all our data", "the price",
          "the coffee machine", "our CRM", "the gym membership", "the meal kit", "the accounting software",
          "the project tool", "the bank app", "the subscription", "the printer", "our old laptop",
          "the migration", "the training sessions", "the customer support", "the mobile app", "the backup drive",
          "the time tracking", "the new hire onboarding", "the weekly report", "the delivery times",
          "the contract renewal", "the free trial", "the integrations", "the learning curve", "our old vendor")
_WHEN = ("last spring", "after the holidays", "when the baby arrived", "when we moved offices", "every Monday",
         "right before the audit", "during the busy season", "after my friend showed me", "when it broke again",
         "the week the bill came", "when we hired two people", "on a Sunday night", "after the demo",
         "when the contract was up", "the first time I tried it", "halfway through the year", "when prices went up")
_BECAUSE = ("because it kept crashing", "because it took ages to set up", "because nobody knew how to use it",
            "because it cost too much", "because a friend recommended it", "because we had always done it that way",
            "because I was afraid of losing everything", "because it saved me an hour a day",
            "because my team would not change", "because the reviews were great", "because it looked simple",
            "because switching felt risky", "because the old one was good enough", "because I was wasting money",
            "because it just worked", "because our clients asked for it", "because of the hidden fees",
            "because I could not find anything", "because it felt like a toy", "because support never answered")
_THEN = ("so we started looking around", "and I just gave up", "so I cancelled it", "and we stuck with it anyway",
         "so I asked around", "and that was the last straw", "so I signed up that night", "and nothing changed",
         "so we tried the free version", "and I put it off for months", "so I made a list", "and it was a relief",
         "so we went back to paper", "and honestly it was fine", "so I called them", "and we never looked back")


def generated_sentence(i: int) -> str:
    """The i-th of about 60 million distinct interview-like sentences (deterministic, no randomness)."""
    parts = []
    n = i * 2654435761 % 4294967296  # a multiplicative hash, so neighbours differ everywhere
    for pool in (_OPENERS, _WHO, _FEEL, _ABOUT, _WHEN, _BECAUSE, _THEN):
        parts.append(pool[n % len(pool)])
        n //= len(pool)
    opener, who, feel, about, when, because, then = parts
    shape = i % 4
    if shape == 0:
        text = f"{opener} {who} {feel} about {about} {when}, {because}, {then}."
    elif shape == 1:
        text = f"{when.capitalize()}, {who} {feel} about {about} {because}."
    elif shape == 2:
        text = f"{opener} {who} {feel} {because}, {then}."
    else:
        text = f"{about.capitalize()} was the problem {when}: {who} {feel}, {then}."
    return text[0].upper() + text[1:]


def generated_meta(i: int) -> dict[str, Any]:
    """Facet values of the i-th generated code: 70% forces (push, pull, anxiety, habit in turn), 10% each
    triggers, jobs and quotes; 300 codes an interview; two interviewee names an interview in turn."""
    interview = i // CODES_PER_INTERVIEW
    r = i % 10
    kind = "force" if r < 7 else ("trigger", "job", "quote")[r - 7]
    return {"transcript": f"interview-{interview:04d}", "kind": kind,
            "force": ("push", "pull", "anxiety", "habit")[i % 4] if kind == "force" else "",
            "speaker": f"Customer {interview % 50:02d}"}


def bench_vectors(n: int = STORE_CODES, cache: Path = BENCH_CACHE, chunk: int = 5000,
                  said: Any = print) -> Any:
    """MiniLM vectors of generated_sentence(0..n-1), embedded once in chunks kept in `cache` (a re-run
    resumes where the last stopped), as one float32 array."""
    import numpy as np

    from jtbd.coding.embed import make_embedder

    cache.mkdir(parents=True, exist_ok=True)
    embedder, parts = None, []
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        path = cache / f"vectors-{start:06d}-{end:06d}.npy"
        if not path.exists():
            embedder = embedder or make_embedder("local")
            t0 = time.perf_counter()
            vectors = np.asarray(embedder.embed([generated_sentence(i) for i in range(start, end)]), dtype=np.float32)
            np.save(str(path) + ".tmp.npy", vectors)
            os.replace(str(path) + ".tmp.npy", path)
            said(f"embedded sentences {start}-{end} ({(end - start) / (time.perf_counter() - t0):.0f}/s)")
        parts.append(np.load(path))
    return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)


def generated_record(i: int) -> tuple[str, str, dict[str, Any]]:
    """The i-th generated code as the store keeps it: its id (as Code.id words one), quote and metadata
    (every field coding/store.py's code_metadata writes, with contexts of a realistic length)."""
    facets = generated_meta(i)
    quote = generated_sentence(i)
    start = (i % CODES_PER_INTERVIEW) * 200
    label = f"force.{facets['force']}" if facets["kind"] == "force" else (
        "job.functional" if facets["kind"] == "job" else facets["kind"])
    meta = {**facets, "source": facets["transcript"] + ".txt", "label": label,
            "dimension": "functional" if facets["kind"] == "job" else "", "statement": "", "note": "",
            "statement_source": "", "turn_index": i % CODES_PER_INTERVIEW, "char_start": start,
            "char_end": start + len(quote), "start_seconds": float(i % CODES_PER_INTERVIEW * 12), "source_line": 1 + i % CODES_PER_INTERVIEW,
            "alignment": "exact", "prompt_version": "benchmark", "schema_version": "benchmark", "model": "none",
            "context_before": generated_sentence(i + 1_000_003)[:160], "context_after": generated_sentence(i + 2_000_003)[:160]}
    return f"{facets['transcript']}:{label}:{start}-{start + len(quote)}", quote, meta


def bench_store(vectors: Any, path: Path, said: Any = print) -> Any:
    """A Chroma collection at `path` holding generated_record(i) with vectors[i] for every i, built once
    (kept when it already holds that many codes)."""
    from jtbd.coding.store import open_collection

    collection = open_collection(str(path), name="jtbd_codes")
    n = len(vectors)
    if collection.count() == n:
        return collection
    t0 = time.perf_counter()
    for start in range(collection.count() // 5000 * 5000, n, 5000):
        records = [generated_record(i) for i in range(start, min(n, start + 5000))]
        collection.upsert(ids=[r[0] for r in records], documents=[r[1] for r in records],
                          metadatas=[r[2] for r in records], embeddings=vectors[start:start + len(records)])
        said(f"stored {start + len(records)} codes ({time.perf_counter() - t0:.0f} s)")
    return collection


def generated_interview(interview: int) -> tuple[Any, list[dict[str, Any]]]:
    """The interview of generated codes interview*300 .. interview*300+299 as the review store keeps it:
    one customer turn a code, each code's quote at offset 200 * its number in the interview (so its id
    is generated_record's, the id Chroma holds it under), and the codes as `jtbd code` suggests them."""
    from jtbd.schemas.transcript import Role, Transcript, Turn

    first = interview * CODES_PER_INTERVIEW
    name, speaker = generated_meta(first)["transcript"], generated_meta(first)["speaker"]
    quotes = [generated_sentence(i) for i in range(first, first + CODES_PER_INTERVIEW)]
    text = "".join(q.ljust(199) + "\n" for q in quotes)
    turns = [Turn(index=j, speaker=speaker, role=Role.interviewee, text=q, start=float(j * 12),
                  char_start=j * 200, char_end=j * 200 + len(q)) for j, q in enumerate(quotes)]
    transcript = Transcript(id=name, source=name + ".txt", format="txt", text=text, turns=turns, interviewers=[])
    codes = []
    for j, quote in enumerate(quotes):
        meta = generated_record(first + j)[2]
        grounding = {"transcript": name, "source": name + ".txt", "speaker": speaker, "turn_index": j,
                     "char_start": j * 200, "char_end": j * 200 + len(quote), "start_seconds": float(j * 12),
                     "alignment": "exact", "alignment_score": 100.0}
        code = {"kind": meta["kind"], "quote": quote, "grounding": grounding, "score": round(1 + j % 7 / 3, 2),
                "provenance": {"prompt_version": "benchmark", "schema_version": "benchmark", "model": "none"}}
        if meta["kind"] == "force":
            code["force"] = meta["force"]
        elif meta["kind"] == "job":
            code.update(situation="the weekly report breaks", motivation="keep one list that works",
                        outcome="stop fixing it on Mondays", dimension="functional")
        codes.append(code)
    return transcript, codes


def bench_reviews(n_codes: int, cache: Path, said: Any = print) -> Path:
    """A review store in `cache` holding the interviews of the first `n_codes` generated codes (the same
    ids as bench_store's Chroma store), with three decisions an interview (accept, reject, relabel), built
    once: the data folder `jtbd serve` reads for the search page at that size."""
    from jtbd.coding.reviews import ReviewStore
    from jtbd.settings import Settings

    folder = cache / ("reviews" if n_codes == STORE_CODES else f"reviews-{n_codes}")
    done = folder / "complete"
    if done.exists():
        return folder
    settings = Settings(data_dir=str(folder), study="default")
    t0 = time.perf_counter()
    with ReviewStore.open(settings.review_db_url) as reviews:
        have = set(reviews.transcript_ids("default"))
        for interview in range(-(-n_codes // CODES_PER_INTERVIEW)):
            transcript, codes = generated_interview(interview)
            if transcript.id in have:
                continue
            codes = codes[:n_codes - interview * CODES_PER_INTERVIEW]  # as many as the Chroma store holds
            reviews.save_coded("default", transcript, transcript.source, codes)
            ids = [generated_record(interview * CODES_PER_INTERVIEW + j)[0] for j in range(3)]
            reviews.decide("default", transcript.id, ids[0], "accept", "bench")
            reviews.decide("default", transcript.id, ids[1], "reject", "bench")
            relabelled = {**codes[2], "kind": "force", "force": "habit" if codes[2].get("force") != "habit" else "pull"}
            for key in ("situation", "motivation", "outcome", "dimension"):
                relabelled.pop(key, None)
            reviews.decide("default", transcript.id, ids[2], "relabel", "bench", code=relabelled)
            if interview % 20 == 19:
                said(f"review store: {interview + 1} interviews ({time.perf_counter() - t0:.0f} s)")
    (folder / "chroma").unlink(missing_ok=True)
    (folder / "chroma").symlink_to(cache / ("chroma" if n_codes == STORE_CODES else f"chroma-{n_codes}"))
    done.write_text("built\n")
    return folder


def long_interview(folder: Path, words: int = 10_000, codes: int = 300) -> tuple[Any, list[dict[str, Any]]]:
    """A timestamped interview of about `words` words (an interviewer's question, then three to five
    generated sentences from the customer, in turn) and `codes` codes on the customer's sentences
    (forces in turn, with a trigger, a job story and a quote every tenth), as the review store keeps them."""
    from jtbd.coding.extract import grounding_for
    from jtbd.coding.ground import Span
    from jtbd.coding.parse import load_transcript
    from jtbd.schemas.codebook import Alignment, Force, JobStory, Provenance, Quote, Trigger

    lines, count, i, seconds = [], 0, 0, 2
    while count < words:
        question = "So what happened next, and how did that feel at the time?"
        answer = " ".join(generated_sentence(i + j) for j in range(3 + i % 3))
        i += 3 + i % 3
        for speaker, text in (("Interviewer", question), ("Customer", answer)):
            lines.append(f"[{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}] {speaker}: {text}\n")
            seconds += 4 + len(text.split()) // 3
            count += len(text.split())
    path = folder / "long_interview.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    transcript = load_transcript(path)
    provenance = Provenance(prompt_version="benchmark", schema_version="benchmark", model="none")
    sentences = [(turn, start, start + len(s)) for turn in transcript.interviewee_turns()
                 for s, start in _sentences_of(turn)]
    step = max(1, len(sentences) // codes)
    out = []
    for n, (turn, start, end) in enumerate(sentences[::step][:codes]):
        grounding = grounding_for(Span(turn.index, start, end, Alignment.exact, 100.0), transcript)
        common = {"quote": transcript.text[start:end], "grounding": grounding, "provenance": provenance,
                  "score": round(1 + n % 7 / 3, 2)}
        if n % 10 == 7:
            code: Any = Trigger(**common)
        elif n % 10 == 8:
            code = JobStory(**common, situation="the weekly report breaks", motivation="keep one list that works",
                            outcome="stop fixing it on Mondays", dimension="functional")
        elif n % 10 == 9:
            code = Quote(**common)
        else:
            code = Force(**common, force=("push", "pull", "anxiety", "habit")[n % 4])
        out.append(code.model_dump(mode="json"))
    return transcript, out


def _sentences_of(turn: Any) -> list[tuple[str, int]]:
    """A generated turn's sentences with their offsets in the transcript (each ends with '.')."""
    out, at = [], 0
    for piece in turn.text.split(". "):
        sentence = piece if piece.endswith(".") else piece + "."
        out.append((sentence, turn.char_start + at))
        at += len(piece) + 2
    return out


async def _timed_requests(app: Any, requests: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[float, Any]]:
    """Each (method, url, httpx keyword arguments) through the ASGI app in turn: (seconds, response)."""
    import httpx

    transport = httpx.ASGITransport(app=app)
    out = []
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as client:
        for method, url, kwargs in requests:
            t0 = time.perf_counter()
            response = await client.request(method, url, **kwargs)
            out.append((time.perf_counter() - t0, response))
            if response.status_code >= 400:
                raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:300]}")
    return out


def bench_pages(data_dir: Path, words: int = 10_000, codes: int = 300, repeats: int = 20) -> dict[str, Any]:
    """The interview page of a long interview (median of `repeats` renders through the ASGI app) and a
    review decision's round trip (POST /review: JSON, htmx and form answers) on a real SQLite store."""
    import asyncio
    import re

    from jtbd.coding.reviews import ReviewStore
    from jtbd.settings import Settings
    from jtbd.web.app import create_app

    data_dir.mkdir(parents=True, exist_ok=True)
    transcript, coded = long_interview(data_dir, words, codes)
    settings = Settings(data_dir=str(data_dir / "data"), reviewer="bench", study="default")
    reviews = ReviewStore.open(settings.review_db_url, timeout=10.0)
    try:
        reviews.save_coded("default", transcript, str(data_dir / "long_interview.txt"), coded)
        app = create_app(settings, reviews=reviews)
        page = f"/interview/{transcript.id}"
        timed = asyncio.run(_timed_requests(app, [("GET", page, {})] * (repeats + 1)))
        html = timed[-1][1].text
        csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', html).group(1)
        ids = [c["id"] for c in asyncio.run(_timed_requests(app, [("GET", page + ".json", {})]))[0][1].json()["codes"]]
        answers = {"json": {"accept": "application/json"}, "htmx": {"hx-request": "true"}, "form": {}}
        review: dict[str, Any] = {}
        for n, (name, headers) in enumerate(answers.items()):
            asks = [("POST", "/review", {"headers": {**headers, "x-csrf-token": csrf},
                                         "data": {"interview": transcript.id, "code_id": ids[(n * repeats + r) % len(ids)],
                                                  "action": ("accept", "reject")[r % 2]}})
                    for r in range(repeats + 1)]
            review[name] = latency_summary([s for s, _ in asyncio.run(_timed_requests(app, asks))[1:]])
    finally:
        reviews.close()
    return {"interview_words": len(transcript.text.split()), "turns": len(transcript.turns), "codes": len(coded),
            "page_bytes": len(html.encode("utf-8")), "interview_page": latency_summary([s for s, _ in timed[1:]]),
            "review_round_trip": review}


SEARCH_FILTERS = {  # facet filters over generated_meta's values, from common to rare
    "no filter": {}, "kind=force (70%)": {"kind": "force"}, "force=push (17.5%)": {"force": "push"},
    "kind=force, force=anxiety (17.5%)": {"kind": "force", "force": "anxiety"}, "kind=trigger (10%)": {"kind": "trigger"},
    "speaker (2%)": {"speaker": "Customer 07"}, "transcript (0.3%)": {"transcript": "interview-0123"},
    "transcript, kind=force (0.2%)": {"transcript": "interview-0042", "kind": "force"},
}


def generated_index(n_codes: int) -> Any:
    """The FacetIndex of the first `n_codes` generated codes: each one's transcript, kind, force and
    speaker, as the workbench keeps them (read from the review store; here from generated_meta, the
    same values the Chroma store's metadata holds)."""
    from jtbd.coding.store import FacetIndex

    index = FacetIndex()
    for start in range(0, n_codes, CODES_PER_INTERVIEW):
        records = [generated_record(i) for i in range(start, min(n_codes, start + CODES_PER_INTERVIEW))]
        index.replace(records[0][2]["transcript"], {code_id: {key: meta[key] for key in ("transcript", "kind", "force",
                                                                                          "speaker")}
                                                    for code_id, _, meta in records})
    return index


def bench_facet_search(collection: Any, repeats: int = 3, k: int = 10, queries: tuple[str, ...] = QUERIES
                       ) -> dict[str, Any]:
    """Each filter's search, timed four ways in turn for each query, so all see the same load: as
    CodeStore.search answered first (one Chroma query with a metadata `where`), with the code ids'
    facets (the design before the facet index), and with a FacetIndex of every code and their vectors
    read (now: `jtbd serve` reads them when it starts); "cold": the index's vectors dropped before each
    search (no warm-up: a filter compared exactly reads its codes' vectors from Chroma). All include
    embedding the query, timed alone too. `same_results`: queries whose ids agree with the `where`
    query's (the vector index is approximate; comparing is exact)."""
    from jtbd.coding.embed import make_embedder
    from jtbd.coding.store import CodeStore, where_clause

    store = CodeStore(collection, make_embedder("local"))
    t0 = time.perf_counter()
    index = generated_index(collection.count())
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.load_vectors(collection)
    loaded = time.perf_counter() - t0
    unwarmed = generated_index(collection.count())
    store.search(queries[0], k=k)  # warm-up: the model and the index
    embed_times = []
    for _ in range(repeats):
        for query in queries:
            t0 = time.perf_counter()
            store.embedder.embed([query])
            embed_times.append(time.perf_counter() - t0)
    out: dict[str, Any] = {}
    for name, where in SEARCH_FILTERS.items():
        times: dict[str, list[float]] = {"where": [], "ids": [], "now": [], "cold": []}
        same, as_near, hits = 0, 0, 0
        store.search(queries[-1], k=k, **where)
        store.search(queries[-1], k=k, index=index, **where)
        for _ in range(repeats):
            for query in queries:
                t0 = time.perf_counter()
                old = store._query(store.embedder.embed([query]), k, where_clause(**where))
                times["where"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                store.search(query, k=k, **where)
                times["ids"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                new = store.search(query, k=k, index=index, **where)
                times["now"].append(time.perf_counter() - t0)
                unwarmed.drop_vectors()
                t0 = time.perf_counter()
                cold = store.search(query, k=k, index=unwarmed, **where)
                times["cold"].append(time.perf_counter() - t0)
                same += [h.id for h in old] == [h.id for h in new]
                # where they differ, which is nearer: the sum of the k distances, now against before
                as_near += sum(h.distance for h in new) <= sum(h.distance for h in old) + 1e-4  # float32 rounding
                hits += len(new)
                if any(h.meta.get(key) != value for h in new + cold for key, value in where.items()):
                    raise RuntimeError(f"search {name}: a hit outside the filter")
        out[name] = {**{way: latency_summary(seconds) for way, seconds in times.items()},
                     "same_results": same, "as_near_or_nearer": as_near, "queries": len(times["now"]),
                     "hits_per_query": round(hits / len(times["now"]), 1)}
    return {"codes_stored": collection.count(), "k": k, "embed_query": latency_summary(embed_times),
            "index_built_seconds": round(built, 2), "vectors_read_seconds": round(loaded, 2), "filters": out}


PAGE_FILTERS = {**SEARCH_FILTERS, "status=accepted (0.3%)": {"status": "accepted"}}  # status: the review store's


def bench_search_page(data_dir: Path, repeats: int = 3, queries: tuple[str, ...] = QUERIES) -> dict[str, Any]:
    """The search page, HTML and its .json twin, through the ASGI app over the data folder `data_dir`
    (bench_reviews' review store beside bench_store's Chroma store): the server's warm-up (reading the
    study and every code's vector), then each filter's queries in turn, as the page answers them
    ("now"), and as a second app answers them that read the study but no vector, its facet index's
    vectors dropped again before each request ("cold": a filter compared exactly reads its codes'
    vectors from Chroma every time). Every result is checked against its filter."""
    import asyncio
    from urllib.parse import urlencode

    from jtbd.settings import Settings
    from jtbd.web.app import create_app

    settings = Settings(data_dir=str(data_dir), reviewer="bench", study="default")
    app, unwarmed = create_app(settings), create_app(settings)
    t0 = time.perf_counter()
    app.state.bench.warm("default")  # as `jtbd serve` does when it starts
    warm = time.perf_counter() - t0
    asyncio.run(_timed_pages(unwarmed, [("/search.json?q=warm", False)], None))  # reads the study, no vector
    catalogue = app.state.bench.catalogue("default")
    out: dict[str, Any] = {}
    for name, where in PAGE_FILTERS.items():
        params = {("interview" if key == "transcript" else key): value for key, value in where.items()}
        urls = [(path + "?" + urlencode({"q": query, **params}), cold) for _ in range(repeats) for query in queries
                for cold in (False, True) for path in ("/search", "/search.json")]
        timed = asyncio.run(_timed_pages(app, [(urls[0][0], False)] + urls, unwarmed))[1:]
        rows: dict[str, list[float]] = {"html": [], "json": [], "html cold": [], "json cold": []}
        results = []
        for (url, cold), (seconds, response) in zip(urls, timed):
            rows[("json" if ".json" in url else "html") + (" cold" if cold else "")].append(seconds)
            if ".json" in url:
                found = response.json()["results"]
                results.append(len(found))
                if any(r[key] != value for r in found for key, value in where.items()):
                    raise RuntimeError(f"search page {name}: a result outside the filter")
        out[name] = {**{way: latency_summary(seconds) for way, seconds in rows.items()},
                     "results_per_query": round(sum(results) / len(results), 1)}
    return {"warm_up_seconds": round(warm, 2), "codes": len(catalogue.index), "peak_rss_mib": round(peak_rss_mb()),
            "filters": out}


async def _timed_pages(app: Any, urls: list[tuple[str, bool]], unwarmed: Any) -> list[tuple[float, Any]]:
    """GET each url in turn through the ASGI app; a cold one through `unwarmed`, its vectors dropped first."""
    import httpx

    out = []
    base = "http://127.0.0.1:8765"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base) as client, \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=unwarmed or app), base_url=base) as cold_client:
        for url, cold in urls:
            if cold:
                unwarmed.state.bench.catalogue("default").index.drop_vectors()
            t0 = time.perf_counter()
            response = await (cold_client if cold else client).get(url)
            out.append((time.perf_counter() - t0, response))
            if response.status_code != 200:
                raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:300]}")
    return out


def bench_workbench(n_codes: int = STORE_CODES, cache: Path = BENCH_CACHE, words: int = 10_000, codes: int = 300,
                    repeats: int = 20, search_repeats: int = 3, said: Any = print,
                    queries: tuple[str, ...] = QUERIES) -> dict[str, Any]:
    """The workbench's three targets: the interview page of a long interview, facet search over
    `n_codes` stored codes (real MiniLM vectors of generated sentences, built once in `cache`), and a
    review decision's round trip."""
    with tempfile.TemporaryDirectory(prefix="jtbd-bench-pages-") as tmp:
        pages = bench_pages(Path(tmp), words, codes, repeats)
    vectors = bench_vectors(n_codes, cache, said=said)
    folder = cache / ("chroma" if n_codes == STORE_CODES else f"chroma-{n_codes}")
    search = bench_facet_search(bench_store(vectors, folder, said=said), search_repeats, queries=queries)
    page = bench_search_page(bench_reviews(n_codes, cache, said=said), search_repeats, queries=queries)
    return {**pages, "search": search, "search_page": page, "store": str(folder)}


def workbench_table(result: dict[str, Any]) -> str:
    lines = [f"interview page ({result['interview_words']} words, {result['turns']} turns, {result['codes']} codes, "
             f"{result['page_bytes'] // 1024} KiB): median {result['interview_page']['median_ms']} ms, "
             f"p95 {result['interview_page']['p95_ms']} ms (target: median 200 ms)"]
    for name, row in result["review_round_trip"].items():
        lines.append(f"review round trip, {name} answer: median {row['median_ms']} ms, p95 {row['p95_ms']} ms "
                     "(target: 100 ms)")
    search = result["search"]
    lines.append(f"search, top {search['k']} of {search['codes_stored']} codes (embedding the query alone: median "
                 f"{search['embed_query']['median_ms']} ms, p95 {search['embed_query']['p95_ms']} ms); target p95 50 ms")
    lines.append(f"  (facet index of every code built in {search['index_built_seconds']} s, their vectors read in "
                 f"{search['vectors_read_seconds']} s); p50 / p95 ms:")
    lines.append(f"  {'filter':<36}{'where':>14}{'code ids':>14}{'index, now':>14}{'index, cold':>14}  same")
    for name, row in search["filters"].items():
        cells = "".join(f"{row[way]['median_ms']:>7} /{row[way]['p95_ms']:>5}" for way in ("where", "ids", "now", "cold"))
        lines.append(f"  {name:<36}{cells}  {row['same_results']}/{row['queries']} ({row['as_near_or_nearer']} as near or nearer)")
    page = result["search_page"]
    lines.append(f"search page through the app, {page['codes']} codes (server warm-up, reading the study and its "
                 f"vectors: {page['warm_up_seconds']} s; peak memory of the whole run {page['peak_rss_mib']} MiB, two "
                 "apps); p50 / p95 ms:")
    lines.append(f"  {'filter':<36}{'html':>14}{'json':>14}{'html cold':>14}{'json cold':>14}  results")
    for name, row in page["filters"].items():
        cells = "".join(f"{row[way]['median_ms']:>7} /{row[way]['p95_ms']:>5}" for way in ("html", "json", "html cold",
                                                                                          "json cold"))
        lines.append(f"  {name:<36}{cells}  {row['results_per_query']}")
    return "\n".join(lines)


def _busy_seconds(requests: list[tuple[float, float]]) -> float:
    """Seconds in which at least one of these (start, end) intervals was open: the model server's busy time."""
    busy, until = 0.0, float("-inf")
    for start, end in sorted(requests):
        if end > until:
            busy += end - max(start, until)
            until = end
    return busy


def bench_pool(paths: list[str], root: Path, workers: int = 2, threads: int = 0) -> dict[str, Any]:
    """The same batch coded twice against the same servers on this machine (llama.cpp's server
    with the default model, Chroma's server, PostgreSQL): in process (`jtbd code`), then on a
    process work pool (`jtbd code --pool`, `workers` Prefect workers polling every 2 s, one run
    each at a time), each with its own data folder (no shared cache) and study, after one
    untimed request that pages the model in. The model server's busy time comes from a timing
    proxy in front of it. A run's time outside the model is its wall time less that busy time;
    the orchestration overhead is the pool run's time outside the model less the local run's, as
    a share of the local run's model time (the model's own speed drifts between the two runs on a
    shared machine; the time outside it is what the pool adds)."""
    import subprocess

    sys.path.insert(0, str(ROOT / "tests"))
    from scale_out_services import BIN, MODEL_ALIAS, Services

    services = Services(root)
    try:
        t0 = time.perf_counter()
        services.prefect_server()
        chroma, database = services.chroma_server(), services.postgres()
        threads = threads or os.cpu_count() or 2
        proxy = services.model_server(threads=threads)
        started = {"model_threads": threads, "servers_seconds": round(time.perf_counter() - t0, 1)}
        _warm_up(proxy.url, MODEL_ALIAS)
        flags = ["--backend", "openai", "--base-url", proxy.url, "--model", MODEL_ALIAS, "--llm-mode",
                 "json_object_schema", "--extra-body", '{"repeat_penalty": 1.0}', "--chroma-url", chroma,
                 "--db", database]
        env = {**os.environ, **services.env}

        def code(name: str, *extra: str) -> dict[str, Any]:
            load_before = os.getloadavg()[0]
            before = len(proxy.timings)
            t0 = time.perf_counter()
            done = subprocess.run([str(BIN / "jtbd"), "code", *paths, "--data-dir", str(root / name), "--study", name,
                                   "--out", str(root / f"{name}-run"), *flags, *extra], env=env, capture_output=True,
                                  text=True, timeout=6 * 3600)
            wall = time.perf_counter() - t0
            if done.returncode != 0:
                raise RuntimeError(f"jtbd code ({name}) failed: {done.stderr[-2000:]}")
            summary = json.loads((root / f"{name}-run" / "summary.json").read_text())
            calls = proxy.timings[before:]
            busy = _busy_seconds(calls)
            return {"wall_seconds": round(wall, 1), "model_busy_seconds": round(busy, 1),
                    "outside_model_seconds": round(wall - busy, 1),
                    "model_calls": len(calls), "llm_calls_counted": summary["llm_calls"],
                    "codes": summary["codes"], "load_average_before": round(load_before, 2),
                    "load_average_after": round(os.getloadavg()[0], 2)}

        local = code("local")
        deployed = subprocess.run([str(BIN / "jtbd"), "deploy", "--pool", "bench"], env=env, capture_output=True,
                                  text=True, timeout=600)
        if deployed.returncode != 0:
            raise RuntimeError(f"jtbd deploy failed: {deployed.stderr[-2000:]}")
        for i in range(workers):
            services.worker("bench", f"bench-{i + 1}")
        pooled = code("pool", "--pool", "bench")
        pooled["pickup_seconds"] = _pickup_seconds(services.env["PREFECT_API_URL"])
    finally:
        services.close()
    overhead = pooled["outside_model_seconds"] - local["outside_model_seconds"]
    return {**started, "transcripts": paths, "workers": workers, "local": local, "pool": pooled,
            "overhead_seconds": round(overhead, 1),
            "overhead_share_of_model_time": round(overhead / max(local["model_busy_seconds"], 1e-9), 3)}


def _warm_up(base_url: str, model: str) -> None:
    """One small chat request, so neither run pays for paging the model's weights in."""
    import httpx

    httpx.post(base_url + "/chat/completions", timeout=600, json={
        "model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "Say yes."}]}).raise_for_status()


def _pickup_seconds(api: str) -> dict[str, float]:
    """Per pool run: from its creation to its start on a worker (polling, process start)."""
    import httpx
    from datetime import datetime

    runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}, timeout=30).json()
    waits = sorted((datetime.fromisoformat(r["start_time"]) - datetime.fromisoformat(r["created"])).total_seconds()
                   for r in runs if r["parameters"].get("transcript_id") and r.get("start_time"))
    return {"runs": len(waits), "median": round(statistics.median(waits), 1) if waits else 0.0,
            "max": round(max(waits), 1) if waits else 0.0}


def pool_table(result: dict[str, Any]) -> str:
    local, pool = result["local"], result["pool"]
    rows = [("", "in process", f"pool ({result['workers']} workers)"),
            ("wall seconds", local["wall_seconds"], pool["wall_seconds"]),
            ("model server busy seconds", local["model_busy_seconds"], pool["model_busy_seconds"]),
            ("seconds outside the model", local["outside_model_seconds"], pool["outside_model_seconds"]),
            ("model calls", local["model_calls"], pool["model_calls"]),
            ("load average before / after", f"{local['load_average_before']} / {local['load_average_after']}",
             f"{pool['load_average_before']} / {pool['load_average_after']}")]
    lines = [" | ".join(str(c) for c in row) for row in rows]
    lines.append(f"orchestration overhead (time outside the model, pool less in process): {result['overhead_seconds']} s, "
                 f"{result['overhead_share_of_model_time']:.1%} of the local run's model time; "
                 f"run pick-up median {pool['pickup_seconds']['median']} s, max {pool['pickup_seconds']['max']} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", choices=("all", "search", "code", "limit", "versions", "workbench", "pool"),
                        default="all")
    parser.add_argument("--transcripts", nargs="+", default=[str(DEFAULT_TRANSCRIPT)],
                        help="files or folders to code (default: examples/espresso_machine.txt)")
    parser.add_argument("--joined", action="store_true",
                        help="code the transcripts joined into one long interview (as an hour-long one)")
    parser.add_argument("--order", default="ABBA",
                        help="versions: the order of the runs, A the version before, B today's (default ABBA)")
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--model-threads", type=int, default=0,
                        help="pool: llama.cpp server threads (default: every core)")
    parser.add_argument("--codes", type=int, default=STORE_CODES, help="workbench: codes in the search store")
    parser.add_argument("--cache", default=str(BENCH_CACHE),
                        help="workbench: where the generated store is built once and kept (outside git)")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "platform": platform.platform()}}
    if set(args.order) != {"A", "B"}:
        parser.error(f"--order is {args.order!r}: a sequence of A (the version before) and B (today's), both")
    with tempfile.TemporaryDirectory(prefix="jtbd-bench-") as tmp:
        if args.joined:
            args.transcripts = [str(joined_interview(args.transcripts, Path(tmp) / "joined" / "hour_long.txt"))]
            results["joined"] = True
        if args.part in ("all", "search"):
            results["search"] = bench_search(Path(tmp) / "search")
            print(json.dumps({"search": results["search"]}, indent=2), flush=True)
        if args.part in ("all", "code"):
            results["code"] = bench_code(args.transcripts, Path(tmp) / "code")
            print(json.dumps({"code": results["code"]}, indent=2), flush=True)
        if args.part == "pool":
            results["pool"] = bench_pool(args.transcripts, Path(tmp) / "pool", threads=args.model_threads)
            print(pool_table(results["pool"]), flush=True)
        if args.part == "versions":
            order = tuple(VERSIONS[0] if c == "A" else VERSIONS[1] for c in args.order)
            results["versions"] = bench_versions(args.transcripts, Path(tmp) / "versions", order)
            print(versions_table(results["versions"]), flush=True)
        if args.part == "limit":
            results["limit"] = bench_limit(args.transcripts, Path(tmp) / "limit")
            results["limit"]["code"]["paths"] = args.transcripts
            print(limit_table(results["limit"]), flush=True)
    if args.part == "workbench":
        results["workbench"] = bench_workbench(args.codes, Path(args.cache),
                                               said=lambda line: print(line, file=sys.stderr, flush=True))
        print(workbench_table(results["workbench"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
