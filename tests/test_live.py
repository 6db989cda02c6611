"""Live: the embedded default model codes a short transcript in process, no cassette.

Slow (loads the 1 GB model and runs it on the CPU), so opt-in: plain `pytest` leaves it out
(addopts in pyproject.toml); `pytest -m live` runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

SHORT = ROOT / "tests" / "data" / "short_interview.txt"


@pytest.mark.live
def test_embedded_model_codes_a_short_transcript(prefect_harness, data_dir, tmp_path):
    from jtbd.coding.parse import load_transcript
    from jtbd.flows.code_batch import run_batch
    from jtbd.settings import Settings

    settings = Settings(data_dir=str(data_dir))  # the offline default: local backend, default model
    summary = run_batch([str(SHORT)], settings, str(tmp_path / "run"))
    assert summary.transcripts_ok == [str(SHORT)], summary.transcripts_failed
    assert summary.llm_calls >= 1 and summary.completion_tokens > 0
    transcript = load_transcript(SHORT)
    codes = [json.loads(line) for line in (tmp_path / "run" / "codes.jsonl").read_text().splitlines()]
    assert codes, "the model found nothing at all in a transcript full of forces"
    for code in codes:
        g = code["grounding"]
        assert transcript.text[g["char_start"]:g["char_end"]] == code["quote"]
        assert g["speaker"] == "Priya"
    rated = [c for c in codes if c["kind"] in ("force", "trigger")]
    assert rated, "no sentence of a transcript full of forces stood out"
    assert all(c["score"] is not None for c in rated)  # decided from the in-process ratings
    # one rating call per interviewee sentence (8) plus the jobs-and-quotes pass
    assert summary.llm_calls >= 9 and summary.prompt_tokens > 8 * 500
    again = run_batch([str(SHORT)], settings, str(tmp_path / "run2"))
    assert again.llm_calls == 0 and again.cache_hits == again.chunks


def _collected(*options: str) -> str:
    """What `pytest --collect-only` selects in this file, as the README's commands run it."""
    pytest_script = Path(sys.executable).with_name("pytest")  # not `python -m`, which puts ./jtbd first
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    done = subprocess.run([str(pytest_script), "--collect-only", "-q", "-p", "no:cacheprovider", *options,
                           "tests/test_live.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return done.stdout + done.stderr  # a child that fails to start shows why


def test_plain_pytest_leaves_the_live_test_out_and_m_live_selects_it():
    live = "test_live.py::test_embedded_model_codes_a_short_transcript"
    assert live not in _collected()  # .ci/run's plain `pytest`
    assert live in _collected("-m", "live")
