"""More edges of concurrent eval cases (issue 13): the cases that must run alone, a rerun
condition that looks at the error, and an xdist worker that dies with cases running at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from support.concurrent import flight, install
from support.sessions import INI
from support.store import stored

EXPERIMENT = "edges"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A real session in a subprocess; a hang fails the test instead of holding it."""
    return pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", *args, timeout=60)


# -- cases that run alone --------------------------------------------------------------------

# Plain async cases around each of three that must run alone: with a warning filter of its own,
# with the subtests fixture, with request. Each body is in flight for a while. All are
# parametrized alike, so that nothing but running alone keeps one from its neighbours' batch.
ALONE = textwrap.dedent(
    """
    import asyncio

    import flight
    import pytest

    pytestmark = pytest.mark.eval


    async def body(name):
        flight.enter(name)
        await asyncio.sleep(0.1)
        flight.leave(name)


    @pytest.mark.parametrize("n", range(3))
    async def test_plain_a(n):
        await body(f"plain-a{n}")


    @pytest.mark.filterwarnings("error::UserWarning")
    @pytest.mark.parametrize("n", [0])
    async def test_filtered(n):
        await body("filtered")


    @pytest.mark.parametrize("n", range(2))
    async def test_plain_b(n):
        await body(f"plain-b{n}")


    @pytest.mark.parametrize("n", [0])
    async def test_subtests(n, subtests):
        await body("subtests")
        with subtests.test(msg="one"):
            assert False, "the subtest fails"


    @pytest.mark.parametrize("n", range(2))
    async def test_plain_c(n):
        await body(f"plain-c{n}")


    @pytest.mark.parametrize("n", [0])
    async def test_request(n, request):
        await body("request")


    @pytest.mark.parametrize("n", range(2))
    async def test_plain_d(n):
        await body(f"plain-d{n}")
    """
)

ALONE_CASES = ("filtered", "subtests", "request")
# The subtest's own report; test_subtests itself then fails as "contains 1 failed subtest".
SUBFAILED = "SUBFAILED[[]one[]] test_alone.py::test_subtests[[]0[]] - AssertionError*"


def test_cases_that_must_run_alone_overlap_nothing_while_plain_ones_overlap(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    install(pytester)
    pytester.makepyfile(test_alone=ALONE)
    result = run(pytester, "--eval-concurrency=8")

    assert "INTERNALERROR" not in result.stdout.str()
    assert result.parseoutcomes() == {"failed": 2, "passed": 11}
    result.stdout.fnmatch_lines([SUBFAILED])
    seen = flight(pytester)
    assert seen.most["all"] >= 2  # the plain ones overlapped
    assert seen.in_flight["all"] == 0
    bodies = [event for event in seen.events if event.startswith("body-")]
    for name in ALONE_CASES:
        start = bodies.index(f"body-start {name}")
        # Nothing started or ended while it ran.
        assert bodies[start + 1] == f"body-end {name}", bodies


def test_a_case_with_the_subtests_fixture_reports_its_subtests_under_xdist(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    install(pytester)
    pytester.makepyfile(test_alone=ALONE)
    result = run(pytester, "-n", "1", "--eval-concurrency=8")

    output = result.stdout.str()
    assert "INTERNALERROR" not in output
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert result.parseoutcomes() == {"failed": 2, "passed": 11}
    result.stdout.fnmatch_lines([SUBFAILED])


# -- a rerun condition that looks at the error -----------------------------------------------

# test_flaky times out on its first execution only; test_wrong fails with another error every
# time. The condition reruns a TimeoutError alone.
RERUN_CONDITION = textwrap.dedent(
    """
    import asyncio
    import pathlib

    import pytest

    HERE = pathlib.Path(__file__).parent


    def timed_out(error):
        return isinstance(error, TimeoutError)


    @pytest.mark.eval
    @pytest.mark.flaky(reruns=2, condition=timed_out)
    async def test_flaky():
        first = not (HERE / "ran-flaky").exists()
        (HERE / "ran-flaky").touch()
        await asyncio.sleep(0.05)
        if first:
            raise TimeoutError("the model took too long")


    @pytest.mark.eval
    @pytest.mark.flaky(reruns=2, condition=timed_out)
    async def test_wrong():
        await asyncio.sleep(0.05)
        raise ValueError("a wrong answer")


    @pytest.mark.eval
    @pytest.mark.parametrize("n", range(2))
    async def test_plain(n):
        await asyncio.sleep(0.05)
    """
)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_callable_rerun_condition_sees_the_error_of_the_execution(
    pytester: pytest.Pytester, db: Path, concurrency: int
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_condition=RERUN_CONDITION)
    result = run(pytester, f"--eval-concurrency={concurrency}")

    assert "INTERNALERROR" not in result.stdout.str()
    assert result.parseoutcomes() == {"passed": 3, "failed": 1, "rerun": 1}
    result.stdout.fnmatch_lines(["FAILED test_condition.py::test_wrong - ValueError: a wrong*"])
    rows = stored(db, EXPERIMENT).rows
    assert {row_id: (row.status, row.execution) for row_id, row in rows.items()} == {
        "test_condition.py::test_flaky": ("passed", 2),
        "test_condition.py::test_wrong": ("failed", 1),
        "test_condition.py::test_plain[0]": ("passed", 1),
        "test_condition.py::test_plain[1]": ("passed", 1),
    }


# -- an xdist worker that dies with cases running at once ------------------------------------

# Each case writes started-<n> (holding its process id) first; case 1 kills its worker while
# the others in flight sleep.
CRASH = textwrap.dedent(
    """
    import asyncio
    import os
    import pathlib

    import pytest

    HERE = pathlib.Path(__file__).parent


    @pytest.mark.eval
    @pytest.mark.parametrize("n", range(8))
    async def test_case(n):
        (HERE / f"started-{n}").write_text(str(os.getpid()))
        if n == 1:
            await asyncio.sleep(0.1)
            os._exit(3)
        await asyncio.sleep(0.3)
    """
)


def test_every_case_a_dead_worker_was_running_is_reported_and_an_error_row(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_crash=CRASH)
    result = run(pytester, "-n", "1", "--eval-concurrency=4")

    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert "INTERNALERROR" not in output
    assert "1 worker(s) crashed" in output
    started = {
        path.name.split("-")[1]: path.read_text() for path in pytester.path.glob("started-*")
    }
    dead = started["1"]
    on_dead = {n for n, pid in started.items() if pid == dead}
    assert len(on_dead) >= 2, started  # cases ran at once on the worker that died
    rows = stored(db, EXPERIMENT).rows
    for n in sorted(on_dead):
        result.stdout.fnmatch_lines([f"FAILED test_crash.py::test_case[[]{n}[]] - worker *"])
        assert f"crashed while running 'test_crash.py::test_case[{n}]'" in output
        assert rows[f"test_crash.py::test_case[{n}]"].status == "error", n


# A case of a parametrized test and one of a plain test in one module: each waits (bounded)
# for the other to have started, which only cases running side by side can do.
SIDE_BY_SIDE = textwrap.dedent(
    """
    import asyncio
    import pathlib
    import time

    import pytest

    HERE = pathlib.Path(__file__).parent


    async def meet(me, other):
        (HERE / f"started-{me}").touch()
        deadline = time.monotonic() + 5
        while not (HERE / f"started-{other}").exists():
            assert time.monotonic() < deadline, f"{other} never ran beside {me}"
            await asyncio.sleep(0.01)


    @pytest.mark.eval
    @pytest.mark.parametrize("n", [0])
    async def test_param(n):
        await meet("param", "plain")


    @pytest.mark.eval
    async def test_plain():
        await meet("plain", "param")
    """
)


def test_parametrized_and_plain_cases_of_one_module_run_side_by_side(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_side=SIDE_BY_SIDE)
    result = pytester.runpytest_subprocess("--eval-concurrency=2", "-p", "no:randomly")
    result.assert_outcomes(passed=2)
