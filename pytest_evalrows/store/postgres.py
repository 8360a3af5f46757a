"""The PostgreSQL store: one database that many sessions, CI runners and ``evalrows serve``
processes write at once, with the embedded store's semantics (``sqlite``): append-only row
versions ordered by when their execution started, latest rows kept up to date on write, spans
upserted by id, attempts, projects and evaluations.

``PostgresStore`` writes; its connection (``postgres_connection``) pools, migrates and turns
errors into one line; its reads (``postgres_reads``) decode what is stored. The statements are
in ``postgres_schema``. psycopg is imported only when a store is opened.

Concurrency: every transaction that writes an experiment's rows, spans or evaluations first
takes a transaction-scoped advisory lock keyed by the experiment, so that its version numbers,
latest rows and write-order numbers (``xact``, from one sequence, taken after the lock) are
decided one writer at a time, and within an experiment ``xact`` order is commit order: a reader
paging by ``xact`` never sees a smaller number commit after a larger one. Writers of different
experiments do not wait for each other. Deadlocks and serialization failures are retried.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pydantic_core

from ..core.records import (
    RowDoc,
    RowState,
    SpanDoc,
    StaleSpan,
    WriteResult,
    as_doc,
)
from . import postgres_schema as schema
from .base import Store, StoredEvent
from .postgres_catalog import Catalog
from .postgres_connection import Connection
from .postgres_evaluations import MERGE_SAVED, Evaluations, ReadsRowEvaluations
from .postgres_merges import MergesEvents, adopt_spans
from .postgres_reads import Reads, ReadsScores
from .postgres_schema import storable

if TYPE_CHECKING:
    import psycopg

    from ..core.judgments import Evaluation
    from ..core.models import RowVersion, SpanRecord
    from ..core.trace import Trace


class PostgresStore(Catalog, ReadsScores, ReadsRowEvaluations, MergesEvents, Store):
    """Rows in a PostgreSQL database named by a libpq URL (``postgresql://`` or
    ``postgres://``). ``create=False`` refuses a database without the store's tables. Also a
    ``ServerBackend`` behind ``evalrows serve``."""

    attempts = True
    history_complete = True
    evaluations = True

    def __init__(self, url: str, *, create: bool = True) -> None:
        from pathlib import Path

        from .urls import parse_store_url

        parsed = parse_store_url(url, Path.cwd())  # a bad one is a ValueError, as in settings
        if parsed.scheme != "postgresql":
            raise ValueError(f"{parsed.display()} is not a postgresql:// URL")
        self.display_url = parsed.display()
        #: What could not be read back: row versions whose stored body is damaged.
        self.unreadable: list[str] = []
        self._db = Connection(parsed.text, self.display_url, create=create)
        self._reads = Reads(self._db, self.unreadable)
        self._evaluations = Evaluations(self._db, self._reads)

    def applied_migrations(self) -> list[str]:
        return self._db.applied_migrations()

    def close(self) -> None:
        self._db.close()

    # -- rows and spans ------------------------------------------------------------------

    def write(
        self,
        experiment_id: str,
        rows: Sequence[RowDoc | RowVersion],
        spans: Sequence[SpanDoc | SpanRecord],
        *,
        late: bool = False,
        delete_span_ids: Collection[str] = (),
        replace_roots: bool = False,
    ) -> WriteResult:
        """Also deletes the spans named by ``delete_span_ids``, in the same transaction (what
        one insert request of the HTTP API does). With ``replace_roots`` the root spans of the
        written rows that are not their latest version's go too, and a written trace's spans
        under no row go under its row (``ServerBackend.insert_events``). ``late`` changes
        nothing here: versions are ordered by when their execution started."""
        now = time.time()
        docs = [as_doc(row) for row in rows]
        # Serialized before the transaction: a value that cannot be stored fails the batch
        # without taking the experiment's lock.
        rounds = [
            (storable(pydantic_core.to_json(group).decode()), len(group)) for group in _rounds(docs)
        ]
        spans_json = storable(pydantic_core.to_json([as_doc(span) for span in spans]).decode())

        def write(db: psycopg.Cursor[Any]) -> WriteResult:
            result = WriteResult()  # afresh for each try of the transaction
            if delete_span_ids:
                query = schema.DELETE_SPANS + " RETURNING span_id"
                deleted = db.execute(query, (experiment_id, list(delete_span_ids))).fetchall()
                result.deleted_span_ids = [span_id for (span_id,) in deleted]
            for batch, size in rounds:
                _write_versions(db, experiment_id, batch, size, now, result)
            if spans:
                args = {"experiment": experiment_id, "batch": spans_json, "now": now}
                db.execute(schema.INSERT_SPANS, args)
            result.spans = len(spans)
            if replace_roots and docs:
                written = sorted({doc["row_id"] for doc in docs})
                db.execute(
                    schema.DELETE_REPLACED_ROOTS, {"experiment": experiment_id, "rows": written}
                )
            if replace_roots:
                adopt_spans(db, experiment_id, [*docs, *map(as_doc, spans)])
            return result

        if not (docs or spans or delete_span_ids):
            return WriteResult()
        return self._db.transaction("writing rows", write, experiment=experiment_id)

    def insert_events(
        self,
        experiment_id: str,
        rows: Sequence[RowDoc],
        spans: Sequence[SpanDoc],
        *,
        delete_span_ids: Collection[str] = (),
    ) -> WriteResult:
        """``ServerBackend.insert_events``: one insert request of the HTTP API."""
        return self.write(
            experiment_id, rows, spans, delete_span_ids=delete_span_ids, replace_roots=True
        )

    def latest_rows(
        self, experiment_id: str, row_ids: Collection[str] | None = None
    ) -> list[RowVersion]:
        return self._reads.latest_rows(experiment_id, row_ids)

    def latest_states(self, experiment_id: str) -> dict[str, RowState]:
        return self._reads.latest_states(experiment_id)

    def history(self, experiment_id: str, row_id: str) -> list[RowVersion]:
        return self._reads.history(experiment_id, row_id)

    def list_spans(self, experiment_id: str, row_id: str | None = None) -> list[SpanRecord]:
        return self._reads.list_spans(experiment_id, row_id)

    def fetch_events(
        self, experiment_id: str, *, limit: int, before: int | None = None
    ) -> list[StoredEvent]:
        """Every row version and every span but the rows' own root spans, newest first,
        at most ``limit`` of them with ``xact`` below ``before``."""
        return self._reads.fetch_events(experiment_id, limit=limit, before=before)

    # -- evaluations (``postgres_evaluations``) ----------------------------------------------

    def save_evaluations(self, experiment_id: str, evaluations: Sequence[Evaluation]) -> None:
        """A failed evaluation leaves its judge's last successful score on the version."""
        self._evaluations.save(experiment_id, evaluations)

    def list_evaluations(self, experiment_id: str) -> list[Evaluation]:
        return self._evaluations.all_of(experiment_id)

    def get_evaluation(self, experiment_id: str, evaluation_id: str) -> Evaluation | None:
        return self._evaluations.get(experiment_id, evaluation_id)

    def merge_scores(
        self, experiment_id: str, merges: Mapping[str, tuple[str | None, dict[str, Any]]]
    ) -> list[str]:
        """``ServerBackend.merge_scores``: all or nothing; the row ids it cannot find."""
        return self._evaluations.merge_scores(experiment_id, merges)

    def find_trace(self, experiment_id: str, trace_id: str) -> Trace | None:
        return self._evaluations.find_trace(experiment_id, trace_id)

    def latest_traces(
        self, experiment_id: str, row_ids: Collection[str] | None = None
    ) -> list[Trace]:
        return self._evaluations.latest_traces(experiment_id, row_ids)

    def delete_stale_spans(
        self,
        experiment_id: str,
        row_ids: Collection[str] | None = None,
        *,
        dry_run: bool = False,
    ) -> list[StaleSpan]:
        """One statement: ``DELETE ... RETURNING`` (or its ``SELECT`` for a dry run)."""
        args: dict[str, Any] = {"experiment": experiment_id}
        rows_clause = ""
        if row_ids is not None:
            rows_clause = "AND s.row_id = ANY(%(rows)s)"
            args["rows"] = list(row_ids)
        if dry_run:
            query = schema.FIND_STALE_SPANS.format(rows=rows_clause)
            found = self._db.read("deleting stale spans", query, args)
        else:
            query = schema.DELETE_STALE_SPANS.format(rows=rows_clause)
            # Under the experiment's lock: a version written meanwhile is either seen whole
            # (its spans are kept) or not at all (they are not there yet).
            found = self._db.transaction(
                "deleting stale spans",
                lambda db: db.execute(query, args).fetchall(),
                experiment=experiment_id,
            )
        return [StaleSpan(*row) for row in found]


def _write_versions(
    db: psycopg.Cursor[Any],
    experiment_id: str,
    batch: str,
    size: int,
    now: float,
    result: WriteResult,
) -> None:
    """Insert one round of versions (no row id twice), move the rows' latest versions, count
    them in ``result``, and number again the versions of rows that got an older one late."""
    args = {"experiment": experiment_id, "batch": batch, "now": now}
    row = db.execute(schema.WRITE_VERSIONS, args).fetchone()
    assert row is not None
    new, updated, superseded, inserted, behind, judged = row
    result.duplicate_rows += size - inserted
    result.new_rows += new
    result.updated_rows += updated
    if judged:
        # Judged before it arrived: a judge ran while the version was on its way here.
        db.execute(MERGE_SAVED, {"experiment": experiment_id, "versions": judged})
    if superseded:
        result.superseded_rows += superseded
        renumber = {"experiment": experiment_id, "late": behind}
        for statement in schema.RENUMBER_VERSIONS:
            db.execute(statement, renumber)


def _rounds(rows: list[RowDoc]) -> list[list[RowDoc]]:
    """Split a batch so that no round holds a row id twice; the k-th version of a row in the
    batch goes in round k. Only batches redelivered from a spool have repeats."""
    rounds: list[list[RowDoc]] = []
    seen: dict[str, int] = {}
    for row in rows:
        index = seen.get(row["row_id"], 0)
        seen[row["row_id"]] = index + 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(row)
    return rounds
