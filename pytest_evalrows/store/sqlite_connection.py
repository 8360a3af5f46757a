"""The embedded store's connection: one SQLite connection shared by the store's threads, set up
for several processes at once (busy timeout, WAL) and migrated when opened."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import StoreError
from . import sqlite_schema as schema

BUSY_TIMEOUT_S = 60.0


class Connection:
    """Reads run under a lock, writes in a transaction that takes the write lock up front;
    an ``sqlite3.Error`` in either is a ``StoreError`` that names the file and what failed."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open {path}: {exc}") from None
        try:
            self._setup()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"cannot open {path}: {exc}") from None

    def _setup(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if self.path != ":memory:":
            # Switching to WAL does not wait on the busy timeout: retry while another process
            # holds the lock, as happens when several sessions open a fresh file at once.
            deadline = time.monotonic() + BUSY_TIMEOUT_S
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
        with self.transaction() as db:
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
    def transaction(self) -> Iterator[sqlite3.Connection]:
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
    def errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{doing} in {self.path} failed: {exc}") from None

    def read(self, doing: str, query: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        """Every row a query returns; ``doing`` names it if it fails."""
        with self.errors(doing), self._lock:
            return self._db.execute(query, args).fetchall()

    def read_one(self, doing: str, query: str, args: Sequence[Any] = ()) -> Any:
        """The first row a query returns, or None."""
        with self.errors(doing), self._lock:
            return self._db.execute(query, args).fetchone()

    def close(self) -> None:
        with self._lock:
            self._db.close()
