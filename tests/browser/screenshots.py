"""The README's screenshots of the web view, from the browser tests' seeded store: run by
``scripts/screenshots`` (``python -m browser.screenshots [--out DIR]`` from tests/).

Each page is opened in headless chromium 1280 px wide and cut at a height that shows its
main parts; a page that logs an error stops the script.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Browser, Page, sync_playwright
from support.servers import EvalrowsServer

from .seeding import RERUN_ROW, make_report, seed
from .watching import INSTALL, Watched, chromium_path

TOKEN = "evk-screenshots"
WIDTH = 1280
OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def nothing(page: Page) -> None:
    pass


def open_trace(page: Page) -> None:
    """The trace's model call opened, so its token counts show."""
    for name in ("agent", "plan", "chat stand-in"):
        page.locator(f'#trace details.span[data-name="{name}"] > summary').first.click()


@dataclass(frozen=True)
class Shot:
    name: str
    url: str
    height: int  # at most: a shorter page is taken whole
    prepare: Callable[[Page], None] = nothing
    token: bool = True


def take(browser: Browser, shot: Shot, out: Path) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"} if shot.token else None
    context = browser.new_context(
        viewport={"width": WIDTH, "height": 800},
        extra_http_headers=headers,
        color_scheme="light",
    )
    try:
        watched = Watched(context.new_page())
        watched.watch()
        page = watched.page
        page.goto(shot.url, wait_until="networkidle")
        shot.prepare(page)
        page.wait_for_load_state("networkidle")
        height = min(shot.height, int(page.evaluate("document.documentElement.scrollHeight")))
        path = out / f"{shot.name}.png"
        clip = {"x": 0, "y": 0, "width": WIDTH, "height": height}
        page.screenshot(path=str(path), full_page=True, clip=clip)  # type: ignore[arg-type]
        if watched.problems:
            raise SystemExit(f"screenshots: {shot.url}: {watched.problems}")
        print(f"{path} ({WIDTH}x{height})")
    finally:
        context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT}")
    args = parser.parse_args()
    chromium = chromium_path()
    if chromium is None:
        raise SystemExit(f"screenshots: {INSTALL}")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seeded = seed(root)
        # The report of the 10,000 rows: one file that pages them.
        report = root / "big.html"
        made = make_report(seeded.db, "big", report)
        if made.returncode != 0:
            raise SystemExit(f"screenshots: evalrows report failed: {made.stderr}")
        server = EvalrowsServer(Path(seeded.db), TOKEN, root / "server.log")
        server.start()
        try:
            capitals = f"{server.url}/experiments/{seeded.capitals}"
            shots = [
                Shot("experiments", f"{server.url}/", 520),
                Shot("experiment", capitals, 1500),
                Shot("row", f"{capitals}/rows/{quote(RERUN_ROW, safe='')}", 2200, open_trace),
                Shot("compare", f"{capitals}/compare", 1100),
                Shot("report", report.as_uri() + "#/", 1500, token=False),
            ]
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=chromium, headless=True)
                try:
                    for shot in shots:
                        take(browser, shot, args.out)
                finally:
                    browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
