"""The embedded store's merges: partial updates of stored row versions and spans (the API's
``_is_merge``), applied in place by ``core.merging.merge_body`` in one transaction.

The bodies are read, merged in Python and written back inside one ``BEGIN IMMEDIATE``
transaction: no other writer runs in between, and a failure writes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

import pydantic_core

from ..core.merging import EVENT_ID_ATTRIBUTE, Patch, merge_found
from .sqlite_connection import Connection

# The latest version of each row named (`:ids`, a JSON array of row ids).
FIND_ROWS = """
SELECT v.row_id, v.rowid, v.body FROM latest_rows l JOIN row_versions v
  ON v.experiment_id = l.experiment_id AND v.row_id = l.row_id AND v.version = l.version
WHERE l.experiment_id = :experiment AND l.row_id IN (SELECT value FROM json_each(:ids))
"""

# Spans named by their span id.
FIND_SPANS = """
SELECT span_id, span_id, body FROM spans
WHERE experiment_id = :experiment AND span_id IN (SELECT value FROM json_each(:ids))
"""

# Spans named by the event id another client gave them (an attribute of theirs); indexed by
# this expression (migration 0009_spans_by_event_id).
FIND_SPANS_BY_EVENT_ID = f"""
SELECT json_extract(body, '$.attributes."{EVENT_ID_ATTRIBUTE}"'), span_id, body FROM spans
WHERE experiment_id = :experiment
  AND json_extract(body, '$.attributes."{EVENT_ID_ATTRIBUTE}"')
      IN (SELECT value FROM json_each(:ids))
"""

# `:merged` is a JSON array of [rowid, body text] pairs.
WRITE_ROWS = """
UPDATE row_versions SET body = json_extract(m.value, '$[1]')
FROM json_each(:merged) m WHERE row_versions.rowid = json_extract(m.value, '$[0]')
"""

# What `latest_rows` derives from a body (as `UPDATE_LATEST` reads it), for the merged ones.
REFRESH_LATEST = """
UPDATE latest_rows SET status = json_extract(v.body, '$.status'),
       params_hash = json_extract(v.body, '$.metadata.params_hash')
FROM row_versions v
WHERE v.rowid IN (SELECT json_extract(value, '$[0]') FROM json_each(:merged))
  AND latest_rows.experiment_id = v.experiment_id AND latest_rows.row_id = v.row_id
  AND latest_rows.version = v.version
"""

# `:merged` is a JSON array of [span id, body text] pairs.
WRITE_SPANS = """
UPDATE spans SET body = json_extract(m.value, '$[1]'),
       start = json_extract(json_extract(m.value, '$[1]'), '$.start')
FROM json_each(:merged) m
WHERE spans.experiment_id = :experiment AND spans.span_id = json_extract(m.value, '$[0]')
"""


class MergesEvents:
    """``ServerBackend.merge_events`` of the embedded store."""

    _db: Connection

    def merge_events(self, experiment_id: str, patches: Sequence[tuple[str, Patch]]) -> list[str]:
        wanted = list(dict.fromkeys(event_id for event_id, _ in patches))
        if not wanted:
            return []
        with self._db.errors("merging events"), self._db.transaction() as db:
            rows = self._find(db, FIND_ROWS, experiment_id, wanted)
            rest = [event_id for event_id in wanted if event_id not in rows]
            spans = self._find(db, FIND_SPANS, experiment_id, rest) if rest else {}
            rest = [event_id for event_id in rest if event_id not in spans]
            if rest:
                spans.update(self._find(db, FIND_SPANS_BY_EVENT_ID, experiment_id, rest))
                rest = [event_id for event_id in rest if event_id not in spans]
            if rest:
                return rest
            # One body may be named twice (by span id and by event id): its patches go in
            # the order given, all into the same body.
            # Bodies as text inside the JSON array: SQLite's JSON functions would write an
            # object's numbers again in their own way.
            merged_rows = [(key, _text(body)) for key, body in merge_found(rows, patches)]
            merged_spans = [(key, _text(body)) for key, body in merge_found(spans, patches)]
            args: dict[str, Any] = {"experiment": experiment_id}
            if merged_rows:
                args["merged"] = pydantic_core.to_json(merged_rows)
                db.execute(WRITE_ROWS, args)
                db.execute(REFRESH_LATEST, args)
            if merged_spans:
                args["merged"] = pydantic_core.to_json(merged_spans)
                db.execute(WRITE_SPANS, args)
        return []

    @staticmethod
    def _find(
        db: sqlite3.Connection, query: str, experiment_id: str, ids: list[str]
    ) -> dict[str, tuple[Any, str]]:
        """Event id -> (where the body is: rowid or span id, body text)."""
        args = {"experiment": experiment_id, "ids": json.dumps(ids)}
        return {event_id: (key, body) for event_id, key, body in db.execute(query, args)}


# Spans under no row in the traces `:traces` (a JSON array of root span ids) go under the row
# whose latest version has that trace (``ServerBackend.insert_events``): another client sends
# spans without row ids, children maybe before their root.
ADOPT_SPANS = """
UPDATE spans SET row_id = l.row_id, body = json_set(spans.body, '$.row_id', l.row_id)
FROM latest_rows l
WHERE spans.experiment_id = :experiment AND spans.row_id IS NULL
  AND json_extract(spans.body, '$.root_span_id') IN (SELECT value FROM json_each(:traces))
  AND l.experiment_id = spans.experiment_id
  AND l.root_span_id = json_extract(spans.body, '$.root_span_id')
"""


def adopt_spans(db: sqlite3.Connection, experiment_id: str, written: list[dict[str, Any]]) -> None:
    """The spans under no row in the traces of ``written`` (rows and spans) go under the row
    whose latest version has that trace."""
    traces = sorted({doc["root_span_id"] for doc in written})
    db.execute(ADOPT_SPANS, {"experiment": experiment_id, "traces": json.dumps(traces)})


def _text(body: dict[str, Any]) -> str:
    return pydantic_core.to_json(body).decode()
