"""The HTTP store's calls to Braintrust's REST API (or ``evalrows serve``): retries, the
fetch's pages and the insert's batches.

Requests retry with exponential backoff on connection errors, timeouts, 408, 429 and 5xx,
honouring ``Retry-After``; a 413 splits an insert's batch; 401 and 403 raise
``StoreAuthError`` at once. Nothing here logs or returns the API key.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import httpx
import pydantic_core

from ..core.records import WriteResult
from ..core.redaction import public_url
from ..errors import StoreAuthError, StoreError

MAX_EVENTS = 100  # per insert request, as Braintrust's SDK sends
MAX_BYTES = 6 * 1024 * 1024
FETCH_LIMIT = 1000
_RETRY_STATUSES = frozenset({408, 429})

Event = dict[str, Any]


class _TooLarge(StoreError):
    """A 413: an insert splits its batch; any other call reports it."""


class APIClient:
    """An httpx client for one API, with its key as a bearer token. ``transport`` lets tests
    inject an httpx transport."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        timeout: float,
        retries: int,
        transport: httpx.BaseTransport | None,
        sleep: Callable[[float], None],
    ) -> None:
        self.display_url = public_url(base_url)
        # Credentials in the URL are the API key (when none is given), sent as a bearer token
        # like any key; never left in the URL, where httpx would log them.
        parts = urlsplit(base_url)
        api_key = api_key or parts.password or parts.username or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])).rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )
        self._retries = retries
        self._sleep = sleep
        #: See ``Store.retrying``: while False, each call is a single try.
        self.retrying = True
        # Per thread: whether the thread's last call may have been applied twice (`call`).
        self._last_call = threading.local()
        #: Requests made, by the endpoint's last path part: what the benchmark counts.
        self.requests: Counter[str] = Counter()

    def close(self) -> None:
        self._client.close()

    def call(
        self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        """One API call with retries; the parsed JSON answer."""
        # Serialized as the spool and the embedded store serialize: whatever was spooled can
        # be sent.
        content = pydantic_core.to_json(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        retries = self._retries if self.retrying else 0
        # Whether an earlier try may have been applied (its answer lost): a 5xx or a broken
        # connection, not a 429.
        self._last_call.maybe_applied_twice = False
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                self.requests[path.rsplit("/", 1)[-1]] += 1
                response = self._client.request(
                    method, path, content=content, headers=headers, params=params
                )
            except httpx.TransportError as exc:
                if last:
                    raise StoreError(
                        f"{self.display_url} cannot be reached ({type(exc).__name__}: {exc})"
                    ) from None
                self._last_call.maybe_applied_twice = True
                self._sleep(_backoff(attempt))
                continue
            status = response.status_code
            if status in (401, 403):
                raise StoreAuthError(
                    f"{self.display_url} refused the API key: HTTP {status} on {method} {path}"
                )
            if status == 413:
                raise _TooLarge(f"{self.display_url} refused {method} {path} as too large (413)")
            if status in _RETRY_STATUSES or status >= 500:
                if last:
                    raise StoreError(
                        f"{self.display_url} answered HTTP {status} to {method} {path} "
                        f"{retries + 1} times: {_text(response)}"
                    )
                if status >= 500:
                    self._last_call.maybe_applied_twice = True
                self._sleep(_retry_after(response) or _backoff(attempt))
                continue
            if status >= 400:
                raise StoreError(
                    f"{self.display_url} answered HTTP {status} to {method} {path}: "
                    f"{_text(response)}"
                )
            return self._answer(response, method, path)
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, response: httpx.Response, method: str, path: str) -> dict[str, Any]:
        try:
            answer = response.json()
        except ValueError:
            raise StoreError(
                f"{self.display_url} answered {method} {path} with something not JSON"
            ) from None
        if not isinstance(answer, dict):
            raise StoreError(f"{self.display_url} answered {method} {path} with {answer!r}")
        return answer

    def fetch_all(self, experiment_id: str) -> Iterator[Event]:
        """Every event of the experiment, page after page (every version of every id, in
        whatever order the API gives them)."""
        cursor: str | None = None
        while True:
            # Every version (`evalrows serve` gives the latest of each row without the flag;
            # Braintrust ignores it, and may give only the latest: ``history_complete``).
            body: dict[str, Any] = {"limit": FETCH_LIMIT, "evalrows_all_versions": True}
            if cursor:
                body["cursor"] = cursor
            page = self.call("POST", f"/v1/experiment/{experiment_id}/fetch", body=body)
            events = page.get("events") or []
            yield from events
            cursor = page.get("cursor")
            if not cursor or not events:
                return

    def insert(self, experiment_id: str, events: list[Event]) -> Counts | None:
        """Send the events; what the server counted they did to the rows (``Counts``),
        summed over the batches, when every answer says (``evalrows serve`` does; Braintrust
        does not: None)."""
        total: Counts | None = Counts(deleted_span_ids=())
        for batch in batches(events):
            total = _sum(total, self._insert_batch(experiment_id, batch))
        return total

    def _insert_batch(self, experiment_id: str, batch: list[Event]) -> Counts | None:
        try:
            answer = self.call(
                "POST", f"/v1/experiment/{experiment_id}/insert", body={"events": batch}
            )
        except _TooLarge:
            if len(batch) == 1:
                raise StoreError(
                    f"{self.display_url} refused an event of row {batch[0].get('id')!r} "
                    "as too large (HTTP 413)"
                ) from None
            half = len(batch) // 2
            first = self._insert_batch(experiment_id, batch[:half])
            return _sum(first, self._insert_batch(experiment_id, batch[half:]))
        counts = Counts.of(answer.get("evalrows"))
        if counts is not None and self._last_call.maybe_applied_twice:
            # A try before may have deleted the spans this one found gone: unknown.
            counts = counts._replace(deleted_span_ids=None)
        return counts


class Counts(NamedTuple):
    """What an insert did to the rows, as ``evalrows serve`` counts it in its transaction:
    the versions it wrote (new, updated, superseded), those that were there already, and of
    those how many were a row's first version when written (``duplicates_new``) or not."""

    new_rows: int = 0
    updated_rows: int = 0
    superseded_rows: int = 0
    duplicate_rows: int = 0
    duplicates_new: int = 0
    duplicates_updated: int = 0
    #: The spans the inserts deleted of those they named (None: the answers do not say).
    deleted_span_ids: tuple[str, ...] | None = None

    @classmethod
    def of(cls, answer: Any) -> Counts | None:
        """The counts an answer carries; None when it carries none (or not these)."""
        if not isinstance(answer, dict):
            return None
        duplicates = answer.get("duplicates") or {}
        if not isinstance(duplicates, dict):
            return None
        given = [answer.get(name) for name in cls._fields[:4]]
        given += [duplicates.get("new_rows", 0), duplicates.get("updated_rows", 0)]
        values: list[int] = []
        for value in given:
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return None
            values.append(value)
        new, updated, superseded, duplicate, duplicates_new, duplicates_updated = values
        deleted = answer.get("deleted_span_ids")
        if not (isinstance(deleted, list) and all(isinstance(each, str) for each in deleted)):
            deleted = None
        return cls(
            new,
            updated,
            superseded,
            duplicate,
            duplicates_new,
            duplicates_updated,
            None if deleted is None else tuple(deleted),
        )

    def add_to(self, result: WriteResult, *, late: bool) -> None:
        """Counted by the server in its transaction: true whoever else writes the rows."""
        result.new_rows += self.new_rows
        result.updated_rows += self.updated_rows
        result.superseded_rows += self.superseded_rows
        if late:
            result.duplicate_rows += self.duplicate_rows  # delivered before
        else:
            # Fresh versions stored already were written by an earlier try of this very
            # batch (its answer lost): new or updated as they were then.
            result.new_rows += self.duplicates_new
            result.updated_rows += self.duplicates_updated


def _sum(total: Counts | None, more: Counts | None) -> Counts | None:
    if total is None or more is None:
        return None
    first, second = total.deleted_span_ids, more.deleted_span_ids
    return Counts(
        total.new_rows + more.new_rows,
        total.updated_rows + more.updated_rows,
        total.superseded_rows + more.superseded_rows,
        total.duplicate_rows + more.duplicate_rows,
        total.duplicates_new + more.duplicates_new,
        total.duplicates_updated + more.duplicates_updated,
        None if first is None or second is None else first + second,
    )


def batches(events: list[Event]) -> Iterator[list[Event]]:
    """At most ``MAX_EVENTS`` events and about ``MAX_BYTES`` per request, and never one id
    twice in a request (Braintrust would keep only one)."""
    batch: list[Event] = []
    ids: set[str] = set()
    size = 0
    for event in events:
        event_size = len(pydantic_core.to_json(event))
        event_id = str(event.get("id"))
        if batch and (len(batch) >= MAX_EVENTS or size + event_size > MAX_BYTES or event_id in ids):
            yield batch
            batch, ids, size = [], set(), 0
        batch.append(event)
        ids.add(event_id)
        size += event_size
    if batch:
        yield batch


def _backoff(attempt: int) -> float:
    """0.5 s, 1 s, 2 s ... capped at 30 s, with jitter so that retrying clients spread out."""
    return float(min(30.0, 0.5 * 2**attempt) * (0.5 + random.random() / 2))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return min(60.0, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(60.0, max(0.0, moment.timestamp() - time.time()))


def _text(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:200] + ("..." if len(text) > 200 else "")
