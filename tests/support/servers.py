"""Helpers for the HTTP end-to-end tests: ``evalrows serve`` as a real subprocess, a proxy that
injects 429s and 503s, and checks that a secret appears nowhere on disk."""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from .fault_proxy import answer

START_TIMEOUT = 60.0

# The first line ``evalrows serve`` prints once it answers: its store and its port.
READY = re.compile(r"^evalrows: serving sqlite:///(/\S+) on http://127\.0\.0\.1:(\d+)$")


class EvalrowsServer:
    """``evalrows serve`` over a SQLite file, as a subprocess on 127.0.0.1 with a token (an
    empty one: none).

    ``start`` waits for the ready line (which names the port); ``stop`` sends SIGTERM and
    waits. Its stderr is appended to ``log`` across restarts.
    """

    def __init__(
        self,
        db: Path,
        token: str,
        log: Path,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.db = db
        self.token = token
        self.log = log
        self.args = list(args)  # more `evalrows serve` arguments
        self.env = dict(env or {})  # more environment variables
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.exit_codes: list[int] = []
        self.pids: list[int] = []

    @property
    def url(self) -> str:
        assert self.port is not None
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> None:
        """Start on ``port`` (0: a free one) and wait until it answers."""
        assert self.process is None, "already running"
        command = [sys.executable, "-m", "pytest_evalrows.cli", "serve", "--store", str(self.db)]
        command += ["--host", "127.0.0.1", "--port", str(port), *self.args]
        # The token through the environment: not on a command line anyone can list.
        env = {**os.environ, "EVALROWS_SERVER_TOKEN": self.token, **self.env}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env)
        self.pids.append(self.process.pid)
        try:
            line = self._ready_line()
        except BaseException:
            self.stop()
            raise
        ready = READY.match(line)
        if ready is None:
            self.stop()
            raise AssertionError(f"not a ready line: {line!r}; log: {self.log.read_text()}")
        assert Path(ready[1]) == self.db.resolve(), line
        self.port = int(ready[2])
        assert port in (0, self.port), (port, line)

    def _ready_line(self) -> str:
        """The first line of stdout, within START_TIMEOUT seconds."""
        assert self.process is not None and self.process.stdout is not None
        fd = self.process.stdout.fileno()
        data = b""
        deadline = time.monotonic() + START_TIMEOUT
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"evalrows serve printed no ready line: {data!r}")
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise AssertionError(
                        f"evalrows serve exited before it was ready: {data!r}; "
                        f"log: {self.log.read_text()}"
                    )
                data += chunk
        return data.decode().splitlines()[0].strip()

    def stop(self) -> None:
        """SIGTERM, then wait (SIGKILL after 30 s); pipes closed; the exit code kept."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=30)
        finally:
            if process.stdout is not None:
                process.stdout.close()
        self.exit_codes.append(process.returncode)


class Servers:
    """``evalrows serve`` processes over one SQLite file in ``directory``, made on demand (not
    started); ``stop_all`` stops every one and checks each stop was a clean exit with no
    traceback in the log."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.made: list[EvalrowsServer] = []

    def make(self, token: str) -> EvalrowsServer:
        server = EvalrowsServer(self.directory / "served.db", token, self.directory / "server.log")
        self.made.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.made:
            server.stop()
        for server in self.made:
            log = server.log.read_text() if server.log.exists() else ""
            assert server.exit_codes == [0] * len(server.exit_codes), log
            assert "Traceback" not in log, log


def closed_port() -> int:
    """A port that was free a moment ago, on which nothing listens now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- a server restarted while a session runs -------------------------------------------------


@dataclass
class Outage:
    """What the restarter did: connections it dropped during the outage, and any error."""

    dropped: int = 0
    done: bool = False
    error: BaseException | None = None


@contextmanager
def restart_on_request(server: EvalrowsServer, directory: Path) -> Iterator[Outage]:
    """While the block runs, a thread waits for ``directory/stop-server``; then it stops the
    server and writes ``server-stopped``. It listens on the server's port itself until one
    client connects (so a request is known to have hit the outage), drops that connection,
    starts the server again on the same port and store file, and writes ``server-restarted``."""
    outage = Outage()
    finished = threading.Event()

    def wait_for(path: Path) -> bool:
        while not path.exists():
            if finished.wait(0.02):
                return False
        return True

    def run() -> None:
        try:
            if not wait_for(directory / "stop-server"):
                return
            port = server.port
            server.stop()
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", port or 0))
                listener.listen()
                listener.settimeout(0.05)
                (directory / "server-stopped").touch()
                deadline = time.monotonic() + START_TIMEOUT
                while not outage.dropped:
                    if finished.is_set() or time.monotonic() > deadline:
                        raise AssertionError("no request reached the server while it was down")
                    try:
                        connection, _ = listener.accept()
                    except TimeoutError:
                        continue
                    connection.close()
                    outage.dropped += 1
            server.start(port)
            (directory / "server-restarted").touch()
            outage.done = True
        except BaseException as exc:
            outage.error = exc

    thread = threading.Thread(target=run, name="server-restarter", daemon=True)
    thread.start()
    try:
        yield outage
    finally:
        finished.set()
        thread.join(timeout=START_TIMEOUT * 2)
        assert not thread.is_alive()
    if outage.error is not None:
        raise outage.error


# -- a proxy that answers 429 and 503 now and then -------------------------------------------


@dataclass
class Seen:
    number: int
    method: str
    path: str
    digest: str
    rows: int  # row events in the body
    answer: str  # "forwarded", "429", "503 before", "503 after"


@dataclass
class FaultyProxy:
    """Forwards to ``target``, answering now and then with what a busy service answers.

    Every ``insert_every``-th insert is answered alternately with 503 *after* forwarding it
    (the server took the write, its answer is lost) and with 429 ``Retry-After: 1`` without
    forwarding it; every ``every_503``-th request otherwise gets a 503 without being
    forwarded. The first ``failing_fetches`` fetches get a 503 with ``Retry-After: 0.01``.
    A request that comes again after a fault (same method, path and body) counts as retried.
    """

    target: str
    insert_every: int = 2
    every_503: int = 5
    failing_fetches: int = 0
    seen: list[Seen] = field(default_factory=list)
    retried: int = 0
    _faulted: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _inserts: int = 0
    _fetches: int = 0

    def __post_init__(self) -> None:
        self._client = httpx.Client(base_url=self.target, timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Without it each answer would wait out the client's delayed ACK (40 ms).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                proxy._handle(self)

            def do_POST(self) -> None:
                proxy._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        self._client.close()

    def __enter__(self) -> FaultyProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decide(self, method: str, path: str) -> str:
        number = len(self.seen) + 1
        if path.endswith("/fetch"):
            self._fetches += 1
            if self._fetches <= self.failing_fetches:
                return "503 soon"
        if path.endswith("/insert"):
            self._inserts += 1
            if self.insert_every and self._inserts % self.insert_every == 0:
                return "503 after" if (self._inserts // self.insert_every) % 2 else "429"
        if self.every_503 and number % self.every_503 == 0:
            return "503 before"
        return "forwarded"

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        key = (handler.command, handler.path, hashlib.sha256(body).hexdigest())
        with self._lock:
            if self._faulted[key]:
                self._faulted[key] -= 1
                self.retried += 1
            answer = self._decide(handler.command, handler.path)
            if answer != "forwarded":
                self._faulted[key] += 1
            seen = Seen(len(self.seen) + 1, handler.command, handler.path, key[2], 0, answer)
            seen.rows = _row_events(body)
            self.seen.append(seen)
        if answer == "429":
            self._answer(handler, 429, b'{"error": "slow down"}', {"Retry-After": "1"})
            return
        if answer == "503 soon":
            self._answer(handler, 503, b'{"error": "starting"}', {"Retry-After": "0.01"})
            return
        if answer == "503 before":
            self._answer(handler, 503, b'{"error": "unavailable"}')
            return
        headers = {
            name: value
            for name, value in handler.headers.items()
            if name.lower() in ("authorization", "content-type")
        }
        response = self._client.request(
            handler.command, handler.path, content=body or None, headers=headers
        )
        if answer == "503 after":
            self._answer(handler, 503, b'{"error": "unavailable"}')
            return
        content_type = response.headers.get("content-type", "application/json")
        self._answer(
            handler, response.status_code, response.content, {"Content-Type": content_type}
        )

    _answer = staticmethod(answer)

    def faults(self) -> Counter[str]:
        return Counter(seen.answer for seen in self.seen if seen.answer != "forwarded")

    def unretried(self) -> int:
        """Faulted requests the client never sent again."""
        return sum(self._faulted.values())


# -- secrets -----------------------------------------------------------------------------------


def _row_events(body: bytes) -> int:
    try:
        events = json.loads(body).get("events") or []
    except (ValueError, AttributeError):
        return 0
    return sum(
        1
        for event in events
        if isinstance(event, dict)
        and ((event.get("metadata") or {}).get("evalrows") or {}).get("kind") == "row"
    )


def files_containing(secret: str, *roots: Path) -> list[Path]:
    """Every file under ``roots`` whose bytes contain ``secret`` (also JSON-escaped)."""
    needles = {secret.encode(), json.dumps(secret)[1:-1].encode()}
    found = []
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                found.append(path)
    return found
