"""The calls the Braintrust SDK makes of ``evalrows serve``, one by one, as it makes them (the
SDK itself runs against a real server in ``test_braintrust_sdk``): login, version, ``/logs3``
with merges, comments and score spans, ``/btql``, a project by id, the base experiment and
the summary."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support.sdk_api import (
    AUTH,
    LOCAL,
    TOKEN,
    TestClient,
    child,
    client,
    experiment,
    fetched,
    logs3,
    ok,
    root,
    store,
)
from support.store import make_row

from pytest_evalrows.braintrust import sdk_events, wire
from pytest_evalrows.braintrust.server import create_app
from pytest_evalrows.store.sqlite import SQLiteStore

__all__ = ["client", "store"]  # the fixtures


# -- login and version -------------------------------------------------------------------------


def test_login_names_this_server_as_the_client_reached_it(client: TestClient) -> None:
    [org] = ok(client.post("/api/apikey/login"))["org_info"]
    assert org["api_url"] == LOCAL
    assert org["name"] == "evalrows" and org["id"]
    [org] = ok(client.post("/api/apikey/login", headers={"Host": "localhost:8000"}))["org_info"]
    assert org["api_url"] == "http://localhost:8000"


def test_login_and_every_sdk_call_need_the_token(store: SQLiteStore) -> None:
    with TestClient(create_app(store, token=TOKEN), base_url=LOCAL) as anonymous:
        for method, path in (
            ("POST", "/api/apikey/login"),
            ("GET", "/version"),
            ("POST", "/logs3"),
            ("POST", "/btql"),
            ("POST", "/api/base_experiment/get_id"),
            ("GET", "/v1/project/x"),
        ):
            answer = anonymous.request(method, path)
            assert answer.status_code == 401, (path, answer.text)
            wrong = anonymous.request(method, path, headers={"Authorization": "Bearer no"})
            assert wrong.status_code == 401


def test_version_promises_no_logs3_overflow(client: TestClient) -> None:
    # With `logs3_payload_max_bytes` the SDK sends a row over its request size to
    # /logs3/overflow, which this server does not serve: the row would be lost.
    version = ok(client.get("/version"))
    assert version["name"] == "evalrows serve"
    assert "logs3_payload_max_bytes" not in version


def test_logs3_takes_a_body_without_content_type_only_with_authorization(
    store: SQLiteStore, client: TestClient
) -> None:
    made = experiment(client)
    assert logs3(client, [root(made["id"], "r1", "t1", input=1)]).status_code == 200
    with TestClient(create_app(store), base_url=LOCAL) as tokenless:
        body = httpx.Request("POST", "/", json={"rows": []}).content
        # What a web page could send anywhere: refused, as every body not declared JSON.
        assert tokenless.post("/logs3", content=body).status_code == 415
        with_auth = tokenless.post("/logs3", content=body, headers={"Authorization": "Bearer x"})
        assert with_auth.status_code == 200
        # Other paths want their Content-Type still.
        answer = tokenless.post("/v1/project", content=b'{"name": "p"}', headers=AUTH)
        assert answer.status_code == 415


def test_logs3_rows_need_an_experiment_this_server_has(client: TestClient) -> None:
    answer = logs3(client, [{"id": "x", "project_id": "p", "log_id": "g"}])
    assert answer.status_code == 400
    assert "experiment_id" in answer.json()["error"]
    answer = logs3(client, [root("no-such-experiment", "r", "t")])
    assert answer.status_code == 404


# -- logs3: rows, spans, merges, comments ------------------------------------------------------


def test_a_root_event_is_a_row_and_its_string_error_fails_it(
    store: SQLiteStore, client: TestClient
) -> None:
    made = experiment(client)
    traceback = "Traceback (most recent call last):\n  File \"x.py\"\nKeyError: 'k'\n"
    failing = root(made["id"], "bad", "t1", input="q", error=traceback)
    fine = root(made["id"], "good", "t2", input="p", output="o", scores={"s": 1, "n": None})
    assert ok(logs3(client, [failing, fine]))["evalrows"]["new_rows"] == 2
    rows = {row.row_id: row for row in store.latest_rows(made["id"])}
    assert (rows["bad"].status, rows["good"].status) == ("failed", "passed")
    assert rows["bad"].error is not None
    assert (rows["bad"].error.type, rows["bad"].error.message) == ("KeyError", "'k'")
    assert rows["good"].scores == {"s": 1.0}  # a null score is no score
    assert fetched(client, made["id"])["bad"]["error"] == traceback


def test_merges_deep_merge_in_order_and_follow_merge_paths(
    store: SQLiteStore, client: TestClient
) -> None:
    made = experiment(client)
    first = root(made["id"], "r", "t", input={"a": {"b": 10}, "c": {"d": 20}}, tags=["x"])
    ok(logs3(client, [first]))
    for merge in (
        {"input": {"a": {"q": 30}}, "tags": ["y"], "metrics": {"end": 5.0}},
        {
            "input": {"a": {"q2": 1}, "c": {"e": 1}},
            "output": {"o": 1},
            "_merge_paths": [["input", "a"]],
        },
    ):
        event = {"id": "r", "experiment_id": made["id"], "_is_merge": True, **merge}
        ok(logs3(client, [event]))
    ok(logs3(client, [{**first, "_is_merge": True, "input": {"a": {"z": 0}}, "tags": ["x"]}]))
    event = fetched(client, made["id"])["r"]
    # `a` replaced whole by the second merge, `c` merged into; then `a` merged into again.
    assert event["input"] == {"a": {"q2": 1, "z": 0}, "c": {"d": 20, "e": 1}}
    assert (event["output"], event["tags"]) == ({"o": 1}, ["x", "y"])
    [row] = store.history(made["id"], "r")
    assert row.metrics.end == 5.0


def test_a_merge_into_an_id_not_yet_written_writes_it(
    store: SQLiteStore, client: TestClient
) -> None:
    made = experiment(client)
    parent = root(made["id"], "r", "t")
    early = {**child(made["id"], "c", parent, output="early"), "_is_merge": True}
    ok(logs3(client, [early]))  # before its parent, and as a merge
    ok(logs3(client, [parent]))
    spans = {span.span_id: span for span in store.list_spans(made["id"])}
    assert spans["span-c"].row_id == "r"  # under its row, which came later
    assert spans["span-c"].attributes["braintrust.output"] == "early"
    assert fetched(client, made["id"])["c"]["output"] == "early"


def test_a_rows_scores_are_its_score_spans_scores(store: SQLiteStore, client: TestClient) -> None:
    made = experiment(client)
    parent = root(made["id"], "r", "t", scores={"own": 0.5})
    score = child(
        made["id"],
        "s",
        parent,
        scores={"exact": 1.0},
        span_attributes={"name": "exact", "type": "score"},
    )
    ok(logs3(client, [score]))  # the score span first
    ok(logs3(client, [parent]))
    [row] = store.latest_rows(made["id"])
    assert row.scores == {"own": 0.5, "exact": 1.0}
    later = {**score, "_is_merge": True, "scores": {"exact": 0.0}}
    ok(logs3(client, [later]))
    [row] = store.latest_rows(made["id"])
    assert row.scores == {"own": 0.5, "exact": 0.0}


def test_feedback_and_comments_land_on_the_event_they_name(
    store: SQLiteStore, client: TestClient
) -> None:
    made = experiment(client)
    parent = root(made["id"], "r", "t")
    ok(logs3(client, [parent, child(made["id"], "c", parent)]))
    feedback = {"id": "r", "experiment_id": made["id"], "_is_merge": True, "scores": {"h": 1}}
    comments = [
        {
            "id": f"comment-{target}",
            "experiment_id": made["id"],
            "origin": {"id": target},
            "comment": {"text": f"on {target}"},
            "created": "2026-01-01T00:00:00Z",
            "_audit_source": "external",
            "_audit_metadata": {"who": "me"},
        }
        for target in ("r", "c")
    ]
    ok(logs3(client, [feedback, *comments]))
    events = fetched(client, made["id"])
    assert events["r"]["scores"] == {"h": 1}
    assert [c["text"] for c in events["r"]["comments"]] == ["on r"]
    assert events["r"]["comments"][0]["metadata"] == {"who": "me"}
    assert [c["text"] for c in events["c"]["comments"]] == ["on c"]
    assert "comment-r" not in events  # a comment is not an event of its own here
    [row] = store.latest_rows(made["id"])
    assert row.scores == {"h": 1.0}


# -- reading -------------------------------------------------------------------------------------


def test_btql_answers_the_sdks_object_fetch(client: TestClient) -> None:
    made = experiment(client)
    parent = root(made["id"], "r", "t", output="o")
    ok(logs3(client, [parent, child(made["id"], "c", parent)]))
    query: dict[str, Any] = {
        "select": [{"op": "star"}],
        "from": {
            "op": "function",
            "name": {"op": "ident", "name": ["experiment"]},
            "args": [{"op": "literal", "value": made["id"]}],
        },
        "cursor": None,
        "limit": 1,
    }
    first = ok(client.post("/btql", json={"query": query, "use_columnstore": False}))
    assert len(first["data"]) == 1 and first["cursor"]
    rest = ok(client.post("/btql", json={"query": {**query, "cursor": first["cursor"]}}))
    assert {e["id"] for e in first["data"] + rest["data"]} == {"r", "c"}
    other = {**query, "from": {**query["from"], "name": {"op": "ident", "name": ["dataset"]}}}
    answer = client.post("/btql", json={"query": other})
    assert answer.status_code == 400 and "experiment" in answer.json()["error"]


def test_a_project_by_id(client: TestClient) -> None:
    made = experiment(client, project="by-id")
    project = ok(client.get(f"/v1/project/{made['project_id']}"))
    assert (project["id"], project["name"]) == (made["project_id"], "by-id")
    assert client.get("/v1/project/nope").status_code == 404


def test_the_summary_compares_with_the_experiment_before(client: TestClient) -> None:
    before = experiment(client, "run")
    after = experiment(client, "run")  # ensure_new: run-1
    assert after["name"] == "run-1"
    for made, scores in ((before, (1.0, 0.0, 0.5)), (after, (1.0, 1.0, 0.0))):
        rows = []
        for number, score in enumerate(scores):
            rows.append(root(made["id"], f"r{number}", f"t{number}", scores={"s": score}))
        ok(logs3(client, rows))
    url = f"/v1/experiment/{after['id']}/summarize"
    summary = ok(client.get(url, params={"summarize_scores": "true"}))
    assert summary["comparison_experiment_name"] == "run"
    assert summary["experiment_url"] == f"{LOCAL}/experiments/{after['id']}"
    assert summary["scores"] == {
        "s": {
            "name": "s",
            "score": pytest.approx(2 / 3),
            "diff": pytest.approx(2 / 3 - 0.5),
            "improvements": 1,
            "regressions": 1,
        }
    }
    first = ok(client.get(f"/v1/experiment/{before['id']}/summarize"))
    assert first["comparison_experiment_name"] is None
    assert first["scores"]["s"]["improvements"] == 0 and "diff" not in first["scores"]["s"]
    chosen = ok(client.get(url, params={"comparison_experiment_id": after["id"]}))
    assert chosen["scores"]["s"]["diff"] == 0
    assert client.get(url, params={"comparison_experiment_id": "nope"}).status_code == 404
    base = ok(client.post("/api/base_experiment/get_id", json={"id": after["id"]}))
    assert base == {"base_exp_id": before["id"], "base_exp_name": "run"}
    none = client.post("/api/base_experiment/get_id", json={"id": before["id"]})
    assert none.status_code == 400  # the SDK reads it as "no base experiment"


# -- the mapping, on its own ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            "Traceback (most recent call last):\n  File 'x'\nValueError: no good\n",
            ("ValueError", "no good"),
        ),
        ("Traceback (most recent call last):\n  x\nKeyboardInterrupt\n", ("KeyboardInterrupt", "")),
        ("something broke", ("Error", "something broke")),
        ({"type": "T", "message": "m", "traceback": "tb"}, ("T", "m")),
    ],
)
def test_an_error_of_any_shape_is_a_type_and_a_message(
    error: Any, expected: tuple[str, str]
) -> None:
    info = sdk_events.error_info(error)
    assert info is not None and (info["type"], info["message"]) == expected


def test_merge_paths_move_to_where_the_fields_are_kept() -> None:
    event = {"id": "r", "_merge_paths": [["input", "a"], ["span_attributes"]], "input": {}}
    assert sdk_events.row_patch(event)["replace_paths"] == [
        ["input", "a"],
        ["metadata", "evalrows", "braintrust", "span_attributes"],
    ]
    assert sdk_events.span_patch(event)["replace_paths"] == [
        ["attributes", "braintrust.input", "a"],
        ["attributes", "braintrust.span_attributes"],
    ]


def test_feedback_on_a_row_this_plugin_wrote_keeps_it_this_plugins_row(
    store: SQLiteStore, client: TestClient
) -> None:
    """The SDK reads rows this plugin wrote and may give feedback on them: their scores and a
    comment land on the row, which stays what it was (its status, version, attempt)."""
    made = experiment(client)
    row = make_row("test_x.py::test_y[a]", "attempt-1", status="skipped", output="o")
    insert = f"/v1/experiment/{made['id']}/insert"
    ok(client.post(insert, json={"events": [wire.row_event(row.model_dump(mode="json"))]}))
    feedback = {"id": row.row_id, "experiment_id": made["id"], "_is_merge": True}
    comment = {
        "id": "comment-1",
        "experiment_id": made["id"],
        "origin": {"id": row.row_id},
        "comment": {"text": "looked at it"},
    }
    ok(logs3(client, [{**feedback, "scores": {"human": 0.25}}, comment]))
    [kept] = store.latest_rows(made["id"])
    assert (kept.status, kept.version_id) == ("skipped", row.version_id)
    assert kept.attempt_id == "attempt-1"
    assert kept.scores == {**row.scores, "human": 0.25}
    everything = {"evalrows_all_versions": True}
    [event] = ok(client.post(f"/v1/experiment/{made['id']}/fetch", json=everything))["events"]
    # Served as this plugin's row (the HTTP store reads it so), with the comment beside.
    assert event["metadata"]["evalrows"]["status"] == "skipped"
    assert event["metadata"]["attemptId"] == "attempt-1"
    assert [c["text"] for c in event["comments"]] == ["looked at it"]
    assert wire.event_row(event).status == "skipped"
