"""Eval cases at once in one pytest process (issue 13): async cases overlap on the plugin's
event loop, a group's limit caps its cases, rows and spans are those of a run one case at a
time, and every span stays under the row whose case started it."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from support.concurrent import flight, install
from support.output import usage_error
from support.sessions import INI
from support.store import Stored, assert_no_stale_spans, stored

from pytest_evalrows.core.models import SpanRecord

MANY = textwrap.dedent(
    """
    import asyncio

    import flight
    import pytest


    @pytest.mark.eval
    @pytest.mark.parametrize("n", range({count}))
    async def test_case(n, eval_row):
        flight.enter(n)
        await asyncio.sleep(0.05)
        eval_row.log(output=n)
        flight.leave(n)
    """
)


def test_two_hundred_async_cases_overlap_and_each_leaves_its_passed_row(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    install(pytester)
    pytester.makepyfile(test_many=MANY.format(count=200))
    result = pytester.runpytest_subprocess("--eval-experiment=many", "--eval-concurrency=50")
    result.assert_outcomes(passed=200)
    seen = flight(pytester)
    assert 20 <= seen.most["all"] <= 50
    assert seen.in_flight["all"] == 0
    # 200 bodies of 50 ms take 10 s one at a time.
    assert seen.span() < 200 * 0.05 / 2
    rows = stored(pytester.path / ".evalrows" / "evalrows.db", "many").rows
    assert sorted(row.output for row in rows.values()) == list(range(200))
    assert {row.status for row in rows.values()} == {"passed"}


# -- rows and spans as at concurrency 1 -------------------------------------------------------

SPANS = textwrap.dedent(
    """
    import asyncio

    import flight
    import pytest
    from opentelemetry import trace

    pytestmark = pytest.mark.eval
    tracer = trace.get_tracer("suite")


    async def step(name):
        with tracer.start_as_current_span(name):
            await asyncio.sleep(0.01)
            with tracer.start_as_current_span(f"{name}-inner"):
                await asyncio.sleep(0.01)


    def in_thread(name):
        with tracer.start_as_current_span(name):
            with tracer.start_as_current_span(f"{name}-inner"):
                pass


    @pytest.mark.parametrize("n", range(3))
    async def test_nested(n, eval_row):
        flight.enter(f"nested{n}")
        await step(f"nested{n}")
        eval_row.log(output={"n": n})
        eval_row.score("half", n / 2)
        flight.leave(f"nested{n}")


    async def test_tasks(eval_row):
        flight.enter("tasks")
        with tracer.start_as_current_span("parent"):
            await asyncio.create_task(step("task"))
            await asyncio.gather(step("first"), step("second"))
        eval_row.log(output="tasks")
        eval_row.score("done", 1)
        flight.leave("tasks")


    async def test_to_thread(eval_row):
        flight.enter("to_thread")
        with tracer.start_as_current_span("outer"):
            await asyncio.sleep(0.01)
            await asyncio.to_thread(in_thread, "thread")
        eval_row.log(output="to_thread")
        flight.leave("to_thread")


    async def test_failing(eval_row):
        flight.enter("failing")
        await step("failing")
        eval_row.log(output="wrong")
        eval_row.score("done", 0)
        flight.leave("failing")
        assert False, "the answer is wrong"


    async def test_skipped(eval_row):
        flight.enter("skipped")
        await step("skipped")
        flight.leave("skipped")
        pytest.skip("not today")
    """
)

Tree = tuple[str, tuple[Any, ...]]


def tree(spans: list[SpanRecord], span: SpanRecord) -> Tree:
    """A span's name and its children's trees, in name order: the shape without the ids."""
    children = [child for child in spans if child.span_parents == [span.span_id]]
    return (span.name, tuple(sorted(tree(spans, child) for child in children)))


def shapes(found: Stored) -> dict[str, tuple[str, Any, Any, list[Tree]]]:
    """Per row: status, scores, output and the trees of its root spans."""
    shaped = {}
    for row_id, row in found.rows.items():
        spans = found.spans_of(row_id)
        roots = [tree(spans, span) for span in spans if not span.span_parents]
        shaped[row_id] = (row.status, row.scores, row.output, roots)
    return shaped


def test_rows_and_span_trees_at_concurrency_8_are_those_at_1(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    install(pytester)
    pytester.makepyfile(test_spans=SPANS)
    db = pytester.path / ".evalrows" / "evalrows.db"
    seen = {}
    for experiment, concurrency in (("serial", 1), ("eight", 8)):
        result = pytester.runpytest_subprocess(
            f"--eval-experiment={experiment}", f"--eval-concurrency={concurrency}"
        )
        result.assert_outcomes(passed=5, failed=1, skipped=1)
        seen[experiment] = flight(pytester).most["all"]
    assert seen["serial"] == 1
    assert seen["eight"] >= 2
    serial, eight = stored(db, "serial"), stored(db, "eight")
    assert_no_stale_spans(eight)
    assert shapes(eight) == shapes(serial)
    # The shapes hold what the suite made, so equal shapes are not equally empty ones.
    tasks = shapes(serial)["test_spans.py::test_tasks"]
    assert tasks[0] == "passed"
    [(_, (parent,))] = tasks[3]
    assert parent == (
        "parent",
        (
            ("first", (("first-inner", ()),)),
            ("second", (("second-inner", ()),)),
            ("task", (("task-inner", ()),)),
        ),
    )
    [(_, (outer,))] = shapes(serial)["test_spans.py::test_to_thread"][3]
    assert outer == ("outer", (("thread", (("thread-inner", ()),)),))
    statuses = {row_id.split("::")[1]: row[0] for row_id, row in shapes(eight).items()}
    assert statuses["test_failing"] == "failed"
    assert statuses["test_skipped"] == "skipped"


# -- no span in another row --------------------------------------------------------------------

APART = textwrap.dedent(
    """
    import asyncio
    import contextvars
    import random
    import threading

    import flight
    import pytest
    from opentelemetry import trace

    tracer = trace.get_tracer("apart")
    CASES = [f"c{i:02d}" for i in range(30)]


    def spans_in_thread(case):
        with tracer.start_as_current_span(f"{case}-thread"):
            pass


    def orphan(case):
        with tracer.start_as_current_span(f"{case}-orphan"):
            pass


    @pytest.mark.eval(concurrent=True)
    @pytest.mark.parametrize("case", CASES)
    async def test_case(case):
        flight.enter(case)
        for step in range(3):
            with tracer.start_as_current_span(f"{case}-step{step}"):
                await asyncio.sleep(random.uniform(0, 0.02))
                with tracer.start_as_current_span(f"{case}-step{step}-inner"):
                    await asyncio.sleep(random.uniform(0, 0.02))
        thread = threading.Thread(
            target=contextvars.copy_context().run, args=(spans_in_thread, case)
        )
        thread.start()
        await asyncio.to_thread(thread.join)
        # Started with no context at all while the other cases run: nobody's span.
        stray = threading.Thread(target=orphan, args=(case,))
        stray.start()
        await asyncio.to_thread(stray.join)
        flight.leave(case)
    """
)


def test_thirty_overlapping_cases_keep_every_span_under_their_own_row(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    install(pytester)
    pytester.makepyfile(test_apart=APART)
    result = pytester.runpytest_subprocess("--eval-experiment=apart", "--eval-concurrency=30")
    result.assert_outcomes(passed=30)
    assert flight(pytester).most["all"] >= 10
    found = stored(pytester.path / ".evalrows" / "evalrows.db", "apart")
    assert_no_stale_spans(found)
    assert len(found.rows) == 30
    for row_id, row in found.rows.items():
        case = row_id.split("[")[1].rstrip("]")
        spans = found.spans_of(row_id)
        own = sorted(span.name for span in spans if span.span_id != row.span_id)
        expected = [f"{case}-step{step}" for step in range(3)]
        expected += [f"{case}-step{step}-inner" for step in range(3)]
        expected.append(f"{case}-thread")
        assert own == sorted(expected), row_id
        assert all(span.root_span_id == row.root_span_id for span in spans), row_id
    strays = [span for span in found.spans if span.name.endswith("-orphan")]
    assert all(span.row_id is None for span in strays), strays


# -- a group's limit ---------------------------------------------------------------------------

GROUPS = textwrap.dedent(
    """
    import asyncio

    import flight
    import pytest


    @pytest.mark.eval(concurrent=True, concurrency_group="g")
    @pytest.mark.parametrize("n", range(12))
    async def test_grouped(n):
        flight.enter(n, "g")
        await asyncio.sleep(0.03)
        flight.leave(n, "g")


    @pytest.mark.eval(concurrent=True)
    @pytest.mark.parametrize("n", range(6))
    async def test_free(n):
        flight.enter(n, "free")
        flight.enter(n, "arrived")  # never left: the last to arrive waits for no one
        assert await flight.gathered(6, "arrived")
        flight.leave(n, "free")
    """
)


def test_a_groups_limit_caps_its_cases_and_not_the_others(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    install(pytester)
    pytester.makepyfile(test_groups=GROUPS)
    result = pytester.runpytest_subprocess(
        "--eval-concurrency=8", "--eval-concurrency-limit", "g=2"
    )
    result.assert_outcomes(passed=18)
    most = flight(pytester).most
    assert most["g"] == 2
    assert most["free"] == 6


# -- one at a time -----------------------------------------------------------------------------

ALONE = textwrap.dedent(
    """
    import asyncio
    import threading

    import flight
    import pytest


    @pytest.mark.eval
    @pytest.mark.parametrize("n", range(5))
    async def test_case(n, eval_row):
        flight.enter(n)
        await asyncio.sleep(0.01)
        eval_row.log(output=threading.current_thread().name)
        flight.leave(n)


    async def test_not_an_eval():
        pass
    """
)


def test_async_cases_at_concurrency_1_run_alone_on_the_plugins_loop(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    install(pytester)
    pytester.makepyfile(test_alone=ALONE)
    result = pytester.runpytest_subprocess("--eval-experiment=alone", "-p", "no:anyio")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        ["*test_not_an_eval*", "async def functions are not natively supported*"]
    )
    assert flight(pytester).most["all"] == 1
    rows = stored(pytester.path / ".evalrows" / "evalrows.db", "alone").rows
    assert sorted(rows) == [f"test_alone.py::test_case[{n}]" for n in range(5)]
    assert {row.status for row in rows.values()} == {"passed"}
    assert {row.output for row in rows.values()} == {"evalrows-cases-loop"}


# -- bad marker values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "named", "valid"),
    [
        ('concurrent="yes"', "concurrent='yes'", "concurrent takes True or False"),
        ('concurrency_group=""', "concurrency_group=", "name the group"),
    ],
)
def test_a_bad_marker_value_is_a_usage_error_naming_the_test(
    pytester: pytest.Pytester, marker: str, named: str, valid: str
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_bad=f"""
        import pytest


        @pytest.mark.eval({marker})
        def test_case():
            pass
        """
    )
    result = pytester.runpytest_subprocess("--eval-concurrency=2")
    line = usage_error(result)
    assert "test_bad.py::test_case" in line
    assert named in line
    assert valid in line
