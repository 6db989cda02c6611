"""Deterministic ids for stored codes, and stable version hashes for the schema and the prompts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import jtbd.prompts as prompts
from jtbd.prompts import load_strategy, strategies
from jtbd.schemas import codebook
from jtbd.schemas.codebook import (
    Alignment, CodedTranscript, Dimension, Force, ForceType, Grounding, JobStory, Provenance, Quote,
    Trigger, schema_version,
)

FAST = settings(max_examples=60, deadline=None)
HASH = re.compile(r"[0-9a-f]{12}")
PROMPTS_DIR = Path(prompts.__file__).resolve().parent


def grounding(transcript: str = "gym_cancel", start: int = 10, end: int = 42, **kw) -> Grounding:
    return Grounding(transcript=transcript, source=f"{transcript}.txt", speaker="Dana", turn_index=3,
                     char_start=start, char_end=end, alignment=Alignment.exact, **kw)


def make(kind: str, g: Grounding, prompt_version: str = "p1", note: str | None = None):
    prov = Provenance(prompt_version=prompt_version, schema_version="s1", model="m")
    common = dict(quote="the words", grounding=g, provenance=prov, note=note)
    if kind.startswith("force."):
        return Force(force=ForceType(kind.removeprefix("force.")), **common)
    if kind.startswith("job."):
        return JobStory(situation="s", motivation="m", outcome="o", dimension=Dimension(kind.removeprefix("job.")),
                        **common)
    return {"trigger": Trigger, "quote": Quote}[kind](**common)


KINDS = ["force.push", "force.pull", "force.anxiety", "force.habit", "trigger", "quote",
         "job.functional", "job.emotional", "job.social"]


@pytest.mark.parametrize("kind", KINDS)
def test_id_is_transcript_label_and_offsets(kind):
    c = make(kind, grounding())
    assert c.label == kind
    assert c.id == f"gym_cancel:{kind}:10-42"


def test_id_ignores_wording_notes_and_provenance():
    a = make("force.push", grounding())
    b = make("force.push", grounding(alignment_score=93.0, model_quote="other words"), prompt_version="p2",
             note="a note")
    assert a.id == b.id


def test_id_survives_a_json_round_trip():
    codes = [make(kind, grounding(start=5 * i, end=5 * i + 20)) for i, kind in enumerate(KINDS)]
    doc = CodedTranscript(transcript="gym_cancel", source="gym_cancel.txt", codes=codes)
    back = CodedTranscript.model_validate_json(doc.model_dump_json())
    assert [c.id for c in back.codes] == [c.id for c in codes]
    assert [type(c) for c in back.codes] == [type(c) for c in codes]


@FAST
@given(a=st.tuples(st.sampled_from(["t1", "t2"]), st.sampled_from(KINDS), st.integers(0, 50), st.integers(1, 50)),
       b=st.tuples(st.sampled_from(["t1", "t2"]), st.sampled_from(KINDS), st.integers(0, 50), st.integers(1, 50)))
def test_ids_equal_exactly_when_inputs_equal(a, b):
    def build(spec):
        transcript, kind, start, length = spec
        return make(kind, grounding(transcript, start, start + length))

    assert build(a).id == build(a).id
    assert (build(a).id == build(b).id) == (a == b)


def test_schema_version_is_a_stable_hash():
    first = schema_version()
    assert HASH.fullmatch(first)
    assert all(schema_version() == first for _ in range(3))


def test_schema_version_is_the_same_in_a_fresh_interpreter():
    code = "from jtbd.schemas.codebook import schema_version; print(schema_version())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": ""})
    assert out.stdout.strip() == schema_version()


def test_schema_version_changes_with_the_contract(monkeypatch):
    before = schema_version()

    class Extra(BaseModel):
        field: int

    monkeypatch.setitem(codebook.DRAFT_MODELS, "Extra", Extra)
    assert schema_version() != before
    monkeypatch.undo()
    assert schema_version() == before


# --- prompt versions ----------------------------------------------------------


@pytest.fixture
def prompt_copy(tmp_path, monkeypatch) -> Path:
    """A copy of the prompt files; the loader is pointed at it (it only reads its own package)."""
    copy = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    monkeypatch.setattr(prompts, "_read", lambda name, folder="": (copy / name).read_text(encoding="utf-8").strip())
    return copy


def test_strategy_versions_are_stable_hashes():
    names = strategies()
    assert {"rate", "quotes"} <= set(names)
    versions = {name: load_strategy(name).version for name in names}
    assert all(HASH.fullmatch(v) for v in versions.values())
    assert {name: load_strategy(name).version for name in names} == versions
    assert len(set(versions.values())) == len(names)
    assert load_strategy().version == versions["rate"]


def test_copied_prompts_give_the_same_versions(prompt_copy):
    """The redirected reader is faithful: an untouched copy hashes like the package's own files."""
    copied = {name: load_strategy(name).version for name in strategies()}
    with pytest.MonkeyPatch.context() as m:
        m.setattr(prompts, "_read", lambda name, folder="": (PROMPTS_DIR / name).read_text(encoding="utf-8").strip())
        assert {name: load_strategy(name).version for name in strategies()} == copied


def _versions() -> dict[str, str]:
    return {name: load_strategy(name).version for name in strategies()}


@pytest.mark.parametrize(("edited", "changes"), [
    ("rate_sentence.md", {"rate", "rate-v25"}),
    ("quote_codes.md", {"quotes"}),
    ("jobs.md", {"rate"}),
    ("jobs_quotes.md", {"rate-v25", "quotes"}),
    ("system.md", {"rate", "rate-v25", "quotes"}),
    ("worked_example.md", {"quotes"}),  # rate shows its examples as turns
    ("quotable_lines.json", {"rate"}),
])
def test_editing_a_prompt_file_changes_exactly_the_strategies_that_use_it(prompt_copy, edited, changes):
    before = _versions()
    path = prompt_copy / edited
    path.write_text(path.read_text(encoding="utf-8") + "\nBe brief.\n", encoding="utf-8")
    after = _versions()
    assert {name for name in before if before[name] != after[name]} == changes
    path.write_text(path.read_text(encoding="utf-8").replace("\nBe brief.\n", ""), encoding="utf-8")
    assert _versions() == before  # the version is a function of the text


def test_editing_the_excerpt_template_changes_every_version(prompt_copy):
    before = _versions()
    path = prompt_copy / "excerpt.md"
    path.write_text("Read this carefully.\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    after = _versions()
    assert all(before[name] != after[name] for name in before)


def test_editing_a_pass_entry_changes_its_strategy(prompt_copy):
    before = _versions()
    path = prompt_copy / "passes.toml"
    text = path.read_text(encoding="utf-8")
    assert "max_tokens = 900" in text
    path.write_text(text.replace("max_tokens = 900", "max_tokens = 901"), encoding="utf-8")
    after = _versions()
    assert after["quotes"] != before["quotes"] and after["rate"] == before["rate"]


def test_the_decide_table_changes_the_version_but_not_what_the_model_is_asked(prompt_copy):
    before = load_strategy("rate")
    path = prompt_copy / "passes.toml"
    text = path.read_text(encoding="utf-8")
    assert "threshold = 1.0\n" in text
    path.write_text(text.replace("threshold = 1.0\n", "threshold = 1.5\n"), encoding="utf-8")
    after = load_strategy("rate")
    assert after.version != before.version  # recorded on every code: the codes may differ
    assert after.passes_version == before.passes_version  # the chunk cache key: no new LLM call
    assert after.decide == {"threshold": 1.5, "length_weight": 1.0, "label_weight": 1.0, "tail_share": 0.5,
                            "label_offsets": {"anxiety": -1.25}, "context_weight": 1.0, "context_sentences": 3,
                            "count_model": {"intercept": -7.126, "any_code": 0.608, "log_words": 1.698},
                            "count_range": [0.5, 2.0]}


def test_a_rating_pass_renders_the_sentence_last():
    rate = load_strategy("rate").passes[0]
    first = rate.render("EXCERPT", 3, "It broke again.")
    second = rate.render("EXCERPT", 4, "I loved it.")
    assert first[:-1] == second[:-1]
    assert first[-1]["content"].endswith('[3] "It broke again."')
    shared = len(first[-1]["content"]) - len('[3] "It broke again."')
    assert first[-1]["content"][:shared] == second[-1]["content"][:shared]  # one KV-cache prefix for all
    with pytest.raises(ValueError, match="one sentence at a time"):
        rate.render("EXCERPT")


def test_rating_examples_are_answered_turns_before_the_excerpt():
    rate = load_strategy("rate").passes[0]
    messages = rate.render("EXCERPT", 3, "It broke again.")
    assert messages[0]["role"] == "system" and "A worked example" not in messages[0]["content"]
    shots = messages[1:-1]
    assert shots and [m["role"] for m in shots] == ["user", "assistant"] * (len(shots) // 2)
    assert {m["content"] for m in shots[1::2]} == {"push", "pull", "anxiety", "habit", "trigger", "none"}
    assert shots[0]["content"].startswith(rate.excerpt_template.split("{excerpt}")[0])  # each example opens like the real call
    assert messages[-1] == {"role": "user", "content": rate.render("EXCERPT", 3, "It broke again.")[-1]["content"]}
    assert "EXCERPT" not in "".join(m["content"] for m in messages[:-1])  # the same prefix for every chunk
    assert load_strategy("quotes").passes[0].examples == ()


def test_editing_a_rating_example_changes_only_the_rating_strategies_versions(prompt_copy):
    before = _versions()
    path = prompt_copy / "rate_examples.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text + "\n# a comment is not asked of the model\n", encoding="utf-8")
    assert _versions() == before
    path.write_text(text.replace('code = "push" }', 'code = "anxiety" }', 1), encoding="utf-8")
    after = _versions()
    assert {name for name in before if before[name] != after[name]} == {"rate", "rate-v25"}


@pytest.mark.parametrize(("old", "new", "problem"), [
    ('code = "push" }', 'code = "pushy" }', "code 'pushy' is not one of push, pull"),
    ('n = 2, sentence = "Every week', 'n = 5, sentence = "Every week', r"'\[5\] Every week.*' is not in the example's excerpt"),
    ("[[examples]]", "[[example]]", "no \\[\\[examples\\]\\]"),
])
def test_a_broken_examples_file_is_a_clear_error(prompt_copy, old, new, problem):
    path = prompt_copy / "rate_examples.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ValueError, match=f"rate_examples.toml: .*{problem}"):
        load_strategy("rate")


@pytest.mark.parametrize(("setting", "problem"), [
    ('examples = "rate_examples.toml"', "rate_examples.toml: worked examples need a per-sentence pass"),
    ("window_tokens = 800", "quote_codes.md: window_tokens needs a per-sentence pass"),
])
def test_rating_settings_on_a_pass_that_does_not_rate_sentences_are_rejected(prompt_copy, setting, problem):
    path = prompt_copy / "passes.toml"
    text = path.read_text(encoding="utf-8")
    old = '{ prompt = "quote_codes.md", response_model = "QuotedCodes", max_tokens = 900 }'
    assert old in text
    path.write_text(text.replace(old, old[:-2] + f", {setting} }}"), encoding="utf-8")
    with pytest.raises(ValueError, match=problem):
        load_strategy("quotes")


def test_excerpt_template_without_placeholder_is_rejected(prompt_copy):
    (prompt_copy / "excerpt.md").write_text("No placeholder here.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="excerpt"):
        load_strategy("quotes")


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ValueError, match="unknown strategy 'nope'.*quotes, rate"):
        load_strategy("nope")


@pytest.mark.parametrize(("old", "new", "problem"), [
    ("window_overlap_tokens = 100", "window_overlap_tokens = 800", r"window_overlap_tokens \(800\) must be at least 0 and below window_tokens \(800\)"),
    ("window_tokens = 800", 'window_tokens = "800"', "window_tokens and window_overlap_tokens must be whole numbers"),
    ("window_tokens = 800, ", "", "window_overlap_tokens needs window_tokens"),
])
def test_a_bad_rating_window_is_a_clear_error(prompt_copy, old, new, problem):
    path = prompt_copy / "passes.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"passes.toml: \[strategies.rate\] pass rate_sentence.md: {problem}"):
        load_strategy("rate")


def test_the_rating_window_is_part_of_what_the_model_is_asked(prompt_copy):
    before = load_strategy("rate")
    assert before.passes[0].window == (800, 100) and before.passes[1].window == (800, 100)  # jobs: in its windows
    path = prompt_copy / "passes.toml"
    path.write_text(path.read_text(encoding="utf-8").replace("window_tokens = 800", "window_tokens = 900"), encoding="utf-8")
    after = load_strategy("rate")
    assert after.passes[0].window == (900, 100) and after.passes[1].window == (900, 100)
    assert after.passes_version != before.passes_version  # new requests: a new chunk cache key


def test_a_prompts_folder_overrides_the_bundled_files_it_holds(tmp_path):
    """--prompts-dir: a prompt experiment runs through the product; files it lacks stay bundled."""
    bundled = load_strategy("rate")
    (tmp_path / "rate_sentence.md").write_text((PROMPTS_DIR / "rate_sentence.md").read_text(encoding="utf-8")
                                               + "\nAnswer with one word.\n", encoding="utf-8")
    mine = load_strategy("rate", str(tmp_path))
    assert mine.passes[0].task.endswith("Answer with one word.") and mine.version != bundled.version
    assert mine.passes[1].task == bundled.passes[1].task  # jobs.md came from the package
    assert mine.passes[1].examples == mine.passes[0].examples  # the rating pass's examples, as asked now
    (tmp_path / "empty").mkdir()
    assert load_strategy("rate", str(tmp_path / "empty")) == bundled
    with pytest.raises(ValueError, match="not a folder"):
        load_strategy("rate", str(tmp_path / "missing"))
