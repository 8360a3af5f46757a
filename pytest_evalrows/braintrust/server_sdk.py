"""What the Braintrust SDK calls besides ``/v1``: its login, the server's version, ``/logs3``
(its writes), ``/btql`` (its object fetches), the base experiment's lookup and an experiment's
summary. Rows in ``/logs3`` go through ``server_writes`` as an insert's events do.

The SDK logs in on the app URL (``BRAINTRUST_APP_URL``) and then calls the API URL the login
names: this server names itself, as the client reached it (the ``Host`` the request checks
already held to this server's names).
"""

from __future__ import annotations

import importlib.metadata
import threading
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictStr
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..core.models import WriteResult
from ..errors import UnknownExperimentError
from ..store.base import ServerBackend
from . import server_bodies as bodies
from . import server_summary, server_writes
from .server_checks import MAX_BODY_BYTES, MAX_SMALL_BODY_BYTES, json_response, read_body

ORG_NAME = "evalrows"
#: What a summary's links and the SDK's own say this server is (``/version``).
SERVER_NAME = "evalrows serve"

# `/logs3`'s body: rows of any object; this server keeps experiments' only.
NonEmpty = Annotated[StrictStr, Field(min_length=1)]


class Logs3Row(BaseModel):
    experiment_id: NonEmpty | None = None


class Logs3Body(BaseModel):
    rows: list[dict[str, Any]]


class BaseExperimentBody(BaseModel):
    id: NonEmpty


Fetch = Callable[[str, int, "tuple[str, int] | None", bool], dict[str, Any]]


class SdkApi:
    """The SDK's calls over ``store``; ``inserting`` is the insert's lock (one write at a
    time), ``fetch`` the ``/v1`` fetch (experiment id, limit, cursor, latest only),
    ``pending`` the comments waiting for their event."""

    def __init__(
        self,
        store: ServerBackend,
        inserting: threading.Lock,
        fetch: Fetch,
        pending: server_writes.PendingComments,
    ) -> None:
        self.store = store
        self._inserting = inserting
        self._fetch = fetch
        self._pending = pending

    async def login(self, request: Request) -> Response:
        # The bearer token was checked on the way in (when the server has one).
        api_url = str(request.base_url).rstrip("/")
        org = {"id": bodies.ORG_ID, "name": ORG_NAME, "api_url": api_url, "git_metadata": None}
        return json_response({"org_info": [org]})

    async def version(self, request: Request) -> Response:
        # No `logs3_payload_max_bytes`: the SDK would take it as a promise of /logs3/overflow
        # (not served) and send a row over its request size there, losing it. Without it
        # the SDK sends such a row in /logs3 itself, up to MAX_BODY_BYTES.
        return json_response({"name": SERVER_NAME, "version": _version()})

    async def logs3(self, request: Request) -> Response:
        data = [await read_body(request, MAX_BODY_BYTES)]
        return json_response(await run_in_threadpool(self._logs3, data))

    def _logs3(self, data: list[bytes]) -> dict[str, Any]:
        with self._inserting:
            raw = bodies.load(data.pop())
            body = bodies.parse(Logs3Body, raw)
            groups: dict[str, list[dict[str, Any]]] = {}
            for index, row in enumerate(body.rows):
                target = bodies.parse(Logs3Row, row).experiment_id
                if target is None:
                    raise bodies.BadRequest(
                        f"rows[{index}]: no experiment_id: this server keeps experiments, not "
                        "project logs or datasets"
                    )
                groups.setdefault(target, []).append(row)
            # Every experiment's rows are checked and converted before anything is written.
            converted = []
            for experiment_id, rows in groups.items():
                events = bodies.parse(bodies.InsertBody, {"events": rows})
                experiment = self.store.get_experiment_by_id(experiment_id)
                each = bodies.convert(events, rows, experiment.name, experiment_id)
                converted.append((experiment_id, each))
            for experiment_id, each in converted:
                server_writes.check(self.store, experiment_id, each)
            total = WriteResult()
            for experiment_id, each in converted:
                total += server_writes.write(self.store, experiment_id, each, self._pending)
        row_ids = [row.get("id") for row in body.rows]
        return {"row_ids": row_ids, "evalrows": server_writes.counts(total)}

    async def btql(self, request: Request) -> Response:
        raw = bodies.load(await read_body(request, MAX_SMALL_BODY_BYTES))
        experiment_id, limit, cursor = _btql_query(raw)
        found = await run_in_threadpool(self._fetch, experiment_id, limit, cursor, True)
        answer: dict[str, Any] = {"data": found["events"]}
        if "cursor" in found:
            answer["cursor"] = found["cursor"]
        return json_response(answer)

    async def base_experiment(self, request: Request) -> Response:
        raw = bodies.load(await read_body(request, MAX_SMALL_BODY_BYTES))
        body = bodies.parse(BaseExperimentBody, raw)
        base = await run_in_threadpool(server_summary.base_experiment, self.store, body.id)
        if base is None:
            # The SDK reads a 400 as "no base experiment".
            raise bodies.BadRequest(f"experiment {body.id!r} has no experiment before it")
        return json_response({"base_exp_id": base.id, "base_exp_name": base.name})

    async def get_project(self, request: Request) -> Response:
        project_id = request.path_params["project_id"]
        project = await run_in_threadpool(self.store.get_project, project_id)
        if project is None:
            raise UnknownExperimentError(f"no project with id {project_id!r}")
        return json_response(bodies.project(project))

    async def summarize(self, request: Request) -> Response:
        query = request.query_params
        summarize = query.get("summarize_scores", "true").lower() not in ("false", "0")
        args = (
            self.store,
            request.path_params["experiment_id"],
            query.get("comparison_experiment_id"),
            str(request.base_url).rstrip("/"),
            summarize,
        )
        return json_response(await run_in_threadpool(server_summary.summary, *args))


def _btql_query(raw: Any) -> tuple[str, int, tuple[str, int] | None]:
    """The one query this server answers: every event of ``experiment('<id>')``, the latest
    version of each, as the SDK's object fetcher asks (``limit`` and ``cursor`` as a fetch's)."""
    query = raw.get("query") if isinstance(raw, dict) else None
    source = query.get("from") if isinstance(query, dict) else None
    name = source.get("name") if isinstance(source, dict) else None
    args = source.get("args") if isinstance(source, dict) else None
    if (
        not isinstance(name, dict)
        or name.get("name") != ["experiment"]
        or not isinstance(args, list)
        or len(args) != 1
        or not isinstance(args[0], dict)
        or not isinstance(args[0].get("value"), str)
    ):
        raise bodies.BadRequest(
            "btql: this server answers one query: select * from experiment('<id>'), as the "
            "Braintrust SDK's fetch sends it"
        )
    assert isinstance(query, dict)
    paging = {"limit": query.get("limit"), "cursor": query.get("cursor")}
    fetch = bodies.parse(bodies.FetchBody, paging)
    cursor = bodies.decode_cursor(fetch.cursor) if fetch.cursor else None
    return args[0]["value"], min(fetch.limit or bodies.MAX_LIMIT, bodies.MAX_LIMIT), cursor


def _version() -> str:
    try:
        return importlib.metadata.version("pytest-evalrows")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
