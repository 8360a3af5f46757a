"""Never lose, misorder or misreport a row (issue 8): a late delivery of an older attempt, a
worker killed between its spool and its report, resume decided once for every xdist worker, a
clean-up that fails, a store known down, rows that cannot be stored, and summaries whose every
number is true. Real pytest sessions in subprocesses, real SQLite, `evalrows serve` behind the
tests' fault proxy."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import evalrows
from support.fault_proxy import FaultProxy, Rule, unavailable
from support.output import header, output_of, read_summary, summary_lines, usage_error
from support.servers import EvalrowsServer
from support.sessions import INI
from support.spool import spool_files, spooled_entries
from support.store import BLOCKED_STORE, attempts, block_store, history, stored, unblock_store

from pytest_evalrows.braintrust.client import HTTPStore
from pytest_evalrows.delivery.delivery import Delivery, Totals, Unit
from pytest_evalrows.store.base import Store
from pytest_evalrows.store.sqlite import SQLiteStore

EXPERIMENT = "truth"
CASES = [f"c{i:02d}" for i in range(8)]

# Eight cases, each with one user span; a case listed in the file `failing` fails.
SUITE = """
import pathlib

import pytest
from opentelemetry import trace

HERE = pathlib.Path(__file__).parent
CASES = [f"c{i:02d}" for i in range(8)]


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
def test_case(case, eval_row):
    with open(HERE / "ran.txt", "a") as log:
        log.write(case + "\\n")
    with trace.get_tracer("suite").start_as_current_span(f"user-{case}"):
        eval_row.log(output=f"out-{case}")
    eval_row.score("quality", 0.5)
    failing = (HERE / "failing").read_text().split() if (HERE / "failing").exists() else []
    assert case not in failing
"""


def rid(case: str) -> str:
    return f"test_suite.py::test_case[{case}]"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    return pytester.path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EvalrowsServer]:
    served = EvalrowsServer(tmp_path / "served.db", secrets.token_hex(8), tmp_path / "serve.log")
    served.start()
    try:
        yield served
    finally:
        served.stop()


def http_args(url: str, server: EvalrowsServer) -> list[str]:
    return [f"--eval-store={url}", f"--eval-api-key={server.token}"]


def error_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in summary_lines(result) if line.startswith("error:")]


# -- item 2: a late delivery never becomes the latest -------------------------------------------


def test_a_late_flush_of_an_older_attempt_never_replaces_the_newer_rows(
    pytester: pytest.Pytester, suite: Path
) -> None:
    # The first session cannot reach its store: its rows wait in the spool.
    store = block_store(suite)
    first = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", store)
    assert read_summary(first).undelivered == len(CASES)
    older = header(first)["attempt"]
    db = unblock_store(suite)
    # A newer session on another machine (its own spool) records the same rows.
    second = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", store, "--eval-spool=elsewhere"
    )
    newer = header(second)["attempt"]
    before = stored(db, EXPERIMENT)

    # The older spool arrives last.
    flushed = evalrows("flush", "--store", BLOCKED_STORE, cwd=suite)

    assert flushed.returncode == 0, flushed.stderr
    assert f"{len(CASES)} older than the stored latest version" in flushed.stdout, flushed.stdout
    after = stored(db, EXPERIMENT)
    for case in CASES:
        assert after.rows[rid(case)].attempt_id == newer
        # The newer execution's spans are all there; the older one's are gone as stale.
        assert after.spans_of(rid(case)) == before.spans_of(rid(case))
        versions = history(db, EXPERIMENT, rid(case))
        assert [v.attempt_id for v in versions] == [older, newer]  # in the order they ran
        assert [v.version for v in versions] == [1, 2]


# -- item 3: one execution, one version ---------------------------------------------------------

# The worker running c03 dies right after the plugin spooled its row, before pytest-xdist sent
# the row's last report to the controller.
KILL_AFTER_SPOOL = """
import os
import pathlib

import pytest

HERE = pathlib.Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_logreport(report):
    if report.when == "teardown" and report.nodeid.endswith("[c03]"):
        if (HERE / "kill-armed").exists():
            (HERE / "kill-armed").unlink()
            os._exit(3)
"""


def test_a_worker_killed_between_spool_and_report_leaves_one_version(
    pytester: pytest.Pytester, suite: Path
) -> None:
    pytester.makeconftest(KILL_AFTER_SPOOL)
    (suite / "kill-armed").touch()

    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", "-n", "2")

    assert "crashed" in output_of(result)  # xdist saw the worker die
    db = suite / ".evalrows" / "evalrows.db"
    versions = history(db, EXPERIMENT, rid("c03"))
    assert len(versions) == 1, [(v.status, v.version_id) for v in versions]
    # The worker's own row stands: what the test logged, not a crash placeholder.
    assert (versions[0].status, versions[0].output) == ("passed", "out-c03")
    assert all(len(history(db, EXPERIMENT, rid(case))) == 1 for case in CASES)
    # The attempt counts the row as what it is, with every other row.
    assert attempts(db, EXPERIMENT)[0].counts == {"passed": len(CASES)}
    assert spool_files(suite / ".evalrows" / "spool") == []
    assert read_summary(result).undelivered is None


# -- item 4: resume decided once, in the controller ---------------------------------------------


def test_resume_under_xdist_reads_the_store_once_and_every_worker_agrees(
    pytester: pytest.Pytester, suite: Path, server: EvalrowsServer
) -> None:
    (suite / "failing").write_text("c02 c05")
    with FaultProxy(server.url) as proxy:
        first = pytester.runpytest_subprocess(
            f"--eval-experiment={EXPERIMENT}", *http_args(proxy.url, server)
        )
        first.assert_outcomes(passed=6, failed=2)
        (suite / "ran.txt").unlink()
        # Every other read of the rows fails: a worker reading for itself would see nothing.
        proxy.set_rules([Rule(unavailable(), path="/fetch$", every=2)])
        fetches = proxy.stats().requests["fetch"]

        second = pytester.runpytest_subprocess(
            f"--eval-experiment={EXPERIMENT}",
            *http_args(proxy.url, server),
            "--eval-resume=passed",
            "-n",
            "2",
            "--eval-http-retries=3",
        )
        reads = proxy.stats().requests["fetch"] - fetches

    assert "Different tests were collected" not in output_of(second)
    second.assert_outcomes(failed=2)
    assert sorted((suite / "ran.txt").read_text().split()) == ["c02", "c05"]
    # One read of the rows for the whole session (a retried 503 included), none per worker;
    # the clean-up of the two rerun rows reads once more, and the report once (a retried 503
    # included).
    assert reads <= 2 + 1 + 2, reads


def test_resume_stops_with_one_line_when_the_store_cannot_be_read(
    pytester: pytest.Pytester, suite: Path, server: EvalrowsServer
) -> None:
    with FaultProxy(server.url) as proxy:
        proxy.set_rules([Rule(unavailable(), path="/fetch$")])
        result = pytester.runpytest_subprocess(
            f"--eval-experiment={EXPERIMENT}",
            *http_args(proxy.url, server),
            "--eval-resume",
            "-n",
            "2",
            "--eval-http-retries=1",
        )

    line = usage_error(result)
    assert line.startswith("ERROR: evalrows: --eval-resume=passed needs the stored rows")
    assert "Run without --eval-resume to run every case" in line
    assert not (suite / "ran.txt").exists()  # nothing ran, nothing was paid for


# -- item 5: a clean-up that fails is kept and finished later -----------------------------------

# Once the session's rows are written, the clean-up at its end finds the store down: the test
# takes it down when the file `finishing` appears, and says so with `down`.
DOWN_AT_CLEANUP = """
import pathlib
import time

import pytest

HERE = pathlib.Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    if (HERE / "down-at-cleanup").exists():
        (HERE / "finishing").touch()
        deadline = time.monotonic() + 60
        while not (HERE / "down").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
"""


def test_a_failed_clean_up_is_spooled_reported_and_finished_by_flush(
    pytester: pytest.Pytester, suite: Path, server: EvalrowsServer
) -> None:
    pytester.makeconftest(DOWN_AT_CLEANUP)
    (suite / "failing").write_text("c01 c06")
    with FaultProxy(server.url) as proxy:
        args = [f"--eval-experiment={EXPERIMENT}", *http_args(proxy.url, server)]
        pytester.runpytest_subprocess(*args).assert_outcomes(passed=6, failed=2)
        (suite / "failing").unlink()
        (suite / "down-at-cleanup").touch()
        taker = threading.Thread(target=take_down_when_finishing, args=(suite, proxy))
        taker.start()
        try:
            rerun = pytester.runpytest_subprocess(*args, "--lf", "--eval-http-retries=1")
        finally:
            taker.join(timeout=120)
        rerun.assert_outcomes(passed=2)
        assert rerun.ret == pytest.ExitCode.OK  # the plugin changes no outcome
        lines = summary_lines(rerun)
        assert read_summary(rerun).stale_removed is None
        assert any(
            line.startswith("stale spans left under 2 rows: their clean-up is kept in ")
            and f"`evalrows gc {EXPERIMENT}`" in line
            for line in lines
        ), lines
        assert any(line.startswith("error: removing stale spans failed: ") for line in lines)
        assert read_summary(rerun).undelivered is None  # the rows themselves were delivered
        cleanups = [
            e["cleanup"] for e in spooled_entries(suite / ".evalrows" / "spool") if "cleanup" in e
        ]
        assert cleanups == [sorted([rid("c01"), rid("c06")])]

        proxy.go_up()
        flushed = evalrows("flush", "--store", proxy.url, cwd=suite, key=server.token)

    assert flushed.returncode == 0, flushed.stderr
    assert "removed 2 stale spans" in flushed.stdout, flushed.stdout  # the first user spans
    assert spool_files(suite / ".evalrows" / "spool") == []
    server.stop()
    found = stored(server.db, EXPERIMENT)
    for case in ("c01", "c06"):
        spans = found.spans_of(rid(case))
        assert {span.attempt_id for span in spans} == {found.rows[rid(case)].attempt_id}


def take_down_when_finishing(suite: Path, proxy: FaultProxy) -> None:
    """Wait for the rerun's rows to be written, then take the store down for its clean-up."""
    deadline = time.monotonic() + 60
    while not (suite / "finishing").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    # The rows go out within a writer wake (0.5 s) of each test: wait for both inserts.
    while time.monotonic() < deadline:
        inserted = sum(seen.rows for seen in proxy.seen if seen.committed)
        if inserted >= len(CASES) + 2:
            break
        time.sleep(0.02)
    proxy.go_down()
    (suite / "down").touch()


# -- item 7: every number true ------------------------------------------------------------------


def test_under_xdist_a_healthy_run_claims_nothing_undelivered_and_leftovers_count_once(
    pytester: pytest.Pytester, suite: Path
) -> None:
    store = block_store(suite)
    first = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", store, "-n", "2")
    assert read_summary(first).undelivered == len(CASES)
    assert first.ret == pytest.ExitCode.OK
    db = unblock_store(suite)

    second = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", store, "-n", "2", "--eval-fail-on-undelivered"
    )

    assert second.ret == pytest.ExitCode.OK, output_of(second)
    said = read_summary(second)
    assert said.leftovers_delivered == len(CASES)  # once, by one process
    assert said.undelivered is None
    assert said.written == (0, len(CASES))
    lines = summary_lines(second)
    assert not any("crashed" in line or "had not delivered" in line for line in lines), lines
    assert error_lines(second) == []
    assert [a.delivered for a in attempts(db, EXPERIMENT)] == [False, True]


def test_rows_that_can_be_neither_stored_nor_spooled_are_not_said_to_be_kept(
    pytester: pytest.Pytester, suite: Path
) -> None:
    (suite / "blocker").write_text("a file: neither the store nor the spool can go below it")
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}",
        "--eval-store=blocker/rows.db",
        "--eval-spool=blocker/spool",
        "--eval-fail-on-undelivered",
    )

    result.assert_outcomes(passed=len(CASES))
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # asked for: fail on undelivered rows
    lines = summary_lines(result)
    # Nothing is "kept in" a spool that cannot be written.
    assert read_summary(result).undelivered is None
    assert f"{len(CASES)} rows could be neither stored nor kept in the spool:" in lines
    for case in CASES:
        assert any(line.startswith(f"  row {rid(case)!r} ") for line in lines), lines


# -- item 8: a store known down costs one request a try -----------------------------------------


def test_a_store_known_down_is_not_retried_for_every_batch(
    tmp_path: Path, server: EvalrowsServer
) -> None:
    with FaultProxy(server.url) as proxy:
        proxy.set_rules([Rule(unavailable())])  # everything answers 503
        store = HTTPStore(proxy.url, api_key=server.token, retries=5, sleep=lambda _: None)
        # No probe falls due while the test runs.
        delivery = delivery_into(store, tmp_path / "spool", clock=lambda: 0.0)
        delivery.start(git_commit=None, git_branch=None)
        first_contact = len(proxy.seen)
        for number in range(30):
            delivery.send(Unit(row_doc(f"r{number}"), []))
        delivery.finish()
        delivery.close_spool()
        delivery.close()
        requests = len(proxy.seen)

    assert first_contact == 6  # the first failure pays for its 5 retries, once
    assert requests == first_contact + 1  # then one request: the last try at the end
    assert delivery.totals.undelivered_rows == 0  # not counted here, but kept:
    assert len([e for e in spooled_entries(tmp_path / "spool") if e["rows"]]) == 30


def test_a_store_known_down_is_probed_now_and_then_with_one_request_and_catches_up(
    tmp_path: Path, server: EvalrowsServer
) -> None:
    now = [0.0]
    with FaultProxy(server.url) as proxy:
        proxy.set_rules([Rule(unavailable())])
        store = HTTPStore(proxy.url, api_key=server.token, retries=5, sleep=lambda _: None)
        delivery = delivery_into(store, tmp_path / "spool", clock=lambda: now[0])
        delivery.start(git_commit=None, git_branch=None)
        assert delivery.writer is not None
        delivery.writer.close()  # deliver on this thread: every try is seen at once
        first_contact = len(proxy.seen)

        delivery.send(Unit(row_doc("r0"), []))  # no probe is due yet
        assert len(proxy.seen) == first_contact
        for number in range(1, 4):
            now[0] += 2.5
            delivery.send(Unit(row_doc(f"r{number}"), []))
            assert len(proxy.seen) == first_contact + number  # one request a probe
        proxy.set_rules([])  # the store is back
        now[0] += 2.5
        delivery.send(Unit(row_doc("r4"), []))
        delivery.finish()
        delivery.close_spool()
        delivery.close()

    assert delivery.totals.delivered_rows == {f"r{number}" for number in range(5)}
    assert spool_files(tmp_path / "spool") == []
    server.stop()
    with SQLiteStore(server.db, create=False) as served:
        experiment = served.get_experiment("e")
        assert len(served.latest_rows(experiment.id)) == 5


def delivery_into(store: Store, spool: Path, **options: Any) -> Delivery:
    """The delivery of a process recording attempt "a" of experiment "e" into ``store``."""
    return Delivery(
        open_store=lambda: store,
        store_display=store.display_url,
        project="p",
        experiment="e",
        spool_dir=spool,
        spool_name="session",
        totals=Totals(),
        attempt_id="a",
        **options,
    )


def row_doc(row_id: str) -> dict[str, Any]:
    return {
        "row_id": row_id,
        "version_id": row_id,
        "nodeid": row_id,
        "attempt_id": "a",
        "execution": 1,
        "status": "passed",
        "input": None,
        "output": None,
        "expected": None,
        "scores": {},
        "metadata": {},
        "tags": [],
        "error": None,
        "metrics": {"start": 1.0, "end": 2.0, "duration": 1.0},
        "root_span_id": "1" * 32,
        "span_id": "2" * 16,
    }


# -- item 1: a writer never dies on one bad row -------------------------------------------------


class PickyStore(SQLiteStore):
    """Real SQLite that cannot take one row (as a store can refuse what it cannot encode)."""

    def write(self, experiment_id: str, rows: Any, spans: Any, **kwargs: Any) -> Any:
        if any(row["row_id"] == "bad" for row in rows):
            raise TypeError("cannot encode this row")
        return super().write(experiment_id, rows, spans, **kwargs)


def test_a_row_the_store_cannot_take_is_counted_and_the_rest_delivered(tmp_path: Path) -> None:
    store = PickyStore(tmp_path / "rows.db")
    delivery = delivery_into(store, tmp_path / "spool")
    totals = delivery.totals
    delivery.start(git_commit=None, git_branch=None)
    for row_id in ("r1", "bad", "r2"):
        delivery.send(Unit(row_doc(row_id) | {"version_id": row_id}, []))
    delivery.finish()
    delivery.close_spool()

    assert [row_id for row_id, _ in totals.lost_rows] == ["bad"]
    assert "cannot encode this row" in totals.lost_rows[0][1]
    assert totals.delivered_rows == {"r1", "r2"}
    assert delivery.writer is not None and delivery.writer.crash is None
    experiment = store.get_experiment("e")
    assert sorted(row.row_id for row in store.latest_rows(experiment.id)) == ["r1", "r2"]
    assert spool_files(tmp_path / "spool") == []  # nothing left to be retried forever
    store.close()


# The store goes down once every worker runs tests, and comes back only when the controller
# finishes: every row waits in a worker's spool file, which the controller delivers.
DOWN_WHILE_WORKERS_RUN = """
import pathlib
import time

import pytest

HERE = pathlib.Path(__file__).parent


def wait_for(name):
    deadline = time.monotonic() + 60
    while not (HERE / name).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def store_down():
    (HERE / "tests-started").touch()
    wait_for("down")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput"):
        (HERE / "controller-finishing").touch()
        wait_for("up")
"""


def test_rows_workers_could_not_deliver_are_delivered_by_the_controller_and_said_so(
    pytester: pytest.Pytester, suite: Path, server: EvalrowsServer
) -> None:
    pytester.makeconftest(DOWN_WHILE_WORKERS_RUN)
    with FaultProxy(server.url) as proxy:

        def switch() -> None:
            wait_for(suite / "tests-started")
            proxy.go_down()
            (suite / "down").touch()
            wait_for(suite / "controller-finishing")
            proxy.go_up()
            (suite / "up").touch()

        switcher = threading.Thread(target=switch)
        switcher.start()
        try:
            result = pytester.runpytest_subprocess(
                f"--eval-experiment={EXPERIMENT}",
                *http_args(proxy.url, server),
                "-n",
                "2",
                "--eval-http-retries=1",
                "--eval-fail-on-undelivered",
            )
        finally:
            switcher.join(timeout=120)

    result.assert_outcomes(passed=len(CASES))
    assert result.ret == pytest.ExitCode.OK, output_of(result)  # everything was delivered
    lines = summary_lines(result)
    assert read_summary(result).undelivered is None, lines
    assert (
        f"of which {len(CASES)} rows its workers had not delivered were delivered from their "
        "spool files"
    ) in lines
    assert not any("crashed" in line for line in lines), lines
    assert spool_files(suite / ".evalrows" / "spool") == []
    server.stop()
    found = stored(server.db, EXPERIMENT)
    assert sorted(found.rows) == sorted(map(rid, CASES))
    # Kept through the API as an event of kind "attempt", stored by the server as an attempt.
    (attempt,) = attempts(server.db, EXPERIMENT)
    assert (attempt.delivered, attempt.counts) == (True, {"passed": len(CASES)})


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
