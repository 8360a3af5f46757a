"""A fault-injecting proxy on 127.0.0.1 in front of a real ``evalrows serve``.

    with FaultProxy(server.url, flap=Flap(up=1, down=1)) as proxy:
        ...  # point --eval-store at proxy.url
    proxy.stats().dropped_after_commit

The proxy forwards HTTP/1.1 requests (keep-alive kept) to ``target`` with httpx and injects
faults on a schedule of its own, so the client side needs no sleeps or hooks:

- ``Refuse()``: the port stops accepting. The listening socket is closed (a connect gets
  ECONNREFUSED at once, never a hang) and every open connection is closed too; going up binds
  the same port again (SO_REUSEADDR).
- ``Status(503, retry_after="1")``, ``Status(429, ...)``: answered without forwarding.
- ``DropAfterCommit()``: forwarded; once the server has answered (and so committed), the
  connection is closed without an answer: the client sees a transport error after its write
  happened.
- ``Reset()``: the connection is closed without forwarding or answering.

Schedules: ``Flap(up, down, fault)`` alternates by time, starting up; ``Rule``s fault requests
by count (every Nth, the first N, paths matching a pattern); ``go_down``/``go_up`` switch by
hand (and stop a flap). Everything the proxy saw and did is kept (``seen``, ``stats()``,
``transitions``) so that tests assert on counts, never on time. ``close`` stops every thread
and closes every socket; errors inside the proxy are kept in ``errors`` and raised on exit.

Standalone: stdlib, httpx and ``pytest_evalrows.braintrust.wire`` only, so that benchmarks can
load it by path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar, Literal

import httpx

from pytest_evalrows.braintrust import wire

# Bounds: nothing the proxy does waits longer than these.
STATE_CHANGE_TIMEOUT = 10.0  # go_down/go_up wait this long for the listener thread
REBIND_TIMEOUT = 10.0  # going up: keep trying to bind the port again this long
IDLE_CONNECTION_TIMEOUT = 120.0  # a connection with no request for this long is closed
JOIN_TIMEOUT = 10.0  # on close, on top of the upstream timeout

# -- faults ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refuse:
    """The port stops accepting, and open connections are closed. A state, not an answer:
    only for ``Flap`` and ``go_down`` (a request that already arrived is ``Reset``)."""

    name: ClassVar[str] = "refuse"


@dataclass(frozen=True)
class Status:
    """Answer ``status`` without forwarding, with ``Retry-After: retry_after`` if given."""

    status: int = 503
    retry_after: str | None = None

    @property
    def name(self) -> str:
        return str(self.status)


@dataclass(frozen=True)
class DropAfterCommit:
    """Forward the request, wait for the server's answer, then close the connection without
    answering."""

    name: ClassVar[str] = "drop after commit"


@dataclass(frozen=True)
class Reset:
    """Close the connection without forwarding or answering: nothing was written."""

    name: ClassVar[str] = "reset"


Fault = Refuse | Status | DropAfterCommit | Reset


def unavailable(retry_after: str | None = None) -> Status:
    return Status(503, retry_after)


def too_many_requests(retry_after: str | None = "1") -> Status:
    return Status(429, retry_after)


# -- schedules ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flap:
    """Up for ``up`` seconds, then down (``fault``) for ``down`` seconds, repeating from the
    moment it is set; ``start_down`` begins with a down period."""

    up: float
    down: float
    fault: Fault = field(default_factory=Refuse)
    start_down: bool = False

    def __post_init__(self) -> None:
        if self.up <= 0 or self.down <= 0:
            raise ValueError(f"a flap needs positive periods, not up={self.up} down={self.down}")

    def state(self, elapsed: float) -> tuple[Fault | None, float]:
        """The fault at ``elapsed`` seconds into the flap (None: up) and the seconds until the
        next change."""
        period = self.up + self.down
        phase = elapsed % period
        first = self.down if self.start_down else self.up
        in_first = phase < first
        remaining = (first - phase) if in_first else (period - phase)
        is_down = in_first == self.start_down
        return (self.fault if is_down else None), remaining


@dataclass(frozen=True)
class Rule:
    """Fault requests by count. A request matches when ``path`` (a regular expression,
    searched in the path without the query) and ``method`` match; matching requests are
    numbered 1, 2, 3 ... per rule, and the rule fires on every ``every``-th of them, only
    among the first ``first`` (None: all), never on the first ``after``, at most ``times``
    times in all (None: no limit).

    Rules are tried in order and the first that fires wins; a request taken by an earlier
    rule is not counted by later ones. Rules apply while the proxy is up.
    """

    fault: Fault
    path: str | None = None
    method: str | None = None
    every: int = 1
    first: int | None = None
    times: int | None = None
    after: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.fault, Refuse):
            raise ValueError("Refuse is a state (Flap, go_down); per request use Reset")
        if self.every < 1:
            raise ValueError(f"every must be at least 1, not {self.every}")

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and method.upper() != self.method.upper():
            return False
        return self.path is None or re.search(self.path, path.split("?", 1)[0]) is not None


# -- what the proxy saw ------------------------------------------------------------------------

Outcome = Literal[
    "answered",  # forwarded, and the server's answer reached the client
    "faulted",  # answered with a Status fault, not forwarded
    "reset",  # closed without forwarding (Reset, or a request that arrived as it went down)
    "dropped after commit",  # forwarded, the server answered, the answer was dropped on purpose
    "cut",  # forwarded, but the proxy went down (Refuse) before the answer got out
    "upstream error",  # the server could not be reached: answered 502
    "pending",  # still being handled
]


@dataclass
class Seen:
    """One request the proxy read."""

    number: int
    method: str
    path: str
    endpoint: str  # the path's last part, as the HTTP store counts its requests
    digest: str  # of the body
    row_ids: tuple[str, ...]  # row events in an insert body
    fault: str | None  # the fault applied, by name
    retry: bool  # the same method, path and body as an earlier faulted request
    outcome: Outcome = "pending"
    upstream_status: int | None = None  # the server's answer, when forwarded

    @property
    def rows(self) -> int:
        return len(self.row_ids)

    @property
    def committed(self) -> bool:
        """The server took it (it answered 2xx)."""
        return self.upstream_status is not None and 200 <= self.upstream_status < 300


@dataclass(frozen=True)
class Transition:
    at: float  # seconds since the proxy started: for reading, never for asserting
    state: Literal["up", "down"]
    fault: str | None


@dataclass
class ProxyStats:
    """A snapshot of the proxy's counts. ``refused`` connections are not counted: the kernel
    refuses them, the proxy never sees them."""

    requests: Counter[str]  # by endpoint: project, experiment, insert, fetch
    faults: Counter[str]  # requests faulted on purpose, by fault name
    outcomes: Counter[str]  # by Outcome
    connections: int  # accepted
    cut_connections: int  # open connections closed on going down (Refuse)
    row_events_forwarded: int  # row events in the inserts forwarded to the server
    row_events_committed: int  # ... that the server took (answered 2xx)
    dropped_after_commit: int  # requests the server took whose answer was dropped on purpose
    dropped_rows: int  # row events in them
    cut_after_commit: int  # requests the server took whose answer a going-down cut off
    retried: int  # requests that repeated a faulted request (same method, path and body)
    unretried: int  # faulted requests never sent again
    down_periods: int
    transitions: list[Transition]

    @property
    def answers_lost_after_commit(self) -> int:
        return self.dropped_after_commit + self.cut_after_commit


def endpoint(path: str) -> str:
    """``/v1/experiment/<id>/insert`` -> ``insert``; ``/v1/experiment/<id>`` -> ``experiment``."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if len(parts) == 3 and parts[1] == "experiment":
        return "experiment"
    return parts[-1]


def row_ids_in(body: bytes) -> tuple[str, ...]:
    """The ids of the row events in an insert body (none when it is not one)."""
    try:
        events = json.loads(body).get("events") or []
    except (ValueError, AttributeError):
        return ()
    return tuple(
        str(event.get("id"))
        for event in events
        if isinstance(event, dict) and wire.event_kind(event) == wire.ROW_KIND
    )


def wait_until(
    condition: Callable[[], bool], *, timeout: float = 60.0, what: str = "the condition"
) -> None:
    """Poll ``condition`` until it holds; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.01)


# -- the proxy ---------------------------------------------------------------------------------


def answer(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer ``status`` with ``body`` (JSON unless ``headers`` say otherwise)."""
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


class _Handler(BaseHTTPRequestHandler):
    """One client connection: parses requests (keep-alive) and hands each to the proxy."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_CONNECTION_TIMEOUT
    disable_nagle_algorithm = True  # else each answer waits out the client's delayed ACK
    proxy: FaultProxy

    def __init__(self, request: socket.socket, address: Any, proxy: FaultProxy) -> None:
        self.proxy = proxy
        super().__init__(request, address, proxy)  # type: ignore[arg-type]

    def _any(self) -> None:
        self.proxy._handle(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FaultProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target``; see the module's docstring.

    ``flap`` starts flapping at once; ``rules`` fault requests by count while up;
    ``upstream_timeout`` bounds each forwarded request.
    """

    def __init__(
        self,
        target: str,
        *,
        flap: Flap | None = None,
        rules: Sequence[Rule] = (),
        upstream_timeout: float = 60.0,
    ) -> None:
        self.target = target
        self.upstream_timeout = upstream_timeout
        self.errors: list[str] = []
        self.seen: list[Seen] = []
        self.transitions: list[Transition] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._rules: list[Rule] = list(rules)
        self._rule_counts = [0] * len(self._rules)
        self._rule_fired = [0] * len(self._rules)
        self._faulted: Counter[tuple[str, str, str]] = Counter()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._cut: set[socket.socket] = set()
        self._accepted = 0
        self._cut_connections = 0
        self._started = time.monotonic()
        # What the listener thread should apply: a flap, or a fixed state (None: up).
        self._flap: Flap | None = flap
        self._flap_started = self._started
        self._manual: Fault | None = None
        self._generation = 0  # bumped by every change asked for
        self._applied_generation = -1
        self._current: Fault | None = None  # the state in force (None: up)
        self._closing = False
        self._client = httpx.Client(base_url=target, timeout=upstream_timeout)
        self._wake_r, self._wake_w = socket.socketpair()
        self._listener: socket.socket | None = None
        try:
            self._listener = self._listen(0)
            self.port: int = self._listener.getsockname()[1]
        except BaseException:
            self._close_sockets()
            raise
        self._thread = threading.Thread(target=self._run, name="fault-proxy-listener", daemon=True)
        self._thread.start()
        self._wait_applied(self._generation)

    # -- public --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_up(self) -> bool:
        with self._lock:
            return self._current is None

    def go_down(self, fault: Fault | None = None) -> None:
        """Stop any flap and go down with ``fault`` (default ``Refuse()``); returns once it
        is in force."""
        self._set(flap=None, manual=fault or Refuse())

    def go_up(self) -> None:
        """Stop any flap and stay up; returns once the port accepts again."""
        self._set(flap=None, manual=None)

    def flap(self, flap: Flap) -> None:
        """Start ``flap`` now (its first period begins at this call)."""
        self._set(flap=flap, manual=None)

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Replace the rules; their counts start again at zero."""
        with self._lock:
            self._rules = list(rules)
            self._rule_counts = [0] * len(self._rules)
            self._rule_fired = [0] * len(self._rules)

    def wait_for_transitions(self, count: int, timeout: float = 60.0) -> list[Transition]:
        """Wait until at least ``count`` state changes happened; all of them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.transitions) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{count} transitions did not happen within {timeout} s: {self.transitions}"
                    )
                self._changed.wait(remaining)
            return list(self.transitions)

    def wait_settled(self, timeout: float | None = None) -> None:
        """Wait until every request read so far has its outcome: a client can have its answer
        (or see its connection cut) a moment before the proxy has written down what it did.
        Requests that arrive meanwhile are not waited for."""
        with self._lock:
            seen = list(self.seen)

        def settled() -> bool:
            with self._lock:
                return all(one.outcome != "pending" for one in seen)

        limit = timeout if timeout is not None else self.upstream_timeout + JOIN_TIMEOUT
        wait_until(settled, timeout=limit, what="every request's outcome")

    def stats(self) -> ProxyStats:
        """The counts so far, once the requests read so far are settled."""
        self.wait_settled()
        with self._lock:
            seen = list(self.seen)
            transitions = list(self.transitions)
            connections, cut = self._accepted, self._cut_connections
            unretried = sum(self._faulted.values())
        forwarded = [s for s in seen if s.upstream_status is not None]
        dropped = [s for s in seen if s.outcome == "dropped after commit" and s.committed]
        return ProxyStats(
            requests=Counter(s.endpoint for s in seen),
            faults=Counter(s.fault for s in seen if s.fault is not None),
            outcomes=Counter(s.outcome for s in seen),
            connections=connections,
            cut_connections=cut,
            row_events_forwarded=sum(s.rows for s in forwarded),
            row_events_committed=sum(s.rows for s in forwarded if s.committed),
            dropped_after_commit=len(dropped),
            dropped_rows=sum(s.rows for s in dropped),
            cut_after_commit=sum(1 for s in seen if s.outcome == "cut" and s.committed),
            retried=sum(1 for s in seen if s.retry),
            unretried=unretried,
            down_periods=sum(1 for t in transitions if t.state == "down"),
            transitions=transitions,
        )

    def close(self) -> None:
        """Stop the listener and every connection's thread; close every socket."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        self._wake()
        self._thread.join(STATE_CHANGE_TIMEOUT)
        if self._thread.is_alive():
            self.errors.append("the listener thread did not stop")
        with self._lock:
            connections = dict(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in connections.values():
            thread.join(self.upstream_timeout + JOIN_TIMEOUT)
            if thread.is_alive():
                self.errors.append(f"{thread.name} did not stop")
        self._client.close()
        self._close_sockets()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.close()
        if self.errors and kind is None:
            raise AssertionError(f"the fault proxy failed: {self.errors}")

    # -- the listener thread -------------------------------------------------------------------

    def _set(self, *, flap: Flap | None, manual: Fault | None) -> None:
        with self._lock:
            if self._closing:
                raise RuntimeError("the proxy is closed")
            self._flap = flap
            self._flap_started = time.monotonic()
            self._manual = manual
            self._generation += 1
            generation = self._generation
        self._wake()
        self._wait_applied(generation)

    def _wait_applied(self, generation: int) -> None:
        deadline = time.monotonic() + STATE_CHANGE_TIMEOUT
        with self._changed:
            while self._applied_generation < generation:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    raise AssertionError(f"the proxy did not change state: {self.errors}")
                self._changed.wait(min(remaining, 0.1))
            if self.errors:
                raise AssertionError(f"the fault proxy failed: {self.errors}")

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _wanted(self) -> tuple[Fault | None, float | None, int]:
        """The state to be in now, the seconds until it changes (None: not by itself), and the
        change request it answers."""
        with self._lock:
            generation = self._generation
            if self._flap is None:
                return self._manual, None, generation
            fault, remaining = self._flap.state(time.monotonic() - self._flap_started)
            return fault, remaining, generation

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._closing:
                        return
                fault, remaining, generation = self._wanted()
                self._apply(fault)
                with self._changed:
                    self._applied_generation = max(self._applied_generation, generation)
                    self._changed.notify_all()
                waiting: list[socket.socket] = [self._wake_r]
                if self._listener is not None:
                    waiting.append(self._listener)
                # A small margin past the change, so that the flap's clock has moved on.
                timeout = None if remaining is None else remaining + 0.001
                readable, _, _ = select.select(waiting, [], [], timeout)
                if self._wake_r in readable:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(4096)
                if self._listener is not None and self._listener in readable:
                    self._accept()
        except BaseException as exc:
            self.errors.append(f"listener thread: {exc!r}")
        finally:
            with self._changed:
                if self._listener is not None:
                    self._listener.close()
                    self._listener = None
                self._changed.notify_all()

    def _apply(self, fault: Fault | None) -> None:
        with self._lock:
            current = self._current
        if fault == current:
            return
        refusing = isinstance(fault, Refuse)
        if refusing and self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._changed:
            self._current = fault
            elapsed = time.monotonic() - self._started
            state: Literal["up", "down"] = "up" if fault is None else "down"
            self.transitions.append(
                Transition(elapsed, state, fault.name if fault is not None else None)
            )
            if refusing:
                # Open connections fail too: a keep-alive client must not be served while down.
                for connection in self._connections:
                    with contextlib.suppress(OSError):
                        connection.shutdown(socket.SHUT_RDWR)
                    self._cut.add(connection)
                    self._cut_connections += 1
            self._changed.notify_all()
        if not refusing and self._listener is None:
            self._listener = self._rebind()

    def _rebind(self) -> socket.socket:
        deadline = time.monotonic() + REBIND_TIMEOUT
        while True:
            try:
                return self._listen(self.port)
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(f"cannot bind port {self.port} again: {exc}") from None
                time.sleep(0.05)

    @staticmethod
    def _listen(port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(128)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            raise
        return listener

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            connection, address = self._listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        connection.setblocking(True)
        thread = threading.Thread(
            target=self._serve,
            args=(connection, address),
            name=f"fault-proxy-connection-{address[1]}",
            daemon=True,
        )
        with self._lock:
            self._connections[connection] = thread
            self._accepted += 1
        thread.start()

    # -- one connection ------------------------------------------------------------------------

    def _serve(self, connection: socket.socket, address: Any) -> None:
        try:
            _Handler(connection, address, self)
        except (OSError, ValueError):
            pass  # the client went away, or the proxy cut the connection
        except BaseException as exc:
            self.errors.append(f"connection thread: {exc!r}")
        finally:
            with self._lock:
                self._connections.pop(connection, None)
                self._cut.discard(connection)
            connection.close()

    def _decide(self, method: str, path: str) -> Fault | None:
        """Called with the lock held."""
        if self._current is not None:
            return self._current if not isinstance(self._current, Refuse) else Reset()
        for index, rule in enumerate(self._rules):
            if not rule.matches(method, path):
                continue
            self._rule_counts[index] += 1
            count = self._rule_counts[index]
            if (
                count % rule.every == 0
                and count > rule.after
                and (rule.first is None or count <= rule.first)
                and (rule.times is None or self._rule_fired[index] < rule.times)
            ):
                self._rule_fired[index] += 1
                return rule.fault
        return None

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        method, path = handler.command, handler.path
        digest = hashlib.sha256(body).hexdigest()
        key = (method, path, digest)
        with self._lock:
            retry = self._faulted[key] > 0
            if retry:
                self._faulted[key] -= 1
            fault = self._decide(method, path)
            seen = Seen(
                number=len(self.seen) + 1,
                method=method,
                path=path,
                endpoint=endpoint(path),
                digest=digest,
                row_ids=row_ids_in(body) if endpoint(path) == "insert" else (),
                fault=fault.name if fault is not None else None,
                retry=retry,
            )
            self.seen.append(seen)
        if isinstance(fault, Status):
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            payload = json.dumps({"error": f"fault proxy: {fault.status}"}).encode()
            self._finish(seen, key, "faulted")
            self._answer(handler, fault.status, payload, headers)
            return
        if isinstance(fault, (Reset, Refuse)):
            self._finish(seen, key, "reset")
            self._hang_up(handler)
            return
        headers = {
            name: value
            for name, value in handler.headers.items()
            if name.lower() in ("authorization", "content-type")
        }
        try:
            response = self._client.request(method, path, content=body or None, headers=headers)
        except httpx.HTTPError as exc:
            self._finish(seen, key, "upstream error")
            self._answer(handler, 502, json.dumps({"error": repr(exc)}).encode())
            return
        seen.upstream_status = response.status_code
        if isinstance(fault, DropAfterCommit):
            self._finish(seen, key, "dropped after commit")
            self._hang_up(handler)
            return
        answer = {"Content-Type": response.headers.get("content-type", "application/json")}
        if "retry-after" in response.headers:
            answer["Retry-After"] = response.headers["retry-after"]
        try:
            with self._lock:
                if handler.connection in self._cut:
                    raise BrokenPipeError("the proxy went down")
            self._answer(handler, response.status_code, response.content, answer)
        except OSError:
            self._finish(seen, key, "cut")
            handler.close_connection = True
            return
        self._finish(seen, key, "answered")

    def _finish(self, seen: Seen, key: tuple[str, str, str], outcome: Outcome) -> None:
        with self._lock:
            seen.outcome = outcome
            if outcome not in ("answered", "upstream error"):
                self._faulted[key] += 1  # a client that retries sends the same again

    @staticmethod
    def _hang_up(handler: _Handler) -> None:
        handler.close_connection = True
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)

    _answer = staticmethod(answer)

    def _close_sockets(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._wake_r.close()
        self._wake_w.close()
