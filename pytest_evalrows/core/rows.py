"""The root span a row's execution stands for, derived in one place from the row's fields.

Both the recorder (what it stores with a finished execution) and the wire format (what a
Braintrust-style event of a row stands for) build it here, so the two cannot drift.

Pure: imports no pytest, no pydantic.
"""

from __future__ import annotations

from typing import Protocol

from .records import SpanDoc

# Statuses whose root span is ``ok``; every other status is an error span.
OK_STATUSES = frozenset({"passed", "xfailed", "skipped"})


class ErrorLike(Protocol):
    """An error as the write path (``records.ErrorInfo``) or a read model carries it."""

    @property
    def type(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def traceback(self) -> str: ...


def root_span(
    *,
    row_id: str,
    trace_hex: str,
    span_hex: str,
    attempt_id: str,
    execution: int,
    name: str,
    start: float,
    end: float,
    status: str,
    error: ErrorLike | None,
    experiment: str | None,
) -> SpanDoc:
    """The execution's own span: the root its children hang under. A row that did not pass
    has status error, described by its error, which is also the span's ``exception`` event
    (named as OpenTelemetry's semantic conventions name it). ``experiment`` is None only
    where it cannot be known; then the span has no ``evalrows.experiment`` attribute."""
    ok = status in OK_STATUSES
    attributes: dict[str, object] = {
        "evalrows.attempt_id": attempt_id,
        "evalrows.row_id": row_id,
    }
    if experiment is not None:
        attributes["evalrows.experiment"] = experiment
    attributes["evalrows.execution"] = execution
    attributes["evalrows.status"] = status
    span: SpanDoc = {
        "span_id": span_hex,
        "root_span_id": trace_hex,
        "span_parents": [],
        "row_id": row_id,
        "attempt_id": attempt_id,
        "execution": execution,
        "name": name,
        "kind": "internal",
        "start": start,
        "end": end,
        "status": "ok" if ok else "error",
        "attributes": attributes,
        "events": [],
    }
    if not ok:
        span["status_description"] = f"{error.type}: {error.message}" if error else status
    if not ok and error is not None:
        exception = {"exception.type": error.type, "exception.message": error.message}
        if error.traceback:
            exception["exception.stacktrace"] = error.traceback
        span["events"] = [{"name": "exception", "timestamp": end, "attributes": exception}]
    return span
