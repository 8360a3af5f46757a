"""``evalrows judgments`` and ``evalrows judgment``: the evaluations a store keeps, listed a page
at a time and shown one by one, through the real command."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from support.cli import json_lines
from support.judge_project import (
    DE,
    FR,
    IT,
    listed,
    lookup_id,
    make_project,
    one_error,
    run,
    trace_ids,
)

from pytest_evalrows.core.judgments import Evaluation, Judgment, Step
from pytest_evalrows.store.sqlite import SQLiteStore


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


# -- judgments, judgment ----------------------------------------------------------------------

EVALUATION_FIELDS = {
    "id", "experiment_id", "row_id", "trace_id", "version_id", "judge_id", "status",
    "created_at", "started_at", "finished_at", "error", "result",
}  # fmt: skip


def evaluation(
    number: int, row_id: str, judge: str, *, passed: bool | None, **more: object
) -> Evaluation:
    trace_id = trace_ids(row_id)[0]
    if passed is None:  # a judgment that failed to run
        done: dict[str, object] = {"status": "failure", "error": "RuntimeError: boom"}
    else:
        reasoning = f"{row_id}: the capital {'matches' if passed else 'is wrong'}"
        steps = [Step(span_id=lookup_id(row_id), name="lookup", result={"found": passed})]
        done = {
            "status": "success",
            "result": Judgment(
                score=float(passed), passed=passed, reasoning=reasoning, steps=steps
            ),
        }
    return Evaluation(
        id=f"ev-{number}",
        row_id=row_id,
        trace_id=trace_id,
        version_id="",
        judge_id=judge,
        created_at=1_700_000_000.0 + number,
        started_at=1_700_000_000.0 + number,
        finished_at=1_700_000_000.5 + number,
        **{**done, **more},
    )


@pytest.fixture
def judged(project: Path) -> Path:
    """Five evaluations of 'nightly' made one second apart: ev-1 oldest, ev-5 newest."""
    with SQLiteStore(project / "rows.db") as store:
        experiment = store.get_experiment("nightly")
        versions = {row.row_id: row.version_id for row in store.latest_rows(experiment.id)}
        made = [
            evaluation(1, FR, "exact", passed=True),
            evaluation(2, DE, "exact", passed=False),
            evaluation(3, IT, "exact", passed=True),
            evaluation(4, DE, "tone", passed=None),
            evaluation(5, FR, "tone", passed=True),
        ]
        for each in made:
            each.version_id = versions[each.row_id]
            each.experiment_id = experiment.id
        store.save_evaluations(experiment.id, made)
    return project


def test_judgments_are_a_table_newest_first_with_the_page_said(judged: Path) -> None:
    code, out, _ = run(judged, "judgments", "nightly")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "ROW", "JUDGE", "STATUS", "SCORE", "PASSED", "CREATED"]
    assert [line.split()[:6] for line in lines[1:3]] == [
        ["ev-5", FR, "tone", "success", "1", "yes"],
        ["ev-4", DE, "tone", "failure", "2023-11-14T22:13:24Z"],
    ]
    assert [line.split()[0] for line in lines[1:-1]] == ["ev-5", "ev-4", "ev-3", "ev-2", "ev-1"]
    assert lines[-1] == "page 1 of 1 (5 evaluations)"


def test_judgments_come_a_page_at_a_time(judged: Path) -> None:
    assert listed(judged, "--page-size", "2") == ["ev-5", "ev-4"]
    assert listed(judged, "--page-size", "2", "--page", "3") == ["ev-1"]
    code, out, _ = run(judged, "judgments", "nightly", "--page-size", "2", "--page", "2")
    assert out.splitlines()[-1] == "page 2 of 3 (5 evaluations)"
    code, out, err = run(judged, "judgments", "nightly", "--page-size", "2", "--page", "4")
    assert (code, out) == (2, "")
    assert one_error(err) == "--page 4: the 5 evaluations found fill pages 1 to 3"


def test_judgments_filter_by_judge_row_outcome_and_text(judged: Path) -> None:
    assert listed(judged, "--judge", "tone") == ["ev-5", "ev-4"]
    assert listed(judged, "--row", DE) == ["ev-4", "ev-2"]
    assert listed(judged, "--outcome", "pass") == ["ev-5", "ev-3", "ev-1"]
    # A judgment that could not be made neither passed nor failed: its status says so.
    assert listed(judged, "--outcome", "fail") == ["ev-2"]
    assert listed(judged, "--status", "failure") == ["ev-4"]
    assert listed(judged, "--search", "IS WRONG") == ["ev-2"]
    assert listed(judged, "--search", "boom") == ["ev-4"]
    assert listed(judged, "--judge", "exact", "--outcome", "pass", "--row", IT) == ["ev-3"]
    assert listed(judged, "--judge", "nobody") == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--outcome", "maybe"], "--outcome 'maybe': expected one of pass, fail"),
        (["--page", "0"], "--page '0': expected a whole number of 1 or more"),
        (["--page-size", "many"], "--page-size 'many': expected a whole number of 1 or more"),
        (["--page-size", "1001"], "--page-size '1001': at most 1000"),
        (
            ["--status", "done"],
            "--status 'done': expected one of pending, in_progress, success, failure",
        ),
    ],
)
def test_bad_judgments_options_are_one_line(judged: Path, args: list[str], said: str) -> None:
    code, out, err = run(judged, "judgments", "nightly", *args)
    assert (code, out) == (2, "")
    assert one_error(err) == said


def test_judgments_json_carries_the_evaluation_fields_with_the_result_nested(
    judged: Path,
) -> None:
    _, out, _ = run(judged, "judgments", "nightly", "--json", "--row", FR, "--judge", "exact")

    (record,) = json_lines(out)
    assert set(record) == EVALUATION_FIELDS
    assert (record["id"], record["row_id"], record["trace_id"]) == ("ev-1", FR, trace_ids(FR)[0])
    assert record["created_at"] == "2023-11-14T22:13:21.000Z"
    assert record["result"]["passed"] is True
    assert record["result"]["steps"] == [
        {"span_id": lookup_id(FR), "name": "lookup", "result": {"found": True}}
    ]


def test_judgment_shows_the_result_its_steps_and_its_reasoning(judged: Path) -> None:
    code, out, err = run(judged, "judgment", "ev-2")

    assert (code, err) == (0, ""), err
    with SQLiteStore(judged / "rows.db") as store:
        (row,) = store.latest_rows(store.get_experiment("nightly").id, [DE])
    assert textwrap.dedent(out) == textwrap.dedent(
        f"""\
        evaluation: ev-2
        experiment: nightly (project demo)
        row:        {DE}
        trace:      {trace_ids(DE)[0]}
        version:    {row.version_id}
        judge:      exact
        status:     success
        created:    2023-11-14T22:13:22Z
        finished:   2023-11-14T22:13:22Z
        score:      0
        passed:     no

        steps (1):
        SPAN              NAME    RESULT
        {lookup_id(DE)}  lookup  {{"found": false}}

        reasoning:
        {DE}: the capital is wrong
        """
    )
    code, out, _ = run(judged, "judgment", "ev-4", "--experiment", "nightly", "--json")
    record = json.loads(out)
    assert set(record) == EVALUATION_FIELDS
    assert (record["status"], record["error"], record["result"]) == (
        "failure",
        "RuntimeError: boom",
        None,
    )


def test_an_unknown_judgment_is_one_line(judged: Path) -> None:
    code, _, err = run(judged, "judgment", "ev-9")
    assert code == 1
    assert one_error(err).startswith("no evaluation 'ev-9' in sqlite:///")
    code, _, err = run(judged, "judgment", "ev-1", "--experiment", "weekly")
    assert code == 1
    assert one_error(err).startswith("no experiment 'weekly' in ")


# -- rows a real session recorded, in the embedded store and over HTTP -------------------------
