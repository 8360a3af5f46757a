"""Subtests end to end (issue 9, item 1): a failed subtest, of unittest's ``subTest`` or of
pytest's ``subtests`` fixture, fails its row, whose error names every failed subtest; rows of
unittest classes marked eval are recorded; the summary and the attempt count the same under
xdist, where the controller counts statuses from the reports it receives."""

from __future__ import annotations

import pytest
from support.output import summary_lines
from support.sessions import INI
from support.store import attempts, default_db, rows

EXPERIMENT = "subtests"

SUITE = """
import unittest

import pytest


@pytest.mark.eval
class TestUnit(unittest.TestCase):
    # How a TestCase reaches its row: an autouse fixture method.
    @pytest.fixture(autouse=True)
    def _row(self, eval_row):
        self.eval_row = eval_row

    def test_sub_fails(self):
        for i in range(4):
            with self.subTest(i=i):
                self.assertEqual(i % 2, 0)

    def test_sub_passes(self):
        for i in range(3):
            with self.subTest("even", i=i):
                self.assertLess(i, 3)
        self.eval_row.log(output="all below 3")

    def test_sub_skipped(self):
        for i in range(2):
            with self.subTest(i=i):
                if i:
                    self.skipTest("odd")

    def test_sub_and_own_failure(self):
        with self.subTest("first"):
            raise ValueError("bad value")
        raise KeyError("own")


@pytest.mark.eval
@pytest.mark.parametrize("n", [1, 5])
def test_fixture(n, subtests, eval_row):
    eval_row.score("ran", 1.0)
    for i in range(3):
        with subtests.test(msg="check", i=i):
            assert i != n


def test_plain_fixture(subtests):
    with subtests.test():
        assert False
"""

ROW = "test_suite.py::"


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_failed_subtest_fails_the_row_and_names_itself_in_the_error(
    pytester: pytest.Pytester, workers: str
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", "-n", workers)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["SUBFAILED(i=*1*) test_suite.py::TestUnit::test_sub_fails*"])
    db = default_db(pytester)
    found = rows(db, EXPERIMENT)
    statuses = {row_id.removeprefix(ROW): row.status for row_id, row in found.items()}
    assert statuses == {
        "TestUnit::test_sub_fails": "failed",
        "TestUnit::test_sub_passes": "passed",
        "TestUnit::test_sub_skipped": "passed",
        "TestUnit::test_sub_and_own_failure": "failed",
        "test_fixture[1]": "failed",
        "test_fixture[5]": "passed",
    }
    assert {row_id.removeprefix(ROW): row.scores["pass"] for row_id, row in found.items()} == {
        row_id: 1.0 if status == "passed" else 0.0 for row_id, status in statuses.items()
    }

    error = found[ROW + "TestUnit::test_sub_fails"].error
    assert error is not None
    assert error.type == "AssertionError"
    assert error.message.splitlines() == [
        "subtest (i=1) failed: AssertionError: 1 != 0",
        "subtest (i=3) failed: AssertionError: 1 != 0",
    ]
    # The traceback starts in the test, without unittest's own frames.
    assert error.traceback.startswith("test_suite.py:")
    assert "unittest" not in error.traceback

    error = found[ROW + "TestUnit::test_sub_and_own_failure"].error
    assert error is not None
    assert (error.type, error.message.splitlines()) == (
        "KeyError",
        ["'own'", "subtest [first] failed: ValueError: bad value"],
    )

    error = found[ROW + "test_fixture[1]"].error
    assert error is not None
    assert (error.type, error.message) == (
        "AssertionError",
        "subtest [check] (i=1) failed: AssertionError: assert 1 != 1",
    )
    assert found[ROW + "test_fixture[5]"].error is None
    assert found[ROW + "TestUnit::test_sub_passes"].output == "all below 3"

    # Every number agrees, counted by one process or by the xdist controller from reports.
    (attempt,) = attempts(db, EXPERIMENT)
    assert attempt.counts == {"passed": 3, "failed": 3}
    assert "mean scores: pass 0.500, ran 1.000" in summary_lines(result)
