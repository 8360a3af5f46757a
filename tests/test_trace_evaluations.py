"""Evaluations kept in a store (SQLite, memory, and ``evalrows serve``): create one for a stored
trace, wait for it, read its results; list them with filters and pages; estimate the cost
first; bad arguments."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.openai_standin import OpenAIStandin
from support.traces import stored_row

from pytest_evalrows import MemoryStore, SQLiteStore, UnknownExperimentError
from pytest_evalrows.judging import (
    AsyncTraceEvaluations,
    Evaluation,
    Judgment,
    LLMJudge,
    Trace,
    TraceEvaluations,
    UnknownEvaluationError,
    UnknownJudgeError,
    UnknownTraceError,
    no_span_errors,
    span_called,
)
from pytest_evalrows.store.base import Store

ROWS = {"row-a": "a" * 32, "row-b": "b" * 32, "row-c": "c" * 32}  # row id -> trace id
GATE = threading.Event()  # holds `gated` until set


def gated(trace: Trace) -> Judgment:
    GATE.wait(30)
    return Judgment(passed=True, reasoning="let through")


def broken(trace: Trace) -> bool:
    raise ValueError("cannot judge this")


def hangs(trace: Trace) -> bool:
    GATE.wait(30)
    return True


JUDGES = [no_span_errors(), span_called("search"), gated, broken, hangs]


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made = SQLiteStore(tmp_path / "rows.db") if request.param == "sqlite" else MemoryStore()
    with made:
        experiment = made.get_or_create_experiment("proj", "exp")
        for row_id, trace_id in ROWS.items():
            version, spans = stored_row(row_id, trace_id, error_span=row_id == "row-b")
            made.write(experiment.id, [version], spans)
        yield made


@pytest.fixture
def client(store: Store) -> Iterator[TraceEvaluations]:
    GATE.clear()
    try:
        with TraceEvaluations(store, "exp", project="proj", judges=JUDGES, timeout=20) as made:
            yield made
    finally:
        GATE.set()


def finished(client: TraceEvaluations, trace_id: str, judge: str) -> Evaluation:
    created = client.create(trace_id, judge)
    return client.wait_for_completion(created.id, interval_seconds=0.05, timeout_seconds=20)


def test_create_wait_and_read_the_results(client: TraceEvaluations, store: Store) -> None:
    created = client.create(ROWS["row-b"], "no_span_errors")
    assert created.status in ("pending", "in_progress", "success")
    assert (created.row_id, created.trace_id) == ("row-b", ROWS["row-b"])
    assert created.version_id == "row-b-v1" and created.experiment_id == client.experiment.id
    done = client.wait_for_completion(created.id, interval_seconds=0.05, timeout_seconds=20)
    assert (done.status, done.id) == ("success", created.id)
    result = client.get_results(created.id)
    assert result is not None and result.passed is False
    assert [step.span_id for step in result.steps] == ["row-b-s2"]
    saved = store.get_evaluation(client.experiment.id, created.id)
    assert saved is not None and saved.status == "success" and saved.result == result
    (row,) = store.latest_rows(client.experiment.id, ["row-b"])
    assert row.scores["judge:no_span_errors"] == 0.0


def test_it_is_saved_pending_and_answered_in_progress_until_done(
    client: TraceEvaluations, store: Store
) -> None:
    created = client.create(ROWS["row-a"], "gated")
    saved = store.get_evaluation(client.experiment.id, created.id)
    assert saved is not None and saved.status == "pending"
    deadline = time.monotonic() + 10
    while client.get(created.id).status == "pending" and time.monotonic() < deadline:
        time.sleep(0.01)
    now = client.get(created.id)
    assert now.status == "in_progress" and now.started_at is not None
    assert client.get_results(created.id) is None
    assert client.get_many(status="in_progress").total == 1
    GATE.set()
    done = client.wait_for_completion(created.id, interval_seconds=0.05, timeout_seconds=20)
    assert done.status == "success"
    assert client.get_results(created.id) == done.result


def test_a_raising_judge_is_saved_as_a_failure(client: TraceEvaluations, store: Store) -> None:
    done = finished(client, ROWS["row-a"], "broken")
    assert (done.status, done.error) == ("failure", "ValueError: cannot judge this")
    assert client.get_results(done.id) is None
    saved = store.get_evaluation(client.experiment.id, done.id)
    assert saved is not None and saved.error == "ValueError: cannot judge this"


def test_waiting_for_a_hanging_judge_times_out_and_close_cancels_it(
    client: TraceEvaluations, store: Store
) -> None:
    created = client.create(ROWS["row-c"], "hangs")
    with pytest.raises(TimeoutError, match=f"evaluation {created.id} is still"):
        client.wait_for_completion(created.id, interval_seconds=0.05, timeout_seconds=0.2)
    client.close()
    saved = store.get_evaluation(client.experiment.id, created.id)
    assert saved is not None and (saved.status, saved.error) == ("failure", "cancelled")


def test_unknown_traces_judges_and_evaluations_are_clear_errors(client: TraceEvaluations) -> None:
    with pytest.raises(UnknownTraceError, match=r"no row of experiment 'exp' has trace 'f+'"):
        client.create("f" * 32, "no_span_errors")
    with pytest.raises(UnknownJudgeError) as raised:
        client.create(ROWS["row-a"], "exactness")
    assert "no judge named 'exactness'; known judges: broken, gated, hangs" in str(raised.value)
    with pytest.raises(UnknownEvaluationError, match="no evaluation 'nope'"):
        client.get("nope")
    with pytest.raises(LookupError):
        client.get_results("nope")


def test_an_unknown_experiment_is_the_stores_error(store: Store) -> None:
    with pytest.raises(UnknownExperimentError):
        TraceEvaluations(store, "no-such-experiment")


def test_a_client_without_judges_says_how_to_give_them(store: Store) -> None:
    with (
        TraceEvaluations(store, "exp") as bare,
        pytest.raises(UnknownJudgeError, match=r"none \(give judges=\[...\]\)"),
    ):
        bare.create(ROWS["row-a"], "x")


def old_evaluation(client: TraceEvaluations, store: Store, days: float) -> Evaluation:
    """An evaluation made ``days`` ago, saved straight into the store."""
    made = Evaluation(
        id=f"old-{days}",
        experiment_id=client.experiment.id,
        row_id="row-c",
        trace_id=ROWS["row-c"],
        version_id="row-c-v1",
        judge_id="no_span_errors",
        status="success",
        created_at=time.time() - days * 86_400,
        started_at=time.time() - days * 86_400,
        finished_at=time.time() - days * 86_400,
        result=Judgment(score=0.3, reasoning="an old verdict"),
    )
    store.save_evaluations(client.experiment.id, [made])
    return made


def test_get_many_filters(client: TraceEvaluations, store: Store) -> None:
    ids = {}
    for row_id, trace_id in ROWS.items():
        for judge in ("no_span_errors", "span_called:search"):
            ids[row_id, judge] = finished(client, trace_id, judge).id
    failed = finished(client, ROWS["row-a"], "broken").id
    old = old_evaluation(client, store, days=3).id

    def found(**filters: Any) -> set[str]:
        page = client.get_many(page_size=100, **filters)
        assert page.count == page.total == len(page.evaluations)
        return {each.id for each in page.evaluations}

    assert len(found()) == 8
    assert found(judge_id="span_called:search") == {ids[row, "span_called:search"] for row in ROWS}
    assert found(trace_id=ROWS["row-b"]) == {ids["row-b", j] for j in JUDGES_RUN}
    assert found(outcome="fail") == {ids["row-b", "no_span_errors"], old}  # old: score 0.3
    assert found(outcome="pass") == set(ids.values()) - {ids["row-b", "no_span_errors"]}
    assert found(status="failure") == {failed}
    assert found(time_range="24h") == set(ids.values()) | {failed}
    assert old in found(time_range="7d")
    assert found(search="SPAN(S) ENDED IN ERROR") == {ids["row-b", "no_span_errors"]}
    assert found(search="cannot judge") == {failed}
    assert found(search="row-c") == {ids["row-c", j] for j in JUDGES_RUN} | {old}
    assert found(judge_id="no_span_errors", outcome="pass", time_range="30m") == {
        ids["row-a", "no_span_errors"],
        ids["row-c", "no_span_errors"],
    }


JUDGES_RUN = ("no_span_errors", "span_called:search")


def test_get_many_pages_and_sorts(client: TraceEvaluations) -> None:
    made = [finished(client, ROWS["row-a"], "no_span_errors") for _ in range(5)]
    by_time = [each.id for each in sorted(made, key=lambda each: (each.created_at, each.id))]
    first = client.get_many(page=1, page_size=2)
    assert (first.count, first.total, first.page, first.page_size) == (2, 5, 1, 2)
    assert first.pages == 3
    assert [each.id for each in first.evaluations] == by_time[::-1][:2]  # newest first
    last = client.get_many(page=3, page_size=2, sort_order="asc")
    assert (last.count, last.total) == (1, 5)
    assert [each.id for each in last.evaluations] == by_time[4:]
    beyond = client.get_many(page=9, page_size=2)
    assert (beyond.count, beyond.total, beyond.evaluations) == (0, 5, [])
    finished(client, ROWS["row-b"], "no_span_errors")  # scores 0.0, the others 1.0
    by_score = client.get_many(sort_by="score", sort_order="asc", page_size=1)
    assert by_score.evaluations[0].row_id == "row-b"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"page": 0}, "page must be a whole number >= 1"),
        ({"page_size": 0}, "page_size must be a whole number >= 1"),
        ({"page_size": 5000}, "page_size must be at most 1000"),
        ({"outcome": "maybe"}, "outcome must be one of pass, fail"),
        ({"time_range": "7 weeks"}, "time_range must be a positive number"),
        ({"time_range": "0d"}, "time_range must be a positive number"),
        ({"sort_by": "colour"}, "sort_by must be one of created_at"),
        ({"sort_order": "up"}, "sort_order must be one of asc, desc"),
        ({"status": "done"}, "status must be one of pending"),
        ({"search": 3}, "search must be a string"),
    ],
)
def test_bad_page_arguments_are_clear_errors(
    client: TraceEvaluations, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        client.get_many(**arguments)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"interval_seconds": 0}, "interval_seconds must be a number of seconds > 0"),
        ({"timeout_seconds": -1}, "timeout_seconds must be a number of seconds >= 0"),
        ({"timeout_seconds": "5"}, "timeout_seconds must be a number"),
    ],
)
def test_bad_wait_arguments_are_clear_errors(
    client: TraceEvaluations, arguments: dict[str, Any], message: str
) -> None:
    done = finished(client, ROWS["row-a"], "no_span_errors")
    with pytest.raises(ValueError, match=message):
        client.wait_for_completion(done.id, **arguments)


def test_estimate_cost_prices_the_traces_and_asks_no_model(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-estimate")
    with OpenAIStandin() as model:
        judge = LLMJudge(
            "rubric",
            "Did it answer?",
            model="gpt-test",
            base_url=model.base_url,
            input_cost_per_token=1e-6,
            output_cost_per_token=2e-6,
        )
        with TraceEvaluations(store, "exp", judges={"rubric": judge}) as client:
            traces = [client.trace(trace_id) for trace_id in ROWS.values()]
            summary = client.estimate_cost(list(ROWS.values()), "rubric")
            assert summary.trace_count == 3 and summary.model == "gpt-test"
            assert summary.input_tokens == sum(judge.estimate(t).input_tokens for t in traces)
            assert summary.output_tokens == 3 * judge.estimate(traces[0]).output_tokens
            assert summary.estimated_cost == pytest.approx(
                summary.input_tokens * 1e-6 + summary.output_tokens * 2e-6
            )
            free = TraceEvaluations(store, "exp", judges=[no_span_errors()])
            with free:
                assert free.estimate_cost([ROWS["row-a"]], "no_span_errors").estimated_cost == 0
            with pytest.raises(UnknownTraceError):
                client.estimate_cost(["f" * 32], "rubric")
            with pytest.raises(ValueError, match="not one string"):
                client.estimate_cost(ROWS["row-a"], "rubric")
        assert model.requests == 0


def test_the_async_client_does_the_same(store: Store) -> None:
    async def main() -> tuple[Evaluation, Judgment | None, int, int]:
        async with AsyncTraceEvaluations(store, "exp", judges=[no_span_errors()]) as client:
            created = await client.create(ROWS["row-b"], "no_span_errors")
            done = await client.wait_for_completion(
                created.id, interval_seconds=0.05, timeout_seconds=20
            )
            result = await client.get_results(created.id)
            page = await client.get_many(outcome="fail")
            summary = await client.estimate_cost([ROWS["row-b"]], "no_span_errors")
            with pytest.raises(ValueError, match="not one string"):
                await client.estimate_cost(ROWS["row-b"], "no_span_errors")
            return done, result, page.total, summary.trace_count

    done, result, failing, counted = asyncio.run(main())
    assert done.status == "success" and result is not None and result.passed is False
    assert (failing, counted) == (1, 1)


def test_the_async_wait_times_out(store: Store) -> None:
    GATE.clear()

    async def main() -> None:
        async with AsyncTraceEvaluations(store, "exp", judges=[hangs]) as client:
            created = await client.create(ROWS["row-a"], "hangs")
            await client.wait_for_completion(created.id, interval_seconds=0.05, timeout_seconds=0.2)

    try:
        with pytest.raises(TimeoutError):
            asyncio.run(main())
    finally:
        GATE.set()


def test_over_evalrows_serve_the_finished_evaluations_are_kept(tmp_path: Path) -> None:
    from support.servers import EvalrowsServer

    from pytest_evalrows.braintrust.client import HTTPStore

    server = EvalrowsServer(tmp_path / "served.db", "tok-1", tmp_path / "server.log")
    server.start()
    try:
        with HTTPStore(server.url, api_key="tok-1") as store:
            experiment = store.get_or_create_experiment("proj", "exp")
            for row_id, trace_id in ROWS.items():
                version, spans = stored_row(row_id, trace_id, error_span=row_id == "row-b")
                store.write(experiment.id, [version], spans)
            with TraceEvaluations(
                store, "exp", project="proj", judges=[no_span_errors()]
            ) as client:
                done = finished(client, ROWS["row-b"], "no_span_errors")
                assert done.status == "success"
                result = client.get_results(done.id)
                assert result is not None and result.passed is False
                page = client.get_many(outcome="fail")
                assert [each.id for each in page.evaluations] == [done.id]
            (row,) = store.latest_rows(experiment.id, ["row-b"])
            assert row.scores["judge:no_span_errors"] == 0.0
    finally:
        server.stop()
    assert "Traceback" not in (tmp_path / "server.log").read_text()
