"""The session's report: what the summary prints is saved with the attempt, and every count
in it agrees with the rows in the store."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from support.cli import attempt_records
from support.store import block_store, history, rows, unblock_store

from pytest_evalrows.core.report import SessionReport
from pytest_evalrows.plugin.summary import write_summary
from pytest_evalrows.store.sqlite import SQLiteStore

EXPERIMENT = "nightly"
SUITE = """
import pytest

@pytest.mark.eval
@pytest.mark.parametrize("n", [1, 2, 3, 4], ids=["a", "b", "c", "d"])
def test_n(n, eval_row):
    eval_row.score("even", float(n % 2 == 0))
    assert n % 2
"""
FAILED = {"test_suite.py::test_n[b]", "test_suite.py::test_n[d]"}


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_suite=SUITE)
    return pytester.path


def span_count(db: Path, row_ids: set[str]) -> int:
    with SQLiteStore(db, create=False) as store:
        experiment = store.get_experiment(EXPERIMENT)
        return sum(len(store.list_spans(experiment.id, row_id)) for row_id in row_ids)


def test_a_plain_session_saves_the_counts_of_the_rows_it_stored(
    pytester: pytest.Pytester, suite: Path, db: Path
) -> None:
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    result.assert_outcomes(passed=2, failed=2)

    [record] = attempt_records(EXPERIMENT, db, cwd=suite)
    report = record["report"]
    stored = rows(db, EXPERIMENT)
    assert report["attempt_id"] == record["id"]
    assert (report["experiment"], report["project"]) == (EXPERIMENT, suite.name)
    assert report["rows_written"] == len(stored) == 4
    assert (report["new_rows"], report["updated_rows"], report["unknown_why"]) == (4, 0, None)
    assert {row.attempt_id for row in stored.values()} == {record["id"]}
    assert report["statuses"] == Counter(row.status for row in stored.values())
    assert report["statuses"] == record["counts"] == {"passed": 2, "failed": 2}
    names = {name for row in stored.values() for name in row.scores}
    assert report["mean_scores"] == {
        name: sum(row.scores[name] for row in stored.values()) / len(stored) for name in names
    }
    assert report["mean_scores"]["even"] == 0.5
    assert report["stale_spans_removed"] == 0  # only new rows: nothing could be stale
    assert (report["undelivered_rows"], report["lost_rows"], report["errors"]) == (0, [], [])
    assert report["store_error"] is None
    # The saved report is the one the summary rendered.
    assert f"attempt {record['id']}: 4 rows written (4 new, 0 updated)" in result.stdout.lines


def test_a_last_failed_rerun_saves_the_stale_spans_it_removed(
    pytester: pytest.Pytester, suite: Path, db: Path
) -> None:
    pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}").assert_outcomes(
        passed=2, failed=2
    )
    stale = span_count(db, FAILED)
    assert stale >= len(FAILED)  # at least each row's root span

    rerun = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", "--lf")
    rerun.assert_outcomes(failed=2)

    first, second = attempt_records(EXPERIMENT, db, cwd=suite)
    report = second["report"]
    stored = rows(db, EXPERIMENT)
    mine = {row_id for row_id, row in stored.items() if row.attempt_id == second["id"]}
    assert mine == FAILED
    assert report["rows_written"] == len(mine)
    assert (report["new_rows"], report["updated_rows"]) == (0, len(mine))
    assert report["statuses"] == {"failed": 2}
    assert report["stale_spans_removed"] == stale
    # What is left under the rerun rows is this attempt's own spans only.
    with SQLiteStore(db, create=False) as store:
        experiment = store.get_experiment(EXPERIMENT)
        left = [span for row_id in FAILED for span in store.list_spans(experiment.id, row_id)]
    assert left and {span.attempt_id for span in left} == {second["id"]}
    assert first["report"]["rows_written"] == 4  # the earlier attempt's report is untouched


def test_an_unwritable_store_then_a_delivering_session_each_save_true_counts(
    pytester: pytest.Pytester, suite: Path
) -> None:
    store = block_store(suite)
    blocked = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", store)
    blocked.assert_outcomes(passed=2, failed=2)
    db = unblock_store(suite)

    delivering = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", store)
    delivering.assert_outcomes(passed=2, failed=2)

    # The blocked session's attempt waited in the spool with its rows and arrived with them.
    first, second = attempt_records(EXPERIMENT, db, cwd=suite)
    stored = rows(db, EXPERIMENT)
    assert first["delivered"] is False
    blocked_report = first["report"]
    assert blocked_report["rows_written"] == 0
    assert blocked_report["undelivered_rows"] == len(stored) == 4
    assert blocked_report["store_error"]
    assert blocked_report["statuses"] == {"passed": 2, "failed": 2}

    assert second["delivered"] is True
    report = second["report"]
    assert report["leftover_rows"] == 4
    assert {row.attempt_id for row in stored.values()} == {second["id"]}
    assert report["rows_written"] == 4
    assert (report["new_rows"], report["updated_rows"]) == (0, 4)
    assert (report["undelivered_rows"], report["lost_rows"], report["store_error"]) == (0, [], None)
    for row_id in stored:
        versions = history(db, EXPERIMENT, row_id)
        assert [v.attempt_id for v in versions] == [first["id"], second["id"]]


class FakeReporter:
    def __init__(self) -> None:
        self.lines: list[tuple[str, bool]] = []

    def write_sep(self, sep: str, title: str) -> None:
        self.lines.append((f"{sep * 3} {title} {sep * 3}", False))

    def write_line(self, line: str, **markup: bool) -> None:
        self.lines.append((line, markup.get("red", False)))


def test_a_report_renders_the_summary_lines() -> None:
    report = SessionReport(
        experiment="nightly",
        project="demo",
        store="sqlite:///tmp/rows.db",
        attempt_id="a1",
        rows_written=5,
        new_rows=3,
        updated_rows=2,
        resumed=4,
        resume_mode="passed",
        leftover_rows=1,
        stale_spans_removed=7,
        cleanup_seconds=0.25,
        requests={"insert": 2, "fetch": 1},
        mean_scores={"exact": 2 / 3},
        statuses={"passed": 5},
        errors=["boom", "boom"],
        undelivered_rows=2,
        spool_dir="/tmp/spool",
        lost_rows=[("r1", "is too big")],
    )
    reporter = FakeReporter()

    write_summary(report, reporter)

    assert reporter.lines == [
        ("--- evalrows ---", False),
        ("experiment 'nightly' (project 'demo') in sqlite:///tmp/rows.db", False),
        ("attempt a1: 5 rows written (3 new, 2 updated)", False),
        ("rows run: 5 (5 passed, 0 failed, 0 errors, 0 skipped)", False),
        ("resumed: 4 cases whose row already passed were not run again", False),
        ("delivered 1 rows an earlier session left in the spool", False),
        ("stale spans removed: 7 (in 0.25 s)", False),
        ("requests to the store: fetch 1, insert 2", False),
        ("mean scores: exact 0.667", False),
        ("error: boom", True),
        (
            "2 rows not delivered: kept in /tmp/spool; the next recording session delivers "
            "them, or run `evalrows flush`",
            True,
        ),
        ("1 rows could be neither stored nor kept in the spool:", True),
        ("  row 'r1' is too big", True),
    ]
    # Saved as JSON and read back, it is the same report.
    assert SessionReport.from_json(json.loads(json.dumps(report.to_json()))) == report


def test_unknown_new_and_updated_counts_are_said_and_saved_as_unknown() -> None:
    from pytest_evalrows.core.report import CRASHED

    report = SessionReport(
        "e", "p", "s", "a1", rows_written=3, new_rows=None, updated_rows=None, unknown_why=CRASHED
    )
    [_, written] = report.lines()[:2]
    assert written == (
        "attempt a1: 3 rows written (new or updated unknown: a worker crashed; counted in the "
        "store)",
        False,
    )
    assert report.to_json()["new_rows"] is None


def test_the_judgments_of_workers_add_up_and_render_one_line_with_the_first_failures() -> None:
    from pytest_evalrows.core.report import JudgmentCounts

    worker1, worker2 = JudgmentCounts(), JudgmentCounts()
    worker1.add("exact", "r1", error=None, passed=True, score=1.0)
    worker1.add("exact", "r2", error="ValueError: boom", passed=None, score=None)
    worker2.add("exact", "r3", error=None, passed=False, score=0.0)
    worker2.add("tone", "r3", error=None, passed=None, score=0.5)
    worker2.add("tone", "r4", error="timed out after 1 s", passed=None, score=None)
    worker2.add("exact", "r5", error="ValueError: boom", passed=None, score=None)
    worker2.saved = 3
    worker2.spooled = 1
    controller = JudgmentCounts()
    # As the counts travel from the workers (workeroutput is JSON).
    for worker in (worker1, worker2):
        controller.merge(json.loads(json.dumps(worker.to_json())))

    report = SessionReport(experiment="e", project="p", store="s", attempt_id="a")
    report.add_judgments(controller)
    report.spool_dir = "/spool"
    assert (report.judgments, report.judgments_succeeded, report.judgments_failed) == (6, 3, 3)
    assert (report.judgments_passed, report.judgments_not_passed) == (1, 1)
    assert report.judge_mean_scores == {"exact": 0.5, "tone": 0.5}
    assert SessionReport.from_json(report.to_json()) == report
    lines = [line for line, _ in report.lines()]
    assert lines[-4:] == [
        "judgments: 6 (3 succeeded, 3 failed); passed 1 of 2; mean score by judge: "
        "judge:exact 0.500, judge:tone 0.500",
        "  judge 'exact' failed on 2 rows (the first 'r2'): ValueError: boom",
        "  judge 'tone' failed on row 'r4': timed out after 1 s",
        "1 judgments not saved: kept in /spool; the next recording session saves them, or run "
        "`evalrows flush`",
    ]


def test_a_session_without_judgments_says_nothing_of_them() -> None:
    report = SessionReport(experiment="e", project="p", store="s", attempt_id="a")
    assert not [line for line, _ in report.lines() if "judg" in line]


def test_the_report_renders_the_score_table_the_baseline_and_the_gates() -> None:
    report = SessionReport(
        "e", "p", "s", "a1", statuses={"passed": 3, "failed": 1}, mean_scores={"q": 0.25}
    )
    report.experiment_rows = 8
    report.experiment_means = {"pass": 0.875, "q": 0.5}
    report.experiment_tokens, report.session_tokens = 1200, 300
    report.comparison = {
        "a": "base",
        "b": "e",
        "rows": {"compared": 7, "only_a": 1, "only_b": 1},
        "scores": {
            "q": {"a_mean": 0.4, "b_mean": 0.5, "delta": 0.1, "improved": 2, "regressed": 1}
        },
        "improved": ["r1", "r2"],
        "regressed": ["r3"],
    }
    report.gates = [
        {
            "gate": "fail_under",
            "score": "q",
            "threshold": 0.6,
            "value": 0.5,
            "rows": 8,
            "passed": False,
            "why": None,
        },
        {
            "gate": "max_regressions",
            "score": None,
            "threshold": 1,
            "value": 1,
            "rows": 7,
            "passed": True,
            "why": None,
        },
    ]

    lines = report.lines()

    assert lines[2:] == [
        ("rows run: 4 (3 passed, 1 failed, 0 errors, 0 skipped)", False),
        ("mean scores: q 0.250", False),
        ("latest rows of the experiment: 8", False),
        ("score  session  experiment  baseline 'base'   delta  improved  regressed", False),
        ("pass         -       0.875                -       -         0          0", False),
        ("q        0.250       0.500            0.400  +0.100         2          1", False),
        (
            "against baseline 'base': 7 rows compared (1 only in the baseline, 1 only here): "
            "2 improved, 1 regressed",
            False,
        ),
        ("  regressed: r3", False),
        ("tokens 300 this session, 1,200 in all", False),
        ("gate q >= 0.6: FAILED (0.500 over 8 rows)", True),
        ("gate at most 1 regressed rows: passed (1 regressed)", False),
    ]
    assert SessionReport.from_json(json.loads(json.dumps(report.to_json()))) == report


def test_an_unread_experiment_is_one_line_and_the_gates_fail_saying_why() -> None:
    report = SessionReport("e", "p", "s", "a1")
    report.experiment_unread = "database is locked"
    report.gates = [
        {
            "gate": "fail_under",
            "score": "pass",
            "threshold": 0.9,
            "value": None,
            "rows": None,
            "passed": False,
            "why": "it cannot be checked: the store is down",
        },
    ]
    said = [(line, red) for line, red in report.lines() if red]
    assert said == [
        ("experiment's latest rows not read: database is locked", True),
        ("gate pass >= 0.9: FAILED: it cannot be checked: the store is down", True),
    ]
