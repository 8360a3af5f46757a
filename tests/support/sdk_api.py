"""Calls of ``evalrows serve`` as the Braintrust SDK makes them, in process (``TestClient``):
a store and a client with the token, and the events the SDK sends."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from pytest_evalrows.braintrust.server import create_app
from pytest_evalrows.store.sqlite import SQLiteStore

with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning
    )
    from starlette.testclient import TestClient

TOKEN = "sdk-token"
LOCAL = "http://127.0.0.1:8000"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    made = SQLiteStore(tmp_path / "served.db")
    with made:
        yield made


@pytest.fixture
def client(store: SQLiteStore) -> Iterator[TestClient]:
    with TestClient(create_app(store, token=TOKEN), base_url=LOCAL, headers=AUTH) as made:
        yield made


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def experiment(client: TestClient, name: str = "exp", project: str = "proj") -> dict[str, Any]:
    project_id = ok(client.post("/v1/project", json={"name": project}))["id"]
    body = {"project_id": project_id, "name": name, "ensure_new": True}
    made: dict[str, Any] = ok(client.post("/v1/experiment", json=body))
    return made


def logs3(client: TestClient, rows: list[dict[str, Any]]) -> httpx.Response:
    """As the SDK posts them: a JSON body without a Content-Type."""
    body = httpx.Request("POST", "/", json={"rows": rows, "api_version": 2}).content
    answer: httpx.Response = client.post("/logs3", content=body)
    return answer


def root(experiment_id: str, event_id: str, trace: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "span_id": f"span-{event_id}",
        "root_span_id": trace,
        "span_parents": None,
        "experiment_id": experiment_id,
        "_is_merge": False,
        "span_attributes": {"name": "eval", "type": "eval"},
        **fields,
    }


def child(experiment_id: str, event_id: str, parent: dict[str, Any], **fields: Any) -> Any:
    return {
        **root(experiment_id, event_id, parent["root_span_id"], **fields),
        "span_parents": [parent["span_id"]],
        "span_attributes": fields.get("span_attributes", {"name": event_id, "type": "task"}),
    }


def fetched(client: TestClient, experiment_id: str) -> dict[str, dict[str, Any]]:
    events = ok(client.post(f"/v1/experiment/{experiment_id}/fetch", json={}))["events"]
    return {event["id"]: event for event in events}
