"""The embedded store: one SQLite file, safe for several processes at once."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
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

if TYPE_CHECKING:
    from ..core.models import RowVersion, SpanRecord

_BUSY_TIMEOUT_S = 60.0


class SQLiteStore(Store):
    """Rows in one SQLite file (WAL, busy timeout); ``SQLiteStore(":memory:")`` keeps them
    in memory. Also the ``ServerBackend`` behind ``evalrows serve``."""

    attempts = True
    history_complete = True

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
        self._lock = threading.RLock()
        self.unreadable: list[str] = []
        try:
            self._db = sqlite3.connect(
                self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {self.path}: {exc}") from None
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot open {self.path}: {exc}") from None

    # -- set-up --------------------------------------------------------------------------

    def _setup(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        if self.path != ":memory:":
            # Switching to WAL does not wait on the busy timeout: retry while another process
            # holds the lock, as happens when several sessions open a fresh file at once.
            deadline = time.monotonic() + _BUSY_TIMEOUT_S
            while True:
                try:
                    self._db.execute("PRAGMA journal_mode = WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            self._db.execute("PRAGMA synchronous = NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        with self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS evalrows_migrations "
                "(name TEXT PRIMARY KEY, applied REAL NOT NULL)"
            )
            done = {name for (name,) in db.execute("SELECT name FROM evalrows_migrations")}
            for name, migration in schema.MIGRATIONS:
                if name in done:
                    continue
                # One statement per execute: each runs whole, whatever `;` its text holds.
                for statement in migration.statements:
                    db.execute(statement)
                db.execute("INSERT INTO evalrows_migrations VALUES (?, ?)", (name, time.time()))

    def applied_migrations(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT name FROM evalrows_migrations ORDER BY name")
            return [name for (name,) in rows]

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front (no upgrade deadlocks)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{doing} in {self.path} failed: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- experiments and attempts --------------------------------------------------------

    def get_or_create_experiment(
        self,
        project: str,
        name: str,
        *,
        git_commit: str | None = None,
        git_branch: str | None = None,
    ) -> Experiment:
        now = time.time()
        with self._errors("creating the experiment"), self._transaction() as db:
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
        with self._errors("reading experiments"), self._lock:
            if project is None:
                rows = self._db.execute(
                    "SELECT * FROM experiments WHERE name = ? ORDER BY created", (name,)
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM experiments WHERE name = ? AND project = ?", (name, project)
                ).fetchall()
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
        with self._errors("reading experiments"), self._lock:
            row = self._db.execute(
                "SELECT * FROM experiments WHERE id = ?", (experiment_id,)
            ).fetchone()
        if row is None:
            raise UnknownExperimentError(f"no experiment with id {experiment_id!r}")
        return _experiment(row)

    def list_experiments(self) -> list[Experiment]:
        with self._errors("reading experiments"), self._lock:
            rows = self._db.execute("SELECT * FROM experiments ORDER BY project, name")
            return [_experiment(row) for row in rows]

    def get_or_create_project(self, name: str) -> Project:
        with self._errors("reading projects"), self._lock:
            row = self._db.execute("SELECT * FROM projects WHERE name = ?", (name,)).fetchone()
        if row is None:
            with self._errors("creating the project"), self._transaction() as db:
                db.execute(schema.INSERT_PROJECT, (str(uuid.uuid4()), name, time.time()))
                row = db.execute("SELECT * FROM projects WHERE name = ?", (name,)).fetchone()
        return Project(*row)

    def get_project(self, project_id: str) -> Project | None:
        with self._errors("reading projects"), self._lock:
            row = self._db.execute("SELECT * FROM projects WHERE id = ?", (project_id,)).fetchone()
        return None if row is None else Project(*row)

    def list_projects(self) -> list[Project]:
        with self._errors("reading projects"), self._lock:
            return [Project(*row) for row in self._db.execute("SELECT * FROM projects")]

    def save_attempt(self, attempt: Attempt) -> None:
        with self._errors("recording the attempt"), self._transaction() as db:
            db.execute(
                "INSERT INTO attempts VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "body = excluded.body",
                (attempt.experiment_id, attempt.id, attempt.started, json.dumps(asdict(attempt))),
            )

    def list_attempts(self, experiment_id: str) -> list[Attempt]:
        with self._errors("reading attempts"), self._lock:
            rows = self._db.execute(
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
        one insert request of the HTTP API does). With ``replace_roots`` the root spans of the
        written rows that are not their latest version's go too (the HTTP API's model, where
        a row's root is its row event and older versions are history, not spans). ``late``
        changes nothing here: versions are ordered by when their execution started."""
        # Set-based: the batch goes in as one JSON array per statement, so a batch of any size
        # is a handful of statements. That matters beyond SQLite: every statement releases and
        # retakes the GIL, and a writer thread that does so per row slows the tests' thread.
        result = WriteResult()
        now = time.time()
        docs = [as_doc(row) for row in rows]
        with self._errors("writing rows"), self._transaction() as db:
            if delete_span_ids:
                db.execute(
                    "DELETE FROM spans WHERE experiment_id = ? "
                    "AND span_id IN (SELECT value FROM json_each(?))",
                    (experiment_id, json.dumps(list(delete_span_ids))),
                )
            for group in _rounds(docs):
                (before,) = db.execute(
                    "SELECT coalesce(max(rowid), 0) FROM row_versions"
                ).fetchone()
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
            if spans:
                span_json = pydantic_core.to_json([as_doc(span) for span in spans])
                args = {
                    "experiment": experiment_id,
                    "spans": span_json,
                    "now": now,
                    "xact": _reserve_xacts(db, len(spans)),
                }
                db.execute(schema.INSERT_SPANS, args)
            result.spans = len(spans)
            if replace_roots and docs:
                rows_json = json.dumps(sorted({doc["row_id"] for doc in docs}))
                db.execute(schema.DELETE_REPLACED_ROOTS, (experiment_id, rows_json))
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
        query = (
            "SELECT v.version, v.created, v.body FROM latest_rows l JOIN row_versions v "
            "ON v.experiment_id = l.experiment_id AND v.row_id = l.row_id "
            "AND v.version = l.version WHERE l.experiment_id = ?"
        )
        args: list[Any] = [experiment_id]
        if row_ids is not None:
            query += " AND l.row_id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(list(row_ids)))
        with self._errors("reading rows"), self._lock:
            rows = self._db.execute(query + " ORDER BY l.row_id", args).fetchall()
        return self._readable(rows)

    def latest_states(self, experiment_id: str) -> dict[str, RowState]:
        with self._errors("reading rows"), self._lock:
            rows = self._db.execute(
                "SELECT row_id, status, params_hash, attempt_id, created FROM latest_rows "
                "WHERE experiment_id = ?",
                (experiment_id,),
            ).fetchall()
        return {row[0]: RowState(*row[1:]) for row in rows}

    def history(self, experiment_id: str, row_id: str) -> list[RowVersion]:
        with self._errors("reading rows"), self._lock:
            rows = self._db.execute(
                "SELECT version, created, body FROM row_versions "
                "WHERE experiment_id = ? AND row_id = ? ORDER BY version",
                (experiment_id, row_id),
            ).fetchall()
        return self._readable(rows)

    def _readable(self, rows: list[Any]) -> list[RowVersion]:
        """The row versions whose stored body can be read; the others are named in
        ``unreadable`` (a body damaged inside a sound file must not hide the rest)."""
        from pydantic import ValidationError

        found = []
        for version, created, body in rows:
            try:
                found.append(_row(version, created, body))
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
        with self._errors("reading spans"), self._lock:
            rows = self._db.execute(query + " ORDER BY start, span_id", args).fetchall()
        from ..core.models import SpanRecord

        return [SpanRecord.model_validate_json(body) for (body,) in rows]

    def fetch_events(
        self, experiment_id: str, *, limit: int, before: int | None = None
    ) -> list[StoredEvent]:
        """Every row version and every span but the rows' own root spans, newest first,
        at most ``limit`` of them with ``xact`` below ``before``."""
        args = {
            "experiment": experiment_id,
            "before": before if before is not None else 2**63 - 1,
            "limit": limit,
        }
        with self._errors("reading events"), self._lock:
            found = self._db.execute(schema.FETCH_EVENTS, args).fetchall()
        from ..core.models import SpanRecord

        return [
            StoredEvent(
                xact,
                created,
                _row(version, created, body) if is_row else None,
                None if is_row else SpanRecord.model_validate_json(body),
            )
            for xact, created, version, body, is_row in found
        ]

    def delete_stale_spans(
        self,
        experiment_id: str,
        row_ids: Collection[str] | None = None,
        *,
        dry_run: bool = False,
    ) -> list[StaleSpan]:
        # A span is stale when its row's latest version came from another attempt, another
        # execution, or another trace (the same attempt id reused). Rows without any version,
        # and spans under no row, never match.
        where = (
            "FROM spans WHERE experiment_id = ? AND row_id IS NOT NULL {rows} AND EXISTS ("
            "SELECT 1 FROM latest_rows l WHERE l.experiment_id = spans.experiment_id "
            "AND l.row_id = spans.row_id "
            "AND (l.attempt_id != spans.attempt_id OR l.execution != spans.execution "
            "OR l.root_span_id != json_extract(spans.body, '$.root_span_id')))"
        )
        args: list[Any] = [experiment_id]
        rows_clause = ""
        if row_ids is not None:
            rows_clause = "AND row_id IN (SELECT value FROM json_each(?))"
            args.append(json.dumps(list(row_ids)))
        where = where.format(rows=rows_clause)
        columns = "row_id, span_id, attempt_id, execution, json_extract(body, '$.name')"
        with self._errors("deleting stale spans"):
            if dry_run:
                with self._lock:
                    found = self._db.execute(f"SELECT {columns} {where}", args).fetchall()
            else:
                with self._transaction() as db:
                    found = db.execute(f"DELETE {where} RETURNING {columns}", args).fetchall()
        return [StaleSpan(*row) for row in found]


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


def _row_id_of(body: str) -> str:
    try:
        return str(json.loads(body)["row_id"])
    except (ValueError, KeyError, TypeError):
        return "?"


def _row(version: int, created: float, body: str) -> RowVersion:
    from ..core.models import RowVersion

    row = RowVersion.model_validate_json(body)
    row.version = version
    row.created = created
    return row
