"""What a new user meets first: the two commands of the README, the help, the version, and a
warning when a test logs to ``eval_row`` without the eval marker."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import rows

ROOT = Path(__file__).resolve().parent.parent

UNMARKED = """
import pytest

@pytest.mark.parametrize("n", [1, 2, 3])
def test_forgot_the_marker(n, eval_row):
    eval_row.log(output=n)
    eval_row.score("one", 1.0)

def test_forgot_it_too(eval_row):
    eval_row.log(output="x")

@pytest.mark.eval
@pytest.mark.parametrize("n", [1])
def test_marked(n, eval_row):
    eval_row.log(output=n)

def test_plain():
    pass
"""


def test_eval_row_without_the_marker_warns_once_per_test_function(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_unmarked=UNMARKED)
    result = pytester.runpytest_subprocess("--eval-experiment=door", "-p", "no:randomly")

    result.assert_outcomes(passed=6, warnings=2)
    text = result.stdout.str()
    for function in ("test_forgot_the_marker", "test_forgot_it_too"):
        warned = [
            line
            for line in result.stdout.lines
            if f"test_unmarked.py::{function} uses eval_row" in line
        ]
        assert len(warned) == 1, text
        assert "@pytest.mark.eval" in warned[0]
        assert "EvalrowsWarning" in warned[0]
    # It points at the test, not into the plugin.
    assert "test_unmarked.py:3: EvalrowsWarning" in text
    assert list(rows(db, "door")) == ["test_unmarked.py::test_marked[1]"]


def test_eval_row_without_the_marker_is_quiet_when_nothing_is_recorded(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_unmarked=UNMARKED)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=6)


def test_under_filterwarnings_error_every_case_of_an_unmarked_test_fails_alike(
    pytester: pytest.Pytester, db: Path
) -> None:
    # The user asked for warnings to be errors: the tests that caused this one fail, as a
    # warning turned error fails any test, and pytest itself carries on.
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_unmarked=UNMARKED)
    result = pytester.runpytest_subprocess("--eval-experiment=door", "-p", "no:randomly")

    result.assert_outcomes(passed=2, errors=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text
    errored = sorted(
        line.split(" - ")[0] for line in result.stdout.lines if line.startswith("ERROR ")
    )
    assert errored == [
        "ERROR test_unmarked.py::test_forgot_it_too",
        "ERROR test_unmarked.py::test_forgot_the_marker[1]",
        "ERROR test_unmarked.py::test_forgot_the_marker[2]",
        "ERROR test_unmarked.py::test_forgot_the_marker[3]",
    ]
    assert text.count("is not marked @pytest.mark.eval") >= 4
    assert list(rows(db, "door")) == ["test_unmarked.py::test_marked[1]"]
