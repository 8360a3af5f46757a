"""The data model: experiments, attempts, row versions and spans, and JSON-safe values.

Pure: imports no pytest. Models are built with ``model_construct`` on the hot path (the
recorder has already made every value JSON-safe) and validated when read back from a store.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field

from .values import MAX_FIELD_BYTES, check_score, json_value

Status = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
STATUSES: tuple[Status, ...] = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")

__all__ = [
    "MAX_FIELD_BYTES",
    "STATUSES",
    "Attempt",
    "ErrorInfo",
    "Experiment",
    "Metrics",
    "RowDoc",
    "RowState",
    "RowVersion",
    "SpanDoc",
    "SpanRecord",
    "StaleSpan",
    "Status",
    "WriteResult",
    "as_doc",
    "check_score",
    "json_value",
]


class Experiment(BaseModel):
    id: str
    project: str
    name: str
    created: float
    git_commit: str | None = None
    git_branch: str | None = None


class Attempt(BaseModel):
    id: str
    experiment_id: str
    started: float
    ended: float | None = None
    host: str = ""
    args: list[str] = Field(default_factory=list)
    counts: dict[str, int] = Field(default_factory=dict)
    delivered: bool | None = None
    git_commit: str | None = None
    git_branch: str | None = None


class ErrorInfo(BaseModel):
    type: str
    message: str
    traceback: str = ""


class Metrics(BaseModel):
    start: float
    end: float
    duration: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens: int | None = None
    cost: float | None = None


class RowVersion(BaseModel):
    """One version of a row: what one execution of one case produced."""

    row_id: str
    version_id: str
    nodeid: str
    attempt_id: str
    execution: int
    status: Status
    input: Any = None
    output: Any = None
    expected: Any = None
    scores: dict[str, float] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    error: ErrorInfo | None = None
    metrics: Metrics
    root_span_id: str
    span_id: str
    # Assigned by the store when the version is written.
    version: int | None = None
    created: float | None = None


class SpanRecord(BaseModel):
    """One finished span, under a row (``row_id``) or under no row (session fixtures)."""

    span_id: str
    root_span_id: str
    span_parents: list[str] = Field(default_factory=list)
    row_id: str | None = None
    attempt_id: str
    execution: int = 1
    name: str
    kind: str = "internal"
    start: float
    end: float
    status: str = "unset"
    attributes: dict[str, Any] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(default_factory=list)


# The write path carries rows and spans as plain dicts shaped like the models (built, spooled
# and sent without model overhead on the tests' thread); readers get validated models.
RowDoc = dict[str, Any]
SpanDoc = dict[str, Any]


def as_doc(value: BaseModel | dict[str, Any]) -> dict[str, Any]:
    """A row or span as a plain dict, whichever form it came in."""
    return value if isinstance(value, dict) else value.model_dump(mode="json")


class StaleSpan(NamedTuple):
    """A span that cleanup removed (or would remove)."""

    row_id: str
    span_id: str
    attempt_id: str
    execution: int
    name: str


class RowState(NamedTuple):
    """The little a store says about a row's latest version for resume and drift checks."""

    status: str
    params_hash: str | None
    attempt_id: str
    created: float


class WriteResult(BaseModel):
    """What one batch did to the store."""

    new_rows: int = 0
    updated_rows: int = 0
    duplicate_rows: int = 0
    spans: int = 0
    # Whether new_rows/updated_rows are known for certain. A remote store that has not read
    # the experiment yet can only guess, and a guess must not let clean-up be skipped.
    certain: bool = True
