"""OpenTelemetry: every span started while a row runs is stamped with the row and captured.

The row is the root of its trace, as in the store: a non-recording span context carrying the
row's trace and span ids is made current for the execution, so the test's spans (the user's,
instrumentation's) become its children at the cost of one context switch, not a recorded span.
Spans started in threads the test starts have no parent; they are tied to the row through the
process-wide active row instead (pytest runs one item at a time per process).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from . import ids
from .records import SpanDoc
from .row import RowDraft
from .values import storable_text

_INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
_TOKEN_TOTALS = ((_INPUT_TOKENS, "prompt_tokens"), (_OUTPUT_TOKENS, "completion_tokens"))


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

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
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
    return {
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


class Tracing:
    """The session's link to OpenTelemetry: which provider, and the row context."""

    def __init__(self, processor: RowSpanProcessor, mode: str) -> None:
        self.processor = processor
        self.mode = mode
        self.provider: TracerProvider | None = None
        self.own_provider = False
        self._tokens: dict[int, object] = {}

    def connect(self) -> str:
        """Attach to the configured provider, or (mode auto) set one up. Says what it did."""
        if self.mode == "off":
            return "span capture off"
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            current.add_span_processor(self.processor)
            self.provider = current
            return "spans captured from your tracer provider"
        if hasattr(current, "add_span_processor"):
            current.add_span_processor(self.processor)
            self.provider = current  # type: ignore[assignment]
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
        self.provider, self.own_provider = provider, True
        return "spans captured by a tracer provider set up for this session"

    def reconnect(self) -> None:
        """In attach mode, pick up a provider the user configured after the session began."""
        if self.provider is None and self.mode == "attach":
            current = trace.get_tracer_provider()
            if hasattr(current, "add_span_processor"):
                current.add_span_processor(self.processor)
                self.provider = current  # type: ignore[assignment]

    def enter_row(self, row: ActiveRow) -> None:
        """Make the row current: its root context for this thread, the active row for others."""
        draft = row.draft
        root = NonRecordingSpan(
            SpanContext(
                trace_id=draft.trace_id,
                span_id=draft.span_id,
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        )
        self._tokens[id(row)] = otel_context.attach(trace.set_span_in_context(root))
        self.processor.active = row

    def exit_row(self, row: ActiveRow) -> None:
        row.closed = True
        if self.processor.active is row:
            self.processor.active = None
        token = self._tokens.pop(id(row), None)
        if token is not None:
            otel_context.detach(token)  # type: ignore[arg-type]

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
        if self.provider is not None:
            self.provider.force_flush()
