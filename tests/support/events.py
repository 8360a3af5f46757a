"""Events as the HTTP store sends them to ``evalrows serve`` (and Braintrust): a row version
and a span under it, in the wire format."""

from __future__ import annotations

import uuid
from typing import Any

from pytest_evalrows.braintrust import wire
from pytest_evalrows.models import Metrics, RowVersion, SpanRecord

TRACE = "a" * 32


def row_event(
    row_id: str,
    *,
    attempt: str = "attempt-1",
    version_id: str | None = None,
    span_id: str | None = None,
    status: str = "passed",
    **fields: Any,
) -> dict[str, Any]:
    """A row version as the HTTP store sends it."""
    row = RowVersion(
        row_id=row_id,
        version_id=version_id or uuid.uuid4().hex,
        nodeid=f"tests/test_a.py::test_x[{row_id}]",
        attempt_id=attempt,
        execution=1,
        status=status,  # type: ignore[arg-type]
        metrics=Metrics(start=100.0, end=101.5, duration=1.5),
        root_span_id=TRACE,
        span_id=span_id or uuid.uuid4().hex[:16],
        **fields,
    )
    return wire.row_event(row.model_dump(mode="json"))


def span_event(span_id: str, row_id: str = "r1", parent: str = "p" * 16) -> dict[str, Any]:
    span = SpanRecord(
        span_id=span_id,
        root_span_id=TRACE,
        span_parents=[parent],
        row_id=row_id,
        attempt_id="attempt-1",
        name=f"llm {span_id}",
        start=100.1,
        end=100.2,
        attributes={"gen_ai.system": "openai"},
    )
    return wire.span_event(span.model_dump(mode="json"))
