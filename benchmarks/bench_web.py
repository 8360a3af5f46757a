"""The web view of a 10,000-row experiment: how long its page takes to load in a browser.

    python benchmarks/bench_web.py [--rows 10000] [--rounds 10] [--limit 2.0]

Writes an experiment of N rows into a fresh SQLite store, starts `evalrows serve` over it
(with a token) and makes its one-file report (`evalrows report`), then opens each page in
headless chromium (Debian's, through playwright) ROUNDS times, each time in a fresh browser
context (no cache), interleaved so both see the same machine load:
  served     the experiment's page served by `evalrows serve`
  report     the report file, opened from disk
  served row / report row   a row's page (served; the report's route to it, inflated on demand)
For each it prints, in the browser's own clock from the start of the navigation, when the load
event ended and when the first page of rows (50) was in the table, as median (min - max).
Exits 1 when the median of the later of the two exceeds --limit seconds on either experiment
page, or when a page shows other than one page of rows, or logs an error.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from common import clean_env
from playwright.sync_api import Browser, Page, sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from browser import seeding
from browser.watching import INSTALL, chromium_path
from support.servers import EvalrowsServer

from pytest_evalrows.store.sqlite import SQLiteStore

TOKEN = "bench-web"
ROWS = "#rows tbody tr[data-row-id]"
# Put in every page before its own scripts: notes the time since the navigation started (ms)
# when the page first holds COUNT elements matching SELECTOR (the rows table's first page,
# or a row page's versions), as the parser or a script puts them in.
WATCH = """
(() => {
  const observer = new MutationObserver(() => {
    if (document.querySelectorAll(SELECTOR).length >= COUNT) {
      window.benchThere = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document, {childList: true, subtree: true});
})();
"""
LOADED = "performance.getEntriesByType('navigation')[0].loadEventEnd"


def open_page(browser: Browser, *, token: str | None, row: bool) -> tuple[Page, list[str]]:
    """A page in a fresh context, watched for its rows, and the errors it logs."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, extra_http_headers=headers
    )
    selector, count = ("#versions tr[data-version]", 1) if row else (ROWS, 50)
    context.add_init_script(WATCH.replace("SELECTOR", repr(selector)).replace("COUNT", str(count)))
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, errors


def measure(browser: Browser, url: str, *, token: str | None, row: bool) -> tuple[float, float]:
    """Seconds from the start of the navigation to the load event's end, and to the rows
    (or, for a row's page, its versions) being there."""
    page, errors = open_page(browser, token=token, row=row)
    try:
        page.goto(url, wait_until="load")
        there = float(page.wait_for_function("() => window.benchThere").json_value()) / 1000
        loaded = float(page.evaluate(LOADED)) / 1000
        if not row and page.locator(ROWS).count() != 50:
            raise SystemExit(f"bench_web: {url} shows {page.locator(ROWS).count()} rows, not 50")
        if errors:
            raise SystemExit(f"bench_web: {url} logged errors: {errors}")
        return loaded, there
    finally:
        page.context.close()


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s ({min(values):.3f} - {max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=seeding.BIG_ROWS)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--limit", type=float, default=2.0, help="seconds (default 2.0)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = root / "big.db"
        start = time.perf_counter()
        with SQLiteStore(db) as store:
            experiment = seeding.write_big(store, "bench", args.rows)
        print(f"{args.rows} rows written in {time.perf_counter() - start:.1f} s")
        report = root / "big.html"
        start = time.perf_counter()
        made = subprocess.run(
            seeding.report_command(str(db), "big", report),
            env=clean_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0:
            raise SystemExit(f"bench_web: evalrows report failed: {made.stderr}")
        print(
            f"evalrows report: {time.perf_counter() - start:.1f} s, "
            f"{report.stat().st_size / 2**20:.1f} MiB"
        )
        server = EvalrowsServer(db, TOKEN, root / "server.log")
        server.start()
        try:
            served = f"{server.url}/experiments/{experiment}"
            row_id = "test_big.py::test_case[00007]"
            targets = {
                "served": (served, TOKEN, False),
                "report": (report.as_uri() + "#/", None, False),
                "served row": (f"{served}/rows/{quote(row_id, safe='')}", TOKEN, True),
                "report row": (f"{report.as_uri()}#/rows/{quote(row_id, safe='')}", None, True),
            }
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in targets}
            chromium = chromium_path()
            if chromium is None:
                raise SystemExit(f"bench_web: {INSTALL}")
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=chromium, headless=True)
                try:
                    for _ in range(args.rounds):
                        for name, (url, token, row) in targets.items():
                            times[name].append(measure(browser, url, token=token, row=row))
                finally:
                    browser.close()
        finally:
            server.stop()
    print(f"{args.rows} rows, {args.rounds} rounds, fresh browser context each time")
    print(f"{'page':<11} {'load event':<28} {'rows there':<28}")
    failed = []
    for name, measured in times.items():
        loads, theres = [m[0] for m in measured], [m[1] for m in measured]
        print(f"{name:<11} {summary(loads):<28} {summary(theres):<28}")
        later = statistics.median(max(m) for m in measured)
        if not name.endswith("row") and later > args.limit:
            failed.append(f"{name}: median {later:.3f} s > {args.limit} s")
    if failed:
        raise SystemExit("bench_web: " + "; ".join(failed))
    print(f"every experiment page's median under {args.limit} s")


if __name__ == "__main__":
    main()
