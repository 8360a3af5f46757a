"""``evalrows serve``: the Braintrust REST API subset the HTTP store speaks, over a local store.

Starlette and uvicorn are the optional extra ``pytest-evalrows[server]``: nothing else in the
package imports this module. Events map to rows and spans through ``wire``, the same mapping
the HTTP store uses, so a store behind this server ends up as the embedded store would.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import signal
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Annotated, Any, TextIO, TypeVar

import pydantic_core
import uvicorn
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import wire
from .errors import EvalrowsError, StoreError, UnknownExperimentError
from .models import Experiment, RowVersion, SpanRecord, as_doc
from .store.sqlite import Project, SQLiteStore, StoredEvent

#: Every project belongs to one local organisation.
ORG_ID = "00000000-0000-4000-8000-000000000000"
DEFAULT_LIMIT = 1000
MAX_BODY_BYTES = 64 * 1024 * 1024
# `_xact_id`s look like Braintrust's (19 digits) and sort the same as strings and as numbers.
_XACT_BASE = 10**18


# -- request bodies: extra fields are ignored, as Braintrust does -----------------------------

NonEmpty = Annotated[StrictStr, Field(min_length=1)]
Score = Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class CreateProjectBody(BaseModel):
    name: NonEmpty


class RepoInfoBody(BaseModel):
    commit: StrictStr | None = None
    branch: StrictStr | None = None


class CreateExperimentBody(BaseModel):
    project_id: StrictStr
    name: NonEmpty
    repo_info: RepoInfoBody | None = None
    ensure_new: StrictBool | None = None


class EventBody(BaseModel):
    """What an event must look like before it is read as a row, a span or a delete."""

    model_config = ConfigDict(extra="allow")

    id: NonEmpty
    object_delete: StrictBool = Field(default=False, alias="_object_delete")
    is_merge: StrictBool = Field(default=False, alias="_is_merge")
    span_id: StrictStr | None = None
    root_span_id: StrictStr | None = None
    span_parents: list[StrictStr] | None = None
    scores: dict[str, Score | None] | None = None
    metadata: dict[str, Any] | None = None
    metrics: dict[str, Number | None] | None = None
    tags: list[StrictStr] | None = None
    span_attributes: dict[str, Any] | None = None


class InsertBody(BaseModel):
    events: list[EventBody]


class FetchBody(BaseModel):
    limit: Annotated[int, Field(strict=True, ge=1)] | None = None
    cursor: StrictStr | None = None


Body = TypeVar("Body", bound=BaseModel)


class BadRequest(Exception):
    """A request the server refuses with a 400 and the message."""


# -- the app -------------------------------------------------------------------------------


def create_app(store: SQLiteStore, *, token: str | None = None) -> ASGIApp:
    """The API over ``store``; with a token, every request must carry it as a bearer token."""
    api = _Api(store)
    routes = [
        Route("/v1/project", api.create_project, methods=["POST"]),
        Route("/v1/experiment", api.create_experiment, methods=["POST"]),
        Route("/v1/experiment", api.list_experiments, methods=["GET"]),
        Route("/v1/experiment/{experiment_id}", api.get_experiment, methods=["GET"]),
        Route("/v1/experiment/{experiment_id}/insert", api.insert, methods=["POST"]),
        Route("/v1/experiment/{experiment_id}/fetch", api.fetch, methods=["GET", "POST"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: _http_error,
        BadRequest: _status(400),
        UnknownExperimentError: _status(404),
        # A store that cannot be read or written (locked, disk full) may recover: retryable.
        StoreError: _status(503),
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    return _BearerAuth(app, token) if token else app


class _Api:
    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def create_project(self, request: Request) -> Response:
        body = _parse(CreateProjectBody, await _json(request))
        project = await run_in_threadpool(self.store.get_or_create_project, body.name)
        return _json_response(_project(project))

    async def create_experiment(self, request: Request) -> Response:
        body = _parse(CreateExperimentBody, await _json(request))
        return _json_response(await run_in_threadpool(self._create_experiment, body))

    def _create_experiment(self, body: CreateExperimentBody) -> dict[str, Any]:
        project = self.store.get_project(body.project_id)
        if project is None:
            raise UnknownExperimentError(f"no project with id {body.project_id!r}")
        if body.ensure_new:
            try:
                self.store.get_experiment(body.name, project.name)
            except UnknownExperimentError:
                pass
            else:
                raise BadRequest(
                    f"experiment {body.name!r} exists in project {project.name!r}; this server "
                    "does not make new names (ensure_new): leave ensure_new out to reuse it"
                )
        repo = body.repo_info or RepoInfoBody()
        experiment = self.store.get_or_create_experiment(
            project.name, body.name, git_commit=repo.commit, git_branch=repo.branch
        )
        return _experiment(experiment, project.id)

    async def list_experiments(self, request: Request) -> Response:
        query = request.query_params
        return _json_response(await run_in_threadpool(self._list_experiments, dict(query)))

    def _list_experiments(self, query: dict[str, str]) -> dict[str, Any]:
        project_ids = {project.name: project.id for project in self.store.list_projects()}
        objects = []
        for experiment in self.store.list_experiments():
            project_id = project_ids.get(experiment.project) or self._project_id(experiment)
            if (
                query.get("experiment_name", experiment.name) == experiment.name
                and query.get("project_name", experiment.project) == experiment.project
                and query.get("project_id", project_id) == project_id
            ):
                objects.append(_experiment(experiment, project_id))
        return {"objects": objects}

    async def get_experiment(self, request: Request) -> Response:
        return _json_response(await run_in_threadpool(self._get_experiment, request))

    def _get_experiment(self, request: Request) -> dict[str, Any]:
        experiment = self.store.get_experiment_by_id(request.path_params["experiment_id"])
        return _experiment(experiment, self._project_id(experiment))

    async def insert(self, request: Request) -> Response:
        experiment_id = request.path_params["experiment_id"]
        raw = await _json(request)
        body = _parse(InsertBody, raw)
        # Everything is checked and converted before anything is written.
        rows, spans, deletes = _convert(body, raw["events"])
        await run_in_threadpool(self._insert, experiment_id, rows, spans, deletes)
        return _json_response({"row_ids": [event.id for event in body.events]})

    def _insert(
        self,
        experiment_id: str,
        rows: list[RowVersion],
        spans: list[SpanRecord],
        deletes: list[str],
    ) -> None:
        self.store.get_experiment_by_id(experiment_id)
        self.store.write(experiment_id, rows, spans, delete_span_ids=deletes)

    async def fetch(self, request: Request) -> Response:
        if request.method == "POST":
            raw = await _json(request) if (await request.body()).strip() else {}
        else:
            raw = dict(request.query_params)
            if "limit" in raw:
                try:
                    raw["limit"] = int(raw["limit"])
                except ValueError:
                    raise BadRequest(f"limit: not an integer: {raw['limit']!r}") from None
        body = _parse(FetchBody, raw)
        before = _decode_cursor(body.cursor) if body.cursor else None
        limit = body.limit or DEFAULT_LIMIT
        experiment_id = request.path_params["experiment_id"]
        return _json_response(await run_in_threadpool(self._fetch, experiment_id, limit, before))

    def _fetch(self, experiment_id: str, limit: int, before: int | None) -> dict[str, Any]:
        experiment = self.store.get_experiment_by_id(experiment_id)
        project_id = self._project_id(experiment)
        # One more than asked tells whether another page follows.
        found = self.store.fetch_events(experiment_id, limit=limit + 1, before=before)
        page = found[:limit]
        result: dict[str, Any] = {
            "events": [_event(stored, experiment_id, project_id) for stored in page]
        }
        # No cursor at all on the last page: the schema's cursor is a string (its 3.0
        # `nullable` means nothing to a 2020-12 validator), and clients read a missing one
        # as the end.
        if len(found) > limit:
            result["cursor"] = _encode_cursor(page[-1].xact)
        return result

    def _project_id(self, experiment: Experiment) -> str:
        return self.store.get_or_create_project(experiment.project).id


def _convert(
    body: InsertBody, raw_events: list[dict[str, Any]]
) -> tuple[list[RowVersion], list[SpanRecord], list[str]]:
    """Rows, spans and span ids to delete; the raw events keep the values as sent."""
    rows: list[RowVersion] = []
    spans: list[SpanRecord] = []
    deletes: list[str] = []
    seen: dict[str, int] = {}
    for index, event in enumerate(body.events):
        if event.id in seen:
            raise BadRequest(
                f"events[{index}]: id {event.id!r} is also events[{seen[event.id]}]: "
                "send one event per id per request"
            )
        seen[event.id] = index
        if event.is_merge:
            raise BadRequest(f"events[{index}]: _is_merge is not supported: send whole rows")
        if event.object_delete:
            # Deletes go by span id; a row id or an unknown id deletes nothing (Braintrust
            # answers 200 for those too).
            deletes.append(event.id)
            continue
        raw = raw_events[index]
        kind = wire.event_kind(raw)
        try:
            if kind == wire.ROW_KIND or (kind is None and not event.span_parents):
                row = wire.event_row(raw)
                own = (raw.get("metadata") or {}).get("evalrows") or {}
                if not own.get("version_id"):  # Braintrust: writing an id again is a version
                    row.version_id = uuid.uuid4().hex
                rows.append(row)
                # The store keeps the row's root span too, as the embedded store does.
                spans.append(wire.row_root_span(row))
            elif kind == wire.SPAN_KIND or kind is None:
                spans.append(wire.event_span(raw))
            else:
                raise BadRequest(f"events[{index}]: unknown metadata.evalrows.kind {kind!r}")
        except ValidationError as exc:
            raise BadRequest(f"events[{index}] (id {event.id!r}): {_describe(exc)}") from None
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"events[{index}] (id {event.id!r}): unreadable: {exc}") from None
    return rows, spans, deletes


# -- conversions ---------------------------------------------------------------------------


def _project(project: Project) -> dict[str, Any]:
    return {
        "id": project.id,
        "org_id": ORG_ID,
        "name": project.name,
        "created": _iso(project.created),
    }


def _experiment(experiment: Experiment, project_id: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": experiment.id,
        "project_id": project_id,
        "name": experiment.name,
        "public": False,
        "created": _iso(experiment.created),
    }
    repo = {"commit": experiment.git_commit, "branch": experiment.git_branch}
    repo = {key: value for key, value in repo.items() if value is not None}
    if repo:
        result["repo_info"] = repo
    if experiment.git_commit is not None:
        result["commit"] = experiment.git_commit
    return result


def _event(stored: StoredEvent, experiment_id: str, project_id: str) -> dict[str, Any]:
    if stored.row is not None:
        event = wire.row_event(as_doc(stored.row))
    else:
        assert stored.span is not None
        event = wire.span_event(as_doc(stored.span))
    event["_xact_id"] = str(_XACT_BASE + stored.xact)
    event["created"] = _iso(stored.created)
    event["experiment_id"] = experiment_id
    event["project_id"] = project_id
    return event


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _encode_cursor(xact: int) -> str:
    return base64.urlsafe_b64encode(f"before:{xact}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind == "before":
            return int(value)
    except (binascii.Error, UnicodeError, ValueError):
        pass
    raise BadRequest("cursor: not a cursor this server gave out")


# -- requests and responses ----------------------------------------------------------------


async def _json(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, f"request body over {MAX_BODY_BYTES} bytes: split the batch")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None


def _parse(model: type[Body], raw: Any) -> Body:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise BadRequest(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
        where = where.lstrip(".") or "body"
        problems.append(f"{where}: {error['msg']}")
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _json_response(content: Any, status: int = 200) -> Response:
    # pydantic_core writes large fetch pages several times faster than json.dumps.
    return Response(pydantic_core.to_json(content), status, media_type="application/json")


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    response = _json_response({"error": message}, status)
    response.headers.update(headers or {})
    return response


def _status(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        return _error(status, str(exc))

    return handler


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail, exc.headers)


class _BearerAuth:
    """Every request must carry ``Authorization: Bearer <token>``; the token is never echoed
    or logged."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = Headers(scope=scope).get("authorization")
            if given is None:
                message = "missing token: send 'Authorization: Bearer <token>'"
            elif not hmac.compare_digest(given.encode(), self.expected):
                message = "wrong token"
            else:
                message = ""
            if message:
                response = _error(401, message, {"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- running it ------------------------------------------------------------------------------


class _Stopped(Exception):
    """SIGTERM or SIGINT once uvicorn has shut down (or before it started)."""


def serve(store: SQLiteStore, *, host: str, port: int, token: str | None, out: TextIO) -> int:
    """Serve until SIGTERM or SIGINT; print one line once requests are answered."""
    config = uvicorn.Config(
        create_app(store, token=token), lifespan="off", log_level="warning", access_log=False
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # every response waits out the client's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise EvalrowsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    address = f"[{host}]" if family == socket.AF_INET6 else host
    ready = f"evalrows: serving {store.display_url} on http://{address}:{bound}"
    server = _Server(config, lambda: print(ready, file=out, flush=True))
    # uvicorn shuts down gracefully on a signal, then raises it again: end quietly then.
    main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _stop) for sig in _SIGNALS} if main else {}
    try:
        server.run(sockets=[sock])
    except (_Stopped, KeyboardInterrupt):
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    if not server.started:
        raise EvalrowsError(f"the server on {host}:{bound} did not start")
    return 0


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _stop(signum: int, frame: object) -> None:
    raise _Stopped


class _Server(uvicorn.Server):
    """Says when it is ready: with ``--port 0`` that line is how a caller learns the port."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.on_ready()
