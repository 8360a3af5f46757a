"""Debian's chromium, and what may go wrong on a page: shared by the browser tests and
``scripts/screenshots``."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import ConsoleMessage, Dialog, Page, Request, Response

# Read at import: tests/conftest.py takes every EVALROWS_* variable away while a test runs.
CHROMIUM = os.environ.get("EVALROWS_CHROMIUM")
INSTALL = (
    f"no chromium at EVALROWS_CHROMIUM={CHROMIUM}"
    if CHROMIUM
    else "no chromium found (install it: apt-get install chromium fonts-dejavu-core, as "
    ".ci/run does; or name one in EVALROWS_CHROMIUM)"
)


def chromium_path() -> str | None:
    """The chromium the tests drive: $EVALROWS_CHROMIUM, Debian's, or one on PATH."""
    if CHROMIUM:
        return CHROMIUM if Path(CHROMIUM).exists() else None
    debian = Path("/usr/lib/chromium/chromium")
    if debian.exists():
        return str(debian)
    return shutil.which("chromium")


@dataclass
class Watched:
    """A page and what went wrong on it."""

    page: Page
    problems: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)  # every URL the page asked for

    def watch(self) -> None:
        self.page.on("request", lambda request: self.requested.append(request.url))
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("requestfailed", self._request_failed)
        self.page.on("response", self._response)
        self.page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            where = message.location.get("url", "")
            self.problems.append(f"console error: {message.text} ({where})")

    def _request_failed(self, request: Request) -> None:
        self.problems.append(f"request failed: {request.url}: {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.url}")

    def _dialog(self, dialog: Dialog) -> None:
        self.problems.append(f"dialog ({dialog.type}): {dialog.message}")
        dialog.dismiss()
