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
    # each evaluation's position: the tokens already in the cache before it
    assert clock.evals == [("eval_prefix", 0, 120), ("eval_question", 120, 2), ("eval_prefix", 0, 121),
                           ("eval_question", 121, 3), ("eval_generated", 124, 1), ("eval_generated", 125, 1),
                           ("eval_generated", 126, 1)]


def test_the_raw_limit_takes_each_token_at_the_speed_measured_at_its_position():
    assert benchmark.speed_at([(400, 100.0), (1100, 80.0)], 750) == 90.0  # half way
    assert benchmark.speed_at([(400, 100.0), (1100, 80.0)], 100) == 100.0  # before the first point: the first
    assert benchmark.speed_at([(1100, 80.0), (400, 100.0)], 5000) == 80.0  # after the last: the last
    by_depth = [{"prefix_position": 400, "prefix_tokens_per_second": 100.0, "question_position": 822,
                 "question_tokens_per_second": 50.0, "generated_position": 860, "generated_tokens_per_second": 20.0},
                {"prefix_position": 1100, "prefix_tokens_per_second": 80.0, "question_position": 1522,
                 "question_tokens_per_second": 40.0, "generated_position": 1560, "generated_tokens_per_second": 10.0}]
    evals = [("eval_prefix", 0, 800),       # mid 400: 800 tokens at 100/s = 8 s
             ("eval_question", 1500, 44),   # mid 1522: 44 at 40/s = 1.1 s
             ("eval_generated", 2000, 1)]   # beyond the last point: 1 at 10/s = 0.1 s
    assert abs(benchmark.limit_at_positions(evals, by_depth) - 9.2) < 1e-9


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
    depth = {"prefix_position": 400, "prefix_tokens_per_second": 96.5, "question_position": 822,
             "question_tokens_per_second": 77.0, "generated_position": 860, "generated_tokens_per_second": 28.0}
    result |= {"raw_speed_by_depth": [depth], "limit_at_positions_seconds": 8.6,
               "ratio_model_to_limit_at_positions": 1.05,
               "tokens_by_position": {p: {"tokens": 10, "mean_position": 1900}
                                      for p in ("eval_prefix", "eval_question", "eval_generated")}}
    table = benchmark.limit_table(result)
    assert "raw limit for those tokens at their positions 8.6 s; model time / limit = 1.05" in table
    assert "96.5" in table and [line.split()[0] for line in table.splitlines()[-2:]] == ["a", "b"]


def test_versions_table_reports_both_strategies_and_the_speed_up():
    run = {"wall_seconds": 100.0, "llm_seconds": 90.0, "tokens_evaluated": 7000, "tokens_generated": 100, "llm_calls": 81}
    new = dict(run, wall_seconds=50.0, llm_seconds=45.0, tokens_evaluated=3500)
    result = {"runs": {"rate-v25": [run, run], "rate": [new, new]}, "mean": {"rate-v25": run, "rate": new},
              "speed_up_wall": 2.0, "speed_up_model": 2.0, "tokens_evaluated_ratio": 0.5}
    table = benchmark.versions_table(result)
    assert "| tokens evaluated | 7000 | 3500 |" in table and "wall 2.0x" in table and "50% of before" in table
    assert "| wall (s, mean of 2) | 100.0 | 50.0 |" in table
    once = dict(result, runs={"rate-v25": [run], "rate": [new]})  # --order AB
    assert "| wall (s) | 100.0 | 50.0 |" in benchmark.versions_table(once)


def test_an_hour_long_interview_is_the_transcripts_turns_in_order_relabelled(tmp_path):
    from jtbd.coding.parse import load_transcript

    gold = ROOT / "eval" / "gold" / "dev"
    parts = [gold / "gym_cancel.txt", gold / "crm_switch.vtt"]
    joined = load_transcript(benchmark.joined_interview([str(p) for p in parts], tmp_path / "hour_long.txt"))
    turns = [t for p in parts for t in load_transcript(p).turns]

    def words(turns, role):  # two interviewers in a row (crm_switch's Sam and Kit) become one turn
        return " ".join(t.text for t in turns if t.role.value == role).split()

    for role in ("interviewer", "interviewee"):
        assert words(joined.turns, role) == words(turns, role)
    assert {t.speaker for t in joined.turns} == {"Interviewer", "Customer"}


def test_the_versions_order_needs_both_versions(capsys):
    import pytest

    with pytest.raises(SystemExit):
        benchmark.main(["versions", "--order", "AA"])
    assert "--order is 'AA'" in capsys.readouterr().err


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
