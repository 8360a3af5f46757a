"""Judgments over a row's trace, and the evaluations that hold them.

Pure: imports no pytest. A judge looks at one row version's trace (``core.trace.Trace``) and
returns a ``Judgment``; an ``Evaluation`` is one run of one judge against one trace, with its
status and times, as every store keeps it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EvaluationStatus = Literal["pending", "in_progress", "success", "failure"]
EVALUATION_STATUSES: tuple[EvaluationStatus, ...] = (
    "pending",
    "in_progress",
    "success",
    "failure",
)
FINISHED: frozenset[str] = frozenset({"success", "failure"})

#: A judgment's score shows on its row version under this prefix and the judge's name.
SCORE_PREFIX = "judge:"

UnitScore = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class Step(BaseModel):
    """One thing a judge looked at: a span (by id and name) or a tool call, and what it found."""

    model_config = ConfigDict(extra="forbid")

    span_id: str | None = None
    name: str | None = None
    result: Any = None


class Judgment(BaseModel):
    """What a judge concluded about one trace."""

    model_config = ConfigDict(extra="forbid")

    score: UnitScore | None = None
    passed: bool | None = None
    reasoning: str = ""
    steps: list[Step] = Field(default_factory=list)
    model: str | None = None
    turns: int | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_cost: float | None = None

    @property
    def row_score(self) -> float | None:
        """The number the row shows as ``judge:<name>``: the score, or else 1 or 0 for
        passed or not; None when the judgment says neither."""
        if self.score is not None:
            return self.score
        if self.passed is not None:
            return 1.0 if self.passed else 0.0
        return None


class CostEstimate(BaseModel):
    """What judging one trace is expected to cost, before any model is called."""

    input_tokens: int = 0
    output_tokens: int = 0
    estimated_cost: float = 0.0
    model: str | None = None


class Evaluation(BaseModel):
    """One judge run against one row version's trace (``trace_id`` is its ``root_span_id``)."""

    id: str
    experiment_id: str = ""
    row_id: str
    trace_id: str
    version_id: str
    judge_id: str
    status: EvaluationStatus = "pending"
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    result: Judgment | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def score_name(self) -> str:
        return SCORE_PREFIX + self.judge_id

    @property
    def row_score(self) -> float | None:
        """The score this evaluation puts on its row version, if any."""
        if self.status != "success" or self.result is None:
            return None
        return self.result.row_score


def as_judgment(value: Any) -> Judgment:
    """What a judge returned, as a ``Judgment``: a ``Judgment`` (or a dict of one) as it is,
    a bool as ``passed``, a number in [0, 1] as ``score``. Anything else is a ``TypeError``
    or ``ValueError`` that says what came back."""
    if isinstance(value, Judgment):
        return value
    if isinstance(value, bool):
        return Judgment(passed=value)
    if isinstance(value, (int, float)):
        number = float(value)
        if not math.isfinite(number) or not 0.0 <= number <= 1.0:
            raise ValueError(f"a judge's number must be a score in [0, 1], not {value!r}")
        return Judgment(score=number)
    if isinstance(value, dict):
        return Judgment.model_validate(value)
    raise TypeError(
        "a judge must return a Judgment, a bool (passed) or a number in [0, 1] (score), "
        f"not {type(value).__name__}"
    )
