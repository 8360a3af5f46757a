"""What the browser tests check on a page, the same for a served page and for the report's
route to it: the tests differ only in how they get there.

Assertions that wait (playwright's ``expect``) poll the page, so they hold whether a filter
reloads the page (served) or redraws the table (report).
"""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

from .seeding import (
    BIG_ROWS,
    BREVITY,
    FAILED,
    HOSTILE_INPUT,
    HOSTILE_OUTPUT,
    IMPROVED,
    JUDGMENTS,
    LOOKUP_ERROR,
    REGRESSED,
    RERUN_ANSWER,
    RERUN_ROW,
    ROWS,
    big_row_status,
)

WIDTH = 1280  # the tests' window
ROW_LINES = "#rows tbody tr[data-row-id]"


# What a screen reader would miss on the page: a control with no name, a table with no
# caption or a column header with no scope, a picture with no words.
UNNAMED = """() => {
  const missing = [];
  const controls = "input:not([type=hidden]), select, textarea, button";
  for (const control of document.querySelectorAll(controls)) {
    const label = control.labels && control.labels.length ? control.labels[0].textContent : "";
    const own = control.tagName === "BUTTON" ? control.textContent : "";
    if (!(label || own || control.getAttribute("aria-label") || "").trim()) {
      missing.push(control.outerHTML.slice(0, 100));
    }
  }
  for (const table of document.querySelectorAll("table")) {
    if (!table.querySelector(":scope > caption")) missing.push(`table ${table.id}: no caption`);
  }
  for (const header of document.querySelectorAll("thead th:not([scope=col])")) {
    missing.push(`column header without scope: ${header.textContent.trim()}`);
  }
  for (const picture of document.querySelectorAll('svg[role="img"]:not([aria-label])')) {
    missing.push(`picture without a label: ${picture.outerHTML.slice(0, 100)}`);
  }
  return missing;
}"""


def common_hooks(page: Page) -> None:
    """What every page has: a language, a favicon that needs no request, a title, one main
    with one heading; and nothing a screen reader would miss."""
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator('link[rel="icon"]')).to_have_attribute("href", "data:,")
    expect(page).to_have_title(re.compile(r"\S"))
    expect(page.locator("main#main")).to_have_count(1)
    expect(page.locator("main#main h1")).to_have_count(1)
    assert page.evaluate(UNNAMED) == []


def row_ids(page: Page) -> list[str]:
    ids: list[str] = page.locator(ROW_LINES).evaluate_all(
        "rows => rows.map(row => row.dataset.rowId)"
    )
    return ids


def cells(page: Page, column: str) -> list[str]:
    texts: list[str] = page.locator(f'{ROW_LINES} td[data-col="{column}"]').evaluate_all(
        "cells => cells.map(cell => cell.textContent.trim())"
    )
    return texts


def submit_filters(page: Page) -> None:
    page.locator('#filters button[type="submit"]').click()


# -- an experiment's page ----------------------------------------------------------------------


def shows_every_row(page: Page) -> None:
    """The experiment page of 'capitals', unfiltered: every latest row, once."""
    common_hooks(page)
    expect(page.locator(ROW_LINES)).to_have_count(len(ROWS))
    assert sorted(row_ids(page)) == sorted(ROWS)
    expect(page.locator("#rows caption")).to_have_count(1)
    expect(page.locator("main#main h1")).to_contain_text("capitals")
    for name in ("brevity", "exact"):
        histogram = page.locator(f'figure.histogram[data-score="{name}"]')
        expect(histogram.locator('svg[role="img"]')).to_be_visible()


def filters_by_status(page: Page) -> None:
    page.locator('#filters input[name="status"][value="failed"]').check()
    submit_filters(page)
    expect(page.locator(ROW_LINES)).to_have_count(len(FAILED))
    assert sorted(row_ids(page)) == sorted(FAILED)
    assert cells(page, "status") == ["failed"] * len(FAILED)
    statuses = page.locator(ROW_LINES).evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert statuses == ["failed"] * len(FAILED)
    expect(page.locator("#row-count")).to_contain_text(str(len(FAILED)))
    expect(page.locator('#filters input[name="status"][value="failed"]')).to_be_checked()


def searches_text(page: Page) -> None:
    """Case-insensitive search over input, output and expected: only the rerun row said
    Toronto."""
    page.locator('#filters input[name="q"]').fill(RERUN_ANSWER.split(",")[0].lower())
    submit_filters(page)
    expect(page.locator(ROW_LINES)).to_have_count(1)
    assert row_ids(page) == [RERUN_ROW]


def filters_by_score_range(page: Page) -> None:
    low, high = 0.85, 0.95
    wanted = sorted(row for row, value in BREVITY.items() if low <= value <= high)
    page.locator('#filters select[name="score"]').select_option("brevity")
    page.locator('#filters input[name="min"]').fill(str(low))
    page.locator('#filters input[name="max"]').fill(str(high))
    submit_filters(page)
    expect(page.locator(ROW_LINES)).to_have_count(len(wanted))
    assert sorted(row_ids(page)) == wanted
    assert all(low <= float(text) <= high for text in cells(page, "score:brevity"))


def sorts_by_score_both_ways(page: Page, control: str) -> None:
    """Click the brevity header's ``control`` (a link served, a button in the report): the
    rows come in that score's order; click again: the other way round."""
    header = page.locator('#rows th[scope="col"][data-sort-key="score:brevity"]')
    expect(header).to_have_attribute("aria-sort", "none")
    seen: list[str] = []
    for _ in range(2):
        header.locator(control).click()
        other = re.compile("ascending|descending")
        if seen:
            other = re.compile({"ascending": "descending", "descending": "ascending"}[seen[-1]])
        expect(header).to_have_attribute("aria-sort", other)
        direction = header.get_attribute("aria-sort")
        assert direction is not None
        seen.append(direction)
        values = [float(text) for text in cells(page, "score:brevity")]
        wanted = sorted(BREVITY.values(), reverse=direction == "descending")
        assert values == wanted, direction
        # The rows moved with their cells: each row's id goes with its score.
        assert [BREVITY[row] for row in row_ids(page)] == wanted
    assert sorted(seen) == ["ascending", "descending"]


def shows_a_page_of_big(page: Page) -> None:
    """The 10,000-row experiment: a page of 50 rows, and the count says how many in all."""
    common_hooks(page)
    expect(page.locator(ROW_LINES)).to_have_count(50)
    expect(page.locator("#row-count")).to_contain_text("10,000")
    assert row_ids(page)[0] == "test_big.py::test_case[00000]"
    # A page, not all of them hidden away: the whole document holds few rows.
    assert page.locator("tr").count() < 200


def filters_big_by_status(page: Page) -> None:
    """The rows in error among the 10,000: a page of them, and the count of all."""
    errors = sum(big_row_status(number) == "error" for number in range(BIG_ROWS))
    page.locator('#filters input[name="status"][value="error"]').check()
    submit_filters(page)
    expect(page.locator("#row-count")).to_contain_text(f"{errors:,}")
    expect(page.locator(ROW_LINES)).to_have_count(50)
    statuses = page.locator(ROW_LINES).evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert statuses == ["error"] * 50


def pages_through_big(page: Page, *, back: bool = True) -> None:
    """The pager's next link shows rows 51-100; its previous link (followed when ``back``)
    the first 50 again."""
    pager = page.locator('#pager[aria-label="Pages"]')
    expect(pager.locator('a[rel="prev"]')).to_have_count(0)
    pager.locator('a[rel="next"]').click()
    second = f'{ROW_LINES}[data-row-id="test_big.py::test_case[00050]"]'
    expect(page.locator(second)).to_be_visible()
    ids = row_ids(page)
    assert ids == [f"test_big.py::test_case[{n:05d}]" for n in range(50, 100)]
    expect(page.locator("#row-count")).to_contain_text("51")
    previous = pager.locator('a[rel="prev"]')
    expect(previous).to_have_count(1)
    if back:
        previous.click()
        first = f'{ROW_LINES}[data-row-id="test_big.py::test_case[00000]"]'
        expect(page.locator(first)).to_be_visible()
        assert len(row_ids(page)) == 50


# -- a row's page ------------------------------------------------------------------------------


def span(page: Page, name: str) -> Locator:
    return page.locator(f'#trace details.span[data-name="{name}"]')


def shows_the_rerun_row(page: Page) -> None:
    """The rerun row: two versions, the output changed since the previous one, and its
    judgment."""
    common_hooks(page)
    versions = page.locator("#versions tr[data-version]")
    expect(versions).to_have_count(2)
    assert sorted(versions.evaluate_all("rows => rows.map(r => r.dataset.version)")) == ["1", "2"]
    output = page.locator('#sides .side[data-field="output"]')
    expect(output).to_have_attribute("data-changed", "true")
    expect(output.locator("pre.latest")).to_have_text(RERUN_ANSWER)
    expect(output.locator("pre.previous")).to_have_text("Toronto")
    question = page.locator('#sides .side[data-field="input"]')
    expect(question).to_have_attribute("data-changed", "false")
    expect(question.locator("pre.latest")).to_contain_text("Capital of Canada?")
    judge, (_, _, reasoning) = "tone", JUDGMENTS["tone"]
    expect(page.locator(f'#judgments article.judgment[data-judge="{judge}"]')).to_contain_text(
        reasoning
    )


def expands_the_trace(page: Page) -> None:
    """Roots open, children closed; a click on a summary opens its span, three levels deep;
    the span that caught an exception is marked and its exception event shown."""
    expect(page.locator("#trace details.span").first).to_have_attribute("open", "")
    agent = span(page, "agent")
    expect(agent).not_to_have_attribute("open", "")
    expect(agent.locator(":scope > .span-detail")).to_be_hidden()
    agent.locator(":scope > summary").click()
    expect(agent.locator(":scope > .span-detail")).to_be_visible()
    plan = span(page, "plan")
    expect(plan.locator(":scope > summary")).to_be_visible()
    expect(plan.locator(":scope > .span-detail")).to_be_hidden()
    plan.locator(":scope > summary").click()
    chat = span(page, "chat stand-in")
    expect(chat.locator(":scope > summary")).to_be_visible()
    chat.locator(":scope > summary").click()
    detail = chat.locator(":scope > .span-detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text("gen_ai.usage.input_tokens")
    lookup = span(page, "lookup")
    expect(lookup).to_have_class(re.compile(r"\berror\b"))
    expect(chat).not_to_have_class(re.compile(r"\berror\b"))
    lookup.locator(":scope > summary").click()
    exception = lookup.locator(":scope > .span-detail ul.events li.event.exception")
    expect(exception).to_be_visible()
    expect(exception).to_contain_text(LOOKUP_ERROR)


def shows_hostile_text_as_text(page: Page) -> None:
    """The row whose input is a script tag and whose output an image with an onerror: both
    shown as text (a dialog would fail the test at teardown), no element made of them."""
    common_hooks(page)
    expect(page.locator('#sides .side[data-field="input"] pre.latest')).to_have_text(HOSTILE_INPUT)
    expect(page.locator('#sides .side[data-field="output"] pre.latest')).to_have_text(
        HOSTILE_OUTPUT
    )
    assert page.locator('img[src="x"]').count() == 0
    executable = page.evaluate(
        "[...document.scripts].filter(s => !s.type || s.type.includes('javascript'))"
        ".some(s => s.textContent.includes('alert(1)'))"
    )
    assert executable is False


# -- compare -----------------------------------------------------------------------------------


def lists_regressions_first(page: Page) -> None:
    """'capitals' against 'capitals-base': the known regressions first, by row id, then the
    improvements."""
    common_hooks(page)
    lines = page.locator("#compare tbody tr[data-row-id]")
    expect(lines.first).to_be_visible()
    found = lines.evaluate_all("rows => rows.map(r => [r.dataset.rowId, r.dataset.change])")
    changes = [tuple(each) for each in found]
    known = [(row, "regressed") for row in REGRESSED] + [(row, "improved") for row in IMPROVED]
    assert changes[: len(known)] == known
    assert all(change not in ("regressed", "improved") for _, change in changes[len(known) :])
    assert [change for _, change in changes[-2:]] == ["only-b", "only-a"]
    expect(page.locator("#score-deltas")).to_contain_text("brevity")
