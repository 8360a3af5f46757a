"""The built-in LLM judge: asks an OpenAI-compatible chat endpoint to judge a trace.

``POST {base_url}/chat/completions`` (``base_url`` as OpenAI's clients take it, ending in
``/v1``) with the trace rendered into the prompt (``prompt.render_trace``) and a JSON answer
asked for; the answer becomes a ``Judgment`` with the tokens of the response's ``usage`` and
their cost. The API key is read from its environment variable at each call, sent as a Bearer
token, and never kept, printed, or put in an error.

The package imports this module (and httpx) only when ``LLMJudge`` is first asked for.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import ssl
import time
from typing import Any

import httpx

from ..core.judgments import CostEstimate, Judgment
from ..core.redaction import public_url
from ..core.trace import Trace
from .judges import JudgeError
from .prompt import estimate_tokens, malformed, messages, parse_answer

__all__ = ["OUTPUT_ALLOWANCE", "LLMJudge"]

#: Completion tokens an estimate counts per trace: room for a score, a verdict, a few
#: sentences of reasoning and a few steps.
OUTPUT_ALLOWANCE = 300
# A server's Retry-After is honoured up to this many seconds; past it, the usual backoff.
MAX_RETRY_AFTER_S = 30.0


class LLMJudge:
    """A judge that asks a chat model whether a trace meets ``criteria``.

    ``name`` is the judge's name (its scores show as ``judge:<name>``). ``timeout`` bounds
    each request; 429s, 5xx answers and failed connections are tried again up to
    ``retries`` times, after ``backoff`` x 2^n seconds (or the server's ``Retry-After``
    when it is small). ``transport`` replaces httpx's network transport (tests, proxies).
    """

    def __init__(
        self,
        name: str,
        criteria: str,
        *,
        model: str,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        input_cost_per_token: float = 0.0,
        output_cost_per_token: float = 0.0,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        for what, text in (("name", name), ("criteria", criteria), ("model", model)):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"LLMJudge: {what} must be a non-empty string, not {text!r}")
        if not isinstance(api_key_env, str) or not api_key_env:
            raise ValueError("LLMJudge: api_key_env must name an environment variable")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            shown = public_url(base_url) if isinstance(base_url, str) else repr(base_url)
            raise ValueError(f"LLMJudge: base_url must be an http(s) URL, not {shown}")
        for what, number in (
            ("input_cost_per_token", input_cost_per_token),
            ("output_cost_per_token", output_cost_per_token),
            ("backoff", backoff),
        ):
            if not _is_number(number) or number < 0:
                raise ValueError(f"LLMJudge: {what} must be a number >= 0, not {number!r}")
        if not _is_number(timeout) or timeout <= 0:
            raise ValueError(f"LLMJudge: timeout must be a number of seconds > 0, not {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"LLMJudge: retries must be a whole number >= 0, not {retries!r}")
        self.name = name
        self.criteria = criteria
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.input_cost_per_token = float(input_cost_per_token)
        self.output_cost_per_token = float(output_cost_per_token)
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.transport = transport
        self._ssl: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return f"<LLMJudge {self.name!r} model={self.model!r} at {public_url(self.base_url)}>"

    # -- what it will cost ---------------------------------------------------------------

    def messages(self, trace: Trace) -> list[dict[str, str]]:
        """The chat messages sent for ``trace``."""
        return messages(self.criteria, trace)

    def estimate(self, trace: Trace) -> CostEstimate:
        """Input tokens: the messages' text counted as its UTF-8 bytes / 4, rounded up
        (``prompt.estimate_tokens``); output tokens: ``OUTPUT_ALLOWANCE``. Priced with
        this judge's prices; no request is made."""
        input_tokens = sum(estimate_tokens(each["content"]) for each in self.messages(trace))
        return CostEstimate(
            input_tokens=input_tokens,
            output_tokens=OUTPUT_ALLOWANCE,
            estimated_cost=self.cost(input_tokens, OUTPUT_ALLOWANCE),
            model=self.model,
        )

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_cost_per_token
            + completion_tokens * self.output_cost_per_token
        )

    # -- judging -------------------------------------------------------------------------

    async def __call__(self, trace: Trace) -> Judgment:
        key = os.environ.get(self.api_key_env, "")
        if not key.strip():
            raise JudgeError(
                f"{self.name}: no API key: set the environment variable {self.api_key_env}"
            )
        body = {
            "model": self.model,
            "messages": self.messages(trace),
            "response_format": {"type": "json_object"},
            "temperature": 0,
        }
        started = time.perf_counter()
        answer = await self._post(body, key.strip())
        took = (time.perf_counter() - started) * 1000.0
        found = answer.get("usage")
        usage: dict[str, Any] = found if isinstance(found, dict) else {}
        prompt_tokens = _count(usage.get("prompt_tokens"))
        completion_tokens = _count(usage.get("completion_tokens"))
        spent = Judgment(
            model=self.model,
            turns=1,
            latency_ms=round(took, 3),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_cost=self.cost(prompt_tokens, completion_tokens),
        )
        try:
            judgment = parse_answer(_content(answer))
        except JudgeError as exc:
            # The model was paid for its answer, however unusable: the tokens are kept.
            raise JudgeError(str(exc), spent=spent) from None
        return judgment.model_copy(update=spent.model_dump(exclude_unset=True))

    async def _post(self, body: dict[str, Any], key: str) -> dict[str, Any]:
        url = f"{self.base_url}/chat/completions"
        shown = public_url(url)
        headers = {"Authorization": f"Bearer {key}"}
        problem = ""
        async with self._client() as client:
            for attempt in range(self.retries + 1):
                delay = self.backoff * 2**attempt
                try:
                    response = await client.post(url, json=body, headers=headers)
                except httpx.TransportError as exc:
                    problem = _scrub(f"{type(exc).__name__}: {exc}", key)
                else:
                    status = response.status_code
                    if status < 400:
                        return _json_of(_scrub(response.text, key))
                    text = _scrub(response.text, key)[:500]
                    problem = f"HTTP {status}: {text}"
                    if status != 429 and status < 500:
                        raise JudgeError(f"{self.name}: {shown} answered {problem}")
                    delay = _retry_after(response.headers.get("retry-after"), delay)
                if attempt < self.retries:
                    await asyncio.sleep(delay)
        tries = self.retries + 1
        raise JudgeError(f"{self.name}: {shown} failed {tries} time(s); last: {problem}")

    def _client(self) -> httpx.AsyncClient:
        """A client for one call: closed when the call ends, so none is left open whatever
        event loop the judge runs on. The TLS context, costly to build, is built once."""
        if self.transport is not None:
            return httpx.AsyncClient(transport=_Borrowed(self.transport), timeout=self.timeout)
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return httpx.AsyncClient(verify=self._ssl, timeout=self.timeout)


class _Borrowed(httpx.AsyncBaseTransport):
    """A transport lent to each call's client: the client's close leaves it open."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transport.handle_async_request(request)

    async def aclose(self) -> None:
        pass


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _scrub(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text


def _retry_after(header: str | None, default: float) -> float:
    try:
        seconds = float(header) if header is not None else math.nan
    except ValueError:
        return default
    return seconds if 0 <= seconds <= MAX_RETRY_AFTER_S else default


def _json_of(text: str) -> dict[str, Any]:
    try:
        found = json.loads(text)
    except ValueError:
        raise malformed("the endpoint's response is not JSON", text) from None
    if not isinstance(found, dict):
        raise malformed("the endpoint's response is not a JSON object", text)
    return found


def _content(answer: dict[str, Any]) -> str:
    """The first choice's message text."""
    try:
        content = answer["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise malformed(
            "the response has no choices[0].message.content", json.dumps(answer)
        ) from None
    if not isinstance(content, str):
        raise malformed("the response's message content is not text", str(content))
    return content
