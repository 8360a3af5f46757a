"""PostgreSQL for the tests: a server (``$EVALROWS_TEST_POSTGRES``, else a throwaway cluster that
``scripts/postgres`` starts) and fresh empty databases on it.

``.ci/run`` starts one cluster for the whole run and exports its URL; without it, each test
process starts its own cluster the first time a test asks for one (the ``postgres_server``
fixture in tests/conftest.py), so sessions that need no PostgreSQL never pay for it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# Read at import: tests/conftest.py takes every EVALROWS_* variable away while a test runs.
SERVER_FROM_ENV = os.environ.get("EVALROWS_TEST_POSTGRES") or None

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres"


class ThrowawayServer:
    """A PostgreSQL cluster in a directory of its own, started by ``scripts/postgres`` on a
    free port (or ``port``); ``stop`` stops it and removes the directory."""

    def __init__(self, *, durable: bool = False, port: int | None = None) -> None:
        # Under /tmp, not pytest's tmp_path: the socket's path must stay short, and as root
        # the server's user "postgres" must reach the directory (/tmp/pytest-of-root is private).
        self.directory = Path(tempfile.mkdtemp(prefix="evalrows-pg-"))
        command = [str(SCRIPT), str(self.directory)]
        command += ["--durable"] if durable else []
        command += ["--port", str(port)] if port is not None else []
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise RuntimeError(f"scripts/postgres could not start a server: {done.stderr.strip()}")
        self.url = done.stdout.strip()
        # Stopped by whoever started it; at exit too, should the process end without that.
        atexit.register(self.stop)

    def stop(self) -> None:
        if not self.directory.exists():
            return
        atexit.unregister(self.stop)
        subprocess.run(
            [str(SCRIPT), "stop", str(self.directory)], capture_output=True, text=True, check=True
        )
        shutil.rmtree(self.directory, ignore_errors=True)


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database replaced by ``name`` (user, host and query kept)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def new_database(server_url: str) -> str:
    """Create an empty database with a unique name on the server; its URL."""
    name = f"evalrows_test_{uuid.uuid4().hex[:16]}"
    _admin(server_url, "CREATE DATABASE {}", name)
    return database_url(server_url, name)


def drop_database(server_url: str, database: str) -> None:
    """Drop a database that ``new_database`` made on the server, even with a connection left
    open to it."""
    _admin(server_url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", urlsplit(database).path[1:])


def _admin(server_url: str, statement: str, name: str) -> None:
    import psycopg  # only where a test asks for PostgreSQL
    from psycopg import sql

    query = sql.SQL(statement).format(sql.Identifier(name))
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as connection:
        connection.execute(query)


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` for its user (the test servers trust every local login)."""
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def count(url: str, query: str, *args: Any) -> Any:
    """The first column of the first row ``query`` answers, read on a connection of its own."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(query, args).fetchone()
    assert row is not None
    return row[0]


def ended(call: Callable[[], object]) -> BaseException | None:
    """What ``call`` raised, run in a thread that must end (a generous bound against a hang,
    not a measure of time)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # reported to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=90)
    assert not thread.is_alive(), "the call is still waiting"
    return outcome[0]
