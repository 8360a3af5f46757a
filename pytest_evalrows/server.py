"""``evalrows serve``: the Braintrust REST API subset the HTTP store speaks, over a local store.

Starlette and uvicorn are the optional extra ``pytest-evalrows[server]``: nothing else in the
package imports this module. Events map to rows and spans through ``wire``, the same mapping
the HTTP store uses, so a store behind this server ends up as the embedded store would.
"""

from __future__ import annotations

import hmac
import json
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TextIO

import pydantic_core
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import server_bodies as bodies
from .errors import EvalrowsError, StoreError, UnknownExperimentError
from .models import Experiment, RowVersion, SpanRecord
from .store.sqlite import SQLiteStore

DEFAULT_LIMIT = 1000
MAX_BODY_BYTES = 64 * 1024 * 1024


def create_app(store: SQLiteStore, *, token: str | None = None) -> ASGIApp:
    """The API over ``store``; with a token, every request must carry it as a bearer token."""
    api = _Api(store)
    routes = [
        Route("/v1/project", api.create_project, methods=["POST"]),
        Route("/v1/project", api.list_projects, methods=["GET"]),
        Route("/v1/experiment", api.create_experiment, methods=["POST"]),
        Route("/v1/experiment", api.list_experiments, methods=["GET"]),
        Route("/v1/experiment/{experiment_id}", api.get_experiment, methods=["GET"]),
        Route("/v1/experiment/{experiment_id}/insert", api.insert, methods=["POST"]),
        Route("/v1/experiment/{experiment_id}/fetch", api.fetch, methods=["GET", "POST"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: _http_error,
        bodies.BadRequest: _status(400),
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
        body = bodies.parse(bodies.CreateProjectBody, await _json(request))
        project = await run_in_threadpool(self.store.get_or_create_project, body.name)
        return _json_response(bodies.project(project))

    async def list_projects(self, request: Request) -> Response:
        name = request.query_params.get("project_name")
        projects = await run_in_threadpool(self.store.list_projects)
        objects = [bodies.project(p) for p in projects if name in (None, p.name)]
        return _json_response({"objects": objects})

    async def create_experiment(self, request: Request) -> Response:
        body = bodies.parse(bodies.CreateExperimentBody, await _json(request))
        return _json_response(await run_in_threadpool(self._create_experiment, body))

    def _create_experiment(self, body: bodies.CreateExperimentBody) -> dict[str, Any]:
        project = self.store.get_project(body.project_id)
        if project is None:
            raise UnknownExperimentError(f"no project with id {body.project_id!r}")
        if body.ensure_new:
            try:
                self.store.get_experiment(body.name, project.name)
            except UnknownExperimentError:
                pass
            else:
                raise bodies.BadRequest(
                    f"experiment {body.name!r} exists in project {project.name!r}; this server "
                    "does not make new names (ensure_new): leave ensure_new out to reuse it"
                )
        repo = body.repo_info or bodies.RepoInfoBody()
        experiment = self.store.get_or_create_experiment(
            project.name, body.name, git_commit=repo.commit, git_branch=repo.branch
        )
        return bodies.experiment(experiment, project.id)

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
                objects.append(bodies.experiment(experiment, project_id))
        return {"objects": objects}

    async def get_experiment(self, request: Request) -> Response:
        return _json_response(await run_in_threadpool(self._get_experiment, request))

    def _get_experiment(self, request: Request) -> dict[str, Any]:
        experiment = self.store.get_experiment_by_id(request.path_params["experiment_id"])
        return bodies.experiment(experiment, self._project_id(experiment))

    async def insert(self, request: Request) -> Response:
        experiment_id = request.path_params["experiment_id"]
        raw = await _json(request)
        body = bodies.parse(bodies.InsertBody, raw)
        # Everything is checked and converted before anything is written.
        rows, spans, deletes = bodies.convert(body, raw["events"])
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
        # A row's root is its row event here: the roots of the versions it replaces are
        # history, not spans to clean up later.
        self.store.write(experiment_id, rows, spans, delete_span_ids=deletes, replace_roots=True)

    async def fetch(self, request: Request) -> Response:
        if request.method == "POST":
            raw = await _json(request) if (await request.body()).strip() else {}
        else:
            raw = dict(request.query_params)
            if "limit" in raw:
                try:
                    raw["limit"] = int(raw["limit"])
                except ValueError:
                    raise bodies.BadRequest(f"limit: not an integer: {raw['limit']!r}") from None
        body = bodies.parse(bodies.FetchBody, raw)
        before = bodies.decode_cursor(body.cursor) if body.cursor else None
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
            "events": [bodies.event(stored, experiment_id, project_id) for stored in page]
        }
        # No cursor at all on the last page: the schema's cursor is a string (its 3.0
        # `nullable` means nothing to a 2020-12 validator), and clients read a missing one
        # as the end.
        if len(found) > limit:
            result["cursor"] = bodies.encode_cursor(page[-1].xact)
        return result

    def _project_id(self, experiment: Experiment) -> str:
        return self.store.get_or_create_project(experiment.project).id


async def _json(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise HTTPException(413, f"request body over {MAX_BODY_BYTES} bytes: split the batch")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bodies.BadRequest(f"the body is not JSON: {exc}") from None


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
