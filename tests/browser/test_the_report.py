"""The one-file report ``evalrows report`` writes, opened from disk in headless chromium: the
same checks as the served pages, through the report's hash routes."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from . import checks
from .conftest import Browsing, Reports
from .seeding import HOSTILE_ROW, RERUN_ROW


def open_report(page: Page, report: Path, route: str = "#/") -> None:
    page.goto(report.as_uri() + route)


def open_row(page: Page, row_id: str) -> None:
    """From the rows table to the row's page, by its link."""
    page.locator(f'{checks.ROW_LINES}[data-row-id="{row_id}"] td[data-col="row_id"] a').click()
    expect(page).to_have_url(re.compile(r"#/rows/"))
    expect(page.locator("#versions")).to_be_visible()


def test_the_report_shows_every_row_and_filters_by_status(
    browsing: Browsing, page: Page, reports: Reports
) -> None:
    open_report(page, reports.capitals)
    checks.shows_every_row(page)
    checks.filters_by_status(page)
    open_row(page, RERUN_ROW)
    page.locator("#main a", has_text="capitals").first.click()
    expect(page.locator(checks.ROW_LINES).first).to_be_visible()
    # One file: the page asked for nothing but itself (no script, style or data elsewhere).
    assert {url.partition("#")[0] for url in browsing.requested()} == {reports.capitals.as_uri()}


def test_the_report_searches_text(page: Page, reports: Reports) -> None:
    open_report(page, reports.capitals)
    checks.searches_text(page)


def test_the_report_filters_by_a_score_range(page: Page, reports: Reports) -> None:
    open_report(page, reports.capitals)
    checks.filters_by_score_range(page)


def test_the_report_sorts_by_a_score_both_ways(page: Page, reports: Reports) -> None:
    open_report(page, reports.capitals)
    checks.sorts_by_score_both_ways(page, "button")


def test_the_reports_row_page_shows_its_versions_and_a_trace_that_expands(
    browsing: Browsing, page: Page, reports: Reports
) -> None:
    open_report(page, reports.capitals)
    open_row(page, RERUN_ROW)
    checks.shows_the_rerun_row(page)
    checks.expands_the_trace(page)
    page.go_back()
    expect(page.locator(checks.ROW_LINES).first).to_be_visible()
    # The row's address opens it in a fresh window too (a link to it in a CI log).
    route = page.locator(f'tr[data-row-id="{RERUN_ROW}"] td[data-col="row_id"] a').get_attribute(
        "href"
    )
    assert route is not None and route.startswith("#/rows/")
    fresh = browsing.new_page()
    open_report(fresh, reports.capitals, route)
    checks.shows_the_rerun_row(fresh)


def test_the_report_shows_hostile_text_as_text(page: Page, reports: Reports) -> None:
    open_report(page, reports.capitals)
    open_row(page, HOSTILE_ROW)
    checks.shows_hostile_text_as_text(page)


def test_the_reports_compare_view_lists_the_known_regressions_first(
    page: Page, reports: Reports
) -> None:
    open_report(page, reports.capitals, "#/compare")
    checks.lists_regressions_first(page)


def test_a_10000_row_report_shows_a_page_of_rows_and_pages_on(page: Page, reports: Reports) -> None:
    open_report(page, reports.big)
    checks.shows_a_page_of_big(page)
    checks.pages_through_big(page)
    checks.filters_big_by_status(page)
    open_row(page, "test_big.py::test_case[00050]")  # in error: among the filtered rows
    expect(page.locator("#versions tr[data-version]")).to_have_count(1)
    checks.common_hooks(page)


def test_without_javascript_the_report_still_shows_its_first_rows(
    browsing: Browsing, reports: Reports
) -> None:
    page = browsing.new_page(javascript=False)
    open_report(page, reports.big)
    expect(page.locator(checks.ROW_LINES)).to_have_count(50)
    expect(page.locator("#row-count")).to_contain_text("10,000")


def test_the_reports_views_fit_a_1280_px_window(page: Page, reports: Reports) -> None:
    """No view of the report scrolls sideways at 1280 px."""
    open_report(page, reports.capitals)
    expect(page.locator(checks.ROW_LINES).first).to_be_visible()
    views = {"#/": page.evaluate("document.documentElement.scrollWidth")}
    open_row(page, RERUN_ROW)
    views["#/rows/"] = page.evaluate("document.documentElement.scrollWidth")
    open_report(page, reports.capitals, "#/compare")
    expect(page.locator("#compare tbody tr").first).to_be_visible()
    views["#/compare"] = page.evaluate("document.documentElement.scrollWidth")
    wide = {route: width for route, width in views.items() if width > checks.WIDTH}
    assert not wide, wide
