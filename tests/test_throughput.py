"""scripts/benchmark.py's limit part (issue 27): how it classes llama.cpp's evaluations and lays
out its table. A fake model stands in for llama.cpp; times are measured by the script, never
asserted here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmark)


class FakeLlama:
    """What wrap_eval reads of llama-cpp-python's Llama: input_ids, n_tokens and eval."""

    def __init__(self) -> None:
        self.input_ids = np.zeros(1000, dtype=np.intc)
        self.n_tokens = 0

    def eval(self, tokens):
        self.input_ids[self.n_tokens:self.n_tokens + len(tokens)] = tokens
        self.n_tokens += len(tokens)


def _call(clock, creating: bool) -> None:
    # What the limit part's call scope does at the start of each model call.
    clock.local.evaluated, clock.local.in_create = False, creating


def test_evaluations_are_classed_and_prefix_misses_counted():
    clock, llama = benchmark.Clock(), FakeLlama()
    benchmark.wrap_eval(clock, llama)
    prefix = list(range(1, 121))

    _call(clock, False)  # a rating call from an empty cache: the 120-token prefix is read
    llama.eval(prefix)
    _call(clock, False)  # the next question: only its own 2 tokens, the prefix kept
    llama.eval([7, 8])
    _call(clock, False)  # a KV-cache miss: the same prefix read again, with a new question
    llama.n_tokens = 0
    llama.eval(prefix + [9])
    _call(clock, True)   # a structured call: its prompt after the kept prefix, then 3 generated tokens
    llama.eval([5, 6, 7])
    for token in (11, 12, 13):
        llama.eval([token])

    assert clock.counts["eval_prefix"] == 120 + 121  # two evaluations of 100 tokens or more
    assert clock.counts["eval_question"] == 2 + 3
    assert clock.counts["eval_generated"] == 3
    assert clock.counts["reevaluated_tokens"] == 120  # only the miss re-read a prefix already evaluated
    assert set(clock.seconds) == {"eval_prefix", "eval_question", "eval_generated", "reevaluated_tokens"}


def test_a_one_token_rating_evaluation_is_a_prompt_not_generation():
    clock, llama = benchmark.Clock(), FakeLlama()
    benchmark.wrap_eval(clock, llama)
    _call(clock, False)
    llama.eval([1, 2, 3])
    _call(clock, False)
    llama.eval([4])  # a rating call outside a structured call reads its prompt, it generates nothing
    assert clock.counts == {"eval_question": 4, "reevaluated_tokens": 0}


def test_limit_table_names_every_part():
    parts = {name: {"seconds": 1.0, "count": 1} for name in ("a", "b")}
    speed = {"prefix_tokens_per_second": 75.0, "question_tokens_per_second": 67.0, "question_seconds": 0.66,
             "generated_tokens_per_second": 15.0}
    result = {"raw_speed": speed, "raw_speed_before": speed, "raw_speed_after": speed,
              "code": {"paths": ["x/espresso_machine.txt"], "wall_seconds": 10.0, "llm_seconds": 9.0, "llm_calls": 3,
                       "sentences_rated": 2, "prompt_tokens": 900},
              "tokens_evaluated": 800, "tokens_generated": 20, "limit_seconds": 12.0, "ratio_model_to_limit": 0.75,
              "speed_inside_product": {"prefix_tokens_per_second": 70.0, "question_tokens_per_second": 60.0,
                                       "generated_tokens_per_second": 14.0, "llama_cpp_seconds": 8.5,
                                       "model_seconds_over_llama_cpp_seconds": 1.059},
              "breakdown": parts}
    table = benchmark.limit_table(result)
    assert "model time / limit = 0.75" in table and "espresso_machine.txt" in table
    assert "model time / that = 1.059" in table
    assert [line.split()[0] for line in table.splitlines()[-2:]] == ["a", "b"]


def test_versions_table_reports_both_strategies_and_the_speed_up():
    run = {"wall_seconds": 100.0, "llm_seconds": 90.0, "tokens_evaluated": 7000, "tokens_generated": 100, "llm_calls": 81}
    new = dict(run, wall_seconds=50.0, llm_seconds=45.0, tokens_evaluated=3500)
    result = {"mean": {"rate-v25": run, "rate": new}, "speed_up_wall": 2.0, "speed_up_model": 2.0,
              "tokens_evaluated_ratio": 0.5}
    table = benchmark.versions_table(result)
    assert "| tokens evaluated | 7000 | 3500 |" in table and "wall 2.0x" in table and "50% of before" in table


# --- the jobs pass read in the rating windows (variant 26) ----------------------------------------------


def test_the_jobs_question_repeats_the_rating_prompt_up_to_the_excerpt():
    from jtbd.prompts import load_strategy

    rate, jobs = load_strategy("rate").passes
    assert jobs.in_windows and jobs.window == rate.window and jobs.examples == rate.examples
    excerpt = "Tom (customer): [1] It broke. [2] I bought a new one."
    asked, rated = jobs.render(excerpt), rate.render(excerpt, 2, "I bought a new one.")
    assert asked[:-1] == rated[:-1]  # the system prompt and the answered examples, message for message
    shared = len(rate.excerpt_template.replace("{excerpt}", excerpt))
    assert asked[-1]["content"][:shared] == rated[-1]["content"][:shared]  # then the excerpt


def test_an_in_windows_pass_needs_a_rating_pass_before_it(tmp_path):
    import pytest

    from jtbd.prompts import load_strategy

    def strategy(passes: str) -> None:
        (tmp_path / "passes.toml").write_text(
            'system = ["system.md"]\nexcerpt = "excerpt.md"\n[strategies.mine]\npasses = [' + passes + "]\n")
        load_strategy("mine", str(tmp_path))

    with pytest.raises(ValueError, match="in_windows needs a whole-excerpt pass after a per-sentence pass"):
        strategy('{ prompt = "jobs.md", response_model = "Jobs", max_tokens = 150, in_windows = true }')
    rating = ('{ prompt = "rate_sentence.md", response_model = "SentenceRating", max_tokens = 1, '
              'item = "[{n}] {sentence}", window_tokens = 800 }, ')
    strategy(rating + '{ prompt = "jobs.md", response_model = "Jobs", max_tokens = 150, in_windows = true }')


def test_each_recorded_jobs_question_repeats_a_rating_request_of_its_window():
    """In the recording of the bundled example, each job-story request repeats the messages of the
    rating requests of one window but the last, and that last message up to the end of the excerpt:
    asked right after them (coding/extract.py), the server (or llama.cpp in process) reads only the
    question. What makes the jobs pass cheap."""
    import json

    import yaml

    from jtbd.prompts import load_strategy

    rate, jobs = load_strategy("rate").passes
    recorded = yaml.safe_load((ROOT / "tests" / "cassettes" / "flow" / "espresso_machine.yaml").read_text())
    bodies = [json.loads(i["request"]["body"]) for i in recorded["interactions"]]
    task = jobs.task.splitlines()[0]
    asks = [b for b in bodies if task in b["messages"][-1]["content"]]
    ratings = [b for b in bodies if b.get("max_tokens") == 1 and b.get("logprobs")]
    assert len(asks) >= 2 and len(ratings) == len(bodies) - len(asks)  # one per window of the chunk
    windows = set()
    for ask in asks:
        last = ask["messages"][-1]["content"]
        same = [r for r in ratings if r["messages"][:-1] == ask["messages"][:-1]
                and last.startswith(r["messages"][-1]["content"][:r["messages"][-1]["content"].index(rate.task)])]
        assert same, "a jobs question whose prompt no rating request shares"
        windows.add(last[:last.index(task)])
    assert len(windows) == len(asks)  # each window asked once
