"""The rows table of an experiment's page: its query string read and written back, rows
filtered, sorted and paged, and a histogram per score.

Pure: works on ``RowLine``s, whoever built them. The one-file report's script mirrors these
rules (the same filters, the same order), so they are kept simple to state:

- scores are as aggregates count them (``RowLine.scores``: a row in error without a pass
  score has pass 0);
- a score filter compares that score, bounds included; a row without it never matches a
  range;
- rows lacking the sort value (a score, tokens, version, time) come last in both orders;
  equal values keep row id order (ascending, in both orders);
- status sorts by name; attempt by attempt id.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..core.records import STATUSES
from .pages import PAGE_SIZE, SORT_KEYS, Bin, Histogram, RowLine, RowQuery
from .view_errors import BadQuery

SCORE_SORT = "score:"
ORDERS = ("asc", "desc")
HISTOGRAM_BINS = 10
# A score read back may differ from the bound typed in its last bits: still within it.
_SAME = 1e-9
# What min, max and page may be, checked before float() and int(), which also take "1_0",
# full-width and other scripts' digits. A page past 9 digits is no page.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
_PAGE = re.compile(r"[0-9]{1,9}", re.ASCII)


# -- the query string -----------------------------------------------------------------------


def parse_query(params: Mapping[str, Sequence[str]]) -> RowQuery:
    """The rows table's query from query parameters (``status`` repeatable; ``q``,
    ``score``, ``min``, ``max``, ``sort``, ``order``, ``page``). Empty values are absent
    ones; parameters of other names are left alone. A wrong value raises ``BadQuery``."""
    statuses = _statuses(_values(params, "status"))
    text = (_last(params, "q") or "").strip()
    score = _last(params, "score")
    low = _number(params, "min")
    high = _number(params, "max")
    if (low is not None or high is not None) and score is None:
        raise BadQuery("min and max need a score: choose one with score=NAME")
    if low is not None and high is not None and low > high:
        raise BadQuery(f"min ({low:g}) is greater than max ({high:g})")
    sort = _last(params, "sort") or "row_id"
    if sort not in SORT_KEYS and not (sort.startswith(SCORE_SORT) and sort[len(SCORE_SORT) :]):
        raise BadQuery(
            f"sort {sort!r} is not one of: {', '.join(SORT_KEYS)}, or score:NAME for a score"
        )
    order = _last(params, "order") or "asc"
    if order not in ORDERS:
        raise BadQuery(f"order {order!r} is not one of: asc, desc")
    return RowQuery(
        statuses=statuses,
        text=text,
        score=score,
        low=low,
        high=high,
        sort=sort,
        descending=order == "desc",
        page=_page(_last(params, "page")),
    )


def query_params(query: RowQuery, **changes: Any) -> list[tuple[str, str]]:
    """The query string of ``query`` with fields (``RowQuery``'s names) replaced, defaults
    left out: what links to another sort or page of the same rows use."""
    if changes:
        query = dataclasses.replace(query, **changes)
    found = [("status", status) for status in query.statuses]
    if query.text:
        found.append(("q", query.text))
    if query.score is not None:
        found.append(("score", query.score))
    if query.low is not None:
        found.append(("min", repr(query.low)))
    if query.high is not None:
        found.append(("max", repr(query.high)))
    if query.sort != "row_id":
        found.append(("sort", query.sort))
    if query.descending:
        found.append(("order", "desc"))
    if query.page != 1:
        found.append(("page", str(query.page)))
    return found


def _values(params: Mapping[str, Sequence[str]], name: str) -> list[str]:
    values = params.get(name, ())
    if isinstance(values, str):  # one value given as itself
        values = (values,)
    return [value for value in values if value.strip()]


def _last(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = _values(params, name)
    return values[-1].strip() if values else None


def _statuses(values: list[str]) -> tuple[str, ...]:
    for value in values:
        if value not in STATUSES:
            raise BadQuery(f"status {value!r} is not one of: {', '.join(STATUSES)}")
    return tuple(status for status in STATUSES if status in values)


def _number(params: Mapping[str, Sequence[str]], name: str) -> float | None:
    value = _last(params, name)
    if value is None:
        return None
    number = float(value) if _NUMBER.fullmatch(value) else math.nan
    if not math.isfinite(number):
        raise BadQuery(f"{name} {value!r} is not a number (a score is from 0 to 1)")
    return number


def _page(value: str | None) -> int:
    if value is None:
        return 1
    page = int(value) if _PAGE.fullmatch(value) else 0
    if page < 1:
        raise BadQuery(f"page {value!r} is not a page number: 1, 2, 3 ...")
    return page


# -- rows: filtered, sorted, paged ----------------------------------------------------------


def pages_of(matched: int, page_size: int = PAGE_SIZE) -> int:
    """How many pages ``matched`` rows fill (at least one, empty)."""
    return max(1, -(-matched // page_size))


def page_within(query: RowQuery, matched: int) -> int:
    """The query's page, or the last page when it asks for one beyond it."""
    return min(query.page, pages_of(matched, query.page_size))


def select_rows(lines: Sequence[RowLine], query: RowQuery) -> tuple[list[RowLine], int]:
    """The page of rows the query shows (in its order) and how many rows match its filters.
    A page beyond the last shows the last."""
    matched = sort_rows(filter_rows(lines, query), query)
    start = (page_within(query, len(matched)) - 1) * query.page_size
    return matched[start : start + query.page_size], len(matched)


def filter_rows(lines: Sequence[RowLine], query: RowQuery) -> list[RowLine]:
    statuses = set(query.statuses)
    text = query.text.casefold()
    ranged = query.score is not None and (query.low is not None or query.high is not None)
    low = -math.inf if query.low is None else query.low - _SAME
    high = math.inf if query.high is None else query.high + _SAME
    found = []
    for line in lines:
        if statuses and line.status not in statuses:
            continue
        if text and text not in line.search_text:
            continue
        if ranged:
            value = line.scores.get(query.score or "")
            if value is None or not low <= value <= high:
                continue
        found.append(line)
    return found


def sort_rows(lines: Sequence[RowLine], query: RowQuery) -> list[RowLine]:
    """Rows in the query's order: see the module's docstring."""
    value = _sort_value(query.sort)
    by_id = sorted(lines, key=lambda line: line.row_id)
    if query.sort == "row_id":
        return by_id[::-1] if query.descending else by_id
    having = [line for line in by_id if value(line) is not None]
    lacking = [line for line in by_id if value(line) is None]
    # A stable sort, reversed or not, keeps equal values in row id order.
    having.sort(key=value, reverse=query.descending)
    return having + lacking


def _sort_value(sort: str) -> Callable[[RowLine], Any]:
    if sort.startswith(SCORE_SORT):
        name = sort[len(SCORE_SORT) :]
        return lambda line: line.scores.get(name)
    if sort not in SORT_KEYS:
        raise BadQuery(f"sort {sort!r} is not one of: {', '.join(SORT_KEYS)}, or score:NAME")
    if sort == "attempt":
        return lambda line: line.attempt_id
    return lambda line: getattr(line, sort)


# -- histograms -----------------------------------------------------------------------------


def histograms(lines: Sequence[RowLine]) -> list[Histogram]:
    """One histogram per score (by name) over the rows that have it, as counted."""
    values: dict[str, list[float]] = {}
    for line in lines:
        for name, value in line.scores.items():
            values.setdefault(name, []).append(value)
    return [histogram(name, values[name]) for name in sorted(values)]


def histogram(score: str, values: Sequence[float]) -> Histogram:
    """``HISTOGRAM_BINS`` equal bins over [0, 1] when every value is in it (scores are),
    else over min..max; one bin when that range is a single value."""
    low, high = min(values), max(values)
    if low >= 0.0 and high <= 1.0:
        low, high, count = 0.0, 1.0, HISTOGRAM_BINS
    elif low == high:
        count = 1
    else:
        count = HISTOGRAM_BINS
    width = (high - low) / count
    counts = [0] * count
    for value in values:
        # The top bin holds its upper bound; a value on an edge goes to the bin above it.
        index = int((value - low) / width + _SAME) if width else 0
        counts[min(max(index, 0), count - 1)] += 1
    edges = [low + (high - low) * i / count for i in range(count)] + [high]
    bins = [Bin(edges[i], edges[i + 1], counts[i]) for i in range(count)]
    return Histogram(score=score, bins=bins, rows=len(values), mean=sum(values) / len(values))
