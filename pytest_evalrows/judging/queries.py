"""Choosing, ordering and paging evaluations, and what the clients answer with. Pure: works on
the evaluations it is given, whatever store they came from.

An evaluation's outcome is "pass" when it succeeded and its judgment passed (``passed``, or
when the judge said only a score, a score of at least 0.5), "fail" when it succeeded and its
judgment did not. A failed evaluation (the judge raised or timed out) has neither outcome.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel

from ..core.judgments import EVALUATION_STATUSES, Evaluation

__all__ = [
    "OUTCOMES",
    "SORT_KEYS",
    "CostSummary",
    "EvaluationPage",
    "outcome_of",
    "parse_time_range",
    "select",
]

OUTCOMES = ("pass", "fail")
SORT_KEYS = ("created_at", "started_at", "finished_at", "judge_id", "row_id", "status", "score")
SORT_ORDERS = ("asc", "desc")
MAX_PAGE_SIZE = 1000
PASSING_SCORE = 0.5

_TIME_RANGE = re.compile(r"^\s*(\d+)\s*([dhms])\s*$")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}


class EvaluationPage(BaseModel):
    """One page of evaluations: ``count`` on this page, ``total`` matching in all."""

    evaluations: list[Evaluation]
    count: int
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


class CostSummary(BaseModel):
    """What one judge is expected to cost over some traces, before it runs."""

    estimated_cost: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    trace_count: int = 0


def outcome_of(evaluation: Evaluation) -> Literal["pass", "fail"] | None:
    result = evaluation.result
    if evaluation.status != "success" or result is None:
        return None
    if result.passed is not None:
        return "pass" if result.passed else "fail"
    if result.score is not None:
        return "pass" if result.score >= PASSING_SCORE else "fail"
    return None


def parse_time_range(text: str) -> float:
    """Seconds in a time range such as "7d", "24h", "30m" or "90s"."""
    found = _TIME_RANGE.match(text) if isinstance(text, str) else None
    if found is None or int(found[1]) == 0:
        raise ValueError(
            f"time_range must be a positive number of days, hours, minutes or seconds "
            f'such as "7d", "24h", "30m" or "90s", not {text!r}'
        )
    return int(found[1]) * _UNIT_SECONDS[found[2]]


def _check_choice(what: str, value: object, choices: Iterable[str]) -> None:
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{what} must be one of {', '.join(options)}; not {value!r}")


def _check_whole(what: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{what} must be a whole number >= {low}, not {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{what} must be at most {high}, not {value!r}")
    return value


def select(
    evaluations: Iterable[Evaluation],
    *,
    page: int = 1,
    page_size: int = 20,
    judge_id: str | None = None,
    trace_id: str | None = None,
    row_id: str | None = None,
    status: str | None = None,
    outcome: str | None = None,
    time_range: str | None = None,
    search: str | None = None,
    sort_by: str = "created_at",
    sort_order: str = "desc",
    now: float | None = None,
) -> EvaluationPage:
    """The page of ``evaluations`` that match every filter given, in the order asked.
    ``search`` looks (case-blind) in the reasoning, the error, the judge id and the row id;
    ``time_range`` keeps those created within it. Bad arguments are a ``ValueError``."""
    page = _check_whole("page", page, 1)
    page_size = _check_whole("page_size", page_size, 1, MAX_PAGE_SIZE)
    if outcome is not None:
        _check_choice("outcome", outcome, OUTCOMES)
    if status is not None:
        _check_choice("status", status, EVALUATION_STATUSES)
    _check_choice("sort_by", sort_by, SORT_KEYS)
    _check_choice("sort_order", sort_order, SORT_ORDERS)
    for what, text in (("judge_id", judge_id), ("trace_id", trace_id), ("row_id", row_id)):
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{what} must be a string, not {text!r}")
    if search is not None and not isinstance(search, str):
        raise ValueError(f"search must be a string, not {search!r}")
    since = None
    if time_range is not None:
        since = (time.time() if now is None else now) - parse_time_range(time_range)
    needle = search.casefold() if search else None

    def matches(each: Evaluation) -> bool:
        if judge_id is not None and each.judge_id != judge_id:
            return False
        if trace_id is not None and each.trace_id != trace_id:
            return False
        if row_id is not None and each.row_id != row_id:
            return False
        if status is not None and each.status != status:
            return False
        if outcome is not None and outcome_of(each) != outcome:
            return False
        if since is not None and each.created_at < since:
            return False
        return needle is None or needle in _searchable(each)

    chosen = [each for each in evaluations if matches(each)]
    present = [each for each in chosen if _sort_value(each, sort_by) is not None]
    missing = [each for each in chosen if _sort_value(each, sort_by) is None]
    present.sort(key=lambda each: (_sort_value(each, sort_by), each.id))
    if sort_order == "desc":
        present.reverse()
    ordered = present + missing  # those without the value last, either way
    first = (page - 1) * page_size
    shown = ordered[first : first + page_size]
    return EvaluationPage(
        evaluations=shown, count=len(shown), total=len(ordered), page=page, page_size=page_size
    )


def _searchable(evaluation: Evaluation) -> str:
    reasoning = evaluation.result.reasoning if evaluation.result is not None else ""
    parts = (reasoning, evaluation.error or "", evaluation.judge_id, evaluation.row_id)
    return "\n".join(parts).casefold()


def _sort_value(evaluation: Evaluation, key: str) -> float | str | None:
    if key == "score":
        return evaluation.row_score
    value: float | str | None = getattr(evaluation, key)
    return value
