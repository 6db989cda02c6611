"""Settings are one typed model: every value is checked for its type as well as its range, and a bad
one is refused in one line naming it as the user wrote it (flag, JTBD_* variable or config file key),
the value, and what is allowed. A named config file that is missing is refused too."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from conftest import isolate_env
from jtbd.settings import Settings, load_settings, source_of


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch) -> Path:
    return isolate_env(tmp_path, monkeypatch)


def _toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _refusal(**kwargs) -> str:
    with pytest.raises(ValueError) as raised:
        load_settings(**kwargs)
    return str(raised.value)


# --- types: nothing is truncated or guessed ------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("chunk_tokens = 2500.9\n", "cfg.toml: chunk_tokens is 2500.9: it must be a whole number, 1 or more"),
    ("n_ctx = 6144.0\n", "cfg.toml: n_ctx is 6144.0: it must be a whole number"),
    ("concurrency = true\n", "cfg.toml: concurrency is True: it must be a whole number"),
    ('timeout = "soon"\n', "cfg.toml: timeout is 'soon': it must be a number of seconds above 0"),
    ("model = 7\n", "cfg.toml: model is 7: it must be text"),
])
def test_a_toml_value_of_the_wrong_type_is_refused_naming_file_and_key(clean_env, text, expected):
    path = _toml(clean_env / "cfg.toml", text)
    assert _refusal(config=str(path)).startswith(f"{clean_env}/{expected}")


@pytest.mark.parametrize(("var", "value", "expected"), [
    ("JTBD_CHUNK_TOKENS", "2500.9", "environment variable JTBD_CHUNK_TOKENS is '2500.9': it must be a whole number"),
    ("JTBD_CONCURRENCY", "abc", "environment variable JTBD_CONCURRENCY is 'abc': it must be a whole number, 0 "),
    ("JTBD_CONCURRENCY", "true", "environment variable JTBD_CONCURRENCY is 'true': it must be a whole number"),
    ("JTBD_TIMEOUT", "soon", "environment variable JTBD_TIMEOUT is 'soon': it must be a number of seconds"),
])
def test_an_environment_value_that_is_no_number_is_refused(monkeypatch, var, value, expected):
    monkeypatch.setenv(var, value)
    assert _refusal().startswith(expected)


def test_a_float_flag_for_a_whole_number_setting_is_refused():
    assert _refusal(flags={"concurrency": 2.5}).startswith("--concurrency is 2.5: it must be a whole number")


# --- enums ----------------------------------------------------------------------------


@pytest.mark.parametrize(("var", "value", "allowed"), [
    ("JTBD_LLM_MODE", "grammar", "'auto', 'tools', 'json', 'md_json', 'json_schema' or 'json_object_schema'"),
    ("JTBD_EMBEDDINGS", "cohere", "'local' or 'openai'"),
    ("JTBD_BACKEND", "cloud", "'local' or 'openai'"),
])
def test_a_bad_enum_value_names_the_allowed_values(monkeypatch, var, value, allowed):
    monkeypatch.setenv(var, value)
    assert _refusal() == f"environment variable {var} is {value!r}: it must be {allowed}"


# --- which file -----------------------------------------------------------------------


def test_jtbd_config_naming_a_missing_file_is_refused(clean_env, monkeypatch):
    _toml(clean_env / "cwd" / "jtbd.toml", 'model = "fallback"\n')  # must not be read instead
    missing = clean_env / "nope.toml"
    monkeypatch.setenv("JTBD_CONFIG", str(missing))
    message = _refusal()
    assert message.startswith(f"environment variable JTBD_CONFIG is {str(missing)!r}: ")
    assert "no such file" in message


def test_a_missing_config_flag_does_not_fall_back_to_jtbd_toml(clean_env):
    _toml(clean_env / "cwd" / "jtbd.toml", 'model = "fallback"\n')
    missing = clean_env / "nope.toml"
    assert _refusal(config=str(missing)).startswith(f"--config is {str(missing)!r}: ")


# --- precedence, per source -----------------------------------------------------------


@pytest.mark.parametrize(("name", "file", "env", "flag", "bad"), [
    ("prompts_dir", '"file-prompts"', "env-prompts", "flag-prompts", 3),  # any text is a folder name
    ("timeout", "60", "90.5", 120.0, "slow"),
    ("llm_mode", '"json"', "md_json", "json_schema", "grammar"),
    ("n_ctx", "4096", "8192", 2048, 1.5),
])
def test_flag_beats_env_beats_toml_beats_default_per_source(clean_env, monkeypatch, name, file, env, flag, bad):
    path = _toml(clean_env / "cfg.toml", f"{name} = {file}\n")
    option, var, key = "--" + name.replace("_", "-"), f"JTBD_{name.upper()}", f"{path}: {name}"

    default = load_settings()
    assert source_of(default, name) == f"setting {name}" and getattr(default, name) == getattr(Settings(), name)
    from_file = load_settings(config=str(path))
    assert source_of(from_file, name) == key and getattr(from_file, name) != getattr(default, name)
    monkeypatch.setenv(var, env)
    from_env = load_settings(config=str(path))
    assert source_of(from_env, name) == f"environment variable {var}"
    assert getattr(from_env, name) not in (getattr(from_file, name), getattr(default, name))
    from_flag = load_settings({name: flag}, config=str(path))
    assert (source_of(from_flag, name), getattr(from_flag, name)) == (option, flag)

    # a bad value at each level is named as that level
    assert _refusal(flags={name: bad}, config=str(path)).startswith(f"{option} is {bad!r}: it must be ")
    if not isinstance(bad, int):  # from the environment every value is text
        monkeypatch.setenv(var, str(bad))
        assert _refusal(config=str(path)).startswith(f"environment variable {var} is {str(bad)!r}: it must be ")
    monkeypatch.delenv(var)
    _toml(path, f"{name} = {bad!r}\n".replace("'", '"'))
    assert _refusal(config=str(path)).startswith(f"{key} is {bad!r}: it must be ")


# --- one line, before any work ----------------------------------------------------------


@pytest.fixture()
def cli(monkeypatch, capsys):
    """`jtbd code` in process; nothing may be coded or opened."""
    from rich.console import Console

    import jtbd.cli
    import jtbd.flows.code_batch

    def no_work(*args, **kwargs):
        pytest.fail("work started although a setting is bad")

    monkeypatch.setattr(jtbd.flows.code_batch, "run_batch", no_work)
    monkeypatch.setattr(jtbd.cli, "_open_store", no_work)
    monkeypatch.setattr(jtbd.cli, "console", Console(stderr=True, width=1000))  # a wrapped line is no proof

    def run(*argv: str) -> tuple[int, list[str]]:
        code = jtbd.cli.main(["code", *argv])
        return code, capsys.readouterr().err.splitlines()

    return run


@pytest.mark.parametrize(("toml", "env", "named"), [
    ("chunk_tokens = 2500.9\n", {}, "error: jtbd.toml: chunk_tokens is 2500.9: it must be a whole number"),
    ('chunk_tokens = "1\\n2"\n', {}, "error: jtbd.toml: chunk_tokens is '1\\n2': it must be a whole number"),
    ("", {"JTBD_LLM_MODE": "grammar"}, "error: environment variable JTBD_LLM_MODE is 'grammar': it must be 'auto'"),
    ("", {"JTBD_CONFIG": "/nowhere/jtbd.toml"}, "error: environment variable JTBD_CONFIG is '/nowhere/jtbd.toml'"),
    ("chunk_tokns = 10\n", {}, "error: jtbd.toml: chunk_tokns is not a setting (did you mean chunk_tokens?)"),
])
def test_a_bad_setting_is_one_line_and_exit_status_2(cli, clean_env, monkeypatch, toml, env, named):
    if toml:
        _toml(clean_env / "cwd" / "jtbd.toml", toml)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    transcript = _toml(clean_env / "t.txt", "Interviewer: Why?\nPriya: It broke.\n")
    code, lines = cli(str(transcript))
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(named), lines[0]


def test_with_changes_checks_the_new_values_and_keeps_the_other_sources(monkeypatch):
    from jtbd.settings import with_changes

    monkeypatch.setenv("JTBD_CHUNK_TOKENS", "1000")
    loaded = load_settings({"concurrency": 2})
    changed = with_changes(loaded, collection="eval", n_ctx=4096)
    assert (changed.collection, changed.n_ctx, changed.chunk_tokens, loaded.collection) == (
        "eval", 4096, 1000, "jtbd_codes")
    assert source_of(changed, "chunk_tokens") == "environment variable JTBD_CHUNK_TOKENS"
    assert source_of(changed, "concurrency") == "--concurrency"
    assert source_of(changed, "collection") == "setting collection"  # set in code
    with pytest.raises(ValueError, match=r"^setting n_ctx is 2\.5: it must be a whole number"):
        with_changes(loaded, n_ctx=2.5)
    with pytest.raises(ValueError, match=r"^setting overlap_tokens is 1000: overlap_tokens must be smaller than "
                                         r"chunk_tokens \(environment variable JTBD_CHUNK_TOKENS is 1000\)$"):
        with_changes(loaded, overlap_tokens=1000)
    with pytest.raises(TypeError, match="chunk_tokns"):
        with_changes(loaded, chunk_tokns=1)


# --- guards: what the rest of the code relies on (these passed before, too) --------------


def test_settings_stay_frozen_hashable_and_picklable_with_their_sources(monkeypatch):
    monkeypatch.setenv("JTBD_TIMEOUT", "30")
    s = load_settings({"interviewers": ["Sam"]})
    with pytest.raises((AttributeError, TypeError, ValueError)):
        s.timeout = 1.0  # type: ignore[misc]
    assert hash(s) == hash(pickle.loads(pickle.dumps(s)))
    again = pickle.loads(pickle.dumps(s))
    assert again == s and again.interviewers == ("Sam",) and again.timeout == 30.0
    assert source_of(again, "timeout") == "environment variable JTBD_TIMEOUT"
    assert Settings().timeout == 180.0  # built in code: only the values given, no environment
