"""Aggregates over rows, and one set of rows compared with another (a baseline).

Pure: imports no pytest. Works on anything shaped like a ``RowVersion`` (``row_id``,
``status``, ``scores``, ``metrics``): the stores' latest rows, or this session's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

#: The score every passed (1) or failed (0) row carries: the pass rate is its mean.
PASS = "pass"
# Scores closer than this are equal: a float written and read back is not a change.
_SAME = 1e-9


class _Metrics(Protocol):
    @property
    def tokens(self) -> int | None: ...

    @property
    def cost(self) -> float | None: ...


class ScoredRow(Protocol):
    @property
    def row_id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def scores(self) -> dict[str, float]: ...

    @property
    def metrics(self) -> _Metrics: ...


def scores_of(row: ScoredRow) -> dict[str, float]:
    """A row's scores as aggregates count them: a row in error (a setup error, a teardown
    failure, a crashed worker) did not pass, so its ``pass`` is 0 when it has none."""
    return counted_scores(row.scores, row.status)


def counted_scores(scores: dict[str, float], status: str) -> dict[str, float]:
    """``scores_of`` for a row given as its scores and its status."""
    if status == "error" and PASS not in scores:
        return {**scores, PASS: 0.0}
    return scores


def means(rows: Iterable[ScoredRow]) -> dict[str, float]:
    """Every score's mean over the rows that have it, by name (``scores_of``)."""
    totals: dict[str, list[float]] = {}
    for row in rows:
        for name, value in scores_of(row).items():
            total = totals.setdefault(name, [0.0, 0])
            total[0] += value
            total[1] += 1
    return {name: total / count for name, (total, count) in sorted(totals.items())}


@dataclass
class Summary:
    """What a set of rows adds up to."""

    rows: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)  # name -> mean
    tokens: int | None = None  # None: no row says
    cost: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "statuses": self.statuses,
            "scores": self.scores,
            "tokens": self.tokens,
            "cost": self.cost,
        }


def summarize(rows: Iterable[ScoredRow]) -> Summary:
    listed = list(rows)
    tokens = [row.metrics.tokens for row in listed if row.metrics.tokens is not None]
    costs = [row.metrics.cost for row in listed if row.metrics.cost is not None]
    return Summary(
        rows=len(listed),
        statuses=dict(sorted(Counter(row.status for row in listed).items())),
        scores=means(listed),
        tokens=sum(tokens) if tokens else None,
        cost=sum(costs) if costs else None,
    )


@dataclass
class ScoreChange:
    """One score over the rows both sides have: its means and how many rows moved."""

    a_mean: float | None = None
    b_mean: float | None = None
    improved: int = 0
    regressed: int = 0
    unchanged: int = 0

    @property
    def delta(self) -> float | None:
        if self.a_mean is None or self.b_mean is None:
            return None
        return self.b_mean - self.a_mean

    def to_json(self) -> dict[str, Any]:
        return {
            "a_mean": self.a_mean,
            "b_mean": self.b_mean,
            "delta": self.delta,
            "improved": self.improved,
            "regressed": self.regressed,
            "unchanged": self.unchanged,
        }


@dataclass
class Comparison:
    """Rows B compared with rows A (the baseline), row by row (by row id) and score by score.

    Rows on one side only are counted, not compared. A row regressed when its pass score or
    any score both sides have went down (a row in error counts as pass 0: ``scores_of``); it
    improved when one went up and none went down.
    A score's means are over the compared rows that have it on that side; its improved,
    regressed and unchanged counts over those that have it on both.
    """

    a: str
    b: str
    compared: int = 0
    only_a: int = 0
    only_b: int = 0
    scores: dict[str, ScoreChange] = field(default_factory=dict)
    improved: list[str] = field(default_factory=list)
    regressed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "rows": {"compared": self.compared, "only_a": self.only_a, "only_b": self.only_b},
            "scores": {name: change.to_json() for name, change in self.scores.items()},
            "improved": self.improved,
            "regressed": self.regressed,
        }


def compare(
    a: Iterable[ScoredRow], b: Iterable[ScoredRow], *, a_name: str = "a", b_name: str = "b"
) -> Comparison:
    """Rows ``b`` against rows ``a`` (each the latest version of every row of its side)."""
    by_id_a = {row.row_id: row for row in a}
    by_id_b = {row.row_id: row for row in b}
    both = sorted(by_id_a.keys() & by_id_b.keys())
    result = Comparison(
        a=a_name,
        b=b_name,
        compared=len(both),
        only_a=len(by_id_a.keys() - by_id_b.keys()),
        only_b=len(by_id_b.keys() - by_id_a.keys()),
    )
    sums: dict[str, list[float]] = {}  # name -> [a total, a count, b total, b count]
    for row_id in both:
        old, new = scores_of(by_id_a[row_id]), scores_of(by_id_b[row_id])
        went_up = went_down = False
        for name in old.keys() | new.keys():
            total = sums.setdefault(name, [0.0, 0, 0.0, 0])
            if name in old:
                total[0] += old[name]
                total[1] += 1
            if name in new:
                total[2] += new[name]
                total[3] += 1
            if name not in old or name not in new:
                continue
            change = result.scores.setdefault(name, ScoreChange())
            if new[name] > old[name] + _SAME:
                change.improved += 1
                went_up = True
            elif new[name] < old[name] - _SAME:
                change.regressed += 1
                went_down = True
            else:
                change.unchanged += 1
        if went_down:
            result.regressed.append(row_id)
        elif went_up:
            result.improved.append(row_id)
    for name in sorted(sums):
        a_total, a_count, b_total, b_count = sums[name]
        change = result.scores.setdefault(name, ScoreChange())
        change.a_mean = a_total / a_count if a_count else None
        change.b_mean = b_total / b_count if b_count else None
    result.scores = dict(sorted(result.scores.items()))
    return result


def score_names(rows: Iterable[ScoredRow]) -> list[str]:
    """Every score some row has, sorted."""
    return sorted({name for row in rows for name in scores_of(row)})


def gate_means(
    rows: Mapping[str, ScoredRow], row_ids: Iterable[str]
) -> tuple[dict[str, float], int]:
    """The score means over the given rows' latest versions (those the store has), and how
    many of the rows it has: what ``--eval-fail-under`` checks."""
    found = [rows[row_id] for row_id in row_ids if row_id in rows]
    return means(found), len(found)
