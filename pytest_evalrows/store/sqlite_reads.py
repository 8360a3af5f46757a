"""The embedded store's read side: row versions, their states and spans, decoded into the read
models. The models (and pydantic) are imported on the first read: a session that only writes
never loads them."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ..core.records import RowScores, RowState, ScoreMetrics
from . import sqlite_schema as schema
from .base import StoredEvent
from .sqlite_connection import Connection

if TYPE_CHECKING:
    from ..core.models import RowVersion, SpanRecord


class Reads:
    """What the store answers from its tables. A version whose stored body cannot be read is
    named in ``unreadable`` (the store's list) instead of hiding the rest."""

    def __init__(self, db: Connection, unreadable: list[str]) -> None:
        self._db = db
        self.unreadable = unreadable

    def latest_rows(
        self, experiment_id: str, row_ids: Collection[str] | None = None
    ) -> list[RowVersion]:
        query = schema.LATEST_ROWS
        args: list[Any] = [experiment_id]
        if row_ids is not None:
            query += " AND l.row_id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(list(row_ids)))
        return self.readable(self._db.read("reading rows", query + " ORDER BY l.row_id", args))

    def latest_scores(self, experiment_id: str) -> list[RowScores]:
        """Status, scores, tokens and cost of every row's latest version, read out of the
        bodies by SQLite: no body is decoded here (its input and output may be large)."""
        rows = self._db.read("reading rows", LATEST_SCORES, (experiment_id,))
        return [
            RowScores(row_id, status, attempt_id, json.loads(scores or "{}"), ScoreMetrics(*m))
            for row_id, status, attempt_id, scores, *m in rows
        ]

    def latest_states(self, experiment_id: str) -> dict[str, RowState]:
        rows = self._db.read(
            "reading rows",
            "SELECT row_id, status, params_hash, attempt_id, created FROM latest_rows "
            "WHERE experiment_id = ?",
            (experiment_id,),
        )
        return {row[0]: RowState(*row[1:]) for row in rows}

    def history(self, experiment_id: str, row_id: str) -> list[RowVersion]:
        rows = self._db.read(
            "reading rows",
            "SELECT version, created, body FROM row_versions "
            "WHERE experiment_id = ? AND row_id = ? ORDER BY version",
            (experiment_id, row_id),
        )
        return self.readable(rows)

    def readable(self, rows: list[Any]) -> list[RowVersion]:
        """The row versions whose stored body can be read; the others are named in
        ``unreadable`` (a body damaged inside a sound file must not hide the rest)."""
        from pydantic import ValidationError

        found = []
        for version, created, body in rows:
            try:
                found.append(row_version(version, created, body))
            except (ValidationError, ValueError) as exc:
                row_id = _row_id_of(body)
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.unreadable.append(f"row {row_id!r} version {version} cannot be read: {first}")
        return found

    def list_spans(self, experiment_id: str, row_id: str | None = None) -> list[SpanRecord]:
        query = "SELECT body FROM spans WHERE experiment_id = ?"
        args: list[Any] = [experiment_id]
        if row_id is not None:
            query += " AND row_id = ?"
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
        found = self._db.read("reading events", schema.FETCH_EVENTS, args)
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
    try:
        return str(json.loads(body)["row_id"])
    except (ValueError, KeyError, TypeError):
        return "?"


LATEST_SCORES = """
SELECT l.row_id, l.status, l.attempt_id, json_extract(v.body, '$.scores'),
       json_extract(v.body, '$.metrics.tokens'), json_extract(v.body, '$.metrics.cost')
FROM latest_rows l JOIN row_versions v
  ON v.experiment_id = l.experiment_id AND v.row_id = l.row_id AND v.version = l.version
WHERE l.experiment_id = ? ORDER BY l.row_id
"""


class ReadsScores:
    """``Store.latest_scores`` of the embedded store, from its ``Reads``."""

    _reads: Reads

    def latest_scores(self, experiment_id: str) -> list[RowScores]:
        return self._reads.latest_scores(experiment_id)
