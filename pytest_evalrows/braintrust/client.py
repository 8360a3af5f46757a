"""A store that speaks Braintrust's REST API: Braintrust itself, or ``evalrows serve``.

Rows and spans become experiment events (see ``wire``). Requests retry with exponential
backoff on connection errors, timeouts, 408, 429 and 5xx, honouring ``Retry-After``; a 413
splits the batch; 401 and 403 raise ``StoreAuthError`` at once. Nothing here logs or returns
the API key.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pydantic_core

from ..core.models import (
    Attempt,
    Experiment,
    RowDoc,
    RowState,
    RowVersion,
    SpanDoc,
    SpanRecord,
    StaleSpan,
    WriteResult,
    as_doc,
)
from ..core.redaction import public_url
from ..core.timestamps import to_epoch
from ..errors import StoreAuthError, StoreError, UnknownExperimentError
from ..store.base import Store
from . import wire

MAX_EVENTS = 100  # per insert request, as Braintrust's SDK sends
MAX_BYTES = 6 * 1024 * 1024
FETCH_LIMIT = 1000
_RETRY_STATUSES = frozenset({408, 429})


Event = dict[str, Any]


class _TooLarge(StoreError):
    """A 413: an insert splits its batch; any other call reports it."""


class HTTPStore(Store):
    """Rows in a Braintrust experiment, through ``/v1/project``, ``/v1/experiment`` and its
    ``insert`` and ``fetch`` endpoints. ``transport`` lets tests inject an httpx transport."""

    # Braintrust has no attempts. Each is kept as an event of the experiment (see
    # ``wire.attempt_event``), not in the experiment's metadata: PATCH /v1/experiment/{id}
    # replaces that object, so two sessions finishing at once would lose one's record (read,
    # change, write), and the record would grow with every session. An insert of its own id
    # is append-safe, retried and spooled like any write, and ``evalrows serve`` keeps it as
    # an attempt. The cost: Braintrust's UI lists it among the rows, named "evalrows attempt".
    attempts = True

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
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
        self._projects: dict[str, str] = {}  # project name -> id
        self._experiment_names: dict[str, str] = {}  # experiment id -> name
        # Row ids known to exist per experiment: tells a new row from an update.
        self._known: dict[str, set[str]] = {}
        # The stored rows' starts and version ids, once read for a late write.
        self._stored: dict[str, _StoredRows] = {}
        # Requests made, by the endpoint's last path part: what the benchmark counts.
        self.requests: Counter[str] = Counter()

    def close(self) -> None:
        self._client.close()

    def request_counts(self) -> dict[str, int]:
        return dict(self.requests)

    # -- the wire ------------------------------------------------------------------------

    def _call(
        self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        """One API call with retries; the parsed JSON answer."""
        # Serialized as the spool and the embedded store serialize: whatever was spooled can
        # be sent.
        content = pydantic_core.to_json(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if content is not None else None
        # While the store is known down (see ``Store.retrying``) each call is a single try.
        retries = self._retries if self.retrying else 0
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
                self._sleep(_retry_after(response) or _backoff(attempt))
                continue
            if status >= 400:
                raise StoreError(
                    f"{self.display_url} answered HTTP {status} to {method} {path}: "
                    f"{_text(response)}"
                )
            try:
                answer = response.json()
            except ValueError:
                raise StoreError(
                    f"{self.display_url} answered {method} {path} with something not JSON"
                ) from None
            if not isinstance(answer, dict):
                raise StoreError(f"{self.display_url} answered {method} {path} with {answer!r}")
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _fetch_all(self, experiment_id: str) -> Iterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            body: dict[str, Any] = {"limit": FETCH_LIMIT}
            if cursor:
                body["cursor"] = cursor
            page = self._call("POST", f"/v1/experiment/{experiment_id}/fetch", body=body)
            events = page.get("events") or []
            yield from events
            cursor = page.get("cursor")
            if not cursor or not events:
                return

    def _insert(self, experiment_id: str, events: list[dict[str, Any]]) -> None:
        for batch in batches(events):
            self._insert_batch(experiment_id, batch)

    def _insert_batch(self, experiment_id: str, batch: list[dict[str, Any]]) -> None:
        try:
            self._call("POST", f"/v1/experiment/{experiment_id}/insert", body={"events": batch})
        except _TooLarge:
            if len(batch) == 1:
                raise StoreError(
                    f"{self.display_url} refused an event of row {batch[0].get('id')!r} "
                    "as too large (HTTP 413)"
                ) from None
            half = len(batch) // 2
            self._insert_batch(experiment_id, batch[:half])
            self._insert_batch(experiment_id, batch[half:])

    # -- experiments ---------------------------------------------------------------------

    def _project_id(self, project: str) -> str:
        if project not in self._projects:
            answer = self._call("POST", "/v1/project", body={"name": project})
            self._projects[project] = _field(answer, "id", self.display_url)
        return self._projects[project]

    def get_or_create_experiment(
        self,
        project: str,
        name: str,
        *,
        git_commit: str | None = None,
        git_branch: str | None = None,
    ) -> Experiment:
        body: dict[str, Any] = {"project_id": self._project_id(project), "name": name}
        repo = {"commit": git_commit, "branch": git_branch}
        if any(repo.values()):
            body["repo_info"] = {key: value for key, value in repo.items() if value}
        answer = self._call("POST", "/v1/experiment", body=body)
        return self._named(_experiment(answer, project))

    def get_experiment(self, name: str, project: str | None = None) -> Experiment:
        params = {"experiment_name": name}
        if project is not None:
            params["project_name"] = project
        found = self._call("GET", "/v1/experiment", params=params).get("objects") or []
        found = [e for e in found if e.get("name") == name]
        if not found:
            where = f" in project {project!r}" if project else ""
            raise UnknownExperimentError(f"no experiment {name!r}{where} in {self.display_url}")
        if len(found) > 1:
            raise UnknownExperimentError(
                f"experiment {name!r} exists in several projects of {self.display_url}: name one"
            )
        return self._named(
            _experiment(found[0], project or self._project_name(found[0]["project_id"]))
        )

    def list_experiments(self) -> list[Experiment]:
        found = self._call("GET", "/v1/experiment").get("objects") or []
        experiments = [_experiment(e, self._project_name(e["project_id"])) for e in found]
        return sorted(map(self._named, experiments), key=lambda e: (e.project, e.name))

    def _named(self, experiment: Experiment) -> Experiment:
        self._experiment_names[experiment.id] = experiment.name
        return experiment

    def _experiment_name(self, experiment_id: str) -> str | None:
        """The name the rows' root spans carry, as the embedded store's do."""
        if experiment_id not in self._experiment_names:
            self.list_experiments()
        return self._experiment_names.get(experiment_id)

    def _project_name(self, project_id: str) -> str:
        for name, known in self._projects.items():
            if known == project_id:
                return name
        answer = self._call("GET", "/v1/project")
        for project in answer.get("objects") or []:
            self._projects[project["name"]] = project["id"]
        return next((n for n, i in self._projects.items() if i == project_id), project_id)

    def save_attempt(self, attempt: Attempt) -> None:
        self._insert(attempt.experiment_id, [wire.attempt_event(attempt)])

    def list_attempts(self, experiment_id: str) -> list[Attempt]:
        # Fetch has no filter the contract promises: read every event, keep the attempts'
        # latest versions (a session saves its attempt at its start and at its end).
        latest: dict[str, dict[str, Any]] = {}
        for event in self._fetch_all(experiment_id):
            if wire.event_kind(event) != wire.ATTEMPT_KIND:
                continue
            current = latest.get(event["id"])
            xact = str(event.get("_xact_id", ""))
            if current is None or _xact_key(xact) > _xact_key(str(current.get("_xact_id", ""))):
                latest[event["id"]] = event
        found = [wire.event_attempt(event, experiment_id) for event in latest.values()]
        return sorted(found, key=lambda attempt: (attempt.started, attempt.id))

    # -- rows and spans ------------------------------------------------------------------

    def write(
        self,
        experiment_id: str,
        rows: Sequence[RowDoc | RowVersion],
        spans: Sequence[SpanDoc | SpanRecord],
        *,
        late: bool = False,
    ) -> WriteResult:
        docs = [as_doc(row) for row in rows]
        result = WriteResult()
        span_docs = [as_doc(span) for span in spans]
        if late and docs:
            # Writing an id again makes the latest version here, whatever its start: a late
            # version of an older execution is not written at all, nor are its spans; a version
            # the store already has is not written again (its spans are, idempotently).
            stored = self._stored_rows(experiment_id)
            already = {row["version_id"] for row in docs} & stored.version_ids
            result.duplicate_rows = len(already)
            docs = [row for row in docs if row["version_id"] not in already]
            older = {
                (row["row_id"], row["root_span_id"])
                for row in docs
                if stored.starts.get(row["row_id"], float("-inf")) > _start(row)
            }
            result.superseded_rows = len(older)
            docs = [row for row in docs if (row["row_id"], row["root_span_id"]) not in older]
            span_docs = [
                span
                for span in span_docs
                if (span.get("row_id"), span.get("root_span_id")) not in older
            ]
        events = [wire.row_event(row) for row in docs]
        for doc in span_docs:
            # The row's event is its root span; spans under no row would show as rows.
            if doc.get("row_id") is not None and not wire.is_root_record(doc):
                events.append(wire.span_event(doc))
        self._insert(experiment_id, events)
        # A batch without rows (an attempt's spool entry) tells new from updated for none.
        result.certain = experiment_id in self._known or not docs
        known = self._known.setdefault(experiment_id, set())
        result.spans = len(events) - len(docs)
        remembered = self._stored.get(experiment_id)
        for row in docs:
            if row["row_id"] in known:
                result.updated_rows += 1
            else:
                result.new_rows += 1
                known.add(row["row_id"])
            if remembered is not None:
                remembered.wrote(row)
        return result

    def remember_rows(self, experiment_id: str, row_ids: Collection[str]) -> None:
        self._known.setdefault(experiment_id, set()).update(row_ids)

    def _stored_rows(self, experiment_id: str) -> _StoredRows:
        """What a late write checks against: read once, then kept up to date by this store's
        own writes."""
        if experiment_id not in self._stored:
            rows, _ = self._versions(experiment_id)
            stored = _StoredRows()
            for versions in rows.values():
                for event in versions:
                    stored.wrote(event, version_id=_version_id(event))
            self._stored[experiment_id] = stored
        return self._stored[experiment_id]

    def _versions(
        self, experiment_id: str
    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, Any]]]:
        """Every row's versions (oldest first) and every span's latest event."""
        rows: dict[str, dict[str, dict[str, Any]]] = {}
        spans: dict[str, dict[str, Any]] = {}
        for event in self._fetch_all(experiment_id):
            kind = wire.event_kind(event)
            xact = str(event.get("_xact_id", ""))
            if kind == wire.ROW_KIND:
                rows.setdefault(event["id"], {})[xact] = event
            elif kind == wire.SPAN_KIND:
                current = spans.get(event["id"])
                if current is None or _xact_key(xact) > _xact_key(current.get("_xact_id", "")):
                    spans[event["id"]] = event
        # Versions in the order their executions started (a late write of an older execution
        # is not the latest), then in write order.
        ordered = {
            row_id: sorted(
                versions.values(),
                key=lambda event: (_start(event), _xact_key(str(event.get("_xact_id", "")))),
            )
            for row_id, versions in rows.items()
        }
        self._known[experiment_id] = set(ordered)
        return ordered, spans

    def latest_rows(
        self, experiment_id: str, row_ids: Collection[str] | None = None
    ) -> list[RowVersion]:
        rows, _ = self._versions(experiment_id)
        wanted = set(row_ids) if row_ids is not None else None
        return [
            wire.event_row(versions[-1], version=len(versions))
            for row_id, versions in sorted(rows.items())
            if wanted is None or row_id in wanted
        ]

    def latest_states(self, experiment_id: str) -> dict[str, RowState]:
        return {
            row.row_id: RowState(
                row.status,
                row.metadata.get("params_hash"),
                row.attempt_id,
                row.created or 0.0,
            )
            for row in self.latest_rows(experiment_id)
        }

    def history(self, experiment_id: str, row_id: str) -> list[RowVersion]:
        rows, _ = self._versions(experiment_id)
        return [
            wire.event_row(event, version=number)
            for number, event in enumerate(rows.get(row_id, []), start=1)
        ]

    def list_spans(self, experiment_id: str, row_id: str | None = None) -> list[SpanRecord]:
        rows, spans = self._versions(experiment_id)
        experiment = self._experiment_name(experiment_id)
        found = [wire.row_root_span(wire.event_row(v[-1]), experiment) for v in rows.values()]
        found += [wire.event_span(event) for event in spans.values()]
        if row_id is not None:
            found = [span for span in found if span.row_id == row_id]
        return sorted(found, key=lambda span: (span.start, span.span_id))

    def delete_stale_spans(
        self,
        experiment_id: str,
        row_ids: Collection[str] | None = None,
        *,
        dry_run: bool = False,
    ) -> list[StaleSpan]:
        rows, spans = self._versions(experiment_id)
        wanted = set(row_ids) if row_ids is not None else None
        latest = {
            row_id: wire.event_row(versions[-1])
            for row_id, versions in rows.items()
            if wanted is None or row_id in wanted
        }
        # Only span events: a row's root is its row event, and the versions it replaced are
        # its history, not spans (``evalrows serve`` drops their roots as it writes them).
        stale: list[StaleSpan] = []
        for event in spans.values():
            span = wire.event_span(event)
            row = latest.get(span.row_id or "")
            if row is None:
                continue  # a row this call may not touch, or spans under no row
            if (span.attempt_id, span.execution) != (row.attempt_id, row.execution) or (
                span.root_span_id and row.root_span_id and span.root_span_id != row.root_span_id
            ):
                stale.append(
                    StaleSpan(
                        span.row_id or "", span.span_id, span.attempt_id, span.execution, span.name
                    )
                )
        if stale and not dry_run:
            self._insert(experiment_id, [wire.delete_event(span.span_id) for span in stale])
        return stale


def batches(events: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """At most ``MAX_EVENTS`` events and about ``MAX_BYTES`` per request, and never one id
    twice in a request (Braintrust would keep only one)."""
    batch: list[dict[str, Any]] = []
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


def _field(answer: dict[str, Any], name: str, store: str) -> str:
    value = answer.get(name)
    if not isinstance(value, str) or not value:
        raise StoreError(f"{store} answered without a {name!r}: {str(answer)[:200]}")
    return value


def _experiment(answer: dict[str, Any], project: str) -> Experiment:
    repo = answer.get("repo_info") or {}
    if not isinstance(answer.get("id"), str) or not isinstance(answer.get("name"), str):
        raise StoreError(f"the store answered an experiment without id or name: {answer!r}")
    return Experiment(
        id=answer["id"],
        project=project,
        name=answer["name"],
        created=_timestamp(answer.get("created")),
        git_commit=repo.get("commit"),
        git_branch=repo.get("branch"),
    )


def _timestamp(value: Any) -> float:
    # An experiment whose creation time is missing or unreadable was, for us, created now.
    epoch = to_epoch(value)
    return time.time() if epoch is None else epoch


@dataclass
class _StoredRows:
    """When each stored row's latest execution started, and every stored version id."""

    starts: dict[str, float] = field(default_factory=dict)
    version_ids: set[str] = field(default_factory=set)

    def wrote(self, row: dict[str, Any], version_id: str | None = None) -> None:
        row_id = row.get("row_id") or row["id"]
        self.starts[row_id] = max(self.starts.get(row_id, float("-inf")), _start(row))
        self.version_ids.add(version_id or row["version_id"])


def _version_id(event: dict[str, Any]) -> str:
    own = (event.get("metadata") or {}).get("evalrows") or {}
    return str(own.get("version_id") or event.get("_xact_id") or "")


def _start(row: RowDoc) -> float:
    return float((row.get("metrics") or {}).get("start") or 0.0)


def _xact_key(xact: str) -> tuple[int, str]:
    return (int(xact), xact) if xact.isdigit() else (-1, xact)


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
