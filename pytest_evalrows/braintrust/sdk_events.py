"""Events that another Braintrust client writes (the Braintrust SDK: no ``metadata.evalrows``),
as the store's rows and spans, merges as patches of them, and back. Pure: no pytest, no HTTP.

Braintrust's model: every span is an event, named by ``id`` (the upsert key, a uuid) and
carrying its ``span_id``, ``root_span_id`` and ``span_parents``; the root span (no parents) is
the row. What such an event holds is kept whole, so that it reads back as it was sent:

- a root event is a row version: ``input``, ``output``, ``expected``, ``scores``, ``metadata``
  and ``tags`` in their fields; its ``error`` as the version's error (a string, as the SDK sends
  a traceback, is parsed into type, message and traceback) and its status ``failed`` (``passed``
  without one); its metrics in ``metrics``; ``span_attributes.name`` as its node id. Every other
  field, and ``error`` and ``metrics`` as sent, in ``metadata.evalrows.braintrust``.
- any other event is a span under the row of its trace: its name, start, end and status (error
  or unset) from the event, and every field in an attribute ``braintrust.<field>`` (the names
  Braintrust's own OpenTelemetry exporter gives them), its ``id`` in ``braintrust.id``.

A merge (``_is_merge``) becomes a ``core.merging.Patch`` of that stored body: the same fields in
the same places, what is derived from them (status, error, times, name) along, and
``_merge_paths`` moved to where the fields are. A comment (``log_feedback``'s ``comment``) is
added to the list ``comments`` of the event it names (``origin.id``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.merging import EVENT_ID_ATTRIBUTE, Patch
from ..core.records import RowDoc, SpanDoc
from .sdk_errors import error_info as error_info
from .sdk_errors import error_text

#: Where a row version keeps the fields of its event that have no field of their own (also
#: on a row this plugin wrote, when another client merged such fields into it).
EXTRAS = "braintrust"
#: What marks a row version made from another client's event (``metadata.evalrows``).
FROM_SDK = "sdk"
#: Where a row version keeps when the client said its event was created
#: (``metadata.evalrows``); a span keeps it as the attribute ``braintrust.created``.
CREATED = "created"
#: Where a row version keeps the names of its scores set to null (``metadata.evalrows``): a
#: row's scores are numbers, and Braintrust keeps a null score as null.
NULL_SCORES = "null_scores"
ATTRIBUTE_PREFIX = "braintrust."

# Fields of the request, not of the event: the server has its own (or they say how to write).
_SERVER_FIELDS = frozenset(
    {
        "id",
        "span_id",
        "root_span_id",
        "span_parents",
        "created",
        "_xact_id",
        "_pagination_key",
        "experiment_id",
        "project_id",
        "log_id",
        "org_id",
        "dataset_id",
        "prompt_session_id",
        "_is_merge",
        "_merge_paths",
        "_object_delete",
        "_parent_id",
        "_audit_source",
        "_audit_metadata",
    }
)
# A row version's own fields, taken as they are.
_ROW_FIELDS = ("input", "output", "expected", "scores", "metadata", "tags")
_METRIC_FIELDS = ("start", "end", "prompt_tokens", "completion_tokens", "tokens")


def is_foreign(event: dict[str, Any]) -> bool:
    """An event no evalrows client wrote (it says nothing in ``metadata.evalrows``)."""
    metadata = event.get("metadata")
    return not (isinstance(metadata, dict) and isinstance(metadata.get("evalrows"), dict))


def is_root(event: dict[str, Any]) -> bool:
    return not event.get("span_parents")


def is_comment(event: dict[str, Any]) -> bool:
    origin = event.get("origin")
    return "comment" in event and isinstance(origin, dict) and isinstance(origin.get("id"), str)


# -- rows --------------------------------------------------------------------------------------


def row_doc(event: dict[str, Any], version_id: str) -> RowDoc:
    """A root event as a row version (``version_id`` is the new version's)."""
    extras = _extras(event)
    metadata = dict(event.get("metadata") or {})
    metadata.pop("evalrows", None)
    metadata["evalrows"] = {FROM_SDK: True, EXTRAS: extras}
    nulls = _null_scores(event.get("scores"))
    if nulls:
        metadata["evalrows"][NULL_SCORES] = nulls
    if isinstance(event.get("created"), str):
        # When the client logged it: a fetch answers it, as Braintrust does.
        metadata["evalrows"][CREATED] = event["created"]
    metrics = event.get("metrics") or {}
    start, end = float(metrics.get("start") or 0.0), float(metrics.get("end") or 0.0)
    error = event.get("error")
    return {
        "row_id": event["id"],
        "version_id": version_id,
        "nodeid": _name(event) or event["id"],
        "attempt_id": "",
        "execution": 1,
        "status": "passed" if error is None else "failed",
        "input": event.get("input"),
        "output": event.get("output"),
        "expected": event.get("expected"),
        "scores": _scores(event.get("scores")),
        "metadata": metadata,
        "tags": list(event.get("tags") or []),
        "error": error_info(error),
        "metrics": {
            **{key: metrics.get(key) for key in _METRIC_FIELDS[2:]},
            "start": start,
            "end": end,
            "duration": max(0.0, end - start),
        },
        "root_span_id": event.get("root_span_id") or "",
        "span_id": event.get("span_id") or "",
    }


def is_foreign_row(row: RowDoc) -> bool:
    own = (row.get("metadata") or {}).get("evalrows")
    return isinstance(own, dict) and own.get(FROM_SDK) is True


def served_scores(row: RowDoc) -> dict[str, float | None]:
    """A row's scores as a client reads them: its numbers and the scores set to null."""
    own = (row.get("metadata") or {}).get("evalrows")
    nulls = own.get(NULL_SCORES) if isinstance(own, dict) else None
    scores: dict[str, float | None] = dict(row.get("scores") or {})
    if isinstance(nulls, dict):
        scores.update((name, None) for name in nulls if name not in scores)
    return scores


def merged_extras(row: RowDoc) -> dict[str, Any]:
    """What another client merged into a row this plugin wrote that has no field of its own
    (a comment, say): served beside the row's fields."""
    own = (row.get("metadata") or {}).get("evalrows")
    extras = own.get(EXTRAS) if isinstance(own, dict) else None
    return dict(extras) if isinstance(extras, dict) else {}


def row_event(row: RowDoc) -> dict[str, Any]:
    """A row version made from another client's event, as that event (merges applied)."""
    metadata = dict(row.get("metadata") or {})
    extras = dict(metadata.pop("evalrows").get(EXTRAS) or {})
    event: dict[str, Any] = {
        "id": row["row_id"],
        "span_id": row["span_id"],
        "root_span_id": row["root_span_id"],
        "span_parents": None,
        **{field: row.get(field) for field in _ROW_FIELDS if field != "metadata"},
        "metadata": metadata,
        **extras,
    }
    # Scores the row's score spans gave it are the row's too (``rolled_up_scores``).
    event["scores"] = served_scores(row)
    created = (row.get("metadata") or {}).get("evalrows", {}).get(CREATED)
    if isinstance(created, str):
        event["created"] = created
    return event


def row_patch(event: dict[str, Any]) -> Patch:
    """A merge into a row version."""
    values: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    deletes: list[list[str]] = []
    for field, value in _fields(event).items():
        if field in _ROW_FIELDS:
            values[field] = _scores(value) if field == "scores" else value
        else:
            extras[field] = value
    if isinstance(values.get("metadata"), dict):
        values["metadata"] = {k: v for k, v in values["metadata"].items() if k != "evalrows"}
    own: dict[str, Any] = {}
    if extras:
        own[EXTRAS] = extras
    if isinstance(event.get("scores"), dict):
        # A null score is kept as null (its number goes); a number is no longer null.
        nulls = _null_scores(event["scores"])
        own[NULL_SCORES] = nulls
        deletes += [["scores", name] for name in nulls]
        deletes += [["metadata", "evalrows", NULL_SCORES, name] for name in values["scores"]]
    if own:
        values.setdefault("metadata", {})["evalrows"] = own
    if "error" in extras:
        values["error"] = error_info(extras["error"])
        values["status"] = "passed" if extras["error"] is None else "failed"
    metrics = extras.get("metrics")
    if isinstance(metrics, dict):
        values["metrics"] = {key: metrics[key] for key in _METRIC_FIELDS if key in metrics}
    name = _name(event)
    if name:
        values["nodeid"] = name

    def place(field: str) -> list[list[str]]:
        if field == "scores":
            return [["scores"], ["metadata", "evalrows", NULL_SCORES]]
        if field in _ROW_FIELDS:
            return [[field]]
        places = [["metadata", "evalrows", EXTRAS, field]]
        return [*places, ["metrics"]] if field == "metrics" else places

    patch = _patch(values, event, place, union=[["tags"]])
    if deletes:
        patch["delete_paths"] = deletes
    return patch


# -- spans -------------------------------------------------------------------------------------


def span_doc(event: dict[str, Any]) -> SpanDoc:
    """A non-root event as a span; its row is found by its trace (``row_id`` None)."""
    attributes = {EVENT_ID_ATTRIBUTE: event["id"]}
    attributes.update((ATTRIBUTE_PREFIX + k, v) for k, v in _fields(event).items())
    if isinstance(event.get("created"), str):
        attributes[ATTRIBUTE_PREFIX + CREATED] = event["created"]
    metrics = event.get("metrics") or {}
    start = float(metrics.get("start") or 0.0)
    error = event.get("error")
    return {
        "span_id": event.get("span_id") or event["id"],
        "root_span_id": event.get("root_span_id") or "",
        "span_parents": list(event.get("span_parents") or []),
        "row_id": None,
        "attempt_id": "",
        "execution": 1,
        "name": _name(event) or "",
        "kind": "internal",
        "start": start,
        # Not ended yet: it ends when it starts until a merge says otherwise.
        "end": float(metrics.get("end") or start),
        "status": "unset" if error is None else "error",
        "status_description": None if error is None else error_text(error),
        "attributes": attributes,
        "events": [],
    }


def is_foreign_span(span: SpanDoc) -> bool:
    return EVENT_ID_ATTRIBUTE in (span.get("attributes") or {})


def span_event(span: SpanDoc) -> dict[str, Any]:
    """A span made from another client's event, as that event (merges applied)."""
    attributes = span.get("attributes") or {}
    event: dict[str, Any] = {
        "id": attributes[EVENT_ID_ATTRIBUTE],
        "span_id": span["span_id"],
        "root_span_id": span["root_span_id"],
        "span_parents": list(span.get("span_parents") or []),
    }
    event.update(
        (key[len(ATTRIBUTE_PREFIX) :], value)
        for key, value in attributes.items()
        if key.startswith(ATTRIBUTE_PREFIX) and key != EVENT_ID_ATTRIBUTE
    )
    return event


def span_patch(event: dict[str, Any]) -> Patch:
    """A merge into a span."""
    fields = _fields(event)
    values: dict[str, Any] = {"attributes": {ATTRIBUTE_PREFIX + k: v for k, v in fields.items()}}
    metrics = fields.get("metrics")
    if isinstance(metrics, dict):
        values.update(_times(metrics))
    if "error" in fields:
        values["status"] = "unset" if fields["error"] is None else "error"
        values["status_description"] = (
            None if fields["error"] is None else error_text(fields["error"])
        )
    name = _name(event)
    if name:
        values["name"] = name
    return _patch(
        values,
        event,
        lambda field: [["attributes", ATTRIBUTE_PREFIX + field]],
        union=[["attributes", ATTRIBUTE_PREFIX + "tags"]],
    )


def root_span_patch(event: dict[str, Any]) -> Patch | None:
    """What a merge into a row changes of the row's own root span: its times and status."""
    values: dict[str, Any] = {}
    metrics = event.get("metrics")
    if isinstance(metrics, dict):
        values.update(_times(metrics))
    if "error" in event:
        values["status"] = "ok" if event["error"] is None else "error"
        values["status_description"] = (
            None if event["error"] is None else error_text(event["error"])
        )
    return {"values": values} if values else None


# -- comments and scores -----------------------------------------------------------------------


def comment_patches(event: dict[str, Any]) -> tuple[str, Patch, Patch]:
    """A comment event as (the id it is on, its patch of a row, its patch of a span)."""
    comment = event.get("comment")
    record: dict[str, Any] = {
        "id": event["id"],
        "text": comment.get("text") if isinstance(comment, dict) else comment,
        "created": event.get("created"),
        "source": event.get("_audit_source"),
    }
    if event.get("_audit_metadata") is not None:
        record["metadata"] = event["_audit_metadata"]
    row_place = ["metadata", "evalrows", EXTRAS, "comments"]
    span_place = ["attributes", ATTRIBUTE_PREFIX + "comments"]
    row: Patch = {
        "values": {"metadata": {"evalrows": {EXTRAS: {"comments": [record]}}}},
        "union_paths": [row_place],
    }
    span: Patch = {
        "values": {"attributes": {ATTRIBUTE_PREFIX + "comments": [record]}},
        "union_paths": [span_place],
    }
    return event["origin"]["id"], row, span


def rolled_up_scores(spans: list[SpanDoc]) -> dict[str, float]:
    """The scores of a trace's score spans (``span_attributes.type`` ``score``): what
    Braintrust shows as the row's scores; a later span's wins a name."""
    scores: dict[str, float] = {}
    for span in sorted(spans, key=lambda each: each.get("start") or 0.0):
        attributes = span.get("attributes") or {}
        kind = attributes.get(ATTRIBUTE_PREFIX + "span_attributes") or {}
        if isinstance(kind, dict) and kind.get("type") == "score":
            scores.update(_scores(attributes.get(ATTRIBUTE_PREFIX + "scores")))
    return scores


# -- helpers -----------------------------------------------------------------------------------


def _fields(event: dict[str, Any]) -> dict[str, Any]:
    """The event's own fields (not the request's)."""
    return {key: value for key, value in event.items() if key not in _SERVER_FIELDS}


def _extras(event: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in _fields(event).items() if key not in _ROW_FIELDS}


def _name(event: dict[str, Any]) -> str | None:
    attributes = event.get("span_attributes")
    name = attributes.get("name") if isinstance(attributes, dict) else None
    return name if isinstance(name, str) and name else None


def _scores(scores: Any) -> dict[str, float]:
    """Scores a row version keeps: numbers (a null score is no score)."""
    if not isinstance(scores, dict):
        return {}
    return {name: value for name, value in scores.items() if _is_number(value)}


def _null_scores(scores: Any) -> dict[str, None]:
    if not isinstance(scores, dict):
        return {}
    return {name: None for name, value in scores.items() if value is None}


def _times(metrics: dict[str, Any]) -> dict[str, float]:
    """A span's start and end, where the metrics say them."""
    return {key: metrics[key] for key in ("start", "end") if _is_number(metrics.get(key))}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _patch(
    values: dict[str, Any],
    event: dict[str, Any],
    place: Callable[[str], list[list[str]]],
    *,
    union: list[list[str]],
) -> Patch:
    """The patch, with the event's ``_merge_paths`` moved to where its fields are kept."""
    replace: list[list[str]] = []
    for path in event.get("_merge_paths") or []:
        if isinstance(path, list) and path and all(isinstance(key, str) for key in path):
            replace += [[*where, *path[1:]] for where in place(path[0])]
    patch: Patch = {"values": values, "union_paths": union}
    if replace:
        patch["replace_paths"] = replace
    return patch
