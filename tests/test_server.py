"""``evalrows serve``: the Braintrust REST API subset over a local store (issue 5).

Most tests go through Starlette's in-process TestClient; one starts the real command.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.exceptions import StarletteDeprecationWarning
from support.braintrust_contract import CONTRACT
from support.events import row_event, span_event
from support.servers import READY

from pytest_evalrows.braintrust import wire
from pytest_evalrows.braintrust.server import create_app
from pytest_evalrows.cli import main
from pytest_evalrows.store.sqlite import SQLiteStore
from pytest_evalrows.store.sqlite_schema import MIGRATIONS

with warnings.catch_warnings():
    # Starlette 1.x would rather its TestClient ran on httpx2; this project uses httpx.
    warnings.filterwarnings(
        "ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning
    )
    from starlette.testclient import TestClient


# -- helpers -------------------------------------------------------------------------------


class Api:
    """The calls the HTTP store makes, checked for status on the way."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def project(self, name: str = "demo") -> dict[str, Any]:
        return self.ok(self.client.post("/v1/project", json={"name": name}))

    def experiment(self, name: str = "nightly", project: str = "demo") -> dict[str, Any]:
        project_id = self.project(project)["id"]
        body = {"project_id": project_id, "name": name}
        return self.ok(self.client.post("/v1/experiment", json=body))

    def insert(self, experiment_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        url = f"/v1/experiment/{experiment_id}/insert"
        return self.ok(self.client.post(url, json={"events": events}))

    def fetch_all(
        self, experiment_id: str, limit: int | None = None, *, all_versions: bool = True
    ) -> list[dict[str, Any]]:
        """Every page; every version of every row, as the HTTP store asks (without
        ``all_versions``, as Braintrust's clients ask: the latest of each)."""
        events: list[dict[str, Any]] = []
        cursor = None
        for _ in range(1000):
            body = {"limit": limit, "cursor": cursor, "evalrows_all_versions": all_versions}
            page = self.ok(self.client.post(f"/v1/experiment/{experiment_id}/fetch", json=body))
            events.extend(page["events"])
            cursor = page.get("cursor")
            if not cursor:
                return events
        raise AssertionError("fetch never ended")

    @staticmethod
    def ok(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


def latest(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a client keeps: the event with the highest `_xact_id` per id."""
    kept: dict[str, dict[str, Any]] = {}
    for event in events:
        if event["id"] not in kept or int(event["_xact_id"]) > int(kept[event["id"]]["_xact_id"]):
            kept[event["id"]] = event
    return kept


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "served.db") as made:
        yield made


# The server answers only requests that name it: loopback by default.
LOCAL = "http://127.0.0.1:8000"


@pytest.fixture
def api(store: SQLiteStore) -> Iterator[Api]:
    with TestClient(create_app(store), base_url=LOCAL) as client:
        yield Api(client)


# -- the OpenAPI description ---------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> Any:
    """A validator factory for `components.schemas` of Braintrust's OpenAPI description."""
    if not CONTRACT.exists():
        pytest.skip(f"Braintrust's OpenAPI description is not at {CONTRACT}")
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    spec = json.loads(CONTRACT.read_text())
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:braintrust", resource)

    def validate(name: str, instance: Any) -> None:
        ref = {"$ref": f"urn:braintrust#/components/schemas/{name}"}
        validator = Draft202012Validator(ref, registry=registry)
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]
        assert not errors, f"not a {name}: {errors}"

    return validate


def test_every_response_validates_against_the_openapi_schemas(api: Api, schema: Any) -> None:
    project = api.project()
    schema("Project", project)
    experiment = api.experiment()
    schema("Experiment", experiment)
    listed = api.ok(api.client.get("/v1/experiment", params={"project_name": "demo"}))
    assert [e["id"] for e in listed["objects"]] == [experiment["id"]]
    for each in listed["objects"]:
        schema("Experiment", each)
    schema("Experiment", api.ok(api.client.get(f"/v1/experiment/{experiment['id']}")))
    request = {
        "events": [
            row_event("r1", output="Paris", expected="Paris", scores={"exact": 1.0}),
            span_event("s1"),
            wire.delete_event("s0"),
        ]
    }
    schema("InsertExperimentEventRequest", request)  # the test's own input is a real request
    url = f"/v1/experiment/{experiment['id']}/"
    inserted = api.ok(api.client.post(url + "insert", json=request))
    schema("InsertEventsResponse", inserted)
    first = api.ok(api.client.post(url + "fetch", json={"limit": 1}))
    assert first["cursor"]
    schema("FetchExperimentEventsResponse", first)
    last = api.ok(api.client.get(url + "fetch", params={"cursor": first["cursor"]}))
    assert "cursor" not in last
    schema("FetchExperimentEventsResponse", last)
    assert {e["id"] for e in first["events"] + last["events"]} == {"r1", "s1"}


# -- projects and experiments --------------------------------------------------------------


def test_projects_and_experiments_are_created_once(api: Api, store: SQLiteStore) -> None:
    project = api.project("demo")
    assert api.project("demo") == project
    assert api.project("other")["id"] != project["id"]
    experiment = api.experiment("nightly")
    again = api.experiment("nightly")
    assert again == experiment
    assert experiment["project_id"] == project["id"]
    assert experiment["public"] is False
    assert api.experiment("weekly")["id"] != experiment["id"]
    assert [(e.project, e.name) for e in store.list_experiments()] == [
        ("demo", "nightly"),
        ("demo", "weekly"),
    ]


def test_experiments_are_listed_and_filtered(api: Api, store: SQLiteStore) -> None:
    nightly = api.experiment("nightly", "demo")
    api.experiment("nightly", "other")
    # Written by the embedded store, not through the API: it gets a project id too.
    embedded = store.get_or_create_experiment("local", "e", git_commit="abc", git_branch="main")

    def names(**params: str) -> list[tuple[str, str]]:
        objects = api.ok(api.client.get("/v1/experiment", params=params))["objects"]
        return sorted((e["project_id"], e["name"]) for e in objects)

    assert len(names()) == 3
    assert names(project_name="demo") == [(nightly["project_id"], "nightly")]
    assert names(project_id=nightly["project_id"], experiment_name="nightly") == [
        (nightly["project_id"], "nightly")
    ]
    assert names(experiment_name="nope") == []
    (local,) = api.ok(api.client.get("/v1/experiment", params={"project_name": "local"}))["objects"]
    assert local["id"] == embedded.id
    assert local["repo_info"] == {"commit": "abc", "branch": "main"}
    assert uuid.UUID(local["project_id"])


def test_experiment_errors(api: Api) -> None:
    project = api.project()
    response = api.client.post(
        "/v1/experiment", json={"project_id": str(uuid.uuid4()), "name": "x"}
    )
    assert response.status_code == 404
    assert "no project" in response.json()["error"]
    for body in ({"project_id": project["id"], "name": ""}, {"name": "x"}):
        response = api.client.post("/v1/experiment", json=body)
        assert response.status_code == 400
        assert ("name" if "name" in body and body["name"] == "" else "project_id") in (
            response.json()["error"]
        )


def test_ensure_new_makes_a_new_experiment_under_a_new_unique_name(
    api: Api, store: SQLiteStore
) -> None:
    """Braintrust's ``ensure_new`` (its SDK's default): a name that is taken gets the first
    free numbered suffix; without ``ensure_new`` the existing experiment comes back."""
    first = api.experiment("nightly")
    project_id = first["project_id"]
    again = {"project_id": project_id, "name": "nightly", "ensure_new": True}
    second = api.ok(api.client.post("/v1/experiment", json=again))
    third = api.ok(api.client.post("/v1/experiment", json=again))
    assert [first["name"], second["name"], third["name"]] == ["nightly", "nightly-1", "nightly-2"]
    assert len({first["id"], second["id"], third["id"]}) == 3
    # A free name is kept; reusing is create-or-get, as ever.
    fresh = {"project_id": project_id, "name": "weekly", "ensure_new": True}
    assert api.ok(api.client.post("/v1/experiment", json=fresh))["name"] == "weekly"
    reused = api.ok(api.client.post("/v1/experiment", json={**again, "ensure_new": False}))
    assert reused["id"] == first["id"]
    # Names are unique per project: another project's "nightly" is its own.
    other = api.project("other")["id"]
    elsewhere = {"project_id": other, "name": "nightly", "ensure_new": True}
    assert api.ok(api.client.post("/v1/experiment", json=elsewhere))["name"] == "nightly"
    # No name: one is made (unique too).
    unnamed = [api.ok(api.client.post("/v1/experiment", json={"project_id": project_id}))]
    unnamed.append(api.ok(api.client.post("/v1/experiment", json={"project_id": project_id})))
    assert unnamed[0]["name"].startswith("experiment-")
    assert unnamed[0]["name"] != unnamed[1]["name"]
    assert sorted(e.name for e in store.list_experiments() if e.project == "demo") == sorted(
        ["nightly", "nightly-1", "nightly-2", "weekly", *(e["name"] for e in unnamed)]
    )


# -- insert and fetch ----------------------------------------------------------------------


def test_rows_spans_and_deletes_round_trip(api: Api, store: SQLiteStore) -> None:
    experiment = api.experiment()
    first = row_event("r1", version_id="v1", span_id="1" * 16, output="Lyon", status="failed")
    api.insert(experiment["id"], [first, row_event("r2"), span_event("s1"), span_event("s2")])
    second = row_event("r1", attempt="attempt-2", version_id="v2", output="Paris")
    deletes = [wire.delete_event("s1"), wire.delete_event("never-there")]
    result = api.insert(experiment["id"], [second, span_event("s3"), *deletes])
    assert result["row_ids"] == ["r1", "s3", "s1", "never-there"]
    # What the write did, counted in its transaction (the HTTP store's new and updated, and
    # the spans its clean-up removed).
    counts = {"new_rows": 0, "updated_rows": 1, "superseded_rows": 0, "duplicate_rows": 0}
    assert result["evalrows"] == {**counts, "deleted_span_ids": ["s1"]}

    events = api.fetch_all(experiment["id"])
    assert Counter(e["id"] for e in events) == {"r1": 2, "r2": 1, "s2": 1, "s3": 1}
    xacts = [e["_xact_id"] for e in events]
    assert xacts == sorted(xacts, reverse=True)
    assert [int(x) for x in xacts] == sorted((int(x) for x in xacts), reverse=True)
    kept = latest(events)
    assert kept["r1"]["output"] == "Paris"
    assert kept["r1"]["metadata"]["evalrows"]["version_id"] == "v2"
    assert kept["r1"]["metadata"]["attemptId"] == "attempt-2"
    assert all("span_parents" not in kept[row_id] for row_id in ("r1", "r2"))
    assert kept["s3"]["span_parents"] == ["p" * 16]
    assert {e["experiment_id"] for e in events} == {experiment["id"]}
    assert {e["project_id"] for e in events} == {experiment["project_id"]}

    # The store holds what the embedded store would: versions, and a root span per row.
    assert [row.version_id for row in store.history(experiment["id"], "r1")] == ["v1", "v2"]
    (r1,) = store.latest_rows(experiment["id"], ["r1"])
    assert (r1.output, r1.attempt_id, r1.version) == ("Paris", "attempt-2", 2)
    spans = {span.span_id: span for span in store.list_spans(experiment["id"])}
    assert "s1" not in spans
    assert {"s2", "s3", "1" * 16} <= set(spans)
    assert wire.is_root_record(spans["1" * 16].model_dump())

    # The old version's root span goes by its span id; a row id or an unknown id is a no-op.
    deleted = [wire.delete_event("1" * 16), wire.delete_event("r2"), wire.delete_event("nope")]
    api.insert(experiment["id"], deleted)
    assert "1" * 16 not in {span.span_id for span in store.list_spans(experiment["id"])}
    assert Counter(e["id"] for e in api.fetch_all(experiment["id"]))["r2"] == 1


def test_a_redelivered_version_is_not_a_new_version(api: Api, store: SQLiteStore) -> None:
    experiment = api.experiment()
    events = [row_event("r1", version_id="v1"), span_event("s1")]
    api.insert(experiment["id"], events)
    api.insert(experiment["id"], events)
    fetched = api.fetch_all(experiment["id"])
    assert Counter(e["id"] for e in fetched) == {"r1": 1, "s1": 1}
    assert len(store.history(experiment["id"], "r1")) == 1


def test_plain_braintrust_events_are_rows_and_spans(api: Api, store: SQLiteStore) -> None:
    experiment = api.experiment()
    for output in ("a", "b"):
        plain = {"id": "row", "input": {"q": 1}, "output": output, "scores": {"s": None}}
        api.insert(experiment["id"], [plain])
    child = {"id": "child", "span_parents": ["x"], "root_span_id": "t", "span_id": "child"}
    api.insert(experiment["id"], [child])
    assert [row.output for row in store.history(experiment["id"], "row")] == ["a", "b"]
    assert latest(api.fetch_all(experiment["id"]))["row"]["output"] == "b"
    assert [span.span_id for span in store.list_spans(experiment["id"]) if span.span_parents] == [
        "child"
    ]


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_pages_return_every_event_exactly_once(api: Api, method: str) -> None:
    experiment = api.experiment()
    url = f"/v1/experiment/{experiment['id']}/fetch"
    for batch in range(5):
        api.insert(
            experiment["id"],
            [row_event(f"r{i}", output=batch) for i in range(4)] + [span_event(f"s{batch}")],
        )
    seen: list[tuple[str, str]] = []
    cursor: str | None = None
    pages = 0
    while True:
        if method == "POST":
            body = {"limit": 3, "cursor": cursor, "evalrows_all_versions": True}
            response = api.client.post(url, json=body)
        else:
            params = {"limit": "3", "evalrows_all_versions": "true"}
            params.update({"cursor": cursor} if cursor else {})
            response = api.client.get(url, params=params)
        page = api.ok(response)
        pages += 1
        assert len(page["events"]) <= 3
        seen.extend((e["id"], e["_xact_id"]) for e in page["events"])
        cursor = page.get("cursor")
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 25
    assert pages == 9
    assert [x for _, x in seen] == sorted((x for _, x in seen), reverse=True)
    assert Counter(i for i, _ in seen) == {
        **{f"r{i}": 5 for i in range(4)},
        **{f"s{b}": 1 for b in range(5)},
    }
    everything = api.ok(api.client.post(url, json={"evalrows_all_versions": True}))
    assert len(everything["events"]) == 25 and "cursor" not in everything
    # As Braintrust's clients read it: the latest version of each row, newest first.
    latest_only = api.ok(api.client.post(url))
    assert "cursor" not in latest_only
    assert Counter(e["id"] for e in latest_only["events"]) == {
        **{f"r{i}": 1 for i in range(4)},
        **{f"s{b}": 1 for b in range(5)},
    }
    assert {e["output"] for e in latest_only["events"] if e["id"].startswith("r")} == {4}


def test_attempt_events_are_kept_as_attempts_and_fetched_after_the_events(
    api: Api, store: SQLiteStore, schema: Any
) -> None:
    from pytest_evalrows.core.records import Attempt

    experiment = api.experiment()
    attempts = [
        Attempt(id=f"a{i}", experiment_id=experiment["id"], started=float(10 + i), host="h")
        for i in range(3)
    ]
    attempts[2].ended, attempts[2].report = 20.0, {"rows_written": 1, "statuses": {"passed": 1}}
    request = {"events": [row_event("r1"), span_event("s1")]}
    api.insert(experiment["id"], request["events"])
    for attempt in attempts:
        body = {"events": [wire.attempt_event(attempt)]}
        schema("InsertExperimentEventRequest", body)
        api.insert(experiment["id"], body["events"])
    # Saved again at the session's end: still one attempt.
    api.insert(experiment["id"], [wire.attempt_event(attempts[2])])
    assert store.list_attempts(experiment["id"]) == attempts
    assert [row.row_id for row in store.latest_rows(experiment["id"])] == ["r1"]
    assert {span.row_id for span in store.list_spans(experiment["id"])} == {"r1"}
    url = f"/v1/experiment/{experiment['id']}/fetch"
    ids: list[str] = []
    cursor = None
    while True:
        body = {"limit": 2, "cursor": cursor, "evalrows_all_versions": True}
        page = api.ok(api.client.post(url, json=body))
        schema("FetchExperimentEventsResponse", page)
        assert 0 < len(page["events"]) <= 2
        ids += [event["id"] for event in page["events"]]
        cursor = page.get("cursor")
        if cursor is None:
            break
    assert ids == ["s1", "r1", *(f"evalrows-attempt-a{i}" for i in range(3))]
    fetched = api.fetch_all(experiment["id"])
    assert [wire.event_attempt(e, experiment["id"]) for e in fetched[2:]] == attempts


# -- bad requests --------------------------------------------------------------------------

GOOD = [row_event("good"), span_event("good-span")]
UNKNOWN_KIND = {"id": "r", "metadata": {"evalrows": {"kind": "x"}}}
BAD_ATTEMPT = {"id": "a", "metadata": {"evalrows": {"kind": "attempt", "attempt": {"id": "a"}}}}
BAD_BODIES: dict[str, tuple[Any, str]] = {
    "not json": (b"{not json", "not JSON"),
    "a list": ([], "body"),
    "no events": ({}, "events"),
    "events not a list": ({"events": {"id": "x"}}, "events"),
    "event not an object": ({"events": [*GOOD, "x"]}, "events[2]"),
    "no id": ({"events": [*GOOD, {"input": 1}]}, "events[2].id"),
    "id not a string": ({"events": [*GOOD, {"id": 3}]}, "events[2].id"),
    "score above 1": ({"events": [*GOOD, {"id": "r", "scores": {"a": 1.5}}]}, "scores.a"),
    "score as a string": ({"events": [*GOOD, {"id": "r", "scores": {"a": "0.5"}}]}, "scores.a"),
    "score a boolean": ({"events": [*GOOD, {"id": "r", "scores": {"a": True}}]}, "scores.a"),
    "metric not a number": ({"events": [*GOOD, {"id": "r", "metrics": {"start": "x"}}]}, "start"),
    "parents not strings": ({"events": [*GOOD, {"id": "r", "span_parents": [1]}]}, "span_parents"),
    "same id twice": ({"events": [*GOOD, row_event("good")]}, "also events[0]"),
    "merge paths": ({"events": [*GOOD, {"id": "r", "_merge_paths": "input"}]}, "_merge_paths"),
    "unknown kind": ({"events": [*GOOD, UNKNOWN_KIND]}, "kind"),
    "attempt without a start": ({"events": [*GOOD, BAD_ATTEMPT]}, "started"),
    "bad status": ({"events": [*GOOD, row_event("r")]}, "status"),
}
BAD_BODIES["bad status"][0]["events"][2]["metadata"]["evalrows"]["status"] = "great"


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_a_bad_body_is_a_400_and_writes_nothing(api: Api, store: SQLiteStore, case: str) -> None:
    body, mentions = BAD_BODIES[case]
    experiment = api.experiment()
    url = f"/v1/experiment/{experiment['id']}/insert"
    if isinstance(body, bytes):
        response = api.client.post(url, content=body, headers={"Content-Type": "application/json"})
    else:
        response = api.client.post(url, json=body)
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert isinstance(message, str) and message
    assert mentions in message
    assert store.fetch_events(experiment["id"], limit=100) == []
    assert store.list_spans(experiment["id"]) == []


@pytest.mark.parametrize(
    ("how", "query"),
    [
        ("POST", {"cursor": "garbage!"}),
        ("POST", {"limit": -1}),
        ("POST", {"limit": "10"}),
        ("GET", {"limit": "ten"}),
        ("GET", {"cursor": "YmVmb3JlOng="}),
    ],
)
def test_a_bad_fetch_is_a_400(api: Api, how: str, query: dict[str, Any]) -> None:
    experiment = api.experiment()
    url = f"/v1/experiment/{experiment['id']}/fetch"
    if how == "POST":
        response = api.client.post(url, json=query)
    else:
        response = api.client.get(url, params=query)
    assert response.status_code == 400, response.text
    assert response.json()["error"]


def test_unknown_experiment_is_a_404(api: Api) -> None:
    missing = str(uuid.uuid4())
    for response in (
        api.client.post(f"/v1/experiment/{missing}/insert", json={"events": [row_event("r")]}),
        api.client.post(f"/v1/experiment/{missing}/fetch", json={}),
        api.client.get(f"/v1/experiment/{missing}/fetch"),
        api.client.get(f"/v1/experiment/{missing}"),
    ):
        assert response.status_code == 404, response.text
        assert missing in response.json()["error"]
    response = api.client.get("/v1/nothing")
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}


def test_bad_events_are_a_400_whether_or_not_the_experiment_exists(api: Api) -> None:
    """The body is judged first: a client learns what is wrong with what it sent."""
    twice = {"events": [row_event("r"), row_event("r")]}
    for target in (api.experiment("e")["id"], str(uuid.uuid4())):
        response = api.client.post(f"/v1/experiment/{target}/insert", json=twice)
        assert response.status_code == 400, response.text
        assert "one event per id" in response.json()["error"]


def test_the_token_is_checked_on_every_request(store: SQLiteStore) -> None:
    token = "s3cret-token"
    with TestClient(create_app(store, token=token), base_url=LOCAL) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
            for response in (
                client.post("/v1/project", json={"name": "p"}, headers=headers),
                client.get("/v1/experiment", headers=headers),
                client.post("/v1/experiment/x/fetch", json={}, headers=headers),
            ):
                assert response.status_code == 401
                assert response.json()["error"]
                assert token not in response.text
        assert store.list_projects() == []
        good = {"Authorization": f"Bearer {token}"}
        assert client.post("/v1/project", json={"name": "p"}, headers=good).status_code == 200


# -- the store underneath ------------------------------------------------------------------


def test_a_store_from_before_the_api_gets_projects_and_write_order(tmp_path: Path) -> None:
    """Migrations 0003 and 0004 on a file that 0001 and 0002 made, with rows in it."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    try:
        old.execute("CREATE TABLE evalrows_migrations (name TEXT PRIMARY KEY, applied REAL)")
        for name, script in MIGRATIONS[:2]:
            old.executescript(script)
            old.execute("INSERT INTO evalrows_migrations VALUES (?, 0)", (name,))
        old.execute("INSERT INTO experiments VALUES ('e1', 'demo', 'nightly', 1.0, NULL, NULL)")
        versions: Counter[str] = Counter()
        for index, row_id in enumerate(["r1", "r2", "r1"]):
            versions[row_id] += 1
            body = wire.event_row(row_event(row_id, version_id=f"v{index}")).model_dump_json()
            old.execute(
                "INSERT INTO row_versions VALUES ('e1', ?, ?, ?, 'a', 2.0, ?)",
                (row_id, versions[row_id], f"v{index}", body),
            )
        old.commit()
    finally:
        old.close()
    with SQLiteStore(path) as store:
        (project,) = store.list_projects()
        assert project.name == "demo" and uuid.UUID(project.id).version == 4
        events = store.fetch_events("e1", limit=10)
        assert [(e.row.row_id, e.row.version_id) for e in events if e.row] == [
            ("r1", "v2"),
            ("r2", "v1"),
            ("r1", "v0"),
        ]
        store.write("e1", [wire.event_row(row_event("r3", version_id="v3"))], [])
        assert store.fetch_events("e1", limit=1)[0].xact > events[0].xact


# -- the command ---------------------------------------------------------------------------


def test_serve_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    code = main(["serve", "--store", str(tmp_path / "s.db"), "--port", "0"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    (line,) = err.splitlines()
    assert 'pip install "pytest-evalrows[server]"' in line
    assert not (tmp_path / "s.db").exists()


def test_serve_runs_as_a_real_server_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    token = "e2e-token"
    command = [sys.executable, "-m", "pytest_evalrows.cli", "serve", "--port", "0"]
    command += ["--store", str(db)]
    env = {**os.environ, "EVALROWS_SERVER_TOKEN": token}
    with (
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        ) as process,
        ThreadPoolExecutor(1) as pool,
    ):
        try:
            assert process.stdout is not None
            line = pool.submit(process.stdout.readline).result(timeout=60)
            ready = READY.match(line.strip())
            assert ready, line
            assert Path(ready[1]) == db.resolve() and db.exists()
            base = f"http://127.0.0.1:{ready[2]}"
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
                project = client.post("/v1/project", json={"name": "demo"})
                assert project.status_code == 200, project.text
                assert (
                    client.get("/v1/experiment", headers={"Authorization": ""}).status_code == 401
                )
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert token not in out + err
    with SQLiteStore(db, create=False) as store:
        assert [project.name for project in store.list_projects()] == ["demo"]


def test_serve_serves_only_a_local_store(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--store", "https://api.braintrust.dev", "--port", "0"])
    _, err = capsys.readouterr()
    assert code == 1
    assert err.splitlines() == [
        "evalrows: error: evalrows serve serves a SQLite file or a PostgreSQL database, not "
        "https://api.braintrust.dev"
    ]
