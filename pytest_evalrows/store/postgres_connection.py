"""The PostgreSQL store's connections: a small psycopg pool, the migrations run once per
database under an advisory lock, and every psycopg error turned into a one-line ``StoreError``
that names the store by its display URL (never its password).

psycopg is imported here, and this module only when a ``postgresql://`` store is opened.
"""

from __future__ import annotations

import logging
import random
import re
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.redaction import scrub_url_credentials
from ..errors import StoreAuthError, StoreError
from . import postgres_schema as schema

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

T = TypeVar("T")

MISSING_DRIVER = "a postgresql:// store needs psycopg: pip install 'pytest-evalrows[postgres]'"
# How long a connection attempt, and a wait for a free pooled connection, may take.
CONNECT_TIMEOUT_S = 10
POOL_TIMEOUT_S = 10.0
# The store's threads (delivery, the server's request threads, the web pages) share these.
POOL_SIZE = 4
# A pooled connection idle for longer is checked (one round trip) before it is used again:
# the server may have dropped it (a restart, a failover, an idle timeout). One used moments
# ago is not, which halves the round trips of a short read.
RECHECK_AFTER_S = 5.0
# A deadlock or serialization failure is retried this many times: writes take one lock per
# experiment first, so neither is expected, but a DBA's stricter isolation level may cause them.
RETRIES = 5
# Keys of the advisory locks: one database-wide for migrating, one per experiment for writing.
MIGRATION_LOCK = "pytest-evalrows:migrations"
EXPERIMENT_LOCK = "pytest-evalrows:experiment:"


def import_psycopg() -> tuple[Any, Any]:
    """psycopg and psycopg_pool, or the one line that says how to install them."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise StoreError(MISSING_DRIVER) from None
    # The pool logs each failed reconnection as a warning; without a handler configured by
    # the application, Python's last-resort handler would print them all to stderr.
    logger = logging.getLogger("psycopg.pool")
    if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
        logger.addHandler(logging.NullHandler())
    return psycopg, psycopg_pool


class Connection:
    """A pool of connections to one database, migrated when opened.

    Reads run in autocommit, one statement each; writes run in a transaction that first takes
    the experiment's advisory lock (see ``transaction``)."""

    def __init__(self, url: str, display: str, *, create: bool = True) -> None:
        self.display = display
        self._password: str | None = None
        self._psycopg, pool_module = import_psycopg()
        self._url = url
        self._options = self._connect_options(url)
        self._last_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._migrate(create)
        self._pool: psycopg_pool.ConnectionPool[Any] = pool_module.ConnectionPool(
            url,
            kwargs={"autocommit": True, **self._options},
            min_size=1,
            max_size=POOL_SIZE,
            open=False,
            name="evalrows",
            timeout=POOL_TIMEOUT_S,
            check=self._check,
            configure=self._configure,
        )
        self._pool.open(wait=False)

    def _connect_options(self, url: str) -> dict[str, Any]:
        """What we add to the URL's own parameters (which win): a connect timeout, and a
        name for ``pg_stat_activity``."""
        try:
            given = self._psycopg.conninfo.conninfo_to_dict(url)
        except self._psycopg.Error as exc:
            raise StoreError(
                f"{self.display} is not a valid PostgreSQL URL: {self.reason(exc)}"
            ) from None
        self._password = given.get("password") or None
        options: dict[str, Any] = {}
        if "connect_timeout" not in given:
            options["connect_timeout"] = CONNECT_TIMEOUT_S
        if "application_name" not in given:
            options["application_name"] = "pytest-evalrows"
        return options

    def _check(self, connection: psycopg.Connection[Any]) -> None:
        """A connection the server may have dropped is replaced before use (see
        ``RECHECK_AFTER_S``)."""
        last = self._last_used.get(connection)
        if last is None or time.monotonic() - last > RECHECK_AFTER_S:
            connection.execute("")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, marked as used when it goes back. (Not with the pool's
        ``reset`` callback: that hands every returned connection to a worker thread.)"""
        with self._pool.connection() as pooled:
            try:
                yield pooled
            finally:
                self._last_used[pooled] = time.monotonic()

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        # Read committed whatever the database's default: each statement after the
        # experiment's lock must see what the writer before committed (a snapshot taken at
        # the transaction's first statement, under repeatable read, would not).
        connection.isolation_level = self._psycopg.IsolationLevel.READ_COMMITTED

    def connect(self) -> psycopg.Connection[Any]:
        """A connection of its own (not pooled); a failure says why it cannot reach the
        server."""
        try:
            connection: psycopg.Connection[Any] = self._psycopg.connect(
                self._url, autocommit=True, **self._options
            )
        except self._psycopg.Error as exc:
            raise self.unreachable(exc) from None
        return connection

    def _migrate(self, create: bool) -> None:
        with self.connect() as db, self.errors("migrating the store"):
            if not create and db.execute(schema.HAS_STORE).fetchone() == (None,):
                raise StoreError(f"no evalrows store in {self.display}")
            if _pending(db) == []:
                return  # the common case: nothing to do, no lock taken
            # Many sessions may open a fresh database at once: one migrates, the others wait
            # for it and then find nothing left to do.
            db.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (MIGRATION_LOCK,))
            try:
                with db.transaction():
                    db.execute(schema.CREATE_MIGRATIONS)
                    pending = _pending(db) or []
                    for name, statements in schema.MIGRATIONS:
                        if name not in pending:
                            continue
                        for statement in statements:
                            db.execute(statement)
                        db.execute(
                            "INSERT INTO evalrows_migrations VALUES (%s, %s)", (name, time.time())
                        )
            finally:
                db.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (MIGRATION_LOCK,))

    def applied_migrations(self) -> list[str]:
        rows = self.read("reading migrations", "SELECT name FROM evalrows_migrations ORDER BY name")
        return [name for (name,) in rows]

    # -- running statements ----------------------------------------------------------------

    def transaction(
        self, doing: str, work: Callable[[psycopg.Cursor[Any]], T], *, experiment: str | None = None
    ) -> T:
        """Run ``work`` in one transaction, all or nothing, retried on a deadlock or a
        serialization failure. With ``experiment``, the transaction first takes that
        experiment's advisory lock: writers of one experiment go one at a time (numbering
        versions, moving latest rows and taking write-order numbers), writers of different
        experiments side by side. The lock is released at commit, after the commit is visible,
        so the next writer's statements see everything the last one wrote."""
        reconnected = False
        for attempt in range(RETRIES + 1):
            worked = False
            try:
                with (
                    self.errors(doing),
                    self._connection() as db,
                    self._pipeline(db),
                    db.transaction(),
                    db.cursor() as cursor,
                ):
                    if experiment is not None:
                        cursor.execute(
                            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                            (EXPERIMENT_LOCK + experiment,),
                        )
                    result = work(cursor)
                    worked = True
                return result
            except _Retry:
                if attempt == RETRIES:
                    break
                time.sleep(random.uniform(0.01, 0.05) * 2**attempt)
            except ConnectionLost:
                # Lost before the commit was sent: the server rolled it all back, and it is
                # run once more on a fresh connection. Lost during the commit: whether it
                # was committed cannot be known here; the caller keeps the batch.
                if worked or reconnected:
                    raise
                reconnected = True
        raise StoreError(f"{doing} in {self.display} failed: kept conflicting with other writers")

    def _pipeline(self, db: psycopg.Connection[Any]) -> AbstractContextManager[Any]:
        """Pipeline mode where libpq has it (14+): the statements of a transaction go to the
        server without waiting for each other's answers, save those read back (the versions'
        counts), so a write costs two round trips rather than one per statement. The server
        still runs them in order: each starts, and takes its snapshot, after the one before
        (the experiment's lock) is done."""
        return db.pipeline() if self._psycopg.Pipeline.is_supported() else nullcontext()

    def read(self, doing: str, query: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        """Every row a query returns; ``doing`` names it if it fails."""
        try:
            return self._read(doing, query, args)
        except ConnectionLost:
            return self._read(doing, query, args)  # once more, on a fresh connection

    def read_one(self, doing: str, query: str, args: Sequence[Any] | dict[str, Any] = ()) -> Any:
        """The first row a query returns, or None."""
        rows = self.read(doing, query, args)
        return rows[0] if rows else None

    def _read(self, doing: str, query: str, args: Sequence[Any] | dict[str, Any]) -> list[Any]:
        with self.errors(doing), self._connection() as db:
            rows: list[Any] = db.execute(query, args).fetchall()
            return rows

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """A psycopg error as one line naming the store and what failed."""
        psycopg = self._psycopg
        try:
            yield
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            raise _Retry from None
        except psycopg.Error as exc:
            raise self.failure(doing, exc) from None

    def failure(self, doing: str, exc: BaseException) -> StoreError:
        from psycopg_pool import PoolTimeout

        if isinstance(exc, PoolTimeout):
            # No connection came: say why, as a fresh connection attempt tells.
            try:
                self.connect().close()
            except StoreError as down:
                return down
            return StoreError(
                f"{doing} in {self.display} failed: no free connection within {POOL_TIMEOUT_S:g} s"
            )
        sqlstate = getattr(exc, "sqlstate", None)
        lost = sqlstate is None or sqlstate.startswith(("08", "57P"))
        if isinstance(exc, self._psycopg.OperationalError) and lost:
            # The connection went away under us (a restart, a network cut, a shutdown): the
            # others in the pool may have gone with it, so each is checked before its next use.
            self._last_used.clear()
            return ConnectionLost(
                f"lost the connection to {self.display} while {doing}: {self.reason(exc)}"
            )
        return StoreError(f"{doing} in {self.display} failed: {self.reason(exc)}")

    def unreachable(self, exc: BaseException) -> StoreError:
        reason = self.reason(exc)
        if "password authentication failed" in reason:
            return StoreAuthError(f"cannot reach {self.display}: {reason}")
        return StoreError(f"cannot reach {self.display}: {reason}")

    def reason(self, exc: BaseException) -> str:
        """The gist of a psycopg error on one line, without any secret: 'connection
        refused', 'database "evals" does not exist'."""
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = lines[0] if lines else type(exc).__name__
        text = text.rpartition(" failed: ")[2] if " failed: " in text else text
        for prefix in ("FATAL:", "ERROR:", "connection is bad:"):
            text = text.removeprefix(prefix).strip()
        if text[:1].isupper() and text[1:2].islower():
            text = text[0].lower() + text[1:]
        text = scrub_url_credentials(text)
        if self._password:
            text = text.replace(self._password, "***")
        return text

    def close(self) -> None:
        self._pool.close()


# A NUL character escaped in JSON text, not preceded by an escaped backslash.
_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def storable(json_text: str) -> str:
    """JSON text PostgreSQL can keep: jsonb (like every text type) cannot hold a NUL
    character, so a string's NUL is kept as U+FFFD, the replacement character. Without this
    one value would make its whole batch undeliverable."""
    if "\\u0000" not in json_text:
        return json_text
    return _NUL.sub(r"\1\\ufffd", json_text)


class ConnectionLost(StoreError):
    """The connection went away while a statement ran (a restart, a network cut)."""


class _Retry(Exception):
    """A deadlock or serialization failure: the transaction may pass when run again."""


def _pending(db: psycopg.Connection[Any]) -> list[str] | None:
    """The migrations not applied yet (None when there is no migrations table)."""
    if db.execute(schema.HAS_STORE).fetchone() == (None,):
        return None
    done = {name for (name,) in db.execute("SELECT name FROM evalrows_migrations")}
    return [name for name, _ in schema.MIGRATIONS if name not in done]
