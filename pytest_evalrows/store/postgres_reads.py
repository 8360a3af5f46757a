"""The PostgreSQL store's read side: row versions, their states and spans, decoded into the read
models. Bodies are read as JSON text (``body::text``) and validated by pydantic in one step, as
the embedded store reads them."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ..core.records import RowScores, RowState, ScoreMetrics
from .base import StoredEvent
from .postgres_connection import Connection

if TYPE_CHECKING:
    from ..core.models import RowVersion, SpanRecord

# The latest version of every row of an experiment (a caller may narrow it with `AND ...`).
LATEST_ROWS = """
SELECT v.version, v.created, v.body::text FROM latest_rows l JOIN row_versions v
  ON v.experiment_id = l.experiment_id AND v.row_id = l.row_id AND v.version = l.version
WHERE l.experiment_id = %s
"""

# Read out of the bodies by the server: no body is sent whole (its input and output may be
# large). jsonb values come back as Python values.
LATEST_SCORES = """
SELECT l.row_id, l.status, l.attempt_id, v.body -> 'scores',
       v.body #> '{metrics,tokens}', v.body #> '{metrics,cost}'
FROM latest_rows l JOIN row_versions v
  ON v.experiment_id = l.experiment_id AND v.row_id = l.row_id AND v.version = l.version
WHERE l.experiment_id = %s ORDER BY l.row_id
"""

# A row's own root span (no parents, under a row) is not an event: the row's event is it.
# Each side is read newest first through its (experiment, xact) index, then merged.
FETCH_EVENTS = """
(SELECT xact, created, version, body::text, true FROM row_versions
 WHERE experiment_id = %(experiment)s AND xact < %(before)s ORDER BY xact DESC LIMIT %(limit)s)
UNION ALL
(SELECT xact, created, NULL, body::text, false FROM spans
 WHERE experiment_id = %(experiment)s AND xact < %(before)s
   AND NOT (row_id IS NOT NULL AND is_root)
 ORDER BY xact DESC LIMIT %(limit)s)
ORDER BY 1 DESC LIMIT %(limit)s
"""


class Reads:
    """What the store answers from its tables. A version whose stored body cannot be read is
    named in ``unreadable`` (the store's list) instead of hiding the rest."""

    def __init__(self, db: Connection, unreadable: list[str]) -> None:
        self._db = db
        self.unreadable = unreadable

    def latest_rows(
        self, experiment_id: str, row_ids: Collection[str] | None = None
    ) -> list[RowVersion]:
        query = LATEST_ROWS
        args: list[Any] = [experiment_id]
        if row_ids is not None:
            query += " AND l.row_id = ANY(%s)"
            args.append(list(row_ids))
        return self.readable(self._db.read("reading rows", query + " ORDER BY l.row_id", args))

    def latest_scores(self, experiment_id: str) -> list[RowScores]:
        """Status, scores, tokens and cost of every row's latest version."""
        rows = self._db.read("reading rows", LATEST_SCORES, (experiment_id,))
        return [
            RowScores(row_id, status, attempt_id, scores or {}, ScoreMetrics(*metrics))
            for row_id, status, attempt_id, scores, *metrics in rows
        ]

    def latest_states(self, experiment_id: str) -> dict[str, RowState]:
        rows = self._db.read(
            "reading rows",
            "SELECT row_id, status, params_hash, attempt_id, created FROM latest_rows "
            "WHERE experiment_id = %s",
            (experiment_id,),
        )
        return {row[0]: RowState(*row[1:]) for row in rows}

    def history(self, experiment_id: str, row_id: str) -> list[RowVersion]:
        rows = self._db.read(
            "reading rows",
            "SELECT version, created, body::text FROM row_versions "
            "WHERE experiment_id = %s AND row_id = %s ORDER BY version",
            (experiment_id, row_id),
        )
        return self.readable(rows)

    def readable(self, rows: list[Any]) -> list[RowVersion]:
        """The row versions whose stored body can be read; the others are named in
        ``unreadable``."""
        from pydantic import ValidationError

        found = []
        for version, created, body in rows:
            try:
                found.append(row_version(version, created, body))
            except (ValidationError, ValueError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.unreadable.append(
                    f"row {_row_id_of(body)!r} version {version} cannot be read: {first}"
                )
        return found

    def list_spans(self, experiment_id: str, row_id: str | None = None) -> list[SpanRecord]:
        query = "SELECT body::text FROM spans WHERE experiment_id = %s"
        args: list[Any] = [experiment_id]
        if row_id is not None:
            query += " AND row_id = %s"
            args.append(row_id)
        rows = self._db.read("reading spans", query + " ORDER BY start, span_id", args)
        return [span_record(body) for (body,) in rows]

    def fetch_events(
        self, experiment_id: str, *, limit: int, before: int | None = None
    ) -> list[StoredEvent]:
        args = {
            "experiment": experiment_id,
            "before": before if before is not None else 2**63 - 1,
            "limit": limit,
        }
        found = self._db.read("reading events", FETCH_EVENTS, args)
        return [
            StoredEvent(
                xact,
                created,
                row_version(version, created, body) if is_row else None,
                None if is_row else span_record(body),
            )
            for xact, created, version, body, is_row in found
        ]


def row_version(version: int, created: float, body: str) -> RowVersion:
    """A stored row version, numbered and dated by its columns."""
    from ..core.models import RowVersion

    row = RowVersion.model_validate_json(body)
    row.version = version
    row.created = created
    return row


def span_record(body: str) -> SpanRecord:
    from ..core.models import SpanRecord

    return SpanRecord.model_validate_json(body)


def _row_id_of(body: str) -> str:
    import json

    try:
        return str(json.loads(body)["row_id"])
    except (ValueError, KeyError, TypeError):
        return "?"


class ReadsScores:
    """``Store.latest_scores`` of the PostgreSQL store, from its ``Reads``."""

    _reads: Reads

    def latest_scores(self, experiment_id: str) -> list[RowScores]:
        return self._reads.latest_scores(experiment_id)
