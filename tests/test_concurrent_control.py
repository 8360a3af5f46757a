"""Concurrent eval cases under pytest's control flow (issue 13): ``-x`` and ``--maxfail`` start
no new case and report every running one, Ctrl-C cancels the running cases and reports them
as interrupted, and ``--lf`` and ``--eval-resume`` run only what they select, each case's row
versioned as without concurrency."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.output import deselected
from support.sessions import INI
from support.store import assert_no_stale_spans, history, stored

# COUNT async cases c00, c01, ... Each writes started-<case> as its body starts, opens one
# span, waits SLEEP seconds and fails while fail-<case> exists; its function fixture writes
# teardown-<case> when torn down. The cases in GATHER first wait (bounded) until all of them
# have started: they can pass only if they run at once.
SUITE = """
import asyncio
import pathlib
import time

import pytest
from opentelemetry import trace

HERE = pathlib.Path(__file__).parent
CASES = [f"c{i:02d}" for i in range(@COUNT@)]
GATHER = @GATHER@
QUICK = @QUICK@


async def gather():
    deadline = time.monotonic() + 20
    while not all((HERE / f"started-{case}").exists() for case in GATHER):
        assert time.monotonic() < deadline, "the gathered cases never ran at once"
        await asyncio.sleep(0.01)


@pytest.fixture
def marks(case):
    yield
    (HERE / f"teardown-{case}").touch()


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
async def test_case(case, marks, eval_row):
    (HERE / f"started-{case}").touch()
    if case in GATHER:
        await gather()
    with trace.get_tracer("suite").start_as_current_span(f"user-{case}"):
        eval_row.log(output=case)
        await asyncio.sleep(0 if case in QUICK else @SLEEP@)
    assert not (HERE / f"fail-{case}").exists(), f"{case} fails"
"""

EXPERIMENT = "control"


def cases(count: int) -> list[str]:
    return [f"c{i:02d}" for i in range(count)]


def rid(case: str) -> str:
    return f"test_cases.py::test_case[{case}]"


def write_suite(
    pytester: pytest.Pytester,
    count: int,
    sleep: float,
    gather: list[str] | None = None,
    quick: list[str] | None = None,
) -> Path:
    pytester.makeini(INI)
    source = SUITE.replace("@COUNT@", str(count)).replace("@SLEEP@", repr(sleep))
    source = source.replace("@GATHER@", repr(gather or []))
    source = source.replace("@QUICK@", repr(quick or []))
    pytester.makepyfile(test_cases=source)
    return pytester.path


def fail(directory: Path, *names: str) -> None:
    for case in names:
        (directory / f"fail-{case}").touch()


def marked(directory: Path, what: str) -> set[str]:
    """The cases that wrote ``<what>-<case>`` (started, teardown)."""
    return {path.name.split("-", 1)[1] for path in directory.glob(f"{what}-c*")}


def forget_marks(directory: Path) -> None:
    for path in [*directory.glob("started-c*"), *directory.glob("teardown-c*")]:
        path.unlink()


def junit_outcomes(path: Path) -> dict[str, str]:
    """Each reported case's outcome in a junitxml report, by case name."""
    outcomes = {}
    for testcase in ET.parse(path).getroot().iter("testcase"):
        name = testcase.attrib["name"]
        assert name.startswith("test_case[") and name.endswith("]"), name
        children = {child.tag for child in testcase} - {"system-out", "system-err"}
        assert len(children) <= 1, (name, children)
        outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}
        outcomes[name[len("test_case[") : -1]] = outcome[children.pop()] if children else "passed"
    return outcomes


COMMON = (f"--eval-experiment={EXPERIMENT}", "--eval-concurrency=4")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", *args)


# -- -x and --maxfail ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "failing"),
    [(["-x"], ["c05"]), (["--maxfail=2"], ["c05", "c06"])],
    ids=["x", "maxfail2"],
)
def test_a_stop_starts_no_new_case_and_every_started_case_ends_reported_and_recorded(
    pytester: pytest.Pytester, db: Path, stop: list[str], failing: list[str]
) -> None:
    directory = write_suite(pytester, 20, 0.2, gather=cases(4))
    fail(directory, *failing)
    result = run(pytester, "--eval-concurrency=4", "--junitxml=report.xml", *stop)

    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    output = result.stdout.str()
    assert "INTERNALERROR" not in output
    reported = junit_outcomes(directory / "report.xml")
    started = marked(directory, "started")
    assert set(failing) <= started
    assert len(reported) < 20, reported
    # Every case that started ended: reported, torn down and recorded; none other ran.
    assert set(reported) == started
    assert marked(directory, "teardown") == started
    assert {case for case, outcome in reported.items() if outcome == "failed"} == set(failing)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == len(failing), outcomes
    assert outcomes.get("passed") == len(started) - len(failing), outcomes
    found = stored(db, EXPERIMENT)
    assert {row_id: row.status for row_id, row in found.rows.items()} == {
        rid(case): reported[case] for case in started
    }
    for case in started:
        assert found.rows[rid(case)].output == case
        assert [span.name for span in found.spans_of(rid(case)) if span.span_parents] == [
            f"user-{case}"
        ]
    assert_no_stale_spans(found)


# -- Ctrl-C ----------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert process.poll() is None, f"the session ended before {what}"
        assert time.monotonic() < deadline, f"gave up waiting until {what}"
        time.sleep(0.02)


# Six sync cases on threads: each writes started-<case>, then waits (bounded) until the test
# writes "release", which it does once the session has printed its last line.
SYNC_SUITE = """
import pathlib
import time

import pytest

HERE = pathlib.Path(__file__).parent


@pytest.fixture
def marks(case):
    yield
    (HERE / f"teardown-{case}").touch()


@pytest.mark.eval(concurrent=True)
@pytest.mark.parametrize("case", [f"c{i:02d}" for i in range(6)])
def test_case(case, marks):
    (HERE / f"started-{case}").touch()
    deadline = time.monotonic() + 60
    while not (HERE / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
"""


@dataclass
class Interrupted:
    ret: int
    output: str
    # Whether the process ended before the test wrote "release".
    ended_unreleased: bool


def interrupt(
    directory: Path, *args: str, release: float | None = None, started: int = 4
) -> Interrupted:
    """Run the suite in ``python -m pytest`` and press Ctrl-C once ``started`` cases have
    started (the last 4 of them still running). With ``release``, the cases' bodies may end
    once the session has printed its last line and the process has had that many seconds to
    end by itself."""
    out = directory / "session.out"
    with open(out, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *COMMON, *args],
            cwd=directory,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    try:
        wait_until(
            lambda: len(marked(directory, "started")) == started,
            process,
            f"{started} cases started",
        )
        process.send_signal(signal.SIGINT)
        if release is not None:
            wait_until(
                lambda: re.search(r"\n=+ .* in [\d.]+s.* =+\n", out.read_text()) is not None,
                process,
                "the session printed its last line",
            )
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=release)
            (directory / "release").touch()
        ended_unreleased = process.poll() is not None
        # The cases wait 60 s each: the session ends within 30 s only if they are cancelled
        # or given up on.
        ret = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return Interrupted(ret, out.read_text(), ended_unreleased)


def assert_interrupted(
    directory: Path, db: Path, ret: int, output: str, finished: frozenset[str] = frozenset()
) -> None:
    """The 4 running cases were reported as failed, interrupted, torn down and recorded as
    errors (cut short, they neither passed nor failed),
    and the ``finished`` ones as passed."""
    assert ret == pytest.ExitCode.INTERRUPTED, output
    started = marked(directory, "started")
    running = started - finished
    assert started == set(cases(len(finished) + 4)), output
    assert "Traceback" not in output
    assert "During handling of the above exception" not in output
    assert "INTERNALERROR" not in output
    assert "!!! KeyboardInterrupt !!!" in output
    for case in sorted(running):
        assert f"FAILED test_cases.py::test_case[{case}] - Failed: interrupted" in output
    # Counted in the failure sections only: on CI (``CI`` set) pytest's short summary
    # prints each reason in full too.
    assert output.count("\ninterrupted: the case was cancelled by KeyboardInterrupt\n") == 4
    last = output.splitlines()[-1]
    assert re.search(r"=+ 4 failed(, \d+ passed)? in ", last), last
    assert ("passed" in last) == bool(finished), last
    assert marked(directory, "teardown") == started
    found = stored(db, EXPERIMENT)
    assert {row_id: row.status for row_id, row in found.rows.items()} == {
        rid(case): "error" if case in running else "passed" for case in started
    }


def test_ctrl_c_cancels_the_running_cases_reports_them_and_tears_them_down(
    pytester: pytest.Pytester, db: Path
) -> None:
    directory = write_suite(pytester, 10, 60, gather=cases(4))
    done = interrupt(directory)
    assert_interrupted(directory, db, done.ret, done.output)


def test_ctrl_c_does_not_count_the_cancelled_cases_as_reruns(
    pytester: pytest.Pytester, db: Path
) -> None:
    directory = write_suite(pytester, 10, 60, gather=cases(4))
    done = interrupt(directory, "--reruns=1")
    assert_interrupted(directory, db, done.ret, done.output)


def test_ctrl_c_keeps_the_rows_of_the_cases_finished_before_it(
    pytester: pytest.Pytester, db: Path
) -> None:
    # c00 and c01 end at once; c02..c05 take their places and are running at the Ctrl-C.
    directory = write_suite(pytester, 10, 60, quick=["c00", "c01"])
    done = interrupt(directory, started=6)
    assert_interrupted(directory, db, done.ret, done.output, finished=frozenset({"c00", "c01"}))
    found = stored(db, EXPERIMENT)
    for case in cases(6):
        names = [span.name for span in found.spans_of(rid(case)) if span.span_parents]
        assert names == [f"user-{case}"], case
    assert_no_stale_spans(found)


def test_ctrl_c_reports_and_tears_down_the_sync_cases_running_on_threads(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_cases=SYNC_SUITE)
    done = interrupt(pytester.path, release=0)
    assert_interrupted(pytester.path, db, done.ret, done.output)


def test_ctrl_c_does_not_wait_for_the_sync_bodies_it_gave_up_on(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_cases=SYNC_SUITE)
    done = interrupt(pytester.path, release=5)
    assert done.ret == pytest.ExitCode.INTERRUPTED, done.output
    assert done.ended_unreleased, "the process waited for the case bodies after the session"


# -- --lf and --eval-resume ------------------------------------------------------------------


def test_last_failed_under_concurrency_reruns_only_the_failures_as_new_versions(
    pytester: pytest.Pytester, db: Path
) -> None:
    directory = write_suite(pytester, 10, 0.05)
    failing = ["c02", "c05", "c09"]
    fail(directory, *failing)
    first = run(pytester, "--eval-concurrency=4")
    first.assert_outcomes(passed=7, failed=3)
    before = stored(db, EXPERIMENT)
    assert {row_id for row_id, row in before.rows.items() if row.status == "failed"} == {
        rid(case) for case in failing
    }

    forget_marks(directory)
    for case in failing:
        (directory / f"fail-{case}").unlink()
    second = run(pytester, "--eval-concurrency=4", "--lf")
    second.assert_outcomes(passed=3)
    assert "run-last-failure: rerun previous 3 failures" in second.stdout.str()
    assert marked(directory, "started") == set(failing)
    assert marked(directory, "teardown") == set(failing)

    found = stored(db, EXPERIMENT)
    assert set(found.rows) == {rid(case) for case in cases(10)}
    assert {row.status for row in found.rows.values()} == {"passed"}
    for case in cases(10):
        versions = [row.version for row in history(db, EXPERIMENT, rid(case))]
        assert versions == ([1, 2] if case in failing else [1]), case
        unchanged = found.rows[rid(case)].version_id == before.rows[rid(case)].version_id
        assert unchanged == (case not in failing), case
    for case in failing:
        assert found.rows[rid(case)].attempt_id != before.rows[rid(case)].attempt_id
    assert_no_stale_spans(found)


def test_resume_under_concurrency_runs_only_the_cases_not_passed(
    pytester: pytest.Pytester, db: Path
) -> None:
    directory = write_suite(pytester, 10, 0.05)
    failing = ["c00", "c04", "c07"]
    fail(directory, *failing)
    run(pytester, "--eval-concurrency=4").assert_outcomes(passed=7, failed=3)

    forget_marks(directory)
    for case in failing:
        (directory / f"fail-{case}").unlink()
    resumed = run(pytester, "--eval-concurrency=4", "--eval-resume")
    resumed.assert_outcomes(passed=3)
    assert deselected(resumed) == 7
    assert marked(directory, "started") == set(failing)
    assert marked(directory, "teardown") == set(failing)

    found = stored(db, EXPERIMENT)
    assert set(found.rows) == {rid(case) for case in cases(10)}
    assert {row.status for row in found.rows.values()} == {"passed"}
    assert {row_id for row_id, row in found.rows.items() if row.version == 2} == {
        rid(case) for case in failing
    }
    assert {row.version for row in found.rows.values()} == {1, 2}
    assert_no_stale_spans(found)
