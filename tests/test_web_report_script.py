"""The one-file report's script in chromium, held to the server's own rules: the rows table it
draws (any filter, sort or page) is the markup the served page's views and templates make of
the same query, and it finds its way back from a row.

The pages as a user sees them, served and in the report, are tested in ``tests/browser``.
"""

from __future__ import annotations

import json
import unicodedata
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from browser.watching import INSTALL, chromium_path
from playwright.sync_api import Browser, Page, expect
from support.web_report import Seeded, seed, seed_texts, written

from pytest_evalrows.store.sqlite import SQLiteStore
from pytest_evalrows.web import views
from pytest_evalrows.web.render import environment
from pytest_evalrows.web.report import ReportLinks

# The parts of the experiment's page the script makes again for every page of rows.
REDRAWN = ("#rows", "#row-count", "#pager", "#filters")
SNAPSHOT = """(selectors) => selectors.map((selector) => {
  const copy = document.querySelector(selector).cloneNode(true);
  const walker = document.createTreeWalker(copy, NodeFilter.SHOW_TEXT);
  const blank = [];
  while (walker.nextNode()) if (!walker.currentNode.data.trim()) blank.push(walker.currentNode);
  for (const node of blank) node.remove();
  return copy.outerHTML;
})"""


def chromium() -> str:
    # The browser tests' lookup: it reads EVALROWS_CHROMIUM at import, before tests/conftest.py
    # takes the EVALROWS_* variables away from each test.
    found = chromium_path()
    if found is None:
        pytest.fail(INSTALL, pytrace=False)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium(), headless=True)
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def opened(browser: Browser, uri: str, *, script: bool = True) -> Iterator[Page]:
    """A page at ``uri`` in a context of its own; no console message or error on it."""
    context = browser.new_context(java_script_enabled=script)
    problems: list[str] = []
    try:
        page = context.new_page()
        page.on("console", lambda message: problems.append(message.text))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(uri)
        yield page
    finally:
        context.close()
    assert problems == []


def rows_shown(page: Page, count: int) -> None:
    # A locator's wait, not wait_for_function: the report's policy refuses a string's eval.
    expect(page.locator("#rows tbody tr")).to_have_count(count)


def test_the_script_draws_the_first_page_of_rows_as_the_template_does(
    tmp_path: Path, browser: Browser
) -> None:
    """The rows table, its count, pager and filters, as the script draws them from the index
    (any page), are the markup the template wrote (the first page, read without JavaScript):
    the script keeps the served page's DOM hooks because it makes the same elements."""
    seeded = seed(tmp_path / "rows.db", rows=55, varied=True)
    uri = written(seeded).as_uri()
    with opened(browser, uri, script=False) as page:
        by_template = page.evaluate(SNAPSHOT, REDRAWN)
    # Another page first, then back: the first page is the script's own drawing.
    with opened(browser, uri + "#/?page=2") as page:
        rows_shown(page, 5)
        page.evaluate("location.hash = '#/'")
        rows_shown(page, 50)
        by_script = page.evaluate(SNAPSHOT, REDRAWN)
    for selector, template, script in zip(REDRAWN, by_template, by_script, strict=True):
        assert script == template, selector


# Queries of the rows table: each filter, each kind of sort (rows lacking the value last,
# equal values in row id order), a page beyond the last.
QUERIES = (
    "status=failed&sort=duration&order=desc",
    "status=passed&status=error&sort=tokens",
    "sort=tokens&order=desc&page=2",
    "q=%22N%22%3A+1&sort=status",
    "score=judge%3Atone&min=0.4&max=0.6&sort=attempt&order=desc",
    "score=tone&min=0.0625&sort=score%3Atone&order=desc",
    "sort=score%3Ajudge%3Atone",
    "sort=version&order=desc&page=9",
    "q=nothing+like+it",
)


@pytest.fixture(scope="module")
def varied(tmp_path_factory: pytest.TempPathFactory) -> tuple[Seeded, str]:
    """70 rows of varied values and their report's URI (the query tests only read them)."""
    seeded = seed(tmp_path_factory.mktemp("varied") / "rows.db", rows=70, varied=True)
    return seeded, written(seeded).as_uri()


@pytest.mark.parametrize("query", QUERIES)
def test_the_script_selects_the_rows_the_server_selects(
    varied: tuple[Seeded, str], browser: Browser, query: str
) -> None:
    """The rows, count and pager the script draws for a query are what the served page's
    views and templates make of it (``views.experiment_page``): the same filters, the same
    order."""
    served = selected_as_served(*varied, browser, query)
    assert served or "nothing" in query  # each query but the last shows rows


def selected_as_served(seeded: Seeded, uri: str, browser: Browser, query: str) -> list[str]:
    """Asserts that the rows table, count and pager the report's script draws for ``query``
    are the markup the served page makes of it; the row ids it shows."""
    with SQLiteStore(seeded.db, create=False) as store:
        params = urllib.parse.parse_qs(query)
        served = views.experiment_page(store, seeded.experiment_id, views.parse_query(params))
        served = replace(served, card=replace(served.card, baseline=None))
    ref, shown = served.card.ref, served.query
    links = ReportLinks(ref)
    prev_link = next_link = None
    if shown.page > 1:
        prev_link = links.experiment(ref, views.query_params(shown, page=shown.page - 1))
    if shown.page < served.pages:
        next_link = links.experiment(ref, views.query_params(shown, page=shown.page + 1))
    markup = environment().get_template("_rows_table.html").render(
        page=served, links=links, sort_links=None
    ) + environment().get_template("_pager.html").render(
        page=served, prev_link=prev_link, next_link=next_link
    )
    with opened(browser, "about:blank", script=False) as page:
        page.set_content(markup)
        by_server = page.evaluate(SNAPSHOT, REDRAWN[:3])
        count = page.locator("#row-count").inner_text()
    with opened(browser, f"{uri}#/?{query}") as page:
        rows_shown(page, len(served.rows))
        # The count too: the first page the file holds may have as many rows as the query.
        expect(page.locator("#row-count")).to_have_text(count)
        by_script = page.evaluate(SNAPSHOT, REDRAWN[:3])
    for selector, server, script in zip(REDRAWN[:3], by_server, by_script, strict=True):
        assert script == server, selector
    return [line.row_id for line in served.rows]


# Rows for text search: a word the rows table's cells clip away (past character 200 of an
# output, of an input), and text that JavaScript's lower case does not fold as Python's
# casefold does (the server's search is a casefold: views.row_line's search_text).
FILLER = "and so on " * 25
DOTLESS = "\N{LATIN SMALL LETTER DOTLESS I}"
SEARCHED: dict[str, tuple[object, object, object]] = {
    "far-output": ("where is it?", FILLER + "Zanzibar", "an island"),
    "far-input": ({"prompt": FILLER, "place": "Zanzibar"}, "yes", "yes"),
    "near": ("where is it?", "Zanzibar, near", "an island"),
    "sharp-s": ("an address", "Hauptstraße 1", None),
    "double-s": ("an address", "HAUPTSTRASSE 2", None),
    "capital-sharp-s": ("an address", "HAUPTSTRAẞE 3", None),
    "dotless-i": ("a word", f"{DOTLESS}l{DOTLESS}k", None),
    "dotted-i": ("a word", "ilik", None),
    "greek": ("a name", "ΟΔΥΣΣΕΥΣ", "Οδυσσεύς"),
    "ligature": ("a word", "the ﬁnal answer", None),
    "plain": ("a word", "THE FINAL ANSWER", None),
}


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Seeded, str]:
    seeded = seed_texts(tmp_path_factory.mktemp("searched") / "rows.db", SEARCHED)
    return seeded, written(seeded).as_uri()


def search(query: str) -> str:
    return urllib.parse.urlencode({"q": query})


@pytest.mark.parametrize("query", ["zanzibar", "ZANZIBAR", "so on Zanzibar"])
def test_search_finds_a_word_past_the_clipped_cells_as_the_server_does(
    searched: tuple[Seeded, str], browser: Browser, query: str
) -> None:
    """The table's cells show 200 characters of a value; search looks in the whole of it,
    in the report as on the served page."""
    found = selected_as_served(*searched, browser, search(query))
    assert "far-output" in found
    if query != "so on Zanzibar":
        assert set(found) == {"far-input", "far-output", "near"}


@pytest.mark.parametrize(
    ("query", "rows"),
    [
        ("STRAẞE", {"sharp-s", "double-s", "capital-sharp-s"}),  # casefold: "strasse"
        ("hauptstrasse", {"sharp-s", "double-s", "capital-sharp-s"}),
        ("Straße 1", {"sharp-s"}),
        ("ILIK", {"dotted-i"}),  # casefold keeps a dotless i
        (f"{DOTLESS}l{DOTLESS}k", {"dotless-i"}),
        ("οδυσσευς", {"greek"}),  # a final sigma folds to sigma
        ("ΣΕΎΣ", {"greek"}),
        ("ﬁnal", {"ligature", "plain"}),
    ],
)
def test_search_folds_case_as_the_server_does(
    searched: tuple[Seeded, str], browser: Browser, query: str, rows: set[str]
) -> None:
    assert set(selected_as_served(*searched, browser, search(query))) == rows


def test_the_scripts_case_folding_is_pythons_casefold(
    searched: tuple[Seeded, str], browser: Browser
) -> None:
    """For every character both this Python's and the browser's Unicode tables know (the
    comment of report_rows.js's ``folded`` says why only those), and for words whose last
    letter folds by its place (a final sigma)."""
    characters = [
        chr(point)
        for point in range(0x110000)
        if unicodedata.category(chr(point)) not in ("Cn", "Co", "Cs")
    ]
    words = [
        "ὈΔΥΣΣΕΎΣ ΟΔΥΣΣΕΥΣ.",
        "Σίσυφος",
        "STRAẞE Straße",
        f"{DOTLESS}I İi",
        "ﬁnal ﬀ \N{LATIN SMALL LETTER LONG S} µ",
    ]
    with opened(browser, searched[1]) as page:
        folded = page.evaluate(
            """(texts) => {
              const data = JSON.parse(document.getElementById("rows-data").textContent);
              const { folded } = evalrowsRows(data);
              return texts.map((text) => (/^\\p{Cn}$/u.test(text) ? null : folded(text)));
            }""",
            characters + words,
        )
    unknown = sum(fold is None for fold in folded)
    assert unknown < len(characters) // 100  # the browser knows nearly all of them
    wrong = {
        text: fold
        for text, fold in zip(characters + words, folded, strict=True)
        if fold is not None and fold != text.casefold()
    }
    assert wrong == {}


def test_back_from_a_row_returns_to_the_same_rows_at_the_same_place(
    varied: tuple[Seeded, str], browser: Browser
) -> None:
    _, uri = varied
    with opened(browser, f"{uri}#/?sort=duration&order=desc") as page:
        page.set_viewport_size({"width": 1000, "height": 500})
        links = page.locator("#rows tbody tr td[data-col=row_id] a")
        link = links.nth(45)
        opened_row = link.inner_text()
        link.scroll_into_view_if_needed()
        place = page.evaluate("scrollY")
        assert place > 0
        link.click()
        page.wait_for_function(f"document.title.startsWith({json.dumps(opened_row)})")
        assert page.locator("main h1").count() == 1
        page.go_back()
        rows_shown(page, 50)
        assert page.evaluate("location.hash") == "#/?sort=duration&order=desc"
        assert page.evaluate("scrollY") == place
        assert links.nth(45).inner_text() == opened_row


@pytest.mark.parametrize(
    ("query", "bad"),
    [
        ("status=bogus", {"status": ["bogus"]}),
        ("score=nope&min=0.5", {"score": ["nope"], "min": ["0.5"]}),
        ("sort=score%3Anope", {"sort": ["score:nope"]}),
        ("min=0.5", {"min": ["0.5"]}),
        ("page=0", {"page": ["0"]}),
    ],
)
def test_a_bad_query_says_what_the_server_says_and_shows_every_row(
    varied: tuple[Seeded, str], browser: Browser, query: str, bad: dict[str, list[str]]
) -> None:
    seeded, uri = varied
    with SQLiteStore(seeded.db, create=False) as store, pytest.raises(views.BadQuery) as said:
        views.experiment_page(store, seeded.experiment_id, views.parse_query(bad))
    with opened(browser, f"{uri}#/?{query}") as page:
        rows_shown(page, 50)
        note = page.locator("#query-error").inner_text()
        assert note == f"{said.value}; showing every row instead."
        assert " of 70 matching " in page.locator("#row-count").inner_text()


def test_the_comparison_shows_regressions_first_and_a_baseline_row_is_said_to_be_elsewhere(
    varied: tuple[Seeded, str], browser: Browser
) -> None:
    _, uri = varied
    with opened(browser, uri) as page:
        page.locator("#compare-link").click()
        page.wait_for_selector("#compare")
        changes = page.locator("#compare tbody tr").evaluate_all(
            "rows => rows.map(row => row.dataset.change)"
        )
        assert changes[0] == "regressed"
        assert changes[-1] == "only-a"
        assert page.title() == "now against base · evalrows"
        page.locator('#compare tr[data-row-id="gone"] a').click()
        page.wait_for_function(
            "document.querySelector('main h1').textContent === 'Not in this report'"
        )
        assert (
            "Row gone of experiment base is not in this report" in page.locator("main").inner_text()
        )
        page.go_back()
        page.wait_for_selector("#compare")
        assert page.locator("#compare tbody tr").count() == len(changes)
