"""End to end over HTTP: real pytest sessions record into ``evalrows serve``, started as a real
subprocess on 127.0.0.1 with a token (issue 5, "Done when").

The same results as the embedded store (rows, ``--lf`` reruns, stale-span deletes, resume,
xdist); a server restarted mid-session; a proxy answering 429 and 503 now and then; a wrong
token; a server down for the whole session, then ``evalrows flush``. The API key must never
show up in output, logs, the spool or either store.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.cli import evalrows, json_lines, session_report
from support.output import deselected, header, output_of, read_summary, summary_lines, usage_error
from support.servers import (
    EvalrowsServer,
    FaultyProxy,
    Servers,
    closed_port,
    files_containing,
    restart_on_request,
)
from support.sessions import INI
from support.spool import ran, spool_files, spooled_entries, spooled_rows
from support.store import Stored, assert_no_stale_spans, default_db, history, make_row, stored

from pytest_evalrows.braintrust import wire
from pytest_evalrows.store.sqlite import SQLiteStore

pytest_plugins = ("pytester",)

EXPERIMENT = "nightly"
CASES = [f"q{i:02d}" for i in range(12)]
BROKEN = ("q02", "q05", "q11")

# Twelve cases; while the file `broken` exists, three of them answer wrong and fail. Each logs
# its id to ran.txt (and its worker to workers.txt) and opens two spans with the user's tracer:
# a retrieval span and an LLM span inside it.
SUITE = """
import os
import pathlib

import pytest
from opentelemetry import trace

HERE = pathlib.Path(__file__).parent
CASES = [f"q{i:02d}" for i in range(12)]
BROKEN = ("q02", "q05", "q11")


def answer(case):
    tracer = trace.get_tracer("suite")
    with tracer.start_as_current_span(f"retrieve-{case}"):
        with tracer.start_as_current_span(f"llm-{case}", attributes={"gen_ai.system": "test"}):
            broken = (HERE / "broken").exists() and case in BROKEN
            return "wrong" if broken else case.upper()


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
def test_answer(case, eval_row):
    with open(HERE / "ran.txt", "a") as log:
        log.write(case + "\\n")
    with open(HERE / "workers.txt", "a") as log:
        log.write(f"{case}:{os.environ.get('PYTEST_XDIST_WORKER', 'main')}\\n")
    output = answer(case)
    eval_row.log(output=output, expected=case.upper())
    eval_row.score("exact", float(output == case.upper()))
    assert output == case.upper()
"""

# Case q04 asks for the server to be stopped and waits until it is; q05..q07 finish while it
# is down; q08 waits until it is back (a request has hit the outage by then).
RESTART_CONFTEST = """
import pathlib
import time

import pytest

HERE = pathlib.Path(__file__).parent


def wait_for(name):
    deadline = time.monotonic() + 60
    while not (HERE / name).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not appear within 60 s")
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def outage(request):
    case = request.node.callspec.params["case"]
    if case == "q04":
        (HERE / "stop-server").touch()
        wait_for("server-stopped")
    elif case == "q08":
        wait_for("server-restarted")
"""


def rid(case: str) -> str:
    return f"test_suite.py::test_answer[{case}]"


def span_names(case: str) -> list[str]:
    return sorted([f"test_answer[{case}]", f"retrieve-{case}", f"llm-{case}"])


Shape = dict[str, tuple[Any, ...]]


def shape(found: Stored) -> Shape:
    """What must not depend on the store: per row its status, version, execution, values and
    the names of its spans."""
    return {
        row_id: (
            row.status,
            row.version,
            row.execution,
            row.input,
            row.output,
            row.expected,
            row.scores,
            sorted(span.name for span in found.spans_of(row_id)),
        )
        for row_id, row in found.rows.items()
    }


def expected_shape(*, rerun: bool) -> Shape:
    """After a session with BROKEN failing and, with ``rerun``, an ``--lf`` session with them
    fixed."""
    result: Shape = {}
    for case in CASES:
        broken = case in BROKEN and not rerun
        result[rid(case)] = (
            "failed" if broken else "passed",
            2 if rerun and case in BROKEN else 1,
            1,
            {"case": case},
            "wrong" if broken else case.upper(),
            case.upper(),
            {"exact": 0.0 if broken else 1.0, "pass": 0.0 if broken else 1.0},
            span_names(case),
        )
    return result


def version_count(db: Path, experiment: str) -> Counter[str]:
    """How many versions each row has in the store, every version counted once."""
    with SQLiteStore(db, create=False) as store:
        found = store.get_experiment(experiment)
        return Counter({row_id: len(store.history(found.id, row_id)) for row_id in map(rid, CASES)})


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_braintrust_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRAINTRUST_API_KEY", raising=False)


@pytest.fixture
def token() -> str:
    return f"evk-{secrets.token_hex(16)}"


@pytest.fixture
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture
def make_server(server_dir: Path, token: str) -> Iterator[Callable[[], EvalrowsServer]]:
    """Servers over ``server_dir/served.db`` (not started); every one stopped at teardown,
    each stop a clean exit."""
    servers = Servers(server_dir)
    yield lambda: servers.make(token)
    servers.stop_all()


@pytest.fixture
def server(make_server: Callable[[], EvalrowsServer]) -> EvalrowsServer:
    started = make_server()
    started.start()
    return started


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    return pytester.path


def run(pytester: pytest.Pytester, *args: str, experiment: str = EXPERIMENT) -> pytest.RunResult:
    return pytester.runpytest_subprocess(f"--eval-experiment={experiment}", *args)


def assert_secret_nowhere(
    secret: str, results: list[pytest.RunResult], *roots: Path, also: str = ""
) -> None:
    """Not in any session's output, nor in any file under ``roots`` (spool, stores, logs)."""
    for result in results:
        assert secret not in output_of(result)
    assert secret not in also
    assert files_containing(secret, *roots) == []


# -- the same results as the embedded store ----------------------------------------------------


def test_rows_reruns_and_stale_spans_match_the_embedded_store(
    pytester: pytest.Pytester, suite: Path, server: EvalrowsServer, token: str, server_dir: Path
) -> None:
    broken = suite / "broken"
    http = (f"--eval-store={server.url}", f"--eval-api-key={token}")

    def two_sessions(*store: str) -> tuple[pytest.RunResult, pytest.RunResult]:
        broken.touch()
        first = run(pytester, *store)
        first.assert_outcomes(passed=9, failed=3)
        broken.unlink()
        second = run(pytester, *store, "--lf")
        second.assert_outcomes(passed=3)
        return first, second

    embedded1, embedded2 = two_sessions()
    http1, http2 = two_sessions(*http)

    assert header(http1)["store"] == server.url
    assert f"experiment {EXPERIMENT!r} (project {suite.name!r}) in {server.url}" in summary_lines(
        http1
    )
    for first, second, stale in ((embedded1, embedded2, 9), (http1, http2, 6)):
        one, two = (session_report(result, cwd=suite, key=token) for result in (first, second))
        assert (one["new_rows"], one["updated_rows"]) == (12, 0)
        assert (two["new_rows"], two["updated_rows"]) == (0, 3)
        assert one["stale_spans_removed"] == 0
        # The root span and both user spans of each of the three rerun rows. Over HTTP a row's
        # root is its row event: the version it replaced is history, not a stale span (the
        # server drops that root as it writes the new version), so only the user spans count.
        assert two["stale_spans_removed"] == stale
        assert one["undelivered_rows"] == two["undelivered_rows"] == 0
        assert not any(line.startswith("error:") for line in summary_lines(second))

    local = stored(default_db(pytester), EXPERIMENT)
    served = stored(server.db, EXPERIMENT)
    assert shape(local) == expected_shape(rerun=True)
    assert shape(served) == shape(local)
    assert_no_stale_spans(served)
    assert version_count(server.db, EXPERIMENT) == version_count(default_db(pytester), EXPERIMENT)
    attempt1, attempt2 = header(http1)["attempt"], header(http2)["attempt"]
    for case in CASES:
        versions = history(server.db, EXPERIMENT, rid(case))
        if case in BROKEN:
            assert [(v.status, v.attempt_id) for v in versions] == [
                ("failed", attempt1),
                ("passed", attempt2),
            ]
        else:
            assert [(v.status, v.attempt_id) for v in versions] == [("passed", attempt1)]
        # Only the latest execution's spans are left under each row.
        assert {s.attempt_id for s in served.spans_of(rid(case))} == {versions[-1].attempt_id}
    assert spool_files(suite / ".evalrows" / "spool") == []

    # What the CLI reads through the API is what it reads from the embedded file.
    project = ("--project", suite.name)
    over_http = evalrows(
        "rows", EXPERIMENT, *project, "--store", server.url, "--json", cwd=suite, key=token
    )
    assert over_http.returncode == 0, over_http.stderr
    on_disk = evalrows(
        "rows", EXPERIMENT, "--store", str(default_db(pytester)), "--json", cwd=suite, key=None
    )
    assert on_disk.returncode == 0, on_disk.stderr

    def comparable(text: str) -> dict[str, dict[str, Any]]:
        records = {}
        for record in json_lines(text):
            error = record["error"]
            records[record["id"]] = {
                **{key: record[key] for key in ("nodeid", "status", "version", "execution")},
                **{key: record[key] for key in ("input", "output", "expected", "scores", "tags")},
                "error": error and (error["type"], error["message"]),
                "metadata": sorted(set(record["metadata"]) - {"attemptId"}),
            }
        return records

    assert comparable(over_http.stdout) == comparable(on_disk.stdout)
    assert sorted(comparable(over_http.stdout)) == sorted(map(rid, CASES))
    spans = evalrows(
        "spans", EXPERIMENT, *project, "--store", server.url, "--json", cwd=suite, key=token
    )
    assert spans.returncode == 0, spans.stderr
    per_row = Counter(span["row_id"] for span in json_lines(spans.stdout))
    assert per_row == Counter({row_id: len(local.spans_of(row_id)) for row_id in local.rows})
    assert set(per_row.values()) == {3}

    # The key went on the command line: it is nowhere in what the sessions and the CLI printed,
    # the spool, the cache, either store, or the server's log.
    assert_secret_nowhere(
        token,
        [embedded1, embedded2, http1, http2],
        suite,
        server_dir,
        also=over_http.stdout + over_http.stderr + spans.stdout + spans.stderr,
    )


def test_resume_against_the_http_store_skips_passed_rows(
    pytester: pytest.Pytester,
    suite: Path,
    server: EvalrowsServer,
    token: str,
    server_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Braintrust's own variable is the fallback for the key.
    monkeypatch.setenv("BRAINTRUST_API_KEY", token)
    (suite / "broken").touch()
    first = run(pytester, f"--eval-store={server.url}")
    first.assert_outcomes(passed=9, failed=3)
    assert sorted(ran(suite / "ran.txt")) == CASES

    (suite / "broken").unlink()
    (suite / "ran.txt").unlink()
    second = run(pytester, f"--eval-store={server.url}", "--eval-resume")
    second.assert_outcomes(passed=3)
    assert ran(suite / "ran.txt") == list(BROKEN)
    assert deselected(second) == 9
    report = session_report(second, cwd=suite, key=token)
    assert report["resumed"] == 9
    assert report["stale_spans_removed"] == 6  # the user spans; the old roots went with the write
    assert (report["new_rows"], report["updated_rows"]) == (0, 3)

    served = stored(server.db, EXPERIMENT)
    assert shape(served) == expected_shape(rerun=True)
    assert_no_stale_spans(served)
    assert version_count(server.db, EXPERIMENT) == Counter(
        {rid(case): 2 if case in BROKEN else 1 for case in CASES}
    )
    assert_secret_nowhere(token, [first, second], suite, server_dir)


def test_n2_gives_the_same_rows_as_n0(
    pytester: pytest.Pytester,
    suite: Path,
    server: EvalrowsServer,
    token: str,
    server_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVALROWS_API_KEY", token)
    (suite / "broken").touch()
    serial = run(pytester, f"--eval-store={server.url}", "-n", "0", experiment="serial")
    serial.assert_outcomes(passed=9, failed=3)
    (suite / "workers.txt").unlink()
    parallel = run(pytester, f"--eval-store={server.url}", "-n", "2", experiment="parallel")
    parallel.assert_outcomes(passed=9, failed=3)
    workers = dict(line.split(":") for line in (suite / "workers.txt").read_text().split())
    assert sorted(workers) == CASES
    assert set(workers.values()) == {"gw0", "gw1"}

    by_serial = stored(server.db, "serial")
    by_parallel = stored(server.db, "parallel")
    assert shape(by_serial) == expected_shape(rerun=False)
    assert shape(by_parallel) == shape(by_serial)
    for found, result in ((by_serial, serial), (by_parallel, parallel)):
        attempt = header(result)["attempt"]
        assert {row.attempt_id for row in found.rows.values()} == {attempt}
        assert {span.attempt_id for span in found.spans} == {attempt}
        report = session_report(result, cwd=suite, key=token)
        assert (report["new_rows"], report["updated_rows"]) == (12, 0)
        assert report["stale_spans_removed"] == 0
        assert report["undelivered_rows"] == 0
    assert version_count(server.db, "parallel") == Counter(dict.fromkeys(map(rid, CASES), 1))
    assert spool_files(suite / ".evalrows" / "spool") == []

    # --lf under xdist: each worker writes its rows, the controller cleans up once.
    (suite / "broken").unlink()
    rerun = run(pytester, f"--eval-store={server.url}", "-n", "2", "--lf", experiment="parallel")
    rerun.assert_outcomes(passed=3)
    report = session_report(rerun, cwd=suite, key=token)
    assert (report["new_rows"], report["updated_rows"]) == (0, 3)
    assert report["stale_spans_removed"] == 6  # the user spans; the old roots went with the write
    after = stored(server.db, "parallel")
    assert shape(after) == expected_shape(rerun=True)
    assert_no_stale_spans(after)
    assert {after.rows[rid(case)].attempt_id for case in BROKEN} == {header(rerun)["attempt"]}
    assert_secret_nowhere(token, [serial, parallel, rerun], suite, server_dir)


# -- an unreliable server ------------------------------------------------------------------------


def test_a_server_restarted_mid_session_loses_nothing(
    pytester: pytest.Pytester, suite: Path, server: EvalrowsServer, token: str, server_dir: Path
) -> None:
    pytester.makeconftest(RESTART_CONFTEST)
    (suite / "broken").touch()
    with restart_on_request(server, suite) as outage:
        result = run(pytester, f"--eval-store={server.url}", f"--eval-api-key={token}")
    result.assert_outcomes(passed=9, failed=3)
    assert outage.done and outage.dropped >= 1
    assert len(server.pids) == 2  # stopped once, started again on the same port and file

    found = stored(server.db, EXPERIMENT)
    assert shape(found) == expected_shape(rerun=False)
    assert_no_stale_spans(found)
    attempt = header(result)["attempt"]
    assert {row.attempt_id for row in found.rows.values()} == {attempt}
    assert version_count(server.db, EXPERIMENT) == Counter(dict.fromkeys(map(rid, CASES), 1))
    report = session_report(result, cwd=suite, key=token)
    assert (report["new_rows"], report["updated_rows"]) == (12, 0)
    assert report["undelivered_rows"] == 0
    assert spool_files(suite / ".evalrows" / "spool") == []
    assert_secret_nowhere(token, [result], suite, server_dir)


def test_429_and_503_now_and_then_every_row_arrives_once(
    pytester: pytest.Pytester, suite: Path, server: EvalrowsServer, token: str, server_dir: Path
) -> None:
    # Every third request: the first session's third is always its collection-time read, so a
    # 503 before forwarding happens however its rows are batched (the server's counts spare
    # the first session its clean-up read, so the default every fifth may land on none).
    with FaultyProxy(server.url, every_503=3) as proxy:
        store = (f"--eval-store={proxy.url}", f"--eval-api-key={token}")
        (suite / "broken").touch()
        first = run(pytester, *store)
        first.assert_outcomes(passed=9, failed=3)
        (suite / "broken").unlink()
        second = run(pytester, *store, "--lf")
        second.assert_outcomes(passed=3)

    faults = proxy.faults()
    assert faults["429"] >= 1 and faults["503 before"] >= 1 and faults["503 after"] >= 1, faults
    # The server took a batch of rows whose answer was lost: the client sent it again.
    assert any(seen.answer == "503 after" and seen.rows for seen in proxy.seen), proxy.seen
    # Every fault was followed by the same request again, and nothing was given up.
    assert proxy.retried == sum(faults.values())
    assert proxy.unretried() == 0

    # The proxy is gone: the sessions' reports are read from the server behind it.
    one, two = (session_report(r, store=server.url, key=token) for r in (first, second))
    for result, report in ((first, one), (second, two)):
        assert report["undelivered_rows"] == 0
        assert not any(line.startswith("error:") for line in summary_lines(result))
    assert (one["new_rows"], one["updated_rows"]) == (12, 0)
    assert (two["new_rows"], two["updated_rows"]) == (0, 3)
    assert two["stale_spans_removed"] == 6  # the user spans; the old roots went with the write
    found = stored(server.db, EXPERIMENT)
    assert shape(found) == expected_shape(rerun=True)
    assert_no_stale_spans(found)
    # Exactly once: an insert the server took but whose answer was lost made no new version.
    assert version_count(server.db, EXPERIMENT) == Counter(
        {rid(case): 2 if case in BROKEN else 1 for case in CASES}
    )
    assert spool_files(suite / ".evalrows" / "spool") == []
    assert_secret_nowhere(token, [first, second], suite, server_dir)


# -- auth and an absent server -------------------------------------------------------------------


def test_a_wrong_token_stops_pytest_before_any_test_runs(
    pytester: pytest.Pytester, suite: Path, server: EvalrowsServer, token: str, server_dir: Path
) -> None:
    wrong = f"evk-wrong-{secrets.token_hex(12)}"
    result = run(pytester, f"--eval-store={server.url}", f"--eval-api-key={wrong}")
    line = usage_error(result)  # exit code 4, no traceback, one line on stderr
    assert server.url in line and "401" in line, line
    assert not (suite / "ran.txt").exists()
    assert "passed" not in result.stdout.str() and "failed" not in result.stdout.str()
    with SQLiteStore(server.db, create=False) as store:
        assert store.list_projects() == []
    for secret in (wrong, token):
        assert_secret_nowhere(secret, [result], suite, server_dir)


def test_a_server_down_all_session_keeps_rows_for_evalrows_flush(
    pytester: pytest.Pytester,
    suite: Path,
    make_server: Callable[[], EvalrowsServer],
    token: str,
    server_dir: Path,
) -> None:
    (suite / "broken").touch()
    plain = pytester.runpytest_subprocess()
    plain.assert_outcomes(passed=9, failed=3)

    port = closed_port()
    url = f"http://127.0.0.1:{port}"
    down = run(
        pytester,
        f"--eval-store={url}",
        f"--eval-api-key={token}",
        "--eval-http-timeout=2",
        "--eval-http-retries=1",  # nothing listens: no need to wait out five backoffs
    )
    down.assert_outcomes(passed=9, failed=3)
    assert down.ret == plain.ret == pytest.ExitCode.TESTS_FAILED
    assert "Traceback" not in output_of(down)
    lines = summary_lines(down)
    assert read_summary(down).undelivered == 12
    assert any(line.startswith(f"store unavailable: {url} cannot be reached") for line in lines)
    spool = suite / ".evalrows" / "spool"
    spooled = spooled_rows(spool)
    assert sorted(spooled) == sorted(map(rid, CASES))
    spooled_spans = {span["span_id"] for e in spooled_entries(spool) for span in e["spans"]}
    assert len(spooled_spans) == 36
    assert_secret_nowhere(token, [down], suite)

    server = make_server()
    server.start(port)
    flush = evalrows("flush", "--store", url, cwd=suite, key=token)
    assert flush.returncode == 0, flush.stderr
    assert flush.stdout.splitlines() == [
        f"delivered 12 rows to experiment {EXPERIMENT!r} (project {suite.name!r})",
        "delivered 12 rows (12 new, 0 updated, 0 already there) and 24 spans from 1 spool "
        "files; removed 0 stale spans",
    ]
    assert spool_files(spool) == []

    found = stored(server.db, EXPERIMENT)
    assert shape(found) == expected_shape(rerun=False)
    for row_id, row in found.rows.items():
        sent = spooled[row_id]
        assert (row.version_id, row.attempt_id, row.status, row.output, row.version) == (
            sent["version_id"],
            sent["attempt_id"],
            sent["status"],
            sent["output"],
            1,
        )
    assert {span.span_id for span in found.spans} == spooled_spans
    assert_no_stale_spans(found)
    assert_secret_nowhere(token, [down], suite, server_dir, also=flush.stdout + flush.stderr)


# -- bugs --------------------------------------------------------------------------------------


def test_the_cli_reads_an_experiment_over_http_without_naming_its_project(
    server: EvalrowsServer, token: str, tmp_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        project = client.post("/v1/project", json={"name": "demo"}).json()
        body = {"project_id": project["id"], "name": EXPERIMENT}
        experiment = client.post("/v1/experiment", json=body).json()
        event = wire.row_event(make_row("r1").model_dump(mode="json"))
        inserted = client.post(
            f"/v1/experiment/{experiment['id']}/insert", json={"events": [event]}
        )
        assert inserted.status_code == 200, inserted.text
    named = evalrows(
        "rows",
        EXPERIMENT,
        "--project",
        "demo",
        "--store",
        server.url,
        "--json",
        cwd=tmp_path,
        key=token,
    )
    assert named.returncode == 0, named.stderr
    assert [row["id"] for row in json_lines(named.stdout)] == ["r1"]

    listed = evalrows("experiments", "--store", server.url, "--json", cwd=tmp_path, key=token)
    assert listed.returncode == 0, listed.stderr
    assert [(e["project"], e["name"]) for e in json_lines(listed.stdout)] == [("demo", EXPERIMENT)]
    rows = evalrows("rows", EXPERIMENT, "--store", server.url, "--json", cwd=tmp_path, key=token)
    assert rows.returncode == 0, rows.stderr
    assert [row["id"] for row in json_lines(rows.stdout)] == ["r1"]


def test_an_lf_rerun_after_a_failed_read_still_removes_stale_spans(
    pytester: pytest.Pytester, suite: Path, server: EvalrowsServer, token: str
) -> None:
    (suite / "broken").touch()
    first = run(pytester, f"--eval-store={server.url}", f"--eval-api-key={token}")
    first.assert_outcomes(passed=9, failed=3)
    (suite / "broken").unlink()
    # The service answers its first six fetches with 503 (Retry-After 0.01 s, so the client
    # gives the read up at once): the resume/drift read at collection fails; the writes work.
    with FaultyProxy(server.url, insert_every=0, every_503=0, failing_fetches=6) as proxy:
        second = run(pytester, f"--eval-store={proxy.url}", f"--eval-api-key={token}", "--lf")
    second.assert_outcomes(passed=3)
    assert proxy.faults() == {"503 soon": 6}
    report = session_report(second, store=server.url, key=token)  # the proxy is gone
    assert report["undelivered_rows"] == 0
    # Today: "3 rows written (3 new, 0 updated)", "stale spans removed: 0", and the first
    # attempt's root and user spans are still under the three rerun rows.
    assert report["stale_spans_removed"] == 6, summary_lines(second)
    found = stored(server.db, EXPERIMENT)
    assert_no_stale_spans(found)
    assert shape(found) == expected_shape(rerun=True)
    # The store could not be read before writing, yet new and updated are known: the server
    # counted them as it wrote.
    assert (
        f"attempt {header(second)['attempt']}: 3 rows written (0 new, 3 updated)"
    ) in summary_lines(second)
