"""The records the write path needs, with no pydantic: an eval session that records pays
only for these; the validated models of ``models`` are for reading a store back.

Pure: imports no pytest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

Status = Literal["passed", "failed", "error", "skipped", "xfailed", "xpassed"]
STATUSES: tuple[Status, ...] = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")

# The write path carries rows and spans as plain dicts shaped like the models (built, spooled
# and sent without model overhead on the tests' thread); readers get validated models.
RowDoc = dict[str, Any]
SpanDoc = dict[str, Any]


def as_doc(value: Any) -> dict[str, Any]:
    """A row or span as a plain dict, whichever form it came in (dict or model)."""
    if isinstance(value, dict):
        return value
    dumped: dict[str, Any] = value.model_dump(mode="json")
    return dumped


@dataclass
class Experiment:
    id: str
    project: str
    name: str
    created: float
    git_commit: str | None = None
    git_branch: str | None = None


@dataclass
class Attempt:
    """One pytest session's record in an experiment."""

    id: str
    experiment_id: str
    started: float
    ended: float | None = None
    host: str = ""
    args: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    delivered: bool | None = None
    git_commit: str | None = None
    git_branch: str | None = None
    # The session's ``SessionReport`` as JSON, saved at its end (absent from older records).
    report: dict[str, Any] | None = None


@dataclass
class ErrorInfo:
    type: str
    message: str
    traceback: str = ""


class RowState(NamedTuple):
    """The little a store says about a row's latest version for resume and drift checks."""

    status: str
    params_hash: str | None
    attempt_id: str
    created: float


class ScoreMetrics(NamedTuple):
    tokens: int | None = None
    cost: float | None = None


class RowScores(NamedTuple):
    """What summing rows up needs of a row's latest version, without its body (input,
    output, metadata): read for the report and the gates at a session's end."""

    row_id: str
    status: str
    attempt_id: str
    scores: dict[str, float]
    metrics: ScoreMetrics


class StaleSpan(NamedTuple):
    """A span that cleanup removed (or would remove)."""

    row_id: str
    span_id: str
    attempt_id: str
    execution: int
    name: str


@dataclass
class WriteResult:
    """What one batch did to the store."""

    new_rows: int = 0
    updated_rows: int = 0
    duplicate_rows: int = 0
    # Versions of executions that started before the stored latest one (a late delivery):
    # kept in history where the store keeps history, never the latest.
    superseded_rows: int = 0
    spans: int = 0
    # Whether new_rows/updated_rows are known for certain. A remote store that has not read
    # the experiment yet can only guess, and a guess must not let clean-up be skipped.
    certain: bool = True
    # The spans a write deleted as asked (the HTTP API's deletes): of those named, the ones
    # that were there; another writer may have deleted the rest first.
    deleted_span_ids: list[str] = field(default_factory=list)

    def __iadd__(self, other: WriteResult) -> WriteResult:
        """Add what another batch did: every tally is summed this one way."""
        self.certain = self.certain and other.certain
        self.deleted_span_ids += other.deleted_span_ids
        self.new_rows += other.new_rows
        self.updated_rows += other.updated_rows
        self.duplicate_rows += other.duplicate_rows
        self.superseded_rows += other.superseded_rows
        self.spans += other.spans
        return self
