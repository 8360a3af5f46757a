"""A finished OpenTelemetry span as the store keeps it. Pure: imports no pytest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace import ReadableSpan

from ..core import ids
from ..core.records import SpanDoc
from ..core.row import RowDraft
from ..core.values import storable_text

if TYPE_CHECKING:
    from .row_scopes import ActiveRow

_INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
_OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")


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


def count_tokens(draft: RowDraft, attributes: Any) -> None:
    """Add a span's gen_ai token counts (the newer names, else the older) to its row's."""
    if not attributes:
        return
    for names, total in ((_INPUT_TOKENS, "prompt_tokens"), (_OUTPUT_TOKENS, "completion_tokens")):
        for name in names:
            value = attributes.get(name)
            if isinstance(value, int):
                setattr(draft, total, getattr(draft, total) + value)
                break


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
