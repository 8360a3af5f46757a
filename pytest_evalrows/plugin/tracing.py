"""OpenTelemetry: every span started while a row runs is stamped with the row and captured.

The row is the root of its trace, as in the store. When the plugin set up the provider itself,
a non-recording span context carrying the row's trace and span ids is made current for the
execution, so the test's spans (the user's, instrumentation's) become its children at the
cost of one context switch, not a recorded span. When the spans go to a provider the user
configured, their exporters must see that root too: each execution is then a real span of
their provider, and the row takes its ids.

Several executions can run at once in one process, each in a ``contextvars.Context`` of its
own. The row a span belongs to travels in that context (``_row_scope``), with the signs that
a wider fixture or a plain test runs there; a span started where none is set (a thread the
test started without its context) goes to the live row whose trace its parent is in, else,
while executions run one at a time, to the only live row, else to no row: never to another
row. A user's exporter sees such a thread's spans in traces of their own unless the context
travels with it (``core.row.row_context``, ``run_in_row_context``, ``contextvars.copy_context``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
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
from .row_scopes import ActiveRow as ActiveRow
from .row_scopes import Outside, PlainTest, Scope
from .span_records import count_tokens, span_record

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_STATUS_CODES = {"ok": StatusCode.OK, "error": StatusCode.ERROR}


# Where spans started now belong. Left scopes are closed, not only reset: a Context copied
# while one was in effect (an event loop's runner made during a fixture) keeps it after.
_row_scope: ContextVar[Scope] = ContextVar("evalrows_row_scope", default=None)


def _reset(token: Token[Scope]) -> bool:
    """Reset the scope; False when the token is of another Context (left from elsewhere, as
    ``Tracing.flush`` does after an interrupt): that Context keeps its own, closed."""
    try:
        _row_scope.reset(token)
    except ValueError:
        return False
    return True


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
        # Set while executions run at once: a span of unknown context is then nobody's.
        self.concurrent = False
        # Process-wide hints for spans of unknown context while executions run one at a
        # time, as their scopes say: wider fixtures being set up or torn down, a plain test.
        self.outside_rows = 0
        self.in_plain_test = False
        # Rows entered and not yet left, by trace id; the only one of them, if only one.
        self._live: dict[int, ActiveRow] = {}
        self._sole: ActiveRow | None = None
        self._owners: dict[int, ActiveRow] = {}
        self._ignored: set[int] = set()
        self._on_unowned = on_unowned
        self._on_late = on_late
        self._lock = threading.Lock()

    def skip(self, span_id: int) -> None:
        """Leave a span uncaptured: a row's recorded root, which the plugin stores itself."""
        with self._lock:
            self._owners.pop(span_id, None)
            self._ignored.add(span_id)

    def live_rows(self) -> list[ActiveRow]:
        with self._lock:
            return list(self._live.values())

    def add_live(self, row: ActiveRow, trace_id: int) -> None:
        with self._lock:
            self._live[trace_id] = row
            self._sole = row if len(self._live) == 1 else None

    def remove_live(self, row: ActiveRow, trace_id: int) -> None:
        with self._lock:
            if self._live.get(trace_id) is row:
                del self._live[trace_id]
            self._sole = next(iter(self._live.values())) if len(self._live) == 1 else None

    def count_outside(self, change: int) -> None:
        with self._lock:
            self.outside_rows += change

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if judging.get():  # a judge's own call (an LLM judge's request): nobody's row
            self.skip(span.context.span_id)
            return
        scope = _row_scope.get()
        if scope is None or scope.closed:
            row = self._unscoped_row(span)
            if row is None:
                return
        elif isinstance(scope, ActiveRow):
            row = scope
        else:
            if isinstance(scope, PlainTest):
                self.skip(span.context.span_id)
            return
        span.set_attributes(row.attributes)
        with self._lock:
            self._owners[span.context.span_id] = row

    def _unscoped_row(self, span: Span) -> ActiveRow | None:
        """The row of a span started where no scope is set; None for a span of no row."""
        parent = span.parent
        if parent is not None:
            # Its context travelled by other means (instrumented threads, a hand attach).
            row = self._live.get(parent.trace_id)
            if row is not None:
                return row
        if self.concurrent or self.outside_rows:
            return None
        row = self._sole
        if row is None and self.in_plain_test:
            self.skip(span.context.span_id)
        return row

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
        count_tokens(row.draft, span.attributes)
        if row.closed:
            self._on_late(row, record)
        else:
            row.draft.spans.append(record)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


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
                # Only the row of this context can have its context changed from here.
                row = _row_scope.get()
                if isinstance(row, ActiveRow) and not row.closed:
                    self._late_root(row)

    def _late_root(self, row: ActiveRow) -> None:
        """A row whose setup configured the provider (a session fixture, say) gets its root
        there too. Nothing of it was recorded yet (there was no provider), so it can still
        take the root's ids; unless another context was entered on top of the row's."""
        if row.context is None or otel_context.get_current() is not row.context:
            return
        planned = row.draft.trace_id
        root = self._start_root(row)
        if root is not None:
            self.processor.remove_live(row, planned)
            self.processor.add_live(row, row.draft.trace_id)
            row.late_token = otel_context.attach(trace.set_span_in_context(root))

    def enter_row(self, row: ActiveRow) -> None:
        """Make the row current in this context: its scope, and its root context."""
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
        row.otel_token = otel_context.attach(context)
        row.context = context
        row.token = _row_scope.set(row)
        self.processor.add_live(row, draft.trace_id)

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
        """Leave the row; in the context it was entered in, restore what entering changed."""
        row.closed = True
        self.processor.remove_live(row, row.draft.trace_id)
        token, row.token = row.token, None
        tokens = (row.late_token, row.otel_token)  # the late root's was attached last
        row.context = row.late_token = row.otel_token = None
        if token is None or not _reset(token):
            return  # the OpenTelemetry tokens are of that other Context too
        for otel_token in tokens:
            if otel_token is not None:
                otel_context.detach(otel_token)  # type: ignore[arg-type]

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
        outside = Outside()
        outside.otel_token = otel_context.attach(otel_context.Context())
        outside.token = _row_scope.set(outside)
        self.processor.count_outside(1)

    def exit_outside(self) -> None:
        """Leave the innermost ``enter_outside`` of this context (nothing if there is none)."""
        outside = _row_scope.get()
        if not isinstance(outside, Outside) or outside.closed or outside.token is None:
            return
        outside.closed = True
        self.processor.count_outside(-1)
        if _reset(outside.token):
            otel_context.detach(outside.otel_token)  # type: ignore[arg-type]

    def enter_plain(self) -> PlainTest:
        """A test that is not an eval begins in this context; give ``exit_plain`` the result."""
        plain = PlainTest()
        plain.token = _row_scope.set(plain)
        self.processor.in_plain_test = True
        return plain

    def exit_plain(self, plain: PlainTest) -> None:
        plain.closed = True
        self.processor.in_plain_test = False
        token, plain.token = plain.token, None
        if token is not None:
            _reset(token)

    def flush(self) -> None:
        """Flush the provider: never shut it down, it may be the user's."""
        # Rows an interrupt left current are left, and the roots of rows that never finished
        # still reach the exporter.
        for row in self.processor.live_rows():
            self.exit_row(row)
        for span in list(self._roots.values()):
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
