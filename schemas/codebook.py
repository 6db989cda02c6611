"""The codebook as pydantic models.

Two families live here:

* the *stored* codes (`Force`, `Trigger`, `JobStory`, `Quote`): what the
  product outputs, each carrying the interviewee's verbatim words and where
  they are in the transcript;
* the *drafts* the LLM fills in (`SentenceRating`, `JobsAndQuotes`,
  `QuotedCodes`): field descriptions are part of the prompt and validators
  encode the codebook's rules, so a violation is re-asked.
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from typing import Annotated, Literal, Union

from pydantic import BaseModel, Field, ValidationInfo, computed_field, field_validator


class ForceType(str, Enum):
    push = "push"
    pull = "pull"
    anxiety = "anxiety"
    habit = "habit"


class Dimension(str, Enum):
    functional = "functional"
    emotional = "emotional"
    social = "social"


class Alignment(str, Enum):
    exact = "exact"
    normalized = "normalized"  # equal after folding case, whitespace and punctuation
    fuzzy = "fuzzy"


KINDS = ("job", "trigger", "force", "quote")


# --- stored codes -----------------------------------------------------------


class Grounding(BaseModel):
    transcript: str
    source: str
    speaker: str
    turn_index: int
    char_start: int
    char_end: int
    start_seconds: float | None = None
    end_seconds: float | None = None
    source_line: int | None = Field(
        default=None, description="the line of the transcript file where the quote's cue begins (1-based)"
    )
    alignment: Alignment
    alignment_score: float = 100.0
    model_quote: str | None = Field(
        default=None, description="the model's words when they differed from the transcript's"
    )


class Provenance(BaseModel):
    prompt_version: str
    schema_version: str
    model: str


class _Code(BaseModel):
    quote: str = Field(description="the interviewee's exact words: transcript.text[char_start:char_end]")
    note: str | None = None
    score: float | None = Field(
        default=None, description="how far this sentence stood out in its transcript as coded: the model's rating "
                                  "above 'none' weighed with the sentence's length (rated codes only; higher is "
                                  "surer, for ranking within a transcript)")
    grounding: Grounding
    provenance: Provenance

    @property
    def id(self) -> str:
        """Deterministic: transcript + kind (+ subtype) + offsets, so re-runs upsert."""
        g = self.grounding
        return f"{g.transcript}:{self.label}:{g.char_start}-{g.char_end}"

    @property
    def label(self) -> str:
        return self.kind  # type: ignore[attr-defined]


class Force(_Code):
    kind: Literal["force"] = "force"
    force: ForceType

    @property
    def label(self) -> str:
        return f"force.{self.force.value}"


class Trigger(_Code):
    kind: Literal["trigger"] = "trigger"


class JobStory(_Code):
    kind: Literal["job"] = "job"
    situation: str
    motivation: str
    outcome: str
    dimension: Dimension

    @property
    def statement(self) -> str:
        return f"When {self.situation}, I want to {self.motivation}, so I can {self.outcome}."

    # The quote is the interviewee's words; the statement is the model's summary of them, and every
    # dump says so. Computed, not stored: the validation schema (and so schema_version and every
    # cached chunk) stays the same.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def statement_source(self) -> Literal["model"]:
        return "model"

    @property
    def label(self) -> str:
        return f"job.{self.dimension.value}"


class Quote(_Code):
    kind: Literal["quote"] = "quote"


Code = Annotated[Union[Force, Trigger, JobStory, Quote], Field(discriminator="kind")]


class CodedTranscript(BaseModel):
    transcript: str
    source: str
    codes: list[Code]
    rejected: list[dict] = Field(default_factory=list, description="model quotes that could not be grounded")


# --- drafts the LLM fills in --------------------------------------------------

SentenceLabel = Literal["push", "pull", "anxiety", "habit", "trigger"]
SentenceCodeValue = Literal["push", "pull", "anxiety", "habit", "trigger", "none"]


def _check_sentence(value: int, info: ValidationInfo) -> int:
    allowed = (info.context or {}).get("sentence_ids")
    if allowed is not None and value not in allowed:
        raise ValueError(
            f"sentence {value} is not a numbered interviewee sentence of this excerpt; "
            "use only the numbers shown in square brackets"
        )
    return value


class JobDraft(BaseModel):
    sentence: int = Field(description="the numbered interviewee sentence that best shows this job")
    when: str = Field(max_length=160, description="the situation, without the word 'When'")
    i_want_to: str = Field(max_length=160, description="the motivation, without 'I want to'")
    so_i_can: str = Field(max_length=160, description="the expected outcome, without 'so I can'")
    dimension: Dimension

    _sentence_exists = field_validator("sentence")(_check_sentence)

    @field_validator("when", "i_want_to", "so_i_can")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("every part of the job story must be filled in")
        return value.strip()


class JobsAndQuotes(BaseModel):
    jobs: list[JobDraft] = Field(default_factory=list, max_length=2)
    quotable: list[Annotated[str, Field(max_length=300)]] = Field(
        default_factory=list, max_length=3,
        description="the most vivid, specific, emotional interviewee lines, copied word for word",
    )

    @field_validator("quotable")
    @classmethod
    def _quotable_words(cls, values: list[str]) -> list[str]:
        # Copied, not numbered: asked for numbers, the small model names the excerpt's first
        # sentences (greetings) whatever they say (eval/RESULTS.md, variant 11).
        return [v.strip() for v in values if v.strip()]


class Jobs(BaseModel):
    """The jobs pass of the default strategy: read in the rating pass's windows, at most one job each.
    Quotable lines come from the ratings (coding/quotable.py), not from the model's words."""

    jobs: list[JobDraft] = Field(default_factory=list, max_length=1)


class QuotedCode(BaseModel):
    """A code whose quote the model copies (the `quotes` strategy, for larger models)."""

    quote: str = Field(max_length=400, description="the interviewee's exact words, copied character for character")
    code: SentenceLabel

    @field_validator("quote")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if len(value.split()) < 3:
            raise ValueError("a quote must be at least three words of the interviewee's exact words")
        return value


class QuotedCodes(BaseModel):
    items: list[QuotedCode] = Field(default_factory=list, max_length=16)


RATED_LABELS: tuple[str, ...] = ("push", "pull", "anxiety", "habit", "trigger", "none")


class SentenceRating(BaseModel):
    """One interviewee sentence rated by the model: each label's log-probability as its answer."""

    logprobs: dict[SentenceCodeValue, float]

    @field_validator("logprobs")
    @classmethod
    def _every_label(cls, values: dict[str, float]) -> dict[str, float]:
        missing = [label for label in RATED_LABELS if label not in values]
        if missing:
            raise ValueError(f"no log-probability for {', '.join(missing)}")
        if any(v > 1e-6 for v in values.values()):
            raise ValueError("log-probabilities must be <= 0")
        return {label: values[label] for label in RATED_LABELS}


DRAFT_MODELS: dict[str, type[BaseModel]] = {
    "SentenceRating": SentenceRating,
    "JobsAndQuotes": JobsAndQuotes,
    "Jobs": Jobs,
    "QuotedCodes": QuotedCodes,
}


def schema_version() -> str:
    """A hash of every draft's JSON schema and the stored code schema: changes when the contract does."""
    payload = {name: model.model_json_schema() for name, model in DRAFT_MODELS.items()}
    payload["CodedTranscript"] = CodedTranscript.model_json_schema()
    blob = json.dumps(payload, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
