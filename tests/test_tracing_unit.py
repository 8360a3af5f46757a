"""Unit tests: the span processor on a real SDK provider (never the global one), and the
store's stale-span deletion on a real SQLite file."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, Status, StatusCode

import pytest_evalrows.plugin.tracing as tracing_module
from pytest_evalrows.core import ids
from pytest_evalrows.core.row import RowDraft, RowPlan
from pytest_evalrows.models import ErrorInfo, Metrics, RowVersion, SpanRecord, StaleSpan
from pytest_evalrows.plugin import building
from pytest_evalrows.plugin.span_records import span_record
from pytest_evalrows.plugin.tracing import ActiveRow, RowSpanProcessor, Tracing
from pytest_evalrows.store.sqlite import SQLiteStore

ATTEMPT = "attempt-unit"
EXPERIMENT = "unit-exp"
ROW_ID = 'tests/t.py::test_x[a"b-ü]'


def active_row(execution: int = 2, row_id: str = ROW_ID) -> ActiveRow:
    plan = RowPlan(row_id=row_id, nodeid=row_id, input={}, params_hash="h", markers=["eval"])
    draft = RowDraft(
        plan=plan,
        execution=execution,
        trace_id=ids.new_trace_id(),
        span_id=ids.new_span_id(),
        start=time.time(),
    )
    return ActiveRow(draft, EXPERIMENT, ATTEMPT)


@dataclass
class Setup:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    processor: RowSpanProcessor
    tracing: Tracing
    unowned: list[SpanRecord] = field(default_factory=list)
    late: list[tuple[ActiveRow, SpanRecord]] = field(default_factory=list)

    @property
    def tracer(self) -> trace.Tracer:
        return self.provider.get_tracer("unit")

    def exported(self, name: str) -> dict[str, object]:
        (span,) = [s for s in self.exporter.get_finished_spans() if s.name == name]
        return dict(span.attributes or {})


@pytest.fixture
def otel() -> Iterator[Setup]:
    unowned: list[SpanRecord] = []
    late: list[tuple[ActiveRow, SpanRecord]] = []
    processor = RowSpanProcessor(
        ATTEMPT,
        lambda rec: unowned.append(SpanRecord.model_validate(rec)),
        lambda row, rec: late.append((row, SpanRecord.model_validate(rec))),
    )
    provider = TracerProvider(shutdown_on_exit=False)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(processor)
    tracing = Tracing(processor, "attach")
    yield Setup(provider, exporter, processor, tracing, unowned, late)
    provider.shutdown()


@pytest.fixture
def row(otel: Setup) -> Iterator[ActiveRow]:
    active = active_row()
    otel.tracing.enter_row(active)
    try:
        yield active
    finally:
        if not active.closed:
            otel.tracing.exit_row(active)


STAMP = {
    "evalrows.attempt_id": ATTEMPT,
    "evalrows.row_id": ROW_ID,
    "evalrows.experiment": EXPERIMENT,
    "evalrows.execution": 2,
}


def stamp(attributes: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in attributes.items() if key.startswith("evalrows.")}


def test_spans_under_a_row_are_stamped_and_captured_under_its_root(
    otel: Setup, row: ActiveRow
) -> None:
    with otel.tracer.start_as_current_span("outer", kind=SpanKind.CLIENT) as outer:
        outer.set_attribute("tags", ("x", "y"))
        with otel.tracer.start_as_current_span("inner"):
            pass
    otel.tracing.exit_row(row)

    records = {record.name: record for record in _records(row)}
    assert sorted(records) == ["inner", "outer"]
    outer_record, inner_record = records["outer"], records["inner"]
    assert outer_record.span_parents == [row.span_hex]
    assert inner_record.span_parents == [outer_record.span_id]
    for record in records.values():
        assert record.root_span_id == row.trace_hex
        assert (record.row_id, record.attempt_id, record.execution) == (ROW_ID, ATTEMPT, 2)
        assert stamp(record.attributes) == STAMP
    assert outer_record.kind == "client"
    assert outer_record.attributes["tags"] == ["x", "y"]
    # Stamped in on_start: the user's own exporter sees the attributes too.
    assert stamp(otel.exported("outer")) == STAMP
    assert stamp(otel.exported("inner")) == STAMP
    assert otel.unowned == []
    assert otel.late == []
    # The row's root is not a recorded span: only the two children were exported.
    assert len(otel.exporter.get_finished_spans()) == 2


def test_a_span_started_in_a_thread_hangs_under_the_row_root(otel: Setup, row: ActiveRow) -> None:
    def work() -> None:
        with otel.tracer.start_as_current_span("threaded"):
            pass

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    (record,) = _records(row)
    assert record.name == "threaded"
    assert record.root_span_id == row.trace_hex
    assert record.span_parents == [row.span_hex]
    assert stamp(record.attributes) == STAMP


def test_nesting_inside_a_thread_is_kept(otel: Setup, row: ActiveRow) -> None:
    def work() -> None:
        with (
            otel.tracer.start_as_current_span("thread-outer"),
            otel.tracer.start_as_current_span("thread-inner"),
        ):
            pass

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    records = {record.name: record for record in _records(row)}
    assert records["thread-outer"].span_parents == [row.span_hex]
    assert records["thread-inner"].span_parents == [records["thread-outer"].span_id]


def test_spans_outside_rows_belong_to_no_row(otel: Setup, row: ActiveRow) -> None:
    with otel.tracing.outside_rows(), otel.tracer.start_as_current_span("fixture"):
        pass
    with otel.tracer.start_as_current_span("after"):
        pass

    (unowned,) = otel.unowned
    assert unowned.name == "fixture"
    assert (unowned.row_id, unowned.execution, unowned.attempt_id) == (None, 0, ATTEMPT)
    assert unowned.span_parents == []
    assert unowned.root_span_id != row.trace_hex
    assert stamp(unowned.attributes) == {}
    assert stamp(otel.exported("fixture")) == {}
    # Back in the row: the context and the stamping are restored.
    (after,) = _records(row)
    assert after.name == "after"
    assert after.span_parents == [row.span_hex]
    assert stamp(after.attributes) == STAMP


def test_spans_with_no_active_row_belong_to_no_row(otel: Setup) -> None:
    with otel.tracer.start_as_current_span("plain"):
        pass
    (record,) = otel.unowned
    assert (record.name, record.row_id, record.execution) == ("plain", None, 0)
    assert stamp(otel.exported("plain")) == {}


def test_a_span_ending_after_its_row_closed_is_reported_late(otel: Setup, row: ActiveRow) -> None:
    span = otel.tracer.start_span("outlives")
    otel.tracing.exit_row(row)
    assert otel.processor.live_rows() == []
    span.end()
    assert row.draft.spans == []
    assert otel.unowned == []
    ((late_row, record),) = otel.late
    assert late_row is row
    assert (record.name, record.row_id, record.execution) == ("outlives", ROW_ID, 2)
    assert record.span_parents == [row.span_hex]


def test_gen_ai_token_counts_add_up_in_the_draft(otel: Setup, row: ActiveRow) -> None:
    usages: list[dict[str, object]] = [
        {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 4},
        # the older names count when the newer are absent
        {"gen_ai.usage.prompt_tokens": 7, "gen_ai.usage.completion_tokens": 1},
        # both present: counted once
        {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.prompt_tokens": 100},
        # not an int: ignored
        {"gen_ai.usage.output_tokens": 2.5},
    ]
    for number, usage in enumerate(usages):
        with otel.tracer.start_as_current_span(f"llm-{number}") as span:
            for key, value in usage.items():
                span.set_attribute(key, value)  # type: ignore[arg-type]
    with otel.tracing.outside_rows(), otel.tracer.start_as_current_span("fixture-llm") as span:
        span.set_attribute("gen_ai.usage.input_tokens", 1000)
    assert (row.draft.prompt_tokens, row.draft.completion_tokens) == (117, 5)


def test_span_record_fields(otel: Setup) -> None:
    tracer = otel.tracer
    with tracer.start_as_current_span("call", kind=SpanKind.SERVER) as span:
        span.add_event("retry", {"attempt": 2, "codes": (500, 502)})
        span.set_status(Status(StatusCode.ERROR, "boom"))
    (finished,) = [s for s in otel.exporter.get_finished_spans() if s.name == "call"]
    active = active_row(execution=3)
    record = SpanRecord.model_validate(span_record(finished, active, "other-attempt"))
    assert finished.context is not None and finished.start_time and finished.end_time
    assert record.span_id == ids.span_id_hex(finished.context.span_id)
    assert record.root_span_id == active.trace_hex
    assert record.span_parents == [active.span_hex]
    assert (record.row_id, record.attempt_id, record.execution) == (ROW_ID, "other-attempt", 3)
    assert (record.kind, record.status) == ("server", "error")
    assert span_record(finished, active, "a")["status_description"] == "boom"
    assert record.start == finished.start_time / 1e9
    assert record.end == finished.end_time / 1e9
    assert record.events == [
        {
            "name": "retry",
            "timestamp": finished.events[0].timestamp / 1e9,
            "attributes": {"attempt": 2, "codes": [500, 502]},
        }
    ]
    unowned = SpanRecord.model_validate(span_record(finished, None, "a"))
    assert (unowned.row_id, unowned.execution, unowned.span_parents) == (None, 0, [])
    assert unowned.root_span_id == ids.trace_id_hex(finished.context.trace_id)
    # JSON round trip: what the store keeps.
    assert SpanRecord.model_validate_json(record.model_dump_json()) == record


def test_flush_flushes_but_never_shuts_down_the_provider() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=3_600_000))
    tracing = Tracing(RowSpanProcessor(ATTEMPT, lambda r: None, lambda a, r: None), "attach")
    tracing.provider = provider
    try:
        for name in ("first", "second"):
            with provider.get_tracer("unit").start_as_current_span(name):
                pass
            tracing.flush()
            assert [s.name for s in exporter.get_finished_spans()][-1] == name
        assert len(exporter.get_finished_spans()) == 2
    finally:
        provider.shutdown()


def test_tracing_off_builds_no_tracing(pytester: pytest.Pytester) -> None:
    # With tracing off the recorder makes no Tracing at all, so nothing can connect.
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_off="""
        import pytest
        from opentelemetry import trace
        from pytest_evalrows.plugin import recorder_key

        @pytest.mark.eval
        @pytest.mark.parametrize("n", [1])
        def test_off(n, request):
            assert request.config.stash[recorder_key].tracing is None
            assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:xdist", "--eval-experiment=off", "--eval-tracing=off"
    )
    result.assert_outcomes(passed=1)


# -- a provider the user configured: each row is a recorded root there ---------------------


@dataclass
class User:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    tracing: Tracing
    unowned: list[SpanRecord] = field(default_factory=list)

    def finished(self, name: str) -> ReadableSpan:
        (span,) = [s for s in self.exporter.get_finished_spans() if s.name == name]
        return span


def user_provider(provider: TracerProvider) -> User:
    unowned: list[SpanRecord] = []
    processor = RowSpanProcessor(
        ATTEMPT, lambda rec: unowned.append(SpanRecord.model_validate(rec)), lambda r, s: None
    )
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(processor, "auto")
    tracing.attach(provider)
    return User(provider, exporter, tracing, unowned)


@pytest.fixture
def user() -> Iterator[User]:
    provider = TracerProvider(shutdown_on_exit=False)
    yield user_provider(provider)
    provider.shutdown()


def test_with_the_users_provider_a_row_is_a_recorded_root_whose_ids_it_takes(user: User) -> None:
    row = active_row()
    planned = (row.draft.trace_id, row.draft.span_id)
    user.tracing.enter_row(row)
    with user.provider.get_tracer("unit").start_as_current_span("child"):
        pass
    user.tracing.exit_row(row)
    draft = row.draft
    assert (draft.trace_id, draft.span_id) != planned
    assert (row.trace_hex, row.span_hex) == (
        ids.trace_id_hex(draft.trace_id),
        ids.span_id_hex(draft.span_id),
    )
    draft.error = ErrorInfo("AssertionError", "assert 1 == 2", "t.py:3: in test_x")
    end = time.time()
    root = building.root_span(
        draft, status="failed", end=end, attempt_id=ATTEMPT, experiment=EXPERIMENT
    )
    user.tracing.end_row(draft, root)

    exported = user.finished(ROW_ID)  # no pytest item here: named by the row id
    assert exported.context is not None and exported.parent is None
    assert (exported.context.trace_id, exported.context.span_id) == (
        draft.trace_id,
        draft.span_id,
    )
    assert (exported.start_time, exported.end_time) == (int(draft.start * 1e9), int(end * 1e9))
    assert dict(exported.attributes or {}) == {**STAMP, "evalrows.status": "failed"}
    assert exported.status.status_code is StatusCode.ERROR
    assert exported.status.description == "AssertionError: assert 1 == 2"
    (event,) = exported.events
    assert (event.name, event.timestamp) == ("exception", int(end * 1e9))
    assert dict(event.attributes or {}) == {
        "exception.type": "AssertionError",
        "exception.message": "assert 1 == 2",
        "exception.stacktrace": "t.py:3: in test_x",
    }
    # Its child points to it; the root itself is the plugin's to store, not a captured span.
    child = user.finished("child")
    assert child.parent is not None and child.parent.span_id == draft.span_id
    assert [record.name for record in _records(row)] == ["child"]
    assert _records(row)[0].span_parents == [row.span_hex]
    assert user.unowned == []


def test_a_passed_rows_recorded_root_is_ok_without_events(user: User) -> None:
    row = active_row()
    user.tracing.enter_row(row)
    user.tracing.exit_row(row)
    root = building.root_span(
        row.draft, status="passed", end=time.time(), attempt_id=ATTEMPT, experiment=EXPERIMENT
    )
    user.tracing.end_row(row.draft, root)
    (exported,) = user.exporter.get_finished_spans()
    assert (exported.status.status_code, exported.status.description) == (StatusCode.OK, None)
    assert exported.events == ()
    # Ended once: ending the row again changes nothing.
    user.tracing.end_row(row.draft, root)
    user.tracing.flush()
    assert len(user.exporter.get_finished_spans()) == 1


def test_a_root_the_users_sampler_drops_leaves_the_rows_own_ids() -> None:
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF), shutdown_on_exit=False)
    try:
        user = user_provider(provider)
        row = active_row()
        planned = (row.draft.trace_id, row.draft.span_id)
        user.tracing.enter_row(row)
        with provider.get_tracer("unit").start_as_current_span("child"):
            pass
        user.tracing.exit_row(row)
        # The store still takes the row's spans, under the ids chosen for it.
        assert (row.draft.trace_id, row.draft.span_id) == planned
        (record,) = _records(row)
        assert (record.name, record.span_parents) == ("child", [row.span_hex])
        assert [span.name for span in user.exporter.get_finished_spans()] == ["child"]
    finally:
        provider.shutdown()


def test_flush_ends_the_roots_of_rows_that_never_finished(user: User) -> None:
    row = active_row()
    user.tracing.enter_row(row)
    user.tracing.exit_row(row)
    assert user.exporter.get_finished_spans() == ()
    user.tracing.flush()
    (exported,) = user.exporter.get_finished_spans()
    assert exported.context is not None and exported.context.span_id == row.draft.span_id


def test_with_the_plugins_own_provider_the_root_is_not_recorded(otel: Setup) -> None:
    row = active_row()
    planned = (row.draft.trace_id, row.draft.span_id)
    otel.tracing.enter_row(row)
    assert not trace.get_current_span().is_recording()
    assert trace.get_current_span().get_span_context().span_id == row.draft.span_id
    otel.tracing.exit_row(row)
    assert (row.draft.trace_id, row.draft.span_id) == planned


# -- the row's context in threads it did not reach -----------------------------------------


def test_row_context_puts_a_thread_that_has_none_under_the_row(otel: Setup) -> None:
    row = active_row()
    seen: list[tuple[int, int]] = []

    def work() -> None:
        with otel.tracer.start_as_current_span("threaded") as span:
            seen.append((span.get_span_context().trace_id, span.parent.span_id))  # type: ignore[attr-defined]

    def thread_body() -> None:
        outside = trace.get_current_span
        assert not outside().get_span_context().is_valid
        tracing_module.run_in_row_context(row.draft, work)
        assert not outside().get_span_context().is_valid  # and left as it was

    def in_row() -> str:
        with otel.tracer.start_as_current_span("in-row"):
            pass
        return "done"

    otel.tracing.enter_row(row)
    try:
        thread = threading.Thread(target=thread_body)
        thread.start()
        thread.join()
        # In the row's own context already: nothing changes, a nested span stays the parent.
        with otel.tracer.start_as_current_span("outer") as outer:
            current = tracing_module.row_context(row.draft)
            assert trace.get_current_span(current) is outer
        result: list[str] = []
        thread = threading.Thread(
            target=lambda: result.append(tracing_module.run_in_row_context(row.draft, in_row))
        )
        thread.start()
        thread.join()
        assert result == ["done"]
    finally:
        otel.tracing.exit_row(row)
    assert seen == [(row.draft.trace_id, row.draft.span_id)]
    records = {record.name: record for record in _records(row)}
    assert records["in-row"].span_parents == [row.span_hex]
    assert records["in-row"].root_span_id == row.trace_hex
    # Exported in the row's trace too, not only re-homed by the store.
    (exported,) = [s for s in otel.exporter.get_finished_spans() if s.name == "in-row"]
    assert exported.context is not None and exported.context.trace_id == row.draft.trace_id


# -- SQLiteStore.delete_stale_spans ----------------------------------------------------------

R1 = ROW_ID
R2 = "tests/t.py::test_x[plain]"
R3 = "tests/t.py::test_x[never-written]"


def version(row_id: str, attempt: str, execution: int) -> RowVersion:
    return RowVersion(
        row_id=row_id,
        version_id=str(uuid.uuid4()),
        nodeid=row_id,
        attempt_id=attempt,
        execution=execution,
        status="passed",
        metrics=Metrics(start=1.0, end=2.0, duration=1.0),
        root_span_id="1" * 32,
        span_id="2" * 16,
    )


def span(span_id: str, row_id: str | None, attempt: str, execution: int) -> SpanRecord:
    return SpanRecord(
        span_id=span_id,
        root_span_id="1" * 32,
        row_id=row_id,
        attempt_id=attempt,
        execution=execution,
        name=f"name-{span_id}",
        start=float(int(span_id[-2:], 16)),
        end=100.0,
    )


def stale(s: SpanRecord) -> StaleSpan:
    assert s.row_id is not None
    return StaleSpan(s.row_id, s.span_id, s.attempt_id, s.execution, s.name)


@dataclass
class Stores:
    path: Path
    exp1: str
    exp2: str
    spans1: dict[str, SpanRecord]
    spans2: list[SpanRecord]

    def remaining(self, experiment_id: str) -> list[SpanRecord]:
        with SQLiteStore(self.path, create=False) as store:
            return store.list_spans(experiment_id)


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    path = tmp_path / "store.db"
    spans1 = {
        "r1-a1": span("00000000000000a1", R1, "A", 1),  # older attempt: stale
        "r1-b1": span("00000000000000b1", R1, "B", 1),  # earlier execution: stale
        "r1-b2": span("00000000000000b2", R1, "B", 2),  # latest: live
        "r2-a1": span("00000000000000c1", R2, "A", 1),  # latest: live
        "r2-b1": span("00000000000000c2", R2, "B", 1),  # newer than r2's latest: stale
        "r3-a1": span("00000000000000d1", R3, "A", 1),  # row never written: untouched
        "none-a": span("00000000000000e1", None, "A", 0),  # no row: untouched
        "none-b": span("00000000000000e2", None, "B", 0),
    }
    # Another experiment with the same row ids, where the attempts are the other way round.
    spans2 = [
        span("00000000000000f1", R1, "A", 1),
        span("00000000000000f2", R1, "B", 2),
        span("00000000000000f3", R2, "A", 1),
    ]
    with SQLiteStore(path) as store:
        exp1 = store.get_or_create_experiment("p", "one").id
        exp2 = store.get_or_create_experiment("p", "two").id
        store.write(exp1, [version(R1, "A", 1), version(R2, "A", 1)], [])
        store.write(exp1, [version(R1, "B", 2)], list(spans1.values()))
        store.write(exp2, [version(R1, "A", 1), version(R2, "A", 1)], spans2)
    return Stores(path, exp1, exp2, spans1, spans2)


def test_delete_stale_spans_of_given_rows_only(stores: Stores) -> None:
    spans = stores.spans1
    expected = [stale(spans["r1-a1"]), stale(spans["r1-b1"])]
    with SQLiteStore(stores.path) as store:
        assert sorted(store.delete_stale_spans(stores.exp1, [R1], dry_run=True)) == expected
        assert store.list_spans(stores.exp1) == sorted(spans.values(), key=lambda s: s.start)
        assert store.delete_stale_spans(stores.exp1, []) == []
        assert sorted(store.delete_stale_spans(stores.exp1, {R1})) == expected
        assert store.delete_stale_spans(stores.exp1, [R1]) == []
        assert store.delete_stale_spans(stores.exp1, [R3]) == []
    left = ["r1-b2", "r2-a1", "r2-b1", "r3-a1", "none-a", "none-b"]
    assert stores.remaining(stores.exp1) == sorted(
        (spans[key] for key in left), key=lambda s: s.start
    )
    assert stores.remaining(stores.exp2) == stores.spans2


def test_delete_stale_spans_of_every_row_is_idempotent(stores: Stores) -> None:
    spans = stores.spans1
    with SQLiteStore(stores.path) as store:
        removed = store.delete_stale_spans(stores.exp1)
        assert sorted(removed) == sorted(stale(spans[key]) for key in ("r1-a1", "r1-b1", "r2-b1"))
        assert store.delete_stale_spans(stores.exp1) == []
        assert store.delete_stale_spans(stores.exp1, dry_run=True) == []
    left = ["r1-b2", "r2-a1", "r3-a1", "none-a", "none-b"]
    assert stores.remaining(stores.exp1) == sorted(
        (spans[key] for key in left), key=lambda s: s.start
    )
    assert stores.remaining(stores.exp2) == stores.spans2

    with SQLiteStore(stores.path) as store:
        assert store.delete_stale_spans(stores.exp2) == [stale(stores.spans2[1])]
    assert stores.remaining(stores.exp2) == [stores.spans2[0], stores.spans2[2]]
    assert len(stores.remaining(stores.exp1)) == 5


def _records(row: ActiveRow) -> list[SpanRecord]:
    """The spans captured under a row, validated as the store would read them."""
    return [SpanRecord.model_validate(record) for record in row.draft.spans]
