"""Every `jtbd` command the README and docs/ show parses against the real command line, so the
docs cannot drift from it: each is parsed and validated (choices, types, required arguments)
by the CLI's own parser, without running it."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.main import get_command

# typer 0.29 carries its own click: the parser's errors are that click's UsageError
UsageError = type(typer.BadParameter("x")).__mro__[1]

from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"```(?:sh|bash|console)\n(.*?)```", re.S)


def shown_commands(path: Path) -> list[str]:
    """The `jtbd ...` lines of a file's shell blocks, continuations joined, comments and env vars dropped."""
    found = []
    for block in _BLOCK.findall(path.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                words = words[1:]
            for at, word in enumerate(words):
                if word == "&&":
                    continue
                if word.endswith("jtbd") and (at == 0 or words[at - 1] == "&&"):
                    rest = words[at + 1:]
                    found.append(shlex.join(rest[:rest.index("&&")] if "&&" in rest else rest))
    return found


def parse(argv: list[str]):
    """Parse argv the way `jtbd` would, down to the command that would run, without running it:
    the returned context holds that command and its validated parameters."""
    from jtbd.cli import app

    command = get_command(app)
    ctx = command.make_context("jtbd", list(argv))
    while isinstance(command, TyperGroup) and (rest := [*_protected(ctx), *ctx.args]):
        name, *rest = rest
        command = command.get_command(ctx, name)
        if command is None:
            raise UsageError(f"no such command {name!r}")
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def _protected(ctx) -> list[str]:
    """A group's subcommand name and what follows it (where this click keeps them)."""
    return list(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", None) or [])


COMMANDS = [(path.relative_to(ROOT).as_posix(), line) for path in DOCS for line in shown_commands(path)]


def test_the_docs_show_every_command():
    shown = {line.split()[0] for _, line in COMMANDS if line}
    assert {"code", "search", "list", "forget", "eval", "gold", "model"} <= shown


@pytest.mark.parametrize(("doc", "line"), COMMANDS, ids=[f"{d}: {c}" for d, c in COMMANDS])
def test_each_command_in_the_docs_parses(doc, line):
    words = shlex.split(line)
    if {"--help", "-h", "--version"} & set(words):
        with pytest.raises(typer.Exit):  # an eager option answers and stops, as it should
            parse(words)
        return
    ctx = parse(words)
    assert ctx.command.name in words and not isinstance(ctx.command, TyperGroup)  # down to a command that runs


def test_a_wrong_command_in_the_docs_would_fail():
    for wrong in ("search 'price' --kind forces", "code interviews/ --chunk-tokens many", "forget", "gold inspect x"):
        with pytest.raises(UsageError):
            parse(shlex.split(wrong))


def test_the_serve_line_jtbd_code_prints_opens_the_same_store():
    from jtbd.cli import serve_command

    line = serve_command({"data_dir": "/tmp/my data", "study": "onboarding", "chunk_tokens": 900})
    assert line == "jtbd serve --data-dir '/tmp/my data' --study onboarding"
    ctx = parse(shlex.split(line)[1:])
    assert ctx.command.name == "serve"
