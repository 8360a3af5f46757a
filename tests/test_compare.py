"""Aggregates over rows and a comparison with a baseline, on hand-made rows."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pytest_evalrows.core.compare import compare, gate_means, means, score_names, summarize


def row(row_id: str, status: str = "passed", tokens: int | None = None, **scores: float) -> Any:
    metrics = SimpleNamespace(tokens=tokens, cost=None if tokens is None else tokens * 0.5)
    return SimpleNamespace(row_id=row_id, status=status, scores=scores, metrics=metrics)


BASELINE = [
    row("r1", exact=1.0, tone=0.5),
    row("r2", exact=0.0, tone=0.5),
    row("r3", exact=1.0),
    row("gone", exact=1.0),
]
NOW = [
    row("r1", exact=1.0, tone=0.75),  # improved: tone up, nothing down
    row("r2", exact=0.0, tone=0.25),  # regressed: tone down
    row("r3", exact=0.0, tone=1.0),  # regressed: exact down (tone is on one side only)
    row("new", exact=1.0),
]


def test_a_comparison_counts_rows_and_moves_score_by_score() -> None:
    found = compare(BASELINE, NOW, a_name="base", b_name="now")

    assert (found.compared, found.only_a, found.only_b) == (3, 1, 1)
    assert found.improved == ["r1"]
    assert found.regressed == ["r2", "r3"]
    exact, tone = found.scores["exact"], found.scores["tone"]
    assert (exact.a_mean, exact.b_mean) == (pytest.approx(2 / 3), pytest.approx(1 / 3))
    assert exact.delta == pytest.approx(-1 / 3)
    assert (exact.improved, exact.regressed, exact.unchanged) == (0, 1, 2)
    # tone: base has it on r1, r2; now on r1, r2, r3. Moves only where both have it.
    assert (tone.a_mean, tone.b_mean) == (0.5, pytest.approx(2 / 3))
    assert (tone.improved, tone.regressed, tone.unchanged) == (1, 1, 0)
    assert found.to_json()["rows"] == {"compared": 3, "only_a": 1, "only_b": 1}
    assert found.to_json()["scores"]["tone"]["delta"] == pytest.approx(1 / 6)


def test_a_score_written_and_read_back_is_no_change() -> None:
    found = compare([row("r", exact=0.1 + 0.2)], [row("r", exact=0.3)])
    assert (found.improved, found.regressed) == ([], [])
    assert found.scores["exact"].unchanged == 1


def test_summaries_means_and_gates() -> None:
    rows = [row("a", tokens=10, pass_=1.0), row("b", "failed", tokens=5, exact=0.5)]
    summary = summarize(rows)
    assert summary.rows == 2 and summary.statuses == {"failed": 1, "passed": 1}
    assert (summary.tokens, summary.cost) == (15, 7.5)
    assert summarize([]).to_json() == {
        "rows": 0,
        "statuses": {},
        "scores": {},
        "tokens": None,
        "cost": None,
    }
    assert means(NOW)["exact"] == 0.5
    assert score_names(BASELINE) == ["exact", "tone"]
    by_id = {each.row_id: each for each in NOW}
    assert gate_means(by_id, ["r1", "r2", "missing"]) == ({"exact": 0.5, "tone": 0.5}, 2)


def test_a_row_in_error_did_not_pass() -> None:
    """A setup error or a crashed worker gives a row no pass score of its own; it counts as
    0, so passed -> error is a regression and the pass rate falls."""
    passed = {"pass": 1.0}
    before = [row("a", **passed), row("b", **passed)]
    after = [row("a", **passed), row("b", "error")]
    found = compare(before, after)
    assert found.regressed == ["b"]
    assert found.scores["pass"].b_mean == 0.5
    assert means(after)["pass"] == 0.5
    assert "pass" in score_names(after)
    assert summarize(after).scores["pass"] == 0.5
