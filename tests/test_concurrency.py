"""Several sessions at once: real concurrent pytest processes writing one SQLite file, each
with its own attempt, lose no row, never fail on a locked database, and never clean up each
other's spans (issue 4)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.cli import session_report
from support.output import header, summary_lines
from support.sessions import INI
from support.spool import spool_files
from support.store import attempts, live, stored

# One shard of a suite: N cases named <side>NNN. Each logs an output and opens a user span.
# At the cases named in RENDEZVOUS each shard waits (bounded) until the other shard reached
# the same case, so both really run (and write) at the same time. A case whose name is in
# FAILING fails. With EVALTEST_PAUSE=1, shard a waits at a050 until shard b's whole session
# is over (b-done, written in conftest's pytest_unconfigure), and shard b starts its cases
# only once shard a has delivered the new versions of a000..a049.
SHARD = """
import os
import pathlib
import sqlite3
import time

import pytest
from opentelemetry import trace

HERE = pathlib.Path(__file__).parent
SIDE = "{side}"
OTHER = "{other}"
CASES = [f"{{SIDE}}{{i:03d}}" for i in range({count})]
RENDEZVOUS = {rendezvous}
FAILING = {failing}
PAUSE = os.environ.get("EVALTEST_PAUSE") == "1"


def wait_for(condition):
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, "gave up waiting for the other session"
        time.sleep(0.02)


def a_rows_rewritten(db_path):
    db = sqlite3.connect(db_path)
    try:
        query = (
            "SELECT count(*) FROM latest_rows WHERE version = 2 "
            "AND row_id >= 'test_a.py::test_case[a000]' "
            "AND row_id < 'test_a.py::test_case[a050]'"
        )
        return db.execute(query).fetchone()[0]
    finally:
        db.close()


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
def test_case(case, eval_row, request):
    index = int(case[1:])
    if index in RENDEZVOUS:
        (HERE / f"{{SIDE}}-at-{{index}}").touch()
        wait_for(lambda: (HERE / f"{{OTHER}}-at-{{index}}").exists())
    if PAUSE and case == "a050":
        wait_for(lambda: (HERE / "b-done").exists())
    if PAUSE and case == "b000":
        db_path = request.config.getoption("evalrows_store")
        wait_for(lambda: a_rows_rewritten(db_path) == 50)
    with trace.get_tracer("shard").start_as_current_span(f"user-{{case}}"):
        eval_row.log(output=f"out-{{case}}")
    assert case not in FAILING
"""

CONFTEST = """
import os
import pathlib

HERE = pathlib.Path(__file__).parent


def pytest_unconfigure(config):
    side = os.environ.get("EVALTEST_SIDE")
    if side:
        (HERE / f"{side}-done").touch()
"""


def shard(side: str, other: str, count: int, rendezvous: list[int], failing: list[str]) -> str:
    return SHARD.format(side=side, other=other, count=count, rendezvous=rendezvous, failing=failing)


@dataclass
class Finished:
    ret: int
    output: str


def run_concurrently(
    directory: Path, sessions: dict[str, list[str]], env: dict[str, str] | None = None
) -> dict[str, Finished]:
    """Start one ``python -m pytest`` per side at once; wait for all (bounded)."""
    started: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for side, args in sessions.items():
        out = directory / f"{side}.out"
        with open(out, "wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                cwd=directory,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env={**os.environ, "EVALTEST_SIDE": side, **(env or {})},
            )
        started[side] = (process, out)
    finished: dict[str, Finished] = {}
    try:
        for side, (process, out) in started.items():
            ret = process.wait(timeout=300)
            finished[side] = Finished(ret, out.read_text())
    finally:
        for process, _ in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return finished


def test_two_concurrent_sessions_into_one_experiment_lose_no_row(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_a=shard("a", "b", 200, [0, 100, 199], []),
        test_b=shard("b", "a", 200, [0, 100, 199], ["b017", "b123"]),
    )
    db = pytester.path / "shared" / "store.db"
    common = ["--eval-experiment=shared", f"--eval-store={db}"]

    done = run_concurrently(
        pytester.path,
        {
            "a": [*common, "test_a.py"],
            "b": [*common, "test_b.py"],
        },
    )
    attempt = {side: header(finished.output)["attempt"] for side, finished in done.items()}
    assert attempt["a"] != attempt["b"]

    assert done["a"].ret == pytest.ExitCode.OK, done["a"].output
    assert done["b"].ret == pytest.ExitCode.TESTS_FAILED, done["b"].output
    assert "200 passed" in done["a"].output
    assert "2 failed, 198 passed" in done["b"].output
    for finished in done.values():
        assert "database is locked" not in finished.output
        assert "Traceback" not in finished.output
        lines = summary_lines(finished.output)
        assert not [line for line in lines if line.startswith(("error:", "store unavailable"))]
        assert not [line for line in lines if "not delivered" in line]
        report = session_report(finished.output)
        assert (report["new_rows"], report["updated_rows"]) == (200, 0)

    found = stored(db, "shared")
    expected = {f"test_a.py::test_case[a{i:03d}]": attempt["a"] for i in range(200)}
    expected |= {f"test_b.py::test_case[b{i:03d}]": attempt["b"] for i in range(200)}
    assert {row_id: row.attempt_id for row_id, row in found.rows.items()} == expected
    assert {row.version for row in found.rows.values()} == {1}
    failed = sorted(row_id for row_id, row in found.rows.items() if row.status == "failed")
    assert failed == ["test_b.py::test_case[b017]", "test_b.py::test_case[b123]"]
    for row_id, row in found.rows.items():
        assert row.output == f"out-{row_id[-5:-1]}"
        assert len(found.spans_of(row_id)) == 2, row_id
        assert {span.attempt_id for span in found.spans_of(row_id)} == {row.attempt_id}
    recorded = {attempt.id: attempt for attempt in attempts(db, "shared")}
    assert set(recorded) == {attempt["a"], attempt["b"]}
    assert recorded[attempt["a"]].counts == {"passed": 200}
    assert recorded[attempt["b"]].counts == {"passed": 198, "failed": 2}
    assert all(attempt.delivered for attempt in recorded.values())
    assert spool_files(pytester.path / ".evalrows" / "spool") == []


def test_one_sessions_cleanup_never_touches_another_sessions_rows(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_a=shard("a", "b", 100, [], []),
        test_b=shard("b", "a", 100, [], []),
    )
    db = pytester.path / "shared" / "store.db"
    common = ["--eval-experiment=shared", f"--eval-store={db}"]
    seed = pytester.runpytest_subprocess(*common, "--eval-attempt-id=seed")
    seed.assert_outcomes(passed=200)
    before = stored(db, "shared")
    assert len(before.rows) == 200
    assert len(before.spans) == 400

    # a reruns its 100 rows and pauses halfway until b's whole session, cleanup included, is
    # over; b reruns its own 100 rows, starting once a's first 50 new versions are stored.
    done = run_concurrently(
        pytester.path,
        {
            "a": [*common, "test_a.py", "--eval-attempt-id=rerun-a"],
            "b": [*common, "test_b.py", "--eval-attempt-id=rerun-b"],
        },
        env={"EVALTEST_PAUSE": "1"},
    )

    for finished in done.values():
        assert finished.ret == pytest.ExitCode.OK, finished.output
        assert "database is locked" not in finished.output
    # Each session removed exactly the old spans of its own 100 rows: b, which ran its
    # cleanup while a's rows a000..a049 already had new versions, removed none of a's.
    assert session_report(done["b"].output)["stale_spans_removed"] == 200
    assert session_report(done["a"].output)["stale_spans_removed"] == 200
    after = stored(db, "shared")
    assert set(after.rows) == set(before.rows)
    for row_id, row in after.rows.items():
        side = "a" if row_id.startswith("test_a.py") else "b"
        assert (row.version, row.attempt_id) == (2, f"rerun-{side}")
        spans = after.spans_of(row_id)
        assert sorted(span.name for span in spans) == sorted(
            span.name for span in before.spans_of(row_id)
        )
        assert {span.attempt_id for span in spans} == {f"rerun-{side}"}
        assert all(live(span, after.rows) for span in spans)
    assert len(after.spans) == 400
