"""The data model as read back from a store: validated row versions and spans.

Pure: imports no pytest. The write path never builds these (it sends plain dicts of the same
shape, see ``records``); the plain records are re-exported here so there is one place to
import the data model from.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from .records import (
    STATUSES,
    Attempt,
    ErrorInfo,
    Experiment,
    RowDoc,
    RowState,
    SpanDoc,
    StaleSpan,
    Status,
    WriteResult,
    as_doc,
)
from .values import MAX_FIELD_BYTES, check_score, json_value

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
    status_description: str | None = None  # why an error span failed
    attributes: dict[str, Any] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(default_factory=list)
