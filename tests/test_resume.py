"""Resume: a session killed halfway, then rerun with ``--eval-resume``, runs only what has not
passed; ``finished`` also skips failed rows; ``--lf``, ``-p no:cacheprovider`` and ``-n 2``
(issue 4)."""

from __future__ import annotations

import signal

import pytest
from support.cli import evalrows, session_report
from support.output import deselected, header, read_summary, usage_error
from support.sessions import INI
from support.spool import ran, spool_files, spooled_rows
from support.store import assert_no_stale_spans, attempts, default_db, history, stored

# Thirty cases, each logs its id to ran.txt (in its fixture), opens a user span and logs an
# output. c20 and c25 fail; c27's fixture fails in setup (an error, not a finished row).
#
# While `kill-armed` exists (removed before use, so only once): case c00 takes SQLite's write
# lock on the store and holds it, so the writer thread cannot deliver anything, and c15 kills
# the process with SIGKILL. What c00..c14 recorded then exists only in the spool, where each
# row was written on the test's thread as it finished.
KILLED = """
import os
import pathlib
import signal
import sqlite3

import pytest
from opentelemetry import trace

HERE = pathlib.Path(__file__).parent
DB = HERE / ".evalrows" / "evalrows.db"
ARMED = HERE / "kill-armed"
CASES = [f"c{i:02d}" for i in range(30)]
HELD = []


@pytest.fixture
def resource(case):
    with open(HERE / "ran.txt", "a") as log:
        log.write(case + "\\n")
    if case == "c27":
        raise RuntimeError("no resource for c27")


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
def test_case(case, resource, eval_row):
    if ARMED.exists() and case == "c00":
        db = sqlite3.connect(DB, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        HELD.append(db)
    with trace.get_tracer("suite").start_as_current_span(f"user-{case}"):
        eval_row.log(output=f"out-{case}")
    if ARMED.exists() and case == "c15":
        ARMED.unlink()
        os.kill(os.getpid(), signal.SIGKILL)
    assert case not in ("c20", "c25")
"""

CASES = [f"c{i:02d}" for i in range(30)]
FIRST_HALF = CASES[:15]
SECOND_HALF = CASES[15:]
FAILING = ("c20", "c25")
ERRORING = "c27"


def rid(case: str) -> str:
    return f"test_killed.py::test_case[{case}]"


def status_of(case: str) -> str:
    return "failed" if case in FAILING else "error" if case == ERRORING else "passed"


def kill_halfway(pytester: pytest.Pytester) -> dict[str, dict[str, object]]:
    """Run the 30 cases until c15 kills the session; return what it left in the spool."""
    pytester.makeini(INI)
    pytester.makepyfile(test_killed=KILLED)
    (pytester.path / "kill-armed").touch()
    killed = pytester.runpytest_subprocess("--eval-experiment=resume")
    assert killed.ret == -signal.SIGKILL
    log = pytester.path / "ran.txt"
    assert ran(log) == CASES[:16]
    log.unlink()
    spool = pytester.path / ".evalrows" / "spool"
    assert len(spool_files(spool)) == 1
    spooled = spooled_rows(spool)
    # Every case that finished is in the spool, none reached the store (its lock was held).
    assert sorted(spooled) == [rid(case) for case in FIRST_HALF]
    assert {row["status"] for row in spooled.values()} == {"passed"}
    assert stored(default_db(pytester), "resume").rows == {}
    return spooled


def check_resumed_store(
    pytester: pytest.Pytester, spooled: dict[str, dict[str, object]], second_attempt: str
) -> None:
    """30 rows, each at version 1: the first half as spooled, the second half from the rerun;
    no stale span; nothing left in the spool."""
    db = default_db(pytester)
    found = stored(db, "resume")
    assert set(found.rows) == {rid(case) for case in CASES}
    for case in CASES:
        row = found.rows[rid(case)]
        assert len(history(db, "resume", rid(case))) == 1, case
        output = None if case == ERRORING else f"out-{case}"
        assert (row.version, row.status, row.output) == (1, status_of(case), output)
        if case in FIRST_HALF:
            assert row.version_id == spooled[rid(case)]["version_id"]
            assert row.attempt_id == spooled[rid(case)]["attempt_id"]
            assert row.attempt_id != second_attempt
        else:
            assert row.attempt_id == second_attempt
        names = sorted(span.name for span in found.spans_of(rid(case)))
        user = [] if case == ERRORING else [f"user-{case}"]
        assert names == [f"test_case[{case}]", *user]
    assert_no_stale_spans(found)
    assert spool_files(pytester.path / ".evalrows" / "spool") == []


def test_resume_after_a_kill_delivers_the_spool_then_runs_only_the_rest(
    pytester: pytest.Pytester,
) -> None:
    spooled = kill_halfway(pytester)

    second = pytester.runpytest_subprocess("--eval-experiment=resume", "--eval-resume")

    report = session_report(second)
    assert report["leftover_rows"] == 15
    log = pytester.path / "ran.txt"
    assert ran(log) == SECOND_HALF  # the passed half did not run again
    second.assert_outcomes(passed=12, failed=2, errors=1, deselected=15)
    assert report["resumed"] == 15
    check_resumed_store(pytester, spooled, header(second)["attempt"])


def test_resume_after_a_kill_and_a_flush_runs_only_the_rest_and_finished_skips_failures(
    pytester: pytest.Pytester,
) -> None:
    spooled = kill_halfway(pytester)
    db = default_db(pytester)
    flush = evalrows("flush", f"--store={db}", cwd=pytester.path)
    assert flush.returncode == 0, flush.stderr
    assert f"delivered 15 rows to experiment 'resume' (project '{pytester.path.name}')" in (
        flush.stdout.splitlines()
    )

    second = pytester.runpytest_subprocess(
        "--eval-experiment=resume", "--eval-resume", "-p", "no:cacheprovider"
    )

    log = pytester.path / "ran.txt"
    assert ran(log) == SECOND_HALF  # the passed half did not run again, the rest did
    second.assert_outcomes(passed=12, failed=2, errors=1)
    assert deselected(second) == 15  # pytest's own count
    report = session_report(second)
    assert (report["resumed"], report["resume_mode"]) == (15, "passed")
    assert report["leftover_rows"] == 0
    second_attempt = header(second)["attempt"]
    check_resumed_store(pytester, spooled, second_attempt)
    assert not (pytester.path / ".pytest_cache").exists()  # resume needs no local cache
    log.unlink()

    # finished: passed and failed rows are done; only the errored case runs again.
    third = pytester.runpytest_subprocess("--eval-experiment=resume", "--eval-resume=finished")

    assert ran(log) == [ERRORING]
    third.assert_outcomes(errors=1)
    assert deselected(third) == 29
    report = session_report(third)
    assert (report["resumed"], report["resume_mode"]) == (29, "finished")
    # What the summary says of it, in words.
    said = read_summary(third)
    assert (said.resumed, said.resume_mode) == (29, "finished")
    found = stored(db, "resume")
    third_attempt = header(third)["attempt"]
    for case in CASES:
        row = found.rows[rid(case)]
        if case == ERRORING:
            assert (row.version, row.status, row.attempt_id) == (2, "error", third_attempt)
        else:
            assert row.version == 1, case
    assert_no_stale_spans(found)
    recorded = attempts(db, "resume")
    assert [attempt.id for attempt in recorded][1:] == [second_attempt, third_attempt]
    assert recorded[0].ended is None  # the killed session never ended


def test_a_bad_resume_value_is_a_usage_error_naming_the_valid_ones(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_killed=KILLED)
    result = pytester.runpytest_subprocess("--eval-experiment=resume", "--eval-resume=bogus")
    line = usage_error(result)
    assert "--eval-resume='bogus'" in line
    assert line.endswith("valid values: passed, finished, off")
    assert not (pytester.path / "ran.txt").exists()


# c00 fails while `c00-broken` exists; c05 and c08 always fail.
FLAKY = """
import pathlib

import pytest

HERE = pathlib.Path(__file__).parent
CASES = [f"c{i:02d}" for i in range(10)]


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
def test_case(case, eval_row):
    with open(HERE / "ran.txt", "a") as log:
        log.write(case + "\\n")
    eval_row.log(output=f"out-{case}")
    assert not (case == "c00" and (HERE / "c00-broken").exists())
    assert case not in ("c05", "c08")
"""


def test_resume_without_the_cache_with_lf_and_under_xdist(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_flaky=FLAKY)
    (pytester.path / "c00-broken").touch()
    db = default_db(pytester)
    log = pytester.path / "ran.txt"
    cases = [f"c{i:02d}" for i in range(10)]

    def versions() -> dict[str, tuple[int | None, str]]:
        found = stored(db, "flaky").rows
        return {
            case: (
                found[f"test_flaky.py::test_case[{case}]"].version,
                found[f"test_flaky.py::test_case[{case}]"].status,
            )
            for case in cases
        }

    first = pytester.runpytest_subprocess("--eval-experiment=flaky")
    first.assert_outcomes(passed=7, failed=3)  # the cache's last failures: c00, c05, c08
    assert session_report(first)["resumed"] == 0
    log.unlink()
    (pytester.path / "c00-broken").unlink()

    # No cache: what to skip comes from the store alone.
    second = pytester.runpytest_subprocess(
        "--eval-experiment=flaky", "--eval-resume", "-p", "no:cacheprovider"
    )
    assert sorted(ran(log)) == ["c00", "c05", "c08"]
    second.assert_outcomes(passed=1, failed=2, deselected=7)
    assert session_report(second)["resumed"] == 7
    assert versions() == {
        case: (2, "passed")
        if case == "c00"
        else (2, "failed")
        if case in ("c05", "c08")
        else (1, "passed")
        for case in cases
    }
    log.unlink()

    # Under xdist the workers deselect the same cases: c00 passed now.
    third = pytester.runpytest_subprocess("--eval-experiment=flaky", "--eval-resume", "-n", "2")
    assert sorted(ran(log)) == ["c05", "c08"]
    third.assert_outcomes(failed=2)
    assert session_report(third)["resumed"] == 8
    assert {case: v for case, v in versions().items() if v[0] != 1} == {
        "c00": (2, "passed"),
        "c05": (3, "failed"),
        "c08": (3, "failed"),
    }
    log.unlink()

    # --lf collects the cache's last failures (c00, c05, c08: the cache last saw c00 fail);
    # resume then drops c00, whose row passed.
    fourth = pytester.runpytest_subprocess("--eval-experiment=flaky", "--eval-resume", "--lf")
    assert sorted(ran(log)) == ["c05", "c08"]
    fourth.stdout.fnmatch_lines(["collected 3 items / 1 deselected / 2 selected"])
    fourth.stdout.fnmatch_lines(["run-last-failure: rerun previous *"])
    fourth.assert_outcomes(failed=2, deselected=1)
    assert session_report(fourth)["resumed"] == 1
    assert {case: v for case, v in versions().items() if v[0] != 1} == {
        "c00": (2, "passed"),
        "c05": (4, "failed"),
        "c08": (4, "failed"),
    }
    assert_no_stale_spans(stored(db, "flaky"))
