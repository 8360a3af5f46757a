"""The PostgreSQL store's connections: a small psycopg pool, the migrations run once per
database under an advisory lock, and every psycopg error turned into a one-line ``StoreError``
that names the store by its display URL (never its password).

psycopg is imported (``postgres_session``) only when a ``postgresql://`` store is opened.
"""

from __future__ import annotations

import random
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import StoreError
from . import postgres_limits as limits
from . import postgres_schema as schema
from .postgres_session import MISSING_DRIVER as MISSING_DRIVER
from .postgres_session import Session, ms

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

T = TypeVar("T")

# How long a wait for a free pooled connection may take.
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
# After a failed connection attempt, calls fail at once with its reason for this long, rather
# than each waiting for a connection that cannot come; then one tries again.
RETRY_CONNECT_AFTER_S = 15.0
# Keys of the advisory locks: one database-wide for migrating, one per experiment for writing.
MIGRATION_LOCK = "pytest-evalrows:migrations"
EXPERIMENT_LOCK = "pytest-evalrows:experiment:"


class Connection(Session):
    """A pool of connections to one database, migrated when opened.

    Reads run in autocommit, one statement each; writes run in a transaction that first takes
    the experiment's advisory lock (see ``transaction``)."""

    def __init__(self, url: str, display: str, *, create: bool = True) -> None:
        super().__init__(url, display)
        self._last_used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._watchdog = limits.Watchdog()
        self._experiments = limits.ExperimentLocks()
        # Set when the server was found gone: the next call connects directly (failing fast
        # when it still cannot) instead of waiting on the pool; see `_connection`.
        self._probe_first = False
        self._failed_connect: tuple[float, StoreError] | None = None
        try:
            self._migrate(create)
        except BaseException:
            self._watchdog.close()
            raise
        self._pool: psycopg_pool.ConnectionPool[Any] = self._pool_module.ConnectionPool(
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

    def _check(self, connection: psycopg.Connection[Any]) -> None:
        """A connection the server may have dropped is replaced before use (see
        ``RECHECK_AFTER_S``)."""
        last = self._last_used.get(connection)
        if last is None or time.monotonic() - last > RECHECK_AFTER_S:
            # Under the call's deadline too: on a silent network the check would wait as the
            # call would. Cut, it fails, and the pool tries another connection.
            with self._watchdog.guard(connection, self._deadline()):
                connection.execute("")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection, marked as used when it goes back (not with the pool's
        ``reset`` callback: that hands every returned connection to a worker thread); cut
        when its call gets no answer for ``CALL_DEADLINE_S``. Once the server was found gone,
        a connection of its own instead: the pool would wait its timeout for a connection that
        cannot come, where a direct attempt says at once why (or, when it works, serves the
        call while the pool reconnects)."""
        if self._probe_first:
            direct = self._direct()
            with direct, self._guarded(direct):
                yield direct
            return
        with self._pool.connection() as pooled:
            try:
                with self._guarded(pooled):
                    yield pooled
            finally:
                self._last_used[pooled] = time.monotonic()

    @contextmanager
    def _guarded(self, connection: psycopg.Connection[Any]) -> Iterator[None]:
        with self._watchdog.guard(connection, self._deadline()):
            try:
                yield
            except self._psycopg.OperationalError:
                if not self._watchdog.was_cut(connection):
                    raise
                self._probe_first = True
                raise NoAnswer(f"no answer within {limits.CALL_DEADLINE_S:g} s") from None

    def _deadline(self) -> float | None:
        # With the URL's own statement timeout (none, perhaps), only TCP's keepalives and user
        # timeout notice a silent network.
        return limits.CALL_DEADLINE_S if self.own_statement_timeout else None

    def _direct(self) -> psycopg.Connection[Any]:
        """A connection of its own, configured as pooled ones are; a recent failure to
        connect is said again at once."""
        failed = self._failed_connect
        if failed is not None and time.monotonic() - failed[0] < RETRY_CONNECT_AFTER_S:
            raise type(failed[1])(str(failed[1]))
        try:
            connection = self.connect()
        except StoreError as exc:
            self._failed_connect = (time.monotonic(), exc)
            raise
        self._failed_connect = None
        self._probe_first = False
        return connection

    def _migrate(self, create: bool) -> None:
        # Not under a deadline: another process's migration of a large database may take
        # long, and this one waits for it.
        with self.connect() as db, self.errors("migrating the store"):
            if not create and db.execute(schema.HAS_STORE).fetchone() == (None,):
                raise StoreError(f"no evalrows store in {self.display}")
            schema.migrate(db, MIGRATION_LOCK)

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
        so the next writer's statements see everything the last one wrote.

        Writers of one experiment in this process queue for it before they borrow a pooled
        connection; each waits at most ``LOCK_TIMEOUT_S`` (here, then on the server)."""
        if experiment is None:
            return self._transaction(doing, work, None)
        with self._experiments.hold(experiment, limits.LOCK_TIMEOUT_S) as taken:
            if not taken:
                raise StoreError(self.lock_timed_out(doing))
            return self._transaction(doing, work, experiment)

    def _transaction(
        self, doing: str, work: Callable[[psycopg.Cursor[Any]], T], experiment: str | None
    ) -> T:
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
                    cursor.execute(
                        "SELECT set_config('lock_timeout', %s, true)", (ms(limits.LOCK_TIMEOUT_S),)
                    )
                    if self.own_statement_timeout:
                        cursor.execute(
                            "SELECT set_config('statement_timeout', %s, true)",
                            (ms(limits.STATEMENT_TIMEOUT_S),),
                        )
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
        except psycopg.errors.LockNotAvailable:
            raise StoreError(self.lock_timed_out(doing)) from None
        except NoAnswer as exc:
            raise StoreError(f"{doing} in {self.display} failed: {exc}") from None
        except psycopg.Error as exc:
            raise self.failure(doing, exc) from None

    def failure(self, doing: str, exc: BaseException) -> StoreError:
        from psycopg_pool import PoolTimeout

        if isinstance(exc, PoolTimeout):
            # No connection came: say why, as a fresh connection attempt tells.
            try:
                self.connect().close()
            except StoreError as down:
                self._failed_connect = (time.monotonic(), down)
                self._probe_first = True
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
            self._probe_first = True
            return ConnectionLost(
                f"lost the connection to {self.display} while {doing}: {self.reason(exc)}"
            )
        return StoreError(f"{doing} in {self.display} failed: {self.reason(exc)}")

    def close(self) -> None:
        # Not waiting long for the pool's threads: one may be stuck connecting to a server
        # that does not answer, and they stop by themselves.
        self._pool.close(timeout=1.0)
        self._watchdog.close()


class NoAnswer(StoreError):
    """A call's connection was cut: the server gave no answer by its deadline."""


class ConnectionLost(StoreError):
    """The connection went away while a statement ran (a restart, a network cut)."""


class _Retry(Exception):
    """A deadlock or serialization failure: the transaction may pass when run again."""
