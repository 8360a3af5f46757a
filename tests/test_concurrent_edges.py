"""Edges of concurrent eval cases (issue 13): a body that raises SystemExit or its own
CancelledError, an overridden fixture reached through ``request.getfixturevalue``, what a task
a body left running prints later, ``--setup-plan``, and cases cut short by ``pytest.exit``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from support.sessions import INI
from support.store import stored

EXPERIMENT = "edges"


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A real session in a subprocess; a hang fails the test instead of holding it."""
    return pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", *args, timeout=60)


def statuses(db: Path) -> dict[str, str]:
    return {row_id: row.status for row_id, row in stored(db, EXPERIMENT).rows.items()}


# -- SystemExit ------------------------------------------------------------------------------

# test_exit's body calls sys.exit(1); the cases after it need the event loop afterwards.
BODY_EXIT = textwrap.dedent(
    """
    import asyncio
    import sys

    import pytest


    @pytest.mark.eval
    async def test_exit():
        await asyncio.sleep(0.01)
        sys.exit(1)


    @pytest.mark.eval
    @pytest.mark.parametrize("n", range(4))
    async def test_after(n):
        await asyncio.sleep(0.05)
    """
)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_an_async_body_calling_sys_exit_fails_its_case_and_the_loop_serves_on(
    pytester: pytest.Pytester, db: Path, concurrency: int
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_exit=BODY_EXIT)
    result = run(pytester, f"--eval-concurrency={concurrency}")

    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["FAILED test_exit.py::test_exit - SystemExit: 1"])
    assert "INTERNALERROR" not in result.stdout.str()
    assert statuses(db) == {
        "test_exit.py::test_exit": "failed",
        **{f"test_exit.py::test_after[{n}]": "passed" for n in range(4)},
    }


# A task the body starts raises SystemExit on the loop while the other cases wait there.
TASK_EXIT = textwrap.dedent(
    """
    import asyncio

    import pytest


    async def boom():
        raise SystemExit(1)


    @pytest.mark.eval
    @pytest.mark.parametrize("n", range(4))
    async def test_case(n):
        if n == 0:
            asyncio.create_task(boom())
        await asyncio.sleep(0.2)


    @pytest.mark.eval
    @pytest.mark.parametrize("n", range(2))
    async def test_later(n):
        await asyncio.sleep(0.01)
    """
)


def test_a_task_raising_system_exit_does_not_end_the_loop_the_other_cases_wait_on(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_task=TASK_EXIT)
    result = run(pytester, "--eval-concurrency=4")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.assert_outcomes(passed=6)
    assert set(statuses(db).values()) == {"passed"}
    assert len(statuses(db)) == 6


# -- an overridden fixture reached through request.getfixturevalue ---------------------------

OVERRIDDEN_CONFTEST = textwrap.dedent(
    """
    import pytest


    @pytest.fixture
    def base(request):
        return request.node.name
    """
)

OVERRIDDEN = textwrap.dedent(
    """
    import asyncio

    import pytest


    @pytest.fixture
    def base(base):
        return base


    @pytest.fixture
    def dyn(request):
        return request.getfixturevalue("base")


    @pytest.mark.eval
    @pytest.mark.parametrize("i", range(4))
    async def test_dyn(i, dyn):
        await asyncio.sleep(0.05)
        assert dyn == f"test_dyn[{i}]"
    """
)


def test_an_overridden_fixture_reached_by_getfixturevalue_is_each_cases_own(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(OVERRIDDEN_CONFTEST)
    pytester.makepyfile(test_overridden=OVERRIDDEN)
    result = run(pytester, "--eval-concurrency=4")

    result.assert_outcomes(passed=4)
    assert statuses(db) == {f"test_overridden.py::test_dyn[{i}]": "passed" for i in range(4)}


# -- a body's own CancelledError ---------------------------------------------------------------

CANCELLED = textwrap.dedent(
    """
    import asyncio

    import pytest


    @pytest.mark.eval
    async def test_cancelled():
        await asyncio.sleep(0.01)
        raise asyncio.CancelledError()


    @pytest.mark.eval
    @pytest.mark.parametrize("n", range(3))
    async def test_other(n):
        await asyncio.sleep(0.05)
    """
)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_body_raising_cancelled_error_is_reported_as_that_not_as_interrupted(
    pytester: pytest.Pytester, db: Path, concurrency: int
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_cancel=CANCELLED)
    result = run(pytester, f"--eval-concurrency={concurrency}")

    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    result.assert_outcomes(passed=3, failed=1)
    output = result.stdout.str()
    assert "interrupted:" not in output
    assert "cancelled by" not in output
    result.stdout.fnmatch_lines(
        ["FAILED test_cancel.py::test_cancelled - asyncio.exceptions.CancelledError"]
    )
    assert statuses(db)["test_cancel.py::test_cancelled"] == "failed"


# -- what a task left running prints later ---------------------------------------------------

# test_leaves' task prints once its case was reported; test_waits keeps the session running
# until it has (bounded).
LEFT_RUNNING = textwrap.dedent(
    """
    import asyncio
    import pathlib
    import time

    import pytest

    HERE = pathlib.Path(__file__).parent


    async def bg():
        await asyncio.sleep(0.2)
        print("BG-PRINT", flush=True)
        (HERE / "printed").touch()


    @pytest.mark.eval
    async def test_leaves():
        asyncio.create_task(bg())


    @pytest.mark.eval
    async def test_waits():
        deadline = time.monotonic() + 20
        while not (HERE / "printed").exists():
            assert time.monotonic() < deadline, "the task never printed"
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
    """
)


def test_what_a_task_prints_after_its_case_was_reported_is_not_lost(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_left=LEFT_RUNNING)
    result = run(pytester, "-s", "--eval-concurrency=4")

    result.assert_outcomes(passed=2)
    assert (pytester.path / "printed").exists()
    assert "BG-PRINT" in result.stdout.str()


# -- --setup-plan and --setup-only -------------------------------------------------------------

ONE_CASE = textwrap.dedent(
    """
    import asyncio

    import pytest


    @pytest.mark.eval
    async def test_case():
        await asyncio.sleep(0)
    """
)


@pytest.mark.parametrize("option", ["--setup-plan", "--setup-only"])
def test_a_setup_option_that_keeps_cases_apart_is_named_as_itself(
    pytester: pytest.Pytester, option: str
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_one=ONE_CASE)
    result = run(pytester, "--eval-concurrency=2", option)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    line = f"evalrows: --eval-concurrency 2 is not used with {option}: eval cases run one at a time"
    assert line in result.stdout.lines
    assert sum("is not used with" in each for each in result.stdout.lines) == 1


# -- pytest.exit in one case's body ----------------------------------------------------------

# c00 calls pytest.exit once the other three are running; they would wait 60 s. Each case's
# function fixture marks its teardown.
EXIT_IN_BODY = textwrap.dedent(
    """
    import asyncio
    import pathlib
    import time

    import pytest

    HERE = pathlib.Path(__file__).parent
    CASES = [f"c{i:02d}" for i in range(4)]


    @pytest.fixture
    def marks(case):
        yield
        (HERE / f"teardown-{case}").touch()


    @pytest.mark.eval
    @pytest.mark.parametrize("case", CASES)
    async def test_case(case, marks):
        (HERE / f"started-{case}").touch()
        if case == "c00":
            deadline = time.monotonic() + 20
            while not all((HERE / f"started-{other}").exists() for other in CASES):
                assert time.monotonic() < deadline, "the cases never ran at once"
                await asyncio.sleep(0.01)
            pytest.exit("enough")
        await asyncio.sleep(60)
    """
)


def test_cases_cut_short_by_pytest_exit_in_another_body_are_reported_and_error_rows(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_stop=EXIT_IN_BODY)
    result = run(pytester, "--eval-concurrency=4")

    output = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED, output
    assert "INTERNALERROR" not in output
    assert "!!! _pytest.outcomes.Exit: enough !!!" in output
    cut_short = ["c01", "c02", "c03"]
    for case in cut_short:
        result.stdout.fnmatch_lines(
            [f"FAILED test_stop.py::test_case[[]{case}[]] - Failed: interrupted*"]
        )
    # Each one's failure section gives the reason in full.
    assert output.count("\ninterrupted: the case was cancelled by Exit: enough\n") == 3
    found = statuses(db)
    for case in cut_short:
        assert found[f"test_stop.py::test_case[{case}]"] == "error", found
    # Every case that started is torn down, the one that called pytest.exit too.
    torn_down = sorted(path.name for path in pytester.path.glob("teardown-*"))
    assert torn_down == [f"teardown-{case}" for case in ["c00", *cut_short]]
