"""The watch every browser test relies on: what it must catch on a page, it catches."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser, Route

from .conftest import Browsing

BROKEN = """<!doctype html><html lang="en"><title>broken</title>
<script>
console.error("logged");
alert("injected");
</script>
<script>throw new Error("uncaught");</script>
<img src="/no-such-image.png">
"""


def answer(route: Route) -> None:
    """A made-up site: the broken page, and a 404 for anything else."""
    if route.request.url.endswith("/broken"):
        route.fulfill(body=BROKEN, content_type="text/html")
    else:
        route.fulfill(status=404, body="no such thing")


def test_the_watch_catches_console_errors_exceptions_dialogs_and_error_answers(
    browser: Browser, tmp_path: Path
) -> None:
    watching = Browsing(browser, "watch", tmp_path)
    page = watching.new_page()
    page.route("http://watch.test/**", answer)
    page.goto("http://watch.test/broken")
    problems = "\n".join(watching.close())
    assert "console error: logged" in problems
    assert "dialog (alert): injected" in problems
    assert "page error: uncaught" in problems
    assert "HTTP 404: http://watch.test/no-such-image.png" in problems
    assert (tmp_path / "watch.png").exists()
