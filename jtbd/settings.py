"""Settings: command-line flags > environment (JTBD_*) > a config file > defaults.

One typed model (pydantic-settings): every value is checked for its type (no float for a whole
number, no text for a number, one of the listed values for backend, llm_mode and embeddings) and
its range before any work, and a bad one is refused in one line naming it as the user gave it
(`--concurrency`, `environment variable JTBD_CONCURRENCY`, `jtbd.toml: timeout`).

The config file is TOML with the same keys as `Settings`, read from ``--config``,
``$JTBD_CONFIG``, ``./jtbd.toml`` or ``~/.config/jtbd-coder/config.toml`` (the first that
exists; a file named by --config or $JTBD_CONFIG must exist). API keys are read from the
environment only, never from a file, and never printed.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, TypeAdapter, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

MB = 2**20  # bytes in the MB of max_file_mb
# Larger transcript files are refused before they are read. An hour of interview is
# 7,000-10,000 words, about 60 kB of text or 1 MB as .docx; 20 MB leaves room for a
# day-long workshop or a .docx full of screenshots, yet stops a mislabelled recording,
# a log or a disk image from filling memory.
DEFAULT_MAX_FILE_MB = 20.0


def _data_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME")
    return (Path(base) if base else Path.home() / ".local" / "share") / "jtbd-coder"


# setting: (test, what is allowed). Outside these a value fails late (after the model is
# loaded, or in every chunk) or hangs, so it is refused before any work.
_RANGES = {
    "chunk_tokens": (lambda v: v >= 1, "1 or more"),
    "overlap_tokens": (lambda v: v >= 0, "0 or more"),
    "concurrency": (lambda v: v >= 0, "0 (automatic: 1 for the local model, 4 for a server) or more"),
    "n_ctx": (lambda v: v >= 1, "1 or more (tokens of the local model's context)"),
    "n_threads": (lambda v: v >= 0, "0 (every core) or more"),
    "max_retries": (lambda v: v >= 0, "0 or more"),
    "task_retries": (lambda v: v >= 0, "0 or more"),
    "timeout": (lambda v: math.isfinite(v) and v > 0, "a number of seconds above 0"),
    "max_file_mb": (lambda v: math.isfinite(v) and v > 0, "a number of MB above 0"),
}
_URL_EXAMPLES = {"base_url": "http://localhost:8080/v1", "chroma_url": "http://localhost:8000"}
DEFAULT_STUDY = "default"  # its collection is `collection` itself: stores of earlier versions keep working
STUDY_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,46}[A-Za-z0-9])?")  # a Chroma name's characters
CHROMA_NAME_MAX = 63
_LABELS = "a list of speaker labels (a TOML list of strings, or comma-separated in JTBD_INTERVIEWERS)"

# The sources load_settings puts below the values given to Settings(...): see settings_customise_sources.
_LAYERS: ContextVar[tuple[PydanticBaseSettingsSource, ...]] = ContextVar("jtbd_settings_layers", default=())


class Settings(BaseSettings):
    # strict: 2500.9 is no chunk size and true no concurrency (environment text is parsed by _Environment);
    # frozen: one Settings is shared by every Prefect task of a batch.
    model_config = SettingsConfigDict(frozen=True, strict=True, extra="forbid", case_sensitive=True)

    backend: Literal["local", "openai"] = "local"
    model: str = ""  # openai: the served model's name; local: defaults to the GGUF's name
    model_path: str = ""  # local: any GGUF; default: the assembled Qwen2.5-Coder-1.5B
    base_url: str = ""  # openai: any OpenAI-compatible endpoint (Ollama, vLLM, llama.cpp ...)
    extra_body: str = ""  # openai: JSON merged into each request, e.g. {"repeat_penalty": 1.0} for llama.cpp
    # auto: json_object_schema for llama.cpp in process, tools for servers (coding/backends.py MODES)
    llm_mode: Literal["auto", "tools", "json", "md_json", "json_schema", "json_object_schema"] = "auto"
    strategy: str = "rate"  # see prompts/passes.toml
    chunk_tokens: int = 2500  # fewer, larger chunks: prompt tokens are the cost on a CPU
    overlap_tokens: int = 200
    n_ctx: int = 6144
    n_threads: int = 0  # 0: every core
    concurrency: int = 0  # 0: 1 for the in-process model, 4 for a server
    max_retries: int = 2  # re-asks after a validation error
    task_retries: int = 3  # retries of a chunk after a transient error (timeout, 429, 5xx), with backoff
    timeout: float = 180.0
    seed: int = 0
    data_dir: str = Field(default_factory=lambda: str(_data_home()))
    chroma_url: str = ""  # empty: a persistent store under data_dir
    collection: str = "jtbd_codes"
    embeddings: Literal["local", "openai"] = "local"  # local (MiniLM int8 ONNX) | openai
    embedding_model: str = "text-embedding-3-small"
    interviewers: tuple[str, ...] = ()
    max_file_mb: float = DEFAULT_MAX_FILE_MB  # larger transcript files are refused unread
    prompts_dir: str = ""  # a folder of prompt files that overrides the bundled prompts/; empty: the bundled ones
    study: str = DEFAULT_STUDY  # a named study: its own Chroma collection and review records
    db_url: str = ""  # the review database, any SQLAlchemy URL; empty: SQLite at <data_dir>/reviews.sqlite3
    reviewer: str = ""  # who records review decisions; empty: the OS user
    # How ratings become codes (coding/learned.py): auto = the learned decision the strategy ships when it was
    # fitted on this model's ratings, else the [decide] rules; handmade = the [decide] rules; or a file `jtbd fit` wrote.
    decision: str = "auto"

    # How each value was given, so a bad one is named as the user wrote it (source_of). Not a setting.
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   **unused: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first: the flags (or the values given in code), then load_settings' environment and
        # config file. Settings(...) in code reads neither, whatever the environment or the working
        # directory holds: tests and eval build exactly the settings they name.
        return (init_settings, *_LAYERS.get())

    @field_validator(*_RANGES)
    @classmethod
    def _in_range(cls, value: float, info: Any) -> float:
        ok, allowed = _RANGES[info.field_name]
        if not ok(value):
            raise _OutOfRange(value, f"it must be {allowed}")
        return value

    @field_validator("base_url", "chroma_url")
    @classmethod
    def _http_url(cls, value: str, info: Any) -> str:
        if value and not _is_http_url(value):
            # Without a scheme the clients read "localhost" as one and retry a connection for half a minute.
            raise ValueError("it must be a URL that starts with http:// or https://, "
                             f"e.g. {_URL_EXAMPLES[info.field_name]}")
        return value

    @field_validator("study")
    @classmethod
    def _study_name(cls, value: str) -> str:
        if not STUDY_NAME.fullmatch(value):
            raise ValueError("it must be a study name: letters, digits, - and _, starting and ending with a "
                             "letter or digit, at most 48 characters, e.g. onboarding-2024")
        return value

    @field_validator("db_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        if not value:
            return value
        from sqlalchemy.engine import make_url  # here: only a given URL needs it

        try:
            url = make_url(value)
        except Exception:  # ArgumentError, or a port that is not a number
            raise ValueError("it must be a SQLAlchemy database URL, e.g. sqlite:////home/me/reviews.sqlite3 "
                             "or postgresql://db.example.org/reviews") from None
        if url.password:  # settings are printed and sent to Prefect as the flow's parameters
            raise _OutOfRange(url.render_as_string(hide_password=True),
                              "it must not hold a password: put it in JTBD_DB_PASSWORD")
        return value

    @field_validator("extra_body")
    @classmethod
    def _json_object(cls, value: str) -> str:
        problem = _json_object_problem(value) if value else ""
        if problem:  # else each transcript fails with it, after the model work before it
            raise ValueError(f"it must be a JSON object, e.g. '{{\"repeat_penalty\": 1.0}}' ({problem})")
        return value

    @field_validator("interviewers", mode="before")
    @classmethod
    def _labels(cls, value: Any) -> tuple[str, ...]:
        # A TOML list, the repeated --interviewer flag, or "Sam, Alex" from the environment.
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"it must be {_LABELS}")
        return tuple(v.strip() for v in value if v.strip())

    @property
    def api_key(self) -> str:
        # Local servers accept any key; the OpenAI client insists on one.
        return os.environ.get("JTBD_API_KEY") or os.environ.get("OPENAI_API_KEY") or "not-needed"

    @property
    def effective_concurrency(self) -> int:
        if self.concurrency > 0:
            return self.concurrency
        return 1 if self.backend == "local" else 4

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * MB)

    @property
    def chroma_path(self) -> Path:
        return Path(self.data_dir) / "chroma"

    @property
    def results_path(self) -> Path:
        return Path(self.data_dir) / "results"

    @property
    def study_collection(self) -> str:
        """The study's Chroma collection: `collection` for the default study, else `<collection>__<study>`."""
        return study_collection(self.collection, self.study)

    @property
    def review_db_url(self) -> str:
        """The review database's URL, with the password from JTBD_DB_PASSWORD (never kept in a setting)."""
        if not self.db_url:
            return f"sqlite:///{Path(self.data_dir) / 'reviews.sqlite3'}"
        password = os.environ.get("JTBD_DB_PASSWORD")
        if not password:
            return self.db_url
        from sqlalchemy.engine import make_url

        return make_url(self.db_url).set(password=password).render_as_string(hide_password=False)

    @property
    def reviewer_name(self) -> str:
        if self.reviewer:
            return self.reviewer
        import getpass

        try:
            return getpass.getuser()
        except Exception:  # no user name in the environment or the password database (a bare container)
            return "unknown"

    def public(self) -> dict[str, Any]:
        """Every setting, safe to print or store (no secrets live in Settings)."""
        return {name: getattr(self, name) for name in type(self).model_fields}


class _OutOfRange(ValueError):
    """A value of the right type outside its range; it keeps the value as checked (0.0 for a TOML 0)."""

    def __init__(self, value: Any, allowed: str) -> None:
        super().__init__(allowed)
        self.value = value


def study_collection(collection: str, study: str) -> str:
    return collection if study == DEFAULT_STUDY else f"{collection}__{study}"


def study_of_collection(collection: str, name: str) -> str | None:
    """The study whose collection `name` is (the inverse of study_collection), or None."""
    if name == collection:
        return DEFAULT_STUDY
    study = name.removeprefix(collection + "__")
    return study if study != name and STUDY_NAME.fullmatch(study) else None


_ENV_ALIASES = {"base_url": ("JTBD_BASE_URL", "OPENAI_BASE_URL")}
_FLAGS = {"interviewers": "--interviewer", "db_url": "--db"}  # the flag is given once per interviewer


class _Environment(PydanticBaseSettingsSource):
    """JTBD_<SETTING> variables (and the _ENV_ALIASES); `found` names the variable behind each value."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.found: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        for name, field in settings_cls.model_fields.items():
            value, var, _ = self.get_field_value(field, name)
            if var:
                self.found[name], self.values[name] = var, value

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        for var in _ENV_ALIASES.get(field_name, (f"JTBD_{field_name.upper()}",)):
            if os.environ.get(var):  # an empty variable is no value
                return _parsed(field.annotation, os.environ[var]), var, False
        return None, "", False

    def __call__(self) -> dict[str, Any]:
        return self.values


def _parsed(kind: Any, text: str) -> Any:
    """A number from a variable's text ("3", "12.5"); anything else as given, for Settings to check.
    Parsed as text, not as JSON: "true" or "2500.9" is no whole number."""
    if kind not in (int, float):
        return text
    try:
        return TypeAdapter(kind).validate_strings(text)
    except ValidationError:
        return text  # refused by Settings, naming the variable


class MissingConfigFile(FileNotFoundError, ValueError):
    """--config or $JTBD_CONFIG names no file: a missing file, and a bad setting (exit status 2)."""


def config_file(explicit: str | None = None) -> Path | None:
    # A file the user named must exist: reading ./jtbd.toml or defaults instead would hide a typo.
    for named, where in ((explicit, "--config"), (os.environ.get("JTBD_CONFIG"), "environment variable JTBD_CONFIG")):
        if named:
            if not Path(named).is_file():
                problem = "a folder, not a file" if Path(named).is_dir() else "no such file"
                raise MissingConfigFile(f"{where} is {str(named)!r}: {problem} (it must name a TOML settings file)")
            return Path(named)
    for candidate in (Path("jtbd.toml"), Path.home() / ".config" / "jtbd-coder" / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def _config_source(path: Path) -> TomlConfigSettingsSource:
    try:
        return TomlConfigSettingsSource(Settings, toml_file=path)
    except (ValueError, OSError) as err:  # TOMLDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{path}: not a valid TOML settings file ({err})") from err


def _given(flags: dict[str, Any] | None) -> dict[str, Any]:
    """The flags that were given: None, "" and an empty list mean "not on the command line"."""
    given = {key: value for key, value in (flags or {}).items() if value not in (None, (), [], "")}
    unknown = set(given) - set(Settings.model_fields)
    if unknown:  # a caller's mistake, like an unknown keyword argument; the API key is never a flag
        raise TypeError(f"not settings: {', '.join(sorted(unknown))}")
    return given


def load_settings(flags: dict[str, Any] | None = None, config: str | None = None) -> Settings:
    given, env, path = _given(flags), _Environment(Settings), config_file(config)
    file = _config_source(path) if path else None
    sources = {key: f"{path}: {key}" for key in (file.toml_data if file else {})}
    sources |= {name: f"environment variable {var}" for name, var in env.found.items()}
    sources |= {key: _FLAGS.get(key, "--" + key.replace("_", "-")) for key in given}
    token = _LAYERS.set((env, file) if file else (env,))
    try:
        settings = _validated(given, sources)
    finally:
        _LAYERS.reset(token)
    _check(settings)
    return settings


def with_changes(settings: Settings, **changes: Any) -> Settings:
    """A copy with some values changed, checked like loaded ones (model_copy(update=...) checks nothing).
    A changed value was set in code; the others keep the names they were given by."""
    unknown = set(changes) - set(Settings.model_fields)
    if unknown:
        raise TypeError(f"not settings: {', '.join(sorted(unknown))}")
    sources = {name: how for name, how in settings._sources.items() if name not in changes}
    changed = _validated(settings.public() | changes, sources)
    _check(changed)
    return changed


def _validated(values: dict[str, Any], sources: dict[str, str]) -> Settings:
    try:
        settings = Settings(**values)
    except ValidationError as err:
        raise ValueError(_one_line(err, sources)) from None  # pydantic's own report is several lines
    settings._sources = sources
    return settings


def source_of(settings: Settings, name: str, sources: dict[str, str] | None = None) -> str:
    """How a setting was given: '--chunk-tokens', 'environment variable JTBD_CHUNK_TOKENS' or
    'jtbd.toml: chunk_tokens'; 'setting chunk_tokens' for a default or a value set in code."""
    return _named(name, sources if sources is not None else settings._sources)


def _named(name: str, sources: dict[str, str]) -> str:
    return sources.get(name, f"setting {name}")


def _shown(value: Any) -> str:
    """A value in one line: repr escapes line breaks; a long JSON body is cut."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(err: ValidationError, sources: dict[str, str]) -> str:
    """The first problem pydantic found, as '<how it was given> is <value>: <what is allowed>'."""
    problem = err.errors(include_url=False)[0]
    name = str(problem["loc"][0])
    where = _named(name, sources)
    if problem["type"] == "extra_forbidden":  # only a config file can hold another key
        if name == "api_key":  # the key's value is not shown
            return f"{where}: API keys are read from the environment only (JTBD_API_KEY or OPENAI_API_KEY)"
        close = difflib.get_close_matches(name, Settings.model_fields, n=1)
        return f"{where} is not a setting" + (f" (did you mean {close[0]}?)" if close else "")
    error = (problem.get("ctx") or {}).get("error")
    if problem["type"] != "value_error":  # the wrong type, or not one of the listed values
        return f"{where} is {_shown(problem['input'])}: {_allowed(name)}"
    return f"{where} is {_shown(getattr(error, 'value', problem['input']))}: {error}"


def _allowed(name: str) -> str:
    """What a setting takes, for a value of the wrong type."""
    kind = Settings.model_fields[name].annotation
    if get_origin(kind) is Literal:
        choices = [repr(choice) for choice in get_args(kind)]
        return f"it must be {', '.join(choices[:-1])} or {choices[-1]}"
    if kind is int:
        return "it must be a whole number" + (f", {_RANGES[name][1]}" if name in _RANGES else "")
    if kind is float:
        return f"it must be {_RANGES[name][1] if name in _RANGES else 'a number'}"
    if kind is str:
        return "it must be text (in quotes in a TOML file)"
    return f"it must be {_LABELS}"


def _check(s: Settings) -> None:
    """What no single value shows: the combinations of values."""
    if s.backend == "openai" and not s.model:
        raise ValueError("the openai backend needs a model name: --model or JTBD_MODEL")
    if s.study != DEFAULT_STUDY and len(s.study_collection) > CHROMA_NAME_MAX:
        raise ValueError(f"{source_of(s, 'study')} is {s.study!r}: with {source_of(s, 'collection')} "
                         f"{s.collection!r} its Chroma collection {s.study_collection!r} is longer than "
                         f"{CHROMA_NAME_MAX} characters; choose a shorter study name")
    if s.overlap_tokens >= s.chunk_tokens:
        raise ValueError(f"{source_of(s, 'overlap_tokens')} is {s.overlap_tokens}: overlap_tokens must be smaller "
                         f"than chunk_tokens ({source_of(s, 'chunk_tokens')} is {s.chunk_tokens})")


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _json_object_problem(text: str) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        return f"not valid JSON: {err.msg} at column {err.colno}"
    except (RecursionError, ValueError):  # nested too deeply, or an integer of thousands of digits
        return "not valid JSON"
    kinds = {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true or false"}
    return "" if isinstance(value, dict) else f"not an object but {kinds.get(type(value), 'null')}"
