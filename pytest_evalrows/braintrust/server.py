"""``evalrows serve``: the Braintrust REST API subset the HTTP store and the unmodified
Braintrust SDK speak, over a store (SQLite or PostgreSQL).

Starlette and uvicorn are the optional extra ``pytest-evalrows[server]``: nothing else in the
package imports this module. Events map to rows and spans through ``wire``, the same mapping
the HTTP store uses, so a store behind this server ends up as the embedded store would; the
SDK's events (``sdk_events``) keep every field they carry. Writes and merges are
``server_writes``; the SDK's calls outside ``/v1`` are ``server_sdk``.

Before the API reads a request, it must name this server in its ``Host`` header (a page that
reaches the server through DNS rebinding names its own host) and declare a body it sends as
``application/json`` (a page may send ``text/plain`` anywhere without asking; JSON takes a CORS
preflight, which this server never grants); those checks are ``server_checks``. Bodies are
limited to ``MAX_BODY_BYTES`` while they are read.

The API is everything under ``/v1`` and the SDK's few paths (``server_checks.SDK_PATHS``). A
caller may hand in ``pages``, an ASGI app for every other path (the command line passes the
web view's: this layer imports no ``web``); those requests pass the Host check and nothing
else here, and authenticate themselves.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TextIO

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from ..core.models import Experiment
from ..errors import EvalrowsError, StoreError, UnknownExperimentError
from ..store.base import ServerBackend, StoredEvent
from . import server_bodies as bodies
from . import server_writes
from .server_checks import (
    LOOPBACK_HOSTS,
    MAX_BODY_BYTES,
    MAX_SMALL_BODY_BYTES,
    BearerAuth,
    HostRules,
    RequestChecks,
    bound_hosts,
    error_response,
    json_response,
    parse_host,
    read_body,
)
from .server_sdk import SdkApi

# Where they have always been imported from (the command line takes the hosts' from here).
__all__ = [
    "DEFAULT_LIMIT",
    "LOOPBACK_HOSTS",
    "MAX_BODY_BYTES",
    "MAX_SMALL_BODY_BYTES",
    "bound_hosts",
    "create_app",
    "parse_host",
    "serve",
]

DEFAULT_LIMIT = 1000
# A new experiment's name is tried this many times when other servers take it meanwhile.
_NAMING_TRIES = 100


def create_app(
    store: ServerBackend,
    *,
    token: str | None = None,
    allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
    pages: ASGIApp | None = None,
) -> ASGIApp:
    """The API over ``store``. Requests must name one of ``allowed_hosts`` (``host`` for any
    port, ``host:port``, ``*`` for any host) in their ``Host`` header; with a token, API
    requests must carry it as a bearer token. ``pages`` answers every path outside ``/v1``
    (without it, those are the API's 404s); it checks its own requests' token."""
    rules = HostRules(allowed_hosts)
    api = _Api(store)
    sdk = SdkApi(store, api.inserting, api.fetch_events, api.pending)
    routes = [
        Route("/v1/project", api.create_project, methods=["POST"]),
        Route("/v1/project", api.list_projects, methods=["GET"]),
        Route("/v1/experiment", api.create_experiment, methods=["POST"]),
        Route("/v1/experiment", api.list_experiments, methods=["GET"]),
        Route("/v1/experiment/{experiment_id}", api.get_experiment, methods=["GET"]),
        Route("/v1/experiment/{experiment_id}/insert", api.insert, methods=["POST"]),
        Route("/v1/experiment/{experiment_id}/fetch", api.fetch, methods=["GET", "POST"]),
        # What the Braintrust SDK calls besides (``server_sdk``).
        Route("/v1/project/{project_id}", sdk.get_project, methods=["GET"]),
        Route("/v1/experiment/{experiment_id}/summarize", sdk.summarize, methods=["GET"]),
        Route("/api/apikey/login", sdk.login, methods=["POST"]),
        Route("/version", sdk.version, methods=["GET"]),
        Route("/logs3", sdk.logs3, methods=["POST"]),
        Route("/btql", sdk.btql, methods=["POST"]),
        Route("/api/base_experiment/get_id", sdk.base_experiment, methods=["POST"]),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        HTTPException: _http_error,
        bodies.BadRequest: _status(400),
        bodies.TooLarge: _status(413),
        UnknownExperimentError: _status(404),
        # A store that cannot be read or written (locked, disk full) may recover: retryable.
        StoreError: _status(503),
    }
    app: ASGIApp = Starlette(routes=routes, exception_handlers=handlers)
    if token:
        app = BearerAuth(app, token)
    return RequestChecks(app, rules, pages)


class _Api:
    def __init__(self, store: ServerBackend) -> None:
        self.store = store
        # One insert at a time is parsed and written: each holds a few times its body in
        # memory, and the store takes one write at a time anyway. Others wait with their bytes.
        self.inserting = threading.Lock()
        self.pending = server_writes.PendingComments()
        # Experiments are named one at a time: a new unique name is free when it is taken.
        self._naming = threading.Lock()

    async def create_project(self, request: Request) -> Response:
        body = bodies.parse(bodies.CreateProjectBody, await _json(request))
        project = await run_in_threadpool(self.store.get_or_create_project, body.name)
        return json_response(bodies.project(project))

    async def list_projects(self, request: Request) -> Response:
        name = request.query_params.get("project_name")
        projects = await run_in_threadpool(self.store.list_projects)
        objects = [bodies.project(p) for p in projects if name in (None, p.name)]
        return json_response({"objects": objects})

    async def create_experiment(self, request: Request) -> Response:
        body = bodies.parse(bodies.CreateExperimentBody, await _json(request))
        return json_response(await run_in_threadpool(self._create_experiment, body))

    def _create_experiment(self, body: bodies.CreateExperimentBody) -> dict[str, Any]:
        """Create-or-get by name; with ``ensure_new`` (the Braintrust SDK's default) a name
        that is taken gets the first free ``-1``, ``-2``, ... suffix instead, and an experiment
        without a name gets one (its branch, or ``experiment``, and the time)."""
        project = self.store.get_project(body.project_id)
        if project is None:
            raise UnknownExperimentError(f"no project with id {body.project_id!r}")
        repo = body.repo_info or bodies.RepoInfoBody()
        name = body.name or bodies.default_name(repo.branch)
        git = {"git_commit": repo.commit, "git_branch": repo.branch}
        if body.base_exp_id is not None:
            try:
                self.store.get_experiment_by_id(body.base_exp_id)
            except UnknownExperimentError:
                raise bodies.BadRequest(
                    f"base_exp_id: no experiment with id {body.base_exp_id!r}"
                ) from None
        new = {**git, "base_experiment_id": body.base_exp_id}
        if not (body.ensure_new or body.name is None):
            # Create-or-get: the base is kept when it is created.
            experiment = self.store.create_experiment(project.name, name, **new)
            if experiment is None:
                experiment = self.store.get_or_create_experiment(project.name, name, **git)
            return bodies.experiment(experiment, project.id)
        with self._naming:
            taken = {e.name for e in self.store.list_experiments() if e.project == project.name}
            # Create-only: another server on the same database may take a name meanwhile;
            # then the next free one.
            for _ in range(_NAMING_TRIES):
                candidate = bodies.unique_name(name, taken)
                created = self.store.create_experiment(project.name, candidate, **new)
                if created is not None:
                    return bodies.experiment(created, project.id)
                taken.add(candidate)
        raise StoreError(f"no free name for a new experiment {name!r} after {_NAMING_TRIES} tries")

    async def list_experiments(self, request: Request) -> Response:
        query = request.query_params
        return json_response(await run_in_threadpool(self._list_experiments, dict(query)))

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
        return json_response(await run_in_threadpool(self._get_experiment, request))

    def _get_experiment(self, request: Request) -> dict[str, Any]:
        experiment = self.store.get_experiment_by_id(request.path_params["experiment_id"])
        return bodies.experiment(experiment, self._project_id(experiment))

    async def insert(self, request: Request) -> Response:
        experiment_id = request.path_params["experiment_id"]
        # Handed over in a list that the worker empties: the bytes go once they are parsed,
        # before the write makes copies of its own.
        data = [await read_body(request, MAX_BODY_BYTES)]
        return json_response(await run_in_threadpool(self._insert, experiment_id, data))

    def _insert(self, experiment_id: str, data: list[bytes]) -> dict[str, Any]:
        with self.inserting:
            raw = bodies.load(data.pop())
            body = bodies.parse(bodies.InsertBody, raw)
            try:
                experiment = self.store.get_experiment_by_id(experiment_id)
            except UnknownExperimentError:
                # Bad events are said first (400), as for an experiment that exists.
                bodies.convert(body, raw["events"], None)
                raise
            # Everything is checked and converted before anything is written.
            converted = bodies.convert(body, raw["events"], experiment.name, experiment_id)
            server_writes.check(self.store, experiment_id, converted)
            result = server_writes.write(self.store, experiment_id, converted, self.pending)
        row_ids = [event.id for event in body.events]
        answer = server_writes.counts(result, self.store, experiment_id, converted.rows)
        return {"row_ids": row_ids, "evalrows": answer}

    async def fetch(self, request: Request) -> Response:
        if request.method == "POST":
            data = await read_body(request, MAX_SMALL_BODY_BYTES)
            raw = bodies.load(data) if data and not data.isspace() else {}
        else:
            raw = dict(request.query_params)
            if "limit" in raw:
                raw["limit"] = bodies.query_int("limit", raw["limit"])
            if "evalrows_all_versions" in raw:
                flag = raw["evalrows_all_versions"]
                raw["evalrows_all_versions"] = {"true": True, "false": False}.get(flag, flag)
        body = bodies.parse(bodies.FetchBody, raw)
        cursor = bodies.decode_cursor(body.cursor) if body.cursor else None
        # A page is at most MAX_LIMIT events; a larger limit pages on with the cursor.
        limit = min(body.limit or DEFAULT_LIMIT, bodies.MAX_LIMIT)
        experiment_id = request.path_params["experiment_id"]
        latest = not body.evalrows_all_versions
        found = await run_in_threadpool(self.fetch_events, experiment_id, limit, cursor, latest)
        return json_response(found)

    def fetch_events(
        self, experiment_id: str, limit: int, cursor: tuple[str, int] | None, latest: bool
    ) -> dict[str, Any]:
        """A page of the experiment's events, newest first: rows and spans, then evaluations
        (and, for ``all versions``, the attempts). ``latest``: each row's latest version
        only, as Braintrust's clients read a fetch; else every version (the HTTP store's
        history)."""
        experiment = self.store.get_experiment_by_id(experiment_id)
        project_id = self._project_id(experiment)
        events: list[dict[str, Any]] = []
        # No cursor at all on the last page: the schema's cursor is a string (its 3.0
        # `nullable` means nothing to a 2020-12 validator), and clients read a missing one
        # as the end.
        result: dict[str, Any] = {"events": events}
        if cursor is None or cursor[0] == bodies.BEFORE:
            before = cursor[1] if cursor is not None else None
            # One more than asked tells whether another page follows.
            found = self.store.fetch_events(experiment_id, limit=limit + 1, before=before)
            page = found[:limit]
            shown = _latest_only(self.store, experiment_id, page) if latest else page
            events += [bodies.event(stored, experiment_id, project_id) for stored in shown]
            if len(found) > limit:
                result["cursor"] = bodies.encode_cursor(page[-1].xact)
                return result
            offset = 0
        else:
            offset = cursor[1]
        # Then the evaluations and the attempts, as the HTTP store writes them: events of
        # kinds "evaluation" and "attempt" (a session's record: the HTTP store's alone).
        room = limit - len(events)
        kept = [
            bodies.evaluation_event(evaluation, experiment_id, project_id)
            for evaluation in self.store.list_evaluations(experiment_id)
        ]
        if not latest:
            kept += [
                bodies.attempt_event(attempt, experiment_id, project_id)
                for attempt in self.store.list_attempts(experiment_id)
            ]
        events += kept[offset : offset + room]
        if offset + room < len(kept):
            result["cursor"] = bodies.encode_cursor(offset + room, bodies.ATTEMPTS)
        return result

    def _project_id(self, experiment: Experiment) -> str:
        return self.store.get_or_create_project(experiment.project).id


def _latest_only(
    store: ServerBackend, experiment_id: str, page: list[StoredEvent]
) -> list[StoredEvent]:
    """The page without the versions that are not their row's latest."""
    row_ids = {stored.row.row_id for stored in page if stored.row is not None}
    if not row_ids:
        return page
    latest = {row.version_id for row in store.latest_rows(experiment_id, row_ids)}
    return [each for each in page if each.row is None or each.row.version_id in latest]


async def _json(request: Request) -> Any:
    return bodies.load(await read_body(request, MAX_SMALL_BODY_BYTES))


def _status(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handler(request: Request, exc: Exception) -> Response:
        return error_response(status, str(exc))

    return handler


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, exc.headers)


# -- running it ------------------------------------------------------------------------------


class _Stopped(Exception):
    """SIGTERM or SIGINT once uvicorn has shut down (or before it started)."""


def serve(
    store: ServerBackend,
    *,
    host: str,
    port: int,
    token: str | None,
    out: TextIO,
    allowed_hosts: Sequence[str] = (),
    pages: ASGIApp | None = None,
) -> int:
    """Serve until SIGTERM or SIGINT; print one line once requests are answered. Requests
    must name the bound address (see ``bound_hosts``) or one of ``allowed_hosts`` as Host.
    ``pages``: as for ``create_app``."""
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
    hosts = [*bound_hosts(host, bound), *allowed_hosts]
    app = create_app(store, token=token, allowed_hosts=hosts, pages=pages)
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
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
