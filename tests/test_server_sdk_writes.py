"""How ``evalrows serve`` writes what the Braintrust SDK sends when it goes wrong or comes
again: a refused request writes nothing, a request sent again writes no second version, a
comment may come before its event; null scores are kept; a fetch's page is at most 1000
events, whatever limit it asks for."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from support.sdk import serving
from support.sdk_api import TestClient, child, client, experiment, fetched, logs3, ok, root, store

from pytest_evalrows.braintrust.server_writes import PendingComments
from pytest_evalrows.store.sqlite import SQLiteStore

__all__ = ["client", "store"]  # the fixtures


def comment(experiment_id: str, comment_id: str, target: str, text: str) -> dict[str, Any]:
    return {
        "id": comment_id,
        "experiment_id": experiment_id,
        "origin": {"id": target},
        "comment": {"text": text},
        "created": "2026-01-01T00:00:00Z",
        "_audit_source": "external",
    }


def test_a_request_sent_again_writes_no_second_version(
    store: SQLiteStore, client: TestClient
) -> None:
    made = experiment(client)
    row = root(made["id"], "r", "t", input=1, scores={"s": 1}, created="2026-01-01T00:00:00Z")
    for _ in range(3):  # as the SDK retries a request whose answer it did not get
        ok(logs3(client, [row]))
    assert [v.version for v in store.history(made["id"], "r")] == [1]
    # Logged again with other values (or at another time, as the SDK stamps each log): a
    # version of its own, as Braintrust keeps it.
    ok(logs3(client, [{**row, "input": 2}]))
    ok(logs3(client, [{**row, "created": "2026-01-01T00:00:01Z"}]))
    assert [v.version for v in store.history(made["id"], "r")] == [1, 2, 3]
    assert fetched(client, made["id"])["r"]["input"] == 1


def test_values_written_again_after_others_without_a_created_time_are_the_latest(
    store: SQLiteStore, client: TestClient
) -> None:
    # A client that stamps no `created` (curl on the REST API): A, B, then A again is three
    # versions with A the latest, as Braintrust keeps them, not a retry of the first.
    made = experiment(client)
    url = f"/v1/experiment/{made['id']}/insert"
    for value in (1, 2, 1):
        ok(client.post(url, json={"events": [{"id": "r", "input": value}]}))
    assert [(v.version, v.input) for v in store.history(made["id"], "r")] == [
        (1, 1),
        (2, 2),
        (3, 1),
    ]
    assert fetched(client, made["id"])["r"]["input"] == 1


def test_one_event_sent_to_two_experiments_is_a_row_of_each(
    store: SQLiteStore, client: TestClient
) -> None:
    first, second = experiment(client, "a"), experiment(client, "b")
    event = root("", "r", "t", input=1, created="2026-01-01T00:00:00Z")
    del event["experiment_id"]  # as /v1/.../insert takes it: the path names the experiment
    for made in (first, second):
        url = f"/v1/experiment/{made['id']}/insert"
        ok(client.post(url, json={"events": [event]}))
    assert [row.row_id for row in store.latest_rows(first["id"])] == ["r"]
    assert [row.row_id for row in store.latest_rows(second["id"])] == ["r"]


def test_a_refused_logs3_writes_nothing_in_any_experiment(
    store: SQLiteStore, client: TestClient
) -> None:
    first, second = experiment(client, "a"), experiment(client, "b")
    good = root(first["id"], "r", "t", input=1)
    # A merge into a version that is not there: refused, after the first experiment's
    # rows were checked, and before they were written.
    bad = {
        "id": "x",
        "experiment_id": second["id"],
        "_is_merge": True,
        "scores": {"s": 1},
        "metadata": {"evalrows": {"version_id": "no-such-version"}},
    }
    answer = logs3(client, [good, bad])
    assert answer.status_code == 400, answer.text
    assert store.latest_rows(first["id"]) == []
    assert store.list_spans(first["id"]) == []


def test_a_comment_before_its_event_lands_on_it_when_it_comes(client: TestClient) -> None:
    made = experiment(client)
    early = comment(made["id"], "c1", "later", "before the row")
    ok(logs3(client, [early]))  # Braintrust takes it too: its event may be in another batch
    assert "later" not in fetched(client, made["id"])
    ok(logs3(client, [root(made["id"], "other", "t0")]))  # not yet
    ok(logs3(client, [root(made["id"], "later", "t1", input=1)]))
    events = fetched(client, made["id"])
    assert [c["text"] for c in events["later"]["comments"]] == ["before the row"]
    assert "comments" not in events["other"]
    ok(logs3(client, [root(made["id"], "third", "t2")]))  # applied once, not again
    assert [c["text"] for c in fetched(client, made["id"])["later"]["comments"]] == [
        "before the row"
    ]


def test_null_scores_are_kept_and_feedback_may_set_one_null(
    store: SQLiteStore, client: TestClient
) -> None:
    made = experiment(client)
    ok(logs3(client, [root(made["id"], "r", "t", scores={"s": 1, "nul": None})]))
    assert fetched(client, made["id"])["r"]["scores"] == {"s": 1, "nul": None}
    [row] = store.latest_rows(made["id"])
    assert row.scores == {"s": 1}  # a row's scores are numbers: a null one is no mean's
    feedback = {"id": "r", "experiment_id": made["id"], "_is_merge": True}
    ok(logs3(client, [{**feedback, "scores": {"s": None, "nul": 0.5}}]))
    assert fetched(client, made["id"])["r"]["scores"] == {"s": None, "nul": 0.5}
    [row] = store.latest_rows(made["id"])
    assert row.scores == {"nul": 0.5}
    # `_merge_paths` on scores replaces them whole, nulls too.
    ok(logs3(client, [{**feedback, "scores": {"t": 1}, "_merge_paths": [["scores"]]}]))
    assert fetched(client, made["id"])["r"]["scores"] == {"t": 1}


def test_a_fetch_asking_for_more_than_a_page_gets_a_page_and_a_cursor(
    client: TestClient,
) -> None:
    made = experiment(client)
    rows = [root(made["id"], f"r{index}", f"t{index}") for index in range(1001)]
    ok(logs3(client, rows))
    url = f"/v1/experiment/{made['id']}/fetch"
    for limit in (5000, 0, 2**63 - 1):  # the contract's limit has no maximum; 0 is no limit
        page = ok(client.post(url, json={"limit": limit}))
        assert len(page["events"]) == 1000 and page["cursor"], limit
        rest = ok(client.post(url, json={"limit": limit, "cursor": page["cursor"]}))
        assert len(rest["events"]) == 1 and "cursor" not in rest
    got = ok(client.get(url, params={"limit": "1001"}))
    assert len(got["events"]) == 1000


def test_two_servers_on_one_store_never_hand_out_one_new_name(tmp_path: Path) -> None:
    # Each server names one at a time; two of them read the names taken, then both create
    # the first free one, unless creating is create-only (the listing grows, and with it
    # the time between the two).
    store = str(tmp_path / "served.db")
    with (
        serving(store, tmp_path / "one.log") as one,
        serving(store, tmp_path / "two.log") as two,
    ):
        clients = [
            httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {served.token}"})
            for served in (one, two)
        ]
        try:
            project_id = ok(clients[0].post("/v1/project", json={"name": "p"}))["id"]
            body = {"project_id": project_id, "name": "run", "ensure_new": True}

            def create(index: int) -> str:
                made: str = ok(clients[index % 2].post("/v1/experiment", json=body))["id"]
                return made

            with ThreadPoolExecutor(16) as pool:
                ids = list(pool.map(create, range(120)))
        finally:
            for each in clients:
                each.close()
    assert len(set(ids)) == 120  # each its own experiment


def test_the_summary_has_each_rows_duration_and_tokens(client: TestClient) -> None:
    before, after = experiment(client, "before"), experiment(client, "after")

    def rows(made: dict[str, Any], durations: list[float], tokens: int) -> None:
        ok(
            logs3(
                client,
                [
                    root(
                        made["id"],
                        f"r{index}",
                        f"t{index}",
                        metrics={"start": 100.0, "end": 100.0 + duration, "tokens": tokens},
                    )
                    for index, duration in enumerate(durations)
                ],
            )
        )

    rows(before, [2.0, 2.0], 10)
    rows(after, [1.0, 4.0], 10)
    url = f"/v1/experiment/{after['id']}/summarize"
    metrics = ok(client.get(url, params={"comparison_experiment_id": before["id"]}))["metrics"]
    assert metrics["duration"] == {
        "name": "duration",
        "metric": 2.5,
        "unit": "s",
        "diff": 0.25,  # relative: the SDK prints it as +25.00%
        "improvements": 1,  # lower is better
        "regressions": 1,
    }
    assert metrics["total_tokens"]["metric"] == 10
    assert metrics["total_tokens"]["improvements"] == metrics["total_tokens"]["regressions"] == 0
    assert "prompt_tokens" not in metrics  # no row has one


def test_feedback_on_a_rolled_up_score_stays_when_its_trace_changes_later(
    store: SQLiteStore, client: TestClient
) -> None:
    made = experiment(client)
    parent = root(made["id"], "r", "t")
    task = child(made["id"], "task", parent)
    score = child(made["id"], "s", parent, scores={"exact": 1.0}, span_attributes={"type": "score"})
    ok(logs3(client, [parent, task, score]))
    feedback = {"id": "r", "experiment_id": made["id"], "_is_merge": True}
    ok(logs3(client, [{**feedback, "scores": {"exact": 0.0}}]))  # a person says otherwise
    # Later merges of the trace: the row's end, a span's output.
    ok(logs3(client, [{**parent, "_is_merge": True, "metrics": {"end": 200.0}}]))
    ok(logs3(client, [{**task, "_is_merge": True, "output": "late"}]))
    [row] = store.latest_rows(made["id"])
    assert row.scores == {"exact": 0.0}
    # A score span's new score is the row's again.
    ok(logs3(client, [{**score, "_is_merge": True, "scores": {"exact": 0.5}}]))
    [row] = store.latest_rows(made["id"])
    assert row.scores == {"exact": 0.5}


def test_an_event_reads_back_with_the_time_its_client_created_it(client: TestClient) -> None:
    made = experiment(client)
    stamp = "2026-01-02T03:04:05.678901+00:00"  # as the SDK writes it
    parent = root(made["id"], "r", "t", created=stamp)
    ok(logs3(client, [parent, child(made["id"], "c", parent, created=stamp)]))
    ok(logs3(client, [root(made["id"], "unstamped", "t2")]))
    events = fetched(client, made["id"])
    assert events["r"]["created"] == events["c"]["created"] == stamp
    assert events["unstamped"]["created"].startswith("20")  # when it was written, then


def test_login_behind_a_tls_proxy_names_the_server_by_https(tmp_path: Path) -> None:
    # A proxy on the same machine says the client came by https (uvicorn trusts it from
    # 127.0.0.1 and ::1; FORWARDED_ALLOW_IPS names others): the SDK must call back by https.
    with serving(str(tmp_path / "served.db"), tmp_path / "serve.log") as served:
        headers = {"Authorization": f"Bearer {served.token}", "X-Forwarded-Proto": "https"}
        with httpx.Client(base_url=served.url, headers=headers) as http:
            [org] = ok(http.post("/api/apikey/login"))["org_info"]
    assert org["api_url"] == served.url.replace("http://", "https://")


def test_comments_waiting_for_their_rows_are_kept_within_a_count_and_a_size() -> None:
    pending = PendingComments()
    pending.LIMIT, pending.MAX_BYTES = 3, 400

    def comment(n: int, text: str = "") -> dict[str, Any]:
        return {"id": f"c{n}", "comment": {"text": text}, "origin": {"id": f"r{n}"}}

    pending.add("e", [comment(n) for n in range(5)])
    assert [event["id"] for event in pending.of("e")] == ["c2", "c3", "c4"]  # the newest 3
    pending.add("e", [comment(5, "x" * 300)])  # the oldest go until the bytes fit
    assert [event["id"] for event in pending.of("e")] == ["c5"]
    pending.add("e", [comment(6, "y" * 1000)])  # alone over the size: not kept, nothing lost
    assert [event["id"] for event in pending.of("e")] == ["c5"]
    pending.done("e", {"c5"})
    assert pending.of("e") == []
