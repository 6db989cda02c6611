"""Versioned prompt files and the strategies that combine them (passes.toml).

Every pass sends ``[system, user]`` where the user message is the excerpt
template followed by the pass's task. Identical leading text across passes
lets llama.cpp reuse the excerpt's KV cache, so a second pass costs little.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources


@dataclass(frozen=True)
class PromptPass:
    name: str
    system: str
    excerpt_template: str
    task: str
    response_model: str
    max_tokens: int
    item: str | None = None  # per-sentence passes: the line that names the sentence, after the task

    def render(self, excerpt: str, number: int | None = None, sentence: str | None = None) -> list[dict]:
        user = self.excerpt_template.replace("{excerpt}", excerpt) + "\n\n" + self.task
        if self.item is not None:
            if number is None or sentence is None:
                raise ValueError(f"pass {self.name} rates one sentence at a time: give its number and text")
            user += "\n\n" + self.item.replace("{n}", str(number)).replace("{sentence}", sentence)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


@dataclass(frozen=True)
class Strategy:
    name: str
    passes: tuple[PromptPass, ...]
    version: str  # hash of the strategy's entry and every prompt file it uses
    passes_version: str = ""  # the same without the [decide] table: what the model is asked
    decide: dict = field(default_factory=dict)  # how rated sentences become codes (coding/decide.py)


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8").strip()


def _config() -> dict:
    return tomllib.loads(_read("passes.toml"))


def strategies() -> list[str]:
    return sorted(_config()["strategies"])


def load_strategy(name: str = "rate") -> Strategy:
    config = _config()
    if name not in config["strategies"]:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(strategies())}")
    system, excerpt = _read(config["system"]), _read(config["excerpt"])
    if "{excerpt}" not in excerpt:
        raise ValueError(f"prompt file {config['excerpt']} must contain {{excerpt}}")
    entry = config["strategies"][name]
    asked = hashlib.sha256(repr(entry["passes"]).encode() + system.encode() + excerpt.encode())
    passes = []
    for step in entry["passes"]:
        task = _read(step["prompt"])
        asked.update(task.encode())
        passes.append(PromptPass(step["prompt"].removesuffix(".md"), system, excerpt, task,
                                 step["response_model"], int(step["max_tokens"]), step.get("item")))
    decide = dict(entry.get("decide", {}))
    whole = hashlib.sha256(asked.hexdigest().encode() + repr(sorted(decide.items())).encode())
    return Strategy(name, tuple(passes), whole.hexdigest()[:12], asked.hexdigest()[:12], decide)
