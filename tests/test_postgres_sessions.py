"""Real pytest sessions on a PostgreSQL store: eight concurrent sessions (each `-n 2`) into one
experiment lose nothing and leave the rows one session leaves; sessions through `evalrows serve`
on PostgreSQL; the `evalrows` commands on a postgresql:// store; an unreachable server is one
line and the spool keeps every row (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.cli import evalrows, json_lines
from support.output import header, read_summary, summary_lines
from support.postgres import ThrowawayServer, drop_database, new_database
from support.sdk import serving
from support.servers import closed_port
from support.sessions import INI
from support.spool import spool_files, spooled_rows

from pytest_evalrows.core.models import RowVersion, SpanRecord
from pytest_evalrows.store.base import Store
from pytest_evalrows.store.urls import parse_store_url
from pytest_evalrows.stores import open_store

CASES = [f"c{i:02d}" for i in range(24)]
FAILING, SKIPPED = "c05", "c07"

# Each case opens two nested user spans, logs an output and scores it; c05 fails and c07 is
# skipped. With EVALTEST_WORKERS=N, each process waits (bounded) before its first case until N
# processes got there, so that every session really runs, and writes, at the same time.
SUITE = """
import os
import pathlib
import time

import pytest
from opentelemetry import trace

HERE = pathlib.Path(__file__).parent
CASES = [f"c{i:02d}" for i in range(24)]
TRACER = trace.get_tracer("suite")


@pytest.fixture(scope="session")
def everyone_started():
    expected = int(os.environ.get("EVALTEST_WORKERS", "0"))
    arrived = HERE / "arrived"
    arrived.mkdir(exist_ok=True)
    (arrived / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(arrived.iterdir())) < expected:
        assert time.monotonic() < deadline, "gave up waiting for the other sessions"
        time.sleep(0.02)


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
def test_case(case, eval_row, everyone_started):
    if case == "c07":
        pytest.skip("not today")
    with TRACER.start_as_current_span(f"user-{case}"):
        with TRACER.start_as_current_span(f"step-{case}"):
            eval_row.log(output=f"out-{case}", expected=f"out-{case}")
    eval_row.score("quality", int(case[1:]) / 100)
    assert case != "c05"
"""

OUTCOMES = {"passed": len(CASES) - 2, "failed": 1, "skipped": 1}
# Spans of one execution of the suite: the row's root and two user spans, a skipped case's root.
SPANS_PER_SESSION = 3 * (len(CASES) - 1) + 1


def rid(case: str) -> str:
    return f"test_suite.py::test_case[{case}]"


Shape = dict[str, tuple[Any, ...]]


def expected_shape() -> Shape:
    """The latest rows one session of SUITE leaves: status, output, scores, error type and
    span names by row id."""
    shape: Shape = {}
    for case in CASES:
        if case == SKIPPED:
            shape[rid(case)] = ("skipped", None, {}, None, (f"test_case[{case}]",))
            continue
        failed = case == FAILING
        scores = {"quality": int(case[1:]) / 100, "pass": 0.0 if failed else 1.0}
        spans = (f"step-{case}", f"test_case[{case}]", f"user-{case}")
        status, error = ("failed", "AssertionError") if failed else ("passed", None)
        shape[rid(case)] = (status, f"out-{case}", scores, error, spans)
    return shape


@dataclass
class Found:
    """An experiment read back from a store: latest rows, every version, spans, attempts."""

    rows: dict[str, RowVersion]
    history: dict[str, list[RowVersion]]
    spans: dict[str, list[SpanRecord]]
    attempts: list[Any]

    def shape(self) -> Shape:
        return {
            row_id: (
                row.status,
                row.output,
                row.scores,
                row.error.type if row.error else None,
                tuple(sorted(span.name for span in self.spans.get(row_id, []))),
            )
            for row_id, row in self.rows.items()
        }

    def assert_only_latest_spans(self) -> None:
        """Every span left belongs to its row's latest version (invariant 3)."""
        for row_id, spans in self.spans.items():
            row = self.rows[row_id]
            for span in spans:
                assert (span.attempt_id, span.execution, span.root_span_id) == (
                    row.attempt_id,
                    row.execution,
                    row.root_span_id,
                ), (row_id, span.name)


def opened(url: str) -> Store:
    return open_store(parse_store_url(url, Path.cwd()), create=False)


def read_back(url: str, experiment: str, project: str) -> Found:
    with opened(url) as store:
        found = store.get_experiment(experiment, project)
        rows = {row.row_id: row for row in store.latest_rows(found.id)}
        spans: dict[str, list[SpanRecord]] = {}
        for span in store.list_spans(found.id):
            assert span.row_id is not None, span
            spans.setdefault(span.row_id, []).append(span)
        return Found(
            rows,
            {row_id: store.history(found.id, row_id) for row_id in rows},
            spans,
            store.list_attempts(found.id),
        )


# The Braintrust SDK's own pytest plugin (installed by the dev extra) imports the SDK in every
# process it loads in: a second of start-up these sessions do not need.
QUIET_PLUGINS = ("-p", "no:cacheprovider", "-p", "no:braintrust")


@dataclass
class Finished:
    ret: int
    output: str


def run_sessions(
    directory: Path, sessions: Sequence[Sequence[str]], env: dict[str, str] | None = None
) -> list[Finished]:
    """Start one ``python -m pytest`` per argument list at once; wait for all (bounded)."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for number, args in enumerate(sessions):
            out = directory / f"session-{number}.out"
            with open(out, "wb") as sink:
                process = subprocess.Popen(
                    [sys.executable, "-m", "pytest", *QUIET_PLUGINS, *args],
                    cwd=directory,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})},
                )
            started.append((process, out))
        return [Finished(process.wait(timeout=300), out.read_text()) for process, out in started]
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def assert_clean_session(finished: Finished) -> None:
    """The outcomes SUITE always has, every row delivered, no error said."""
    assert finished.ret == pytest.ExitCode.TESTS_FAILED, finished.output
    assert "1 failed, 22 passed, 1 skipped" in finished.output, finished.output
    assert "Traceback" not in finished.output, finished.output
    lines = summary_lines(finished.output)
    assert not [line for line in lines if line.startswith(("error:", "store unavailable"))]
    assert not [line for line in lines if "not delivered" in line], lines


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    return pytester.path


@pytest.fixture
def other_database(postgres_server: str) -> Iterator[str]:
    database = new_database(postgres_server)
    try:
        yield database
    finally:
        drop_database(postgres_server, database)


def test_eight_concurrent_sessions_into_one_experiment_lose_nothing_and_match_one_session(
    suite: Path, postgres_url: str, other_database: str
) -> None:
    shared, alone = postgres_url, other_database
    experiment = "--eval-experiment=nightly"
    # Eight sessions into one database and, at the same time, one session into another (-n 0:
    # the rows of -n 2 and -n 0 are the same, invariant 7).
    done = run_sessions(
        suite,
        [
            *[["-n", "2", experiment, f"--eval-store={shared}"]] * 8,
            [experiment, f"--eval-store={alone}"],
        ],
        env={"EVALTEST_WORKERS": str(8 * 2 + 1)},
    )
    for finished in done:
        assert_clean_session(finished)
    attempts = [header(finished.output)["attempt"] for finished in done[:8]]
    assert len(set(attempts)) == 8

    reference = read_back(alone, "nightly", suite.name)
    assert reference.shape() == expected_shape()
    found = read_back(shared, "nightly", suite.name)
    # The same latest rows as one session: ids, statuses, outputs, scores, errors, spans.
    assert found.shape() == reference.shape()
    found.assert_only_latest_spans()
    reference.assert_only_latest_spans()

    # Nothing lost: every session's version of every row is in its history, ordered by when
    # its execution started (invariant 8), the latest last.
    for row_id, row in found.rows.items():
        versions = found.history[row_id]
        assert [version.version for version in versions] == list(range(1, 9)), row_id
        assert sorted(version.attempt_id for version in versions) == sorted(attempts)
        starts = [version.metrics.start for version in versions]
        assert starts == sorted(starts), row_id
        assert versions[-1].version_id == row.version_id
        assert len({version.version_id for version in versions}) == 8
    assert {attempt.id for attempt in found.attempts} == set(attempts)
    for attempt in found.attempts:
        assert attempt.counts == OUTCOMES
        assert attempt.delivered is True
    # Every number each session saved is true: each row new to exactly one session, and every
    # span that some session's version left behind removed exactly once.
    reports = [attempt.report for attempt in found.attempts]
    for report in reports:
        assert report is not None
        assert report["undelivered_rows"] == 0
        assert report["new_rows"] + report["updated_rows"] + report["superseded_rows"] == 24
    assert sum(report["new_rows"] for report in reports) == len(CASES)
    assert sum(report["stale_spans_removed"] for report in reports) == 7 * SPANS_PER_SESSION
    assert sum(len(spans) for spans in found.spans.values()) == SPANS_PER_SESSION
    assert spool_files(suite / ".evalrows" / "spool") == []


def test_sessions_through_evalrows_serve_on_postgresql_lose_nothing_and_match_one_session(
    suite: Path, postgres_url: str, tmp_path: Path
) -> None:
    with serving(postgres_url, tmp_path / "serve.log") as server:
        url, token = server.url, server.token
        common = ["-n", "2", "--eval-experiment=nightly", f"--eval-store={url}"]
        # Two sessions at once, the same rows, through the server.
        env = {"EVALTEST_WORKERS": "4", "EVALROWS_API_KEY": token}
        done = run_sessions(suite, [common, common], env=env)
        # What the server answers is what it keeps in PostgreSQL.
        listed = evalrows("rows", "nightly", "--store", url, "--json", key=token, ok=True)
        over_http = {record["id"]: record for record in json_lines(listed.stdout)}
    for finished in done:
        assert_clean_session(finished)
    attempts = {header(finished.output)["attempt"] for finished in done}
    assert len(attempts) == 2
    said = [read_summary(finished.output) for finished in done]
    # Each row new to one session only; over HTTP a row's old root goes with its version, so
    # the stale spans are the older version's user spans, each removed once.
    assert sum(summary.written[0] for summary in said) == len(CASES)
    for summary in said:
        assert sum(summary.written) + (summary.superseded or 0) == len(CASES), summary.lines
    assert sum(summary.stale_removed or 0 for summary in said) == 2 * (len(CASES) - 1)

    found = read_back(postgres_url, "nightly", suite.name)
    assert found.shape() == expected_shape()
    found.assert_only_latest_spans()
    for row_id, row in found.rows.items():
        versions = found.history[row_id]
        assert {version.attempt_id for version in versions} == attempts
        assert [version.version for version in versions] == [1, 2]
        assert versions[0].metrics.start <= versions[1].metrics.start
        assert versions[1].version_id == row.version_id
        assert (over_http[row_id]["version"], over_http[row_id]["attempt_id"]) == (
            2,
            row.attempt_id,
        )
        assert over_http[row_id]["status"] == row.status
    assert set(over_http) == set(found.rows)
    assert {attempt.id for attempt in found.attempts} == attempts


def test_the_evalrows_commands_read_report_and_clean_a_postgresql_store(
    suite: Path, postgres_url: str, tmp_path: Path
) -> None:
    store = ("--store", postgres_url)
    common = ["--eval-experiment=nightly", f"--eval-store={postgres_url}"]
    first = run_sessions(suite, [common])[0]
    # The second run keeps the first one's spans: stale, for gc to remove.
    second = run_sessions(suite, [[*common, "--eval-keep-stale-spans"]])[0]
    for finished in (first, second):
        assert_clean_session(finished)
    attempts = [header(first.output)["attempt"], header(second.output)["attempt"]]

    def run(*args: str | Path) -> str:
        return evalrows(*args, cwd=suite, ok=True).stdout

    (experiment,) = json_lines(run("experiments", *store, "--json"))
    assert (experiment["name"], experiment["project"]) == ("nightly", suite.name)
    recorded = json_lines(run("attempts", "nightly", *store, "--json"))
    assert [attempt["id"] for attempt in recorded] == attempts
    assert all(attempt["delivered"] for attempt in recorded)
    rows = {row["id"]: row for row in json_lines(run("rows", "nightly", *store, "--json"))}
    assert set(rows) == set(expected_shape())
    assert {(row["version"], row["attempt_id"]) for row in rows.values()} == {(2, attempts[1])}
    assert rows[rid(FAILING)]["status"] == "failed"
    versions = json_lines(run("history", "nightly", rid(FAILING), *store, "--json"))
    assert [(v["version"], v["attempt_id"]) for v in versions] == [
        (1, attempts[0]),
        (2, attempts[1]),
    ]
    spans = json_lines(run("spans", "nightly", "--row", rid(FAILING), *store, "--json"))
    assert sorted(span["attempt_id"] for span in spans) == sorted(attempts * 3)
    summary = json_lines(run("summary", "nightly", *store, "--json"))
    assert '"failed": 1' in str(summary).replace("'", '"'), summary

    would = run("gc", "nightly", "--dry-run", *store).splitlines()
    assert would[-1] == f"would remove {SPANS_PER_SESSION} stale spans from 24 rows"
    assert run("gc", "nightly", *store).splitlines()[-1] == (
        f"removed {SPANS_PER_SESSION} stale spans from 24 rows"
    )
    assert run("gc", "nightly", *store).splitlines() == ["removed 0 stale spans from 0 rows"]
    spans = json_lines(run("spans", "nightly", *store, "--json"))
    assert len(spans) == SPANS_PER_SESSION
    assert {span["attempt_id"] for span in spans} == {attempts[1]}

    exported = tmp_path / "rows.csv"
    run("export", "nightly", "--format", "csv", "-o", exported, *store)
    assert len(exported.read_text().splitlines()) == 1 + len(CASES)
    report = tmp_path / "report.html"
    run("report", "nightly", "-o", report, *store)
    assert "test_case[c05]" in report.read_text()


def test_an_unreachable_postgresql_server_is_one_line_and_the_spool_keeps_every_row(
    suite: Path,
) -> None:
    port = closed_port()
    secret = "pg-secret-password"
    url = f"postgresql://postgres:{secret}@127.0.0.1:{port}/postgres"
    common = ["--eval-experiment=nightly", f"--eval-store={url}"]
    down = run_sessions(suite, [common])[0]

    assert down.ret == pytest.ExitCode.TESTS_FAILED, down.output  # as without the plugin
    assert "1 failed, 22 passed, 1 skipped" in down.output
    assert "Traceback" not in down.output
    said = read_summary(down.output)
    assert said.undelivered == len(CASES)
    assert said.store_error is not None and f"127.0.0.1:{port}" in said.store_error
    spool = suite / ".evalrows" / "spool"
    spooled = spooled_rows(spool)
    assert sorted(spooled) == sorted(expected_shape())
    read = evalrows("rows", "nightly", "--store", url, cwd=suite)
    assert read.returncode == 1
    assert read.stdout == ""
    (line,) = read.stderr.splitlines()
    assert line.startswith("evalrows: error: ") and f"127.0.0.1:{port}" in line, line
    for text in (down.output, read.stderr, *(path.read_text() for path in spool_files(spool))):
        assert secret not in text

    server = ThrowawayServer(port=port)  # the server comes up where the URL points
    try:
        flush = evalrows("flush", "--store", url, cwd=suite)
        assert flush.returncode == 0, flush.stderr
        assert flush.stdout.splitlines()[0] == (
            f"delivered 24 rows to experiment 'nightly' (project '{suite.name}')"
        )
        assert spool_files(spool) == []
        found = read_back(url, "nightly", suite.name)
    finally:
        server.stop()
    assert found.shape() == expected_shape()
    for row_id, row in found.rows.items():
        assert row.version_id == spooled[row_id]["version_id"]
