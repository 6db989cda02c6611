"""Settings precedence: flags > JTBD_* environment > TOML config file > defaults; keys from the environment only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jtbd.settings import Settings, config_file, load_settings


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch) -> Path:
    """No JTBD_*/OPENAI_* variables, an empty home and an empty working directory."""
    for var in list(os.environ):
        if var.startswith(("JTBD_", "OPENAI_")) or var == "XDG_DATA_HOME":
            monkeypatch.delenv(var)
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults(clean_env):
    s = load_settings()
    assert s == Settings()
    assert (s.backend, s.strategy, s.chunk_tokens, s.overlap_tokens, s.interviewers) == (
        "local", "rate", 2500, 200, ())
    assert Path(s.data_dir) == clean_env / "home" / ".local" / "share" / "jtbd-coder"
    assert s.effective_concurrency == 1


def test_xdg_data_home_moves_the_data_dir(clean_env, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(clean_env / "xdg"))
    assert Path(load_settings().data_dir) == clean_env / "xdg" / "jtbd-coder"


CONFIG = """\
strategy = "quotes"
chunk_tokens = 1000
overlap_tokens = 100
model = "from-file"
interviewers = ["Sam", "Alex"]
"""


@pytest.mark.parametrize(("field", "file", "env", "flag", "coerced"), [
    ("chunk_tokens", 1000, "1200", 1300, int),
    ("strategy", "quotes", "sentences", "quotes", str),
    ("model", "from-file", "from-env", "from-flag", str),
    ("interviewers", ("Sam", "Alex"), "Kim, Lee", ["Pat"], tuple),
])
def test_flags_beat_env_beat_file_beat_defaults(clean_env, monkeypatch, field, file, env, flag, coerced):
    path = write(clean_env / "cfg.toml", CONFIG)
    default = getattr(Settings(), field)

    from_file = getattr(load_settings(config=str(path)), field)
    assert from_file == file and from_file != default

    monkeypatch.setenv(f"JTBD_{field.upper()}", env)
    from_env = getattr(load_settings(config=str(path)), field)
    expected_env = tuple(v.strip() for v in env.split(",")) if coerced is tuple else coerced(env)
    assert from_env == expected_env and isinstance(from_env, coerced)

    from_flag = getattr(load_settings({field: flag}, config=str(path)), field)
    assert from_flag == (tuple(flag) if coerced is tuple else flag)


def test_env_values_are_coerced_to_the_field_type(monkeypatch):
    monkeypatch.setenv("JTBD_TIMEOUT", "12.5")
    monkeypatch.setenv("JTBD_CONCURRENCY", "3")
    monkeypatch.setenv("JTBD_INTERVIEWERS", " Sam ,, Alex ,")
    s = load_settings()
    assert (s.timeout, s.concurrency, s.interviewers) == (12.5, 3, ("Sam", "Alex"))
    assert s.effective_concurrency == 3


def test_empty_env_and_empty_flags_do_not_override(clean_env, monkeypatch):
    path = write(clean_env / "cfg.toml", CONFIG)
    monkeypatch.setenv("JTBD_MODEL", "")
    s = load_settings({"model": None, "strategy": "", "interviewers": (), "chunk_tokens": None}, config=str(path))
    assert (s.model, s.strategy, s.interviewers, s.chunk_tokens) == ("from-file", "quotes", ("Sam", "Alex"), 1000)


def test_zero_flag_is_a_value(monkeypatch):
    monkeypatch.setenv("JTBD_CONCURRENCY", "4")
    assert load_settings({"concurrency": 0}).concurrency == 0


def test_base_url_prefers_jtbd_then_openai_variable(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://openai-var/v1")
    assert load_settings().base_url == "http://openai-var/v1"
    monkeypatch.setenv("JTBD_BASE_URL", "http://jtbd-var/v1")
    assert load_settings().base_url == "http://jtbd-var/v1"
    assert load_settings({"base_url": "http://flag/v1"}).base_url == "http://flag/v1"


# --- which config file --------------------------------------------------------


def test_config_file_search_order(clean_env, monkeypatch):
    user = write(clean_env / "home" / ".config" / "jtbd-coder" / "config.toml", 'model = "user"\n')
    assert config_file() == user and load_settings().model == "user"
    local = write(clean_env / "cwd" / "jtbd.toml", 'model = "local"\n')
    assert config_file().resolve() == local and load_settings().model == "local"
    env = write(clean_env / "env.toml", 'model = "env"\n')
    monkeypatch.setenv("JTBD_CONFIG", str(env))
    assert config_file() == env and load_settings().model == "env"
    explicit = write(clean_env / "explicit.toml", 'model = "explicit"\n')
    assert config_file(str(explicit)) == explicit and load_settings(config=str(explicit)).model == "explicit"


def test_no_config_file_is_fine():
    assert config_file() is None


def test_missing_explicit_config_names_the_file(clean_env):
    missing = clean_env / "nope.toml"
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_settings(config=str(missing))


def test_unknown_key_names_the_file_and_key(clean_env):
    path = write(clean_env / "typo.toml", 'chunk_tokns = 10\n')
    with pytest.raises(ValueError, match=r"typo\.toml.*chunk_tokns"):
        load_settings(config=str(path))


@pytest.mark.parametrize("text", ["chunk_tokens = \n", 'model = "unterminated\n', "[oops\n", "= 3\n"])
def test_malformed_config_file_error_names_the_file(clean_env, text):
    path = write(clean_env / "broken.toml", text)
    with pytest.raises(ValueError, match=r"broken\.toml"):
        load_settings(config=str(path))


def test_non_utf8_config_file_error_names_the_file(clean_env):
    path = clean_env / "latin1.toml"
    path.write_bytes('model = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.toml"):
        load_settings(config=str(path))


@pytest.mark.parametrize("text", ['chunk_tokens = "many"\n', 'timeout = "soon"\n'])
def test_wrongly_typed_config_value_error_names_the_file(clean_env, text):
    path = write(clean_env / "typed.toml", text)
    with pytest.raises(ValueError, match=r"typed\.toml"):
        load_settings(config=str(path))


# --- checks -------------------------------------------------------------------


@pytest.mark.parametrize(("flags", "message"), [
    ({"backend": "cloud"}, "--backend is 'cloud': it must be 'local' or 'openai'"),
    ({"backend": "openai"}, "needs a model name"),
    ({"chunk_tokens": 100, "overlap_tokens": 100}, "overlap_tokens must be smaller"),
])
def test_invalid_combinations_are_rejected(flags, message):
    with pytest.raises(ValueError, match=message):
        load_settings(flags)


def test_openai_backend_with_model_from_env(monkeypatch):
    monkeypatch.setenv("JTBD_BACKEND", "openai")
    monkeypatch.setenv("JTBD_MODEL", "qwen")
    s = load_settings()
    assert (s.backend, s.model, s.effective_concurrency) == ("openai", "qwen", 4)


# --- API keys -----------------------------------------------------------------


def test_api_key_only_from_the_environment(monkeypatch):
    assert Settings().api_key == "not-needed"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    assert load_settings().api_key == "sk-openai"
    monkeypatch.setenv("JTBD_API_KEY", "sk-jtbd")
    s = load_settings()
    assert s.api_key == "sk-jtbd"
    assert "api_key" not in s.public()
    assert "sk-jtbd" not in repr(s) and "sk-jtbd" not in repr(s.public())


def test_api_key_in_a_config_file_is_refused(clean_env):
    path = write(clean_env / "keys.toml", 'api_key = "sk-from-file"\n')
    with pytest.raises(ValueError, match=r"keys\.toml.*api_key"):
        load_settings(config=str(path))


def test_api_key_is_not_a_flag():
    with pytest.raises(TypeError):
        load_settings({"api_key": "sk-flag"})
