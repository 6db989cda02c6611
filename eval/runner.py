"""Evaluate: code a gold folder with the normal flow, then score predictions against gold.

Works on any folder in the gold format. The bundled set lives in
``eval/gold/{dev,test}``; prompts are tuned on dev only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from jtbd.eval.gold import GoldError, GoldSet, ScoredAnyway, find_gold_files, load_gold_scorable
from jtbd.eval.score import (
    Coded, Scores, TranscriptCodes, all_push_baseline, coded_from_code, coded_from_gold,
    scores_to_dict, score_codes,
)
from jtbd.schemas.codebook import CodedTranscript
from jtbd.settings import Settings, with_changes

EVAL_STUDY = "eval"  # keep gold transcripts out of the analysts' studies (Chroma collection and reviews)


@dataclass
class Evaluation:
    gold: list[GoldSet]
    predicted: dict[str, CodedTranscript]
    scores: Scores
    baseline: Scores  # every interviewee sentence coded as push
    summary: dict[str, Any]

    def scores_dict(self) -> dict[str, Any]:
        return {**scores_to_dict(self.scores),
                "no_skill_all_push": {k: v for k, v in scores_to_dict(self.baseline).items()
                                      if not isinstance(v, dict)},
                "provenance": {k: self.summary.get(k) for k in ("model", "prompt_version", "schema_version")},
                "transcript_ids": sorted(g.id for g in self.gold),
                # codes or files of the gold folder left out of these scores, so the JSON says so too
                **{key: self.summary[key] for key in ("gold_problems", "gold_notes") if self.summary.get(key)}}


def bundled_gold(split: str = "all") -> Path:
    root = Path(str(resources.files("jtbd.eval").joinpath("gold")))
    if split == "all":
        return root
    if not (root / split).is_dir():
        raise ValueError(f"no bundled split {split!r}; use dev, test or all")
    return root / split


def load_gold_folder(folder: Path) -> list[GoldSet]:
    """Every gold file under `folder`; raises GoldError naming every violation of every file."""
    gold, problems, notes = load_gold_files(folder)
    if problems or notes:
        raise GoldError(problems + notes)
    return gold


def load_gold_files(folder: Path) -> tuple[list[GoldSet], list[str], list[str]]:
    """The gold files under `folder` that can be scored, each with the codes that pass; one line
    per violation that left something out (a code that breaks a rule, not its whole interview; a
    file only when it cannot be read or its transcript is missing or does not parse); and one line
    per violation that was scored anyway (`ScoredAnyway`: a quote across a line break, a quote
    typed differently from the transcript, a job statement not in the job-story form)."""
    files = find_gold_files(folder)
    if not files:
        raise FileNotFoundError(f"no *.gold.json files under {folder}")
    gold, problems, notes = [], [], []
    for path in files:
        loaded, found = load_gold_scorable(path)
        gold += [loaded] if loaded is not None else []
        problems += [str(p) for p in found if not isinstance(p, ScoredAnyway)]
        notes += [str(p) for p in found if isinstance(p, ScoredAnyway)]
    return gold, problems, notes


def predicted_codes(coded: CodedTranscript) -> list[Coded]:
    return [coded_from_code(c) for c in coded.codes]


def score_gold(gold: list[GoldSet], predicted: dict[str, CodedTranscript], similarity: Any = None) -> Scores:
    items = []
    for g in gold:
        coded = predicted.get(g.transcript.id)
        pred = predicted_codes(coded) if coded else []
        # A job statement its evidence does not back was dropped, but its quote was grounded: the
        # grounding rate counts only quotes that could not be found.
        rejected = sum(1 for r in coded.rejected if "statement" not in r) if coded else 0
        items.append(TranscriptCodes([coded_from_gold(c) for c in g.codes], pred, rejected, g.transcript))
    return score_codes(items, similarity)


def score_baseline(gold: list[GoldSet]) -> Scores:
    return score_codes([TranscriptCodes([coded_from_gold(c) for c in g.codes], all_push_baseline(g.transcript),
                                        0, g.transcript) for g in gold])


def read_run(out_dir: Path, gold: list[GoldSet]) -> dict[str, CodedTranscript]:
    found = {}
    for g in gold:
        path = out_dir / f"{g.transcript.id}.json"
        if path.exists():
            found[g.transcript.id] = CodedTranscript.model_validate_json(path.read_text(encoding="utf-8"))
    return found


def code_gold(gold: list[GoldSet], settings: Settings, out_dir: Path) -> Any:
    """Code the gold transcripts with the normal flow (each with the speakers its gold file names),
    into the eval study; the batch summary."""
    from jtbd.flows.code_batch import run_batch

    roles = {str(g.transcript_path): (list(g.interviewers), list(g.interviewees)) for g in gold}
    ids = {str(g.transcript_path): g.transcript.id for g in gold}
    return run_batch(list(roles), with_changes(settings, study=EVAL_STUDY), str(out_dir),
                     roles=roles, ids=ids)


def evaluate(gold_dir: Path, settings: Settings, out_dir: Path) -> Evaluation:
    from jtbd.coding.embed import cosine, embedder_for

    gold, problems, notes = load_gold_files(gold_dir)
    if not gold:
        raise GoldError([f"no gold file under {gold_dir} can be scored:", *problems])
    summary = code_gold(gold, settings, out_dir)
    predicted = read_run(out_dir, gold)
    embedder = embedder_for(settings)

    def similarity(a: str, b: str) -> float:
        va, vb = embedder.embed([a, b])
        return cosine(va, vb)

    scores = score_gold(gold, predicted, similarity)
    return Evaluation(gold, predicted, scores, score_baseline(gold),
                      {**summary.as_dict(), "gold_problems": problems, "gold_notes": notes})


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
