"""The HTTP store against Braintrust's published contract (the hosted service cannot run here).

Every request body is validated against the OpenAPI description's schemas by the stand-in
service; retries, batching and auth follow the contract's rules.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from support.braintrust_contract import StandIn, needs_contract

from pytest_evalrows import StoreAuthError, StoreError
from pytest_evalrows.braintrust.client import MAX_EVENTS, HTTPStore, batches, public_url
from pytest_evalrows.store.urls import parse_store_url

pytestmark = needs_contract

KEY = "sk-secret-key-123"


def row(row_id: str, attempt: str, execution: int = 1, status: str = "passed") -> dict[str, Any]:
    return {
        "row_id": row_id,
        "version_id": os.urandom(16).hex(),
        "nodeid": row_id,
        "attempt_id": attempt,
        "execution": execution,
        "status": status,
        "input": {"q": row_id},
        "output": "answer",
        "expected": "answer",
        "scores": {"pass": 1.0 if status == "passed" else 0.0},
        "metadata": {"params_hash": "abc"},
        "tags": ["t"],
        "error": None,
        "metrics": {"start": 1.0, "end": 2.0, "duration": 1.0},
        "root_span_id": os.urandom(16).hex(),
        "span_id": os.urandom(8).hex(),
    }


def child(parent: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "span_id": os.urandom(8).hex(),
        "root_span_id": parent["root_span_id"],
        "span_parents": [parent["span_id"]],
        "row_id": parent["row_id"],
        "attempt_id": parent["attempt_id"],
        "execution": parent["execution"],
        "name": name,
        "kind": "client",
        "start": 1.2,
        "end": 1.4,
        "status": "ok",
        "attributes": {"gen_ai.usage.input_tokens": 3},
        "events": [],
    }


def root(parent: dict[str, Any]) -> dict[str, Any]:
    return {**child(parent, "root"), "span_id": parent["span_id"], "span_parents": []}


@pytest.fixture
def service() -> StandIn:
    return StandIn()


@pytest.fixture
def store(service: StandIn) -> Iterator[HTTPStore]:
    sleeps: list[float] = []
    with HTTPStore(
        "https://user:pw@api.example.test/",
        api_key=KEY,
        transport=service.transport(),
        sleep=sleeps.append,
    ) as opened:
        opened.sleeps = sleeps  # type: ignore[attr-defined]
        yield opened  # type: ignore[misc]


def test_a_full_cycle_sends_only_bodies_the_contract_accepts(
    store: HTTPStore, service: StandIn
) -> None:
    experiment = store.get_or_create_experiment("proj", "nightly", git_commit="abc123")
    again = store.get_or_create_experiment("proj", "nightly")
    assert again.id == experiment.id  # create-or-get, never ensure_new
    first = [row(f"r{i}", "a1") for i in range(3)]
    spans = [span for r in first for span in (root(r), child(r, "llm"), child(r, "tool"))]
    result = store.write(experiment.id, first, spans)
    assert (result.new_rows, result.updated_rows, result.spans) == (3, 0, 6)
    rerun = row("r0", "a2")
    result = store.write(experiment.id, [rerun], [root(rerun), child(rerun, "llm")])
    assert (result.new_rows, result.updated_rows) == (0, 1)
    stale = store.delete_stale_spans(experiment.id, ["r0"])
    # The first attempt's children. Its root is the row's older version: history, not a span.
    assert sorted(s.name for s in stale) == ["llm", "tool"]
    assert {s.attempt_id for s in stale} == {"a1"}
    # Every body was validated by the stand-in; these are the calls the contract lists.
    paths = {path.rsplit("/", 1)[-1] for _, path, _ in service.requests}
    assert paths == {"project", "experiment", "insert", "fetch"}
    # Every event carries the attempt, roots carry no span_parents, spans carry a name.
    for event in service.events[experiment.id]:
        if event.get("_object_delete"):
            continue
        assert event["metadata"]["attemptId"] in ("a1", "a2")
        assert event["span_attributes"]["name"]
        if event["id"].startswith("r"):
            assert "span_parents" not in event
    live = {e["id"]: e for e in service.live(experiment.id)}
    assert live["r0"]["metadata"]["attemptId"] == "a2"
    children = [e for e in live.values() if e.get("span_parents")]
    assert sorted(e["metadata"]["attemptId"] for e in children) == ["a1"] * 4 + ["a2"]


def test_reads_keep_the_highest_xact_id_and_count_versions(
    store: HTTPStore, service: StandIn
) -> None:
    service.page_size = 2  # later pages repeat older versions of the same ids
    experiment = store.get_or_create_experiment("proj", "reads")
    for attempt in ("a1", "a2", "a3"):
        store.write(experiment.id, [row("x", attempt), row("y", attempt)], [])
    store.write(experiment.id, [row("x", "a4", status="failed")], [])
    latest = {r.row_id: r for r in store.latest_rows(experiment.id)}
    assert (latest["x"].attempt_id, latest["x"].status, latest["x"].version) == ("a4", "failed", 4)
    assert (latest["y"].attempt_id, latest["y"].version) == ("a3", 3)
    history = store.history(experiment.id, "x")
    assert [(v.version, v.attempt_id) for v in history] == [
        (1, "a1"),
        (2, "a2"),
        (3, "a3"),
        (4, "a4"),
    ]
    states = store.latest_states(experiment.id)
    assert states["x"].status == "failed"
    assert states["y"].params_hash == "abc"


def test_batches_hold_at_most_100_events_and_never_one_id_twice() -> None:
    events = [{"id": f"e{i}"} for i in range(250)] + [{"id": "e249"}]
    sizes = [len(batch) for batch in batches(events)]
    assert sizes == [MAX_EVENTS, MAX_EVENTS, 50, 1]


def test_a_413_splits_the_batch(store: HTTPStore, service: StandIn) -> None:
    experiment = store.get_or_create_experiment("proj", "split")
    service.too_large_above = 30
    rows = [row(f"r{i}", "a") for i in range(100)]
    store.write(experiment.id, rows, [])
    assert len(service.live(experiment.id)) == 100
    sizes = [len(body["events"]) for _, path, body in service.requests if path.endswith("insert")]
    # 100 refused, split in halves until each half is accepted: nothing lost, nothing twice.
    assert sizes == [100, 50, 25, 25, 50, 25, 25]


def test_429_and_5xx_are_retried_honouring_retry_after(store: HTTPStore, service: StandIn) -> None:
    experiment = store.get_or_create_experiment("proj", "retry")
    service.failures = [(429, {"Retry-After": "7"}), (503, {}), (502, {})]
    store.write(experiment.id, [row("r", "a")], [])
    assert len(service.live(experiment.id)) == 1
    sleeps = store.sleeps  # type: ignore[attr-defined]
    assert sleeps[0] == 7.0  # Retry-After honoured
    assert len(sleeps) == 3
    service.failures = [(500, {})] * 10
    with pytest.raises(StoreError, match=r"answered HTTP 500 to POST .* 6 times"):
        store.write(experiment.id, [row("s", "a")], [])


def test_401_stops_at_once_and_never_shows_the_key(store: HTTPStore, service: StandIn) -> None:
    service.failures = [(401, {})]
    with pytest.raises(StoreAuthError) as caught:
        store.get_or_create_experiment("proj", "auth")
    assert str(caught.value) == (
        "https://api.example.test refused the API key: HTTP 401 on POST /v1/project"
    )
    assert store.sleeps == []  # type: ignore[attr-defined]
    assert KEY not in str(caught.value) and "pw" not in store.display_url


def test_public_url_drops_credentials_and_queries() -> None:
    assert public_url("https://me:secret@host:8443/base/?key=x#f") == "https://host:8443/base"


def started(doc: dict[str, Any], start: float) -> dict[str, Any]:
    doc["metrics"] = {"start": start, "end": start + 1, "duration": 1.0}
    return doc


def test_a_late_version_of_an_older_execution_is_not_written_over_a_newer_one(
    store: HTTPStore, service: StandIn
) -> None:
    experiment = store.get_or_create_experiment("proj", "late")
    newer = started(row("r", "new"), 300.0)
    store.write(experiment.id, [newer], [child(newer, "newer-llm")])
    older, fresh = started(row("r", "old"), 200.0), started(row("s", "old"), 200.0)

    # A spool delivered late: only the row the store has no newer version of is written.
    result = store.write(
        experiment.id, [older, fresh], [child(older, "older-llm"), child(fresh, "s-llm")], late=True
    )

    assert (result.new_rows, result.updated_rows, result.superseded_rows) == (1, 0, 1)
    live = {event["id"]: event for event in service.live(experiment.id)}
    assert live["r"]["metadata"]["attemptId"] == "new"
    names = sorted(e["span_attributes"]["name"] for e in live.values() if e.get("span_parents"))
    assert names == ["newer-llm", "s-llm"]  # the older execution's span is not sent either
    assert store.delete_stale_spans(experiment.id) == []  # the newer spans are not stale


def test_clean_up_sends_each_delete_once_and_counts_only_what_was_stale(
    store: HTTPStore, service: StandIn
) -> None:
    experiment = store.get_or_create_experiment("proj", "gc")
    rows = [row(f"r{i}", "a1") for i in range(3)]
    store.write(experiment.id, rows, [span for r in rows for span in (root(r), child(r, "llm"))])
    for attempt in ("a2", "a3"):
        again = [row(f"r{i}", attempt) for i in range(3)]
        store.write(experiment.id, again, [child(r, "llm") for r in again])
        # Each rerun leaves the previous attempt's three child spans, and only those.
        assert len(store.delete_stale_spans(experiment.id)) == 3

    deletes = len(service.live_deletes(experiment.id))
    assert store.delete_stale_spans(experiment.id) == []
    assert store.delete_stale_spans(experiment.id) == []
    assert len(service.live_deletes(experiment.id)) == deletes == 6  # nothing sent twice


def test_a_store_known_down_pays_one_request_per_call(store: HTTPStore, service: StandIn) -> None:
    experiment = store.get_or_create_experiment("proj", "down")
    service.failures = [(503, {})] * 100
    before = len(service.requests)
    with pytest.raises(StoreError):
        store.write(experiment.id, [row("r", "a")], [])
    assert len(service.requests) - before == 6  # the first failure pays for its retries

    store.retrying = False  # what the delivery does once the store is known down
    before = len(service.requests)
    with pytest.raises(StoreError, match="1 times"):
        store.write(experiment.id, [row("r", "a")], [])
    assert len(service.requests) - before == 1


def test_values_the_spool_takes_are_sent_as_the_spool_writes_them(
    store: HTTPStore, service: StandIn
) -> None:
    # A row_fields hook may put values in that the standard json module cannot write.
    experiment = store.get_or_create_experiment("proj", "values")
    doc = row("r", "a")
    doc["metadata"] = {"when": datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc), "ids": {1, 2}}

    store.write(experiment.id, [doc], [])

    (event,) = service.live(experiment.id)
    assert event["metadata"]["when"] == "2026-12-01T12:00:00Z"
    assert sorted(event["metadata"]["ids"]) == [1, 2]


def test_a_late_redelivery_of_a_stored_version_is_not_written_again(
    store: HTTPStore, service: StandIn
) -> None:
    experiment = store.get_or_create_experiment("proj", "again")
    doc = row("r", "a")
    store.write(experiment.id, [doc], [child(doc, "llm")])
    rows_sent = len([e for e in service.events[experiment.id] if not e.get("span_parents")])

    # The same spool delivered again (its acknowledgement was lost).
    result = store.write(experiment.id, [dict(doc)], [child(doc, "llm")], late=True)

    assert (result.new_rows, result.updated_rows, result.duplicate_rows) == (0, 0, 1)
    again = len([e for e in service.events[experiment.id] if not e.get("span_parents")])
    assert again == rows_sent  # no second version of the row
    assert len(store.history(experiment.id, "r")) == 1


def test_a_store_url_with_a_control_character_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="holds a control character"):
        parse_store_url("http://127.0.0.1:8000/a\x00b", Path("."))


def test_attempts_are_events_the_contract_accepts_and_rows_never_show_them(
    store: HTTPStore, service: StandIn
) -> None:
    from pytest_evalrows.core.records import Attempt

    assert store.attempts
    experiment = store.get_or_create_experiment("proj", "nightly")
    first = row("r0", "a1")
    store.write(experiment.id, [first], [root(first), child(first, "llm")])
    # At the session's start, then at its end with its counts and report: two versions.
    attempt = Attempt(id="a1", experiment_id=experiment.id, started=10.0, host="h", args=["-x"])
    store.save_attempt(attempt)
    attempt.ended, attempt.counts, attempt.delivered = 12.5, {"passed": 1}, True
    attempt.report = {"rows_written": 1, "statuses": {"passed": 1}}
    store.save_attempt(attempt)
    store.save_attempt(Attempt(id="a0", experiment_id=experiment.id, started=5.0))
    # The stand-in validated every insert against InsertExperimentEventRequest.
    assert store.list_attempts(experiment.id) == [
        Attempt(id="a0", experiment_id=experiment.id, started=5.0),
        attempt,
    ]
    assert [r.row_id for r in store.latest_rows(experiment.id)] == ["r0"]
    assert {s.row_id for s in store.list_spans(experiment.id)} == {"r0"}
    assert store.history(experiment.id, "evalrows-attempt-a1") == []
    assert store.delete_stale_spans(experiment.id) == []
    ids = {e["id"] for e in service.live(experiment.id)}
    assert {"evalrows-attempt-a0", "evalrows-attempt-a1"} <= ids
    assert store.request_counts()["insert"] == 4


def test_a_batch_without_rows_is_certain_about_its_counts(store: HTTPStore) -> None:
    # A spooled attempt alone is delivered as an empty write: it must not make a flush's
    # new/updated counts unknown.
    experiment = store.get_or_create_experiment("proj", "nightly")
    result = store.write(experiment.id, [], [])
    assert (result.new_rows, result.updated_rows, result.certain) == (0, 0, True)
