"""What keeps a PostgreSQL store's call from waiting forever: a deadline per call that cuts
the connection of one whose server stopped answering (a silent network, a suspended host),
and a lock per experiment in this process taken before a pooled connection is borrowed to
write it, so that writers waiting for an experiment do not hold every pooled connection.

Pure threading; psycopg is not imported here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

# How long the server may run one statement (SET per transaction and per session).
STATEMENT_TIMEOUT_S = 60.0
# How long a writer waits for its experiment's lock (here, then on the server).
LOCK_TIMEOUT_S = 30.0
# A session of the store left idle inside a transaction (a stopped process) is ended by the
# server after this long, releasing the experiment's lock it held.
IDLE_IN_TRANSACTION_S = 60.0
# A call with no answer for this long has lost its server: its connection is cut. Beyond the
# statement timeout, since the server ends a statement that runs too long by itself.
CALL_DEADLINE_S = STATEMENT_TIMEOUT_S + LOCK_TIMEOUT_S + 30.0
# How often the watchdog looks at the calls under way.
_TICK_S = 0.25
# TCP settings the URL may override: a dead peer is noticed in about half a minute (keepalive
# probes while waiting for an answer, unacknowledged data while sending).
TCP_DEFAULTS = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


class Watchdog:
    """Cuts the socket of a call still under way past its deadline, so the call fails (as a
    lost connection) instead of waiting for an answer that will not come. One thread per
    store, started with its first call and stopped by ``close``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._due: dict[int, tuple[float, Any]] = {}
        self._cut: set[int] = set()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @contextlib.contextmanager
    def guard(self, connection: Any, seconds: float | None) -> Iterator[None]:
        """Within the block, ``connection`` is cut once ``seconds`` have passed (never when
        None)."""
        if seconds is None:
            yield
            return
        key = id(connection)
        with self._lock:
            self._due[key] = (time.monotonic() + seconds, connection)
            self._cut.discard(key)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="evalrows-postgres-watchdog", daemon=True
                )
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._due.pop(key, None)

    def was_cut(self, connection: Any) -> bool:
        """Whether ``connection``'s last guarded call ran past its deadline and was cut."""
        with self._lock:
            return id(connection) in self._cut

    def _run(self) -> None:
        while not self._stop.wait(_TICK_S):
            now = time.monotonic()
            # Cut under the lock: the call cannot end and hand its connection back (to be
            # closed, its descriptor reused) meanwhile.
            with self._lock:
                late = [(key, conn) for key, (due, conn) in self._due.items() if due <= now]
                for key, connection in late:
                    del self._due[key]
                    self._cut.add(key)
                    _cut(connection)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _cut(connection: Any) -> None:
    """Shut the connection's socket down: the call waiting on it wakes to a closed
    connection. (Not ``cancel``: a cancel request needs the server to answer.)"""
    try:
        fileno = connection.pgconn.socket
        with socket.socket(fileno=os.dup(fileno)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # already closed: nothing left to cut
        pass


class ExperimentLocks:
    """One lock per experiment in this process: writers of an experiment queue here, holding
    no connection, and only the first borrows one to wait for the server's lock."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    @contextlib.contextmanager
    def hold(self, experiment: str, timeout: float) -> Iterator[bool]:
        """Yields whether the lock was taken within ``timeout``."""
        with self._guard:
            lock = self._locks.setdefault(experiment, threading.Lock())
        taken = lock.acquire(timeout=timeout)
        try:
            yield taken
        finally:
            if taken:
                lock.release()
