"""Row versions and their traces built by hand, for the judges' tests and benchmark."""

from __future__ import annotations

from typing import Any

from pytest_evalrows.core.models import Metrics, RowVersion, SpanRecord
from pytest_evalrows.core.trace import Trace

TRACE_ID = "t" * 32


def make_span(span_id: str, name: str, start: float, end: float, **fields: Any) -> SpanRecord:
    parents = fields.pop("parents", ["root"])
    return SpanRecord(
        span_id=span_id,
        root_span_id=TRACE_ID,
        span_parents=parents,
        row_id="row-1",
        attempt_id="a1",
        name=name,
        start=start,
        end=end,
        **fields,
    )


def make_trace(*children: SpanRecord, row_id: str = "row-1", **row: Any) -> Trace:
    version = RowVersion(
        row_id=row_id,
        version_id="v1",
        nodeid=f"test_x.py::test[{row_id}]",
        attempt_id="a1",
        execution=1,
        status=row.pop("status", "passed"),
        metrics=Metrics(start=100.0, end=101.0, duration=1.0),
        root_span_id=TRACE_ID,
        span_id="root",
        **row,
    )
    root = make_span("root", "test[row-1]", 100.0, 101.0, parents=[])
    return Trace(version, [root, *children])


def agent_trace() -> Trace:
    """A row that searched, then called the model, then answered."""
    return make_trace(
        make_span("s1", "search", 100.1, 100.2, attributes={"gen_ai.tool.name": "web_search"}),
        make_span(
            "s2",
            "chat gpt-x",
            100.3,
            100.6,
            attributes={"gen_ai.usage.input_tokens": 400, "gen_ai.usage.output_tokens": 50},
        ),
        make_span("s3", "answer", 100.7, 100.8, attributes={"evalrows.span_type": "tool"}),
    )


def stored_row(
    row_id: str, trace_id: str, *, spans: int = 3, error_span: bool = False
) -> tuple[RowVersion, list[SpanRecord]]:
    """A row version as a store keeps it, with its root span and ``spans`` child spans (the
    last one in error when ``error_span``), under trace ``trace_id``."""
    root_id = f"{row_id}-root"
    version = RowVersion(
        row_id=row_id,
        version_id=f"{row_id}-v1",
        nodeid=f"test_x.py::test[{row_id}]",
        attempt_id="a1",
        execution=1,
        status="passed",
        input={"question": f"about {row_id}"},
        output=f"answer for {row_id}",
        metrics=Metrics(start=100.0, end=101.0, duration=1.0),
        root_span_id=trace_id,
        span_id=root_id,
    )
    records = [
        SpanRecord(
            span_id=root_id,
            root_span_id=trace_id,
            row_id=row_id,
            attempt_id="a1",
            name=f"test[{row_id}]",
            start=100.0,
            end=101.0,
        )
    ]
    for index in range(spans):
        failed = error_span and index == spans - 1
        records.append(
            SpanRecord(
                span_id=f"{row_id}-s{index}",
                root_span_id=trace_id,
                span_parents=[root_id],
                row_id=row_id,
                attempt_id="a1",
                name="search" if index == 0 else f"step-{index}",
                start=100.1 + index * 0.1,
                end=100.15 + index * 0.1,
                status="error" if failed else "unset",
                attributes={"gen_ai.tool.name": "web_search"} if index == 0 else {"i": index},
            )
        )
    return version, records
