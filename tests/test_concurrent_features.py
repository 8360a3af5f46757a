"""Concurrent eval cases with the plugin's other features (issue 13): reruns, xdist, trials,
judges, and suites that mix them with sync eval cases and plain tests, each as without
concurrency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.sessions import INI
from support.store import assert_no_stale_spans, stored

EXPERIMENT = "features"

# NINE async cases; c00, c03 and c06 fail on their first execution only (ran-<case> marks it).
# Each opens one span named after its execution.
RERUNS = """
import asyncio
import pathlib

import pytest
from opentelemetry import trace

HERE = pathlib.Path(__file__).parent


@pytest.mark.eval
@pytest.mark.parametrize("case", [f"c{i:02d}" for i in range(9)])
async def test_case(case, eval_row):
    first = not (HERE / f"ran-{case}").exists()
    (HERE / f"ran-{case}").touch()
    with trace.get_tracer("suite").start_as_current_span(f"user-{case}-{int(first)}"):
        eval_row.log(output=case)
        await asyncio.sleep(0.05)
    assert not (first and int(case[1:]) % 3 == 0), f"{case} fails once"
"""

FLAKY = ["c00", "c03", "c06"]


def rid(module: str, case: str) -> str:
    return f"{module}.py::test_case[{case}]"


def rerun_shape(db: Path, experiment: str) -> dict[str, Any]:
    found = stored(db, experiment)
    assert_no_stale_spans(found)
    return {
        row_id: (
            row.status,
            row.execution,
            sorted(span.name for span in found.spans_of(row_id) if span.span_parents),
        )
        for row_id, row in found.rows.items()
    }


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_rerun_case_keeps_only_its_last_execution(
    pytester: pytest.Pytester, db: Path, concurrency: int
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_reruns=RERUNS)
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", f"--eval-concurrency={concurrency}", "--reruns=1"
    )

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert result.parseoutcomes() == {"passed": 9, "rerun": 3}
    assert "INTERNALERROR" not in result.stdout.str()
    # The first execution's span is gone; the row is the second execution's.
    assert rerun_shape(db, EXPERIMENT) == {
        rid("test_reruns", f"c{i:02d}"): (
            ("passed", 2, [f"user-c{i:02d}-0"])
            if f"c{i:02d}" in FLAKY
            else ("passed", 1, [f"user-c{i:02d}-1"])
        )
        for i in range(9)
    }


# flaky_a fails its first execution, which may be rerun, only once fails_b has failed: -x stops
# the session while a's rerun is due.
RERUN_AT_STOP = """
import asyncio
import pathlib
import time

import pytest

HERE = pathlib.Path(__file__).parent


@pytest.mark.eval
@pytest.mark.flaky(reruns=1)
async def test_flaky_a():
    first = not (HERE / "ran-a").exists()
    (HERE / "ran-a").touch()
    deadline = time.monotonic() + 20
    while first and not (HERE / "b-failed").exists():
        assert time.monotonic() < deadline, "fails_b never failed"
        await asyncio.sleep(0.01)
    assert not first, "a fails its first execution"


@pytest.mark.eval
async def test_fails_b():
    await asyncio.sleep(0.01)
    (HERE / "b-failed").touch()
    assert False, "b fails"
"""


def test_a_stop_leaves_no_started_case_without_a_final_report_when_its_rerun_is_due(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_stop=RERUN_AT_STOP)
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "--eval-concurrency=4", "-x"
    )

    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    # The rerun due is part of a's run: it still runs, and a ends passed.
    assert result.parseoutcomes() == {"failed": 1, "passed": 1, "rerun": 1}
    found = stored(db, EXPERIMENT)
    assert {row_id: (row.status, row.execution) for row_id, row in found.rows.items()} == {
        "test_stop.py::test_flaky_a": ("passed", 2),
        "test_stop.py::test_fails_b": ("failed", 1),
    }
    assert_no_stale_spans(found)


# -- xdist -----------------------------------------------------------------------------------

XDIST = """
import asyncio

import pytest
from opentelemetry import trace

FAILING = {"c07", "c23", "c31"}


@pytest.mark.eval
@pytest.mark.parametrize("case", [f"c{i:02d}" for i in range(40)])
async def test_case(case, eval_row):
    with trace.get_tracer("suite").start_as_current_span(f"user-{case}"):
        eval_row.log(output=case)
        await asyncio.sleep(0.02)
    assert case not in FAILING
"""


def test_xdist_workers_running_cases_at_once_record_every_row(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_xdist_cases=XDIST)
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "-n", "2", "--eval-concurrency=4"
    )

    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str()
    result.assert_outcomes(passed=37, failed=3)
    found = stored(db, EXPERIMENT)
    failing = {"c07", "c23", "c31"}
    assert {row_id: row.status for row_id, row in found.rows.items()} == {
        rid("test_xdist_cases", f"c{i:02d}"): "failed" if f"c{i:02d}" in failing else "passed"
        for i in range(40)
    }
    for row_id, row in found.rows.items():
        case = row_id[-4:-1]
        assert row.output == case
        user = [span.name for span in found.spans_of(row_id) if span.span_parents]
        assert user == [f"user-{case}"], row_id
    assert_no_stale_spans(found)


# -- trials and judges -----------------------------------------------------------------------

TRIALS_AND_JUDGES = """
import asyncio
import pathlib
import time

import pytest
from opentelemetry import trace

from pytest_evalrows.judging import max_spans

HERE = pathlib.Path(__file__).parent


@pytest.mark.eval(trials=3)
@pytest.mark.parametrize("case", ["a", "b", "c", "d"])
async def test_trial(case, eval_row, eval_trial):
    (HERE / f"started-{case}-{eval_trial}").touch()
    if case == "a":  # a's three trials wait (bounded) until all three run at once
        deadline = time.monotonic() + 20
        while not all((HERE / f"started-a-{k}").exists() for k in (1, 2, 3)):
            assert time.monotonic() < deadline, "a's trials never ran at once"
            await asyncio.sleep(0.01)
    eval_row.log(output=f"{case}-{eval_trial}")
    await asyncio.sleep(0.02)
    assert not (case == "c" and eval_trial == 2)


@pytest.mark.eval(judges=[max_spans(3)])
@pytest.mark.parametrize("spans", [0, 1, 2, 3, 4])
async def test_judged(spans, eval_row):
    for k in range(spans):
        with trace.get_tracer("suite").start_as_current_span(f"span-{k}"):
            await asyncio.sleep(0.01)
    eval_row.log(output=spans)
"""


def test_trials_and_judges_of_cases_running_at_once(pytester: pytest.Pytester, db: Path) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_tj=TRIALS_AND_JUDGES)
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "--eval-concurrency=4"
    )

    result.assert_outcomes(passed=16, failed=1)
    assert "INTERNALERROR" not in result.stdout.str()
    found = stored(db, EXPERIMENT)
    trials = {
        f"test_tj.py::test_trial[{case}]#{k}": (
            "failed" if (case, k) == ("c", 2) else "passed",
            f"{case}-{k}",
        )
        for case in "abcd"
        for k in (1, 2, 3)
    }
    judged = {f"test_tj.py::test_judged[{n}]": ("passed", n) for n in range(5)}
    assert {
        row_id: (row.status, row.output) for row_id, row in found.rows.items()
    } == trials | judged
    # The row's own span counts: max_spans(3) passes up to 2 spans of the case's own.
    for n in range(5):
        row = found.rows[f"test_tj.py::test_judged[{n}]"]
        scores = {name: value for name, value in row.scores.items() if name.startswith("judge:")}
        assert scores == {"judge:max_spans:3": 1.0 if n <= 2 else 0.0}, (n, row.scores)
        assert len(found.spans_of(row.row_id)) == n + 1
    for row_id in trials:
        assert not [name for name in found.rows[row_id].scores if name.startswith("judge:")]
    assert_no_stale_spans(found)


# -- a suite mixing concurrent cases, sync eval cases and plain tests -------------------------

# Every event is a line of events.txt: fixtures' setups and teardowns, and each test's
# "enter"/"exit" (async bodies) or "run" (sync eval cases and plain tests).
MIXED_CONFTEST = """
import pathlib

import pytest

HERE = pathlib.Path(__file__).parent


def log(event):
    with open(HERE / "events.txt", "a") as events:
        events.write(event + "\\n")


@pytest.fixture(scope="module")
def module_resource(request):
    log(f"setup module {request.module.__name__}")
    yield
    log(f"teardown module {request.module.__name__}")


@pytest.fixture(scope="class")
def class_resource(request):
    name = f"{request.module.__name__}-{request.cls.__name__}"
    log(f"setup class {name}")
    yield
    log(f"teardown class {name}")
"""

MIXED_MODULE = """
import asyncio
import pathlib
import time

import pytest
from conftest import log

HERE = pathlib.Path(__file__).parent
M = __name__


async def entered(name, together):
    log(f"enter {name}")
    (HERE / f"entered-{name}").touch()
    deadline = time.monotonic() + 20
    while not all((HERE / f"entered-{other}").exists() for other in together):
        assert time.monotonic() < deadline, "the cases never ran at once"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.02)
    log(f"exit {name}")


@pytest.mark.eval
@pytest.mark.parametrize("n", range(3))
async def test_first(n, module_resource):
    await entered(f"{M}-first-{n}", [f"{M}-first-{k}" for k in range(3)])


@pytest.mark.eval
def test_sync_case(module_resource):
    log(f"run {M}-sync")


def test_plain():
    log(f"run {M}-plain")


class TestOne:
    @pytest.mark.eval
    @pytest.mark.parametrize("n", range(3))
    async def test_async(self, n, class_resource, module_resource):
        await entered(f"{M}-one-{n}", [])

    @pytest.mark.eval
    def test_sync(self, class_resource):
        log(f"run {M}-one-sync")

    def test_plain(self, class_resource):
        log(f"run {M}-one-plain")

    @pytest.mark.eval
    @pytest.mark.parametrize("n", range(2))
    async def test_async_again(self, n, class_resource):
        await entered(f"{M}-one-again-{n}", [])


class TestTwo:
    @pytest.mark.eval
    @pytest.mark.parametrize("n", range(2))
    async def test_async(self, n, class_resource):
        await entered(f"{M}-two-{n}", [])

    def test_plain(self, class_resource):
        log(f"run {M}-two-plain")
"""

MODULES = ("test_mix_a", "test_mix_b")


def test_a_mixed_suite_keeps_pytests_order_and_fixture_scopes(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(MIXED_CONFTEST)
    pytester.makepyfile(**dict.fromkeys(MODULES, MIXED_MODULE))
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "--eval-concurrency=4"
    )

    result.assert_outcomes(passed=30)
    events = (pytester.path / "events.txt").read_text().splitlines()
    # Each module's and each class's fixture set up and torn down exactly once, around
    # everything of its module or class.
    for module in MODULES:
        assert events.count(f"setup module {module}") == 1
        assert events.count(f"teardown module {module}") == 1
        own = [i for i, event in enumerate(events) if f" {module}-" in event]
        assert events.index(f"setup module {module}") < min(own)
        assert events.index(f"teardown module {module}") > max(own)
        for cls, prefix in (("TestOne", "one-"), ("TestTwo", "two-")):
            name = f"{module}-{cls}"
            assert events.count(f"setup class {name}") == 1
            assert events.count(f"teardown class {name}") == 1
            own = [i for i, event in enumerate(events) if f" {module}-{prefix}" in event]
            assert events.index(f"setup class {name}") < min(own)
            assert events.index(f"teardown class {name}") > max(own)
    # The sync eval cases and plain tests ran in their place, one at a time, never while an
    # async body was in flight.
    in_flight: set[str] = set()
    ran: list[str] = []
    for event in events:
        verb, _, name = event.partition(" ")
        if verb == "enter":
            in_flight.add(name)
        elif verb == "exit":
            in_flight.remove(name)
        elif verb == "run":
            assert not in_flight, (event, in_flight)
            ran.append(name)
    assert not in_flight
    assert ran == [
        f"{module}-{name}"
        for module in MODULES
        for name in ("sync", "plain", "one-sync", "one-plain", "two-plain")
    ]
    found = stored(db, EXPERIMENT)
    assert len(found.rows) == 2 * (3 + 1 + 3 + 1 + 2 + 2)
    assert {row.status for row in found.rows.values()} == {"passed"}
