"""Evaluations through the HTTP store: each finished one is a ``score`` span under the row's
trace and a merge of its score into the row's event, as Braintrust's contract takes them; read
back from Braintrust's stand-in and from ``evalrows serve``, whose store keeps them as the
embedded store does."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.braintrust_contract import StandIn, needs_contract
from support.servers import EvalrowsServer

from pytest_evalrows import SQLiteStore
from pytest_evalrows.braintrust import wire
from pytest_evalrows.braintrust.client import HTTPStore
from pytest_evalrows.braintrust.judgments import EVALUATION_ID_PREFIX
from pytest_evalrows.core.judgments import Evaluation, Judgment, Step


def row(row_id: str, attempt: str, start: float = 1.0, **fields: Any) -> dict[str, Any]:
    return {
        "row_id": row_id,
        "version_id": uuid.uuid4().hex,
        "nodeid": row_id,
        "attempt_id": attempt,
        "execution": 1,
        "status": "passed",
        "input": {"q": row_id},
        "output": "answer",
        "expected": "answer",
        "scores": {"exact": 1.0},
        "metadata": {"params_hash": "abc"},
        "tags": [],
        "error": None,
        "metrics": {"start": start, "end": start + 1, "duration": 1.0},
        "root_span_id": uuid.uuid4().hex,
        "span_id": uuid.uuid4().hex[:16],
        **fields,
    }


def child(parent: dict[str, Any], name: str, after: float = 0.2) -> dict[str, Any]:
    start = parent["metrics"]["start"] + after
    return {
        "span_id": uuid.uuid4().hex[:16],
        "root_span_id": parent["root_span_id"],
        "span_parents": [parent["span_id"]],
        "row_id": parent["row_id"],
        "attempt_id": parent["attempt_id"],
        "execution": 1,
        "name": name,
        "kind": "client",
        "start": start,
        "end": start + 0.1,
        "status": "ok",
        "attributes": {"gen_ai.usage.input_tokens": 3},
        "events": [],
    }


def judged(
    version: dict[str, Any],
    judge: str = "cites",
    *,
    at: float = 1000.0,
    status: str = "success",
    **result: Any,
) -> Evaluation:
    return Evaluation(
        id=str(uuid.uuid4()),
        row_id=version["row_id"],
        trace_id=version["root_span_id"],
        version_id=version["version_id"],
        judge_id=judge,
        status=status,  # type: ignore[arg-type]
        created_at=at,
        started_at=at + 1,
        finished_at=at + 2 if status in ("success", "failure") else None,
        error="judge raised ValueError: no" if status == "failure" else None,
        result=Judgment.model_validate(result) if result else None,
    )


def kept(evaluation: Evaluation, experiment_id: str) -> Evaluation:
    return evaluation.model_copy(update={"experiment_id": experiment_id})


# -- Braintrust, as its contract describes it ------------------------------------------------


@pytest.fixture
def service() -> StandIn:
    return StandIn()


@pytest.fixture
def store(service: StandIn) -> Iterator[HTTPStore]:
    with HTTPStore(
        "https://api.example.test", api_key="sk-key", transport=service.transport()
    ) as opened:
        yield opened


@needs_contract
def test_a_finished_evaluation_is_a_score_span_and_a_merge_the_contract_accepts(
    store: HTTPStore, service: StandIn
) -> None:
    experiment = store.get_or_create_experiment("proj", "judged").id
    version = row("r", "a1")
    store.write(experiment, [version], [child(version, "search")])
    done = judged(
        version,
        score=0.5,
        passed=True,
        reasoning="it searched first",
        steps=[Step(span_id=version["span_id"], name="search", result="called")],
        prompt_tokens=12,
        completion_tokens=4,
    )
    pending = judged(version, "later", status="pending")
    store.save_evaluations(experiment, [done, pending])

    sent = service.requests[-1][2]["events"]  # validated against the contract on arrival
    score_span, merge = sent
    assert score_span["id"] == EVALUATION_ID_PREFIX + done.id
    assert score_span["root_span_id"] == version["root_span_id"]
    assert score_span["span_parents"] == [version["span_id"]]
    assert score_span["span_attributes"] == {"name": "judge:cites", "type": "score"}
    assert score_span["scores"] == {"judge:cites": 0.5}
    assert score_span["metrics"]["prompt_tokens"] == 12
    assert merge == {
        "id": "r",
        "_is_merge": True,
        "scores": {"judge:cites": 0.5},
        "metadata": {"evalrows": {"version_id": version["version_id"]}},
    }
    # Only finished evaluations are kept by this store.
    assert store.list_evaluations(experiment) == [kept(done, experiment)]
    assert store.get_evaluation(experiment, done.id) == kept(done, experiment)
    [latest] = store.latest_rows(experiment)
    assert latest.scores == {"exact": 1.0, "judge:cites": 0.5}
    assert [each.version for each in store.history(experiment, "r")] == [1]


@needs_contract
def test_a_merged_row_read_back_is_the_same_version(store: HTTPStore, service: StandIn) -> None:
    # Braintrust answers a merge with the whole row under a new transaction id.
    experiment = store.get_or_create_experiment("proj", "merged").id
    version = row("r", "a1")
    store.write(experiment, [version], [])
    store.save_evaluations(experiment, [judged(version, score=1.0)])
    events = service.events[experiment]
    original = next(e for e in events if e["id"] == "r" and not e.get("_is_merge"))
    merged = {**original, "scores": {"exact": 1.0, "judge:cites": 1.0}, "_xact_id": "999999"}
    events.append(merged)

    assert [each.scores for each in store.history(experiment, "r")] == [
        {"exact": 1.0, "judge:cites": 1.0}
    ]
    assert store.latest_states(experiment)["r"].status == "passed"


@needs_contract
def test_over_http_a_rerun_makes_judgments_history_and_clean_up_keeps_them(
    store: HTTPStore, service: StandIn
) -> None:
    experiment = store.get_or_create_experiment("proj", "rerun").id
    first = row("r", "a1", start=1.0)
    store.write(experiment, [first], [child(first, "search")])
    old = judged(first, score=0.25)
    store.save_evaluations(experiment, [old])
    second = row("r", "a2", start=5.0)
    store.write(experiment, [second], [child(second, "answer")])
    stale = store.delete_stale_spans(experiment)
    assert [span.name for span in stale] == ["search"]

    older, newer = store.history(experiment, "r")
    assert (older.scores, newer.scores) == ({"exact": 1.0, "judge:cites": 0.25}, {"exact": 1.0})
    assert store.list_evaluations(experiment) == [kept(old, experiment)]
    # A judgment of the old version merges into no row: the row's event is the new version.
    store.save_evaluations(experiment, [judged(first, "late", at=2000.0, score=1.0)])
    assert not any(event.get("_is_merge") for event in service.requests[-1][2]["events"])
    assert store.latest_rows(experiment)[0].scores == {"exact": 1.0}

    new = judged(second, at=3000.0, score=0.75)
    store.save_evaluations(experiment, [new])
    assert store.latest_rows(experiment)[0].scores == {"exact": 1.0, "judge:cites": 0.75}
    assert store.delete_stale_spans(experiment) == []
    assert len(store.list_evaluations(experiment)) == 3


@needs_contract
def test_over_http_traces_are_found_by_id_and_read_in_one_pass(
    store: HTTPStore, service: StandIn
) -> None:
    experiment = store.get_or_create_experiment("proj", "traces").id
    a, b = row("a", "a1"), row("b", "a1")
    store.write(experiment, [a, b], [child(a, "search"), child(a, "answer", 0.5), child(b, "llm")])
    store.save_evaluations(experiment, [judged(a, score=1.0)])

    before = len(service.requests)
    trace = store.find_trace(experiment, a["root_span_id"])
    assert len(service.requests) == before + 1  # one fetch
    assert trace is not None and trace.version_id == a["version_id"]
    # The row's own span, its children, and never a judgment's span.
    assert [span.name for span in trace.spans] == ["a", "search", "answer"]
    assert trace.root is not None and trace.root.span_id == a["span_id"]
    assert trace.scores == {"exact": 1.0, "judge:cites": 1.0}
    assert store.find_trace(experiment, "f" * 32) is None

    before = len(service.requests)
    traces = store.latest_traces(experiment)
    assert len(service.requests) == before + 1
    assert [(t.row_id, [span.name for span in t.spans]) for t in traces] == [
        ("a", ["a", "search", "answer"]),
        ("b", ["b", "llm"]),
    ]
    assert [t.row_id for t in store.latest_traces(experiment, ["b"])] == ["b"]


@needs_contract
def test_a_judgment_of_a_version_this_store_has_not_seen_reads_the_rows_first(
    service: StandIn,
) -> None:
    version = row("r", "a1")
    with HTTPStore("https://api.example.test", transport=service.transport()) as writer:
        experiment = writer.get_or_create_experiment("proj", "other").id
        writer.write(experiment, [version], [])
    with HTTPStore("https://api.example.test", transport=service.transport()) as judge:
        judge.save_evaluations(experiment, [judged(version, score=0.5)])
        score_span, merge = service.requests[-1][2]["events"]
        assert service.requests[-2][1].endswith("/fetch")
        assert score_span["span_parents"] == [version["span_id"]]
        assert merge["id"] == "r"


# -- evalrows serve --------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[EvalrowsServer]:
    server = EvalrowsServer(tmp_path / "served.db", secrets.token_hex(8), tmp_path / "log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_evalrows_serve_keeps_evaluations_and_their_scores_as_the_embedded_store(
    served: EvalrowsServer,
) -> None:
    with HTTPStore(served.url, api_key=served.token) as store:
        experiment = store.get_or_create_experiment("proj", "served").id
        first = row("r", "a1", start=1.0)
        other = row("s", "a1", start=1.0)
        store.write(experiment, [first, other], [child(first, "search")])
        one = judged(first, score=0.5, reasoning="kept", steps=[Step(name="search")])
        failed = judged(other, "cites", at=1500.0, status="failure")
        store.save_evaluations(experiment, [one, failed])

        assert store.list_evaluations(experiment) == [
            kept(one, experiment),
            kept(failed, experiment),
        ]
        rows = {each.row_id: each.scores for each in store.latest_rows(experiment)}
        assert rows == {"r": {"exact": 1.0, "judge:cites": 0.5}, "s": {"exact": 1.0}}

        second = row("r", "a2", start=5.0)
        store.write(experiment, [second], [child(second, "answer")])
        store.delete_stale_spans(experiment)
        older, newer = store.history(experiment, "r")
        assert (older.scores, newer.scores) == (
            {"exact": 1.0, "judge:cites": 0.5},
            {"exact": 1.0},
        )
        trace = store.find_trace(experiment, second["root_span_id"])
        assert trace is not None and [span.name for span in trace.spans] == ["r", "answer"]

    with SQLiteStore(served.db) as behind:
        assert behind.list_evaluations(experiment) == [
            kept(one, experiment),
            kept(failed, experiment),
        ]
        assert behind.history(experiment, "r")[0].scores == {"exact": 1.0, "judge:cites": 0.5}
        assert behind.latest_rows(experiment, ["r"])[0].scores == {"exact": 1.0}


def test_evalrows_serve_pages_through_rows_attempts_and_evaluations(
    served: EvalrowsServer,
) -> None:
    with HTTPStore(served.url, api_key=served.token) as store:
        experiment = store.get_or_create_experiment("proj", "paged").id
        versions = [row(f"r{number}", "a1") for number in range(3)]
        store.write(experiment, versions, [])
        evaluations = [judged(v, at=1000.0 + n, score=1.0) for n, v in enumerate(versions)]
        store.save_evaluations(experiment, evaluations)
    seen: list[str] = []
    cursor = None
    with httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {served.token}"}
    ) as client:
        while True:
            body: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.post(f"/v1/experiment/{experiment}/fetch", json=body).json()
            seen += [event["id"] for event in page["events"]]
            cursor = page.get("cursor")
            if not cursor:
                break
    assert sorted(seen) == sorted(
        [v["row_id"] for v in versions] + [EVALUATION_ID_PREFIX + e.id for e in evaluations]
    )


def test_evalrows_serve_merges_into_a_row_as_braintrust_and_into_named_versions_scores_only(
    served: EvalrowsServer,
) -> None:
    with HTTPStore(served.url, api_key=served.token) as store:
        experiment = store.get_or_create_experiment("proj", "merges").id
        store.write(experiment, [row("r", "a1")], [])
    with httpx.Client(
        base_url=served.url, headers={"Authorization": f"Bearer {served.token}"}
    ) as client:
        insert = f"/v1/experiment/{experiment}/insert"
        merge = {"id": "r", "_is_merge": True, "scores": {"feedback": 0.5}}
        assert client.post(insert, json={"events": [merge]}).status_code == 200
        # Braintrust's merge: any field, deep, into the row's latest version.
        deeper = {"id": "r", "_is_merge": True, "metadata": {"note": "n"}}
        assert client.post(insert, json={"events": [deeper]}).status_code == 200
        # A merge into a version the HTTP store names changes its scores only.
        for refused, mentions in (
            ({**merge, "output": "x", "metadata": {"evalrows": {"version_id": "v"}}}, "output"),
            ({**merge, "metadata": {"evalrows": {"version_id": "no-such"}}}, "version"),
            (
                {"id": "e", "metadata": {"evalrows": {"kind": "evaluation", "evaluation": {}}}},
                "metadata.evalrows.evaluation: id: Field required",
            ),
        ):
            answer = client.post(insert, json={"events": [refused]})
            assert answer.status_code == 400, answer.text
            assert mentions in answer.json()["error"]
        # All or nothing: a new row sent with a merge into a version that does not exist is
        # not written either.
        fresh = wire.row_event(row("fresh", "a1"))
        bad_merge = {**merge, "metadata": {"evalrows": {"version_id": "no-such"}}}
        answer = client.post(insert, json={"events": [fresh, bad_merge]})
        assert answer.status_code == 400 and "no-such" in answer.json()["error"]
    with SQLiteStore(served.db) as behind:
        assert [each.row_id for each in behind.latest_rows(experiment)] == ["r"]
        [latest] = behind.latest_rows(experiment)
        assert (latest.output, latest.scores) == ("answer", {"exact": 1.0, "feedback": 0.5})
        assert latest.metadata["note"] == "n"
        assert len(behind.history(experiment, "r")) == 1  # merged in place


@needs_contract
def test_saving_only_unfinished_evaluations_sends_and_reads_nothing(
    store: HTTPStore, service: StandIn
) -> None:
    experiment = store.get_or_create_experiment("proj", "pending").id
    version = row("r", "a1")
    before = len(service.requests)
    store.save_evaluations(experiment, [judged(version, status="pending")])
    store.save_evaluations(experiment, [judged(version, status="in_progress")])
    assert len(service.requests) == before


def test_a_judgment_of_a_version_another_process_replaced_is_no_merge(
    service: StandIn,
) -> None:
    """A merge lands on the row's event as it is now: a version written by another process
    since this store read the rows must not take the older version's score."""
    first = HTTPStore("https://api.example.test", transport=service.transport())
    second = HTTPStore("https://api.example.test", transport=service.transport())
    try:
        experiment = first.get_or_create_experiment("proj", "x").id
        old = row("r", "a1", start=1.0)
        first.write(experiment, [old], [])
        second.write(experiment, [row("r", "a2", start=5.0)], [])
        first.save_evaluations(experiment, [judged(old, score=0.1)])
        sent = service.requests[-1][2]["events"]
        assert [event for event in sent if event.get("_is_merge")] == []
        # The judgment itself is kept, on the version it judged.
        (kept_evaluation,) = second.list_evaluations(experiment)
        assert kept_evaluation.version_id == old["version_id"]
        (latest,) = second.latest_rows(experiment)
        assert latest.attempt_id == "a2" and "judge:cites" not in latest.scores
    finally:
        first.close()
        second.close()


def test_an_evaluation_event_of_another_shape_is_said_and_stops_no_read(
    store: HTTPStore,
) -> None:
    from pytest_evalrows.braintrust import judgments

    experiment = store.get_or_create_experiment("proj", "x").id
    version = row("r", "a1")
    store.write(experiment, [version], [child(version, "search")])
    event = judgments.evaluation_event(judged(version, score=1.0))
    event["metadata"]["evalrows"]["evaluation"]["result"]["confidence"] = 0.9  # a newer field
    store._api.insert(experiment, [event])
    assert [each.row_id for each in store.latest_rows(experiment)] == ["r"]
    assert len(store.list_spans(experiment)) == 2
    assert store.delete_stale_spans(experiment) == []
    assert store.list_evaluations(experiment) == []
    assert len(store.unreadable) == 1 and "cannot be read" in store.unreadable[0]
