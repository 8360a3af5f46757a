"""The web view's pages as data (``pytest_evalrows.web.views``), built from real stores filled
with row versions, spans, attempts and evaluations."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_evalrows import MemoryStore, SQLiteStore
from pytest_evalrows.core.judgments import Evaluation, Judgment, Step
from pytest_evalrows.core.records import STATUSES
from pytest_evalrows.models import Attempt, ErrorInfo, Metrics, RowVersion, SpanRecord
from pytest_evalrows.web import views
from pytest_evalrows.web.pages import (
    CHANGE_ORDER,
    PAGE_SIZE,
    SORT_KEYS,
    ExperimentRef,
    RowLine,
    RowQuery,
    SpanNode,
)
from pytest_evalrows.web.views import BadQuery, PageNotFound

TRACE = "ab" * 16


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "rows.db") as made:
        yield made


def version(
    row_id: str,
    *,
    status: str = "passed",
    scores: dict[str, float] | None = None,
    attempt: str = "attempt-1",
    start: float = 100.0,
    duration: float = 1.0,
    tokens: int | None = None,
    cost: float | None = None,
    trace: str | None = None,
    **fields: Any,
) -> RowVersion:
    """A row version as a session writes it; ``start`` orders versions of one row."""
    return RowVersion(
        row_id=row_id,
        version_id=str(uuid.uuid4()),
        nodeid=f"tests/test_it.py::{row_id}",
        attempt_id=attempt,
        execution=1,
        status=status,
        scores=scores if scores is not None else {},
        metrics=Metrics(
            start=start, end=start + duration, duration=duration, tokens=tokens, cost=cost
        ),
        root_span_id=trace or uuid.uuid4().hex,
        span_id=uuid.uuid4().hex[:16],
        **fields,
    )


def line(row_id: str, **fields: Any) -> RowLine:
    """A rows-table line made by hand, for the pure functions."""
    values: dict[str, Any] = {
        "row_id": row_id,
        "nodeid": row_id,
        "status": "passed",
        "scores": {},
        "version": 1,
        "attempt_id": "attempt-1",
        "attempt_short": "attempt-",
        "duration": 1.0,
        "tokens": None,
        "created": 1.0,
        "error": None,
        "input": "",
        "output": "",
        "expected": "",
    }
    values.update(fields)
    values.setdefault(
        "search_text", "\n".join([values["input"], values["output"], values["expected"]]).casefold()
    )
    return RowLine(**values)


def ids(lines: list[RowLine]) -> list[str]:
    return [each.row_id for each in lines]


def experiment(store: SQLiteStore, name: str, *rows: RowVersion, project: str = "proj") -> str:
    found = store.get_or_create_experiment(project, name)
    if rows:
        store.write(found.id, list(rows), [])
    return found.id


def session(
    store: SQLiteStore, experiment_id: str, attempt_id: str, started: float, **kw: Any
) -> None:
    store.save_attempt(Attempt(id=attempt_id, experiment_id=experiment_id, started=started, **kw))


# -- the query string -------------------------------------------------------------------------


def test_an_empty_query_string_is_the_default_query() -> None:
    assert views.parse_query({}) == RowQuery()
    blank = {"status": [""], "q": [" "], "score": [""], "min": [""], "sort": [""], "page": [""]}
    assert views.parse_query(blank) == RowQuery()
    assert views.query_params(RowQuery()) == []


def test_a_query_string_reads_every_parameter_and_writes_back_the_same() -> None:
    params = {
        "status": ["failed", "passed", "failed"],
        "q": ["  Paris "],
        "score": ["exact"],
        "min": ["0.25"],
        "max": ["1"],
        "sort": ["score:exact"],
        "order": ["desc"],
        "page": ["3"],
        "unrelated": ["left alone"],
    }
    query = views.parse_query(params)
    assert query == RowQuery(
        statuses=("passed", "failed"),  # in the statuses' own order, once each
        text="Paris",
        score="exact",
        low=0.25,
        high=1.0,
        sort="score:exact",
        descending=True,
        page=3,
    )
    written = views.query_params(query)
    assert written == [
        ("status", "passed"),
        ("status", "failed"),
        ("q", "Paris"),
        ("score", "exact"),
        ("min", "0.25"),
        ("max", "1.0"),
        ("sort", "score:exact"),
        ("order", "desc"),
        ("page", "3"),
    ]
    again: dict[str, list[str]] = {}
    for key, value in written:
        again.setdefault(key, []).append(value)
    assert views.parse_query(again) == query


def test_query_params_replaces_fields_for_links_and_leaves_defaults_out() -> None:
    query = RowQuery(statuses=("failed",), sort="duration", descending=True, page=4)
    assert views.query_params(query, page=1) == [
        ("status", "failed"),
        ("sort", "duration"),
        ("order", "desc"),
    ]
    assert views.query_params(query, sort="row_id", descending=False, page=2) == [
        ("status", "failed"),
        ("page", "2"),
    ]
    assert query.page == 4  # the query itself is unchanged


def test_a_single_value_given_as_text_is_one_value_not_its_characters() -> None:
    params: dict[str, Any] = {"status": "failed", "q": "abc"}
    assert views.parse_query(params) == RowQuery(statuses=("failed",), text="abc")


def test_numbers_in_the_query_string_are_plain_ascii_decimals() -> None:
    for given, low in [("0.5", 0.5), (".5", 0.5), ("1.", 1.0), ("-0", 0.0), ("5e-1", 0.5)]:
        assert views.parse_query({"score": ["s"], "min": [given]}).low == low, given
    assert views.parse_query({"page": ["007"]}).page == 7


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": ["passed", "broken"]}, "status 'broken' is not one of: " + ", ".join(STATUSES)),
        ({"sort": ["speed"]}, "sort 'speed' is not one of: " + ", ".join(SORT_KEYS)),
        ({"sort": ["score:"]}, "or score:NAME"),
        ({"order": ["up"]}, "order 'up' is not one of: asc, desc"),
        ({"score": ["exact"], "min": ["high"]}, "min 'high' is not a number"),
        ({"score": ["exact"], "max": ["nan"]}, "max 'nan' is not a number"),
        ({"score": ["exact"], "max": ["inf"]}, "max 'inf' is not a number"),
        ({"score": ["exact"], "min": ["0.8"], "max": ["0.2"]}, "min (0.8) is greater than max"),
        ({"min": ["0.5"]}, "min and max need a score"),
        ({"page": ["0"]}, "page '0' is not a page number"),
        ({"page": ["-2"]}, "page '-2' is not a page number"),
        ({"page": ["two"]}, "page 'two' is not a page number"),
        # What int() and float() take but a query string should not: only ASCII digits.
        ({"page": ["1_0"]}, "page '1_0' is not a page number"),
        ({"page": ["\uff12"]}, "page '\uff12' is not a page number"),  # full-width 2
        ({"page": ["\u0663"]}, "page '\u0663' is not a page number"),  # Arabic-Indic 3
        ({"page": ["+2"]}, "page '+2' is not a page number"),
        ({"page": ["1" * 400]}, "is not a page number"),
        ({"score": ["exact"], "min": ["1_0"]}, "min '1_0' is not a number"),
        ({"score": ["exact"], "max": ["\uff10.\uff15"]}, "max '\uff10.\uff15' is not a number"),
        ({"score": ["exact"], "min": ["0x1"]}, "min '0x1' is not a number"),
        ({"score": ["exact"], "min": ["1e999"]}, "min '1e999' is not a number"),
    ],
)
def test_a_wrong_parameter_is_a_bad_query_naming_it_and_the_valid_values(
    params: dict[str, list[str]], message: str
) -> None:
    with pytest.raises(BadQuery) as raised:
        views.parse_query(params)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


# -- filters ----------------------------------------------------------------------------------

FILTERED = [
    line("a", status="passed", scores={"exact": 0.0}, input="What is the CAPITAL of France?"),
    line("b", status="failed", scores={"exact": 0.25}, output="paris, of course"),
    line("c", status="error", scores={}, expected="Lyon"),
    line("d", status="skipped", scores={"exact": 1.0}, input="{'city': 'Paris'}"),
    line("e", status="passed", scores={"exact": 0.5, "tone": 0.9}),
]


def select(query: RowQuery, lines: list[RowLine] = FILTERED) -> list[str]:
    shown, matched = views.select_rows(lines, query)
    assert matched == len(shown)  # one page holds them all here
    return ids(shown)


def test_a_status_filter_keeps_the_rows_of_any_status_given() -> None:
    assert select(RowQuery(statuses=("failed",))) == ["b"]
    assert select(RowQuery(statuses=("passed", "error"))) == ["a", "c", "e"]
    assert select(RowQuery(statuses=("xfailed",))) == []
    assert select(RowQuery()) == ["a", "b", "c", "d", "e"]


def test_text_search_is_case_insensitive_over_input_output_and_expected() -> None:
    assert select(RowQuery(text="paris")) == ["b", "d"]  # output, input
    assert select(RowQuery(text="capital")) == ["a"]  # input, other case
    assert select(RowQuery(text="LYON")) == ["c"]  # expected
    assert select(RowQuery(text="e")) == ["a", "b"]  # not the row id: row "e" has no text
    assert select(RowQuery(text="paris", statuses=("skipped",))) == ["d"]


def test_a_score_range_includes_its_bounds_and_leaves_out_rows_without_the_score() -> None:
    assert select(RowQuery(score="exact", low=0.25, high=0.5)) == ["b", "e"]
    assert select(RowQuery(score="exact", low=0.5)) == ["d", "e"]
    assert select(RowQuery(score="exact", high=0.0)) == ["a"]
    assert select(RowQuery(score="tone", low=0.0, high=1.0)) == ["e"]
    # A score chosen without a range filters nothing: the row without it stays.
    assert select(RowQuery(score="exact")) == ["a", "b", "c", "d", "e"]


def test_a_bound_typed_in_matches_a_score_that_differs_in_its_last_bits() -> None:
    lines = [line("x", scores={"s": 0.1 + 0.2})]
    assert select(RowQuery(score="s", low=0.3, high=0.3), lines) == ["x"]


# -- sorting ----------------------------------------------------------------------------------

SORTABLE = [
    line("r1", status="passed", version=2, attempt_id="b", duration=3.0, tokens=50, created=5.0),
    line(
        "r2", status="error", version=None, attempt_id="a", duration=1.0, tokens=None, created=None
    ),
    line("r3", status="failed", version=1, attempt_id="c", duration=2.0, tokens=10, created=7.0),
    line("r4", status="failed", version=1, attempt_id="a", duration=2.0, tokens=10, created=6.0),
]


@pytest.mark.parametrize(
    ("sort", "ascending", "descending"),
    [
        ("row_id", ["r1", "r2", "r3", "r4"], ["r4", "r3", "r2", "r1"]),
        ("status", ["r2", "r3", "r4", "r1"], ["r1", "r3", "r4", "r2"]),
        ("version", ["r3", "r4", "r1", "r2"], ["r1", "r3", "r4", "r2"]),
        ("attempt", ["r2", "r4", "r1", "r3"], ["r3", "r1", "r2", "r4"]),
        ("duration", ["r2", "r3", "r4", "r1"], ["r1", "r3", "r4", "r2"]),
        ("tokens", ["r3", "r4", "r1", "r2"], ["r1", "r3", "r4", "r2"]),
        ("created", ["r1", "r4", "r3", "r2"], ["r3", "r4", "r1", "r2"]),
    ],
)
def test_every_sort_key_sorts_both_ways_missing_values_last_and_ties_by_row_id(
    sort: str, ascending: list[str], descending: list[str]
) -> None:
    assert sort in SORT_KEYS
    assert select(RowQuery(sort=sort), SORTABLE) == ascending
    assert select(RowQuery(sort=sort, descending=True), SORTABLE) == descending


def test_the_sort_keys_tested_are_all_there_are() -> None:
    assert set(SORT_KEYS) == {
        "row_id",
        "status",
        "version",
        "attempt",
        "duration",
        "tokens",
        "created",
    }


def test_sorting_by_a_score_puts_rows_without_it_last_in_both_orders() -> None:
    assert select(RowQuery(sort="score:exact")) == ["a", "b", "e", "d", "c"]
    assert select(RowQuery(sort="score:exact", descending=True)) == ["d", "e", "b", "a", "c"]
    assert select(RowQuery(sort="score:tone", descending=True)) == ["e", "a", "b", "c", "d"]
    tied = [line("z", scores={"s": 0.5}), line("y", scores={"s": 0.5}), line("x", scores={})]
    assert select(RowQuery(sort="score:s"), tied) == ["y", "z", "x"]
    assert select(RowQuery(sort="score:s", descending=True), tied) == ["y", "z", "x"]


# -- paging -----------------------------------------------------------------------------------

MANY = [line(f"row-{number:03d}", scores={"s": number / 200}) for number in range(120)]


def test_rows_come_a_page_at_a_time() -> None:
    first, matched = views.select_rows(MANY, RowQuery())
    assert (ids(first)[0], ids(first)[-1], len(first), matched) == ("row-000", "row-049", 50, 120)
    second, _ = views.select_rows(MANY, RowQuery(page=2))
    assert ids(second) == [f"row-{number:03d}" for number in range(50, 100)]
    last, _ = views.select_rows(MANY, RowQuery(page=3))
    assert ids(last) == [f"row-{number:03d}" for number in range(100, 120)]
    small, _ = views.select_rows(MANY, RowQuery(page=2, page_size=7))
    assert ids(small) == [f"row-{number:03d}" for number in range(7, 14)]


def test_a_page_beyond_the_last_shows_the_last() -> None:
    beyond, matched = views.select_rows(MANY, RowQuery(page=99))
    assert ids(beyond) == [f"row-{number:03d}" for number in range(100, 120)]
    filtered, matched = views.select_rows(MANY, RowQuery(score="s", low=0.5, page=5))
    assert matched == 20 and ids(filtered) == [f"row-{number:03d}" for number in range(100, 120)]
    nothing, matched = views.select_rows(MANY, RowQuery(statuses=("failed",), page=3))
    assert (nothing, matched) == ([], 0)


def test_paging_follows_the_filters_and_the_order() -> None:
    page, matched = views.select_rows(MANY, RowQuery(sort="score:s", descending=True, page=2))
    assert matched == 120
    assert ids(page)[:2] == ["row-069", "row-068"]


# -- histograms -------------------------------------------------------------------------------


def test_a_histogram_has_ten_bins_over_zero_to_one_for_scores() -> None:
    values = [0.0, 0.05, 0.1, 0.3, 0.3, 0.95, 1.0]
    lines = [line(f"r{n}", scores={"s": value}) for n, value in enumerate(values)]
    lines.append(line("no-score"))
    (found,) = views.histograms(lines)
    assert found.score == "s" and found.rows == 7
    assert found.mean == pytest.approx(sum(values) / 7)
    assert [(b.low, b.high) for b in found.bins][:4] == [
        (0.0, 0.1),
        (0.1, 0.2),
        (0.2, 0.3),
        (0.3, 0.4),
    ]
    assert found.bins[-1].high == 1.0
    # An edge goes to the bin above it; 1 stays in the top bin.
    assert [b.count for b in found.bins] == [2, 1, 0, 2, 0, 0, 0, 0, 0, 2]


def test_a_histogram_of_one_value_in_zero_to_one_keeps_its_ten_bins() -> None:
    (found,) = views.histograms([line("a", scores={"s": 1.0}), line("b", scores={"s": 1.0})])
    assert len(found.bins) == 10 and found.bins[-1].count == 2 and found.mean == 1.0


def test_a_histogram_of_values_outside_zero_to_one_spans_their_range() -> None:
    lines = [line(f"r{value}", scores={"s": float(value)}) for value in (2, 3, 7, 12)]
    (found,) = views.histograms(lines)
    assert (found.bins[0].low, found.bins[-1].high, len(found.bins)) == (2.0, 12.0, 10)
    assert [b.count for b in found.bins] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 1]


def test_a_histogram_of_one_value_outside_zero_to_one_is_one_bin() -> None:
    (found,) = views.histograms([line("a", scores={"s": 3.0}), line("b", scores={"s": 3.0})])
    assert [(b.low, b.high, b.count) for b in found.bins] == [(3.0, 3.0, 2)]


def test_histograms_are_one_per_score_by_name() -> None:
    found = views.histograms(FILTERED)
    assert [(each.score, each.rows) for each in found] == [("exact", 4), ("tone", 1)]
    assert views.histograms([]) == []


# -- display text -----------------------------------------------------------------------------


def test_pretty_shows_text_as_it_is_and_other_values_as_json() -> None:
    assert views.pretty("line one\nline two") == "line one\nline two"
    assert views.pretty(None) == ""
    assert (
        views.pretty({"b": [1, 2], "a": "é"}) == '{\n  "b": [\n    1,\n    2\n  ],\n  "a": "é"\n}'
    )
    assert views.pretty(0.5) == "0.5" and views.pretty(True) == "true"


def test_a_row_line_clips_long_values_to_one_line(store: SQLiteStore) -> None:
    long_text = "x" * 500
    experiment_id = experiment(
        store, "e", version("r", input={"q": "hi"}, output=long_text, expected=None)
    )
    (found,) = views.all_row_lines(store, experiment_id)
    assert found.input == '{"q": "hi"}'
    assert len(found.output) == views.CLIP and found.output.endswith("…")
    assert found.expected == ""


def test_text_search_sees_all_of_a_long_value_not_the_clipped_cell(store: SQLiteStore) -> None:
    long_text = "x" * 500 + " The NEEDLE at the end"
    experiment_id = experiment(
        store,
        "e",
        version("long", output=long_text),
        version("json", input={"question": "Ünïcode " + "y" * 300 + " straße"}),
        version("short", input="no match here"),
    )
    lines = {line.row_id: line for line in views.all_row_lines(store, experiment_id)}
    assert "needle" not in lines["long"].output.casefold()  # the cell is clipped
    assert lines["long"].search_text == "\n" + long_text.casefold() + "\n"
    for text, found in [
        ("the needle", ["long"]),
        ("STRASSE", ["json"]),
        ('"question": "ü', ["json"]),
    ]:
        query = views.parse_query({"q": [text]})
        assert ids(views.experiment_page(store, experiment_id, query).rows) == found, text


# -- the experiment's page --------------------------------------------------------------------


def filled(store: SQLiteStore) -> str:
    """Five rows of two sessions: the second wrote two rows again, one of them into error."""
    experiment_id = experiment(store, "run-2")
    session(store, experiment_id, "attempt-1", 10.0, counts={"passed": 4, "failed": 1}, host="ci")
    session(store, experiment_id, "attempt-2", 20.0, ended=25.0, counts={"passed": 1, "error": 1})
    first = [
        version("r1", scores={"pass": 1.0, "exact": 1.0}, tokens=10, cost=0.5, input="Rome?"),
        version("r2", scores={"pass": 1.0, "exact": 0.5}, tokens=20, cost=0.25),
        version("r3", status="failed", scores={"pass": 0.0, "exact": 0.0}, output="ROMA"),
        version("r4", scores={"pass": 1.0}, tokens=5),
        version("r5", scores={"pass": 1.0, "exact": 1.0}),
    ]
    store.write(experiment_id, first, [])
    again = [
        version("r2", scores={"pass": 1.0, "exact": 1.0}, attempt="attempt-2", start=200.0),
        version(
            "r5",
            status="error",
            attempt="attempt-2",
            start=200.0,
            error=ErrorInfo("RuntimeError", "the model is down\nretry later", "Traceback ..."),
        ),
    ]
    store.write(experiment_id, again, [])
    return experiment_id


def test_an_experiment_page_shows_its_card_rows_histograms_and_attempts(store: SQLiteStore) -> None:
    experiment_id = filled(store)
    page = views.experiment_page(store, experiment_id, RowQuery())

    assert (page.total, page.matched, page.pages) == (5, 5, 1)
    assert ids(page.rows) == ["r1", "r2", "r3", "r4", "r5"]
    assert page.score_names == ["exact", "pass"]
    card = page.card
    assert card.ref == ExperimentRef(experiment_id, "run-2", "proj")
    assert card.rows == 5 and card.statuses == {"error": 1, "failed": 1, "passed": 3}
    assert card.pass_rate == pytest.approx(3 / 5)  # the row in error counts as a fail
    assert card.means["exact"] == pytest.approx(2 / 3)  # r2 at 1.0 now, r5 without it
    assert (card.tokens, card.cost) == (15, 0.5)  # r2's second version has none
    assert card.attempts == 2 and card.last_attempt is not None
    assert card.last_attempt.id == "attempt-2" and card.baseline is None

    r5 = page.rows[-1]
    assert (r5.status, r5.version, r5.attempt_short) == ("error", 2, "attempt-")
    assert r5.error == "RuntimeError: the model is down"
    assert page.rows[0].input == "Rome?"
    assert [line.version for line in page.rows] == [1, 2, 1, 1, 2]

    assert [(h.score, h.rows) for h in page.histograms] == [("exact", 3), ("pass", 5)]
    assert [(a.id, a.latest_rows, a.counts, a.host) for a in page.attempts] == [
        ("attempt-1", 3, {"passed": 4, "failed": 1}, "ci"),
        ("attempt-2", 2, {"passed": 1, "error": 1}, ""),
    ]
    assert page.attempts[1].ended == 25.0 and page.attempts[1].short == "attempt-"


def test_an_experiment_page_filters_sorts_and_pages_with_histograms_of_every_row(
    store: SQLiteStore,
) -> None:
    experiment_id = filled(store)
    query = views.parse_query({"score": ["exact"], "min": ["0.5"], "sort": ["score:exact"]})
    page = views.experiment_page(store, experiment_id, query)
    assert ids(page.rows) == ["r1", "r2"]  # both at 1.0: by row id; r5 has no score now
    assert (page.matched, page.total) == (2, 5)
    assert [(h.score, h.rows) for h in page.histograms] == [("exact", 3), ("pass", 5)]

    text = views.experiment_page(store, experiment_id, views.parse_query({"q": ["roma"]}))
    assert ids(text.rows) == ["r3"]


def test_a_row_in_error_counts_as_a_fail_in_the_table_filter_sort_and_histogram(
    store: SQLiteStore,
) -> None:
    """r5 is in error without a pass score: the card's pass rate counts it as 0, and so do
    its cell, the score filter, the score sort and the histogram (as ``evalrows summary``)."""
    experiment_id = filled(store)
    page = views.experiment_page(store, experiment_id, RowQuery())
    r5 = page.rows[-1]
    assert r5.row_id == "r5" and r5.scores == {"pass": 0.0}
    (passes,) = [h for h in page.histograms if h.score == "pass"]
    assert passes.rows == 5 and passes.mean == pytest.approx(page.card.pass_rate)
    assert passes.bins[0].count == 2  # r3 failed, r5 in error
    failing = views.parse_query({"score": ["pass"], "max": ["0"]})
    assert ids(views.experiment_page(store, experiment_id, failing).rows) == ["r3", "r5"]
    by_pass = views.parse_query({"sort": ["score:pass"]})
    assert ids(views.experiment_page(store, experiment_id, by_pass).rows)[:2] == ["r3", "r5"]


def test_a_page_beyond_the_last_is_the_last_page_in_the_query_too(store: SQLiteStore) -> None:
    experiment_id = experiment(
        store, "e", *[version(f"r{number:03d}") for number in range(PAGE_SIZE + 3)]
    )
    page = views.experiment_page(store, experiment_id, RowQuery(page=7))
    assert (page.pages, page.query.page, page.matched) == (2, 2, PAGE_SIZE + 3)
    assert ids(page.rows) == [f"r{number:03d}" for number in range(PAGE_SIZE, PAGE_SIZE + 3)]
    empty = views.experiment_page(store, experiment_id, RowQuery(statuses=("failed",), page=3))
    assert (empty.rows, empty.matched, empty.pages, empty.query.page) == ([], 0, 1, 1)


def test_a_score_the_experiment_does_not_have_is_a_bad_query(store: SQLiteStore) -> None:
    experiment_id = filled(store)
    with pytest.raises(
        BadQuery, match=r"score 'tone' is not one of this experiment's scores: exact, pass"
    ):
        views.experiment_page(store, experiment_id, RowQuery(score="tone", low=0.5))
    with pytest.raises(BadQuery, match="score 'tone'"):
        views.experiment_page(store, experiment_id, RowQuery(sort="score:tone"))
    bare = experiment(store, "bare", version("r"))
    with pytest.raises(BadQuery, match="no row has a score"):
        views.experiment_page(store, bare, RowQuery(sort="score:x"))


def test_an_unknown_experiment_is_page_not_found(store: SQLiteStore) -> None:
    experiment(store, "e", version("r"))
    for build in (
        lambda: views.experiment_page(store, "nope", RowQuery()),
        lambda: views.find_experiment(store, "nope"),
        lambda: views.all_row_lines(store, "nope"),
        lambda: views.row_page(store, "nope", "r"),
        lambda: views.baseline_of(store, "nope"),
    ):
        with pytest.raises(PageNotFound, match="no experiment 'nope'") as raised:
            build()
        # A 404 page shows it, to anyone: not where the store's file is.
        assert str(store.path) not in str(raised.value) and "rows.db" not in str(raised.value)
    with pytest.raises(PageNotFound):
        views.compare_page(store, "nope", "nope")


def test_an_empty_experiment_has_a_page(store: SQLiteStore) -> None:
    experiment_id = experiment(store, "empty")
    page = views.experiment_page(store, experiment_id, RowQuery())
    assert (page.rows, page.total, page.pages, page.histograms, page.score_names) == (
        [],
        0,
        1,
        [],
        [],
    )
    assert page.card.pass_rate is None and page.card.last_attempt is None


def test_all_row_lines_are_every_row_by_row_id(store: SQLiteStore) -> None:
    experiment_id = experiment(store, "e", *[version(f"r{n}") for n in (3, 1, 2)])
    assert ids(views.all_row_lines(store, experiment_id)) == ["r1", "r2", "r3"]


def test_the_page_and_every_line_come_from_one_read(store: SQLiteStore) -> None:
    experiment_id = filled(store)
    query = RowQuery(statuses=("failed",))
    page, lines = views.experiment_page_and_lines(store, experiment_id, query)
    assert page == views.experiment_page(store, experiment_id, query)
    assert lines == views.all_row_lines(store, experiment_id) and len(lines) == 5


def test_an_experiment_page_on_a_memory_store() -> None:
    with MemoryStore() as memory:
        experiment_id = experiment(memory, "e", version("b", status="failed"), version("a"))
        page = views.experiment_page(memory, experiment_id, RowQuery(statuses=("failed",)))
        assert ids(page.rows) == ["b"] and page.total == 2


# -- the experiments page and baselines -------------------------------------------------------


def test_experiment_cards_are_newest_first_with_their_baselines(store: SQLiteStore) -> None:
    old = experiment(store, "a-old", version("r", scores={"pass": 1.0}, tokens=3, cost=0.1))
    new = experiment(
        store, "b-new", version("r", status="failed", scores={"pass": 0.0}, attempt="attempt-9")
    )
    session(store, new, "attempt-9", 5.0, report={"baseline": "a-old"})
    cards = views.experiment_cards(store)
    assert [card.ref.name for card in cards] == ["b-new", "a-old"]
    assert cards[0].baseline == ExperimentRef(old, "a-old", "proj")
    assert cards[0].pass_rate == 0.0 and cards[0].attempts == 1
    assert cards[0].last_attempt is not None and cards[0].last_attempt.latest_rows == 1
    assert (cards[1].tokens, cards[1].cost, cards[1].baseline) == (3, 0.1, None)
    assert cards[1].means == {"pass": 1.0}


def test_the_baseline_is_the_last_report_s_one_looked_up_in_the_project_first(
    store: SQLiteStore,
) -> None:
    there = experiment(store, "main", project="theirs")  # older: first when not ours
    here = experiment(store, "main", project="ours")
    only_there = experiment(store, "legacy", project="theirs")
    run = experiment(store, "run", project="ours")
    assert views.baseline_of(store, run) is None  # no session
    session(store, run, "a1", 1.0, report={"baseline": "legacy"})
    assert views.baseline_of(store, run) == ExperimentRef(only_there, "legacy", "theirs")
    session(store, run, "a2", 2.0, report={"baseline": "main"})
    assert views.baseline_of(store, run) == ExperimentRef(here, "main", "ours")
    session(store, run, "a3", 3.0)  # a session that saved no report: the last report counts
    assert views.baseline_of(store, run) == ExperimentRef(here, "main", "ours")
    session(store, run, "a4", 4.0, report={"baseline": None})
    assert views.baseline_of(store, run) is None
    session(store, run, "a5", 5.0, report={"baseline": "gone"})
    assert views.baseline_of(store, run) is None
    assert there != here


def test_an_experiment_named_as_its_own_baseline_has_none(store: SQLiteStore) -> None:
    run = experiment(store, "run")
    session(store, run, "a1", 1.0, report={"baseline": "run"})
    assert views.baseline_of(store, run) is None


# -- a row's page -----------------------------------------------------------------------------


def test_a_row_page_lists_versions_newest_first_and_sides_against_the_previous(
    store: SQLiteStore,
) -> None:
    experiment_id = experiment(
        store,
        "e",
        version("r", input={"q": "capital?"}, output="Paris", expected="Paris", start=1.0),
        version(
            "r",
            status="failed",
            input={"q": "capital?"},
            output="Lyon",
            expected="Paris",
            attempt="attempt-2",
            start=2.0,
            scores={"pass": 0.0},
            tokens=7,
            metadata={"model": "m"},
            tags=["geo"],
            error=ErrorInfo("AssertionError", "Lyon != Paris\nmore", "Traceback (most recent)"),
        ),
    )
    page = views.row_page(store, experiment_id, "r")
    assert page.experiment.name == "e" and page.row_id == "r"
    assert page.nodeid == "tests/test_it.py::r"
    assert [v.version for v in page.versions] == [2, 1]
    assert page.latest == page.versions[0]
    latest = page.latest
    assert (latest.status, latest.attempt_short, latest.tokens, latest.scores) == (
        "failed",
        "attempt-",
        7,
        {"pass": 0.0},
    )
    assert latest.error == "AssertionError: Lyon != Paris\nmore"
    assert latest.traceback == "Traceback (most recent)"
    assert page.versions[1].error is None and page.versions[1].traceback == ""
    sides = {side.name: side for side in page.sides}
    assert [side.name for side in page.sides] == ["input", "output", "expected"]
    assert (sides["output"].latest, sides["output"].previous, sides["output"].changed) == (
        "Lyon",
        "Paris",
        True,
    )
    assert sides["input"].changed is False and sides["input"].latest == '{\n  "q": "capital?"\n}'
    assert sides["expected"].changed is False
    assert page.metadata == '{\n  "model": "m"\n}' and page.tags == ["geo"]


def test_a_row_of_one_version_has_no_previous_side(store: SQLiteStore) -> None:
    experiment_id = experiment(store, "e", version("r", output="x"))
    page = views.row_page(store, experiment_id, "r")
    assert [(side.previous, side.changed) for side in page.sides] == [(None, False)] * 3
    assert page.trace.roots == [] and page.trace.spans == 0 and page.judgments == []


def test_a_value_that_looks_the_same_but_is_not_is_a_change(store: SQLiteStore) -> None:
    experiment_id = experiment(
        store, "e", version("r", output=1, start=1.0), version("r", output="1", start=2.0)
    )
    output = views.row_page(store, experiment_id, "r").sides[1]
    assert (output.latest, output.previous, output.changed) == ("1", "1", True)


def test_a_row_that_is_not_there_is_page_not_found(store: SQLiteStore) -> None:
    experiment_id = experiment(store, "e", version("r"))
    with pytest.raises(PageNotFound, match="experiment 'e' has no row 'missing'"):
        views.row_page(store, experiment_id, "missing")
    with pytest.raises(PageNotFound):
        views.build_row_page(ExperimentRef("x", "e", "p"), [], [], [])


def span(
    span_id: str,
    start: float,
    end: float,
    *,
    parent: str | None = None,
    trace: str = TRACE,
    **fields: Any,
) -> SpanRecord:
    return SpanRecord(
        span_id=span_id,
        root_span_id=trace,
        span_parents=[parent] if parent else [],
        row_id="r",
        attempt_id="attempt-1",
        name=fields.pop("name", span_id),
        start=start,
        end=end,
        **fields,
    )


def flatten(nodes: list[SpanNode], depth: int = 0) -> list[tuple[int, str]]:
    found = []
    for node in nodes:
        found.append((depth, node.span_id))
        found.extend(flatten(node.children, depth + 1))
    return found


def test_the_trace_is_a_tree_in_start_order_with_orphans_as_roots(store: SQLiteStore) -> None:
    row = version("r", trace=TRACE, start=1000.0)
    spans = [
        span("root", 1000.0, 1004.0),
        span("late-child", 1002.0, 1003.0, parent="root"),
        span("early-child", 1000.5, 1001.5, parent="root", kind="client"),
        span("grandchild", 1000.75, 1001.0, parent="early-child"),
        span("orphan", 1003.5, 1005.0, parent="gone-span"),
        span("old", 10.0, 11.0, trace="cd" * 16),  # an earlier version's trace
    ]
    experiment_id = experiment(store, "e")
    store.write(experiment_id, [row], spans)
    trace = views.row_page(store, experiment_id, "r").trace

    assert flatten(trace.roots) == [
        (0, "root"),
        (1, "early-child"),
        (2, "grandchild"),
        (1, "late-child"),
        (0, "orphan"),
    ]
    assert trace.spans == 5 and trace.duration == pytest.approx(5.0)
    root, orphan = trace.roots
    early = root.children[0]
    assert (early.offset, early.duration, early.kind) == (0.5, 1.0, "client")
    assert (orphan.offset, orphan.duration) == (3.5, 1.5)
    assert early.children[0].offset == pytest.approx(0.75)


def test_error_spans_exception_events_tokens_and_attributes(store: SQLiteStore) -> None:
    row = version("r", trace=TRACE, start=50.0)
    spans = [
        span("root", 50.0, 52.0),
        span(
            "llm",
            50.5,
            51.0,
            parent="root",
            attributes={
                "gen_ai.usage.input_tokens": 120,
                "gen_ai.usage.completion_tokens": 30,
                "gen_ai.request.model": "m-1",
                "a.list": [1, 2],
            },
        ),
        span(
            "tool",
            51.0,
            51.5,
            parent="root",
            events=[
                {"name": "retry", "timestamp": 51.1, "attributes": {"n": 1}},
                {
                    "name": "exception",
                    "timestamp": 51.25,
                    "attributes": {"exception.type": "ValueError", "exception.message": "bad"},
                },
            ],
        ),
        span("failing", 51.5, 52.0, parent="root", status="error", status_description="boom"),
        span(
            "old-names",
            51.6,
            51.7,
            parent="root",
            attributes={"gen_ai.usage.prompt_tokens": 9, "gen_ai.usage.output_tokens": 4},
        ),
    ]
    experiment_id = experiment(store, "e")
    store.write(experiment_id, [row], spans)
    (root,) = views.row_page(store, experiment_id, "r").trace.roots
    llm, tool, failing, old_names = root.children

    assert (root.error, llm.error) == (False, False)
    assert (llm.input_tokens, llm.output_tokens) == (120, 30)
    assert (old_names.input_tokens, old_names.output_tokens) == (9, 4)
    assert (root.input_tokens, root.output_tokens) == (None, None)
    assert llm.attributes == [
        ("a.list", "[\n  1,\n  2\n]"),
        ("gen_ai.request.model", "m-1"),
        ("gen_ai.usage.completion_tokens", "30"),
        ("gen_ai.usage.input_tokens", "120"),
    ]
    assert tool.error is True and tool.status_description is None
    retry, exception = tool.events
    assert (retry.name, retry.exception, retry.attributes) == ("retry", False, [("n", "1")])
    assert retry.offset == pytest.approx(1.1)
    assert exception.exception is True and exception.offset == pytest.approx(1.25)
    assert exception.attributes == [("exception.message", "bad"), ("exception.type", "ValueError")]
    assert (failing.error, failing.status_description) == (True, "boom")


def test_a_loop_of_parents_loses_no_span() -> None:
    spans = [
        span("a", 1.0, 2.0, parent="b"),
        span("b", 1.5, 2.0, parent="a"),
        span("c", 1.7, 1.8, parent="b"),
        span("self", 1.8, 1.9, parent="self"),
    ]
    row = version("r", trace=TRACE)
    page = views.build_row_page(ExperimentRef("x", "e", "p"), [row], spans, [])
    assert flatten(page.trace.roots) == [(0, "a"), (1, "b"), (2, "c"), (0, "self")]


def evaluation(row: RowVersion, judge: str, created: float, **fields: Any) -> Evaluation:
    return Evaluation(
        id=f"{judge}-{created}",
        row_id=row.row_id,
        trace_id=row.root_span_id,
        version_id=row.version_id,
        judge_id=judge,
        created_at=created,
        **fields,
    )


def test_judgments_are_newest_first_and_say_which_judged_the_latest_version(
    store: SQLiteStore,
) -> None:
    older = version("r", start=1.0)
    newer = version("r", start=2.0)
    other = version("other")
    experiment_id = experiment(store, "e", older, newer, other)
    judged = Judgment(
        score=0.75,
        passed=True,
        reasoning="mostly right",
        steps=[Step(span_id="s1", name="search", result={"hits": 2})],
        model="judge-model",
    )
    store.save_evaluations(
        experiment_id,
        [
            evaluation(older, "tone", 10.0, status="success", result=Judgment(passed=False)),
            evaluation(newer, "tone", 30.0, status="success", result=judged),
            evaluation(newer, "facts", 20.0, status="failure", error="the judge timed out"),
            evaluation(other, "tone", 40.0, status="pending"),
        ],
    )
    judgments = views.row_page(store, experiment_id, "r").judgments
    assert [(j.judge_id, j.created_at, j.latest) for j in judgments] == [
        ("tone", 30.0, True),
        ("facts", 20.0, True),
        ("tone", 10.0, False),
    ]
    best, failed, old = judgments
    assert (best.status, best.score, best.passed, best.reasoning, best.model) == (
        "success",
        0.75,
        True,
        "mostly right",
        "judge-model",
    )
    assert [(s.span_id, s.name, s.result) for s in best.steps] == [
        ("s1", "search", '{\n  "hits": 2\n}')
    ]
    assert (failed.score, failed.error, failed.steps, failed.reasoning) == (
        None,
        "the judge timed out",
        [],
        "",
    )
    assert (old.score, old.passed, old.version_id) == (0.0, False, older.version_id)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_a_row_page_reads_that_row_s_evaluations_alone(tmp_path: Path, kind: str) -> None:
    """Not every evaluation of the experiment (tens of thousands, each parsed) to show one
    row's: the store reads the row's in SQL."""
    with SQLiteStore(tmp_path / "rows.db") if kind == "sqlite" else MemoryStore() as store:
        mine, theirs = version("r"), version("r/other")
        experiment_id = experiment(store, "e", mine, theirs)
        other_id = experiment(store, "other", version("r"))
        store.save_evaluations(
            experiment_id,
            [evaluation(theirs, "tone", float(n), status="pending") for n in range(5)]
            + [evaluation(mine, "tone", 9.0, status="pending")]
            + [evaluation(mine, "facts", 3.0, status="pending")],
        )
        assert [(e.judge_id, e.created_at) for e in store.row_evaluations(experiment_id, "r")] == [
            ("facts", 3.0),
            ("tone", 9.0),
        ]
        assert store.row_evaluations(experiment_id, "nothing") == []
        assert store.row_evaluations(other_id, "r") == []
        assert len(store.list_evaluations(experiment_id)) == 7  # and the whole list as before

        statements: list[str] = []
        store._db._db.set_trace_callback(statements.append)
        try:
            page = views.row_page(store, experiment_id, "r")
        finally:
            store._db._db.set_trace_callback(None)
        assert [j.judge_id for j in page.judgments] == ["tone", "facts"]
        reads = [each for each in statements if "FROM evaluations" in each]
        assert reads and all("row_id = " in each for each in reads), reads


# -- compare ----------------------------------------------------------------------------------


def test_compare_lists_regressions_first_then_by_row_id_with_deltas(store: SQLiteStore) -> None:
    a = experiment(
        store,
        "base",
        version("z-up", scores={"pass": 0.0, "exact": 0.2}),
        version("b-down", scores={"pass": 1.0, "exact": 0.9}),
        version("a-down", scores={"pass": 1.0, "exact": 0.5}),
        version("same", scores={"pass": 1.0}),
        version("crashed", scores={"pass": 1.0}),
        version("dropped", scores={"pass": 1.0}),
    )
    b = experiment(
        store,
        "now",
        version("z-up", scores={"pass": 1.0, "exact": 0.2}),
        version("b-down", scores={"pass": 1.0, "exact": 0.4}),
        version("a-down", status="failed", scores={"pass": 0.0, "exact": 0.75}),
        version("same", scores={"pass": 1.0}),
        version("crashed", status="error"),  # no pass score: counts as 0
        version("added", scores={"pass": 1.0}),
    )
    page = views.compare_page(store, a, b)
    assert (page.a.name, page.b.name) == ("base", "now")
    assert [(line.change, line.row_id) for line in page.rows] == [
        ("regressed", "a-down"),
        ("regressed", "b-down"),
        ("regressed", "crashed"),
        ("improved", "z-up"),
        ("unchanged", "same"),
        ("only-b", "added"),
        ("only-a", "dropped"),
    ]
    assert [line.change for line in page.rows] == sorted(
        (line.change for line in page.rows), key=CHANGE_ORDER.index
    )
    assert page.counts == {"regressed": 3, "improved": 1, "unchanged": 1, "only-b": 1, "only-a": 1}
    assert (page.compared, page.only_a, page.only_b) == (5, 1, 1)
    lines = {line.row_id: line for line in page.rows}
    assert lines["b-down"].deltas == {"exact": pytest.approx(-0.5), "pass": 0.0}
    assert lines["crashed"].b_scores == {"pass": 0.0} and lines["crashed"].deltas == {"pass": -1.0}
    assert (lines["crashed"].a_status, lines["crashed"].b_status) == ("passed", "error")
    assert (lines["added"].a_status, lines["added"].a_scores, lines["added"].deltas) == (
        None,
        {},
        {},
    )
    assert lines["dropped"].b_status is None
    scores = {delta.score: delta for delta in page.scores}
    assert list(scores) == ["exact", "pass"]
    exact = scores["exact"]
    assert (exact.improved, exact.regressed, exact.unchanged) == (1, 1, 1)
    assert exact.a_mean == pytest.approx(1.6 / 3) and exact.b_mean == pytest.approx(1.35 / 3)
    assert exact.delta == pytest.approx(-0.25 / 3)
    assert (scores["pass"].improved, scores["pass"].regressed) == (1, 2)


def test_an_experiment_compared_with_itself_is_unchanged(store: SQLiteStore) -> None:
    a = experiment(store, "e", version("r1", scores={"pass": 1.0}), version("r2", status="error"))
    page = views.compare_page(store, a, a)
    assert [line.change for line in page.rows] == ["unchanged", "unchanged"]
    assert page.counts["unchanged"] == 2 and page.scores[0].delta == 0.0


# -- from a real session ----------------------------------------------------------------------

RECORDED = """
import pathlib

import pytest
from opentelemetry import trace

tracer = trace.get_tracer("app")
ANSWER = pathlib.Path(__file__).parent / "answer.txt"


@pytest.mark.eval
@pytest.mark.parametrize("city", ["paris", "rome"])
def test_capital(city, eval_row):
    answer = ANSWER.read_text()
    with tracer.start_as_current_span("llm") as llm:
        llm.set_attribute("gen_ai.usage.input_tokens", 12)
        llm.set_attribute("gen_ai.usage.output_tokens", 3)
        with tracer.start_as_current_span("parse") as parse:
            parse.record_exception(ValueError("not a city"))
    eval_row.log(input={"city": city}, output=answer, expected="Paris")
    eval_row.score("exact", float(answer == "Paris" and city == "paris"))
"""


def test_the_pages_of_rows_a_real_session_recorded(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_capital=RECORDED)
    (pytester.path / "answer.txt").write_text("Paris")
    pytester.runpytest_subprocess("--eval-experiment=v1").assert_outcomes(passed=2)
    (pytester.path / "answer.txt").write_text("Lyon")
    second = pytester.runpytest_subprocess("--eval-experiment=v2", "--eval-baseline=v1")
    second.assert_outcomes(passed=2)
    db = pytester.path / ".evalrows" / "evalrows.db"
    with SQLiteStore(db, create=False) as recorded:
        found = {each.name: each for each in recorded.list_experiments()}
        v1, v2 = found["v1"].id, found["v2"].id
        assert views.baseline_of(recorded, v2) == ExperimentRef(v1, "v1", found["v1"].project)
        assert views.baseline_of(recorded, v1) is None
    pytester.runpytest_subprocess("--eval-experiment=v2").assert_outcomes(passed=2)

    with SQLiteStore(db, create=False) as recorded:
        assert views.baseline_of(recorded, v2) is None  # the last session named none

        page = views.experiment_page(recorded, v2, views.parse_query({"q": ["lyon"]}))
        assert page.total == 2 and page.matched == 2 and page.card.attempts == 2
        assert page.score_names == ["exact", "pass"]
        assert [a.latest_rows for a in page.attempts] == [0, 2]

        row_id = "test_capital.py::test_capital[paris]"
        row = views.row_page(recorded, v2, row_id)
        assert [v.version for v in row.versions] == [2, 1]
        output = row.sides[1]
        assert (output.latest, output.previous, output.changed) == ("Lyon", "Lyon", False)
        assert row.sides[0].latest == '{\n  "city": "paris"\n}'
        (root,) = row.trace.roots
        assert root.span_id == row_id_span(recorded, v2, row_id)
        (llm,) = root.children
        (parse,) = llm.children
        assert (llm.name, llm.input_tokens, llm.output_tokens, llm.error) == ("llm", 12, 3, False)
        assert parse.error and [e.name for e in parse.events] == ["exception"]
        assert ("exception.message", "not a city") in parse.events[0].attributes
        assert row.trace.spans == 3  # the first session's spans are not this version's

        compare = views.compare_page(recorded, v1, v2)
        assert [(line.row_id, line.change) for line in compare.rows] == [
            (row_id, "regressed"),
            ("test_capital.py::test_capital[rome]", "unchanged"),
        ]
        assert compare.rows[0].deltas == {"exact": -1.0, "pass": 0.0}


def row_id_span(store: SQLiteStore, experiment_id: str, row_id: str) -> str:
    (latest,) = store.latest_rows(experiment_id, [row_id])
    return latest.span_id
