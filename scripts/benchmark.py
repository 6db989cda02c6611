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

    python scripts/benchmark.py                     # both parts, examples/espresso_machine.txt
    python scripts/benchmark.py search              # search only (about 20 seconds)
    python scripts/benchmark.py code --transcripts examples/ --out bench.json
    python scripts/benchmark.py limit --out limit.json    # raw limit vs product (a few minutes)

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


def bench_code(paths: list[str], data_dir: Path, after_first: Any = None) -> dict[str, Any]:
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


def raw_speeds(llama: Any, text: str) -> dict[str, Any]:
    """llama.cpp's own speed on this machine, without the product: an 800-token prefix from an
    empty cache (3 times), a 44-token question after that prefix (10 times, the prefix kept), and
    32 tokens generated one at a time (greedy, twice)."""
    import numpy as np

    tokens = llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    need = PREFIX_TOKENS + QUESTION_TOKENS
    tokens = (tokens * (need // max(1, len(tokens)) + 1))[:need]
    prefix, question = tokens[:PREFIX_TOKENS], tokens[PREFIX_TOKENS:]
    prefill, asked, generated = [], [], []
    for _ in range(3):
        llama.reset()
        t0 = time.perf_counter()
        llama.eval(prefix)
        prefill.append(time.perf_counter() - t0)
    for _ in range(10):
        llama.n_tokens = PREFIX_TOKENS  # the prefix stays in the KV cache; only the question is read
        t0 = time.perf_counter()
        llama.eval(question)
        asked.append(time.perf_counter() - t0)
    for _ in range(2):
        llama.n_tokens = need
        llama.eval(question[-1:])
        t0 = time.perf_counter()
        for _ in range(GENERATED_TOKENS):
            logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),))
            llama.eval([int(np.argmax(logits))])
        generated.append(time.perf_counter() - t0)
    llama.reset()
    return {"prefix_tokens_per_second": round(PREFIX_TOKENS / statistics.median(prefill), 1),
            "question_tokens_per_second": round(QUESTION_TOKENS / statistics.median(asked), 1),
            "question_seconds": round(statistics.median(asked), 3),
            "generated_tokens_per_second": round(GENERATED_TOKENS / statistics.median(generated), 2)}


class Clock:
    """Seconds and counts per named part, from wrapped functions (perf_counter; thread-safe)."""

    def __init__(self) -> None:
        import threading

        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.lock = threading.Lock()
        self.local = threading.local()

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
            else:
                part = "eval_prefix" if len(tokens) >= BATCH_AS_PREFIX else "eval_question"
                clock.add(part, dt, len(tokens))
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
    code = bench_code(paths, data_dir, lambda: taken.update(s=dict(clock.seconds), n=dict(clock.counts)))
    s, n = taken["s"], taken["n"]  # the first run's: the second is served by the cache
    del llama.eval, llama.sample, llama.tokenize, llama.create_chat_completion_openai_v1  # the class's own again
    after = raw_speeds(llama, text)
    speed = {key: round((before[key] + after[key]) / 2, 2) for key in before}

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
            "breakdown": {name: {"seconds": round(sec, 2), "count": cnt} for name, (sec, cnt) in parts.items()}}


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
        f"  raw limit for those tokens {result['limit_seconds']} s; model time / limit = {result['ratio_model_to_limit']}",
        "  llama.cpp's own evaluation inside the product (the same moments as the product, so the machine's load "
        "cancels): prefix {prefix_tokens_per_second} tokens/s, questions {question_tokens_per_second} tokens/s, "
        "generation {generated_tokens_per_second} tokens/s; {llama_cpp_seconds} s, model time / that = "
        "{model_seconds_over_llama_cpp_seconds}".format(**result["speed_inside_product"]),
        "where the wall time goes                                                      seconds   count",
    ]
    for name, row in result["breakdown"].items():
        lines.append(f"  {name:<76}{row['seconds']:8.1f}{row['count']:8d}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", choices=("all", "search", "code", "limit"), default="all")
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
        if args.part == "limit":
            results["limit"] = bench_limit(args.transcripts, Path(tmp) / "limit")
            results["limit"]["code"]["paths"] = args.transcripts
            print(limit_table(results["limit"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
