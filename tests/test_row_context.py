"""Unit tests: the row a span belongs to travels in the ``contextvars.Context`` it starts in, so
executions running at once, each in a Context of its own, keep their spans apart. A real SDK
provider (never the global one), real threads and real Contexts."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from pytest_evalrows.core import ids
from pytest_evalrows.core.row import RowDraft, RowPlan
from pytest_evalrows.models import SpanRecord
from pytest_evalrows.plugin.tracing import ActiveRow, RowSpanProcessor, Tracing

ATTEMPT = "attempt-context"


def active_row(row_id: str) -> ActiveRow:
    plan = RowPlan(row_id=row_id, nodeid=row_id, input={}, params_hash="h", markers=["eval"])
    draft = RowDraft(
        plan=plan,
        execution=1,
        trace_id=ids.new_trace_id(),
        span_id=ids.new_span_id(),
        start=time.time(),
    )
    return ActiveRow(draft, "exp", ATTEMPT)


@dataclass
class Setup:
    provider: TracerProvider
    processor: RowSpanProcessor
    tracing: Tracing
    unowned: list[SpanRecord] = field(default_factory=list)
    late: list[SpanRecord] = field(default_factory=list)
    contexts: list[tuple[contextvars.Context, ActiveRow]] = field(default_factory=list)

    def span(self, name: str) -> None:
        self.provider.get_tracer("unit").start_span(name).end()

    def new_trace(self, name: str) -> None:
        """A span that starts a trace of its own: only the scope ties it to a row."""
        self.provider.get_tracer("unit").start_span(name, context=otel_context.Context()).end()

    def enter(self, row_id: str) -> tuple[contextvars.Context, ActiveRow]:
        """A row entered in a Context of its own, as a case's setup would."""
        ctx, row = contextvars.Context(), active_row(row_id)
        ctx.run(self.tracing.enter_row, row)
        self.contexts.append((ctx, row))
        return ctx, row


@pytest.fixture
def otel() -> Iterator[Setup]:
    unowned: list[SpanRecord] = []
    late: list[SpanRecord] = []
    processor = RowSpanProcessor(
        ATTEMPT,
        lambda rec: unowned.append(SpanRecord.model_validate(rec)),
        lambda row, rec: late.append(SpanRecord.model_validate(rec)),
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    setup = Setup(provider, processor, Tracing(processor, "attach"), unowned, late)
    yield setup
    for ctx, row in setup.contexts:
        if not row.closed:
            ctx.run(setup.tracing.exit_row, row)
    provider.shutdown()


def names(row: ActiveRow) -> list[str]:
    return [record["name"] for record in row.draft.spans]


def in_thread(target: Callable[[], object]) -> None:
    thread = threading.Thread(target=target)
    thread.start()
    thread.join()


def test_two_rows_in_two_contexts_keep_their_interleaved_spans_apart(otel: Setup) -> None:
    otel.processor.concurrent = True
    rows = {"a": otel.enter("t.py::a"), "b": otel.enter("t.py::b")}
    barrier = threading.Barrier(2)
    tracer = otel.provider.get_tracer("unit")

    def work(name: str) -> None:
        # Each step starts once both threads have started the one before: the spans of the
        # two rows start alternately and are open at the same time.
        with tracer.start_as_current_span(f"{name}-outer"):
            barrier.wait()
            with tracer.start_as_current_span(f"{name}-inner"):
                barrier.wait()
                otel.span(f"{name}-leaf")
                barrier.wait()
                otel.new_trace(f"{name}-own-trace")
                barrier.wait()

    threads = [
        threading.Thread(target=ctx.run, args=(work, name)) for name, (ctx, _) in rows.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, (ctx, row) in rows.items():
        ctx.run(otel.tracing.exit_row, row)
        records = {record["name"]: record for record in row.draft.spans}
        assert sorted(records) == [
            f"{name}-inner",
            f"{name}-leaf",
            f"{name}-outer",
            f"{name}-own-trace",
        ]
        assert records[f"{name}-outer"]["span_parents"] == [row.span_hex]
        assert records[f"{name}-own-trace"]["span_parents"] == [row.span_hex]
        assert records[f"{name}-inner"]["span_parents"] == [records[f"{name}-outer"]["span_id"]]
        assert {record["root_span_id"] for record in records.values()} == {row.trace_hex}
        assert {record["row_id"] for record in records.values()} == {row.draft.plan.row_id}
    assert otel.unowned == [] and otel.late == []
    # Entering rows in other Contexts left this one as it was.
    assert not trace.get_current_span().get_span_context().is_valid


def test_a_plain_thread_with_one_live_row_run_alone_goes_to_that_row(otel: Setup) -> None:
    _, row = otel.enter("t.py::a")
    in_thread(lambda: otel.span("plain"))
    assert names(row) == ["plain"]
    assert row.draft.spans[0]["span_parents"] == [row.span_hex]
    assert otel.unowned == []


def test_a_plain_thread_with_two_live_rows_belongs_to_neither(otel: Setup) -> None:
    _, a = otel.enter("t.py::a")
    _, b = otel.enter("t.py::b")
    in_thread(lambda: otel.span("plain"))
    assert names(a) == names(b) == []
    (record,) = otel.unowned
    assert (record.name, record.row_id) == ("plain", None)


def test_a_plain_thread_while_cases_run_concurrently_belongs_to_no_row(otel: Setup) -> None:
    _, row = otel.enter("t.py::a")
    otel.processor.concurrent = True
    in_thread(lambda: otel.span("plain"))
    assert names(row) == []
    assert [record.name for record in otel.unowned] == ["plain"]


def test_a_thread_that_attached_a_rows_context_by_hand_lands_in_that_row(otel: Setup) -> None:
    ctx_a, a = otel.enter("t.py::a")
    _, b = otel.enter("t.py::b")
    otel.processor.concurrent = True
    tracer = otel.provider.get_tracer("unit")
    # A span of row a's, carried to the thread as instrumented threads carry it.
    parent = ctx_a.run(tracer.start_span, "parent")
    carried = ctx_a.run(lambda: trace.set_span_in_context(parent))

    def work() -> None:
        token = otel_context.attach(carried)
        try:
            with tracer.start_as_current_span("attached"):
                otel.span("attached-child")
        finally:
            otel_context.detach(token)

    in_thread(work)
    parent.end()
    records = {record["name"]: record for record in a.draft.spans}
    assert sorted(records) == ["attached", "attached-child", "parent"]
    assert records["attached"]["span_parents"] == [records["parent"]["span_id"]]
    assert records["attached-child"]["span_parents"] == [records["attached"]["span_id"]]
    assert names(b) == [] and otel.unowned == []


def test_outside_rows_in_one_context_leaves_a_row_in_another_alone(otel: Setup) -> None:
    ctx_a, row = otel.enter("t.py::a")
    fixture = contextvars.Context()
    fixture.run(otel.tracing.enter_outside)
    fixture.run(otel.span, "session-fixture")
    ctx_a.run(otel.span, "in-row")
    ctx_a.run(otel.new_trace, "in-row-own-trace")
    # Nested, as a fixture requested by another fixture.
    fixture.run(otel.tracing.enter_outside)
    fixture.run(otel.tracing.exit_outside)
    fixture.run(otel.span, "still-outside")
    fixture.run(otel.tracing.exit_outside)
    assert otel.processor.outside_rows == 0
    ctx_a.run(otel.span, "in-row-after")
    assert names(row) == ["in-row", "in-row-own-trace", "in-row-after"]
    assert [record.name for record in otel.unowned] == ["session-fixture", "still-outside"]
    assert all(record.span_parents == [] for record in otel.unowned)


def test_a_plain_test_in_one_context_drops_only_its_own_spans(otel: Setup) -> None:
    otel.processor.concurrent = True
    ctx_a, row = otel.enter("t.py::a")
    plain_ctx = contextvars.Context()
    plain = plain_ctx.run(otel.tracing.enter_plain)
    plain_ctx.run(otel.span, "plain-test")
    ctx_a.run(otel.span, "in-row")
    assert names(row) == ["in-row"] and otel.unowned == []
    plain_ctx.run(otel.tracing.exit_plain, plain)
    # Once the plain test is over, its Context's spans are no longer dropped.
    plain_ctx.run(otel.span, "after-plain")
    assert [record.name for record in otel.unowned] == ["after-plain"]
    assert names(row) == ["in-row"] and otel.late == []


def test_a_context_copied_while_a_row_ran_does_not_hold_it_after(otel: Setup) -> None:
    # An event loop's runner made during a row keeps a copy of that row's Context for good.
    ctx_a, a = otel.enter("t.py::a")
    runner = ctx_a.run(contextvars.copy_context)
    ctx_a.run(otel.tracing.exit_row, a)
    fixture = contextvars.Context()
    fixture.run(otel.tracing.enter_outside)
    stale_outside = fixture.run(contextvars.copy_context)
    fixture.run(otel.tracing.exit_outside)
    _, b = otel.enter("t.py::b")
    runner.run(otel.span, "in-runner")
    stale_outside.run(otel.span, "in-fixture-copy")
    assert names(a) == [] and otel.late == []
    assert names(b) == ["in-runner", "in-fixture-copy"]


def test_flush_leaves_rows_live_in_other_contexts(
    otel: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    ctx_a, a = otel.enter("t.py::a")
    _, b = otel.enter("t.py::b")
    with caplog.at_level(logging.DEBUG):
        otel.tracing.flush()
    assert a.closed and b.closed
    assert otel.processor.live_rows() == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    # Its Context still names the row, closed: a span there is of no row, not a late one.
    ctx_a.run(otel.span, "after-flush")
    assert names(a) == [] and otel.late == []
    assert [record.name for record in otel.unowned] == ["after-flush"]
