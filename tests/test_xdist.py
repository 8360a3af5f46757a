"""pytest-xdist: one attempt across the controller and every worker (replacements included),
the same rows as ``-n 0``, one cleanup, a crashed worker's row recorded as an error (issue 4,
invariant 7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support.cli import session_report
from support.output import header, read_summary
from support.sessions import INI
from support.spool import spool_files
from support.store import Stored, attempts, default_db, history, live, stored

CASES = [f"c{i:02d}" for i in range(40)]
FAILING = ("c03", "c17", "c29")
CRASHING = "c20"

# Each case opens a user span and logs an output; three cases fail. Every execution appends
# "case worker pid" to runs.log. Case c20 kills its worker with os._exit(1) while
# `crash-armed` exists (once: the file is removed first). After that crash the original workers
# wait (bounded) until a replacement worker has run a case, so the replacement takes part.
SUITE = """
import os
import pathlib
import time

import pytest
from opentelemetry import trace

HERE = pathlib.Path(__file__).parent
CASES = [f"c{i:02d}" for i in range(40)]
LOG = HERE / "runs.log"
ARMED = HERE / "crash-armed"
CRASHED = HERE / "crashed"


def workers_seen():
    lines = LOG.read_text().splitlines() if LOG.exists() else []
    return {line.split()[1] for line in lines}


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
def test_case(case, eval_row, request):
    worker = getattr(request.config, "workerinput", {}).get("workerid", "main")
    if CRASHED.exists() and worker in ("gw0", "gw1"):
        deadline = time.monotonic() + 60
        while not workers_seen() - {"gw0", "gw1"} and time.monotonic() < deadline:
            time.sleep(0.02)
    with open(LOG, "a") as log:
        log.write(f"{case} {worker} {os.getpid()}\\n")
    with trace.get_tracer("suite").start_as_current_span(f"user-{case}"):
        eval_row.log(output=f"out-{case}", expected=f"out-{case}")
    if case == "c20" and ARMED.exists():
        ARMED.unlink()
        CRASHED.touch()
        os._exit(1)
    assert case not in ("c03", "c17", "c29")
"""

# The store the plugin opens through its own hook: a real SQLite store that logs every cleanup
# with the role of the process that ran it.
CONFTEST = """
import json
import os
import pathlib

from pytest_evalrows.store.sqlite import SQLiteStore

HERE = pathlib.Path(__file__).parent


class LoggingStore(SQLiteStore):
    role = "?"

    def delete_stale_spans(self, experiment_id, row_ids=None, *, dry_run=False):
        removed = super().delete_stale_spans(experiment_id, row_ids, dry_run=dry_run)
        entry = {"role": self.role, "rows": sorted(row_ids or ()), "removed": len(removed)}
        with open(HERE / "cleanups.log", "a") as log:
            log.write(json.dumps(entry) + "\\n")
        return removed


def pytest_evalrows_make_store(config, url):
    store = LoggingStore(url.path)
    store.role = "worker" if hasattr(config, "workerinput") else "controller"
    return store
"""


def rid(case: str) -> str:
    return f"test_suite.py::test_case[{case}]"


def expected_status(case: str) -> str:
    return "failed" if case in FAILING else "passed"


def row_shape(found: Stored) -> dict[str, tuple[Any, ...]]:
    """What must not depend on -n: status, version, output, scores, error type, span names."""
    return {
        row_id: (
            row.status,
            row.version,
            row.execution,
            row.output,
            row.scores,
            row.error.type if row.error else None,
            tuple(sorted(span.name for span in found.spans_of(row_id))),
        )
        for row_id, row in found.rows.items()
    }


def expected_shape() -> dict[str, tuple[Any, ...]]:
    return {
        rid(case): (
            expected_status(case),
            1,
            1,
            f"out-{case}",
            {"pass": 0.0 if case in FAILING else 1.0},
            "AssertionError" if case in FAILING else None,
            (f"test_case[{case}]", f"user-{case}"),
        )
        for case in CASES
    }


def cleanups(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    path = pytester.path / "cleanups.log"
    entries = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    path.unlink(missing_ok=True)
    return entries


def workers(pytester: pytest.Pytester) -> dict[str, str]:
    """case -> the worker that ran it, from runs.log (then cleared)."""
    path = pytester.path / "runs.log"
    lines = path.read_text().splitlines()
    path.unlink()
    found: dict[str, str] = {}
    for line in lines:
        case, worker, _pid = line.split()
        assert case not in found, f"{case} ran twice: {lines}"
        found[case] = worker
    return found


def one_attempt(db: Path, experiment: str, found: Stored, attempt: str) -> None:
    """Every row and span carries ``attempt``, the one attempt the attempts table holds."""
    assert {row.attempt_id for row in found.rows.values()} == {attempt}
    assert {row.metadata["attemptId"] for row in found.rows.values()} == {attempt}
    assert {span.attempt_id for span in found.spans} == {attempt}
    recorded = attempts(db, experiment)
    assert [entry.id for entry in recorded] == [attempt]
    assert recorded[0].ended is not None
    assert recorded[0].delivered is True


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    return default_db(pytester)


def test_n2_and_n0_give_the_same_rows_and_an_lf_rerun_cleans_once(
    pytester: pytest.Pytester, suite: Path
) -> None:
    db = suite
    serial = pytester.runpytest_subprocess("--eval-experiment=serial", "-n", "0")
    serial.assert_outcomes(passed=37, failed=3)
    assert set(workers(pytester).values()) == {"main"}
    # A first session: every row is new, nothing can be stale, the store is not asked.
    assert cleanups(pytester) == []

    parallel = pytester.runpytest_subprocess("--eval-experiment=parallel", "-n", "2")
    parallel.assert_outcomes(passed=37, failed=3)
    assert parallel.ret == pytest.ExitCode.TESTS_FAILED
    # Both workers ran cases, so the one attempt below is a real hand-off.
    assert set(workers(pytester).values()) == {"gw0", "gw1"}
    # No worker cleaned up (nor the controller: every row is new).
    assert cleanups(pytester) == []
    assert session_report(parallel)["stale_spans_removed"] == 0

    serial_rows = stored(db, "serial")
    parallel_rows = stored(db, "parallel")
    assert row_shape(serial_rows) == expected_shape()
    assert row_shape(parallel_rows) == row_shape(serial_rows)
    assert {row.input["case"] for row in parallel_rows.rows.values()} == set(CASES)
    assert len(parallel_rows.spans) == len(serial_rows.spans) == 80
    attempt = header(parallel)["attempt"]
    assert read_summary(parallel).attempt == attempt
    one_attempt(db, "parallel", parallel_rows, attempt)
    one_attempt(db, "serial", serial_rows, header(serial)["attempt"])
    assert attempt != header(serial)["attempt"]
    assert attempts(db, "parallel")[0].counts == {"passed": 37, "failed": 3}
    assert spool_files(pytester.path / ".evalrows" / "spool") == []

    # --lf under xdist, with an attempt id given on the command line: it wins over the one
    # the controller would make, in every worker.
    rerun = pytester.runpytest_subprocess(
        "--eval-experiment=parallel", "-n", "2", "--lf", "--eval-attempt-id=rerun-attempt"
    )
    rerun.assert_outcomes(failed=3)
    assert header(rerun)["attempt"] == "rerun-attempt"
    assert sorted(workers(pytester)) == sorted(FAILING)
    # The old root and user span of each of the three rerun rows, removed by one cleanup.
    assert session_report(rerun)["stale_spans_removed"] == 6
    assert cleanups(pytester) == [
        {"role": "controller", "rows": sorted(map(rid, FAILING)), "removed": 6}
    ]
    after = stored(db, "parallel")
    assert set(after.rows) == set(map(rid, CASES))
    for case in CASES:
        row = after.rows[rid(case)]
        versions = history(db, "parallel", rid(case))
        if case in FAILING:
            assert (row.version, row.attempt_id, row.status) == (2, "rerun-attempt", "failed")
            assert [v.attempt_id for v in versions] == [attempt, "rerun-attempt"]
        else:
            assert row == parallel_rows.rows[rid(case)]
            assert len(versions) == 1
            assert after.spans_of(rid(case)) == parallel_rows.spans_of(rid(case))
        spans = after.spans_of(rid(case))
        assert sorted(span.name for span in spans) == [f"test_case[{case}]", f"user-{case}"]
        assert all(live(span, after.rows) for span in spans)
    assert [entry.id for entry in attempts(db, "parallel")] == [attempt, "rerun-attempt"]


def test_a_crashed_workers_row_is_an_error_and_no_row_is_lost(
    pytester: pytest.Pytester, suite: Path
) -> None:
    db = suite
    (pytester.path / "crash-armed").touch()

    result = pytester.runpytest_subprocess("--eval-experiment=crash", "-n", "2")

    result.assert_outcomes(passed=36, failed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*replacing crashed worker gw*"])
    ran_on = workers(pytester)
    assert set(ran_on) == set(CASES)  # each case ran exactly once, c20 included
    crashed_worker = ran_on[CRASHING]
    replacements = set(ran_on.values()) - {"gw0", "gw1"}
    assert len(replacements) == 1, ran_on  # the replacement worker ran cases too
    assert crashed_worker in ("gw0", "gw1")
    attempt = header(result)["attempt"]

    found = stored(db, "crash")
    assert set(found.rows) == set(map(rid, CASES))
    expected = expected_shape()
    for case in CASES:
        row_id = rid(case)
        assert len(history(db, "crash", row_id)) == 1, row_id  # no duplicate
        if case == CRASHING:
            continue
        assert row_shape(found)[row_id] == expected[row_id]
    crashed = found.rows[rid(CRASHING)]
    assert (crashed.status, crashed.version, crashed.execution) == ("error", 1, 1)
    assert crashed.error is not None
    assert crashed.error.type == "WorkerCrash"
    assert f"worker '{crashed_worker}' crashed while running" in crashed.error.message
    assert crashed.input == {"case": CRASHING}
    assert crashed.output is None  # what the dead worker logged died with it
    one_attempt(db, "crash", found, attempt)
    # Rows the replacement worker ran carry the controller's attempt too.
    assert {
        found.rows[rid(case)].attempt_id for case, w in ran_on.items() if w in replacements
    } == {attempt}
    # The crashed worker's counts died with it, so the controller cannot be sure every row
    # was new: one cleanup, in the controller, over all 40 rows (the crashed one included).
    assert cleanups(pytester) == [
        {"role": "controller", "rows": sorted(map(rid, CASES)), "removed": 0}
    ]
    # The crashed worker's spool file was delivered and removed.
    assert spool_files(pytester.path / ".evalrows" / "spool") == []


def test_a_crashed_workers_finished_rows_count_in_the_attempt(
    pytester: pytest.Pytester, suite: Path
) -> None:
    db = suite
    (pytester.path / "crash-armed").touch()

    result = pytester.runpytest_subprocess("--eval-experiment=crash", "-n", "2")

    result.assert_outcomes(passed=36, failed=4)
    assert len(stored(db, "crash").rows) == 40
    # The attempt's outcome counts cover every row it wrote: the crashed worker's too.
    assert attempts(db, "crash")[0].counts == {"passed": 36, "failed": 3, "error": 1}


def test_without_xdist_recording_is_unchanged(pytester: pytest.Pytester, suite: Path) -> None:
    db = suite
    result = pytester.runpytest_subprocess("--eval-experiment=plain", "-p", "no:xdist")

    result.assert_outcomes(passed=37, failed=3)
    assert set(workers(pytester).values()) == {"main"}
    found = stored(db, "plain")
    assert row_shape(found) == expected_shape()
    one_attempt(db, "plain", found, header(result)["attempt"])
    assert cleanups(pytester) == []
    assert spool_files(pytester.path / ".evalrows" / "spool") == []


COLLIDING = """
import pytest


@pytest.mark.eval(key="id")
@pytest.mark.parametrize("case", [{"id": 1}, {"id": 1}])
def test_k(case, eval_row):
    pass
"""


def test_a_usage_error_a_worker_finds_is_said_once_by_the_controller(
    pytester: pytest.Pytester,
) -> None:
    """Raised in a worker's collection, it would crash the worker (an INTERNALERROR
    traceback): the workers run nothing, and the controller says it and exits 4."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_colliding=COLLIDING)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--eval-experiment=e", "-n", "2")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output and "Traceback" not in output
    said = [line for line in result.stdout.lines if line.startswith("ERROR: evalrows:")]
    assert len(said) == 1 and "map to one row id 'test_colliding.py::test_k[1]'" in said[0]
