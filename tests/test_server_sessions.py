"""Sessions that write the same rows into ``evalrows serve`` at the same time: the server counts
new and updated rows in its write transaction and says so in its answer, so each session knows
whether its rows replaced another's, cleans up, and its counts are true."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.output import summary_lines
from support.servers import EvalrowsServer, Servers
from support.store import assert_no_stale_spans, make_row, stored

from pytest_evalrows.braintrust.client import HTTPStore
from pytest_evalrows.store.sqlite import SQLiteStore

CASES = [f"c{i:02d}" for i in range(12)]

# Each case opens two user spans; every process waits (bounded) until all of them started, so
# that the sessions really write at the same time.
SUITE = """
import os
import pathlib
import time

import pytest
from opentelemetry import trace

HERE = pathlib.Path(__file__).parent
TRACER = trace.get_tracer("suite")


@pytest.fixture(scope="session")
def everyone_started():
    arrived = HERE / "arrived"
    arrived.mkdir(exist_ok=True)
    (arrived / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(arrived.iterdir())) < int(os.environ["EVALTEST_WORKERS"]):
        assert time.monotonic() < deadline, "gave up waiting for the other session"
        time.sleep(0.02)


@pytest.mark.eval
@pytest.mark.parametrize("case", [f"c{i:02d}" for i in range(12)])
def test_case(case, eval_row, everyone_started):
    with TRACER.start_as_current_span(f"user-{case}"):
        with TRACER.start_as_current_span(f"step-{case}"):
            eval_row.log(output=f"out-{case}")
    eval_row.score("quality", 0.5)
"""


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvalrowsServer]:
    servers = Servers(tmp_path_factory.mktemp("served"))
    started = servers.make(f"evk-{secrets.token_hex(16)}")
    started.start()
    yield started
    servers.stop_all()


def test_two_sessions_writing_the_same_rows_at_once_leave_no_stale_span_and_true_counts(
    server: EvalrowsServer, tmp_path: Path
) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_suite.py").write_text(SUITE)
    args = ["-n", "2", "--eval-experiment=nightly", f"--eval-store={server.url}"]
    env = {**os.environ, "EVALTEST_WORKERS": "4", "EVALROWS_API_KEY": server.token}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:braintrust"]
    sessions = [
        subprocess.Popen(
            [*command, *args],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [session.communicate(timeout=300)[0] for session in sessions]
    new = updated = superseded = removed = 0
    for session, output in zip(sessions, outputs, strict=True):
        assert session.returncode == 0, output
        lines = summary_lines(output)
        written = next(line for line in lines if " rows written " in line)
        counts = re.search(r": (\d+) rows written \((\d+) new, (\d+) updated\)", written)
        assert counts is not None, written  # known, not "unknown"
        rows, session_new, session_updated = map(int, counts.groups())
        new, updated = new + session_new, updated + session_updated
        superseded += len(CASES) - rows  # written, but behind the other session's version
        stale = next(line for line in lines if line.startswith("stale spans removed:"))
        removed += int(stale.split()[3])
    # Each row was new once, and replaced once (or filed behind the other's version).
    assert (new, updated + superseded) == (len(CASES), len(CASES))
    found = stored(server.db, "nightly")
    assert_no_stale_spans(found)
    # The older versions' user spans went (their roots went with the newer writes).
    assert removed == 2 * len(CASES)
    assert len(found.spans) == 3 * len(CASES)
    with SQLiteStore(server.db, create=False) as store:
        experiment = store.get_experiment("nightly")
        assert {len(store.history(experiment.id, row)) for row in found.rows} == {2}


class CleansFirst(httpx.HTTPTransport):
    """A transport that, before the first delete it carries, lets ``first`` run: another
    session's clean-up of the same rows, between this one's read and its delete."""

    def __init__(self, first: Callable[[], None]) -> None:
        super().__init__()
        self.first: Callable[[], None] | None = first

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.first is not None and b'"_object_delete"' in request.read():
            first, self.first = self.first, None
            first()
        return super().handle_request(request)


def test_two_clean_ups_of_the_same_rows_at_once_count_each_span_once(
    server: EvalrowsServer,
) -> None:
    def child(row: dict[str, Any], index: int) -> dict[str, Any]:
        return {
            "span_id": f"{row['attempt_id']}-{row['row_id']}-{index}",
            "root_span_id": row["root_span_id"],
            "span_parents": [row["span_id"]],
            "row_id": row["row_id"],
            "attempt_id": row["attempt_id"],
            "execution": 1,
            "name": "step",
            "start": 100.2,
            "end": 100.4,
        }

    with HTTPStore(server.url, api_key=server.token) as writer:
        experiment = writer.get_or_create_experiment("proj", "clean")
        for attempt in ("a1", "a2"):
            rows = [make_row(f"r{i}", attempt).model_dump(mode="json") for i in range(3)]
            writer.write(experiment.id, rows, [child(row, n) for row in rows for n in range(2)])
        removed: list[int] = []

        def other_session() -> None:
            removed.append(len(writer.delete_stale_spans(experiment.id)))

        with HTTPStore(
            server.url, api_key=server.token, transport=CleansFirst(other_session)
        ) as late:
            removed.append(len(late.delete_stale_spans(experiment.id)))
    # Both found the six spans of a1 stale; the other session removed them first.
    assert removed == [6, 0]
