"""OpenTelemetry: every span started while a row runs is stamped with the row and captured.

The row is the root of its trace, as in the store. When the plugin set up the provider itself,
a non-recording span context carrying the row's trace and span ids is made current for the
execution, so the test's spans (the user's, instrumentation's) become its children at the
cost of one context switch, not a recorded span. When the spans go to a provider the user
configured, their exporters must see that root too: each execution is then a real span of
their provider, and the row takes its ids.

Spans started in threads the test starts without its context have no parent; the store ties
them to the row through the process-wide active row (pytest runs one item at a time per
process). A user's exporter sees them in traces of their own unless the context travels with
the thread (``core.row.row_context``, ``run_in_row_context``, ``contextvars.copy_context``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from ..core import ids
from ..core.judge_context import judging
from ..core.records import SpanDoc
from ..core.row import RowDraft
from ..core.row import row_context as row_context
from ..core.row import run_in_row_context as run_in_row_context
from ..core.values import storable_text

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_STATUS_CODES = {"ok": StatusCode.OK, "error": StatusCode.ERROR}

_INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")


class ActiveRow:
    """One execution of a row while it runs: the ids and attributes its spans receive."""

    __slots__ = ("attributes", "closed", "draft", "span_hex", "trace_hex")

    def __init__(self, draft: RowDraft, experiment: str, attempt_id: str) -> None:
        self.draft = draft
        self.trace_hex = ids.trace_id_hex(draft.trace_id)
        self.span_hex = ids.span_id_hex(draft.span_id)
        self.closed = False
        self.attributes: dict[str, str | int] = {
            "evalrows.attempt_id": attempt_id,
            "evalrows.row_id": draft.plan.row_id,
            "evalrows.experiment": experiment,
            "evalrows.execution": draft.execution,
        }


class RowSpanProcessor(SpanProcessor):
    """Stamps ``evalrows.*`` attributes in ``on_start`` (so every exporter sees them) and
    captures finished spans into their row, or into the session's list when under no row."""

    def __init__(
        self,
        attempt_id: str,
        on_unowned: Callable[[SpanDoc], None],
        on_late: Callable[[ActiveRow, SpanDoc], None],
    ) -> None:
        self.attempt_id = attempt_id
        self.active: ActiveRow | None = None
        # Spans started outside any row: session and module fixtures.
        self.outside_rows = 0
        # A test that is not an eval runs: its spans are nobody's and are not kept.
        self.in_plain_test = False
        self._owners: dict[int, ActiveRow] = {}
        self._ignored: set[int] = set()
        self._on_unowned = on_unowned
        self._on_late = on_late
        self._lock = threading.Lock()

    def skip(self, span_id: int) -> None:
        """Leave a span uncaptured: a row's recorded root, which the plugin stores itself."""
        with self._lock:
            self._ignored.add(span_id)

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if judging.get():  # a judge's own call (an LLM judge's request): nobody's row
            with self._lock:
                self._ignored.add(span.context.span_id)
            return
        row = None if self.outside_rows else self.active
        if row is None:
            if self.in_plain_test and not self.outside_rows:
                with self._lock:
                    self._ignored.add(span.context.span_id)
            return
        span.set_attributes(row.attributes)
        with self._lock:
            self._owners[span.context.span_id] = row

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        with self._lock:
            row = self._owners.pop(context.span_id, None)
        if row is None:
            with self._lock:
                ignored = context.span_id in self._ignored
                self._ignored.discard(context.span_id)
            if not ignored:
                self._on_unowned(span_record(span, None, self.attempt_id))
            return
        record = span_record(span, row, self.attempt_id)
        draft = row.draft
        attributes = span.attributes or {}
        for names, total in (
            (_INPUT_TOKENS, "prompt_tokens"),
            (_OUTPUT_TOKENS, "completion_tokens"),
        ):
            for name in names:
                value = attributes.get(name)
                if isinstance(value, int):
                    setattr(draft, total, getattr(draft, total) + value)
                    break
        if row.closed:
            self._on_late(row, record)
        else:
            draft.spans.append(record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def span_record(span: ReadableSpan, row: ActiveRow | None, attempt_id: str) -> SpanDoc:
    """A finished SDK span as stored. A span with no parent in the row's trace (started in a
    thread) is hung under the row's root."""
    context = span.context
    assert context is not None
    trace_hex = ids.trace_id_hex(context.trace_id)
    parent = span.parent
    parents = [ids.span_id_hex(parent.span_id)] if parent is not None else []
    if row is not None and trace_hex != row.trace_hex:
        # Started in a thread, outside the row's context: keep the thread's own nesting,
        # move it into the row's trace, and hang its top span under the row's root.
        trace_hex = row.trace_hex
        if not parents:
            parents = [row.span_hex]
    status = span.status.status_code.name.lower() if span.status is not None else "unset"
    record: SpanDoc = {
        "span_id": ids.span_id_hex(context.span_id),
        "root_span_id": trace_hex,
        "span_parents": parents,
        "row_id": row.draft.plan.row_id if row is not None else None,
        "attempt_id": attempt_id,
        "execution": row.draft.execution if row is not None else 0,
        "name": storable_text(span.name),
        "kind": span.kind.name.lower(),
        "start": (span.start_time or 0) / 1e9,
        "end": (span.end_time or 0) / 1e9,
        "status": status,
        "attributes": _json_attributes(span.attributes),
        "events": [
            {
                "name": storable_text(event.name),
                "timestamp": event.timestamp / 1e9,
                "attributes": _json_attributes(event.attributes),
            }
            for event in span.events
        ],
    }
    description = span.status.description if span.status is not None else None
    if description:
        record["status_description"] = storable_text(description)
    return record


def _json_attributes(attributes: Any) -> dict[str, Any]:
    # Names and string values can hold text UTF-8 cannot take (a file name, a tool's output).
    if not attributes:
        return {}
    return {storable_text(key): _json_attribute(value) for key, value in attributes.items()}


def _json_attribute(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, tuple):  # the SDK keeps sequences as tuples
        return [storable_text(item) if isinstance(item, str) else item for item in value]
    return value


class _RefusalWatch(logging.Handler):
    """Counts OpenTelemetry's refusals to set another global tracer provider: the API only
    logs them, and the exporters of the refused provider then get nothing."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.refused = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "TracerProvider" in str(record.msg):
            self.refused += 1


# Where the API logs "Overriding of current TracerProvider is not allowed".
_API_LOGGER = "opentelemetry.trace"

REFUSED = (
    "OpenTelemetry refused a tracer provider set during the session (a process takes one, and "
    "evalrows had set one up at session start): its exporters got no spans. Configure yours "
    "in conftest.py or a plugin, or run with --eval-tracing=attach to keep it"
)


class Tracing:
    """The session's link to OpenTelemetry: which provider, and the row context."""

    def __init__(self, processor: RowSpanProcessor, mode: str) -> None:
        self.processor = processor
        self.mode = mode
        self.provider: TracerProvider | None = None
        # Set when the spans go to a provider the user configured: each execution is then a
        # recorded span of theirs, the root its children point to.
        self.root_tracer: trace.Tracer | None = None
        self._roots: dict[int, trace.Span] = {}
        self._tokens: dict[int, object] = {}
        # id(row) -> the context entered for it: a root recorded late replaces it only while
        # it is still the current one.
        self._entered: dict[int, object] = {}
        self._late_tokens: dict[int, object] = {}
        self._watch: _RefusalWatch | None = None

    def connect(self) -> str:
        """Attach to the configured provider, or (mode auto) set one up. Says what it did."""
        current = trace.get_tracer_provider()
        if hasattr(current, "add_span_processor"):
            self.attach(current)
            return "spans captured from your tracer provider"
        if self.mode == "attach":
            return "spans captured once you configure a tracer provider"
        if type(current).__name__ != "ProxyTracerProvider":
            return f"spans not captured: {type(current).__name__} takes no span processor"
        provider = TracerProvider()
        provider.add_span_processor(self.processor)
        trace.set_tracer_provider(provider)
        if trace.get_tracer_provider() is not provider:  # someone was faster
            return "spans not captured: another tracer provider was set"
        self.provider = provider
        # A provider the user sets from now on is refused: never in silence.
        self._watch = _RefusalWatch()
        logging.getLogger(_API_LOGGER).addHandler(self._watch)
        return "spans captured by a tracer provider set up for this session"

    def attach(self, provider: Any) -> None:
        """Capture the spans of a provider the user configured, and give each row a recorded
        root span there."""
        provider.add_span_processor(self.processor)
        self.provider = provider
        self.root_tracer = provider.get_tracer("pytest_evalrows")

    def reconnect(self) -> None:
        """In attach mode, pick up a provider the user configured after the session began."""
        if self.provider is None and self.mode == "attach":
            current = trace.get_tracer_provider()
            if hasattr(current, "add_span_processor"):
                self.attach(current)
                row = self.processor.active
                if row is not None:
                    self._late_root(row)

    def _late_root(self, row: ActiveRow) -> None:
        """A row whose setup configured the provider (a session fixture, say) gets its root
        there too. Nothing of it was recorded yet (there was no provider), so it can still
        take the root's ids; unless another context was entered on top of the row's."""
        if otel_context.get_current() is not self._entered.get(id(row)):
            return
        root = self._start_root(row)
        if root is not None:
            context = trace.set_span_in_context(root)
            self._late_tokens[id(row)] = otel_context.attach(context)

    def enter_row(self, row: ActiveRow) -> None:
        """Make the row current: its root context for this thread, the active row for others."""
        draft = row.draft
        root: trace.Span | None = None
        if self.root_tracer is not None:
            root = self._start_root(row)
        if root is None:
            root = NonRecordingSpan(
                SpanContext(
                    trace_id=draft.trace_id,
                    span_id=draft.span_id,
                    is_remote=False,
                    trace_flags=_SAMPLED,
                )
            )
        context = trace.set_span_in_context(root)
        self._tokens[id(row)] = otel_context.attach(context)
        self._entered[id(row)] = context
        self.processor.active = row

    def _start_root(self, row: ActiveRow) -> trace.Span | None:
        """The execution as a recorded span of the user's provider, a root, whose ids become
        the row's. None when their sampler drops it: the store still takes every span."""
        assert self.root_tracer is not None
        draft = row.draft
        item = draft.item
        span = self.root_tracer.start_span(
            item.name if item is not None else draft.plan.row_id,
            context=otel_context.Context(),  # the root of a trace of its own
            attributes=row.attributes,
            start_time=int(draft.start * 1e9),
        )
        if not span.is_recording():
            span.end()
            return None
        context = span.get_span_context()
        self.processor.skip(context.span_id)
        draft.trace_id, draft.span_id = context.trace_id, context.span_id
        row.trace_hex = ids.trace_id_hex(context.trace_id)
        row.span_hex = ids.span_id_hex(context.span_id)
        self._roots[id(draft)] = span
        return span

    def exit_row(self, row: ActiveRow) -> None:
        row.closed = True
        if self.processor.active is row:
            self.processor.active = None
        self._entered.pop(id(row), None)
        for tokens in (self._late_tokens, self._tokens):
            token = tokens.pop(id(row), None)
            if token is not None:
                otel_context.detach(token)  # type: ignore[arg-type]

    def end_row(self, draft: RowDraft, root: SpanDoc) -> None:
        """End the execution's recorded root span, if it has one, as the store has it: the
        row's status, the status description and the exception event."""
        span = self._roots.pop(id(draft), None)
        if span is not None:
            _end_like(span, root)

    @contextmanager
    def outside_rows(self) -> Iterator[None]:
        """Spans started in here (session and module fixtures) belong to no row."""
        self.enter_outside()
        try:
            yield
        finally:
            self.exit_outside()

    def enter_outside(self) -> None:
        self.processor.outside_rows += 1
        self._tokens[-self.processor.outside_rows] = otel_context.attach(otel_context.Context())

    def exit_outside(self) -> None:
        token = self._tokens.pop(-self.processor.outside_rows, None)
        self.processor.outside_rows -= 1
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

    def flush(self) -> None:
        """Flush the provider: never shut it down, it may be the user's."""
        # A row an interrupt left current is left, and the roots of rows that never finished
        # still reach the exporter.
        active = self.processor.active
        if active is not None:
            self.exit_row(active)
        for span in self._roots.values():
            span.end()
        self._roots.clear()
        if self.provider is not None:
            self.provider.force_flush()

    def problems(self) -> list[str]:
        """What went wrong with tracing, for the summary; stops watching for it."""
        watch, self._watch = self._watch, None
        if watch is None:
            return []
        logging.getLogger(_API_LOGGER).removeHandler(watch)
        return [REFUSED] if watch.refused else []


def _end_like(span: trace.Span, root: SpanDoc) -> None:
    end = int(root["end"] * 1e9)
    span.set_attributes(root["attributes"])
    for event in root["events"]:
        span.add_event(event["name"], event["attributes"], int(event["timestamp"] * 1e9))
    code = _STATUS_CODES.get(root["status"])
    if code is not None:
        span.set_status(Status(code, root.get("status_description")))
    span.end(end_time=end)
