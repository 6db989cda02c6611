"""Versioned prompt files and the strategies that combine them (passes.toml).

Every pass sends ``[system, user]`` where the user message is the excerpt
template followed by the pass's task. Identical leading text across passes
lets llama.cpp reuse the excerpt's KV cache, so a second pass costs little.
A rating pass may also send worked examples as earlier turns of the
conversation (``examples``), between the system prompt and the excerpt: the
same for every call, so they stay in the KV cache for the whole run.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from jtbd.schemas.codebook import RATED_LABELS


@dataclass(frozen=True)
class PromptPass:
    name: str
    system: str
    excerpt_template: str
    task: str
    response_model: str
    max_tokens: int
    item: str | None = None  # per-sentence passes: the line that names the sentence, after the task
    examples: tuple[dict, ...] = ()  # answered turns shown before the excerpt (rating passes)
    window: tuple[int, int] | None = None  # rating passes: (tokens, overlap) of the windows a chunk is read in
    # a pass read in the rating pass's windows, each right after that window's ratings, with the rating
    # pass's examples before the excerpt: the same prompt up to the excerpt, so the KV cache holds it
    in_windows: bool = False

    def _user(self, excerpt: str, number: int | None, sentence: str | None) -> str:
        user = self.excerpt_template.replace("{excerpt}", excerpt) + "\n\n" + self.task
        if self.item is not None:
            if number is None or sentence is None:
                raise ValueError(f"pass {self.name} rates one sentence at a time: give its number and text")
            user += "\n\n" + self._item(number, sentence)
        return user

    def _item(self, number: int, sentence: str) -> str:
        return (self.item or "").replace("{n}", str(number)).replace("{sentence}", sentence)

    def render(self, excerpt: str, number: int | None = None, sentence: str | None = None) -> list[dict]:
        return [{"role": "system", "content": self.system}, *self.examples,
                {"role": "user", "content": self._user(excerpt, number, sentence)}]


@dataclass(frozen=True)
class Strategy:
    name: str
    passes: tuple[PromptPass, ...]
    version: str  # hash of the strategy's entry and every prompt file it uses
    passes_version: str = ""  # the same without the [decide] table: what the model is asked
    decide: dict = field(default_factory=dict)  # how rated sentences become codes (coding/decide.py)
    learned: str = ""  # the text of the [decide] table's `learned` file, a fitted decision (coding/learned.py)
    quotable: str = ""  # the text of the [decide] table's `quotable` file, a fitted chooser (coding/quotable.py)


def _read(name: str, folder: str = "") -> str:
    """A prompt file from `folder` when it has one by that name (a prompt experiment), else the bundled one."""
    mine = Path(folder) / name if folder else None
    if mine is not None and mine.is_file():
        return mine.read_text(encoding="utf-8").strip()
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8").strip()


def _config(folder: str = "") -> dict:
    return tomllib.loads(_read("passes.toml", folder))


def _system(spec: str | list[str], folder: str = "") -> str:
    """The system prompt: one file, or several joined by a blank line."""
    return "\n\n".join(_read(name, folder) for name in ([spec] if isinstance(spec, str) else spec))


def _example_turns(name: str, prompt: PromptPass, folder: str = "") -> tuple[dict, ...]:
    """Chat turns from an examples file: per example, the excerpt with the task and its first
    sentence (rendered as the real call is), then one user turn per further sentence, each
    followed by the answer."""
    if prompt.item is None:
        raise ValueError(f"{name}: worked examples need a per-sentence pass (an 'item' line)")
    turns: list[dict] = []
    for e, example in enumerate(tomllib.loads(_read(name, folder)).get("examples", []), 1):
        excerpt, answers = example.get("excerpt", "").strip(), example.get("answers", [])
        if not excerpt or not answers:
            raise ValueError(f"{name}: example {e} needs an excerpt and at least one answer")
        for a, answer in enumerate(answers):
            n, sentence, code = answer.get("n"), answer.get("sentence", ""), answer.get("code")
            if code not in RATED_LABELS:
                raise ValueError(f"{name}: example {e}, sentence [{n}]: code {code!r} is not one of {', '.join(RATED_LABELS)}")
            if not sentence or f"[{n}] {sentence}" not in excerpt:
                raise ValueError(f"{name}: example {e}: '[{n}] {sentence}' is not in the example's excerpt")
            user = prompt._user(excerpt, n, sentence) if a == 0 else prompt._item(n, sentence)
            turns += [{"role": "user", "content": user}, {"role": "assistant", "content": code}]
    if not turns:
        raise ValueError(f"{name}: no [[examples]]")
    return tuple(turns)


def _window(strategy: str, step: dict) -> tuple[int, int]:
    """A rating pass's (window_tokens, window_overlap_tokens), checked."""
    where = f"prompts/passes.toml: [strategies.{strategy}] pass {step['prompt']}"
    if step.get("item") is None:
        raise ValueError(f"{where}: window_tokens needs a per-sentence pass (an 'item' line)")
    if "window_tokens" not in step:
        raise ValueError(f"{where}: window_overlap_tokens needs window_tokens")
    tokens, overlap = step["window_tokens"], step.get("window_overlap_tokens", 0)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (tokens, overlap)):
        raise ValueError(f"{where}: window_tokens and window_overlap_tokens must be whole numbers of tokens")
    if not 0 <= overlap < tokens:
        raise ValueError(f"{where}: window_overlap_tokens ({overlap}) must be at least 0 and below window_tokens ({tokens})")
    return tokens, overlap


def strategies(folder: str = "") -> list[str]:
    return sorted(_config(folder)["strategies"])


def load_strategy(name: str = "rate", folder: str = "") -> Strategy:
    """A strategy from passes.toml; `folder` (--prompts-dir) overrides any bundled prompt file it holds."""
    if folder and not Path(folder).is_dir():
        raise ValueError(f"prompts_dir {folder} is not a folder")
    config = _config(folder)
    if name not in config["strategies"]:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(strategies(folder))}")
    entry = config["strategies"][name]
    system, excerpt = _system(entry.get("system", config["system"]), folder), _read(config["excerpt"], folder)
    if "{excerpt}" not in excerpt:
        raise ValueError(f"prompt file {config['excerpt']} must contain {{excerpt}}")
    asked = hashlib.sha256(repr(entry["passes"]).encode() + system.encode() + excerpt.encode())
    passes = []
    for step in entry["passes"]:
        task = _read(step["prompt"], folder)
        asked.update(task.encode())
        prompt = PromptPass(step["prompt"].removesuffix(".md"), system, excerpt, task,
                            step["response_model"], int(step["max_tokens"]), step.get("item"))
        if "examples" in step:
            prompt = replace(prompt, examples=_example_turns(step["examples"], prompt, folder))
            asked.update(repr(prompt.examples).encode())
        if "window_tokens" in step or "window_overlap_tokens" in step:
            prompt = replace(prompt, window=_window(name, step))
        if step.get("in_windows"):
            prompt = _in_windows(name, step, prompt, passes)
        passes.append(prompt)
    decide = dict(entry.get("decide", {}))
    files = {}
    for key in ("learned", "quotable"):
        file = decide.pop(key, "")
        if not isinstance(file, str):
            raise ValueError(f"prompts/passes.toml: [strategies.{name}.decide] {key} must be a file name, not {file!r}")
        files[key] = _read(file, folder) if file else ""
    whole = hashlib.sha256(asked.hexdigest().encode() + repr(sorted(decide.items())).encode()
                           + files["learned"].encode() + files["quotable"].encode())
    return Strategy(name, tuple(passes), whole.hexdigest()[:12], asked.hexdigest()[:12], decide, files["learned"],
                    files["quotable"])


def _in_windows(strategy: str, step: dict, prompt: PromptPass, before: list[PromptPass]) -> PromptPass:
    """A pass read in the windows of the rating pass before it, with that pass's examples."""
    where = f"prompts/passes.toml: [strategies.{strategy}] pass {step['prompt']}"
    rating = next((p for p in reversed(before) if p.item is not None), None)
    if prompt.item is not None or rating is None:
        raise ValueError(f"{where}: in_windows needs a whole-excerpt pass after a per-sentence pass (an 'item' line)")
    return replace(prompt, in_windows=True, examples=rating.examples, window=rating.window)
