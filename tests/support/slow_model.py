"""A model stand-in on 127.0.0.1 that answers every request after a delay, many at once: an
asyncio server on a thread of its own, for the concurrency benchmark.

    with SlowModel(delay=0.1) as model:
        httpx.post(model.url, json={"messages": [{"role": "user", "content": "case 1"}]})
        model.requests  # 1

Any POST or GET, on any path, is answered 200 with an OpenAI-style chat completion whose
content is "answer to " + the first message's content (a GET's: its path), after ``delay``
seconds (read per request). The wait is an ``asyncio.sleep``: concurrent requests wait
together. HTTP/1.1 with keep-alive; each response goes out in one write with TCP_NODELAY, so
no trailing segment waits on the client's delayed ACK (a 40 ms stall per request on Linux).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from types import TracebackType
from typing import Any


class SlowModel:
    def __init__(self, *, delay: float = 0.1) -> None:
        self.delay = delay
        self.requests = 0  # only the server's loop writes it
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def __enter__(self) -> SlowModel:
        self._thread.start()
        self._ready.wait()
        if self._failed is not None:
            raise RuntimeError("the stand-in model did not start") from self._failed
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join()

    def _serve(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as exc:
            self._failed = exc
        finally:
            self._ready.set()  # never leave __enter__ waiting
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
        # Connections still open (a client that kept its keep-alive ones) end with the server:
        # closed, not cancelled, as a cancelled handler is an error to asyncio's streams.
        for writer in self._connections.values():
            writer.close()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while await self._answer(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away mid-request: nothing to answer
        finally:
            self._connections.pop(task, None)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection stays open for another."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return False  # closed between requests, as keep-alive clients do
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length") or 0))
        self.requests += 1
        await asyncio.sleep(self.delay)
        data = json.dumps(_completion(_asked(method, path, body))).encode()
        closing = headers.get("connection", "").lower() == "close"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(data)}\r\n".encode()
            + (b"Connection: close\r\n" if closing else b"")
            + b"\r\n"
            + data
        )
        await writer.drain()
        return not closing


def _asked(method: str, path: str, body: bytes) -> str:
    if method != "POST":
        return path
    try:
        messages = json.loads(body).get("messages")
        return str(messages[0]["content"])
    except (ValueError, AttributeError, LookupError, TypeError):
        return ""


def _completion(asked: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-slow-model",
        "object": "chat.completion",
        "model": "stand-in",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"answer to {asked}"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
