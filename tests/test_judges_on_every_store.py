"""Judges that fail, and ``eval_row.judge`` failing a test, on each kind of store: the embedded
SQLite file, a memory store handed over by the hook, and ``evalrows serve`` over HTTP. A
judge's failure is a failed evaluation and changes no outcome; a test that asserts on
``eval_row.judge`` fails as the judge says."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
from support.cli import evalrows, json_lines
from support.servers import EvalrowsServer, Servers
from support.sessions import INI
from support.store import default_db

from pytest_evalrows import MemoryStore
from pytest_evalrows.core.judgments import Evaluation
from pytest_evalrows.store.sqlite import SQLiteStore

pytest_plugins = ("pytester",)

EXPERIMENT = "judged"

SUITE = """
import threading

import pytest

from pytest_evalrows.judging import JudgeFailedError


def boom(trace):
    raise ValueError("no verdict today")


def stuck(trace):
    threading.Event().wait(20)  # far past --eval-judge-timeout
    return True


def fine(trace):
    return 0.5


def exact(trace):
    return trace.output == trace.expected


@pytest.mark.eval(judges=[boom, stuck, fine])
@pytest.mark.parametrize("case", ["a", "b"])
def test_judged(case, eval_row):
    eval_row.log(output=case)


@pytest.mark.eval
@pytest.mark.parametrize("case", ["a", "b"])
def test_asks(case, eval_row):
    eval_row.log(output=case, expected="a")
    assert eval_row.judge(exact).passed


@pytest.mark.eval
def test_asks_a_judge_that_raises(eval_row):
    with pytest.raises(JudgeFailedError, match="judge 'boom' failed: ValueError"):
        eval_row.judge(boom)
"""

# What one session leaves: (row, judge) -> (status, error, score on the row)
EXPECTED = {
    ("test_suite.py::test_judged[a]", "boom"): ("failure", "ValueError: no verdict today", None),
    ("test_suite.py::test_judged[a]", "stuck"): ("failure", "timed out after 1 s", None),
    ("test_suite.py::test_judged[a]", "fine"): ("success", None, 0.5),
    ("test_suite.py::test_judged[b]", "boom"): ("failure", "ValueError: no verdict today", None),
    ("test_suite.py::test_judged[b]", "stuck"): ("failure", "timed out after 1 s", None),
    ("test_suite.py::test_judged[b]", "fine"): ("success", None, 0.5),
    ("test_suite.py::test_asks[a]", "exact"): ("success", None, 1.0),
    ("test_suite.py::test_asks[b]", "exact"): ("success", None, 0.0),
    ("test_suite.py::test_asks_a_judge_that_raises", "boom"): (
        "failure",
        "ValueError: no verdict today",
        None,
    ),
}


class UseStore:
    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def pytest_evalrows_make_store(self, config: pytest.Config, url: object) -> MemoryStore:
        return self.store


# A session on one kind of store: its outcomes, and what it stored, read back from that store.
Stored = tuple[dict[str, str], list[Evaluation], dict[str, dict[str, float]]]


def on_sqlite(pytester: pytest.Pytester, args: list[str]) -> tuple[pytest.RunResult, Stored]:
    result = pytester.runpytest_subprocess(*args)
    with SQLiteStore(default_db(pytester), create=False) as store:
        return result, read(store)


def on_memory(pytester: pytest.Pytester, args: list[str]) -> tuple[pytest.RunResult, Stored]:
    with MemoryStore() as store:
        result = pytester.runpytest_inprocess(*args, plugins=[UseStore(store)])
        return result, read(store)


def read(store: SQLiteStore) -> Stored:
    experiment = store.get_experiment(EXPERIMENT).id
    latest = store.latest_rows(experiment)
    return (
        {row.row_id: row.status for row in latest},
        store.list_evaluations(experiment),
        {row.row_id: row.scores for row in latest},
    )


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvalrowsServer]:
    servers = Servers(tmp_path_factory.mktemp("served"))
    started = servers.make(f"evk-{secrets.token_hex(16)}")
    started.start()
    yield started
    servers.stop_all()


@pytest.mark.parametrize("store", ["sqlite", "memory", "evalrows serve"])
def test_failing_judges_and_eval_row_judge_on_every_store(
    pytester: pytest.Pytester, request: pytest.FixtureRequest, store: str
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    args = [f"--eval-experiment={EXPERIMENT}", "--eval-judge-timeout", "1"]
    if store == "evalrows serve":
        server: EvalrowsServer = request.getfixturevalue("server")
        args += [f"--eval-store={server.url}", f"--eval-api-key={server.token}"]
        result = pytester.runpytest_subprocess(*args)
        # Read back over HTTP, as a user would: the rows and their scores...
        listed = evalrows(
            "rows", EXPERIMENT, "--store", server.url, "--json",
            cwd=pytester.path, key=server.token, ok=True,
        )  # fmt: skip
        latest = json_lines(listed.stdout)
        statuses = {row["id"]: row["status"] for row in latest}
        scores = {row["id"]: row["scores"] for row in latest}
        # ... and the evaluations as the server keeps them.
        with SQLiteStore(server.db, create=False) as behind:
            found = behind.list_evaluations(behind.get_experiment(EXPERIMENT).id)
    else:
        run: Callable[..., tuple[pytest.RunResult, Stored]] = (
            on_sqlite if store == "sqlite" else on_memory
        )
        result, (statuses, found, scores) = run(pytester, args)

    # Only the test that asserted on a failing judgment failed; judges changed nothing else.
    result.assert_outcomes(passed=4, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert statuses == {
        "test_suite.py::test_judged[a]": "passed",
        "test_suite.py::test_judged[b]": "passed",
        "test_suite.py::test_asks[a]": "passed",
        "test_suite.py::test_asks[b]": "failed",
        "test_suite.py::test_asks_a_judge_that_raises": "passed",
    }
    assert {(e.row_id, e.judge_id): (e.status, e.error, e.row_score) for e in found} == EXPECTED
    assert len(found) == len(EXPECTED)
    for (row_id, judge), (_, _, score) in EXPECTED.items():
        assert scores[row_id].get(f"judge:{judge}") == score, (row_id, judge)
