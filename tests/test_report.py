"""The report at the end of a recording session: this session's means beside the experiment's,
a baseline's deltas and moved rows, trials, ``-q`` and ``--eval-report=none``; each number read
back from the report saved with the attempt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.cli import session_report
from support.output import summary_lines
from support.scored import SCORED_SUITE, scores

from pytest_evalrows.core.report import SessionReport

BASE = {"a": (0.5, True), "b": (0.5, True), "c": (0.5, False), "d": (0.5, True), "x": (1, True)}
# a up, b down, c passes now (pass up, q same), d unchanged; x only in the baseline, y only here.
NEW = {"a": (0.9, True), "b": (0.1, True), "c": (0.5, True), "d": (0.5, True), "y": (0.0, True)}


def row(case: str) -> str:
    return f"test_suite.py::test_case[{case}]"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_suite=SCORED_SUITE)
    return pytester.path


def test_a_baseline_comparison_has_known_deltas_and_moved_rows(
    pytester: pytest.Pytester, suite: Path
) -> None:
    scores(suite, BASE)
    pytester.runpytest_subprocess("--eval-experiment=base").assert_outcomes(passed=4, failed=1)
    scores(suite, NEW)

    result = pytester.runpytest_subprocess("--eval-experiment=new", "--eval-baseline", "base")
    result.assert_outcomes(passed=5)
    assert result.ret == pytest.ExitCode.OK  # no gate asked for

    comparison = session_report(result)["comparison"]
    assert (comparison["a"], comparison["b"]) == ("base", "new")
    assert comparison["rows"] == {"compared": 4, "only_a": 1, "only_b": 1}
    assert comparison["improved"] == [row("a"), row("c")]
    assert comparison["regressed"] == [row("b")]
    q, passed = comparison["scores"]["q"], comparison["scores"]["pass"]
    assert (q["a_mean"], q["b_mean"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert q["delta"] == pytest.approx(0.0)
    assert (q["improved"], q["regressed"], q["unchanged"]) == (1, 1, 2)
    assert (passed["a_mean"], passed["b_mean"]) == (pytest.approx(0.75), 1.0)
    assert passed["delta"] == pytest.approx(0.25)
    assert (passed["improved"], passed["regressed"], passed["unchanged"]) == (1, 0, 3)
    lines = summary_lines(result)
    assert (
        "against baseline 'base': 4 rows compared (1 only in the baseline, 1 only here): "
        "2 improved, 1 regressed"
    ) in lines
    assert f"  regressed: {row('b')}" in lines
    [table_q] = [line for line in lines if line.startswith("q ")]
    assert table_q.split() == ["q", "0.400", "0.400", "0.500", "+0.000", "1", "1"]


def test_a_last_failed_rerun_shows_the_experiments_means_beside_its_own(
    pytester: pytest.Pytester, suite: Path
) -> None:
    scores(suite, {"a": (1.0, True), "b": (1.0, True), "c": (0.0, False), "d": (0.0, False)})
    pytester.runpytest_subprocess("--eval-experiment=e").assert_outcomes(passed=2, failed=2)

    rerun = pytester.runpytest_subprocess("--eval-experiment=e", "--lf")
    rerun.assert_outcomes(failed=2)

    report = session_report(rerun)
    assert report["mean_scores"] == {"q": 0.0, "pass": 0.0}  # the two rows it ran
    assert report["experiment_rows"] == 4
    assert report["experiment_means"] == {"pass": 0.5, "q": 0.5}  # the suite's
    [table_pass] = [line for line in summary_lines(rerun) if line.startswith("pass ")]
    assert table_pass.split() == ["pass", "0.000", "0.500"]


def test_quiet_shortens_the_report_and_none_drops_it_but_for_a_failed_gate(
    pytester: pytest.Pytester, suite: Path
) -> None:
    scores(suite, {"a": (0.2, True), "b": (0.4, True)})
    quiet = pytester.runpytest_subprocess("--eval-experiment=e", "-q", "--eval-fail-under=q=0.5")
    assert quiet.ret == pytest.ExitCode.TESTS_FAILED
    lines = summary_lines(quiet)
    assert lines[0].startswith("experiment 'e'") and lines[1].startswith("attempt ")
    assert lines[2:5] == [
        "experiment means: pass 1.000, q 0.300; gates: 0 passed, 1 failed",
        "gate q >= 0.5: FAILED (0.300 over 2 rows)",
        lines[4],
    ]
    assert lines[4].startswith("2 passed in")  # pytest's own last line, under -q
    # The saved report is the whole one.
    assert session_report(quiet)["experiment_means"] == {"pass": 1.0, "q": pytest.approx(0.3)}

    silent = pytester.runpytest_subprocess("--eval-experiment=e", "--eval-report=none")
    assert silent.ret == pytest.ExitCode.OK
    assert not [line for line in silent.stdout.lines if re.fullmatch(r"-+ evalrows -+", line)]
    assert not [line for line in silent.stdout.lines if line.startswith("mean scores: ")]
    assert len([line for line in silent.stdout.lines if line.startswith("evalrows: ")]) == 1

    gated = pytester.runpytest_subprocess(
        "--eval-experiment=e", "--eval-report=none", "--eval-fail-under=q=0.5"
    )
    assert gated.ret == pytest.ExitCode.TESTS_FAILED
    said = [line for line in gated.stdout.lines if line.startswith("evalrows: ")]
    assert said[1:] == ["evalrows: gate q >= 0.5: FAILED (0.300 over 2 rows)"]  # after the header


def test_trials_render_the_worst_cases_and_how_many_passed_all_and_any() -> None:
    report = SessionReport(experiment="e", project="p", store="s", attempt_id="a1")
    report.trials = {"r1": [3, 3], "r2": [1, 3], "r3": [0, 3], "r4": [2, 3], "r5": [3, 3]}
    lines = [line for line, _ in report.lines()]
    at = lines.index("trials: 5 cases; 2 passed every trial, 4 passed at least one")
    assert lines[at + 1 : at + 4] == [
        "  r3: 0 of 3 trials passed",
        "  r2: 1 of 3 trials passed",
        "  r4: 2 of 3 trials passed",
    ]
    assert SessionReport.from_json(json.loads(json.dumps(report.to_json()))) == report
    assert not [line for line, _ in SessionReport("e", "p", "s", "a").lines() if "trial" in line]
