"""Judges: their names, what they may return, the built-ins on hand-built traces, and the runner
that always finishes an evaluation (a raising, a hanging, a closed-on judge)."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.traces import TRACE_ID, agent_trace, make_span, make_trace

from pytest_evalrows.core.models import ErrorInfo
from pytest_evalrows.judging import (
    CostEstimate,
    JudgeRunner,
    Judgment,
    Trace,
    estimate_of,
    judge_id,
    judge_traces,
    max_latency,
    max_spans,
    max_tokens,
    new_evaluation,
    no_span_errors,
    run_async,
    span_called,
    tool_called,
)


@pytest.fixture
def runner() -> Iterator[JudgeRunner]:
    with JudgeRunner(concurrency=4, timeout=0.5) as made:
        yield made


# -- names and returns -----------------------------------------------------------------------


def test_a_judge_is_named_by_its_name_attribute_or_its_function() -> None:
    def exact(trace: Trace) -> bool:
        return True

    class Named:
        name = "named-judge"

        def __call__(self, trace: Trace) -> bool:
            return True

    assert judge_id(exact) == "exact"
    assert judge_id(Named()) == "named-judge"
    assert judge_id(functools.partial(exact)) == "exact"
    assert judge_id(no_span_errors()) == "no_span_errors"


@pytest.mark.parametrize("nameless", [lambda trace: True, object(), 42])
def test_a_judge_without_a_name_is_a_clear_type_error(nameless: object) -> None:
    with pytest.raises(TypeError, match="a judge needs a name"):
        judge_id(nameless)


def test_a_named_thing_that_cannot_be_called_is_no_judge() -> None:
    class NotCallable:
        name = "x"

    with pytest.raises(TypeError, match="not callable"):
        judge_id(NotCallable())


def test_a_bool_is_passed_and_a_number_a_score(runner: JudgeRunner) -> None:
    trace = agent_trace()

    def yes(trace: Trace) -> bool:
        return True

    def most(trace: Trace) -> float:
        return 0.75

    def too_much(trace: Trace) -> float:
        return 1.5

    def words(trace: Trace) -> str:
        return "fine"

    judged = runner.run(yes, trace).result
    assert judged is not None and (judged.passed, judged.score) == (True, None)
    assert runner.run(most, trace).result.score == 0.75  # type: ignore[union-attr]
    bad = runner.run(too_much, trace)
    assert (bad.status, bad.result) == ("failure", None)
    assert bad.error is not None and bad.error.startswith("ValueError: a judge's number")
    wrong = runner.run(words, trace)
    assert wrong.status == "failure" and wrong.error is not None
    assert wrong.error.startswith("TypeError: a judge must return a Judgment")


def test_a_judge_without_estimate_costs_nothing() -> None:
    assert estimate_of(no_span_errors(), agent_trace()) == CostEstimate()


# -- the built-ins ---------------------------------------------------------------------------


def test_span_called_passes_fails_and_names_the_spans_it_looked_at() -> None:
    trace = agent_trace()
    found = span_called("search")(trace)
    assert (found.passed, found.score) == (True, 1.0)
    assert [(step.span_id, step.name) for step in found.steps] == [("s1", "search")]
    missing = span_called("retrieve")(trace)
    assert (missing.passed, missing.score, missing.steps) == (False, 0.0, [])
    assert "retrieve" in missing.reasoning


def test_span_called_before_another_looks_at_the_order() -> None:
    trace = agent_trace()
    assert span_called("search", before="answer")(trace).passed is True
    late = span_called("answer", before="search")(trace)
    assert late.passed is False
    assert {step.span_id for step in late.steps} == {"s1", "s3"}
    assert span_called("search", before="never-called")(trace).passed is True
    assert span_called("search", before="answer").name == "span_called:search:before:answer"


def test_tool_called_goes_by_the_tool_name_not_the_span_name() -> None:
    trace = agent_trace()
    assert tool_called("web_search")(trace).passed is True
    assert tool_called("search")(trace).passed is False  # the span's name, not its tool's
    assert tool_called("answer")(trace).passed is True  # declared type="tool", named by span
    assert tool_called("web_search", before="answer")(trace).passed is True
    assert tool_called("answer", before="web_search")(trace).passed is False
    assert tool_called("web_search").name == "tool_called:web_search"


def test_no_span_errors_names_the_spans_that_failed() -> None:
    assert no_span_errors()(agent_trace()).passed is True
    failing = make_trace(
        make_span("ok", "fine", 100.1, 100.2),
        make_span("bad", "fetch", 100.2, 100.3, status="error", status_description="HTTP 503"),
        make_span(
            "raised",
            "parse",
            100.3,
            100.4,
            events=[{"name": "exception", "attributes": {"exception.type": "KeyError"}}],
        ),
    )
    judged = no_span_errors()(failing)
    assert (judged.passed, judged.score) == (False, 0.0)
    assert [(step.span_id, step.result) for step in judged.steps] == [
        ("bad", "HTTP 503"),
        ("raised", "recorded an exception"),
    ]
    assert "'fetch'" in judged.reasoning


def test_no_span_errors_leaves_the_row_own_span_to_the_rows_status() -> None:
    """A failed test's own span ends in error; its code's spans did not."""
    failed_test = make_trace(
        make_span("root", "test[row-1]", 100.0, 101.0, parents=[], status="error"),
        make_span("ok", "fetch", 100.1, 100.2),
        status="failed",
    )
    judged = no_span_errors()(failed_test)
    assert judged.passed is True and judged.reasoning == "none of 1 spans ended in error"


def test_max_spans_counts_the_rows_own_span() -> None:
    trace = agent_trace()  # the root and three children
    assert max_spans(4)(trace).passed is True
    over = max_spans(3)(trace)
    assert over.passed is False and "4 spans" in over.reasoning
    assert max_spans(3).name == "max_spans:3"


def test_max_tokens_adds_the_model_calls_tokens() -> None:
    trace = agent_trace()
    assert max_tokens(450)(trace).passed is True
    over = max_tokens(449)(trace)
    assert over.passed is False and "450 tokens" in over.reasoning
    assert over.steps[0].span_id == "s2"


def test_max_tokens_falls_back_on_the_rows_own_metrics() -> None:
    trace = make_trace()
    trace.row.metrics.prompt_tokens, trace.row.metrics.completion_tokens = 70, 40
    assert max_tokens(100)(trace).passed is False
    assert max_tokens(110)(trace).passed is True


def test_max_latency_bounds_the_whole_trace() -> None:
    trace = agent_trace()  # 100.0 to 101.0
    assert max_latency(1.0)(trace).passed is True
    slow = max_latency(0.5)(trace)
    assert slow.passed is False and "1.000 s" in slow.reasoning
    assert max_latency(0.5).name == "max_latency:0.5s"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: span_called(""), "non-empty string"),
        (lambda: span_called("a", before="a"), "before itself"),
        (lambda: tool_called(3), "non-empty string"),  # type: ignore[arg-type]
        (lambda: max_spans(-1), ">= 0"),
        (lambda: max_spans(2.5), "whole number"),  # type: ignore[arg-type]
        (lambda: max_tokens(True), "whole number"),
        (lambda: max_latency(float("nan")), "finite"),
        (lambda: max_latency("1s"), "a number"),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_to_the_built_ins_are_clear_value_errors(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


# -- the runner ------------------------------------------------------------------------------


def test_sync_and_async_judges_run_in_the_background(runner: JudgeRunner) -> None:
    trace = agent_trace()
    done: list[str] = []

    def searched(trace: Trace) -> Judgment:
        return tool_called("web_search")(trace)

    async def short(trace: Trace) -> float:
        await asyncio.sleep(0.01)
        return 0.5

    first = runner.submit(searched, trace, on_done=lambda e: done.append(e.judge_id))
    second = runner.submit(short, trace, on_done=lambda e: done.append(e.judge_id))
    assert runner.wait(10)
    assert runner.outstanding == 0
    assert sorted(done) == ["searched", "short"]
    sync, async_ = first.result(), second.result()
    assert (sync.status, sync.result.passed) == ("success", True)  # type: ignore[union-attr]
    assert (async_.status, async_.result.score) == ("success", 0.5)  # type: ignore[union-attr]
    for evaluation in (sync, async_):
        assert evaluation.trace_id == TRACE_ID and evaluation.row_id == "row-1"
        assert evaluation.version_id == "v1"
        assert evaluation.started_at is not None and evaluation.finished_at is not None
        assert evaluation.created_at <= evaluation.started_at <= evaluation.finished_at
        assert evaluation.result is not None and evaluation.result.latency_ms is not None


def test_a_given_evaluation_goes_pending_in_progress_success(runner: JudgeRunner) -> None:
    trace = agent_trace()
    evaluation = new_evaluation(trace, "slow", experiment_id="e1")
    assert (evaluation.status, evaluation.started_at) == ("pending", None)
    release = threading.Event()

    def slow(trace: Trace) -> bool:
        release.wait(5)
        return True

    future = runner.submit(slow, trace, evaluation=evaluation)
    deadline = time.monotonic() + 5
    while evaluation.status == "pending" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert evaluation.status == "in_progress" and evaluation.started_at is not None
    release.set()
    assert future.result(5) is evaluation
    assert (evaluation.status, evaluation.experiment_id) == ("success", "e1")


def test_a_raising_judge_is_a_failure_with_its_error(runner: JudgeRunner) -> None:
    def broken(trace: Trace) -> bool:
        raise ValueError("no answer span")

    async def broken_async(trace: Trace) -> bool:
        raise RuntimeError("model down")

    sync = runner.submit(broken, agent_trace()).result(5)
    async_ = runner.submit(broken_async, agent_trace()).result(5)
    assert (sync.status, sync.error, sync.result) == ("failure", "ValueError: no answer span", None)
    assert (async_.status, async_.error) == ("failure", "RuntimeError: model down")
    assert sync.finished_at is not None


def test_hanging_judges_time_out_and_free_their_place(runner: JudgeRunner) -> None:
    stop = threading.Event()

    def hangs(trace: Trace) -> bool:
        while not stop.is_set():
            time.sleep(0.01)
        return True

    async def hangs_async(trace: Trace) -> bool:
        await asyncio.sleep(3600)
        return True

    def quick(trace: Trace) -> bool:
        return True

    try:
        # More hanging judges than the pool has threads: the quick ones still get their turn.
        hung = [runner.submit(hangs, agent_trace()) for _ in range(5)]
        hung_async = runner.submit(hangs_async, agent_trace())
        quick_ones = [runner.submit(quick, agent_trace()) for _ in range(3)]
        assert runner.wait(10)
        for future in [*hung, hung_async]:
            assert (future.result().status, future.result().error) == (
                "failure",
                "timed out after 0.5 s",
            )
        assert all(future.result().status == "success" for future in quick_ones)
    finally:
        stop.set()


def test_run_works_while_the_pool_is_full_of_hung_judges() -> None:
    stop = threading.Event()

    def hangs(trace: Trace) -> bool:
        stop.wait(10)
        return True

    def quick(trace: Trace) -> bool:
        return True

    with JudgeRunner(concurrency=1, timeout=30) as runner:
        try:
            runner.submit(hangs, agent_trace())
            assert runner.run(quick, agent_trace()).status == "success"
            assert runner.outstanding == 1
        finally:
            stop.set()


def test_close_cancels_what_runs_and_leaves_no_thread_but_hung_ones() -> None:
    before = set(threading.enumerate())
    stop = threading.Event()

    def hangs(trace: Trace) -> bool:
        stop.wait(30)
        return True

    async def hangs_async(trace: Trace) -> bool:
        await asyncio.sleep(3600)
        return True

    def quick(trace: Trace) -> bool:
        return True

    runner = JudgeRunner(concurrency=2, timeout=60)
    try:
        runner.run(quick, agent_trace())
        hung = runner.submit(hangs, agent_trace())
        hung_async = runner.submit(hangs_async, agent_trace())
        runner.close()
        runner.close()  # idempotent
        assert (hung.result(1).status, hung.result(1).error) == ("failure", "cancelled")
        assert (hung_async.result(1).status, hung_async.result(1).error) == ("failure", "cancelled")
        assert runner.outstanding == 0
        left = [thread for thread in threading.enumerate() if thread not in before]
        assert all(thread.daemon for thread in left), left
        assert len(left) <= 1  # the abandoned thread of the hung sync judge
        after_close = runner.submit(quick, agent_trace()).result(1)
        assert after_close.status == "failure" and "closed" in (after_close.error or "")
    finally:
        stop.set()
        runner.close()
    deadline = time.monotonic() + 5
    while [t for t in threading.enumerate() if t not in before] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [thread for thread in threading.enumerate() if thread not in before] == []


def test_wait_reports_progress_and_gives_up_at_its_timeout(runner: JudgeRunner) -> None:
    release = threading.Event()

    def slow(trace: Trace) -> bool:
        release.wait(5)
        return True

    runner.submit(slow, agent_trace())
    seen: list[int] = []
    assert runner.wait(0.2, progress=seen.append, interval=0.05) is False
    assert seen and set(seen) == {1}
    release.set()
    assert runner.wait(5) is True


def test_an_error_in_on_done_is_kept_not_raised(runner: JudgeRunner) -> None:
    def quick(trace: Trace) -> bool:
        return True

    def fails(evaluation: Any) -> None:
        raise OSError("disk full")

    assert runner.submit(quick, agent_trace(), on_done=fails).result(5).status == "success"
    assert runner.callback_errors == ["OSError: disk full"]


@pytest.mark.parametrize(("concurrency", "timeout"), [(0, 1.0), (2.5, 1.0), (1, 0), (1, -1)])
def test_bad_runner_limits_are_clear_errors(concurrency: Any, timeout: Any) -> None:
    with pytest.raises(ValueError, match=r"concurrency|timeout"):
        JudgeRunner(concurrency=concurrency, timeout=timeout)


def test_run_async_runs_sync_and_async_judges_in_the_callers_loop() -> None:
    stop = threading.Event()

    def hangs(trace: Trace) -> bool:
        stop.wait(10)
        return True

    async def scored(trace: Trace) -> float:
        return 0.25

    async def main() -> tuple[Any, Any]:
        return (
            await run_async(scored, agent_trace()),
            await run_async(hangs, agent_trace(), timeout=0.2),
        )

    try:
        good, hung = asyncio.run(main())
    finally:
        stop.set()
    assert (good.status, good.result.score) == ("success", 0.25)
    assert (hung.status, hung.error) == ("failure", "timed out after 0.2 s")


def test_judge_traces_runs_every_judge_on_every_trace_in_order() -> None:
    traces = [agent_trace(), make_trace(row_id="row-2")]
    seen: list[tuple[int, int]] = []
    found = judge_traces(
        traces,
        [no_span_errors(), span_called("search")],
        concurrency=2,
        timeout=5,
        progress=lambda done, total: seen.append((done, total)),
        experiment_id="e1",
    )
    assert [(e.row_id, e.judge_id) for e in found] == [
        ("row-1", "no_span_errors"),
        ("row-1", "span_called:search"),
        ("row-2", "no_span_errors"),
        ("row-2", "span_called:search"),
    ]
    assert [e.result.passed for e in found] == [True, True, True, False]  # type: ignore[union-attr]
    assert {e.experiment_id for e in found} == {"e1"}
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)


def test_two_judges_of_one_name_are_refused() -> None:
    with pytest.raises(ValueError, match="two judges are named 'no_span_errors'"):
        judge_traces([agent_trace()], [no_span_errors(), no_span_errors()])


def test_the_row_error_shows_in_the_trace() -> None:
    trace = make_trace(status="failed", error=ErrorInfo(type="AssertionError", message="wrong"))
    assert trace.error is not None and trace.status == "failed"


def test_an_async_judge_that_blocks_its_loop_still_times_out() -> None:
    """A sync call inside an ``async def`` never lets ``wait_for`` fire: the deadline is
    kept by the watchdog, as for sync judges."""

    async def blocking(trace: Any) -> bool:
        time.sleep(2.0)
        return True

    with JudgeRunner(timeout=0.3) as runner:
        evaluation = runner.submit(blocking, agent_trace()).result(timeout=30)
    assert evaluation.status == "failure"
    assert evaluation.error == "timed out after 0.3 s"


def test_run_waits_behind_no_judge_of_the_pool_or_the_loop() -> None:
    """``eval_row.judge`` runs its judge at once, even while the session's judges fill every
    slot of the runner (here: one async judge that waits until released)."""
    release = threading.Event()

    async def occupying(trace: Any) -> bool:
        while not release.is_set():
            await asyncio.sleep(0.01)
        return True

    async def quick(trace: Any) -> bool:
        return True

    # Should run() wait its turn, the occupying judge is let go after a while, and is done
    # by the time run() returns.
    safety = threading.Timer(5.0, release.set)
    safety.start()
    with JudgeRunner(concurrency=1, timeout=30) as runner:
        busy = runner.submit(occupying, agent_trace())
        evaluation = runner.run(quick, agent_trace())
        assert evaluation.status == "success"
        assert not busy.done()  # quick did not wait for it
        release.set()
        assert busy.result(timeout=30).status == "success"
    safety.cancel()
