"""The browser tests' fixtures: Debian's chromium driven by playwright, the seeded store, an
``evalrows serve`` over it with a token, and the reports ``evalrows report`` made of it.

Every page a test opens is watched: a console error, an uncaught exception, a failed request,
an HTTP error answer or a dialog (an injected ``alert``) fails the test at teardown, after a
full-page screenshot of it is kept in $EVALROWS_SCREENSHOTS (CI keeps that directory).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from support.servers import EvalrowsServer

from . import checks
from .seeding import Seeded, clean_env, report_command, seed
from .watching import INSTALL, Watched, chromium_path

# Read now: tests/conftest.py takes every EVALROWS_* variable away while a test runs.
SCREENSHOTS = os.environ.get("EVALROWS_SCREENSHOTS")

TOKEN = "evk-browser-tests"
WIDTH, HEIGHT = checks.WIDTH, 800


# -- the store, the server and the reports ----------------------------------------------------


@contextmanager
def built_once(root: Path, name: str) -> Iterator[Path]:
    """``root/name``, held by one xdist worker at a time (a file lock): the first to come
    builds there, the others wait and find it built."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield root / name


def shared_root(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory all xdist workers of this run share (the run's own without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(config, "workerinput") else base


@dataclass(frozen=True)
class Reports:
    capitals: Path  # 'capitals' against 'capitals-base'
    big: Path  # 10,000 rows

    def each(self, seeded: Seeded) -> list[tuple[Path, list[str]]]:
        return [
            (self.capitals, report_command(seeded.db, "capitals", self.capitals)),
            (self.big, report_command(seeded.db, "big", self.big)),
        ]


# Runs a command and then writes its exit code and stderr to the file named first: the
# reports are made in the background while the served pages are tested, and any worker
# can wait for them.
REPORT_RUNNER = """
import os, subprocess, sys
done = subprocess.run(sys.argv[2:], capture_output=True, text=True)
with open(sys.argv[1] + ".tmp", "w") as record:
    record.write(f"{done.returncode}\\n{done.stderr}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
"""
REPORT_TIMEOUT = 180.0


def report_record(report: Path) -> Path:
    return report.with_suffix(".done")


@pytest.fixture(scope="session")
def seeded(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    """The seeded store (see ``seeding``), built by one worker for all; that worker also
    starts making the reports of it, in the background."""
    started: list[subprocess.Popen[bytes]] = []
    with built_once(shared_root(pytestconfig, tmp_path_factory), "browser-seed") as directory:
        record = directory / "seeded.json"
        if not record.exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir()
            made = seed(directory)
            for report, command in reports_in(directory).each(made):
                runner = [sys.executable, "-c", REPORT_RUNNER, str(report_record(report))]
                started.append(subprocess.Popen([*runner, *command], env=clean_env()))
            record.write_text(made.to_json())
        found = Seeded.from_json(record.read_text())
    yield found
    for process in started:
        process.wait(timeout=REPORT_TIMEOUT)


def reports_in(directory: Path) -> Reports:
    return Reports(directory / "capitals.html", directory / "big.html")


@pytest.fixture(scope="session")
def reports(seeded: Seeded) -> Reports:
    """The reports of 'capitals' (its baseline named by its last attempt) and of 'big'."""
    made = reports_in(Path(seeded.db).parent)
    deadline = time.monotonic() + REPORT_TIMEOUT
    for report, command in made.each(seeded):
        record = report_record(report)
        while not record.exists():
            assert time.monotonic() < deadline, f"no report after {REPORT_TIMEOUT} s: {command}"
            time.sleep(0.1)
        code, _, stderr = record.read_text().partition("\n")
        assert code == "0", f"{' '.join(command)} exited {code}: {stderr}"
    return made


@pytest.fixture(scope="session")
def server(seeded: Seeded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvalrowsServer]:
    """``evalrows serve`` over the seeded store, with a token (one per worker). It must stop
    cleanly, with no traceback in its log."""
    log = tmp_path_factory.mktemp("serve") / "server.log"
    served = EvalrowsServer(Path(seeded.db), TOKEN, log)
    served.start()
    yield served
    served.stop()
    text = log.read_text() if log.exists() else ""
    assert served.exit_codes == [0], text
    assert "Traceback" not in text, text


# -- the browser and its pages ---------------------------------------------------------------


# Module-scoped, not session-scoped: while Playwright's sync driver is started, its event loop
# runs on the main thread, and a test of another module that calls asyncio.run() on the same
# xdist worker would fail. pytest finishes a module's fixtures before the next module's tests.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    driver = sync_playwright().start()
    yield driver
    driver.stop()


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless chromium, one per module's tests on each xdist worker. No chromium fails the
    tests (a skipped browser suite would hide breakage)."""
    path = chromium_path()
    if path is None:
        pytest.fail(INSTALL, pytrace=False)
    launched = playwright.chromium.launch(executable_path=path, headless=True)
    yield launched
    launched.close()


class Browsing:
    """The pages one test opens, each in a context of its own (1280 px wide)."""

    def __init__(self, browser: Browser, name: str, screenshots: Path) -> None:
        self.browser = browser
        self.name = name
        self.screenshots = screenshots
        self.opened: list[Watched] = []
        # Problems a test expects on purpose (an answer it asked for): matched and dropped.
        self.expected: list[str] = []

    def new_page(self, *, javascript: bool = True, token: str | None = TOKEN) -> Page:
        """A page; with ``token`` every request carries it as a bearer token (the pages
        accept one as the API does)."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        context = self.browser.new_context(
            viewport={"width": WIDTH, "height": HEIGHT},
            java_script_enabled=javascript,
            extra_http_headers=headers,
        )
        context.set_default_timeout(10_000)
        watched = Watched(context.new_page())
        watched.watch()
        self.opened.append(watched)
        return watched.page

    def snap(self, page: Page, label: str) -> None:
        """A screenshot of the page as it is now (teardown takes each page's last state)."""
        self.screenshots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(self.screenshots / f"{self.name}-{label}.png"), full_page=True)

    def requested(self) -> list[str]:
        """Every URL the test's pages asked for so far."""
        return [url for watched in self.opened for url in watched.requested]

    def close(self) -> list[str]:
        """Screenshot every page, close them; the problems seen, by page."""
        problems = []
        self.screenshots.mkdir(parents=True, exist_ok=True)
        for number, watched in enumerate(self.opened, start=1):
            suffix = "" if number == 1 else f"-{number}"
            path = self.screenshots / f"{self.name}{suffix}.png"
            try:
                if not watched.page.is_closed():
                    watched.page.screenshot(path=str(path), full_page=True)
            except PlaywrightError as exc:
                problems.append(f"no screenshot {path.name}: {exc.message}")
            finally:
                watched.page.context.close()
            for problem in watched.problems:
                if not any(re.search(pattern, problem) for pattern in self.expected):
                    problems.append(f"{watched.page.url}: {problem}")
        return problems


def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if SCREENSHOTS:
        return Path(SCREENSHOTS)
    return tmp_path_factory.getbasetemp() / "screenshots"


@pytest.fixture
def browsing(
    browser: Browser, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browsing]:
    """Opens pages for a test; at teardown screenshots them and fails on any problem seen."""
    module = (
        request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").removeprefix("the_")
    )
    name = re.sub(r"[^\w.-]+", "_", f"{module}-{request.node.name}")
    opened = Browsing(browser, name, screenshot_dir(tmp_path_factory))
    yield opened
    problems = opened.close()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def page(browsing: Browsing) -> Page:
    """A page with JavaScript on, whose requests carry the server's token."""
    return browsing.new_page()
