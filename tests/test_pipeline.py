"""The pipeline's plain stage functions, without Prefect: the cache key, planning and sizing."""

from __future__ import annotations

import pytest

from conftest import ROOT
from jtbd.coding.parse import load_transcript
from jtbd.coding.pipeline import batch_size, cache_key, plan_transcript
from jtbd.prompts import load_strategy
from jtbd.schemas.codebook import Provenance
from jtbd.settings import Settings

EXAMPLE = ROOT / "examples" / "espresso_machine.txt"
SERVER = dict(backend="openai", model="m", base_url="http://127.0.0.1:8080/v1", extra_body='{"repeat_penalty": 1.0}')


def _key(**changes) -> str:
    settings = Settings(**{**SERVER, **changes})
    transcript = load_transcript(EXAMPLE)
    strategy = load_strategy(settings.strategy)
    provenance = Provenance(prompt_version=strategy.version, schema_version="s", model=settings.model)
    [job, *_] = plan_transcript(transcript, settings, strategy, provenance)
    assert job.cache_key == cache_key(transcript, job.chunk, settings, strategy, provenance)
    return job.cache_key


@pytest.mark.parametrize("change", [
    {"base_url": "http://127.0.0.1:9090/v1"},  # another server that reports the same model name
    {"extra_body": '{"repeat_penalty": 1.1}'},
    {"model": "other"},
    {"llm_mode": "tools"},
    {"seed": 7},
    {"max_retries": 5},
    {"strategy": "quotes"},
    {"backend": "local", "base_url": "", "extra_body": "", "model": "m"},
])
def test_whatever_can_change_an_answer_is_in_the_cache_key(change):
    assert _key(**change) != _key()


@pytest.mark.parametrize("change", [
    {"timeout": 5.0}, {"concurrency": 3}, {"task_retries": 0}, {"chroma_url": "http://127.0.0.1:8000"},
    {"extra_body": '{ "repeat_penalty" : 1.0 }'},  # the same JSON written another way
    {"base_url": "http://127.0.0.1:8080/v1/"},
])
def test_what_cannot_change_an_answer_keeps_the_cache(change):
    assert _key(**change) == _key()


def test_the_local_model_file_is_in_the_key():
    local = dict(backend="local", base_url="", extra_body="", model="")
    assert _key(**local, model_path="/models/a.gguf") != _key(**local, model_path="/models/b.gguf")


def test_batch_size_counts_only_what_is_not_cached():
    settings = Settings(**SERVER, chunk_tokens=400, overlap_tokens=50)
    transcript = load_transcript(EXAMPLE)
    strategy = load_strategy()
    provenance = Provenance(prompt_version=strategy.version, schema_version="s", model="m")
    jobs = {"x": plan_transcript(transcript, settings, strategy, provenance)}
    assert len(jobs["x"]) > 2
    nothing = batch_size(jobs, lambda key: False)
    first_cached = batch_size(jobs, lambda key: key == jobs["x"][0].cache_key)
    assert nothing["chunks"] == nothing["uncached_chunks"] == len(jobs["x"])
    assert first_cached["uncached_chunks"] == len(jobs["x"]) - 1
    assert 0 < first_cached["uncached_sentences"] < nothing["uncached_sentences"] == nothing["sentences"]
