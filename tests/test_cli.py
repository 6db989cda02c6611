"""The command line: one typer app in jtbd.cli, run through `main` as the `jtbd` script runs it.

Every command's help shows an example; usage errors are one line and exit 2; every setting is a
flag that reaches load_settings only when given; jtbd.eval never imports the command line."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import typing
from importlib.metadata import version

import pytest
import typer

import jtbd.cli

COMMANDS = [["code"], ["search"], ["list"], ["forget"], ["eval"], ["gold", "check"], ["model"], ["export"], ["serve"],
            ["redecide"]]


@pytest.fixture()
def run(monkeypatch, capsys):
    """`jtbd ARGV` in process: (exit status, stdout, stderr lines)."""
    from rich.console import Console

    # A wide console: a line that wraps at 80 columns would look like two.
    monkeypatch.setattr(jtbd.cli, "console", Console(stderr=True, width=1000))

    def run(*argv: str) -> tuple[int, str, list[str]]:
        status = jtbd.cli.main(list(argv))
        said = capsys.readouterr()
        return status, said.out, said.err.splitlines()

    return run


def _setting_names() -> set[str]:
    from jtbd.settings import Settings

    if dataclasses.is_dataclass(Settings):
        return {f.name for f in dataclasses.fields(Settings)}
    return set(Settings.model_fields)  # a pydantic model


def test_version_prints_the_installed_packages_version(run):
    assert run("--version") == (0, f"jtbd-coder {version('jtbd-coder')}\n", [])


def test_the_top_level_help_lists_every_command_and_the_exit_statuses(run):
    status, shown, _ = run("--help")
    assert status == 0
    for name in ("code", "search", "list", "forget", "eval", "gold", "model"):
        assert re.search(rf"^\W*{name}\s+\w", shown, re.M), name
    lines = [" ".join(line.strip("│ ").split()) for line in shown.splitlines()]
    assert "0 ok" in lines
    assert any(line.startswith("1 some inputs failed") for line in lines)
    assert any(line.startswith("2 usage or setup error") for line in lines)


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_commands_help_shows_an_example(run, command):
    status, shown, _ = run(*command, "--help")
    assert status == 0
    example = re.search(r"^\s*Example:\s*\n\s*(jtbd .*)$", shown, re.M)
    assert example, shown
    assert example.group(1).split()[:len(command) + 1] == ["jtbd", *command], example.group(1)


@pytest.mark.parametrize(("argv", "said"), [
    (["code", "t.txt", "--chunk-token", "300"], "No such option: --chunk-token (Possible options: --chunk-tokens)"),
    (["code"], "Missing argument 'PATH'"),
    (["serach", "price"], "No such command 'serach'"),
    (["search", "price", "-k", "many"], "'-k'"),
    (["gold", "check"], "Missing argument 'FOLDER'"),
])
def test_a_usage_error_is_one_line_and_exit_status_2(run, argv, said):
    status, shown, lines = run(*argv)
    assert (status, shown, len(lines)) == (2, "", 1), lines
    assert lines[0].startswith("error: ") and said in lines[0], lines[0]


@pytest.mark.parametrize(("argv", "option"), [
    (["code", "t.txt", "--backend", "cloud"], "--backend"),
    (["code", "t.txt", "--llm-mode", "grammar"], "--llm-mode"),
    (["code", "t.txt", "--chunk-tokens", "lots"], "--chunk-tokens"),
    (["eval", "--split", "train"], "--split"),
    (["search", "price", "--embeddings", "cohere"], "--embeddings"),
    (["search", "price", "--kind", "pain"], "--kind"),
])
def test_an_unknown_value_exits_2_naming_the_option(run, argv, option):
    status, shown, lines = run(*argv)
    assert (status, shown, len(lines)) == (2, "", 1), lines
    assert lines[0].startswith("error: ") and f"'{option}'" in lines[0], lines[0]


def _sample(name: str) -> str:
    """A value the flag of setting `name` parses (load_settings, faked below, never sees it checked)."""
    kind = jtbd.cli.SETTING_OPTIONS[name][0]
    if typing.get_origin(kind) is typing.Literal:
        return typing.get_args(kind)[-1]
    return {int: "3", float: "1.5"}.get(kind, "x")


@pytest.mark.parametrize("command", [["code", "t.txt"], ["eval"]], ids=lambda c: c[0])
def test_every_setting_is_a_flag_and_only_the_flags_given_reach_load_settings(run, monkeypatch, command):
    seen = []

    def load_settings(flags, config=None):
        seen.append((flags, config))
        raise ValueError("stop here")  # main says it in one line, exit status 2

    monkeypatch.setattr(jtbd.cli, "load_settings", load_settings)
    assert run(*command) == (2, "", ["error: stop here"])
    assert seen.pop() == ({}, None)  # nothing given: the environment and the config file decide

    params = typer.main.get_command(jtbd.cli.app).commands[command[0]].params
    flags = {p.name: p.opts[0] for p in params if p.name in _setting_names()}
    assert set(flags) == _setting_names(), "a setting without a flag"
    argv = [arg for name, flag in flags.items() for arg in (flag, _sample(name))]
    assert run(*command, *argv, "--interviewer", "Tom", "--config", "my.toml")[0] == 2
    given, config = seen.pop()
    assert config == "my.toml" and given.keys() == flags.keys()
    assert given["interviewers"] == ("x", "Tom") and given["chunk_tokens"] == 3 and given["timeout"] == 1.5


@pytest.fixture()
def clean_env(tmp_path, monkeypatch):
    """No JTBD_*/OPENAI_* variables, no config file."""
    for var in [v for v in os.environ if v.startswith(("JTBD_", "OPENAI_"))]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_value_load_settings_refuses_is_one_line_naming_the_flag(run, clean_env):
    status, shown, lines = run("search", "price", "--timeout", "0", "--data-dir", str(clean_env))
    assert (status, shown, len(lines)) == (2, "", 1), lines
    assert lines[0].startswith("error: --timeout is 0") and "it must be" in lines[0], lines[0]


def test_a_store_not_made_yet_is_one_line_and_exit_status_2(run, clean_env):
    status, shown, lines = run("list", "--data-dir", str(clean_env / "nothing-yet"))
    assert (status, shown) == (2, "") and lines == [
        f"error: no coded transcripts yet in {clean_env / 'nothing-yet' / 'chroma'}; run 'jtbd code' first"]


def test_jtbd_alone_shows_the_help_and_exits_2(run):
    status, shown, _ = run()
    assert status == 2 and "Usage: jtbd" in shown and "Exit status" in shown


def test_importing_the_evaluation_does_not_import_the_command_line(tmp_path):
    """No cycle: jtbd.cli imports jtbd.eval, never the other way round."""
    script = ("import importlib, pkgutil, sys, jtbd.eval\n"
              "names = [m.name for m in pkgutil.iter_modules(jtbd.eval.__path__)]\n"
              "for name in names: importlib.import_module('jtbd.eval.' + name)\n"
              "print(sorted(names), 'jtbd.cli' in sys.modules)\n")
    # From outside the repository root: there ./jtbd would hide the installed jtbd.eval mapping.
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    modules, imported = done.stdout.rsplit(" ", 1)
    assert "'cli'" in modules and "'runner'" in modules and "'score'" in modules
    assert imported.strip() == "False"


def test_no_evaluation_module_imports_the_command_line_even_inside_a_function():
    import ast
    import importlib.util
    from pathlib import Path

    folder = Path(importlib.util.find_spec("jtbd.eval").submodule_search_locations[0])
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            found += [f"{path.name}: {n}" for n in names if n == "jtbd.cli" or n.startswith("jtbd.cli.")]
    assert found == []
