"""Gates: ``--eval-fail-under`` and ``--eval-max-regressions`` set pytest's exit status from the
collected rows' latest versions, and the report says why; a gate that names a score no row has,
and an unknown baseline, are usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import session_report
from support.output import summary_lines, usage_error
from support.scored import SCORED_SUITE, scores
from support.store import block_store

# Case -> (score q, whether the test passes).
GOOD = {"a": (0.2, True), "b": (0.4, True), "c": (0.6, True), "d": (0.8, True)}


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_suite=SCORED_SUITE)
    scores(pytester.path, GOOD)
    return pytester.path


def gates_of(result: pytest.RunResult) -> list[dict[str, object]]:
    gates: list[dict[str, object]] = session_report(result)["gates"]
    return gates


def test_fail_under_a_score_passes_at_its_mean_and_fails_above_it(
    pytester: pytest.Pytester, suite: Path
) -> None:
    passing = pytester.runpytest_subprocess("--eval-experiment=e", "--eval-fail-under", "q=0.5")
    passing.assert_outcomes(passed=4)
    assert passing.ret == pytest.ExitCode.OK
    [gate] = gates_of(passing)
    assert gate["passed"] is True and gate["value"] == pytest.approx(0.5) and gate["rows"] == 4
    assert "gate q >= 0.5: passed (0.500 over 4 rows)" in summary_lines(passing)

    failing = pytester.runpytest_subprocess("--eval-experiment=e", "--eval-fail-under", "q=0.6")
    failing.assert_outcomes(passed=4)
    assert failing.ret == pytest.ExitCode.TESTS_FAILED
    [gate] = gates_of(failing)
    assert (gate["passed"], gate["threshold"]) == (False, 0.6)
    assert "gate q >= 0.6: FAILED (0.500 over 4 rows)" in summary_lines(failing)


def test_the_pass_rate_counts_the_rows_resume_deselected(
    pytester: pytest.Pytester, suite: Path
) -> None:
    scores(suite, {**GOOD, "a": (0.2, False)})
    first = pytester.runpytest_subprocess("--eval-experiment=e", "--eval-fail-under", "pass=0.7")
    first.assert_outcomes(passed=3, failed=1)
    assert first.ret == pytest.ExitCode.TESTS_FAILED  # the failed test, the gate passed
    assert [gate["passed"] for gate in gates_of(first)] == [True]

    # A new case passes; the failed one is not run again, but it is still a failed row.
    scores(suite, {**GOOD, "a": (0.2, False), "e": (1.0, True)})
    second = pytester.runpytest_subprocess(
        "--eval-experiment=e", "--eval-resume=finished", "--eval-fail-under", "pass=0.9"
    )
    second.assert_outcomes(passed=1, deselected=4)
    assert second.ret == pytest.ExitCode.TESTS_FAILED
    [gate] = gates_of(second)
    assert (gate["passed"], gate["value"], gate["rows"]) == (False, pytest.approx(0.8), 5)
    assert "gate pass >= 0.9: FAILED (0.800 over 5 rows)" in summary_lines(second)
    assert session_report(second)["collected_rows"] == 5


def test_max_regressions_counts_the_rows_that_regressed_against_the_baseline(
    pytester: pytest.Pytester, suite: Path
) -> None:
    pytester.runpytest_subprocess("--eval-experiment=base").assert_outcomes(passed=4)
    # b and c go down, a goes up, d stays.
    scores(suite, {"a": (0.3, True), "b": (0.3, True), "c": (0.5, True), "d": (0.8, True)})

    allowed = pytester.runpytest_subprocess(
        "--eval-experiment=new", "--eval-baseline=base", "--eval-max-regressions=2"
    )
    assert allowed.ret == pytest.ExitCode.OK
    [gate] = gates_of(allowed)
    assert (gate["passed"], gate["value"], gate["threshold"]) == (True, 2, 2)

    refused = pytester.runpytest_subprocess(
        "--eval-experiment=new", "--eval-baseline=base", "--eval-max-regressions=1"
    )
    refused.assert_outcomes(passed=4)
    assert refused.ret == pytest.ExitCode.TESTS_FAILED
    report = session_report(refused)
    assert report["comparison"]["regressed"] == [
        "test_suite.py::test_case[b]",
        "test_suite.py::test_case[c]",
    ]
    assert "gate at most 1 regressed rows: FAILED (2 regressed)" in summary_lines(refused)

    # Without the report, a gate of 0 still reads the rows, and its failure is said in a line.
    silent = pytester.runpytest_subprocess(
        "--eval-experiment=new",
        "--eval-baseline=base",
        "--eval-max-regressions=0",
        "--eval-report=none",
    )
    assert silent.ret == pytest.ExitCode.TESTS_FAILED
    said = [line for line in silent.stdout.lines if line.startswith("evalrows: gate")]
    assert said == ["evalrows: gate at most 0 regressed rows: FAILED (2 regressed)"]


def test_a_gate_naming_a_score_no_row_has_is_a_usage_error_listing_the_scores(
    pytester: pytest.Pytester, suite: Path
) -> None:
    result = pytester.runpytest_subprocess(
        "--eval-experiment=e", "--eval-fail-under", "qq=0.5", "--eval-fail-under", "q=0.1"
    )
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "usage error: --eval-fail-under names 'qq', a score no collected row has; the scores "
        "there are: pass, q"
    ) in summary_lines(result)
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    report = session_report(result)
    assert report["gate_usage_error"] and [g["score"] for g in report["gates"]] == ["q"]


def test_an_unknown_baseline_stops_the_session_at_its_start_listing_the_experiments(
    pytester: pytest.Pytester, suite: Path
) -> None:
    pytester.runpytest_subprocess("--eval-experiment=first").assert_outcomes(passed=4)
    pytester.runpytest_subprocess("--eval-experiment=second").assert_outcomes(passed=4)

    result = pytester.runpytest_subprocess("--eval-experiment=third", "--eval-baseline=frist")

    line = usage_error(result)
    assert "--eval-baseline 'frist': no such experiment" in line
    assert line.endswith("the experiments there: 'first', 'second'")
    assert "test_suite.py" not in result.stdout.str()  # no test ran


def test_a_gate_that_cannot_be_checked_fails_and_says_why(
    pytester: pytest.Pytester, suite: Path
) -> None:
    store = block_store(suite)
    result = pytester.runpytest_subprocess(
        "--eval-experiment=e", store, "--eval-fail-under", "q=0.1"
    )
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    said = [line for line in summary_lines(result) if line.startswith("gate q >= 0.1: FAILED")]
    assert len(said) == 1 and "cannot be checked" in said[0], summary_lines(result)
    assert "Traceback" not in result.stdout.str()


def test_under_xdist_the_gates_look_at_every_workers_rows_and_the_report_is_printed_once(
    pytester: pytest.Pytester, suite: Path
) -> None:
    pytest.importorskip("xdist")
    result = pytester.runpytest_subprocess(
        "--eval-experiment=e",
        "-n",
        "2",
        "--eval-fail-under",
        "q=0.5",
        "--eval-fail-under",
        "pass=1",
    )
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.OK
    summary_lines(result)  # exactly one evalrows section
    report = session_report(result)
    assert report["collected_rows"] == 4
    assert [(g["score"], g["rows"], g["passed"]) for g in report["gates"]] == [
        ("pass", 4, True),
        ("q", 4, True),
    ]

    failing = pytester.runpytest_subprocess(
        "--eval-experiment=e", "-n", "2", "--eval-fail-under", "q=0.51"
    )
    assert failing.ret == pytest.ExitCode.TESTS_FAILED
    assert "gate q >= 0.51: FAILED (0.500 over 4 rows)" in summary_lines(failing)


def test_the_experiment_itself_is_no_baseline(pytester: pytest.Pytester, suite: Path) -> None:
    """Read at the end, it would be this session's own rows: nothing could ever regress."""
    pytester.runpytest_subprocess("--eval-experiment=e").assert_outcomes(passed=4)

    result = pytester.runpytest_subprocess(
        "--eval-experiment=e", "--eval-baseline=e", "--eval-max-regressions=0"
    )

    assert "--eval-baseline 'e' is the experiment this session records into" in usage_error(result)
    assert "test_suite.py" not in result.stdout.str()  # no test ran


ERRORING = """
import pytest


@pytest.fixture
def broken():
    raise RuntimeError("no model today")


@pytest.mark.eval
@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_case(case, eval_row, request):
    if case == "c":
        request.getfixturevalue("broken")
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_row_in_error_counts_against_the_pass_rate_of_the_session_and_the_gate(
    pytester: pytest.Pytester, workers: str
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_suite=ERRORING)
    result = pytester.runpytest_subprocess(
        "--eval-experiment=e", "-n", workers, "--eval-fail-under", "pass=0.9"
    )

    result.assert_outcomes(passed=2, failed=1)
    report = session_report(result)
    assert report["mean_scores"]["pass"] == pytest.approx(2 / 3)
    assert report["experiment_means"]["pass"] == pytest.approx(2 / 3)
    [gate] = report["gates"]
    assert gate["passed"] is False and gate["value"] == pytest.approx(2 / 3)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_collected_rows_the_store_does_not_have_fail_the_gate(
    pytester: pytest.Pytester, suite: Path
) -> None:
    """``-x`` stopped the session before the other cases ran: they have no row yet, and a gate
    over the one that ran would pass on rows it did not see."""
    scores(suite, {"a": (0.9, False), "b": (0.9, True), "c": (0.9, True)})

    result = pytester.runpytest_subprocess("--eval-experiment=e", "-x", "--eval-fail-under=q=0.5")

    result.assert_outcomes(failed=1)
    [gate] = gates_of(result)
    assert gate["passed"] is False
    assert "2 collected rows were not read: 'test_suite.py::test_case[b]'" in str(gate["why"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
