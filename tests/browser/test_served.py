"""The pages ``evalrows serve`` serves, in headless chromium, over the seeded store."""

from __future__ import annotations

import re
from urllib.parse import quote

from playwright.sync_api import Page, expect
from support.servers import EvalrowsServer

from . import checks
from .conftest import TOKEN, Browsing
from .seeding import HOSTILE_ROW, RERUN_ROW, ROWS, Seeded


def experiment_url(server: EvalrowsServer, experiment_id: str) -> str:
    return f"{server.url}/experiments/{experiment_id}"


def row_url(server: EvalrowsServer, experiment_id: str, row_id: str) -> str:
    return f"{experiment_url(server, experiment_id)}/rows/{quote(row_id, safe='')}"


def test_the_login_form_sets_a_cookie_every_page_then_opens_with(
    browsing: Browsing, server: EvalrowsServer, seeded: Seeded
) -> None:
    """No token in the browser: a page sends it to the login form, which, given the token,
    sets the session cookie and goes on to the page asked for; other pages open with it."""
    page = browsing.new_page(token=None)
    wanted = experiment_url(server, seeded.capitals)
    page.goto(wanted)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    checks.common_hooks(page)
    browsing.snap(page, "login")
    form = page.locator('form#login[method="post"][action="/login"]')
    expect(form.locator('input[type="hidden"][name="next"]')).to_have_count(1)
    form.locator('input[type="password"][name="token"]').fill(TOKEN)
    form.locator('input[type="password"][name="token"]').press("Enter")
    expect(page).to_have_url(wanted)
    expect(page.locator(checks.ROW_LINES)).to_have_count(len(ROWS))
    cookies = page.context.cookies()
    assert cookies, "no cookie set"
    assert all(cookie["httpOnly"] for cookie in cookies), cookies
    page.goto(f"{wanted}/compare")
    checks.lists_regressions_first(page)
    # Logging out ends it: the cookie is gone and a page asks for the login again.
    page.goto(server.url + "/")
    page.locator('form.logout[method="post"] button').click()
    expect(page).to_have_url(re.compile(r"/login"))
    page.goto(wanted)
    expect(page.locator("form#login")).to_be_visible()


def test_a_wrong_token_stays_on_the_login_form(browsing: Browsing, server: EvalrowsServer) -> None:
    page = browsing.new_page(token=None)
    # The form's answer to a wrong token is an error status: expected here, nowhere else.
    browsing.expected += [r"HTTP 40[13]", r"status of 40[13]"]
    page.goto(server.url + "/")
    page.locator('input[name="token"]').fill("not-the-token")
    page.locator('input[name="token"]').press("Enter")
    expect(page.locator("form#login")).to_be_visible()
    expect(page.locator("#experiments")).to_have_count(0)
    assert page.context.cookies() == []


def test_the_experiments_page_lists_each_experiment_with_a_link(
    browsing: Browsing, page: Page, server: EvalrowsServer, seeded: Seeded
) -> None:
    page.goto(server.url + "/")
    checks.common_hooks(page)
    browsing.snap(page, "experiments")
    lines = page.locator("#experiments tbody tr[data-experiment-id]")
    expect(lines).to_have_count(3)
    found = lines.evaluate_all("rows => rows.map(r => r.dataset.experimentId)")
    assert sorted(found) == sorted([seeded.capitals, seeded.base, seeded.big])
    expect(page.locator(f'#experiments tr[data-experiment-id="{seeded.big}"]')).to_contain_text(
        "10,000"
    )
    page.locator(f'#experiments tr[data-experiment-id="{seeded.capitals}"] a').first.click()
    expect(page).to_have_url(experiment_url(server, seeded.capitals))
    checks.shows_every_row(page)


def test_the_experiment_page_filters_by_status(
    browsing: Browsing, page: Page, server: EvalrowsServer, seeded: Seeded
) -> None:
    page.goto(experiment_url(server, seeded.capitals))
    checks.shows_every_row(page)
    checks.filters_by_status(page)
    expect(page).to_have_url(re.compile(r"[?&]status=failed"))
    # No CDN: the page and its style and script come from the server alone.
    requested = browsing.requested()
    assert all(url.startswith(server.url + "/") for url in requested), requested
    assert any(url.endswith(".css") for url in requested), requested


def test_the_experiment_page_searches_text(
    page: Page, server: EvalrowsServer, seeded: Seeded
) -> None:
    page.goto(experiment_url(server, seeded.capitals))
    checks.searches_text(page)


def test_the_experiment_page_filters_by_a_score_range(
    page: Page, server: EvalrowsServer, seeded: Seeded
) -> None:
    page.goto(experiment_url(server, seeded.capitals))
    checks.filters_by_score_range(page)


def test_the_experiment_page_sorts_by_a_score_both_ways(
    page: Page, server: EvalrowsServer, seeded: Seeded
) -> None:
    page.goto(experiment_url(server, seeded.capitals))
    checks.sorts_by_score_both_ways(page, "a")


def test_a_10000_row_experiment_shows_a_page_of_rows_and_pages_on(
    page: Page, server: EvalrowsServer, seeded: Seeded
) -> None:
    page.goto(experiment_url(server, seeded.big))
    checks.shows_a_page_of_big(page)
    # Each 10,000-row page costs the server a read of them all: going back and filtering
    # them are left to the report's test (the served filters are tested on 'capitals').
    checks.pages_through_big(page, back=False)


def test_the_row_page_shows_versions_sides_judgments_and_a_trace_that_expands(
    page: Page, server: EvalrowsServer, seeded: Seeded
) -> None:
    page.goto(experiment_url(server, seeded.capitals))
    page.locator(f'tr[data-row-id="{RERUN_ROW}"] td[data-col="row_id"] a').click()
    expect(page).to_have_url(row_url(server, seeded.capitals, RERUN_ROW))
    checks.shows_the_rerun_row(page)
    checks.expands_the_trace(page)


def test_hostile_text_is_shown_as_text(page: Page, server: EvalrowsServer, seeded: Seeded) -> None:
    page.goto(experiment_url(server, seeded.capitals))
    expect(page.locator(f'tr[data-row-id="{HOSTILE_ROW}"]')).to_be_visible()
    page.goto(row_url(server, seeded.capitals, HOSTILE_ROW))
    checks.shows_hostile_text_as_text(page)


def test_the_compare_view_lists_the_known_regressions_first(
    page: Page, server: EvalrowsServer, seeded: Seeded
) -> None:
    page.goto(experiment_url(server, seeded.capitals))
    page.locator("a#compare-link").click()
    # Against its baseline: either URL of that view.
    against_baseline = re.escape(f"{experiment_url(server, seeded.capitals)}/compare")
    named = re.escape(f"{server.url}/compare?a={seeded.base}&b={seeded.capitals}")
    expect(page).to_have_url(re.compile(f"^({against_baseline}|{named})$"))
    checks.lists_regressions_first(page)


def test_the_experiments_page_compares_any_two_experiments(
    page: Page, server: EvalrowsServer, seeded: Seeded
) -> None:
    page.goto(server.url + "/")
    form = page.locator('form#compare-form[method="get"]')
    form.locator('select[name="a"]').select_option(seeded.base)
    form.locator('select[name="b"]').select_option(seeded.capitals)
    form.locator('button[type="submit"]').click()
    expect(page).to_have_url(f"{server.url}/compare?a={seeded.base}&b={seeded.capitals}")
    checks.lists_regressions_first(page)


def test_without_javascript_the_served_pages_show_filter_and_expand(
    browsing: Browsing, server: EvalrowsServer, seeded: Seeded
) -> None:
    page = browsing.new_page(javascript=False)
    page.goto(experiment_url(server, seeded.capitals))
    checks.shows_every_row(page)
    checks.filters_by_status(page)
    page.goto(row_url(server, seeded.capitals, RERUN_ROW))
    checks.shows_the_rerun_row(page)
    checks.expands_the_trace(page)  # <details> open by themselves


def test_the_main_pages_fit_a_1280_px_window(
    browsing: Browsing, page: Page, server: EvalrowsServer, seeded: Seeded
) -> None:
    """No page scrolls sideways at 1280 px (a wide table scrolls in its own box)."""
    capitals = experiment_url(server, seeded.capitals)
    wide = []
    for url in (
        server.url + "/",
        capitals,
        row_url(server, seeded.capitals, RERUN_ROW),
        f"{capitals}/compare",
    ):
        page.goto(url)
        checks.common_hooks(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > checks.WIDTH:
            wide.append(f"{url}: {width} px")
            browsing.snap(page, f"wide-{len(wide)}")
    assert not wide, wide
