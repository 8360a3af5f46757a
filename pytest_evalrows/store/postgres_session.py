"""How the PostgreSQL store opens a session of the server: the driver (imported only here and
only when a ``postgresql://`` store is opened), the connection options it adds to the URL's,
the settings of each session, and what a failure to connect says, on one line and without the
password."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..core.redaction import scrub_url_credentials
from ..errors import StoreAuthError, StoreError
from . import postgres_limits as limits

if TYPE_CHECKING:
    import psycopg

MISSING_DRIVER = "a postgresql:// store needs psycopg: pip install 'pytest-evalrows[postgres]'"
# How long a connection attempt may take (unless the URL says).
CONNECT_TIMEOUT_S = 10


def import_psycopg() -> tuple[Any, Any]:
    """psycopg and psycopg_pool, or the one line that says how to install them."""
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise StoreError(MISSING_DRIVER) from None
    # The pool logs each failed reconnection as a warning, psycopg an error it ignores while
    # another is raised. The store says what failed in its own one line; these must reach
    # neither stderr (Python's last-resort handler) nor any handler of the application, such
    # as the captured log pytest shows for a failing test (which it also attaches to loggers
    # that do not propagate): a filter drops them where they are logged.
    for name in ("psycopg", "psycopg.pool"):
        logger = logging.getLogger(name)
        if _SILENCE not in logger.filters:
            logger.addFilter(_SILENCE)
            logger.addHandler(logging.NullHandler())
    return psycopg, psycopg_pool


def _silence(record: logging.LogRecord) -> bool:
    return False


_SILENCE = _silence


class Session:
    """The options, settings and one-line errors of the store's server sessions."""

    def __init__(self, url: str, display: str) -> None:
        self.display = display
        self._password: str | None = None
        self._psycopg, self._pool_module = import_psycopg()
        self._url = url
        self._options = self._connect_options(url)

    def _connect_options(self, url: str) -> dict[str, Any]:
        """What we add to the URL's own parameters (which win): a connect timeout, TCP
        keepalives and a user timeout (a silent network is noticed), and a name for
        ``pg_stat_activity``."""
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
        for name, value in limits.TCP_DEFAULTS.items():
            if name not in given:
                options[name] = value
        # A timeout the URL sets (`?options=-c statement_timeout=0`) is the user's to keep.
        said = given.get("options") or ""
        self.own_statement_timeout = "statement_timeout" not in said
        self._own_idle_timeout = "idle_in_transaction_session_timeout" not in said
        return options

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        # Read committed whatever the database's default: each statement after the
        # experiment's lock must see what the writer before committed (a snapshot taken at
        # the transaction's first statement, under repeatable read, would not).
        connection.isolation_level = self._psycopg.IsolationLevel.READ_COMMITTED
        # A statement may not run forever, and a session of ours stopped inside a
        # transaction (holding its experiment's lock) is ended by the server.
        if self.own_statement_timeout:
            connection.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                (ms(limits.STATEMENT_TIMEOUT_S),),
            )
        if self._own_idle_timeout:
            connection.execute(
                "SELECT set_config('idle_in_transaction_session_timeout', %s, false)",
                (ms(limits.IDLE_IN_TRANSACTION_S),),
            )

    def connect(self) -> psycopg.Connection[Any]:
        """A connection of its own (not pooled), configured as pooled ones are; a failure
        says why it cannot reach the server."""
        try:
            connection: psycopg.Connection[Any] = self._psycopg.connect(
                self._url, autocommit=True, **self._options
            )
        except self._psycopg.Error as exc:
            raise self.unreachable(exc) from None
        try:
            self._configure(connection)
        except self._psycopg.Error as exc:
            connection.close()
            raise self.unreachable(exc) from None
        return connection

    def lock_timed_out(self, doing: str) -> str:
        return (
            f"{doing} in {self.display} failed: another writer held the experiment for over "
            f"{limits.LOCK_TIMEOUT_S:g} s"
        )

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


def ms(seconds: float) -> str:
    """A duration as PostgreSQL settings take it."""
    return f"{round(seconds * 1000)}ms"
