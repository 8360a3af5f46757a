"""End to end under faults: real pytest sessions (``-n 2``) record into a real ``evalrows
serve`` behind the fault proxy (``fault_proxy.py``), and must never lose, duplicate or
misreport a row.

Each session is checked against what really happened: the server's SQLite file read before and
after it (WAL lets a reader in while the server runs), the spool left behind, and the requests
the proxy saw. Every number of the plugin's summary is compared with that truth; every
disagreement is collected, so one failure lists them all.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.cli import evalrows
from support.fault_proxy import DropAfterCommit, FaultProxy, Flap, Refuse, Reset, Rule
from support.output import header, read_summary, summary_lines
from support.servers import EvalrowsServer
from support.spool import spooled_entries

from pytest_evalrows.core.records import StaleSpan
from pytest_evalrows.errors import StoreError
from pytest_evalrows.models import RowVersion, SpanRecord
from pytest_evalrows.store.sqlite import SQLiteStore

pytest_plugins = ("pytester",)

EXPERIMENT = "nightly"
CASES = [f"c{i:02d}" for i in range(60)]
SESSION_TIMEOUT = 600.0

# Sixty cases; each opens two child spans with the user's tracer (like test_http_e2e's SUITE),
# waits DELAY seconds inside them (so a session lasts a few of the proxy's periods), and logs a
# score whose mean over the suite is known: (i % 5) / 4 averages 0.5.
SUITE = """
import time

import pytest
from opentelemetry import trace

CASES = [f"c{i:02d}" for i in range(60)]
DELAY = __DELAY__


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
def test_answer(case, eval_row):
    tracer = trace.get_tracer("suite")
    with tracer.start_as_current_span(f"retrieve-{case}"):
        with tracer.start_as_current_span(f"llm-{case}", attributes={"gen_ai.system": "test"}):
            time.sleep(DELAY)
            output = case.upper()
    eval_row.log(output=output, expected=case.upper())
    eval_row.score("quality", (int(case[1:]) % 5) / 4)
    assert output == case.upper()
"""
MEANS = "mean scores: pass 1.000, quality 0.500"


def rid(case: str) -> str:
    return f"test_suite.py::test_answer[{case}]"


ROW_IDS = [rid(case) for case in CASES]


def span_names(case: str) -> list[str]:
    return sorted([f"test_answer[{case}]", f"retrieve-{case}", f"llm-{case}"])


# -- what really happened -------------------------------------------------------------------------


@dataclass
class Observed:
    """The server's file, the spool and the proxy's request counts at one moment."""

    versions: dict[str, list[RowVersion]]  # every version of every row, oldest first
    spans: dict[str, SpanRecord]  # by span id
    stale: list[StaleSpan]  # what a clean-up of every row would remove now
    spooled: list[dict[str, Any]]  # the spool's entries no acks line acknowledged
    requests: Counter[str]  # what the proxy saw, by endpoint

    def version_ids(self) -> set[str]:
        return {v.version_id for versions in self.versions.values() for v in versions}

    def rows_of(self, attempt: str) -> dict[str, list[RowVersion]]:
        """The versions of ``attempt``, by row id."""
        found: dict[str, list[RowVersion]] = {}
        for row_id, versions in self.versions.items():
            mine = [v for v in versions if v.attempt_id == attempt]
            if mine:
                found[row_id] = mine
        return found

    def spooled_rows(self) -> list[dict[str, Any]]:
        return [row for entry in self.spooled for row in entry.get("rows") or []]

    def spooled_spans(self) -> list[dict[str, Any]]:
        return [span for entry in self.spooled for span in entry.get("spans") or []]

    def spooled_span_ids(self) -> set[str]:
        return {span["span_id"] for span in self.spooled_spans()}

    def stale_rows(self) -> set[str]:
        return {span.row_id for span in self.stale}


def observe(db: Path, spool: Path, proxy: FaultProxy | None) -> Observed:
    requests = Counter(proxy.stats().requests) if proxy is not None else Counter()
    versions: dict[str, list[RowVersion]] = {}
    spans: dict[str, SpanRecord] = {}
    stale: list[StaleSpan] = []
    if db.exists():
        with SQLiteStore(db, create=False) as store:
            try:
                experiment = store.get_experiment(EXPERIMENT)
            except StoreError:
                experiment = None
            if experiment is not None:
                for row in store.latest_rows(experiment.id):
                    versions[row.row_id] = store.history(experiment.id, row.row_id)
                spans = {span.span_id: span for span in store.list_spans(experiment.id)}
                stale = store.delete_stale_spans(experiment.id, dry_run=True)
    return Observed(versions, spans, stale, spooled_entries(spool), requests)


# -- the summary against the truth --------------------------------------------------------------


def check_session(
    name: str,
    result: pytest.RunResult,
    before: Observed,
    after: Observed,
    *,
    proxy_url: str,
    spool: Path,
    rerun: bool,
    exact_requests: bool,
) -> tuple[str, list[str]]:
    """The session's attempt id, and every way in which the session lost, duplicated or
    misreported a row: its summary against ``before`` and ``after``."""
    problems: list[str] = []

    def problem(text: str) -> None:
        problems.append(f"{name}: {text}")

    attempt = header(result)["attempt"]
    mine = after.rows_of(attempt)

    # Rows: each case once in this attempt, in the store or else in the spool, never both.
    for row_id, versions in mine.items():
        if len(versions) != 1:
            problem(f"{row_id} has {len(versions)} versions of this attempt")
    ids = [v.version_id for vs in after.versions.values() for v in vs]
    if len(ids) != len(set(ids)):
        problem(f"a version id is stored twice: {Counter(ids).most_common(3)}")
    spooled_mine = {row["row_id"] for row in after.spooled_rows() if row["attempt_id"] == attempt}
    if set(mine) & spooled_mine:
        problem(f"delivered yet still spooled: {sorted(set(mine) & spooled_mine)}")
    missing = set(ROW_IDS) - set(mine) - spooled_mine
    if missing:
        problem(f"lost: neither stored nor spooled: {sorted(missing)}")
    stored_ids = after.version_ids()
    for row in after.spooled_rows():
        if row["version_id"] in stored_ids:
            problem(f"spooled yet stored: {row['row_id']} ({row['attempt_id']})")
    for row in before.spooled_rows():
        if row["version_id"] not in stored_ids and row["version_id"] not in {
            r["version_id"] for r in after.spooled_rows()
        }:
            problem(f"an earlier session's spooled version vanished: {row['row_id']}")
    # The latest version of a row is its newest execution.
    for row_id, versions in after.versions.items():
        newest = max(versions, key=lambda v: v.metrics.start)
        if versions[-1].version_id != newest.version_id:
            problem(f"{row_id}: the latest version is not the newest execution")

    # The summary, line by line: every number it says, and no line it cannot check.
    said = read_summary(result)
    if (said.experiment, said.store) != (EXPERIMENT, proxy_url):
        problem(f"names another store or experiment: {said.experiment!r} in {said.store!r}")
    if said.attempt is not None and said.attempt != attempt:
        problem(f"names another attempt: {said.attempt!r}")
    said_numbers = {
        "own leftovers": said.own_leftovers,
        "leftovers": said.leftovers_delivered,
        "superseded": said.superseded,
        "removed": said.stale_removed,
        "undelivered": said.undelivered,
        "stale left": said.cleanup_pending,
    }
    numbers = {name: number for name, number in said_numbers.items() if number is not None}
    requests = Counter(said.requests) if said.requests is not None else None
    if said.mean_scores is not None and f"mean scores: {said.mean_scores}" != MEANS:
        problem(f"{said.mean_scores!r}: every case ran once, so {MEANS!r}")
    if said.spool_dir is not None and Path(said.spool_dir) != spool:
        problem(f"names another spool: {said.spool_dir!r}")
    if said.crashed_workers is not None:
        problem(f"no worker crashed, yet it says {said.crashed_workers} did")
    if said.lost is not None:
        problem(f"says {said.lost} rows were lost")
    for line in said.unknown:
        if re.search(r"\d", line):
            problem(f"a line this test cannot check yet: {line!r}")

    delivered = len(mine)
    if said.rows_written is None:
        problem("no 'rows written' line")
    else:
        count = said.rows_written
        # Rows the controller delivered from its workers' spool files are among those written.
        own = numbers.get("own leftovers", 0)
        if count != delivered or own > count:
            problem(
                f"'{count} rows written' ({own} of them from workers' spool files), but "
                f"{delivered} rows of this attempt are stored"
            )
        if said.new_rows is not None and said.updated_rows is not None:
            new, updated = said.new_rows, said.updated_rows
            # New: the row had no version before this attempt's (a row that a leftover of an
            # earlier session reached first may count either way).
            surely_new = sum(
                1 for row_id in mine if all(v.attempt_id == attempt for v in after.versions[row_id])
            )
            maybe_new = sum(1 for row_id in mine if row_id not in before.versions)
            if new + updated != count or not surely_new <= new <= maybe_new:
                problem(
                    f"'({new} new, {updated} updated)': {surely_new} to {maybe_new} of the "
                    f"{delivered} stored rows were new"
                )
        elif said.unknown_why is None:
            problem("unreadable detail of the 'rows written' line")
        if rerun and count == 0:
            problem("the rerun wrote nothing")

    undelivered = len(after.spooled_rows())
    told = numbers.get("undelivered", 0)
    if told != undelivered:
        problem(f"says {told} rows not delivered; the spool holds {undelivered}")

    before_spooled = {r["version_id"]: r for r in before.spooled_rows()}
    leftovers = sum(1 for version_id in before_spooled if version_id in stored_ids)
    if numbers.get("leftovers", 0) != leftovers:
        problem(
            f"says {numbers.get('leftovers', 0)} rows an earlier session left were delivered; "
            f"{leftovers} were"
        )

    # Versions written while an execution that started later was already stored.
    new_versions = [
        v
        for versions in after.versions.values()
        for v in versions
        if v.version_id not in before.version_ids()
    ]
    superseded = sum(
        1
        for v in new_versions
        if any(
            w.metrics.start > v.metrics.start and (w.created or 0) <= (v.created or 0)
            for w in after.versions[v.row_id]
        )
    )
    if numbers.get("superseded", 0) != superseded:
        problem(f"says {numbers.get('superseded', 0)} older versions delivered; {superseded} were")

    # Stale spans: removed = every span the store held during the session (before, plus what
    # was delivered from an earlier spool) that is gone after it. Over HTTP a replaced version's
    # root span is history, not a stale span: the server drops it as it writes the new version,
    # and the summary counts the user spans only. Nothing gone may belong to a latest version.
    held: dict[str, SpanRecord | dict[str, Any]] = dict(before.spans)
    held.update((span["span_id"], span) for span in before.spooled_spans())
    gone = set(held) - set(after.spans) - after.spooled_span_ids()
    for span_id in sorted(gone):
        span = _as_span(held[span_id])
        latest = after.versions.get(span.row_id or "", [None])[-1]
        if latest is not None and (span.attempt_id, span.root_span_id) == (
            latest.attempt_id,
            latest.root_span_id,
        ):
            problem(f"a live span was deleted: {span.name} of {span.row_id}")
    roots = {span_id for span_id in gone if not _as_span(held[span_id]).span_parents}
    if numbers.get("removed", 0) != len(gone - roots):
        problem(
            f"says {numbers.get('removed')} stale spans removed; {len(gone - roots)} spans of "
            f"earlier executions are gone from the store (and {len(roots)} replaced root spans)"
        )
    stale_rows = len(after.stale_rows())
    if numbers.get("stale left", 0) != stale_rows:
        problem(
            f"says stale spans are left under {numbers.get('stale left', 0)} rows; they are "
            f"under {stale_rows}: {sorted(after.stale_rows())[:3]}"
        )

    # Requests: the summary counts what the client sent; the proxy saw them all but those
    # refused at connect.
    seen = after.requests - before.requests
    if requests is None:
        problem(f"no 'requests to the store' line; the proxy saw {dict(seen)}")
    else:
        for endpoint in sorted(set(seen) | set(requests)):
            told, got = requests[endpoint], seen[endpoint]
            if told < got or (exact_requests and told != got):
                problem(f"says {endpoint} {told} requests; the proxy saw {got}")
    return attempt, problems


def _as_span(span: SpanRecord | dict[str, Any]) -> SpanRecord:
    return span if isinstance(span, SpanRecord) else SpanRecord.model_validate(span)


def check_final(after: Observed, attempts: list[str]) -> list[str]:
    """After every session and any flush: one row per case, one version per attempt in order,
    the latest owning exactly its three spans, nothing stale, nothing spooled."""
    problems = []
    if sorted(after.versions) != sorted(ROW_IDS):
        problems.append(f"rows: {len(after.versions)} stored, not the {len(ROW_IDS)} cases")
    for case in CASES:
        versions = after.versions.get(rid(case), [])
        if [v.attempt_id for v in versions] != attempts:
            problems.append(f"{rid(case)}: versions of {[v.attempt_id for v in versions]}")
            continue
        spans = [span for span in after.spans.values() if span.row_id == rid(case)]
        if sorted(span.name for span in spans) != span_names(case) or {
            span.attempt_id for span in spans
        } != {attempts[-1]}:
            problems.append(
                f"{rid(case)}: spans {sorted((s.name, s.attempt_id[:8]) for s in spans)}"
            )
    if after.stale:
        problems.append(f"{len(after.stale)} stale spans left, e.g. {after.stale[0]}")
    if after.spooled:
        problems.append(f"the spool still holds {len(after.spooled)} entries")
    return problems


def flush(suite: Path, url: str, token: str, before: Observed) -> tuple[str, list[str]]:
    """``evalrows flush`` of what the sessions left; its output's numbers against ``before``."""
    done = evalrows("flush", "--store", url, cwd=suite, key=token, timeout=SESSION_TIMEOUT)
    problems = []
    if done.returncode != 0:
        problems.append(f"flush exited {done.returncode}: {done.stderr}")
    rows = before.spooled_rows()
    total = re.search(
        r"^delivered (\d+) rows \((\d+) new, (\d+) updated, (\d+) already there\)",
        done.stdout,
        re.MULTILINE,
    )
    if total is None:
        problems.append(f"flush printed no total: {done.stdout!r}")
    else:
        count, new, updated, there = map(int, total.groups())
        stored = before.version_ids()
        truly_there = sum(1 for row in rows if row["version_id"] in stored)
        if (count, new + updated + there, there) != (len(rows), len(rows), truly_there):
            problems.append(
                f"flush: {total[0]!r}, but {len(rows)} rows were spooled and {truly_there} of "
                "them already stored"
            )
    return done.stdout, problems


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def token() -> str:
    return f"evk-{secrets.token_hex(16)}"


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory, token: str) -> Iterator[EvalrowsServer]:
    directory = tmp_path_factory.mktemp("served")
    started = EvalrowsServer(directory / "served.db", token, directory / "server.log")
    started.start()
    yield started
    started.stop()
    log = started.log.read_text() if started.log.exists() else ""
    assert started.exit_codes == [0], log
    assert "Traceback" not in log, log


def make_suite(pytester: pytest.Pytester, delay: float) -> Path:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_suite=SUITE.replace("__DELAY__", repr(delay)))
    return pytester.path


def session(pytester: pytest.Pytester, url: str, *args: str) -> pytest.RunResult:
    """One recording session under xdist, the key in the environment, retries at their
    default unless ``args`` say otherwise."""
    return pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}",
        f"--eval-store={url}",
        "-n",
        "2",
        *args,
        timeout=SESSION_TIMEOUT,
    )


def two_sessions_then_flush(
    pytester: pytest.Pytester,
    server: EvalrowsServer,
    proxy: FaultProxy,
    token: str,
    *,
    exact_requests: bool,
) -> tuple[list[str], list[str], list[pytest.RunResult]]:
    """A session, a full rerun, then (with the proxy up) ``evalrows flush`` of anything left;
    the attempts, every problem found, and the sessions' results."""
    suite = pytester.path
    spool = suite / ".evalrows" / "spool"
    attempts, problems, results = [], [], []
    for number, rerun in ((1, False), (2, True)):
        before = observe(server.db, spool, proxy)
        result = session(pytester, proxy.url)
        proxy.wait_settled()
        after = observe(server.db, spool, proxy)
        results.append(result)
        outcomes = result.parseoutcomes()
        if (outcomes.get("passed"), result.ret) != (len(CASES), 0):
            problems.append(f"session {number}: {outcomes}, exit {result.ret}")
        attempt, found = check_session(
            f"session {number}",
            result,
            before,
            after,
            proxy_url=proxy.url,
            spool=spool,
            rerun=rerun,
            exact_requests=exact_requests,
        )
        attempts.append(attempt)
        problems += found
    left = observe(server.db, spool, proxy)
    if left.spooled:
        # The last down period met the end of the session: flushing with the store up must
        # finish the job.
        proxy.go_up()
        output, found = flush(suite, proxy.url, token, left)
        final = check_final(observe(server.db, spool, None), attempts)
        problems += found + [f"after flush: {p}" for p in final]
        if found or final:
            problems.append(f"(evalrows flush printed {output.strip()!r})")
    else:
        problems += check_final(left, attempts)
    return attempts, problems, results


# -- the tests -------------------------------------------------------------------------------------


def test_a_store_flapping_every_second_loses_duplicates_and_misreports_no_row(
    pytester: pytest.Pytester,
    server: EvalrowsServer,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The benchmark's scenario at small scale: 60 cases of two spans each under ``-n 2``,
    the store up 1 s and refusing connections 1 s, retries at their default; then a full
    rerun under the same flap."""
    monkeypatch.setenv("EVALROWS_API_KEY", token)
    make_suite(pytester, delay=0.05)
    with FaultProxy(server.url, flap=Flap(up=1.0, down=1.0, fault=Refuse())) as proxy:
        attempts, problems, results = two_sessions_then_flush(
            pytester, server, proxy, token, exact_requests=False
        )
        stats = proxy.stats()
    # The flap did hit the sessions: connections were refused and cut.
    assert stats.down_periods >= 2, stats
    assert len(set(attempts)) == 2
    assert problems == [], "\n".join(
        [*problems, "", *(line for r in results for line in summary_lines(r))]
    )


def test_answers_dropped_after_commit_make_no_duplicate_and_lose_no_row(
    pytester: pytest.Pytester,
    server: EvalrowsServer,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every third insert reaches the server, which commits it, and its answer is dropped: the
    client sees a transport error after the write. ``-n 2``, a session and a full rerun."""
    monkeypatch.setenv("EVALROWS_API_KEY", token)
    make_suite(pytester, delay=0.05)
    rules = [Rule(DropAfterCommit(), path=r"/insert$", every=3)]
    with FaultProxy(server.url, rules=rules) as proxy:
        attempts, problems, results = two_sessions_then_flush(
            pytester, server, proxy, token, exact_requests=True
        )
        stats = proxy.stats()
    assert len(set(attempts)) == 2
    for number, result in enumerate(results, start=1):
        errors = [line for line in summary_lines(result) if line.startswith("error:")]
        if errors:
            problems.append(f"session {number} reports errors for requests it retried: {errors}")
    # Rows were among the answers dropped, and every dropped request was sent again.
    assert stats.dropped_after_commit >= 2 and stats.dropped_rows >= 1, stats
    assert stats.unretried == 0, stats
    assert stats.retried == stats.dropped_after_commit
    assert problems == [], "\n".join(
        [*problems, "", *(line for r in results for line in summary_lines(r))]
    )


def test_a_store_that_stops_taking_writes_leaves_exactly_the_rest_for_evalrows_flush(
    pytester: pytest.Pytester,
    server: EvalrowsServer,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The flap test's last resort made certain: after its first two inserts, every insert's
    connection is dropped before the server sees it, so each session ends with rows (and, on
    the rerun, a clean-up) it could not deliver. The spool must hold exactly those, the
    summary must say so, and ``evalrows flush`` with the store back must finish the job."""
    monkeypatch.setenv("EVALROWS_API_KEY", token)
    suite = make_suite(pytester, delay=0.05)
    spool = suite / ".evalrows" / "spool"
    problems: list[str] = []
    attempts: list[str] = []
    results: list[pytest.RunResult] = []
    with FaultProxy(server.url) as proxy:
        for number, rerun in ((1, False), (2, True)):
            proxy.set_rules([Rule(Reset(), path=r"/insert$", after=2)])
            before = observe(server.db, spool, proxy)
            # One retry: the store is down for good, no need to wait out five backoffs.
            result = session(pytester, proxy.url, "--eval-http-retries=1")
            after = observe(server.db, spool, proxy)
            results.append(result)
            if (result.parseoutcomes().get("passed"), result.ret) != (len(CASES), 0):
                problems.append(f"session {number}: {result.parseoutcomes()}, exit {result.ret}")
            attempt, found = check_session(
                f"session {number}",
                result,
                before,
                after,
                proxy_url=proxy.url,
                spool=spool,
                rerun=rerun,
                exact_requests=True,
            )
            attempts.append(attempt)
            problems += found
            if not after.spooled_rows():
                problems.append(f"session {number}: the store refused writes, yet nothing spooled")
            proxy.set_rules([])
            output, found = flush(suite, proxy.url, token, after)
            problems += [f"flush after session {number}: {p} (printed {output!r})" for p in found]
            flushed = observe(server.db, spool, proxy)
            if flushed.spooled:
                problems.append(f"flush after session {number} left {len(flushed.spooled)} entries")
            if len(flushed.rows_of(attempt)) != len(CASES):
                problems.append(f"flush after session {number}: rows of {attempt} missing")
        stats = proxy.stats()
    problems += check_final(observe(server.db, spool, None), attempts)
    assert stats.faults["reset"] >= 2, stats
    assert problems == [], "\n".join(
        [*problems, "", *(line for r in results for line in summary_lines(r))]
    )
