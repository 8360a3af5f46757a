"""Shared fixtures: a clean environment for every test, the store the inner sessions write, and
PostgreSQL databases for the tests that need one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# In this process before any in-process pytester run: a module first imported inside one is
# dropped from sys.modules after it, and an httpx imported anew maps httpcore's errors by the
# classes of another httpcore than the one an older copy of httpx raises them from (seen as a
# raw httpcore.ConnectError escaping an LLM judge's retries under xdist).
import httpcore  # noqa: F401
import httpx  # noqa: F401
import pytest
from support import postgres
from support.store import default_db

from pytest_evalrows.plugin.settings import OPTIONS


@pytest.fixture(autouse=True)
def _no_evalrows_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's EVALROWS_* variables (and this suite's xdist worker) must not leak into
    the tests or their subprocesses."""
    names = {option.env for option in OPTIONS}
    names |= {name for name in os.environ if name.startswith("EVALROWS_")}
    names.add("BRAINTRUST_API_KEY")  # read as the HTTP store's key
    # libpq's own (PGHOST, PGDATABASE ...): a postgresql:// store would connect, and name
    # itself, by them.
    names |= {name for name in os.environ if name.startswith("PG")}
    # Under `pytest -n`, this suite's own xdist worker must not look like one to the inner
    # sessions: an inner controller would take the outer worker's name (gw0, gw1) and clash
    # with its own workers of that name.
    names |= {"PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"}
    for name in sorted(names):
        monkeypatch.delenv(name, raising=False)
    # pytester removes PYTEST_ADDOPTS itself; make sure nothing disables plugin autoloading.
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's own, with Braintrust's pytest plugin (installed with the SDK the dev extra
    pins) left out of the inner sessions: importing it imports the whole SDK, about a second
    of CPU per session. Set after pytester's own set-up, which removes PYTEST_ADDOPTS; a test
    of that plugin removes it again."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:braintrust")
    return pytester


@pytest.fixture
def db(pytester: pytest.Pytester) -> Path:
    """Where the inner sessions' default store lives: ``<rootdir>/.evalrows/evalrows.db``."""
    return default_db(pytester)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server's URL, with rights to create databases: $EVALROWS_TEST_POSTGRES
    (read when this file was imported), else a throwaway cluster of this test process, started
    on first use and stopped at the end of the session."""
    if postgres.SERVER_FROM_ENV is not None:
        yield postgres.SERVER_FROM_ENV
        return
    server = postgres.ThrowawayServer()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """The URL of a fresh empty database, dropped after the test."""
    database = postgres.new_database(postgres_server)
    try:
        yield database
    finally:
        postgres.drop_database(postgres_server, database)
