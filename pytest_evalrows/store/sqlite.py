"""The embedded store: one SQLite file, safe for several processes at once.

``SQLiteStore`` writes; its connection (``sqlite_connection``) opens and migrates the file, and
its reads (``sqlite_reads``) decode what is stored. The statements are in ``sqlite_schema``.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic_core

from ..core.records import (
    Attempt,
    Experiment,
    RowDoc,
    RowState,
    SpanDoc,
    StaleSpan,
    WriteResult,
    as_doc,
)
from ..errors import StoreError, UnknownExperimentError
from . import sqlite_schema as schema
from .base import Project, Store, StoredEvent
from .sqlite_connection import Connection
from .sqlite_evaluations import (
    HAS_EVALUATIONS,
    MERGE_INTO_NEW_VERSIONS,
    Evaluations,
    ReadsRowEvaluations,
)
from .sqlite_experiments import CreatesExperiments
from .sqlite_merges import MergesEvents, adopt_spans
from .sqlite_reads import Reads, ReadsScores

if TYPE_CHECKING:
    from ..core.judgments import Evaluation
    from ..core.models import RowVersion, SpanRecord
    from ..core.trace import Trace


class SQLiteStore(ReadsScores, ReadsRowEvaluations, MergesEvents, CreatesExperiments, Store):
    """Rows in one SQLite file (WAL, busy timeout); ``SQLiteStore(":memory:")`` keeps them
    in memory. Also the ``ServerBackend`` behind ``evalrows serve``."""

    attempts = True
    history_complete = True
    evaluations = True

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = str(path)
        self.display_url = "sqlite:///:memory:" if self.path == ":memory:" else f"sqlite:///{path}"
        if self.path != ":memory:":
            file = Path(self.path)
            if not create and not file.exists():
                raise StoreError(f"no store at {file}")
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create {file.parent}: {exc.strerror}") from None
        if sqlite3.sqlite_version_info < (3, 35):
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old for the embedded store: it needs "
                "3.35 or newer (RETURNING); use a Python built with a newer SQLite"
            )
        #: What could not be read back: row versions whose stored body is damaged.
        self.unreadable: list[str] = []
        self._db = Connection(self.path)
        self._reads = Reads(self._db, self.unreadable)
        self._evaluations = Evaluations(self._db, self._reads)

    def applied_migrations(self) -> list[str]:
        return self._db.applied_migrations()

    def close(self) -> None:
        self._db.close()

    # -- experiments, projects and attempts ----------------------------------------------

    def get_or_create_experiment(
        self,
        project: str,
        name: str,
        *,
        git_commit: str | None = None,
        git_branch: str | None = None,
    ) -> Experiment:
        now = time.time()
        with self._db.errors("creating the experiment"), self._db.transaction() as db:
            db.execute(schema.INSERT_PROJECT, (str(uuid.uuid4()), project, now))
            db.execute(
                "INSERT INTO experiments VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (str(uuid.uuid4()), project, name, now, git_commit, git_branch),
            )
            row = db.execute(
                "SELECT * FROM experiments WHERE project = ? AND name = ?", (project, name)
            ).fetchone()
        return _experiment(row)

    def get_experiment(self, name: str, project: str | None = None) -> Experiment:
        if project is None:
            query, args = "SELECT * FROM experiments WHERE name = ? ORDER BY created", [name]
        else:
            query = "SELECT * FROM experiments WHERE name = ? AND project = ?"
            args = [name, project]
        rows = self._db.read("reading experiments", query, args)
        if not rows:
            where = f" in project {project!r}" if project else ""
            raise UnknownExperimentError(f"no experiment {name!r}{where} in {self.display_url}")
        if len(rows) > 1:
            projects = ", ".join(repr(row[1]) for row in rows)
            raise UnknownExperimentError(
                f"experiment {name!r} exists in several projects ({projects}): name one"
            )
        return _experiment(rows[0])

    def get_experiment_by_id(self, experiment_id: str) -> Experiment:
        """The experiment with that id; raises ``UnknownExperimentError``."""
        row = self._db.read_one(
            "reading experiments", "SELECT * FROM experiments WHERE id = ?", (experiment_id,)
        )
        if row is None:
            raise UnknownExperimentError(f"no experiment with id {experiment_id!r}")
        return _experiment(row)

    def list_experiments(self) -> list[Experiment]:
        query = "SELECT * FROM experiments ORDER BY project, name"
        return [_experiment(row) for row in self._db.read("reading experiments", query)]

    def get_or_create_project(self, name: str) -> Project:
        query = "SELECT * FROM projects WHERE name = ?"
        row = self._db.read_one("reading projects", query, (name,))
        if row is None:
            with self._db.errors("creating the project"), self._db.transaction() as db:
                db.execute(schema.INSERT_PROJECT, (str(uuid.uuid4()), name, time.time()))
                row = db.execute(query, (name,)).fetchone()
        return Project(*row)

    def get_project(self, project_id: str) -> Project | None:
        query = "SELECT * FROM projects WHERE id = ?"
        row = self._db.read_one("reading projects", query, (project_id,))
        return None if row is None else Project(*row)

    def list_projects(self) -> list[Project]:
        rows = self._db.read("reading projects", "SELECT * FROM projects")
        return [Project(*row) for row in rows]

    def save_attempt(self, attempt: Attempt) -> None:
        with self._db.errors("recording the attempt"), self._db.transaction() as db:
            db.execute(
                "INSERT INTO attempts VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "body = excluded.body",
                (attempt.experiment_id, attempt.id, attempt.started, json.dumps(asdict(attempt))),
            )

    def list_attempts(self, experiment_id: str) -> list[Attempt]:
        rows = self._db.read(
            "reading attempts",
            "SELECT body FROM attempts WHERE experiment_id = ? ORDER BY started",
            (experiment_id,),
        )
        return [Attempt(**json.loads(body)) for (body,) in rows]

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
        one insert request of the HTTP API does). With ``replace_roots``, the HTTP API's model
        (``ServerBackend.insert_events``): the written rows' root spans that are not their
        latest version's go, and a written trace's spans under no row go under its row.
        ``late`` changes nothing here: versions are ordered by when their execution started."""
        # Set-based: the batch goes in as one JSON array per statement, so a batch of any size
        # is a handful of statements. That matters beyond SQLite: every statement releases and
        # retakes the GIL, and a writer thread that does so per row slows the tests' thread.
        result = WriteResult()
        now = time.time()
        docs = [as_doc(row) for row in rows]
        with self._db.errors("writing rows"), self._db.transaction() as db:
            if delete_span_ids:
                ids = json.dumps(list(delete_span_ids))
                deleted = db.execute(schema.DELETE_SPANS, (experiment_id, ids)).fetchall()
                result.deleted_span_ids = [span_id for (span_id,) in deleted]
            for group in _rounds(docs):
                _write_versions(db, experiment_id, group, now, result)
            if spans:
                args = {
                    "experiment": experiment_id,
                    "spans": pydantic_core.to_json([as_doc(span) for span in spans]),
                    "now": now,
                    "xact": _reserve_xacts(db, len(spans)),
                }
                db.execute(schema.INSERT_SPANS, args)
            result.spans = len(spans)
            if replace_roots and docs:
                rows_json = json.dumps(sorted({doc["row_id"] for doc in docs}))
                db.execute(schema.DELETE_REPLACED_ROOTS, (experiment_id, rows_json))
            if replace_roots:
                adopt_spans(db, experiment_id, [*docs, *map(as_doc, spans)])
        return result

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

    # -- evaluations (``sqlite_evaluations``) ------------------------------------------------

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
        args: list[Any] = [experiment_id]
        rows_clause = ""
        if row_ids is not None:
            rows_clause = "AND row_id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(list(row_ids)))
        where = schema.STALE_SPANS.format(rows=rows_clause)
        columns = schema.STALE_SPAN_COLUMNS
        if dry_run:
            found = self._db.read("deleting stale spans", f"SELECT {columns} {where}", args)
        else:
            with self._db.errors("deleting stale spans"), self._db.transaction() as db:
                found = db.execute(f"DELETE {where} RETURNING {columns}", args).fetchall()
        return [StaleSpan(*row) for row in found]


def _write_versions(
    db: sqlite3.Connection, experiment_id: str, group: list[RowDoc], now: float, result: WriteResult
) -> None:
    """Insert one round of versions (no row id twice), move the rows' latest versions, count
    them in ``result``, and number again the versions of rows that got an older one late."""
    (before,) = db.execute("SELECT coalesce(max(rowid), 0) FROM row_versions").fetchone()
    args = {
        "experiment": experiment_id,
        "now": now,
        # Bytes, read as text by SQLite: no str copy of a large batch here.
        "rows": pydantic_core.to_json(group),
        "before": before,
        "xact": _reserve_xacts(db, len(group)),
    }
    inserted = db.execute(schema.INSERT_VERSIONS, args).rowcount
    result.duplicate_rows += len(group) - inserted
    if inserted and db.execute(HAS_EVALUATIONS, args).fetchone()[0]:
        # Judged before it arrived: a judge ran while the version was on its way here.
        db.execute(MERGE_INTO_NEW_VERSIONS, args)
    db.execute(schema.UPDATE_LATEST, args)
    new, updated, superseded = db.execute(schema.COUNT_NEW, args).fetchone()
    result.new_rows += new or 0
    result.updated_rows += updated or 0
    if superseded:
        result.superseded_rows += superseded
        behind = [row_id for (row_id,) in db.execute(schema.SUPERSEDED_ROWS, args)]
        renumber = {"experiment": experiment_id, "late": json.dumps(behind)}
        for statement in (schema.RENUMBER_VERSIONS, *schema.RENUMBERED_LATEST):
            db.execute(statement, renumber)


def _reserve_xacts(db: sqlite3.Connection, count: int) -> int:
    """Take ``count`` numbers from the write-order counter; returns the one before them."""
    (last,) = db.execute(
        "UPDATE xact_counter SET last = last + ? RETURNING last", (count,)
    ).fetchone()
    return int(last) - count


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


def _experiment(row: Any) -> Experiment:
    id_, project, name, created, git_commit, git_branch = row
    return Experiment(
        id=id_,
        project=project,
        name=name,
        created=created,
        git_commit=git_commit,
        git_branch=git_branch,
    )
