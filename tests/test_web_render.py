"""The pages' HTML, from page shapes built by hand: the DOM hooks the browser tests and the
report rely on, escaping, links made only by ``Links``, and no inline script or style (CSP).

The markup is read back into a small tree (``support.html_tree``), which also fails the test
on an element closed out of order; the pages are built by hand (``support.web_pages``).
"""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
from support.html_tree import Node, main_of, parse, squash
from support.web_pages import (
    BASELINE,
    EXPERIMENT,
    HOSTILE,
    card,
    compare_page,
    experiment_page,
    row_page,
    version,
)

from pytest_evalrows.core.records import STATUSES
from pytest_evalrows.web import render
from pytest_evalrows.web.pages import (
    CompareLine,
    ExperimentPage,
    ExperimentRef,
    FieldSides,
    RowQuery,
    Waterfall,
)
from pytest_evalrows.web.render import BAR_WIDTH, Renderer, ServeLinks, environment
from pytest_evalrows.web.views import BadQuery


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(ServeLinks())


def every_page(renderer: Renderer) -> dict[str, str]:
    return {
        "experiments": renderer.experiments([card(), card(ref=BASELINE)], logout=True),
        "experiment": renderer.experiment(experiment_page()),
        "row": renderer.row(row_page()),
        "compare": renderer.compare(compare_page()),
        "login": renderer.login(next="/experiments/exp-1", error="That is not the token."),
        "error": renderer.error(404, "No experiment exp-9."),
    }


# --- every page ----------------------------------------------------------------------------------


def test_every_page_has_the_frame_the_browser_tests_rely_on(renderer: Renderer) -> None:
    for name, html in every_page(renderer).items():
        document = parse(html)
        assert html.startswith("<!doctype html>"), name
        assert document.one("html").attrs["lang"] == "en", name
        assert document.one("link", rel="icon").attrs["href"] == "data:,", name
        assert document.one("head").one("title").text.strip(), name
        assert len(document.one("main", id="main").all("h1")) == 1, name
        assert len(document.all("h1")) == 1, name
        assert document.one("link", rel="stylesheet").attrs["href"] == "/static/evalrows.css"
        script = document.one("script")
        assert script.attrs["src"] == "/static/evalrows.js" and "defer" in script.attrs, name


def test_no_page_has_inline_script_style_or_handlers(renderer: Renderer) -> None:
    """The CSP allows 'self' only: an inline script or style attribute would be blocked."""
    for name, html in every_page(renderer).items():
        document = parse(html)
        assert not document.all("style"), name
        for node in document.walk():
            assert "style" not in node.attrs, (name, node.tag)
            assert not [a for a in node.attrs if a.startswith("on")], (name, node.tag, node.attrs)
            if node.tag == "script":
                assert node.attrs.get("src") and not node.text.strip(), name
            for attribute in ("href", "src", "action"):
                assert not node.attrs.get(attribute, "").lower().startswith("javascript:"), name


def test_hostile_text_is_shown_as_text_everywhere(renderer: Renderer) -> None:
    for name in ("experiment", "row"):
        html = every_page(renderer)[name]
        document = parse(html)
        assert len(document.all("script")) == 1, name  # only the page's own script
        assert HOSTILE in document.one("main").text, name
        assert "<script>alert" not in html and "&lt;script&gt;" in html, name
    rows = parse(renderer.experiment(experiment_page())).one("table", id="rows")
    assert rows.all("tr", data_row_id=HOSTILE)  # an attribute value, unquoted back intact
    error = parse(renderer.error(400, HOSTILE))
    assert HOSTILE in error.one("main").text and len(error.all("script")) == 1
    login = parse(renderer.login(next='/x" autofocus onfocus="alert(1)', error=None))
    hidden = login.one("input", name="next")
    assert hidden.attrs == {"type": "hidden", "name": "next", "value": hidden.attrs["value"]}
    assert hidden.attrs["value"] == '/x" autofocus onfocus="alert(1)'


def test_the_report_gets_the_same_main_as_the_served_pages(renderer: Renderer) -> None:
    page, compare, experiment = row_page(), compare_page(), experiment_page()
    assert squash(renderer.row_main(page)) == squash(main_of(renderer.row(page)))
    # The served compare page adds its pager (the report's script pages its own table).
    served = squash(main_of(renderer.compare(compare)))
    pager = re.search(r' <nav id="compare-pager".*?</nav>', served)
    assert pager is not None
    assert squash(renderer.compare_main(compare)) == served.replace(pager[0], " ")
    head = squash(renderer.experiment_head(experiment))
    assert squash(main_of(renderer.experiment(experiment))).startswith(head)
    assert 'id="attempts"' in head and 'class="histogram"' in head and "<h1>" in head


class HashLinks:
    """Links as a report makes them: routes after ``#``, never a path."""

    def experiments(self) -> str:
        return "#/"

    def experiment(self, ref: ExperimentRef, params: object = ()) -> str:
        return "#/"

    def row(self, ref: ExperimentRef, row_id: str) -> str:
        return f"#/rows/{row_id}"

    def compare(self, a: ExperimentRef, b: ExperimentRef) -> str:
        return "#/compare"

    def static(self, name: str) -> str:
        return f"#static-{name}"


def test_templates_link_only_through_links() -> None:
    """No path is spelled in a template: with routes for links, no link is a path."""
    hashed = Renderer(HashLinks())
    page = experiment_page(card=card(baseline=BASELINE))
    for html in (
        hashed.row_main(row_page()),
        hashed.compare_main(compare_page()),
        hashed.experiment_head(page),
        hashed.experiment(page),
        hashed.experiments([card()], logout=False),
    ):
        for node in parse(html).walk():
            for attribute in ("href", "src", "action"):
                value = node.attrs.get(attribute)
                assert value is None or value.startswith("#") or value == "data:,", node.attrs


# --- links ---------------------------------------------------------------------------------------


def test_serve_links_percent_encode_every_id() -> None:
    links = ServeLinks()
    odd = ExperimentRef("exp/1 x", "n", "p")
    assert links.experiments() == "/"
    assert links.experiment(odd) == "/experiments/exp%2F1%20x"
    assert links.experiment(odd, [("status", "failed"), ("q", "a&b")]) == (
        "/experiments/exp%2F1%20x?status=failed&q=a%26b"
    )
    assert links.row(EXPERIMENT, "with/slash and space?#") == (
        "/experiments/exp-1/rows/with%2Fslash%20and%20space%3F%23"
    )
    assert links.compare(BASELINE, odd) == "/compare?a=exp-0&b=exp%2F1+x"
    assert links.static("evalrows.css") == "/static/evalrows.css"


def test_rows_named_dot_and_dot_dot_are_linked_by_the_query_and_read_back() -> None:
    """A browser drops "." and ".." path segments, even as %2E: those two go in the query."""
    links = ServeLinks()
    assert links.row(EXPERIMENT, ".") == "/experiments/exp-1/rows/?row=."
    assert links.row(EXPERIMENT, "..") == "/experiments/exp-1/rows/?row=.."
    assert links.row(EXPERIMENT, "...") == "/experiments/exp-1/rows/..."
    assert links.row(EXPERIMENT, "./x") == "/experiments/exp-1/rows/.%2Fx"
    for row_id in (".", ".."):
        assert render.row_id_of("", row_id) == row_id
    # Only an empty last part and a dot segment: every other row's link is its path.
    assert render.row_id_of("", "x") == ""
    assert render.row_id_of("...", "..") == "..."
    assert render.row_id_of("", None) == ""


def test_row_links_in_the_table_are_percent_encoded(renderer: Renderer) -> None:
    rows = parse(renderer.experiment(experiment_page())).one("table", id="rows")
    cell = rows.one("tr", data_row_id="with/slash and space").one("td", data_col="row_id")
    assert cell.one("a").attrs["href"] == "/experiments/exp-1/rows/with%2Fslash%20and%20space"
    assert cell.one("a").text == "with/slash and space"


def test_row_ids_may_wrap_only_between_their_parts() -> None:
    """After "::" or "/", before "[": each part a span tables keep on one line (not mid-name,
    not at a "-")."""
    wrapped = render.breakable("tests/test_capitals.py::test_capital[<Paris-France>]")
    parts = ["tests/", "test_capitals.py::", "test_capital", "[&lt;Paris-France&gt;]"]
    assert str(wrapped) == "<wbr>".join(f'<span class="id-part">{part}</span>' for part in parts)
    assert str(render.breakable("plain-name")) == "plain-name"
    assert 'td[data-col="row_id"] .id-part' in render.stylesheet()


def test_row_links_carry_their_parts_and_keep_their_text(renderer: Renderer) -> None:
    html = renderer.experiment(experiment_page())
    link = '<a href="/experiments/exp-1/rows/with%2Fslash%20and%20space">'
    assert link + '<span class="id-part">with/</span><wbr><span class="id-part">slash' in html
    rows = parse(html).one("table", id="rows")
    cell = rows.one("tr", data_row_id="with/slash and space").one("td", data_col="row_id")
    assert cell.one("a").text == "with/slash and space"


# --- the experiments page ------------------------------------------------------------------------


def test_experiments_link_each_experiment_and_logout_only_with_a_token(renderer: Renderer) -> None:
    odd = ExperimentRef("exp/2", "odd one", "p")
    document = parse(renderer.experiments([card(), card(ref=odd)], logout=True))
    table = document.one("table", id="experiments")
    assert table.one("caption").text.strip()
    assert [tr.attrs["data-experiment-id"] for tr in table.all("tr", data_experiment_id=...)] == [
        "exp-1",
        "exp/2",
    ]
    link = table.one("tr", data_experiment_id="exp/2").one("a")
    assert (link.attrs["href"], link.text) == ("/experiments/exp%2F2", "odd one")
    assert all(th.attrs.get("scope") == "col" for th in table.one("thead").all("th"))
    logout = document.one("form", class_="logout")
    assert (logout.attrs["method"], logout.attrs["action"]) == ("post", "/logout")
    assert not parse(renderer.experiments([card()], logout=False)).all("form")
    empty = parse(renderer.experiments([], logout=False))
    assert not empty.all("table") and "No experiment" in empty.one("main").text


def test_the_experiments_page_has_a_form_to_compare_any_two(renderer: Renderer) -> None:
    other = ExperimentRef("exp/2", "older <run>", "proj & co")
    document = parse(renderer.experiments([card(), card(ref=other)], logout=False))
    form = document.one("form", id="compare-form")
    assert (form.attrs["method"], form.attrs["action"]) == ("get", "/compare")
    # What the form sends is the compare page's own link.
    assert ServeLinks().compare(other, card().ref).startswith(form.attrs["action"] + "?")
    sides = {}
    for name in ("a", "b"):
        select = form.one("select", name=name)
        label = form.one("label", for_=select.attrs["id"])
        assert label.text.strip()
        options = select.all("option")
        assert [o.attrs["value"] for o in options] == ["exp-1", "exp/2"]
        assert "older <run> · proj & co" in options[1].text
        (chosen,) = [o.attrs["value"] for o in options if "selected" in o.attrs]
        sides[name] = chosen
    # The newest against the one before it, unless the reader picks others.
    assert sides == {"a": "exp/2", "b": "exp-1"}
    assert form.one("button", type="submit")
    # One experiment: nothing to compare it with.
    assert not parse(renderer.experiments([card()], logout=False)).all("form")


# --- an experiment's page ------------------------------------------------------------------------


def labels_of(form: Node) -> dict[str, str]:
    """Each control's label text, by the control's name (a checkbox's by its value)."""
    found = {}
    for control in form.all("input") + form.all("select"):
        if control.attrs.get("type") == "hidden":
            continue
        key = control.attrs["name"]
        if control.attrs.get("type") == "checkbox":
            key = f"{key}={control.attrs['value']}"
        wrapping = [node for node in control.ancestors() if node.tag == "label"]
        named = form.all("label", for_=control.attrs.get("id", "-"))
        label = (wrapping or named or [None])[0]
        assert label is not None, f"{key} has no label"
        found[key] = label.text.strip()
    return found


def test_the_filters_form_shows_the_query_and_labels_every_control(renderer: Renderer) -> None:
    query = RowQuery(statuses=("failed", "error"), text=HOSTILE, score="accuracy", low=0.25,
                     high=0.75, sort="duration", descending=True)  # fmt: skip
    form = parse(renderer.experiment(experiment_page(query=query))).one("form", id="filters")
    assert (form.attrs["method"], form.attrs["action"]) == ("get", "/experiments/exp-1")
    boxes = form.all("input", type="checkbox", name="status")
    assert [box.attrs["value"] for box in boxes] == list(STATUSES)
    assert [box.attrs["value"] for box in boxes if "checked" in box.attrs] == ["failed", "error"]
    assert form.one("input", name="q").attrs["value"] == HOSTILE
    select = form.one("select", name="score")
    assert [o.attrs["value"] for o in select.all("option")] == ["", "accuracy"]
    assert [o.attrs["value"] for o in select.all("option", selected=...)] == ["accuracy"]
    assert form.one("input", name="min").attrs["value"] == "0.25"
    assert form.one("input", name="max").attrs["value"] == "0.75"
    # A new filter keeps the sort and starts at the first page.
    assert form.one("input", name="sort").attrs["value"] == "duration"
    assert form.one("input", name="order").attrs["value"] == "desc"
    assert not form.all("input", name="page")
    assert form.one("button", type="submit")
    labels = labels_of(form)
    assert set(labels) == {f"status={s}" for s in STATUSES} | {"q", "score", "min", "max"}
    assert all(labels.values()), labels


def test_the_rows_table_has_its_hooks_and_cells(renderer: Renderer) -> None:
    table = parse(renderer.experiment(experiment_page())).one("table", id="rows")
    assert "nightly" in table.one("caption").text
    keys = [th.attrs["data-sort-key"] for th in table.all("th", data_sort_key=...)]
    assert keys == [
        "row_id",
        "status",
        "version",
        "attempt",
        "duration",
        "tokens",
        "score:accuracy",
    ]
    for th in table.all("th", data_sort_key=...):
        assert th.attrs["scope"] == "col" and th.one("a").attrs["href"]
    body = table.one("tbody").all("tr")
    assert [(tr.attrs["data-row-id"], tr.attrs["data-status"]) for tr in body] == [
        ("plain", "passed"),
        ("with/slash and space", "failed"),
        (HOSTILE, "error"),
    ]
    cells = {td.attrs["data-col"]: td.text.strip() for td in body[0].all("td", data_col=...)}
    assert cells == {
        "row_id": "plain",
        "status": "passed",
        "version": "2",
        "attempt": "a1b2c3d4",
        "duration": "1.23 s",
        "tokens": "1,500",
        "score:accuracy": "0.500",
        "input": "what is 2+2",
    }
    missing = body[1].one("td", data_col="score:accuracy")
    assert missing.text.strip() == ""  # the row has no such score: empty, not 0
    assert "AssertionError: no" in body[1].one("td", data_col="row_id").text


def sort_headers(page: ExperimentPage) -> dict[str, Node]:
    table = parse(Renderer(ServeLinks()).experiment(page)).one("table", id="rows")
    return {th.attrs["data-sort-key"]: th for th in table.all("th", data_sort_key=...)}


def query_of(href: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(href).query)


def test_sort_headers_say_how_the_table_is_sorted_and_link_to_the_other_order() -> None:
    headers = sort_headers(experiment_page())
    assert {key: th.attrs["aria-sort"] for key, th in headers.items()} == {
        "row_id": "ascending",
        "status": "none",
        "version": "none",
        "attempt": "none",
        "duration": "none",
        "tokens": "none",
        "score:accuracy": "none",
    }
    assert query_of(headers["row_id"].one("a").attrs["href"]) == {"order": ["desc"]}
    filtered = RowQuery(statuses=("failed",), sort="score:accuracy", descending=True, page=3)
    headers = sort_headers(experiment_page(query=filtered))
    assert headers["score:accuracy"].attrs["aria-sort"] == "descending"
    assert headers["row_id"].attrs["aria-sort"] == "none"
    # Flipping the order, or a new column, keeps the filters and goes back to the first page.
    assert query_of(headers["score:accuracy"].one("a").attrs["href"]) == {
        "status": ["failed"],
        "sort": ["score:accuracy"],
    }
    assert query_of(headers["tokens"].one("a").attrs["href"]) == {
        "status": ["failed"],
        "sort": ["tokens"],
    }


def pager_of(page_number: int, pages: int) -> Node:
    query = RowQuery(text="x", page=page_number)
    html = Renderer(ServeLinks()).experiment(experiment_page(query=query, pages=pages))
    return parse(html).one("nav", id="pager")


def test_the_pager_links_the_pages_that_exist() -> None:
    first, middle, last, only = pager_of(1, 3), pager_of(2, 3), pager_of(3, 3), pager_of(1, 1)
    assert first.attrs["aria-label"] == "Pages"
    assert not first.all("a", rel="prev")
    assert query_of(first.one("a", rel="next").attrs["href"]) == {"q": ["x"], "page": ["2"]}
    assert query_of(middle.one("a", rel="prev").attrs["href"]) == {"q": ["x"]}
    assert query_of(middle.one("a", rel="next").attrs["href"]) == {"q": ["x"], "page": ["3"]}
    assert query_of(last.one("a", rel="prev").attrs["href"]) == {"q": ["x"], "page": ["2"]}
    assert not last.all("a", rel="next")
    assert not only.all("a")
    assert "Page 2 of 3" in middle.text


def test_the_row_count_says_which_rows_of_how_many(renderer: Renderer) -> None:
    second = experiment_page(query=RowQuery(page=2))
    assert parse(renderer.experiment(second)).one("p", id="row-count").text == (
        "Rows 51\N{EN DASH}53 of 812 matching (10,000 in all)"
    )
    none = experiment_page(rows=[], matched=0, pages=1)
    assert parse(renderer.experiment(none)).one("p", id="row-count").text == (
        "No rows match (10,000 in all)"
    )


def test_histograms_draw_one_bar_per_bin_as_tall_as_its_count(renderer: Renderer) -> None:
    figure = parse(renderer.experiment(experiment_page())).one("figure", class_="histogram")
    assert figure.attrs["data-score"] == "accuracy"
    svg = figure.one("svg")
    assert svg.attrs["role"] == "img" and "accuracy" in svg.attrs["aria-label"]
    bars = svg.all("rect", class_="bin")
    assert [int(bar.attrs["data-count"]) for bar in bars] == [0, 1, 4, 2, 0, 0, 0, 0, 0, 0]
    heights = [float(bar.attrs["height"]) for bar in bars]
    assert heights[2] == max(heights) > heights[3] == heights[2] / 2 > heights[1] > 0
    assert heights[0] == 0
    xs = [float(bar.attrs["x"]) for bar in bars]
    assert xs == sorted(xs) and len(set(xs)) == 10
    assert "mean 0.250 over 7 rows" in figure.one("figcaption").text


def test_attempts_and_the_compare_link(renderer: Renderer) -> None:
    document = parse(renderer.experiment(experiment_page()))
    attempts = document.one("table", id="attempts")
    assert [tr.attrs["data-attempt-id"] for tr in attempts.all("tr", data_attempt_id=...)] == [
        "a1b2c3d4e5f6",
        "ffff0000eeee",
    ]
    assert "not ended" in attempts.one("tr", data_attempt_id="ffff0000eeee").text
    assert not document.all("a", id="compare-link")
    with_baseline = experiment_page(card=card(baseline=BASELINE))
    link = parse(renderer.experiment(with_baseline)).one("a", id="compare-link")
    assert query_of(link.attrs["href"]) == {"a": ["exp-0"], "b": ["exp-1"]}


def test_the_report_can_render_the_rows_table_with_sort_buttons() -> None:
    html = (
        environment()
        .get_template("_rows_table.html")
        .render(links=HashLinks(), page=experiment_page(), sort_links=None)
    )
    headers = parse(html).all("th", data_sort_key=...)
    assert len(headers) == 7
    assert all(th.one("button").attrs["type"] == "button" and not th.all("a") for th in headers)


# --- a row's page ------------------------------------------------------------------------------


def test_a_row_shows_its_versions_and_each_field_beside_the_previous(renderer: Renderer) -> None:
    document = parse(renderer.row(row_page()))
    assert "with/slash and space" in document.one("h1").text
    versions = document.one("section", id="versions")
    assert versions.one("caption").text.strip()
    assert [tr.attrs["data-version"] for tr in versions.all("tr", data_version=...)] == ["2", "1"]
    assert "ValueError: bad" in versions.one("tr", data_version="2").text
    sides = document.one("section", id="sides").all("div", class_="side")
    assert [(s.attrs["data-field"], s.attrs["data-changed"]) for s in sides] == [
        ("input", "false"),
        ("output", "true"),
        ("expected", "false"),
    ]
    output = sides[1]
    assert output.one("pre", class_="latest").text == HOSTILE
    assert output.one("pre", class_="previous").text == "4"
    assert output.one(class_="changed-marker") and not sides[0].all(class_="changed-marker")
    assert "no previous version" in sides[2].one("pre", class_="previous").text
    assert [h.text for h in output.all("h4")] == ["Latest (version 2)", "Previous (version 1)"]
    assert "Traceback" in document.one("div", class_="error-box").text


def test_the_trace_nests_spans_in_their_parents_with_bars_on_one_axis(renderer: Renderer) -> None:
    trace = parse(renderer.row(row_page())).one("section", id="trace")
    spans = {node.attrs["data-span-id"]: node for node in trace.all("details", class_="span")}
    assert list(spans) == ["s1", "s2", "s3"]
    root, retrieve, call = spans["s1"], spans["s2"], spans["s3"]
    assert root.attrs["data-name"] == "test_answer"
    # Children are direct children of their parent's <details>; roots open, children closed.
    assert [c.attrs["data-span-id"] for c in root.children if c.tag == "details"] == ["s2", "s3"]
    assert retrieve.parent is root and call.parent is root
    assert "open" in root.attrs and "open" not in retrieve.attrs and "open" not in call.attrs
    assert call.classes == ["span", "error"] and root.classes == ["span"]
    for node in spans.values():
        assert node.children[0].tag == "summary"
        assert [c.tag for c in node.children if "span-detail" in c.classes] == ["div"]
    # A 2 s trace: the root spans it all, the call starts at 1 s and lasts 0.5 s.
    bars = {key: node.children[0].one("rect").attrs for key, node in spans.items()}
    assert (float(bars["s1"]["x"]), float(bars["s1"]["width"])) == (0, BAR_WIDTH)
    assert (float(bars["s3"]["x"]), float(bars["s3"]["width"])) == (BAR_WIDTH / 2, BAR_WIDTH / 4)
    assert "500 ms" in call.children[0].text
    detail = call.one("div", class_="span-detail")
    assert detail.one("table").one("th", scope="row").text == "gen_ai.request.model"
    events = detail.one("ul", class_="events").all("li", class_="event")
    assert [e.classes for e in events] == [["event"], ["event", "exception"]]
    assert HOSTILE in events[1].text and "timed out" in detail.text


def test_a_trace_less_row_says_so(renderer: Renderer) -> None:
    page = row_page(trace=Waterfall(roots=[], duration=0.0, spans=0))
    trace = parse(renderer.row(page)).one("section", id="trace")
    assert not trace.all("details") and "No trace" in trace.text


def test_judgments_show_reasoning_and_steps(renderer: Renderer) -> None:
    section = parse(renderer.row(row_page())).one("section", id="judgments")
    judgment = section.one("article", class_="judgment")
    assert judgment.attrs["data-judge"] == "factuality"
    assert "The answer matches <b>the</b> expected one." in judgment.text
    assert "0.750" in judgment.text and "small-model" in judgment.text
    step = judgment.one("ol", class_="steps").one("li")
    assert "llm.call" in step.text and "checked the call" in step.text
    none = parse(renderer.row(row_page(judgments=[]))).one("section", id="judgments")
    assert not none.all("article") and "No judge" in none.text


# --- compare, login, error ----------------------------------------------------------------------


def test_compare_keeps_the_order_it_is_given(renderer: Renderer) -> None:
    document = parse(renderer.compare(compare_page()))
    deltas = document.one("table", id="score-deltas")
    assert [td.text for td in deltas.one("tr", data_score="pass").all("td")][:3] == [
        "0.667",
        "0.667",
        "0.000",
    ]
    rows = document.one("table", id="compare").one("tbody").all("tr")
    assert [(tr.attrs["data-row-id"], tr.attrs["data-change"]) for tr in rows] == [
        ("r-down", "regressed"),
        ("r-up", "improved"),
        ("a", "unchanged"),
        ("new one", "only-b"),
        ("gone", "only-a"),
    ]
    assert rows[0].one("span", class_="delta").classes == ["delta", "down"]
    assert rows[0].one("span", class_="delta").text == "-1.000"
    assert rows[1].one("span", class_="delta").classes == ["delta", "up"]
    assert rows[0].one("span", class_="ab").text == "1.000 → 0.000"
    assert not rows[2].all(class_="delta")  # unchanged: no delta to read
    assert rows[3].one("span", class_="ab").text == "— → 1.000"
    # A row gone from B links to A's version of it.
    assert rows[4].one("a").attrs["href"] == "/experiments/exp-0/rows/gone"
    assert rows[3].one("a").attrs["href"] == "/experiments/exp-1/rows/new%20one"


def many_compared(count: int) -> list[CompareLine]:
    return [
        CompareLine(f"r{n:05d}", "unchanged", "passed", "passed", {}, {}, {}) for n in range(count)
    ]


def test_the_served_compare_page_shows_a_page_of_rows_with_a_pager(renderer: Renderer) -> None:
    big = replace(compare_page(), rows=many_compared(10_000))
    first = parse(renderer.compare(big))
    rows = first.one("table", id="compare").one("tbody").all("tr")
    assert [tr.attrs["data-row-id"] for tr in rows] == [f"r{n:05d}" for n in range(500)]
    pager = first.one("nav", id="compare-pager")
    assert pager.attrs["aria-label"] == "Pages"
    assert "Rows 1\N{EN DASH}500 of 10,000" in pager.text
    assert not pager.all("a", rel="prev")
    assert pager.one("a", rel="next").attrs["href"] == "/compare?a=exp-0&b=exp-1&page=2"
    middle = parse(renderer.compare(big, page_number=7))
    rows = middle.one("table", id="compare").one("tbody").all("tr")
    assert rows[0].attrs["data-row-id"] == "r03000" and len(rows) == 500
    pager = middle.one("nav", id="compare-pager")
    assert "Rows 3,001\N{EN DASH}3,500 of 10,000" in pager.text
    assert pager.one("a", rel="prev").attrs["href"] == "/compare?a=exp-0&b=exp-1&page=6"
    assert pager.one("a", rel="next").attrs["href"] == "/compare?a=exp-0&b=exp-1&page=8"
    # Beyond the last page: the last, as the rows page does.
    last = parse(renderer.compare(big, page_number=99)).one("nav", id="compare-pager")
    assert "Rows 9,501\N{EN DASH}10,000 of 10,000" in last.text and not last.all("a", rel="next")


def test_the_reports_compare_main_keeps_every_row_and_no_pager(renderer: Renderer) -> None:
    main = parse(renderer.compare_main(replace(compare_page(), rows=many_compared(501))))
    assert len(main.one("table", id="compare").one("tbody").all("tr")) == 501
    assert not main.all("nav", id="compare-pager")


@pytest.mark.parametrize("value", ["0", "-1", "two", "1_0", "\uff12", "1234567890", " "])
def test_a_compare_page_number_is_ascii_digits(value: str) -> None:
    if not value.strip():
        assert render.page_number(value) == 1
        return
    with pytest.raises(BadQuery, match=f"page {value!r} is not a page number"):
        render.page_number(value)


def test_a_compare_page_number_read() -> None:
    assert render.page_number(None) == 1
    assert render.page_number("12") == 12


def test_login_posts_the_token_and_where_to_go_next(renderer: Renderer) -> None:
    document = parse(renderer.login(next="/experiments/exp-1?page=2", error="Wrong token."))
    form = document.one("form", id="login")
    assert (form.attrs["method"], form.attrs["action"]) == ("post", "/login")
    assert form.one("input", name="token").attrs["type"] == "password"
    assert form.one("input", name="next").attrs["value"] == "/experiments/exp-1?page=2"
    assert labels_of(form) == {"token": "Token"}
    assert "Wrong token." in form.text
    assert "Wrong token" not in renderer.login(next="/", error=None)


def test_the_error_page_names_the_status(renderer: Renderer) -> None:
    document = parse(renderer.error(404, "No experiment exp-9."))
    assert document.one("h1").text == "404: Not Found"
    assert "No experiment exp-9." in document.one("main").text
    assert parse(renderer.error(599, "odd")).one("h1").text == "599: Error"


# --- filters and geometry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.0004, "0.4 ms"), (0.045, "45 ms"), (1.234, "1.23 s"), (123.4, "2 min 3 s"),
     (3725, "1 h 2 min"), (None, "—"), (-1.0, "0.0 ms")],
)  # fmt: skip
def test_durations_read_in_the_unit_that_fits(seconds: float | None, shown: str) -> None:
    assert render.duration(seconds) == shown


def test_numbers_times_scores_and_money_have_one_format_each() -> None:
    assert render.number(10_000) == "10,000"
    assert render.number(None) == "—"
    assert render.utc_time(1_796_200_203.0) == "2026-12-02 08:30:03Z"
    assert render.utc_time(float("nan")) == "—"
    assert render.score(0.5) == "0.500" and render.score(None) == ""
    assert (render.signed(0.125), render.signed(-0.05), render.signed(0.0001)) == (
        "+0.125",
        "-0.050",
        "0.000",
    )
    assert (render.trend(0.01), render.trend(-0.01), render.trend(0.0004)) == ("up", "down", "")
    assert render.money(1234.5) == "$1,234.5000"
    assert render.percent(2 / 3) == "66.7%"
    assert render.by_status({"weird": 1, "error": 2, "passed": 3}) == [
        ("passed", 3),
        ("error", 2),
        ("weird", 1),
    ]


def test_span_bars_stay_inside_the_trace() -> None:
    assert render.span_bar(0.5, 0.25, 1.0) == render.Bar(BAR_WIDTH / 2, BAR_WIDTH / 4)
    zero = render.span_bar(1.0, 0.0, 1.0)  # a zero-length span at the very end: still shown
    assert zero.width > 0 and zero.x + zero.width <= BAR_WIDTH
    assert render.span_bar(0.0, 0.0, 0.0) == render.Bar(0.0, BAR_WIDTH)


def test_the_stylesheet_and_script_ship_with_the_package() -> None:
    css = render.stylesheet()
    for selector in (".status-failed", "thead th", "details.span.error", "li.event.exception"):
        assert selector in css
    assert "position: sticky" in css
    script = render.static_text("evalrows.js")
    assert "data-trace" in script and "</script" not in script.lower()


def test_pages_with_nothing_in_them_still_render(renderer: Renderer) -> None:
    """An experiment with no rows, a row with one version and no metadata, a comparison of
    no rows: every optional part left out, nothing undefined."""
    bare = card(rows=0, statuses={}, pass_rate=None, means={}, attempts=0, last_attempt=None,
                tokens=None, cost=None)  # fmt: skip
    empty = experiment_page(card=bare, rows=[], matched=0, total=0, pages=1, score_names=[],
                            histograms=[], attempts=[])  # fmt: skip
    document = parse(renderer.experiment(empty))
    assert not document.all("figure") and not document.one("table", id="rows").one("tbody").all()
    assert [th.attrs["data-sort-key"] for th in document.all("th", data_sort_key=...)][-1] == (
        "tokens"
    )
    cells = parse(renderer.experiments([bare], logout=False)).all("td", class_="num")
    assert [td.text for td in cells] == ["0", "—", "—", "—"]  # rows, pass rate, tokens, cost
    one = version(1)
    alone = row_page(latest=one, versions=[one], metadata="", tags=[], judgments=[],
                     sides=[FieldSides("input", "x", None, changed=False)])  # fmt: skip
    row = parse(renderer.row(alone))
    assert not row.all("section", id="metadata") and not row.all(class_="error-box")
    assert [h.text for h in row.all("h4")] == ["Latest (version 1)", "Previous"]
    nothing = replace(compare_page(), rows=[], scores=[], counts={}, compared=0)
    compare = parse(renderer.compare(nothing))
    assert not compare.one("table", id="compare").one("tbody").all()
