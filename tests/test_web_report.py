"""``evalrows report``: one experiment's web view as one self-contained HTML file, written by
the real command from a real SQLite store (and through ``evalrows serve``) and read back with
``html.parser``: nothing in it loads a URL, each row's packed page is the page the server
renders for that row, hostile text stays text, the comparison is there exactly when there is a
baseline, and every mistake is one line.

The script in chromium: ``test_web_report_script.py``; the pages as a user sees them:
``tests/browser``.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.cli import evalrows
from support.servers import Servers
from support.web_report import (
    HOSTILE,
    HOSTILE_ID,
    Document,
    Seeded,
    assert_loads_nothing,
    index_of,
    links_in,
    one_error,
    pages_of,
    report,
    seed,
    sha256,
    trace_of,
    version,
    versions_in,
    written,
)

from pytest_evalrows.store.sqlite import SQLiteStore
from pytest_evalrows.web import views
from pytest_evalrows.web.render import Renderer
from pytest_evalrows.web.report import (
    CHUNK_ROWS,
    COLUMNS,
    PACKED_TYPE,
    SCRIPTS,
    ReportLinks,
    unpack,
)


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    return seed(tmp_path / "rows.db")


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
    assert len(runnable) == len(SCRIPTS)
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
    # What search looks in, as the server looks: input, output and expected, casefolded.
    assert first["search"] == '{"question": "a question", "n": 0}\nlyon\nparis'
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
        *[None] * len(SCRIPTS),
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


def test_a_link_or_a_pipe_is_written_through_not_replaced(seeded: Seeded) -> None:
    """-o through a symbolic link writes the file it points to; into a pipe (as into
    /dev/stdout) writes the report into it: neither is replaced by a file of its own."""
    folder = seeded.db.parent
    (folder / "arts").mkdir()
    link = folder / "link.html"
    link.symlink_to(folder / "arts" / "real.html")
    assert report(seeded, "-o", link).returncode == 0
    assert link.is_symlink()
    assert (folder / "arts" / "real.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    pipe = folder / "pipe"
    os.mkfifo(pipe)
    with ThreadPoolExecutor(1) as reader:
        read = reader.submit(pipe.read_bytes)
        assert report(seeded, "-o", pipe).returncode == 0
        assert read.result(timeout=60).startswith(b"<!doctype html>")
    assert stat.S_ISFIFO(pipe.stat().st_mode)


def test_an_empty_output_name_is_one_line(seeded: Seeded) -> None:
    assert one_error(report(seeded, "-o", "")) == "-o: '.' is not a file name"


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
    document = Document(data.decode("utf-8"))
    index = len(document.one("script", id="rows-data").text.encode("utf-8"))
    with capsys.disabled():
        print(
            f"\n10,000-row report: {len(data) / 2**20:.2f} MiB "
            f"({packed / 2**20:.2f} MiB gzip'd; its row index {index / 2**20:.2f} MiB), "
            f"written in {took:.1f} s"
        )
    assert len(index_of(document)["rows"]) == 10_000
    assert len([e for e in document.all("tr") if "data-row-id" in e.attrs]) == 50
    assert len(data) < 100 * 2**20  # generous: a CI artifact, not a size test
