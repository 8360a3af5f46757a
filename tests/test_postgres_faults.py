"""The PostgreSQL store when its server or network fails it while it is open: a lost
connection, a server gone, a network gone silent; each ends in one line, never in a wait
without end, and the pool's complaints stay out of the application's log. Writers waiting for
each other are in tests/test_postgres_locks.py."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.sql
import pytest
from support.postgres import ThrowawayServer, ended, with_password
from support.store import make_row

from pytest_evalrows.errors import StoreError
from pytest_evalrows.store import postgres_connection as connection_module
from pytest_evalrows.store import postgres_limits as limits
from pytest_evalrows.store.postgres import PostgresStore

HERE = Path(__file__).parent


def test_a_connection_the_server_dropped_is_replaced(
    postgres_url: str, postgres_server: str
) -> None:
    with PostgresStore(postgres_url) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        store.write(experiment, [make_row("a")], [])
        database = urlsplit(postgres_url).path[1:]
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            found = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchall()
            for (pid,) in found:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert found
        store.write(experiment, [make_row("b")], [])
        assert [row.row_id for row in store.latest_rows(experiment)] == ["a", "b"]


@pytest.fixture
def own_server() -> Iterator[ThrowawayServer]:
    server = ThrowawayServer()
    try:
        yield server
    finally:
        server.stop()


def test_a_server_gone_while_the_store_is_open_is_one_line(own_server: ThrowawayServer) -> None:
    url = with_password(own_server.url, "s3cret")
    with PostgresStore(url) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        store.write(experiment, [make_row("a")], [])
        own_server.stop()
        with pytest.raises(StoreError) as raised:
            store.write(experiment, [make_row("b")], [])
    message = str(raised.value)
    assert message == f"cannot reach {store.display_url}: connection refused"
    assert "s3cret" not in message and "\n" not in message


# -- a network gone silent, a server gone -------------------------------------------------------


class TcpProxy:
    """127.0.0.1:``port`` forwarding to a PostgreSQL server. ``silence()``: what either side
    sends is read and dropped, so every connection stays open and nothing is answered (a
    network cut, a suspended host); ``refuse()``: the port is closed and so is every
    connection (a server gone)."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._silent = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def url(self, database_url: str, query: str = "") -> str:
        """``database_url`` reached through the proxy (and ``query`` added)."""
        parts = urlsplit(database_url)
        netloc = f"{parts.username or 'postgres'}@127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc, query=query))

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # refused or closed
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
                for source, sink in ((client, upstream), (upstream, client)):
                    thread = threading.Thread(target=self._pipe, args=(source, sink), daemon=True)
                    self._threads.append(thread)
                    thread.start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self._silent.is_set():
                    sink.sendall(data)
        except OSError:
            pass

    def silence(self) -> None:
        self._silent.set()

    def refuse(self) -> None:
        # Shut down first: closing alone leaves a thread blocked in accept() accepting.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for each in self._sockets:
                with contextlib.suppress(OSError):
                    each.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.refuse()
        for thread in self._threads:
            thread.join(timeout=60)
        with self._lock:
            for each in self._sockets:
                each.close()


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    running = TcpProxy(postgres_url)
    try:
        yield running
    finally:
        running.close()


def test_connections_keep_tcp_keepalives_and_a_user_timeout_unless_the_url_says_otherwise(
    postgres_url: str,
) -> None:
    with PostgresStore(postgres_url) as store:
        with store._db.connect() as connection:
            given = connection.info.get_parameters()
        [(statement, idle)] = store._db.read(
            "reading settings",
            "SELECT current_setting('statement_timeout'), "
            "current_setting('idle_in_transaction_session_timeout')",
        )
    assert {key: given.get(key) for key in limits.TCP_DEFAULTS} == limits.TCP_DEFAULTS
    assert (statement, idle) == ("1min", "1min")
    overridden = PostgresStore(f"{postgres_url}?keepalives_idle=7&tcp_user_timeout=0")
    with overridden as store, store._db.connect() as connection:
        given = connection.info.get_parameters()
    assert (given["keepalives_idle"], given.get("tcp_user_timeout", "0")) == ("7", "0")
    # A statement timeout the URL sets is kept (an export of a large experiment may need it).
    with PostgresStore(f"{postgres_url}?options=-cstatement_timeout%3D0") as store:
        [(statement, idle)] = store._db.read(
            "reading settings",
            "SELECT current_setting('statement_timeout'), "
            "current_setting('idle_in_transaction_session_timeout')",
        )
        experiment = store.get_or_create_experiment("p", "e").id
        store.write(experiment, [make_row("a")], [])
    assert (statement, idle) == ("0", "1min")


def test_a_write_over_a_network_gone_silent_ends_in_one_line(
    proxy: TcpProxy, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "CALL_DEADLINE_S", 1.0)
    with PostgresStore(proxy.url(postgres_url, "connect_timeout=2")) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        store.write(experiment, [make_row("a")], [])
        proxy.silence()
        failed = ended(lambda: store.write(experiment, [make_row("b")], []))
        # (Or, when the pool hands out a connection it checks first, the check is cut and
        # the pool's new connections time out.)
        assert str(failed) in (
            f"writing rows in {store.display_url} failed: no answer within 1 s",
            f"cannot reach {store.display_url}: connection timeout expired",
        )
        # The next call does not wait on the pool: it connects, and says why it cannot.
        failed = ended(lambda: store.latest_rows(experiment))
        assert str(failed) == f"cannot reach {store.display_url}: connection timeout expired"
    with PostgresStore(postgres_url) as direct:
        [row] = direct.latest_rows(experiment)
    assert row.row_id == "a"


def test_a_pooled_connection_checked_on_a_silent_network_does_not_hang_the_call(
    proxy: TcpProxy, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "CALL_DEADLINE_S", 1.0)
    # Every pooled connection is checked before use (as one idle for a while is).
    monkeypatch.setattr(connection_module, "RECHECK_AFTER_S", 0.0)
    with PostgresStore(proxy.url(postgres_url, "connect_timeout=1")) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        proxy.silence()
        failed = ended(lambda: store.write(experiment, [make_row("a")], []))
    assert str(failed) == f"cannot reach {store.display_url}: connection timeout expired"


@pytest.mark.parametrize("how", ["refused", "silent"])
def test_calls_to_a_server_gone_fail_at_once_rather_than_waiting_for_the_pool(
    how: str, proxy: TcpProxy, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pool that would wait (almost) for ever: a call must not wait on it once the server is
    # known to be gone.
    monkeypatch.setattr(connection_module, "POOL_TIMEOUT_S", 3600.0)
    monkeypatch.setattr(limits, "CALL_DEADLINE_S", 1.0)
    store = PostgresStore(proxy.url(postgres_url, "connect_timeout=1"))
    experiment = store.get_or_create_experiment("p", "e").id
    store.write(experiment, [make_row("a")], [])
    if how == "refused":
        proxy.refuse()
        reason = "connection refused"
    else:
        proxy.silence()
        reason = "connection timeout expired"
    failures = [
        ended(lambda: store.write(experiment, [make_row("b")], [])),
        ended(lambda: store.latest_states(experiment)),
        ended(lambda: store.write(experiment, [make_row("c")], [])),
        ended(store.close),
    ]
    assert [str(each) if each else None for each in failures[1:]] == [
        f"cannot reach {store.display_url}: {reason}",
        f"cannot reach {store.display_url}: {reason}",
        None,
    ]
    # The first call finds it out on its connection: refused, or (silent) no answer or, on a
    # connection the pool checks first, connecting timed out.
    assert str(failures[0]).endswith((reason, "no answer within 1 s")), failures[0]


def test_the_pools_complaints_stay_out_of_the_applications_log(
    proxy: TcpProxy, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # What a failing test's captured log shows: the store's one line says what failed, the
    # pool's warnings about each reconnection it tries must not be there too.
    caplog.set_level(logging.DEBUG)
    with PostgresStore(proxy.url(postgres_url, "connect_timeout=1")) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        proxy.refuse()
        with pytest.raises(StoreError):
            store.write(experiment, [make_row("a")], [])
        # The pool tried to reconnect twice (it logs each failure before the next try).
        deadline = time.monotonic() + 60
        while store._db._pool.get_stats().get("connections_errors", 0) < 2:
            assert time.monotonic() < deadline, "the pool did not try to reconnect"
            time.sleep(0.05)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []
