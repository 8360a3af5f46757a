"""Checking what your own suite records: a ``MemoryStore`` handed to the session through the
hook stays yours, and ``pytest_evalrows.testing.capture_rows`` reads back what sessions run
in this process or in a subprocess recorded.

In-process sessions here run with ``--eval-tracing=off``: a tracer provider they set up would
stay this process's for good (OpenTelemetry sets one once), under every later test.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_evalrows import MemoryStore
from pytest_evalrows.testing import CAPTURE_ENV, capture_rows

SUITE = """
import pytest
from opentelemetry import trace

CASES = [{"id": "fr", "q": "France", "a": "Paris"}, {"id": "jp", "q": "Japan", "a": "Kyoto"}]

@pytest.mark.eval(key="id")
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_capitals(case, eval_row):
    with trace.get_tracer("model").start_as_current_span("chat"):
        answer = {"France": "Paris", "Japan": "Tokyo"}[case["q"]]
    eval_row.log(output=answer, expected=case["a"])
    eval_row.score("exact", answer == case["a"])
    assert answer == case["a"]
"""

FR = "test_suite.py::test_capitals[fr]"
JP = "test_suite.py::test_capitals[jp]"


class UseStore:
    """The README's recipe: a plugin whose hook returns the test's own store."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def pytest_evalrows_make_store(self, config: pytest.Config, url: object) -> MemoryStore:
        return self.store


def test_a_memory_store_from_the_hook_can_be_read_after_the_session(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    with MemoryStore() as store:
        result = pytester.runpytest_inprocess(
            "--eval-experiment=mine", "--eval-tracing=off", plugins=[UseStore(store)]
        )
        result.assert_outcomes(passed=1, failed=1)
        # The session did not close the store it was given: it is the test's to read.
        experiment = store.get_experiment("mine")
        rows = {row.row_id: row for row in store.latest_rows(experiment.id)}
    assert sorted(rows) == [FR, JP]
    assert (rows[FR].status, rows[FR].scores) == ("passed", {"exact": 1.0, "pass": 1.0})
    assert (rows[JP].status, rows[JP].output, rows[JP].expected) == ("failed", "Tokyo", "Kyoto")


def test_the_store_the_plugin_opened_itself_is_still_closed(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_inprocess("--eval-experiment=own", "--eval-tracing=off")
    result.assert_outcomes(passed=1, failed=1)
    # SQLite checkpoints and removes the write-ahead log when the last connection closes.
    assert db.exists()
    assert not db.with_name(db.name + "-wal").exists()


def test_capture_rows_reads_an_in_process_session(pytester: pytest.Pytester, db: Path) -> None:
    pytester.makepyfile(test_suite=SUITE)
    plugins_before = os.environ.get("PYTEST_PLUGINS")
    with capture_rows() as captured:
        result = pytester.runpytest_inprocess("--eval-experiment=cap", "--eval-tracing=off")
        assert sorted(captured.rows) == [FR, JP]  # readable inside the block too
    result.assert_outcomes(passed=1, failed=1)
    assert sorted(captured.rows) == [FR, JP]
    assert captured.rows[FR].scores == {"exact": 1.0, "pass": 1.0}
    assert captured.rows[JP].status == "failed"
    assert [len(versions) for versions in captured.versions.values()] == [1, 1]
    (attempt,) = captured.attempts
    assert captured.rows[FR].attempt_id == attempt.id
    # The session recorded into the capture, not into its own store, and the environment
    # is as it was.
    assert not db.exists()
    assert os.environ.get("PYTEST_PLUGINS") == plugins_before
    assert CAPTURE_ENV not in os.environ


def test_capture_rows_reads_a_subprocess_session_with_its_spans(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makepyfile(test_suite=SUITE)
    with capture_rows() as captured:
        first = pytester.runpytest_subprocess("--eval-experiment=cap")
        second = pytester.runpytest_subprocess("--eval-experiment=cap", "--lf")
    first.assert_outcomes(passed=1, failed=1)
    second.assert_outcomes(failed=1)
    assert sorted(captured.rows) == [FR, JP]
    assert [row.version for row in captured.versions[JP]] == [1, 2]
    assert captured.rows[JP].attempt_id == captured.attempts[1].id
    assert captured.rows[FR].attempt_id == captured.attempts[0].id
    # Each row keeps the spans of its latest execution: its root and the model call.
    for row_id in (FR, JP):
        spans = captured.spans_of(row_id)
        assert sorted(span.name for span in spans) == ["chat", f"test_capitals[{row_id[-3:-1]}]"]
        assert {span.attempt_id for span in spans} == {captured.rows[row_id].attempt_id}
    assert not db.exists()


def test_capture_rows_takes_the_rows_of_xdist_workers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    with capture_rows() as captured:
        result = pytester.runpytest_subprocess("--eval-experiment=cap", "-n", "2")
    result.assert_outcomes(passed=1, failed=1)
    assert sorted(captured.rows) == [FR, JP]
    assert len(captured.attempts) == 1


def test_several_experiments_are_read_one_at_a_time(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    with capture_rows() as captured:
        pytester.runpytest_subprocess("--eval-experiment=one", "-k", "fr")
        pytester.runpytest_subprocess("--eval-experiment=two", "-k", "jp")
    assert sorted(captured.experiments) == ["one", "two"]
    assert list(captured.experiments["one"].rows) == [FR]
    assert list(captured.experiments["two"].rows) == [JP]
    with pytest.raises(LookupError, match=r"2 experiments \(one, two\).*experiments\[NAME\]"):
        _ = captured.rows


def test_nothing_recorded_reads_as_empty(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    with capture_rows() as captured:
        result = pytester.runpytest_subprocess()  # no experiment: the plugin is inert
    result.assert_outcomes(passed=1, failed=1)
    assert (captured.rows, captured.spans, captured.experiments) == ({}, [], {})
