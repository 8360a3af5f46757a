"""Braintrust's published contract, for tests: request validation and a stand-in service.

The hosted service cannot run here, so the HTTP store's tests talk to this stand-in through
an httpx transport. It answers as the contract in ../shared/contracts (beside the checkout)
describes (create-or-get projects and experiments, upsert by id with a new ``_xact_id`` per
write, newest-first fetch whose later pages repeat older versions, deletes by id) and
validates every request body against the OpenAPI description's schemas.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

CONTRACT = Path(__file__).resolve().parents[3] / "shared" / "contracts" / "braintrust-openapi.json"

needs_contract = pytest.mark.skipif(
    not CONTRACT.exists(), reason=f"Braintrust's OpenAPI description is not at {CONTRACT}"
)


def schema_validator(name: str) -> Any:
    """A JSON Schema 2020-12 validator for ``components.schemas[name]``, refs resolved."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    spec = json.loads(CONTRACT.read_text())
    root = Resource(contents=spec, specification=DRAFT202012)
    registry = Registry().with_resource("urn:braintrust", root)
    return Draft202012Validator(
        {"$ref": f"urn:braintrust#/components/schemas/{name}"}, registry=registry
    )


REQUEST_SCHEMAS = {
    ("POST", "/v1/project"): "CreateProject",
    ("POST", "/v1/experiment"): "CreateExperiment",
    ("POST", "insert"): "InsertExperimentEventRequest",
    ("POST", "fetch"): "FetchEventsRequest",
}


@dataclass
class StandIn:
    """Braintrust as its contract describes it, in memory."""

    validate: bool = True
    projects: dict[str, str] = field(default_factory=dict)
    experiments: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # per experiment
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    # Answers to give before serving normally: (status, headers) per request.
    failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    fail_when: Callable[[httpx.Request], bool] = lambda request: True
    too_large_above: int | None = None
    page_size: int = 50
    _xact: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    _validators: dict[str, Any] = field(default_factory=dict)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.requests.append((request.method, path, body))
        if self.failures and self.fail_when(request):
            status, headers = self.failures.pop(0)
            return httpx.Response(status, headers=headers, text="try again")
        if request.method == "POST" and self.validate:
            key = (request.method, path if path.count("/") == 2 else path.rsplit("/", 1)[1])
            schema = REQUEST_SCHEMAS[key]
            if schema not in self._validators:
                self._validators[schema] = schema_validator(schema)
            errors = sorted(self._validators[schema].iter_errors(body), key=str)
            assert not errors, f"{schema}: {[e.message for e in errors][:3]}"
        if path == "/v1/project" and request.method == "POST":
            project_id = self.projects.setdefault(body["name"], str(uuid.uuid4()))
            return httpx.Response(
                200, json={"id": project_id, "org_id": "org", "name": body["name"]}
            )
        if path == "/v1/project":
            objects = [{"id": i, "org_id": "org", "name": n} for n, i in self.projects.items()]
            return httpx.Response(200, json={"objects": objects})
        if path == "/v1/experiment" and request.method == "POST":
            assert not body.get("ensure_new"), "create-or-get never asks for a new experiment"
            for experiment in self.experiments.values():
                if (experiment["project_id"], experiment["name"]) == (
                    body["project_id"],
                    body["name"],
                ):
                    return httpx.Response(200, json=experiment)
            experiment = {
                "id": str(uuid.uuid4()),
                "project_id": body["project_id"],
                "name": body["name"],
                "public": False,
                "created": "2026-11-22T00:00:00Z",
            }
            self.experiments[experiment["id"]] = experiment
            self.events[experiment["id"]] = []
            return httpx.Response(200, json=experiment)
        if path == "/v1/experiment":
            name = request.url.params.get("experiment_name")
            objects = [e for e in self.experiments.values() if name in (None, e["name"])]
            return httpx.Response(200, json={"objects": objects})
        experiment_id = path.split("/")[3]
        if path.endswith("/insert"):
            events = body["events"]
            ids = [event["id"] for event in events]
            assert len(ids) == len(set(ids)), "one id twice in one request"
            if self.too_large_above is not None and len(events) > self.too_large_above:
                return httpx.Response(413, text="payload too large")
            for event in events:
                stored = dict(event, _xact_id=str(next(self._xact)), created="2026-11-22T00:00:00Z")
                self.events[experiment_id].append(stored)
            return httpx.Response(200, json={"row_ids": ids})
        if path.endswith("/fetch"):
            return self.fetch(experiment_id, body or {})
        return httpx.Response(404, text="no such endpoint")

    def live(self, experiment_id: str) -> list[dict[str, Any]]:
        """The newest version of every id, deletes applied: what the UI would show."""
        latest: dict[str, dict[str, Any]] = {}
        for event in self.events[experiment_id]:
            latest[event["id"]] = event
        return [e for e in latest.values() if not e.get("_object_delete")]

    def fetch(self, experiment_id: str, body: dict[str, Any]) -> httpx.Response:
        # Newest first over the whole history: later pages repeat older versions of ids.
        history = sorted(self.events[experiment_id], key=lambda e: -int(e["_xact_id"]))
        deleted = {e["id"] for e in self.live_deletes(experiment_id)}
        history = [e for e in history if e["id"] not in deleted]
        start = int(body.get("cursor") or 0)
        limit = min(int(body.get("limit") or self.page_size), self.page_size)
        page = history[start : start + limit]
        cursor = str(start + limit) if start + limit < len(history) else None
        return httpx.Response(200, json={"events": page, "cursor": cursor})

    def live_deletes(self, experiment_id: str) -> list[dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        for event in self.events[experiment_id]:
            latest[event["id"]] = event
        return [e for e in latest.values() if e.get("_object_delete")]
