"""Versioned prompt files and the strategies that combine them (passes.toml).

Every pass sends ``[system, user]`` where the user message is the excerpt
template followed by the pass's task. Identical leading text across passes
lets llama.cpp reuse the excerpt's KV cache, so a second pass costs little.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class PromptPass:
    name: str
    system: str
    excerpt_template: str
    task: str
    response_model: str
    max_tokens: int

    def render(self, excerpt: str) -> list[dict]:
        user = self.excerpt_template.replace("{excerpt}", excerpt) + "\n\n" + self.task
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class Strategy:
    name: str
    passes: tuple[PromptPass, ...]
    version: str  # hash of the strategy's entry and every prompt file it uses


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8").strip()


def _config() -> dict:
    return tomllib.loads(_read("passes.toml"))


def strategies() -> list[str]:
    return sorted(_config()["strategies"])


def load_strategy(name: str = "sentences") -> Strategy:
    config = _config()
    if name not in config["strategies"]:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(strategies())}")
    system, excerpt = _read(config["system"]), _read(config["excerpt"])
    if "{excerpt}" not in excerpt:
        raise ValueError(f"prompt file {config['excerpt']} must contain {{excerpt}}")
    digest = hashlib.sha256(repr(config["strategies"][name]).encode() + system.encode() + excerpt.encode())
    passes = []
    for entry in config["strategies"][name]["passes"]:
        task = _read(entry["prompt"])
        digest.update(task.encode())
        passes.append(PromptPass(entry["prompt"].removesuffix(".md"), system, excerpt, task,
                                 entry["response_model"], int(entry["max_tokens"])))
    return Strategy(name, tuple(passes), digest.hexdigest()[:12])
