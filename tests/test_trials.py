"""Trials: ``@pytest.mark.eval(trials=N)`` and ``--eval-trials N`` run each case N times, each
trial a row ``<row id>#<k>`` with the same id in every session, under ``--lf``, resume and
xdist like any row (issue 12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.cli import session_report
from support.output import deselected, usage_error
from support.sessions import INI
from support.store import history, rows

from pytest_evalrows.core import ids

# Two cases of three trials; the trial number is the eval_trial fixture. Trial 2 of "it"
# fails while `fail-it-2` exists. test_once has no trials.
SUITE = """
import pathlib

import pytest

HERE = pathlib.Path(__file__).parent


@pytest.mark.eval(trials=3)
@pytest.mark.parametrize("case", ["fr", "it"])
def test_answer(case, eval_row, eval_trial):
    eval_row.log(output=f"{case}-{eval_trial}")
    assert not (case == "it" and eval_trial == 2 and (HERE / "fail-it-2").exists())


@pytest.mark.eval
def test_once(eval_row, eval_trial):
    eval_row.log(output=eval_trial)
"""

ANSWER = "test_trials_suite.py::test_answer"
TRIAL_ROWS = {f"{ANSWER}[{case}]#{k}" for case in ("fr", "it") for k in (1, 2, 3)}
ONCE = "test_trials_suite.py::test_once"
FAILED_TRIAL = f"{ANSWER}[it]#2"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INI)
    pytester.makepyfile(test_trials_suite=SUITE)
    (pytester.path / "fail-it-2").touch()
    return pytester


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:randomly", *args)


def collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = run(pytester, "--collect-only", "-q", *args)
    return [line for line in result.stdout.lines if "::" in line]


def test_each_trial_is_a_row_whose_id_holds_in_the_next_session(
    suite: pytest.Pytester, db: Path
) -> None:
    first = run(suite, "--eval-experiment=t")
    first.assert_outcomes(passed=6, failed=1)
    found = rows(db, "t")
    assert set(found) == TRIAL_ROWS | {ONCE}
    # The trial's id ends the node id; the row's input is the case's, without the trial.
    row = found[f"{ANSWER}[it]#2"]
    assert (row.metadata["nodeid"], row.status) == (f"{ANSWER}[it-trial2]", "failed")
    assert (row.input, row.output) == ({"case": "it"}, "it-2")
    assert found[f"{ANSWER}[fr]#3"].output == "fr-3"
    assert found[ONCE].output == 1  # a test without trials: trial 1, node id unchanged
    assert found[ONCE].metadata["nodeid"] == ONCE
    for case in ("fr", "it"):  # a case's trials hold one case
        trials = [found[f"{ANSWER}[{case}]#{k}"] for k in (1, 2, 3)]
        assert len({row.metadata["params_hash"] for row in trials}) == 1

    (suite.path / "fail-it-2").unlink()
    run(suite, "--eval-experiment=t").assert_outcomes(passed=7)
    again = rows(db, "t")
    assert set(again) == set(found)
    assert {row.version for row in again.values()} == {2}
    assert again[FAILED_TRIAL].status == "passed"


def test_trials_under_xdist_make_the_rows_of_one_process(suite: pytest.Pytester, db: Path) -> None:
    run(suite, "--eval-experiment=one", "-n", "0").assert_outcomes(passed=6, failed=1)
    run(suite, "--eval-experiment=two", "-n", "2").assert_outcomes(passed=6, failed=1)

    def shape(experiment: str) -> dict[str, Any]:
        found = rows(db, experiment)
        return {row_id: (row.status, row.output, row.version) for row_id, row in found.items()}

    assert shape("one") == shape("two")
    assert set(shape("two")) == TRIAL_ROWS | {ONCE}


def test_last_failed_reruns_only_the_failed_trials(suite: pytest.Pytester, db: Path) -> None:
    run(suite, "--eval-experiment=t").assert_outcomes(passed=6, failed=1)
    (suite.path / "fail-it-2").unlink()
    rerun = run(suite, "--eval-experiment=t", "--lf")
    rerun.assert_outcomes(passed=1)
    assert "run-last-failure: rerun previous 1 failure" in rerun.stdout.str()
    found = rows(db, "t")
    assert found[FAILED_TRIAL].version == 2
    assert found[FAILED_TRIAL].status == "passed"
    assert {row_id for row_id, row in found.items() if row.version == 1} == (
        TRIAL_ROWS | {ONCE}
    ) - {FAILED_TRIAL}


def test_resume_deselects_the_passed_trials_only(suite: pytest.Pytester, db: Path) -> None:
    run(suite, "--eval-experiment=t").assert_outcomes(passed=6, failed=1)
    resumed = run(suite, "--eval-experiment=t", "--eval-resume")
    resumed.assert_outcomes(failed=1)
    assert deselected(resumed) == 6
    assert [row.version for row in history(db, "t", FAILED_TRIAL)] == [1, 2]
    assert [row.version for row in history(db, "t", f"{ANSWER}[it]#1")] == [1]


KEYED = """
import pytest

CASES = [{"id": "capital-fr", "q": "France"}, {"id": "capital-it", "q": "Italy"}]


@pytest.mark.eval(key="id", trials=2)
@pytest.mark.parametrize("case", CASES, ids=["fr", "it"])
def test_keyed(case, eval_row):
    pass
"""


def test_keyed_rows_get_the_trial_too(pytester: pytest.Pytester, db: Path) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_keyed=KEYED)
    assert collected(pytester, "--eval-experiment=k") == [
        f"test_keyed.py::test_keyed[{case}-trial{k}]" for case in ("fr", "it") for k in (1, 2)
    ]
    run(pytester, "--eval-experiment=k").assert_outcomes(passed=4)
    found = rows(db, "k")
    assert set(found) == {
        f"test_keyed.py::test_keyed[capital-{case}]#{k}" for case in ("fr", "it") for k in (1, 2)
    }
    assert found["test_keyed.py::test_keyed[capital-it]#2"].input == {
        "case": {"id": "capital-it", "q": "Italy"}
    }


OPTION = """
import pytest


@pytest.mark.eval
def test_default(eval_row):
    pass


@pytest.mark.eval(trials=2)
@pytest.mark.parametrize("n", [1])
def test_two(n, eval_row):
    pass


@pytest.mark.eval(trials=1)
def test_one(eval_row):
    pass


def test_not_eval():
    pass
"""


def test_the_option_sets_every_eval_test_and_the_marker_wins_for_its_own(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_option=OPTION)
    assert collected(pytester, "--eval-experiment=o", "--eval-trials", "3") == [
        *(f"test_option.py::test_default[trial{k}]" for k in (1, 2, 3)),
        *(f"test_option.py::test_two[1-trial{k}]" for k in (1, 2)),
        "test_option.py::test_one",
        "test_option.py::test_not_eval",
    ]
    run(pytester, "--eval-experiment=o", "--eval-trials", "3").assert_outcomes(passed=7)
    assert set(rows(db, "o")) == {
        *(f"test_option.py::test_default#{k}" for k in (1, 2, 3)),
        *(f"test_option.py::test_two[1]#{k}" for k in (1, 2)),
        "test_option.py::test_one",
    }


@pytest.mark.parametrize("value", ["0", "-1", "'3'", "2.5", "True"])
def test_a_bad_trials_value_is_a_usage_error_naming_the_test(
    pytester: pytest.Pytester, value: str
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_bad=f"""
        import pytest

        @pytest.mark.eval(trials={value})
        def test_bad(eval_row):
            pass
        """
    )
    line = usage_error(run(pytester, "--eval-experiment=b"))
    assert line == (
        f"ERROR: evalrows: @pytest.mark.eval(trials={value}) of test_bad.py::test_bad: "
        "valid values: a whole number, 1 or more"
    )


def test_a_bad_trials_value_under_xdist_is_one_line_without_a_traceback(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.eval(trials=0)
        def test_bad(eval_row):
            pass
        """
    )
    result = run(pytester, "--eval-experiment=b", "-n", "2")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output, output
    message = (
        "evalrows: @pytest.mark.eval(trials=0) of test_bad.py::test_bad: "
        "valid values: a whole number, 1 or more"
    )
    assert message in result.stdout.lines


HOOKED = """
def pytest_evalrows_row_id(item, default):
    return "case:" + item.callspec.params["case"]
"""


def test_a_row_id_of_the_hook_gets_the_trial_too(suite: pytest.Pytester, db: Path) -> None:
    suite.makeconftest(HOOKED)
    run(suite, "--eval-experiment=h", "-k", "test_answer").assert_outcomes(passed=5, failed=1)
    assert set(rows(db, "h")) == {f"case:{case}#{k}" for case in ("fr", "it") for k in (1, 2, 3)}


def test_an_inert_session_runs_each_case_once(suite: pytest.Pytester) -> None:
    (suite.path / "fail-it-2").unlink()
    assert collected(suite) == [f"{ANSWER}[fr]", f"{ANSWER}[it]", ONCE]
    run(suite).assert_outcomes(passed=3)
    assert not (suite.path / ".evalrows").exists()


@pytest.mark.parametrize("workers", ["0", "2"])
def test_the_report_counts_each_cases_passed_and_run_trials(
    suite: pytest.Pytester, workers: str
) -> None:
    result = run(suite, "--eval-experiment=t", "-n", workers)
    result.assert_outcomes(passed=6, failed=1)
    # The xdist controller's are its workers' trials, summed.
    assert session_report(result)["trials"] == {
        f"{ANSWER}[fr]": [3, 3],
        f"{ANSWER}[it]": [2, 3],
    }


FLAKY = """
import pathlib

import pytest

HERE = pathlib.Path(__file__).parent


@pytest.mark.eval(trials=2)
def test_flaky(eval_row, eval_trial):
    flag = HERE / f"flaky-{eval_trial}"
    if flag.exists():
        flag.unlink()
        raise AssertionError("flaky")
"""


def test_a_trial_a_rerun_plugin_repeated_counts_once_by_its_final_execution(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_flaky=FLAKY)
    (pytester.path / "flaky-2").touch()
    result = run(pytester, "--eval-experiment=f", "--reruns=1")
    assert result.parseoutcomes() == {"passed": 2, "rerun": 1}
    assert session_report(result)["trials"] == {"test_flaky.py::test_flaky": [2, 2]}


@pytest.mark.parametrize(
    ("name", "callspec_id", "expected"),
    [
        ("test_x[a-b-trial2]", "a-b-trial2", "test_x[a-b]"),
        ("test_x[trial2]", "trial2", "test_x"),
        ("test_x[a-trial2-1-3]", "a-trial2-1-3", None),  # parametrized after the trials
        ("test_x[a-xtrial2]", "a-xtrial2", None),
    ],
)
def test_the_trial_is_taken_off_the_end_of_the_parameter_id_only(
    name: str, callspec_id: str, expected: str | None
) -> None:
    assert ids.name_without_trial(name, "test_x", callspec_id, 2) == expected


OWN_PARAMETER = """
import pytest


@pytest.mark.eval
@pytest.mark.parametrize("eval_trial", [0, 6])
def test_own(eval_trial, eval_row):
    eval_row.log(output=eval_trial)


@pytest.mark.eval(trials=2)
def test_tried(eval_row):
    eval_row.log(output=1)
"""


def test_a_tests_own_parameter_named_like_the_trial_is_its_own(
    pytester: pytest.Pytester, db: Path
) -> None:
    """Only the tests that run trials have their ``eval_trial`` taken for one."""
    pytester.makeini(INI)
    pytester.makepyfile(test_own=OWN_PARAMETER)
    result = run(pytester, "--eval-experiment=own")

    result.assert_outcomes(passed=4)
    found = rows(db, "own")
    assert sorted(found) == [
        "test_own.py::test_own[0]",
        "test_own.py::test_own[6]",
        "test_own.py::test_tried#1",
        "test_own.py::test_tried#2",
    ]
    assert found["test_own.py::test_own[0]"].input == {"eval_trial": 0}


CRASHING = """
import os

import pytest


@pytest.mark.eval(trials=3)
@pytest.mark.parametrize("case", ["a", "b", "c", "d"])
def test_case(case, eval_row, eval_trial):
    if case == "d" and eval_trial == 3:
        os._exit(1)  # the worker dies in the middle of this trial
"""


def test_the_trials_of_a_crashed_worker_are_counted_by_the_controller(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_crash=CRASHING)
    result = run(pytester, "--eval-experiment=c", "-n", "2")

    result.assert_outcomes(passed=11, failed=1)
    assert session_report(result)["trials"] == {
        "test_crash.py::test_case[a]": [3, 3],
        "test_crash.py::test_case[b]": [3, 3],
        "test_crash.py::test_case[c]": [3, 3],
        "test_crash.py::test_case[d]": [2, 3],  # the crashed trial counts, as not passed
    }


UNTRIED = """
import unittest

import pytest


@pytest.mark.eval
@pytest.mark.parametrize("n", [1, pytest.param(2, marks=pytest.mark.eval(trials=3))])
def test_param(n, eval_row):
    pass


@pytest.mark.eval(trials=2)
class TestCaseClass(unittest.TestCase):
    def test_method(self):
        pass
"""


def test_trials_that_cannot_take_effect_are_said(pytester: pytest.Pytester) -> None:
    """A pytest.param's marks come after the test is parametrized, and a unittest method is
    not parametrized: each runs once, and the session says so rather than staying silent."""
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_untried=UNTRIED)
    result = run(pytester, "--eval-experiment=u", "-W", "default")

    result.assert_outcomes(passed=3)
    said = result.stdout.str()
    assert "trials=3 cannot take effect on test_untried.py::test_param" in said
    assert "trials=2 cannot take effect on test_untried.py::TestCaseClass::test_method" in said
