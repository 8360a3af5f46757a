"""Stale spans: removed at session teardown only after a verified write, by `evalrows gc`
after a session that died, never for fixtures' spans (issue 3, invariants 3 and 4)."""

from __future__ import annotations

import re
import signal

import pytest
from support.cli import evalrows, session_report
from support.output import read_summary, summary_lines
from support.sessions import EVALROWS_KEYS, INI
from support.store import default_db, live, stored

EXPERIMENT = "cleanup"


# -- pytest-rerunfailures ---------------------------------------------------------------------

FLAKY = """
import pathlib

import pytest
from opentelemetry import trace

COUNTER = pathlib.Path(__file__).parent / "executions.txt"


@pytest.mark.eval
@pytest.mark.parametrize("case", ["flaky"])
def test_flaky(case, eval_row):
    execution = int(COUNTER.read_text()) + 1 if COUNTER.exists() else 1
    COUNTER.write_text(str(execution))
    with trace.get_tracer("t").start_as_current_span(f"try-{execution}"):
        pass
    assert execution == 3
"""


def test_reruns_keep_only_the_final_executions_spans(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_flaky=FLAKY)
    db = default_db(pytester)
    rid = "test_flaky.py::test_flaky[flaky]"

    first = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", "--reruns", "2")
    assert first.parseoutcomes() == {"passed": 1, "rerun": 2}
    attempt1 = read_summary(first).attempt
    assert session_report(first)["stale_spans_removed"] == 4  # root and child of executions 1, 2
    found = stored(db, EXPERIMENT)
    assert list(found.rows) == [rid]
    row = found.rows[rid]
    assert (row.status, row.execution, row.attempt_id, row.version) == ("passed", 3, attempt1, 1)
    spans = sorted(found.spans, key=lambda s: len(s.span_parents))
    assert [(s.name, s.attempt_id, s.execution) for s in spans] == [
        ("test_flaky[flaky]", attempt1, 3),
        ("try-3", attempt1, 3),
    ]
    assert spans[0].span_id == row.span_id
    assert spans[1].span_parents == [row.span_id]
    assert spans[1].attributes["evalrows.execution"] == 3

    (pytester.path / "executions.txt").unlink()
    second = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "--reruns", "2", "--eval-keep-stale-spans"
    )
    assert second.parseoutcomes() == {"passed": 1, "rerun": 2}
    attempt2 = read_summary(second).attempt
    kept = session_report(second)
    assert (kept["stale_spans_removed"], kept["stale_spans_kept"]) == (None, True)
    assert "stale spans kept (--eval-keep-stale-spans)" in summary_lines(second)
    found = stored(db, EXPERIMENT)
    row = found.rows[rid]
    assert (row.status, row.execution, row.attempt_id, row.version) == ("passed", 3, attempt2, 2)
    # Nothing was deleted: the first attempt's final spans, and every execution of this one.
    assert sorted((s.attempt_id == attempt2, s.execution, s.name) for s in found.spans) == [
        (False, 3, "test_flaky[flaky]"),
        (False, 3, "try-3"),
        (True, 1, "test_flaky[flaky]"),
        (True, 1, "try-1"),
        (True, 2, "test_flaky[flaky]"),
        (True, 2, "try-2"),
        (True, 3, "test_flaky[flaky]"),
        (True, 3, "try-3"),
    ]
    for span in found.spans:
        if span.span_parents:
            assert span.attributes["evalrows.execution"] == span.execution
            assert span.attributes["evalrows.attempt_id"] == span.attempt_id


# -- a session killed mid-run, then `evalrows gc` -----------------------------------------------

# Case c05 of the session started with --eval-attempt-id=attempt-b waits until the rows of
# c00..c04 are in the store (the writer thread delivers them), then kills its own process.
KILLED = """
import os
import pathlib
import signal
import sqlite3
import time

import pytest
from opentelemetry import trace

DB = pathlib.Path(__file__).parent / ".evalrows" / "evalrows.db"
CASES = [f"c{i:02d}" for i in range(10)]


def delivered(attempt):
    db = sqlite3.connect(DB)
    try:
        query = "SELECT count(*) FROM latest_rows WHERE attempt_id = ?"
        return db.execute(query, (attempt,)).fetchone()[0]
    finally:
        db.close()


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
def test_case(case, eval_row, request):
    with trace.get_tracer("t").start_as_current_span(f"user-{case}"):
        pass
    attempt = request.config.getoption("evalrows_attempt_id")
    if attempt == "attempt-b" and case == "c05":
        deadline = time.monotonic() + 60
        while delivered(attempt) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGKILL)
"""


def printed_span_ids(verb: str, lines: list[str]) -> set[str]:
    """The span ids `evalrows gc` printed, one line per span."""
    found = [re.fullmatch(rf"{verb} ([0-9a-f]{{16}}) '.*' of row .*", line) for line in lines]
    assert all(found), lines
    return {match.group(1) for match in found if match}


def test_gc_after_a_killed_session_removes_only_stale_spans(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_killed=KILLED)
    db = default_db(pytester)
    store = f"--store={db}"
    cases = [f"c{i:02d}" for i in range(10)]
    rid = {case: f"test_killed.py::test_case[{case}]" for case in cases}

    complete = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "--eval-attempt-id=attempt-a"
    )
    complete.assert_outcomes(passed=10)
    killed = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "--eval-attempt-id=attempt-b"
    )
    assert killed.ret == -signal.SIGKILL
    assert "stale spans removed" not in killed.stdout.str()

    before = stored(db, EXPERIMENT)
    assert {case: before.rows[rid[case]].attempt_id for case in cases} == {
        case: "attempt-b" if case < "c05" else "attempt-a" for case in cases
    }
    # Each row: root and user span per attempt that delivered it; the killed case has none.
    assert {case: len(before.spans_of(rid[case])) for case in cases} == {
        case: 4 if case < "c05" else 2 for case in cases
    }
    stale = {s.span_id for s in before.spans if s.row_id is not None and not live(s, before.rows)}
    assert len(stale) == 10
    assert {s.attempt_id for s in before.spans if s.span_id in stale} == {"attempt-a"}
    assert {s.row_id for s in before.spans if s.span_id in stale} == {
        rid[case] for case in cases[:5]
    }
    live_before = [s for s in before.spans if s.span_id not in stale]

    dry = evalrows("gc", EXPERIMENT, "--dry-run", store, cwd=pytester.path)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[-1] == "would remove 10 stale spans from 5 rows"
    assert printed_span_ids("would remove", lines[:-1]) == stale
    assert stored(db, EXPERIMENT).spans == before.spans

    gc = evalrows("gc", EXPERIMENT, store, cwd=pytester.path)
    assert gc.returncode == 0, gc.stderr
    lines = gc.stdout.splitlines()
    assert lines[-1] == "removed 10 stale spans from 5 rows"
    assert printed_span_ids("removed", lines[:-1]) == stale
    after = stored(db, EXPERIMENT)
    assert after.rows == before.rows
    assert after.spans == live_before  # no live span was removed
    for span in after.spans:
        assert live(span, after.rows)
    for case in cases:
        row = after.rows[rid[case]]
        assert [s.span_id for s in after.spans_of(rid[case]) if not s.span_parents] == [row.span_id]

    again = evalrows("gc", EXPERIMENT, "--json", store, cwd=pytester.path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    again = evalrows("gc", EXPERIMENT, store, cwd=pytester.path)
    assert again.stdout == "removed 0 stale spans from 0 rows\n"
    assert stored(db, EXPERIMENT).spans == live_before


# -- a store write that fails -----------------------------------------------------------------

BROKEN_CONFTEST = """
import os
import pathlib

from pytest_evalrows import StoreError
from pytest_evalrows.store.sqlite import SQLiteStore

HERE = pathlib.Path(__file__).parent


class RecordingStore(SQLiteStore):
    def delete_stale_spans(self, experiment_id, row_ids=None, *, dry_run=False):
        with open(HERE / "deletions.txt", "a") as marker:
            marker.write(f"{len(row_ids or ())}\\n")
        return super().delete_stale_spans(experiment_id, row_ids, dry_run=dry_run)


class BrokenStore(RecordingStore):
    def write(self, experiment_id, rows, spans):
        raise StoreError("simulated")


def pytest_evalrows_make_store(config, url):
    broken = os.environ.get("SPANTEST_BROKEN_STORE") == "1"
    return (BrokenStore if broken else RecordingStore)(url.path)
"""

SUITE = """
import pytest
from opentelemetry import trace

CASES = [f"c{i:02d}" for i in range(10)]


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
def test_case(case, eval_row):
    with trace.get_tracer("t").start_as_current_span(f"user-{case}"):
        pass
    assert case not in ("c03", "c07")
"""


def test_a_failed_write_is_followed_by_no_deletion(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(BROKEN_CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    db = default_db(pytester)
    deletions = pytester.path / "deletions.txt"

    first = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    first.assert_outcomes(passed=8, failed=2)
    # Every row new: nothing can be stale, so the store is not even asked.
    assert not deletions.exists()
    assert session_report(first)["stale_spans_removed"] == 0

    good = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    good.assert_outcomes(passed=8, failed=2)
    assert good.ret == pytest.ExitCode.TESTS_FAILED
    # The store the hook made is used, and cleanup calls it once for the 10 rows written.
    assert deletions.read_text() == "10\n"
    assert session_report(good)["stale_spans_removed"] == 20
    before = stored(db, EXPERIMENT)
    assert len(before.rows) == 10
    assert len(before.spans) == 20
    deletions.unlink()

    monkeypatch.setenv("SPANTEST_BROKEN_STORE", "1")
    broken = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    broken.assert_outcomes(passed=8, failed=2)
    assert broken.ret == pytest.ExitCode.TESTS_FAILED
    assert not deletions.exists()
    assert read_summary(broken).stale_removed is None
    output = broken.stdout.str() + broken.stderr.str()
    assert "Traceback" not in output
    assert len([line for line in output.splitlines() if "simulated" in line]) == 1
    assert any("simulated" in line for line in summary_lines(broken))
    after = stored(db, EXPERIMENT)
    assert after.rows == before.rows
    assert after.spans == before.spans


# -- spans of session and module fixtures ---------------------------------------------------

FIXTURES_CONFTEST = """
import pytest
from opentelemetry import trace

tracer = trace.get_tracer("fixtures")


def span(name):
    with tracer.start_as_current_span(name):
        pass


@pytest.fixture(scope="session", autouse=True)
def session_fixture():
    span("session-setup")
    yield
    span("session-teardown")


@pytest.fixture(scope="module")
def module_fixture(request):
    name = request.module.__name__
    span(f"module-setup-{name}")
    yield
    span(f"module-teardown-{name}")


@pytest.fixture
def function_fixture():
    span("function-setup")
    yield
    span("function-teardown")
"""

FIXTURES_A = """
import pytest
from opentelemetry import trace


@pytest.mark.eval
@pytest.mark.parametrize("case", ["a1", "a2"])
def test_a(case, module_fixture, function_fixture, eval_row):
    with trace.get_tracer("t").start_as_current_span(f"call-{case}"):
        pass
"""

FIXTURES_B = """
import pytest
from opentelemetry import trace


@pytest.mark.eval
@pytest.mark.parametrize("case", ["b1", "b2"])
def test_b(case, module_fixture, eval_row):
    with trace.get_tracer("t").start_as_current_span(f"call-{case}"):
        pass
"""


def test_session_and_module_fixture_spans_belong_to_no_row_and_stay(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(FIXTURES_CONFTEST)
    pytester.makepyfile(test_fa=FIXTURES_A, test_fb=FIXTURES_B)
    db = default_db(pytester)
    unowned_names = [
        "module-setup-test_fa",
        "module-setup-test_fb",
        "module-teardown-test_fa",
        "module-teardown-test_fb",
        "session-setup",
        "session-teardown",
    ]
    row_names = {
        "test_fa.py::test_a[a1]": ["call-a1", "function-setup", "function-teardown", "test_a[a1]"],
        "test_fa.py::test_a[a2]": ["call-a2", "function-setup", "function-teardown", "test_a[a2]"],
        "test_fb.py::test_b[b1]": ["call-b1", "test_b[b1]"],
        "test_fb.py::test_b[b2]": ["call-b2", "test_b[b2]"],
    }

    first = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    first.assert_outcomes(passed=4)
    attempt1 = read_summary(first).attempt
    found = stored(db, EXPERIMENT)
    by_row = found.by_row()
    assert sorted(s.name for s in by_row.pop(None)) == unowned_names
    assert {rid: sorted(s.name for s in spans) for rid, spans in by_row.items()} == row_names
    for span in found.spans_of(None):
        assert span.attempt_id == attempt1
        assert span.span_parents == []
        assert not set(EVALROWS_KEYS) & set(span.attributes)
    unowned1 = found.spans_of(None)

    second = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    second.assert_outcomes(passed=4)
    attempt2 = read_summary(second).attempt
    # Every row span of the first attempt.
    assert session_report(second)["stale_spans_removed"] == 12
    found = stored(db, EXPERIMENT)
    by_row = found.by_row()
    unowned = by_row.pop(None)
    assert sorted(s.name for s in unowned) == sorted(unowned_names * 2)
    assert [s for s in unowned if s.attempt_id == attempt1] == unowned1
    assert {rid: sorted(s.name for s in spans) for rid, spans in by_row.items()} == row_names
    assert {s.attempt_id for spans in by_row.values() for s in spans} == {attempt2}

    gc = evalrows("gc", EXPERIMENT, f"--store={db}", cwd=pytester.path)
    assert gc.returncode == 0, gc.stderr
    assert gc.stdout == "removed 0 stale spans from 0 rows\n"
    assert stored(db, EXPERIMENT).spans == found.spans
