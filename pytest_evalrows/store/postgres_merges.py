"""The PostgreSQL store's merges: partial updates of stored row versions and spans (the API's
``_is_merge``), applied in place by ``core.merging.merge_found``, as the embedded store does
(``sqlite_merges``).

The bodies are read, merged in Python and written back in one transaction that holds the
experiment's write lock: no other writer of the experiment runs in between, and a failure
writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..core.merging import EVENT_ID_ATTRIBUTE, Patch, merge_found
from .postgres_connection import Connection
from .postgres_schema import storable

if TYPE_CHECKING:
    import psycopg

# The latest version of each row named; a version is written back by its version id.
FIND_ROWS = """
SELECT v.row_id, v.version_id, v.body::text FROM latest_rows l JOIN row_versions v
  ON v.experiment_id = l.experiment_id AND v.row_id = l.row_id AND v.version = l.version
WHERE l.experiment_id = %(experiment)s AND l.row_id = ANY(%(ids)s)
"""

# Spans named by their span id.
FIND_SPANS = """
SELECT span_id, span_id, body::text FROM spans
WHERE experiment_id = %(experiment)s AND span_id = ANY(%(ids)s)
"""

# Spans named by the event id another client gave them (an attribute of theirs). Not indexed:
# clients name spans by span id when they can; only the rest is looked for here.
FIND_SPANS_BY_EVENT_ID = f"""
SELECT body -> 'attributes' ->> '{EVENT_ID_ATTRIBUTE}', span_id, body::text FROM spans
WHERE experiment_id = %(experiment)s
  AND body -> 'attributes' ->> '{EVENT_ID_ATTRIBUTE}' = ANY(%(ids)s)
"""

# `%(merged)s` is a JSON array of [version id, body] pairs.
WRITE_ROWS = """
UPDATE row_versions v SET body = m.item -> 1
FROM json_array_elements(%(merged)s::json) AS m(item)
WHERE v.experiment_id = %(experiment)s AND v.version_id = m.item ->> 0
"""

# What `latest_rows` derives from a body (as a write reads it), for the merged versions.
REFRESH_LATEST = """
UPDATE latest_rows l SET status = v.body ->> 'status',
       params_hash = v.body #>> '{metadata,params_hash}'
FROM row_versions v
WHERE v.experiment_id = %(experiment)s
  AND v.version_id IN (SELECT item ->> 0 FROM json_array_elements(%(merged)s::json) AS m(item))
  AND l.experiment_id = v.experiment_id AND l.row_id = v.row_id AND l.version = v.version
"""

# `%(merged)s` is a JSON array of [span id, body] pairs.
WRITE_SPANS = """
UPDATE spans s SET body = m.item -> 1,
       start = coalesce((m.item -> 1 ->> 'start')::float8, s.start)
FROM json_array_elements(%(merged)s::json) AS m(item)
WHERE s.experiment_id = %(experiment)s AND s.span_id = m.item ->> 0
"""

# Spans under no row in the given traces go under the row whose latest version has that trace
# (``ServerBackend.insert_events``): another client sends spans without row ids, children maybe
# before their root.
ADOPT_SPANS = """
UPDATE spans s
SET row_id = l.row_id, body = evalrows_json_set(s.body, 'row_id', to_json(l.row_id))
FROM latest_rows l
WHERE s.experiment_id = %(experiment)s AND s.row_id IS NULL
  AND s.root_span_id = ANY(%(traces)s)
  AND l.experiment_id = s.experiment_id AND l.root_span_id = s.root_span_id
"""


class MergesEvents:
    """``ServerBackend.merge_events`` of the PostgreSQL store."""

    _db: Connection

    def merge_events(self, experiment_id: str, patches: Sequence[tuple[str, Patch]]) -> list[str]:
        wanted = list(dict.fromkeys(event_id for event_id, _ in patches))
        if not wanted:
            return []

        def merge(db: psycopg.Cursor[Any]) -> list[str]:
            rows = _find(db, FIND_ROWS, experiment_id, wanted)
            rest = [event_id for event_id in wanted if event_id not in rows]
            spans = _find(db, FIND_SPANS, experiment_id, rest) if rest else {}
            rest = [event_id for event_id in rest if event_id not in spans]
            if rest:
                spans.update(_find(db, FIND_SPANS_BY_EVENT_ID, experiment_id, rest))
                rest = [event_id for event_id in rest if event_id not in spans]
            if rest:
                return rest
            # One body may be named twice (by span id and by event id): its patches go in
            # the order given, all into the same body.
            merged_rows = merge_found(rows, patches)
            merged_spans = merge_found(spans, patches)
            if merged_rows:
                args = {"experiment": experiment_id, "merged": storable(json.dumps(merged_rows))}
                db.execute(WRITE_ROWS, args)
                db.execute(REFRESH_LATEST, args)
            if merged_spans:
                args = {"experiment": experiment_id, "merged": storable(json.dumps(merged_spans))}
                db.execute(WRITE_SPANS, args)
            return []

        return self._db.transaction("merging events", merge, experiment=experiment_id)


def _find(
    db: psycopg.Cursor[Any], query: str, experiment_id: str, ids: list[str]
) -> dict[str, tuple[str, str]]:
    """Event id -> (where the body is: version id or span id, body text)."""
    args = {"experiment": experiment_id, "ids": ids}
    return {event_id: (key, body) for event_id, key, body in db.execute(query, args)}


def adopt_spans(db: psycopg.Cursor[Any], experiment_id: str, written: list[dict[str, Any]]) -> None:
    """The spans under no row in the traces of ``written`` (rows and spans) go under the row
    whose latest version has that trace."""
    traces = sorted({doc["root_span_id"] for doc in written if doc.get("root_span_id")})
    if traces:
        db.execute(ADOPT_SPANS, {"experiment": experiment_id, "traces": traces})
