"""Rows and spans as Braintrust experiment events, and back. Pure: no pytest, no HTTP.

In Braintrust's model a row is the root span of its trace: the row's event has ``id`` = the
row id (the upsert key: writing it again makes a new version) and no ``span_parents``. Every
other span is an event of its own (``id`` = its span id) under the row's ``root_span_id``.
What Braintrust has no field for (status, execution, the version id) goes in
``metadata.evalrows``; ``metadata.attemptId`` is on every event.

An attempt (a session's record) is an event of its own too, kind ``attempt``, under an id of
its own (``evalrows-attempt-<attempt id>``): readers of rows and spans skip it.

Rows and spans made from another client's events (``sdk_events``) go back as those events.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..core import rows
from ..core.models import Attempt, ErrorInfo, Metrics, RowDoc, RowVersion, SpanDoc, SpanRecord
from ..core.timestamps import to_epoch
from . import sdk_events

ROW_KIND = "row"
SPAN_KIND = "span"
ATTEMPT_KIND = "attempt"
ATTEMPT_ID_PREFIX = "evalrows-attempt-"
_ATTEMPT_FIELDS = frozenset(f.name for f in dataclasses.fields(Attempt)) - {"experiment_id"}
_METRIC_KEYS = ("start", "end", "prompt_tokens", "completion_tokens", "tokens")


def row_event(row: RowDoc) -> dict[str, Any]:
    if sdk_events.is_foreign_row(row):
        return sdk_events.row_event(row)
    extras = sdk_events.merged_extras(row)
    metadata = dict(row.get("metadata") or {})
    metadata["attemptId"] = row["attempt_id"]
    metadata["evalrows"] = {
        "kind": ROW_KIND,
        "version_id": row["version_id"],
        "status": row["status"],
        "nodeid": row["nodeid"],
        "execution": row["execution"],
    }
    metrics = row.get("metrics") or {}
    event = {
        "id": row["row_id"],
        "span_id": row["span_id"],
        "root_span_id": row["root_span_id"],
        "input": row.get("input"),
        "output": row.get("output"),
        "expected": row.get("expected"),
        "error": row.get("error"),
        "scores": sdk_events.served_scores(row),
        "metadata": metadata,
        "tags": row.get("tags") or [],
        "metrics": {key: metrics[key] for key in _METRIC_KEYS if metrics.get(key) is not None},
        "span_attributes": {"name": row["nodeid"], "type": "eval"},
    }
    # Merged in by another client (its comments, say): beside the fields above, not over them.
    event.update((key, value) for key, value in extras.items() if key not in event)
    return event


def span_event(span: SpanDoc) -> dict[str, Any]:
    if sdk_events.is_foreign_span(span):
        return sdk_events.span_event(span)
    attributes = span.get("attributes") or {}
    return {
        "id": span["span_id"],
        "span_id": span["span_id"],
        "root_span_id": span["root_span_id"],
        "span_parents": list(span.get("span_parents") or []),
        "metadata": {
            "attemptId": span["attempt_id"],
            "evalrows": {
                "kind": SPAN_KIND,
                "row_id": span.get("row_id"),
                "execution": span.get("execution", 1),
                "span_kind": span.get("kind", "internal"),
                "status": span.get("status", "unset"),
                "status_description": span.get("status_description"),
                "attributes": attributes,
                "events": span.get("events") or [],
            },
        },
        "metrics": {"start": span["start"], "end": span["end"]},
        "span_attributes": {"name": span["name"], "type": _span_type(attributes)},
    }


def attempt_event(attempt: Attempt) -> dict[str, Any]:
    """The attempt as an event: the whole record in ``metadata.evalrows.attempt``. Saving
    it again (at the session's end) writes the same id: a new version, the latest wins."""
    event_id = ATTEMPT_ID_PREFIX + attempt.id
    record = {name: getattr(attempt, name) for name in sorted(_ATTEMPT_FIELDS)}
    metrics = {"start": attempt.started}
    if attempt.ended is not None:
        metrics["end"] = attempt.ended
    return {
        "id": event_id,
        # Its own trace: a root with no parents, under no row.
        "span_id": event_id,
        "root_span_id": event_id,
        "metadata": {
            "attemptId": attempt.id,
            "evalrows": {"kind": ATTEMPT_KIND, "attempt": record},
        },
        "metrics": metrics,
        "span_attributes": {"name": "evalrows attempt", "type": "task"},
    }


def event_attempt(event: dict[str, Any], experiment_id: str) -> Attempt:
    """The attempt an ``attempt_event`` carries; fields this version does not know are
    dropped, ones it lacks take their defaults."""
    own = own_metadata(event).get("attempt") or {}
    known = {name: value for name, value in own.items() if name in _ATTEMPT_FIELDS}
    return Attempt(**known, experiment_id=experiment_id)


def delete_event(event_id: str) -> dict[str, Any]:
    return {"id": event_id, "_object_delete": True}


def is_root_record(span: SpanDoc) -> bool:
    """The row's own span: in the event model the row's event is that span already."""
    return not span.get("span_parents") and span.get("row_id") is not None


def event_kind(event: dict[str, Any]) -> str | None:
    evalrows = (event.get("metadata") or {}).get("evalrows")
    return evalrows.get("kind") if isinstance(evalrows, dict) else None


def own_metadata(event: dict[str, Any]) -> dict[str, Any]:
    """What an event says in ``metadata.evalrows`` (empty when it says nothing there)."""
    own: dict[str, Any] = (event.get("metadata") or {}).get("evalrows") or {}
    return own


def event_row(event: dict[str, Any], version: int | None = None) -> RowVersion:
    metadata = dict(event.get("metadata") or {})
    own = metadata.pop("evalrows", {})
    metrics = event.get("metrics") or {}
    start, end = metrics.get("start") or 0.0, metrics.get("end") or 0.0
    error = event.get("error")
    return RowVersion(
        row_id=event["id"],
        version_id=own.get("version_id") or event.get("_xact_id") or event["id"],
        nodeid=own.get("nodeid") or event["id"],
        attempt_id=metadata.get("attemptId") or "",
        execution=own.get("execution") or 1,
        # An event that says no status (another client's) failed when it has an error.
        status=own.get("status") or ("passed" if error is None else "failed"),
        input=event.get("input"),
        output=event.get("output"),
        expected=event.get("expected"),
        scores={k: v for k, v in (event.get("scores") or {}).items() if v is not None},
        metadata=metadata,
        tags=event.get("tags") or [],
        error=_error(error),
        metrics=Metrics(
            start=start,
            end=end,
            duration=max(0.0, end - start),
            prompt_tokens=metrics.get("prompt_tokens"),
            completion_tokens=metrics.get("completion_tokens"),
            tokens=metrics.get("tokens"),
        ),
        root_span_id=event.get("root_span_id") or "",
        span_id=event.get("span_id") or "",
        version=version,
        created=to_epoch(event.get("created")),
    )


def event_span(event: dict[str, Any]) -> SpanRecord:
    if sdk_events.is_foreign(event):
        # Another client's: every field kept as it is in the store (row id None: its row is
        # found by its trace).
        return SpanRecord(**sdk_events.span_doc(event))
    metadata = event.get("metadata") or {}
    own = metadata.get("evalrows") or {}
    metrics = event.get("metrics") or {}
    attributes = event.get("span_attributes") or {}
    return SpanRecord(
        span_id=event.get("span_id") or event["id"],
        root_span_id=event.get("root_span_id") or "",
        span_parents=event.get("span_parents") or [],
        row_id=own.get("row_id"),
        attempt_id=metadata.get("attemptId") or "",
        execution=own.get("execution") or 1,
        name=attributes.get("name") or "",
        kind=own.get("span_kind") or "internal",
        start=metrics.get("start") or 0.0,
        end=metrics.get("end") or 0.0,
        status=own.get("status") or "unset",
        status_description=own.get("status_description"),
        attributes=own.get("attributes") or {},
        events=own.get("events") or [],
    )


def row_root_span(row: RowVersion, experiment: str | None = None) -> SpanRecord:
    """The root span a row's event stands for, as the embedded store keeps it. The event
    does not carry the experiment's name: a caller that knows it passes it."""
    return SpanRecord(
        **rows.root_span(
            row_id=row.row_id,
            trace_hex=row.root_span_id,
            span_hex=row.span_id,
            attempt_id=row.attempt_id,
            execution=row.execution,
            name=row.nodeid.rpartition("::")[2] or row.row_id,
            start=row.metrics.start,
            end=row.metrics.end,
            status=row.status,
            error=row.error,
            experiment=experiment,
        )
    )


def _error(error: Any) -> ErrorInfo | None:
    """An event's error: an object, or a string (a traceback, as the Braintrust SDK sends)."""
    info = sdk_events.error_info(error)
    return None if info is None else ErrorInfo(**info)


def _span_type(attributes: dict[str, Any]) -> str:
    declared = attributes.get("evalrows.span_type")
    if declared in ("llm", "score", "function", "eval", "task", "tool"):
        return str(declared)
    if any(key.startswith("gen_ai.") for key in attributes):
        return "llm"
    return "function"
