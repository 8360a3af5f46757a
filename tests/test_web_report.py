"""``evalrows report``: one experiment's web view as one self-contained HTML file, written by
the real command from a real SQLite store and read back with ``html.parser``: nothing in it
loads a URL, each row's packed page is the page the server renders for that row, hostile text
stays text, and the comparison is there exactly when there is a baseline.

What the file does in a browser is tested in ``tests/browser``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page
from support.cli import evalrows
from support.servers import Servers

from pytest_evalrows.core.judgments import Evaluation, Judgment, Step
from pytest_evalrows.models import Attempt, ErrorInfo, Metrics, RowVersion, SpanRecord
from pytest_evalrows.store.sqlite import SQLiteStore
from pytest_evalrows.web import views
from pytest_evalrows.web.render import Renderer, environment
from pytest_evalrows.web.report import CHUNK_ROWS, COLUMNS, PACKED_TYPE, ReportLinks, unpack

HOSTILE = "</script><script>alert(1)</script><!-- <b>bold</b> &amp; \u2028"
HOSTILE_ID = "case[</script><img src=x onerror=alert(1)>/?#%]"


# -- a store ----------------------------------------------------------------------------------


def version(
    row_id: str,
    attempt: str,
    start: float,
    *,
    status: str = "passed",
    scores: dict[str, float] | None = None,
    duration: float = 1.5,
    tokens: int | None = 42,
    **fields: Any,
) -> RowVersion:
    return RowVersion(
        row_id=row_id,
        version_id=str(uuid.uuid4()),
        nodeid=f"tests/test_cases.py::test_case[{row_id}]",
        attempt_id=attempt,
        execution=1,
        status=status,
        scores=scores if scores is not None else {},
        metrics=Metrics(start=start, end=start + duration, duration=duration, tokens=tokens),
        root_span_id=uuid.uuid4().hex,
        span_id=uuid.uuid4().hex[:16],
        **fields,
    )


def trace_of(row: RowVersion, attribute: str = "a model call") -> list[SpanRecord]:
    """The row's root span and one child, a model call that raised."""
    start = row.metrics.start
    root = SpanRecord(
        span_id=row.span_id,
        root_span_id=row.root_span_id,
        row_id=row.row_id,
        attempt_id=row.attempt_id,
        name="test_case",
        start=start,
        end=start + 1.4,
    )
    call = SpanRecord(
        span_id=uuid.uuid4().hex[:16],
        root_span_id=row.root_span_id,
        span_parents=[row.span_id],
        row_id=row.row_id,
        attempt_id=row.attempt_id,
        name="chat",
        start=start + 0.1,
        end=start + 1.0,
        status="error",
        attributes={"gen_ai.usage.input_tokens": 30, "note": attribute},
        events=[
            {
                "name": "exception",
                "timestamp": start + 0.9,
                "attributes": {"exception.type": "TimeoutError", "exception.message": attribute},
            }
        ],
    )
    return [root, call]


@dataclass
class Seeded:
    db: Path
    experiment_id: str
    row_ids: list[str] = field(default_factory=list)


# Values whose display text is easy to get wrong: the rounding of a value exactly halfway
# (0.0625 to three places), each unit of a duration, thousands, none at all.
DURATIONS = (0.0, 0.00425, 0.0625, 0.2505, 1.005, 12.345, 59.996, 75.5, 3599.5, 7384.0)
TOKENS = (None, 0, 7, 1234, 1234567)
TONES = (0.0625, 0.1875, 1 / 3, 2 / 3, 0.9995, 1.0, 0.0, 0.5)


def seed(
    db: Path,
    rows: int = 3,
    *,
    hostile: bool = False,
    baseline: bool = True,
    varied: bool = False,
) -> Seeded:
    """Experiment 'now' of project 'demo' (two sessions, the second naming 'base' its
    baseline; each row with a trace, half of them judged) and 'base', 'other' besides.

    Against 'base': every third row regressed (exact 1 -> 0), the last row is only in 'now'
    and 'gone' only in 'base'. ``varied``: durations, tokens and tone scores from
    ``DURATIONS``, ``TOKENS`` and ``TONES`` in turn."""
    with SQLiteStore(db) as store:
        base = store.get_or_create_experiment("demo", "base")
        now = store.get_or_create_experiment("demo", "now")
        store.get_or_create_experiment("demo", "other")
        store.save_attempt(Attempt(id="attempt-base", experiment_id=base.id, started=10.0))
        store.save_attempt(Attempt(id="attempt-first", experiment_id=now.id, started=20.0))
        report = {"baseline": "base"} if baseline else {}
        store.save_attempt(
            Attempt(id="attempt-second", experiment_id=now.id, started=30.0, report=report)
        )
        ids = [f"case-{index:05d}" for index in range(rows)]
        if hostile:
            ids.append(HOSTILE_ID)
        text = HOSTILE if hostile else "a question"
        store.write(
            base.id,
            [version(i, "attempt-base", 10.0, scores={"exact": 1.0}) for i in [*ids[:-1], "gone"]],
            [],
        )
        first = [version(i, "attempt-first", 20.0, scores={"exact": 1.0}) for i in ids[:2]]
        store.write(now.id, first, [])
        latest, spans = [], []
        for index, row_id in enumerate(ids):
            failed = index % 3 == 0
            tone = TONES[index % len(TONES)] if varied else (index % 10) / 10
            shape: dict[str, Any] = {}
            if varied:
                shape = {
                    "duration": DURATIONS[index % len(DURATIONS)],
                    "tokens": TOKENS[index % len(TOKENS)],
                }
            row = version(
                row_id,
                "attempt-second",
                30.0 + index,
                status="failed" if failed else "passed",
                scores={"exact": 0.0 if failed else 1.0, "tone": tone},
                **shape,
                input={"question": text, "n": index},
                output="Lyon" if failed else "Paris",
                expected="Paris",
                error=ErrorInfo("AssertionError", text, "Traceback ...") if failed else None,
            )
            latest.append(row)
            spans += trace_of(row, text)
        store.write(now.id, latest, spans)
        store.save_evaluations(
            now.id,
            [
                Evaluation(
                    id=f"judged-{row.row_id}",
                    row_id=row.row_id,
                    trace_id=row.root_span_id,
                    version_id=row.version_id,
                    judge_id="tone",
                    created_at=40.0,
                    status="success",
                    result=Judgment(
                        score=0.5,
                        reasoning=text,
                        steps=[Step(span_id=None, name="look", result={"said": text})],
                    ),
                )
                for row in latest[::2]
            ],
        )
    return Seeded(db, now.id, sorted(ids))


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    return seed(tmp_path / "rows.db")


# -- the command and the file read back -------------------------------------------------------


def report(
    seeded: Seeded, *args: str | Path, experiment: str = "now"
) -> subprocess.CompletedProcess[str]:
    return evalrows("report", experiment, *args, "--store", seeded.db, cwd=seeded.db.parent)


def written(seeded: Seeded, *args: str | Path) -> Path:
    """The report the command writes (to report.html beside the store), after its one line."""
    path = seeded.db.parent / "report.html"
    done = report(seeded, "-o", path, *args)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    size = path.stat().st_size
    rows = len(seeded.row_ids)
    assert re.fullmatch(
        rf"{re.escape(str(path))}: {rows} rows?, [\d.]+ (KiB|MiB|bytes)\n", done.stdout
    )
    assert size > 0
    return path


def one_error(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert (done.returncode, done.stdout) == (code, ""), done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("evalrows: error: "), line
    return line.removeprefix("evalrows: error: ")


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    text: str = ""


class Document(HTMLParser):
    """Every element with its attributes, and the text of each <script> and <style>."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._raw: Element | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.elements.append(element)
        if tag in ("script", "style"):
            self._raw = element

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._raw = None

    def handle_data(self, data: str) -> None:
        if self._raw is not None:
            self._raw.text += data

    def all(self, tag: str, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def one(self, tag: str, **attrs: str) -> Element:
        (found,) = self.all(tag, **attrs)
        return found


def index_of(document: Document) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(document.one("script", id="rows-data").text)
    return data


def pages_of(document: Document) -> dict[str, str]:
    """Every row's packed page, unpacked: row id -> markup, in the index's order."""
    chunks = [
        e for e in document.all("script", type=PACKED_TYPE) if e.attrs["id"] != "compare-data"
    ]
    assert [e.attrs["id"] for e in chunks] == [f"rows-chunk-{n}" for n in range(len(chunks))]
    pages: dict[str, str] = {}
    for chunk in chunks:
        pairs = unpack(chunk.text)
        assert 0 < len(pairs) <= CHUNK_ROWS
        pages.update((row_id, markup) for row_id, markup in pairs)
    return pages


# Attributes that make a browser load or go to a URL.
URL_ATTRIBUTES = ("href", "src", "srcset", "action", "formaction", "poster", "data", "xlink:href")


def links_in(markup: str) -> list[tuple[str, str, str]]:
    """(tag, attribute, value) of every URL-taking attribute of the markup."""
    return [
        (e.tag, name, value or "")
        for e in Document(markup).elements
        for name, value in e.attrs.items()
        if name in URL_ATTRIBUTES
    ]


def assert_loads_nothing(markup: str) -> None:
    for tag, name, value in links_in(markup):
        assert value.startswith(("#", "data:")), (tag, name, value)
    # Base64 has no ":", "(" or "@": the packed data cannot hide these.
    assert not re.search(r"https?:|url\(|@import", markup, re.IGNORECASE)


def versions_in(markup: str) -> list[str | None]:
    """The versions a row's page lists, newest first."""
    rows = Document(markup).all("tr")
    return [e.attrs["data-version"] for e in rows if "data-version" in e.attrs]


def sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


# -- tests ------------------------------------------------------------------------------------


def test_the_report_is_one_file_that_loads_nothing_from_anywhere(seeded: Seeded) -> None:
    html = written(seeded).read_text("utf-8")
    document = Document(html)
    assert_loads_nothing(html)
    pages = pages_of(document)
    for markup in pages.values():
        assert_loads_nothing(markup)
    (compare,) = document.all("script", id="compare-data")
    assert_loads_nothing(unpack(compare.text))
    # No external script, stylesheet or frame; the icon is a data: URL, as on served pages.
    assert not document.all("link", rel="stylesheet")
    assert all("src" not in e.attrs for e in document.all("script"))
    assert not [e for e in document.elements if e.tag in ("iframe", "object", "embed", "base")]
    assert document.one("link", rel="icon").attrs["href"] == "data:,"
    assert document.one("html").attrs["lang"] == "en"


def test_its_policy_lets_only_its_own_style_and_scripts_run_and_nothing_connect(
    seeded: Seeded,
) -> None:
    document = Document(written(seeded).read_text("utf-8"))
    meta = document.one("meta", http_equiv="Content-Security-Policy")
    policy = dict(
        [*part.split(" ", 1), ""][:2] for part in (meta.attrs["content"] or "").split("; ")
    )
    assert policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'none'"
    assert policy["img-src"] == "data:"
    assert policy["form-action"] == "'none'"
    runnable = [e for e in document.all("script") if "type" not in e.attrs]
    assert len(runnable) == 2  # evalrows.js (the trace's tools) and report.js
    assert policy["script-src"].split() == [f"'{sha256(e.text)}'" for e in runnable]
    (style,) = document.all("style")
    assert policy["style-src"] == f"'{sha256(style.text)}'"
    # The meta comes before anything it governs.
    tags = [e.tag for e in document.elements]
    assert tags.index("meta") < tags.index("style") < tags.index("script")


def test_every_rows_packed_page_is_the_page_the_server_renders_for_it(tmp_path: Path) -> None:
    # More rows than a chunk holds, so that the pages span two chunks.
    seeded = seed(tmp_path / "rows.db", rows=CHUNK_ROWS + 5)
    document = Document(written(seeded).read_text("utf-8"))
    pages = pages_of(document)
    assert list(pages) == seeded.row_ids
    assert len(document.all("script", type=PACKED_TYPE)) == 3  # two chunks and the comparison
    with SQLiteStore(seeded.db, create=False) as store:
        ref = views.ref_of(views.find_experiment(store, seeded.experiment_id))
        renderer = Renderer(ReportLinks(ref))
        for row_id in seeded.row_ids:
            page = views.row_page(store, seeded.experiment_id, row_id)
            assert pages[row_id] == renderer.row_main(page), row_id
    judged = pages[seeded.row_ids[0]]
    assert 'data-judge="tone"' in judged
    assert 'class="event exception"' in judged
    assert versions_in(judged) == ["2", "1"]
    assert not document.all("span", id="latest-only")


def test_the_index_holds_every_row_and_the_html_the_first_page_of_them(seeded: Seeded) -> None:
    document = Document(written(seeded).read_text("utf-8"))
    index = index_of(document)
    assert index["columns"] == list(COLUMNS)
    assert index["experiment"]["name"] == "now"
    assert index["baseline"]["name"] == "base"
    assert index["scoreNames"] == ["exact", "judge:tone", "tone"]  # the judge's score too
    rows = [dict(zip(COLUMNS, row, strict=True)) for row in index["rows"]]
    assert [row["row_id"] for row in rows] == seeded.row_ids
    first = rows[0]
    assert (first["status"], first["version"], first["attempt_short"]) == ("failed", 2, "attempt-")
    assert first["scores"] == [0.0, 0.5, 0.0]
    assert rows[1]["scores"] == [1.0, None, 0.1]  # not judged
    assert first["error"] == "AssertionError: a question"
    assert json.loads(first["input"]) == {"question": "a question", "n": 0}
    assert (first["output"], first["expected"]) == ("Lyon", "Paris")
    # Without JavaScript: the first rows in the table, the same hooks as the served page.
    shown = document.all("tr")
    assert [e.attrs["data-row-id"] for e in shown if "data-row-id" in e.attrs] == seeded.row_ids
    assert next(e.attrs["data-status"] for e in shown if "data-status" in e.attrs) == "failed"
    assert document.one("form", id="filters").attrs["method"] == "get"
    sorts = document.all("th", scope="col")
    assert {e.attrs.get("aria-sort") for e in sorts if "data-sort-key" in e.attrs} == {
        "ascending",
        "none",
    }
    assert document.all("nav", id="pager")
    assert document.one("a", id="compare-link").attrs["href"] == "#/compare"
    assert document.all("noscript")


def test_more_rows_than_a_page_show_the_first_page_and_a_link_to_the_next(tmp_path: Path) -> None:
    seeded = seed(tmp_path / "rows.db", rows=60)
    document = Document(written(seeded).read_text("utf-8"))
    shown = [e.attrs["data-row-id"] for e in document.all("tr") if "data-row-id" in e.attrs]
    assert shown == seeded.row_ids[:50]
    assert document.one("a", rel="next").attrs["href"] == "#/?page=2"
    assert not document.all("a", rel="prev")
    assert len(index_of(document)["rows"]) == 60


def test_row_links_are_hash_routes_with_the_row_id_encoded_as_the_browser_encodes_it(
    tmp_path: Path,
) -> None:
    seeded = seed(tmp_path / "rows.db", hostile=True)
    html = written(seeded).read_text("utf-8")
    (line,) = [e for e in Document(html).all("tr") if e.attrs.get("data-row-id") == HOSTILE_ID]
    assert line.attrs["data-status"] == "failed"  # the fourth row, as every third
    # encodeURIComponent leaves A-Z a-z 0-9 - _ . ! ~ * ' ( ) as they are.
    encoded = "case%5B%3C%2Fscript%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E%2F%3F%23%25%5D"
    assert f"#/rows/{encoded}" in [href for _, _, href in links_in(html)]


def test_hostile_text_stays_text_in_the_index_the_table_and_the_packed_pages(
    tmp_path: Path,
) -> None:
    seeded = seed(tmp_path / "rows.db", hostile=True)
    html = written(seeded).read_text("utf-8")
    document = Document(html)
    # Nothing broke out of a data block: the scripts are exactly the file's own.
    scripts = document.all("script")
    assert [e.attrs.get("type") for e in scripts] == [
        "application/json",
        *[PACKED_TYPE] * 2,  # the rows' pages and the comparison
        None,
        None,
    ]
    assert not document.all("img")
    assert not document.all("b")
    # ... and the index still says exactly what was stored.
    rows = {row[0]: dict(zip(COLUMNS, row, strict=True)) for row in index_of(document)["rows"]}
    assert json.loads(rows[HOSTILE_ID]["input"])["question"] == HOSTILE
    assert rows["case-00000"]["error"] == "AssertionError: " + HOSTILE.splitlines()[0]
    index_text = document.one("script", id="rows-data").text
    assert "<" not in index_text
    # A row's page shows the text escaped, its every element the template's own.
    markup = pages_of(document)[HOSTILE_ID]
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in markup
    assert not Document(markup).all("script")
    assert not Document(markup).all("b")


def test_without_a_baseline_the_report_has_no_comparison(tmp_path: Path) -> None:
    seeded = seed(tmp_path / "rows.db", baseline=False)
    html = written(seeded).read_text("utf-8")
    document = Document(html)
    assert index_of(document)["baseline"] is None
    assert not document.all("script", id="compare-data")
    assert not document.all("a", id="compare-link")
    assert "#/compare" not in html.split('id="rows-data"')[0]


def test_baseline_names_the_experiment_compared_with_instead_of_the_stored_one(
    seeded: Seeded,
) -> None:
    document = Document(written(seeded, "--baseline", "other").read_text("utf-8"))
    assert index_of(document)["baseline"]["name"] == "other"
    compare = Document(unpack(document.one("script", id="compare-data").text))
    changes = [e.attrs["data-change"] for e in compare.all("tr") if "data-change" in e.attrs]
    assert changes == ["only-b"] * len(seeded.row_ids)  # 'other' has no rows
    assert document.one("a", id="compare-link").attrs["href"] == "#/compare"


def test_the_stored_baseline_is_compared_with_regressions_first(seeded: Seeded) -> None:
    document = Document(written(seeded).read_text("utf-8"))
    compare_markup = unpack(document.one("script", id="compare-data").text)
    compare = Document(compare_markup)
    lines = [
        (e.attrs["data-row-id"], e.attrs["data-change"])
        for e in compare.all("tr")
        if "data-change" in e.attrs
    ]
    assert lines == [
        ("case-00000", "regressed"),
        ("case-00001", "unchanged"),
        ("case-00002", "only-b"),
        ("gone", "only-a"),
    ]
    # Rows of this experiment link to their pages; the baseline's own row to a route that
    # says it is not in this report.
    hrefs = [href for _, _, href in links_in(compare_markup)]
    assert "#/rows/case-00000" in hrefs
    with SQLiteStore(seeded.db, create=False) as store:
        base = store.get_experiment("base", "demo")
    assert f"#/experiment/{base.id}/rows/gone" in hrefs


def test_an_experiment_without_rows_makes_a_report_that_says_so(seeded: Seeded) -> None:
    target = seeded.db.parent / "report.html"
    done = report(seeded, "-o", target, experiment="other")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert re.fullmatch(rf"{re.escape(str(target))}: 0 rows, [\d.]+ KiB\n", done.stdout)
    document = Document(target.read_text("utf-8"))
    assert index_of(document)["rows"] == []
    assert not document.all("script", type=PACKED_TYPE)
    assert not [e for e in document.all("tr") if "data-row-id" in e.attrs]
    assert document.all("table", id="rows")


def test_from_an_http_store_the_rows_pages_show_their_latest_version_and_say_so(
    tmp_path: Path,
) -> None:
    """Reading one row's history from the HTTP store reads the whole experiment: the report
    reads it a fixed number of times, whatever the rows, and says what that leaves out."""
    servers = Servers(tmp_path)
    seeded = seed(tmp_path / "served.db")  # the file the server serves
    server = servers.make("evk-report")
    server.start()
    try:
        target = tmp_path / "report.html"
        done = evalrows(
            "report", "now", "-o", target, "--store", server.url, key="evk-report", cwd=tmp_path
        )
    finally:
        servers.stop_all()
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.startswith(f"{target}: 3 rows, ")
    document = Document(target.read_text("utf-8"))
    assert document.all("span", id="latest-only")
    pages = pages_of(document)
    assert list(pages) == seeded.row_ids
    assert versions_in(pages["case-00000"]) == ["2"]  # of two
    assert document.all("script", id="compare-data")  # the baseline read through it too


def test_a_baseline_that_is_not_there_is_one_line_naming_the_projects_experiments(
    seeded: Seeded,
) -> None:
    target = seeded.db.parent / "report.html"
    line = one_error(report(seeded, "-o", target, "--baseline", "nope"))
    assert line == (
        "--baseline 'nope': project 'demo' has no such experiment "
        "(its experiments: 'base', 'now', 'other')"
    )
    assert not target.exists()
    line = one_error(report(seeded, "--baseline", "base", "--baseline-project", "elsewhere"))
    assert line.startswith("--baseline 'base': project 'elsewhere' has no such experiment")


def test_without_jinja2_the_command_says_what_to_install(seeded: Seeded, tmp_path: Path) -> None:
    hidden = tmp_path / "hidden" / "jinja2"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ModuleNotFoundError('no jinja2', name='jinja2')\n")
    done = evalrows(
        "report",
        "now",
        "--store",
        seeded.db,
        cwd=tmp_path,
        env={"PYTHONPATH": os.pathsep.join([str(hidden.parent), os.environ.get("PYTHONPATH", "")])},
    )
    assert one_error(done) == 'evalrows report needs Jinja2: pip install "pytest-evalrows[report]"'


def test_an_experiment_that_is_not_there_is_one_line(seeded: Seeded) -> None:
    assert "no experiment 'nope'" in one_error(report(seeded, experiment="nope"))


def test_a_file_that_cannot_be_written_is_one_line_and_leaves_nothing_behind(
    seeded: Seeded,
) -> None:
    target = seeded.db.parent / "missing" / "report.html"
    line = one_error(report(seeded, "-o", target))
    assert line == f"cannot write {target}: No such file or directory"
    assert sorted(p.name for p in seeded.db.parent.iterdir()) == ["rows.db"]


def test_without_output_it_writes_evalrows_report_html_and_says_so_as_json(seeded: Seeded) -> None:
    done = report(seeded, "--json")
    assert (done.returncode, done.stderr) == (0, "")
    path = seeded.db.parent / "evalrows-report.html"
    assert json.loads(done.stdout) == {
        "path": "evalrows-report.html",
        "rows": len(seeded.row_ids),
        "bytes": path.stat().st_size,
    }
    # Written whole, then renamed: no temporary file is left beside it.
    assert sorted(p.name for p in seeded.db.parent.iterdir()) == ["evalrows-report.html", "rows.db"]


def test_a_10000_row_report_and_its_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The figure for the README: how large a report of 10,000 rows is, and how long it took
    (printed, not asserted: the machine is shared)."""
    db = tmp_path / "big.db"
    with SQLiteStore(db) as store:
        big = store.get_or_create_experiment("demo", "big")
        rows = []
        spans = []
        for index in range(10_000):
            row = version(
                f"case-{index:05d}",
                "attempt-1",
                float(index),
                status="failed" if index % 10 == 0 else "passed",
                scores={"exact": float(index % 10 != 0), "tone": (index % 100) / 100},
                input={"question": f"What is the capital of country {index}?"},
                output="Paris",
                expected="Paris",
            )
            rows.append(row)
            spans += trace_of(row)
        store.write(big.id, rows, spans)
    target = tmp_path / "big.html"
    started = time.perf_counter()
    done = evalrows("report", "big", "-o", target, "--store", db, cwd=tmp_path, timeout=600)
    took = time.perf_counter() - started
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout.startswith(f"{target}: 10000 rows, ")
    data = target.read_bytes()
    packed = len(gzip.compress(data))
    with capsys.disabled():
        print(
            f"\n10,000-row report: {len(data) / 2**20:.1f} MiB "
            f"({packed / 2**20:.1f} MiB gzip'd), written in {took:.1f} s"
        )
    document = Document(data.decode("utf-8"))
    assert len(index_of(document)["rows"]) == 10_000
    assert len([e for e in document.all("tr") if "data-row-id" in e.attrs]) == 50
    assert len(data) < 100 * 2**20  # generous: a CI artifact, not a size test


# -- the script against the template ----------------------------------------------------------

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
    found = os.environ.get("EVALROWS_CHROMIUM") or shutil.which("chromium")
    debian = Path("/usr/lib/chromium/chromium")
    if found is None and debian.exists():
        found = str(debian)
    if found is None:
        pytest.fail("no chromium found (set EVALROWS_CHROMIUM, or apt-get install chromium)")
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
    page.wait_for_function(f"document.querySelectorAll('#rows tbody tr').length === {count}")


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
    seeded, uri = varied
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
    assert served.rows or "nothing" in query  # each query but the last shows rows
    with opened(browser, "about:blank", script=False) as page:
        page.set_content(markup)
        by_server = page.evaluate(SNAPSHOT, REDRAWN[:3])
    with opened(browser, f"{uri}#/?{query}") as page:
        rows_shown(page, len(served.rows))
        by_script = page.evaluate(SNAPSHOT, REDRAWN[:3])
    for selector, server, script in zip(REDRAWN[:3], by_server, by_script, strict=True):
        assert script == server, selector


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
