"""A real OpenAI-compatible chat-completions server on 127.0.0.1, in a thread, for the LLM
judge's tests and benchmark.

    with OpenAIStandin(answer='{"score": 1, "passed": true}', delay=0.1) as model:
        judge = LLMJudge("j", "...", model="m", base_url=model.base_url)

It answers ``POST /v1/chat/completions`` with ``answer`` as the message content (a string, or
a function of the request body) and ``usage``, after ``delay`` seconds (each request on a
thread of its own, so concurrent requests wait together). ``failures`` is a list of statuses to
answer first, one per request (429 and 5xx carry ``Retry-After: 0``). It counts requests and
keeps their bodies and Authorization headers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

DEFAULT_ANSWER = json.dumps(
    {
        "score": 0.8,
        "passed": True,
        "reasoning": "the agent searched before answering",
        "steps": [{"span_id": "c1", "name": "search", "result": "called first"}],
    }
)
DEFAULT_USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # joined on close: no request thread outlives the stand-in
    block_on_close = True
    request_queue_size = 128  # room for many concurrent connections


class OpenAIStandin:
    def __init__(
        self,
        *,
        answer: str | Callable[[dict[str, Any]], str] = DEFAULT_ANSWER,
        usage: dict[str, int] | None = None,
        delay: float = 0.0,
        failures: Iterable[int] = (),
    ) -> None:
        self.answer = answer
        self.usage = DEFAULT_USAGE if usage is None else usage
        self.delay = delay
        self.failures = list(failures)
        self.requests = 0
        self.bodies: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """As OpenAI's clients take it: ending in /v1."""
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/v1"

    def __enter__(self) -> OpenAIStandin:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()  # requests still waiting out their delay answer now
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def _reply(
        self, body: dict[str, Any], authorization: str | None
    ) -> tuple[int, dict[str, Any] | str]:
        with self._lock:
            self.requests += 1
            failure = self.failures.pop(0) if self.failures else None
        if self.delay:
            self._closing.wait(self.delay)
        if failure is not None:
            # As OpenAI's own 401 does, the error repeats (part of) the key it was sent.
            said = f"stand-in failure {failure}; key provided: {authorization}"
            return failure, {"error": {"message": said}}
        content = self.answer(body) if callable(self.answer) else self.answer
        return 200, {
            "id": "chatcmpl-standin",
            "object": "chat.completion",
            "model": body.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": self.usage,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                with standin._lock:
                    standin.paths.append(self.path)
                    standin.authorizations.append(self.headers.get("Authorization"))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {}
                with standin._lock:
                    standin.bodies.append(body)
                if self.path != "/v1/chat/completions":
                    status, answer = 404, {"error": {"message": f"no route {self.path}"}}
                else:
                    status, answer = standin._reply(body, self.headers.get("Authorization"))
                data = (answer if isinstance(answer, str) else json.dumps(answer)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429 or status >= 500:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests read the counts

        return Handler
