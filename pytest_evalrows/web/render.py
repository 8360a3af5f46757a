"""The pages as HTML: the page shapes of ``pages`` through the Jinja2 templates of
``web/templates``, for ``evalrows serve`` and, by their ``<main>`` markup alone, for the one-file
report.

Where a page links to is the caller's: ``Links`` says it (served paths, or the report's ``#/``
routes), so templates never spell a path. One template environment, made on first use (jinja2
is an optional dependency). Templates format nothing themselves but through the filters here.

The report builds its own page around the same pieces, from ``environment()``:
``experiment_head`` (the card, histograms and attempts), then the partials
``_filters.html`` (needs ``page``, ``action``), ``_rows_table.html`` (``page``, and
``sort_links``: sort key -> href, or None for ``<button>`` headers the script handles) and
``_pager.html`` (``page``, ``prev_link``, ``next_link``: href or None).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from http import HTTPStatus
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

from markupsafe import Markup, escape

from ..core.records import STATUSES
from ..core.timestamps import to_iso
from .pages import (
    CHANGE_ORDER,
    CompareLine,
    ComparePage,
    ExperimentCard,
    ExperimentPage,
    ExperimentRef,
    Histogram,
    RowPage,
    RowQuery,
)
from .views import BadQuery, query_params

if TYPE_CHECKING:
    import jinja2

#: The rows table's columns besides the scores: (sort key, header).
ROW_COLUMNS = (
    ("row_id", "Row"),
    ("status", "Status"),
    ("version", "Version"),
    ("attempt", "Attempt"),
    ("duration", "Duration"),
    ("tokens", "Tokens"),
)
#: The width of a trace bar's SVG, in its own units (the bar's x and width are in them).
BAR_WIDTH = 1000
# A zero-length span still shows as a sliver.
_MIN_BAR = 2
# A histogram's SVG, in its own units: bins side by side, labels below.
HIST_WIDTH = 200
HIST_HEIGHT = 60


class Links(Protocol):
    """Where a page's links go: the served paths, or the report's ``#/`` routes."""

    def experiments(self) -> str: ...

    def experiment(self, ref: ExperimentRef, params: Sequence[tuple[str, str]] = ()) -> str: ...

    def row(self, ref: ExperimentRef, row_id: str) -> str: ...

    def compare(self, a: ExperimentRef, b: ExperimentRef) -> str: ...

    def static(self, name: str) -> str: ...


def _segment(text: str) -> str:
    # safe="": a "/" in a row id must not split the path.
    return quote(text, safe="")


#: Row ids a browser would drop from a path as dot segments, even percent-encoded (``%2E``):
#: their link names them in the query after an empty segment, ``rows/?row=..``, which no
#: other row's link has (``row_id_of`` reads it back).
DOT_SEGMENTS = (".", "..")
DOT_ROW_PARAM = "row"


def row_id_of(path_row_id: str, dot_row: str | None) -> str:
    """The row id a row page's path (its last part, decoded) and its ``row`` query parameter
    name: the parameter only for an empty path and a dot segment."""
    if path_row_id == "" and dot_row in DOT_SEGMENTS:
        return dot_row
    return path_row_id


#: Where the login form posts, and the logout button: ``evalrows serve`` alone has them.
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
#: Where the experiments page's compare form goes (a GET of ``a`` and ``b``): the report has
#: no experiments page, so no ``Links`` needs it.
COMPARE_PATH = "/compare"


class ServeLinks:
    """The paths ``evalrows serve`` serves the pages at."""

    def experiments(self) -> str:
        return "/"

    def experiment(self, ref: ExperimentRef, params: Sequence[tuple[str, str]] = ()) -> str:
        path = f"/experiments/{_segment(ref.id)}"
        return f"{path}?{urlencode(list(params))}" if params else path

    def row(self, ref: ExperimentRef, row_id: str) -> str:
        rows = f"/experiments/{_segment(ref.id)}/rows/"
        if row_id in DOT_SEGMENTS:
            return f"{rows}?{urlencode([(DOT_ROW_PARAM, row_id)])}"
        return rows + _segment(row_id)

    def compare(self, a: ExperimentRef, b: ExperimentRef) -> str:
        return f"{COMPARE_PATH}?" + urlencode([("a", a.id), ("b", b.id)])

    def static(self, name: str) -> str:
        return f"/static/{_segment(name)}"


# --- filters: every number, time and duration a page shows goes through one of these ---------


def number(value: float | None) -> str:
    """``10,000``; a float keeps two decimals; None is a dash."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}"


def utc_time(timestamp: float | None) -> str:
    """``2026-12-02 08:10:03Z``: UTC, to the second."""
    if timestamp is None:
        return "—"
    try:
        return to_iso(timestamp, "seconds").replace("T", " ")
    except ValueError:
        return "—"


def duration(seconds: float | None) -> str:
    """``45 ms``, ``1.23 s``, ``2 min 3 s``, ``1 h 2 min``."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(seconds, 0.0)
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def score(value: float | None) -> str:
    """Three decimals: ``0.875``; None is empty."""
    return "" if value is None else f"{value:.3f}"


def signed(value: float | None) -> str:
    """A delta with its sign: ``+0.125``, ``-0.050``, ``0.000``."""
    if value is None:
        return ""
    if round(value, 3) == 0:
        return "0.000"
    return f"+{value:.3f}" if value > 0 else f"{value:.3f}"


def trend(value: float | None) -> str:
    """A delta's class: ``up``, ``down``, or empty when it shows as zero (``signed``)."""
    if value is None or round(value, 3) == 0:
        return ""
    return "up" if value > 0 else "down"


def money(value: float | None) -> str:
    """``$1,234.5678``: the four decimals the terminal report prints."""
    return "—" if value is None else f"${value:,.4f}"


def by_status(counts: dict[str, int]) -> list[tuple[str, int]]:
    """A status -> count dict in the order statuses are listed everywhere (unknown ones last)."""
    order: dict[str, int] = {status: index for index, status in enumerate(STATUSES)}
    return sorted(counts.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))


#: Where a long row id may wrap: after a "::" or a "/" of its path, or before the "[" of its
#: parameters; never inside a name.
_ID_BREAK = re.compile(r"(?<=::)|(?<=/)|(?=\[)")


def breakable(text: str) -> Markup:
    """An id, escaped, in parts that may wrap between them (``<wbr>``, ``_ID_BREAK``), each
    a ``<span class="id-part">`` that tables keep on one line (a "-" would break it); its
    text unchanged."""
    parts = [part for part in _ID_BREAK.split(text) if part]
    if len(parts) < 2:
        return escape(text)
    spans = (Markup('<span class="id-part">{}</span>').format(part) for part in parts)
    return Markup("<wbr>").join(spans)


def percent(value: float | None) -> str:
    """A rate in [0, 1] as ``87.5%``."""
    return "—" if value is None else f"{value * 100:.1f}%"


# --- geometry: SVG attributes computed here, as no style="" may carry them -------------------


@dataclass(frozen=True)
class Bar:
    x: float
    width: float


def span_bar(offset: float, length: float, total: float) -> Bar:
    """A span's bar in a trace of ``total`` seconds, in units of ``BAR_WIDTH``."""
    if total <= 0 or not math.isfinite(total):
        return Bar(0.0, float(BAR_WIDTH))
    x = min(max(offset / total, 0.0), 1.0) * BAR_WIDTH
    width = min(max(length / total, 0.0), 1.0) * BAR_WIDTH
    width = max(width, _MIN_BAR)
    x = min(x, BAR_WIDTH - width)
    return Bar(round(x, 2), round(width, 2))


@dataclass(frozen=True)
class HistogramBar:
    x: float
    y: float
    width: float
    height: float
    low: float
    high: float
    count: int


def histogram_bars(histogram: Histogram) -> list[HistogramBar]:
    """One bar per bin, its height the bin's share of the fullest bin."""
    bins = histogram.bins
    if not bins:
        return []
    fullest = max(b.count for b in bins) or 1
    step = HIST_WIDTH / len(bins)
    plot = HIST_HEIGHT - 14  # room for the axis labels
    bars = []
    for index, b in enumerate(bins):
        height = plot * b.count / fullest
        if b.count and height < 1:
            height = 1.0
        bars.append(
            HistogramBar(
                x=round(index * step + 1, 2),
                y=round(plot - height, 2),
                width=round(step - 2, 2),
                height=round(height, 2),
                low=b.low,
                high=b.high,
                count=b.count,
            )
        )
    return bars


def sort_label(key: str) -> str:
    """A sort key as the rows table's header names it."""
    return dict(ROW_COLUMNS).get(key, key.removeprefix("score:"))


def sort_state(query: RowQuery, key: str) -> str:
    """A header's ``aria-sort``: how the table is sorted by that column, if it is."""
    if query.sort != key:
        return "none"
    return "descending" if query.descending else "ascending"


# --- the served compare page, a page of rows at a time ------------------------------------------

#: Rows the served compare page shows at once: all 10,000 of two big experiments in one table
#: take the browser seconds to lay out. (The report pages its compare table in its script.)
COMPARE_PAGE_SIZE = 500
# A page number as the rows page takes it: ASCII digits (int() also reads "1_0" and other
# scripts' digits), at most 9 of them.
_PAGE_NUMBER = re.compile(r"[0-9]{1,9}", re.ASCII)


def page_number(value: str | None) -> int:
    """A ``page`` query parameter's page (1 when absent or empty); BadQuery naming it if it is
    not one."""
    if value is None or not value.strip():
        return 1
    value = value.strip()
    number = int(value) if _PAGE_NUMBER.fullmatch(value) else 0
    if number < 1:
        raise BadQuery(f"page {value!r} is not a page number: 1, 2, 3 ...")
    return number


def _with_page(link: str, number: int) -> str:
    return f"{link}{'&' if '?' in link else '?'}{urlencode([('page', str(number))])}"


@dataclass(frozen=True)
class ComparePager:
    """Which rows of the compare table a served page shows, and links to its neighbours."""

    first: int  # 1-based position of the first row shown; 0 with no rows
    last: int
    total: int
    prev_link: str | None
    next_link: str | None


def compare_slice(
    page: ComparePage, number: int, links: Links, size: int = COMPARE_PAGE_SIZE
) -> tuple[list[CompareLine], ComparePager]:
    """Page ``number`` of the compare rows, in their order (a page beyond the last shows the
    last, as the rows page does), and its pager."""
    total = len(page.rows)
    pages = max(1, -(-total // size))
    number = min(number, pages)
    start = (number - 1) * size
    rows = page.rows[start : start + size]
    here = links.compare(page.a, page.b)
    pager = ComparePager(
        first=start + 1 if rows else 0,
        last=start + len(rows),
        total=total,
        prev_link=_with_page(here, number - 1) if number > 1 else None,
        next_link=_with_page(here, number + 1) if number < pages else None,
    )
    return rows, pager


# --- the environment and the renderer --------------------------------------------------------


@cache
def environment() -> jinja2.Environment:
    """The one Jinja2 environment of the web view (the report's templates load from it too)."""
    import jinja2

    env = jinja2.Environment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        loader=jinja2.PackageLoader("pytest_evalrows.web", "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        number=number,
        utc_time=utc_time,
        duration=duration,
        score=score,
        signed=signed,
        trend=trend,
        money=money,
        percent=percent,
        by_status=by_status,
        breakable=breakable,
    )
    env.globals.update(
        STATUSES=STATUSES,
        CHANGE_ORDER=CHANGE_ORDER,
        ROW_COLUMNS=ROW_COLUMNS,
        BAR_WIDTH=BAR_WIDTH,
        HIST_WIDTH=HIST_WIDTH,
        HIST_HEIGHT=HIST_HEIGHT,
        span_bar=span_bar,
        histogram_bars=histogram_bars,
        sort_state=sort_state,
        sort_label=sort_label,
    )
    return env


def stylesheet() -> str:
    """The pages' stylesheet, for the report to inline."""
    return static_text("evalrows.css")


def static_text(name: str) -> str:
    """A file of ``web/static`` as text."""
    static = resources.files("pytest_evalrows.web").joinpath("static")
    return static.joinpath(name).read_text("utf-8")


class Renderer:
    """Every page as HTML, its links made by ``links``; with ``logout``, every full page has
    the logout button (``evalrows serve``'s pages for a browser logged in with its cookie)."""

    def __init__(self, links: Links, *, logout: bool = False) -> None:
        self.links = links
        self.logout = logout

    def _render(self, template: str, **context: Any) -> str:
        context.setdefault("logout", LOGOUT_PATH if self.logout else None)
        text: str = environment().get_template(template).render(links=self.links, **context)
        return text

    def experiments(self, cards: Sequence[ExperimentCard], *, logout: bool | None = None) -> str:
        """The experiments page; ``logout`` None: as the renderer says."""
        shown = self.logout if logout is None else logout
        return self._render(
            "experiments.html",
            cards=cards,
            logout=LOGOUT_PATH if shown else None,
            compare_action=COMPARE_PATH,
        )

    def experiment(self, page: ExperimentPage) -> str:
        return self._render("experiment.html", page=page, **self._rows_context(page))

    def row(self, page: RowPage) -> str:
        return self._render("row.html", page=page)

    def compare(self, page: ComparePage, *, page_number: int = 1) -> str:
        """The served compare page: page ``page_number`` of its rows (``COMPARE_PAGE_SIZE``)."""
        rows, pager = compare_slice(page, page_number, self.links)
        return self._render("compare.html", page=page, compare_rows=rows, compare_pager=pager)

    def login(self, *, next: str, error: str | None) -> str:
        return self._render("login.html", next=next, error=error, action=LOGIN_PATH)

    def error(self, status: int, message: str) -> str:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        return self._render("error.html", status=status, reason=reason, message=message)

    # The <main> content alone, for the report to embed: the same markup the pages hold.
    def row_main(self, page: RowPage) -> str:
        return self._render("row_main.html", page=page)

    def compare_main(self, page: ComparePage) -> str:
        return self._render("compare_main.html", page=page)

    def experiment_head(self, page: ExperimentPage) -> str:
        return self._render("experiment_head.html", page=page)

    def _rows_context(self, page: ExperimentPage) -> dict[str, Any]:
        """The links of the rows table's headers and of the pager (the query string's)."""
        ref, query = page.card.ref, page.query
        keys = [key for key, _ in ROW_COLUMNS] + [f"score:{n}" for n in page.score_names]
        sort_links = {
            key: self.links.experiment(
                ref,
                query_params(
                    query, sort=key, descending=query.sort == key and not query.descending, page=1
                ),
            )
            for key in keys
        }
        prev_link = next_link = None
        if query.page > 1:
            prev_link = self.links.experiment(ref, query_params(query, page=query.page - 1))
        if query.page < page.pages:
            next_link = self.links.experiment(ref, query_params(query, page=query.page + 1))
        return {"sort_links": sort_links, "prev_link": prev_link, "next_link": next_link}
