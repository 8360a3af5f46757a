"""Judges in the suite (issue 11): ``@pytest.mark.eval(judges=[...])`` runs each judge on every
finished row while later tests run, ``eval_row.judge`` judges the trace so far inside a test,
and the evaluations are stored with the session, on the SQLite, memory and HTTP stores.

A judge's failure (it raised, or hung past ``--eval-judge-timeout``) is a failed evaluation;
it never changes a test's outcome or pytest's exit code. What the store cannot take is kept in
the spool and saved by the next session or ``evalrows flush``.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.cli import evalrows, json_lines, session_report
from support.output import output_of, summary_lines, usage_error
from support.servers import EvalrowsServer, Servers
from support.sessions import INI
from support.store import block_store, default_db, history, rows, unblock_store

from pytest_evalrows import MemoryStore
from pytest_evalrows.core.judgments import Evaluation
from pytest_evalrows.store.sqlite import SQLiteStore

pytest_plugins = ("pytester",)

EXPERIMENT = "judged"

# Three cases; `exact` (sync) says whether the output is the expected one, `brevity` (async)
# scores the output's length. Case c answers wrong: its test fails, as the judge says.
SUITE = """
import asyncio

import pytest

ANSWERS = {"a": "A", "b": "B", "c": "?"}


def exact(trace):
    return trace.output == trace.expected


async def brevity(trace):
    await asyncio.sleep(0)
    return 1.0 if len(trace.output) == 1 else 0.0


@pytest.mark.eval(judges=[exact, brevity])
@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_answer(case, eval_row):
    eval_row.log(output=ANSWERS[case], expected=case.upper())
    assert ANSWERS[case] == case.upper()
"""

EXPECTED_SCORES = {
    "a": {"judge:exact": 1.0, "judge:brevity": 1.0},
    "b": {"judge:exact": 1.0, "judge:brevity": 1.0},
    "c": {"judge:exact": 0.0, "judge:brevity": 1.0},
}


def rid(case: str, test: str = "test_answer") -> str:
    return f"test_suite.py::{test}[{case}]"


def judge_scores(scores: dict[str, float]) -> dict[str, float]:
    return {name: value for name, value in scores.items() if name.startswith("judge:")}


def evaluations(db: Path, experiment: str = EXPERIMENT) -> list[Evaluation]:
    with SQLiteStore(db, create=False) as store:
        return store.list_evaluations(store.get_experiment(experiment).id)


def check_judged(latest: dict[str, Any], found: list[Evaluation]) -> None:
    """Every row carries its judges' scores, and each judge judged each row's latest version
    once, successfully."""
    assert {row_id: judge_scores(row.scores) for row_id, row in latest.items()} == {
        rid(case): scores for case, scores in EXPECTED_SCORES.items()
    }
    assert sorted((e.row_id, e.judge_id) for e in found) == sorted(
        (rid(case), judge) for case in "abc" for judge in ("exact", "brevity")
    )
    for evaluation in found:
        row = latest[evaluation.row_id]
        assert evaluation.status == "success", evaluation
        assert (evaluation.version_id, evaluation.trace_id) == (row.version_id, row.root_span_id)
        assert evaluation.result is not None
        assert evaluation.result.row_score == row.scores[evaluation.score_name]


def judgment_counts(report: dict[str, Any]) -> dict[str, Any]:
    return {
        key: report[key]
        for key in (
            "judgments",
            "judgments_succeeded",
            "judgments_failed",
            "judgments_passed",
            "judgments_not_passed",
            "judgments_saved",
            "judgments_spooled",
        )
    }


ALL_SAVED = {
    "judgments": 6,
    "judgments_succeeded": 6,
    "judgments_failed": 0,
    "judgments_passed": 2,  # exact said passed for a and b, not for c
    "judgments_not_passed": 1,
    "judgments_saved": 6,
    "judgments_spooled": 0,
}


@pytest.fixture
def suite(pytester: pytest.Pytester) -> Path:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    return pytester.path


# -- the three stores ------------------------------------------------------------------------


def test_sync_and_async_judges_score_every_row_in_sqlite(
    pytester: pytest.Pytester, suite: Path
) -> None:
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")

    result.assert_outcomes(passed=2, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    db = default_db(pytester)
    check_judged(rows(db, EXPERIMENT), evaluations(db))
    report = session_report(result, cwd=suite)
    assert judgment_counts(report) == ALL_SAVED
    assert report["judge_mean_scores"] == {"exact": pytest.approx(2 / 3), "brevity": 1.0}
    assert "judgments: 6 (6 succeeded); passed 2 of 3" in "\n".join(summary_lines(result))
    # Judges still running at the end (a loaded machine) are waited for with one true line;
    # none left, nothing is said.
    waiting = [line for line in output_of(result).splitlines() if "waiting for" in line]
    for line in waiting:
        found = re.fullmatch(r"evalrows: waiting for (\d+) judgments \((\d+) done\)\.\.\.", line)
        assert found and int(found[1]) + int(found[2]) == 6, line


class UseStore:
    """A plugin whose hook hands the session the test's own store."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store

    def pytest_evalrows_make_store(self, config: pytest.Config, url: object) -> MemoryStore:
        return self.store


def test_judges_score_every_row_in_a_memory_store_from_the_hook(
    pytester: pytest.Pytester, suite: Path
) -> None:
    with MemoryStore() as store:
        result = pytester.runpytest_inprocess(
            f"--eval-experiment={EXPERIMENT}", "--eval-tracing=off", plugins=[UseStore(store)]
        )
        result.assert_outcomes(passed=2, failed=1)
        experiment = store.get_experiment(EXPERIMENT)
        latest = {row.row_id: row for row in store.latest_rows(experiment.id)}
        check_judged(latest, store.list_evaluations(experiment.id))
        (attempt,) = store.list_attempts(experiment.id)
        assert attempt.report is not None
        assert judgment_counts(attempt.report) == ALL_SAVED


@pytest.fixture
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvalrowsServer]:
    servers = Servers(tmp_path_factory.mktemp("served"))
    started = servers.make(f"evk-{secrets.token_hex(16)}")
    started.start()
    yield started
    servers.stop_all()


def test_judges_score_every_row_through_evalrows_serve(
    pytester: pytest.Pytester, suite: Path, server: EvalrowsServer
) -> None:
    key = server.token
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", f"--eval-store={server.url}", f"--eval-api-key={key}"
    )

    result.assert_outcomes(passed=2, failed=1)
    listed = evalrows(
        "rows", EXPERIMENT, "--store", server.url, "--json", cwd=suite, key=key, ok=True
    )
    latest = {row["id"]: row for row in json_lines(listed.stdout)}
    assert {row_id: judge_scores(row["scores"]) for row_id, row in latest.items()} == {
        rid(case): scores for case, scores in EXPECTED_SCORES.items()
    }
    found = evaluations(server.db)
    assert sorted((e.row_id, e.judge_id, e.status) for e in found) == sorted(
        (rid(case), judge, "success") for case in "abc" for judge in ("exact", "brevity")
    )
    report = session_report(result, cwd=suite, key=key)
    assert judgment_counts(report) == ALL_SAVED


# -- judges that fail ------------------------------------------------------------------------

FAILING = """
import threading

import pytest


def boom(trace):
    raise ValueError("no verdict today")


def stuck(trace):
    threading.Event().wait(60)  # far past --eval-judge-timeout
    return True


def fine(trace):
    return 0.5


@pytest.mark.eval(judges=[boom, stuck, fine])
@pytest.mark.parametrize("case", ["a", "b"])
def test_answer(case, eval_row):
    eval_row.log(output=case)
"""


def test_a_raising_and_a_hanging_judge_are_failed_evaluations_that_change_no_outcome(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=FAILING)
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "--eval-judge-timeout", "1"
    )

    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    assert "Traceback" not in output_of(result)
    found = {(e.row_id, e.judge_id): e for e in evaluations(default_db(pytester))}
    for case in "ab":
        assert found[rid(case), "boom"].status == "failure"
        assert found[rid(case), "boom"].error == "ValueError: no verdict today"
        assert found[rid(case), "stuck"].status == "failure"
        assert found[rid(case), "stuck"].error == "timed out after 1 s"
        assert found[rid(case), "fine"].status == "success"
    latest = rows(default_db(pytester), EXPERIMENT)
    assert {row_id: judge_scores(row.scores) for row_id, row in latest.items()} == {
        rid(case): {"judge:fine": 0.5} for case in "ab"
    }
    report = session_report(result)
    assert (report["judgments"], report["judgments_succeeded"], report["judgments_failed"]) == (
        6,
        2,
        4,
    )
    said = "\n".join(summary_lines(result))
    assert "judgments: 6 (2 succeeded, 4 failed)" in said
    assert (
        f"judge 'boom' failed on 2 rows (the first {rid('a')!r}): ValueError: no verdict today"
        in said
    )


def test_judgments_still_running_when_the_wait_runs_out_are_failures_and_the_wait_is_shown(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=FAILING.replace("[boom, stuck, fine]", "[stuck]"))
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "--eval-judge-wait", "1"
    )

    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["evalrows: waiting for 2 judgments (0 done)..."])
    found = evaluations(default_db(pytester))
    assert [(e.status, e.error) for e in found] == [
        ("failure", "not finished when the session ended (it waited 1 s: --eval-judge-wait)")
    ] * 2
    assert session_report(result)["judgments_failed"] == 2


# -- eval_row.judge --------------------------------------------------------------------------

IN_TEST = """
import pytest

from pytest_evalrows.core.row import JudgeFailedError


def exact(trace):
    return trace.output == trace.expected


def has_input(trace):
    return trace.input == {"case": trace.output} and trace.metadata["source"] == "suite"


def boom(trace):
    raise ValueError("no verdict")


@pytest.mark.eval
@pytest.mark.parametrize("case", ["a", "b"])
def test_answer(case, eval_row):
    eval_row.log(output=case, expected="a", metadata={"source": "suite"})
    assert eval_row.judge(has_input).passed
    assert eval_row.judge(exact).passed


@pytest.mark.eval
@pytest.mark.parametrize("case", ["x"])
def test_a_judge_that_raises(case, eval_row):
    with pytest.raises(JudgeFailedError, match="judge 'boom' failed: ValueError: no verdict"):
        eval_row.judge(boom)
"""


def test_eval_row_judge_fails_a_test_that_asserts_on_it_and_passes_another(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=IN_TEST)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*assert False*", "*judge(exact)*"])
    db = default_db(pytester)
    latest = rows(db, EXPERIMENT)
    assert latest[rid("a")].status == "passed"
    assert latest[rid("b")].status == "failed"
    assert judge_scores(latest[rid("a")].scores) == {"judge:has_input": 1.0, "judge:exact": 1.0}
    assert judge_scores(latest[rid("b")].scores) == {"judge:has_input": 1.0, "judge:exact": 0.0}
    found = evaluations(db)
    assert Counter((e.row_id, e.judge_id, e.status) for e in found) == Counter(
        {
            (rid("a"), "has_input", "success"): 1,
            (rid("a"), "exact", "success"): 1,
            (rid("b"), "has_input", "success"): 1,
            (rid("b"), "exact", "success"): 1,
            (rid("x", "test_a_judge_that_raises"), "boom", "failure"): 1,
        }
    )
    for evaluation in found:  # they judged the version that was stored
        assert evaluation.version_id == latest[evaluation.row_id].version_id


def test_eval_row_judge_works_without_recording(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=IN_TEST)
    result = pytester.runpytest_subprocess()

    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*assert False*", "*judge(exact)*"])
    assert not (pytester.path / ".evalrows").exists()


RERUN = """
import pathlib

import pytest

HERE = pathlib.Path(__file__).parent


def nonempty(trace):
    return bool(trace.output)


@pytest.mark.eval(judges=[nonempty])
@pytest.mark.parametrize("case", ["flaky"])
def test_answer(case, eval_row):
    eval_row.log(output=case)
    assert eval_row.judge(nonempty).passed
    first = not (HERE / "ran").exists()
    (HERE / "ran").touch()
    assert not first, "fails the first time only"
"""


def test_a_rerun_plugins_repeated_execution_is_not_judged(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=RERUN)
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "-p", "rerunfailures", "--reruns", "1"
    )

    assert result.parseoutcomes() == {"passed": 1, "rerun": 1}
    db = default_db(pytester)
    (row,) = rows(db, EXPERIMENT).values()
    assert row.execution == 2
    found = evaluations(db)
    # One from the marker, one from eval_row.judge: both of the final execution.
    assert [(e.judge_id, e.version_id) for e in found] == [("nonempty", row.version_id)] * 2


# -- versions --------------------------------------------------------------------------------

VERSIONED = """
import os

import pytest


def first(trace):
    return True


def second(trace):
    return 0.75


JUDGES = [first] if os.environ.get("ROUND") == "1" else [second]


@pytest.mark.eval(judges=JUDGES)
@pytest.mark.parametrize("case", ["a", "b"])
def test_answer(case, eval_row):
    eval_row.log(output=case)
"""


def test_a_second_session_makes_the_first_versions_judgments_history(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=VERSIONED)
    monkeypatch.setenv("ROUND", "1")
    pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}").assert_outcomes(passed=2)
    monkeypatch.setenv("ROUND", "2")
    pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}").assert_outcomes(passed=2)

    db = default_db(pytester)
    for case in "ab":
        old, new = history(db, EXPERIMENT, rid(case))
        # The latest version shows only its own judges' scores; the old one keeps its own.
        assert judge_scores(new.scores) == {"judge:second": 0.75}
        assert judge_scores(rows(db, EXPERIMENT)[rid(case)].scores) == {"judge:second": 0.75}
        assert judge_scores(old.scores) == {"judge:first": 1.0}
    by_version = {(e.version_id, e.judge_id) for e in evaluations(db)}
    assert len(by_version) == 4  # every version's judgments are kept


def test_a_resumed_session_judges_what_it_runs_and_leaves_the_other_rows_judgments(
    pytester: pytest.Pytester, suite: Path
) -> None:
    first = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    first.assert_outcomes(passed=2, failed=1)
    db = default_db(pytester)
    before = {row_id: row.version_id for row_id, row in rows(db, EXPERIMENT).items()}

    resumed = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", "--eval-resume")

    resumed.assert_outcomes(failed=1, deselected=2)  # only case c runs again
    latest = rows(db, EXPERIMENT)
    assert {row_id: judge_scores(row.scores) for row_id, row in latest.items()} == {
        rid(case): scores for case, scores in EXPECTED_SCORES.items()
    }
    assert latest[rid("a")].version_id == before[rid("a")]  # a and b untouched
    assert latest[rid("c")].version_id != before[rid("c")]
    found = evaluations(db)
    assert len(found) == 6 + 2  # c's new version judged by both judges
    assert {e.version_id for e in found if e.row_id == rid("c")} == {
        before[rid("c")],
        latest[rid("c")].version_id,
    }
    assert session_report(resumed)["judgments"] == 2


# -- xdist -----------------------------------------------------------------------------------


def test_under_xdist_each_worker_judges_its_rows_once(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_suite=SUITE.replace('["a", "b", "c"]', '["a", "b", "c", "d", "e", "f"]').replace(
            'ANSWERS = {"a": "A", "b": "B", "c": "?"}',
            'ANSWERS = {"a": "A", "b": "B", "c": "?", "d": "D", "e": "E", "f": "F"}',
        )
    )
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", "-n", "2")

    result.assert_outcomes(passed=5, failed=1)
    found = evaluations(default_db(pytester))
    assert Counter((e.row_id, e.judge_id) for e in found) == Counter(
        {(rid(case), judge): 1 for case in "abcdef" for judge in ("exact", "brevity")}
    )
    report = session_report(result)
    assert (report["judgments"], report["judgments_saved"], report["judgments_passed"]) == (
        12,
        12,
        5,
    )


WORKERS_REFUSE = """
from pytest_evalrows.errors import StoreError
from pytest_evalrows.store.sqlite import SQLiteStore


class NoJudgments(SQLiteStore):
    def save_evaluations(self, experiment_id, evaluations):
        raise StoreError("the evaluations endpoint is down")


def pytest_evalrows_make_store(config, url):
    if hasattr(config, "workerinput"):  # only the workers' store refuses
        return NoJudgments(config.rootpath / ".evalrows" / "evalrows.db")
    return None
"""


def test_judgments_xdist_workers_spooled_are_this_sessions_once_saved_at_its_end(
    pytester: pytest.Pytester, suite: Path
) -> None:
    """The controller saves what its workers spooled: they count as saved by this session,
    not as an earlier session's, nor as left in the spool."""
    pytester.makeconftest(WORKERS_REFUSE)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", "-n", "2")

    result.assert_outcomes(passed=2, failed=1)
    assert len(evaluations(default_db(pytester))) == 6
    report = session_report(result)
    assert (report["judgments_saved"], report["judgments_spooled"]) == (6, 0)
    assert report["judgments_leftover"] == 0
    said = "\n".join(summary_lines(result))
    assert "not saved" not in said and "an earlier session left" not in said


SPANNING = """
import time

import pytest
from opentelemetry import trace as otel


def calls_a_model(trace):
    # As an LLM judge's instrumented HTTP call would: a span with token counts.
    with otel.get_tracer("judge").start_as_current_span("judge call") as span:
        span.set_attribute("gen_ai.usage.input_tokens", 1000)
        time.sleep(0.2)
    return True


@pytest.mark.eval(judges=[calls_a_model])
@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_answer(case, eval_row):
    time.sleep(0.1)  # later cases run while earlier rows are judged
    eval_row.log(output=case)
"""


def test_a_judges_own_spans_go_under_no_row(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SPANNING)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")

    result.assert_outcomes(passed=3)
    db = default_db(pytester)
    with SQLiteStore(db, create=False) as store:
        experiment = store.get_experiment(EXPERIMENT).id
        names = [span.name for span in store.list_spans(experiment)]
        latest = store.latest_rows(experiment)
    assert "judge call" not in names
    assert all(not row.metrics.tokens for row in latest)
    assert len(evaluations(db)) == 3


# -- a store that cannot take them -----------------------------------------------------------


@pytest.mark.parametrize("later", ["the next session", "evalrows flush"])
def test_judgments_a_store_could_not_take_wait_in_the_spool_until_delivered(
    pytester: pytest.Pytester, suite: Path, later: str
) -> None:
    store = block_store(pytester.path)
    first = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", store)

    first.assert_outcomes(passed=2, failed=1)
    assert first.ret == pytest.ExitCode.TESTS_FAILED  # case c's own failure, nothing more
    spool = pytester.path / ".evalrows" / "spool"
    spooled = [
        json.loads(line) for path in spool.glob("*.jsonl") for line in path.read_text().splitlines()
    ]
    assert sum(len(entry.get("evaluations", [])) for entry in spooled) == 6
    said = "\n".join(summary_lines(first))
    assert f"6 judgments not saved: kept in {spool}" in said
    assert "Traceback" not in output_of(first)

    db = unblock_store(pytester.path)
    if later == "evalrows flush":
        flushed = evalrows("flush", "--store", db, "--spool", spool, cwd=pytester.path, ok=True)
        assert "saved 6 judgments" in flushed.stdout
    else:
        second = pytester.runpytest_subprocess(
            f"--eval-experiment={EXPERIMENT}", f"--eval-store={db}", "-k", "nothing"
        )
        assert session_report(second, cwd=pytester.path)["judgments_leftover"] == 6
    found = evaluations(db)
    assert len(found) == 6
    versions = {e.version_id for e in found}
    latest = rows(db, EXPERIMENT)
    assert versions == {row.version_id for row in latest.values()}
    assert {row_id: judge_scores(row.scores) for row_id, row in latest.items()} == {
        rid(case): scores for case, scores in EXPECTED_SCORES.items()
    }
    assert not [path for path in spool.glob("*.jsonl") if path.read_text().strip()]


# -- the marker ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("judges", "says"),
    [
        ("[lambda trace: True]", "a judge needs a name"),
        ("[exact, exact]", "has two judges named 'exact'"),
        ("exact", "takes a list or tuple of judges, not function"),
        ("[42]", "a judge needs a name"),
    ],
)
def test_judges_that_cannot_judge_stop_the_session_naming_the_test(
    pytester: pytest.Pytester, judges: str, says: str
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_suite=f"""
import pytest

def exact(trace):
    return True

@pytest.mark.eval(judges={judges})
@pytest.mark.parametrize("case", ["a"])
def test_answer(case, eval_row):
    pass
"""
    )
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    message = usage_error(result)
    assert rid("a") in message
    assert says in message


# -- skipped rows, and capture_rows ----------------------------------------------------------

SKIPPING = """
import pytest


def status(trace):
    return 1.0 if trace.status == "passed" else 0.0


@pytest.mark.eval(judges=[status])
@pytest.mark.parametrize(
    "case", ["ran", pytest.param("skipped", marks=pytest.mark.skip(reason="not today"))]
)
def test_answer(case, eval_row):
    eval_row.log(output=case)
"""


def test_skipped_rows_are_judged_too_and_capture_rows_reads_the_evaluations(
    pytester: pytest.Pytester,
) -> None:
    from pytest_evalrows.testing import capture_rows

    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SKIPPING)
    with capture_rows() as captured:
        pytester.runpytest_subprocess("--eval-experiment=mine").assert_outcomes(passed=1, skipped=1)
    assert sorted((e.row_id, e.judge_id, e.row_score) for e in captured.evaluations) == [
        (rid("ran"), "status", 1.0),
        (rid("skipped"), "status", 0.0),  # the judge decides what a skipped row is worth
    ]
    assert captured.rows[rid("skipped")].scores == {"judge:status": 0.0}


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ("--eval-judge-timeout=0", "valid values: a number of seconds above 0"),
        ("--eval-judge-concurrency=0", "valid values: a whole number, 1 or more"),
        ("--eval-judge-wait=-1", "valid values: a number of seconds 0 or more"),
        ("--eval-judge-wait=soon", "not a number of seconds"),
    ],
)
def test_a_bad_judge_setting_is_a_usage_error_naming_the_valid_values(
    pytester: pytest.Pytester, suite: Path, option: str, says: str
) -> None:
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", option)

    message = usage_error(result)
    assert option.split("=")[0] in message
    assert says in message


# The inner session asks for the server to be stopped as it ends, before the plugin saves.
STOP_AT_THE_END = """
import pathlib
import time

HERE = pathlib.Path(__file__).parent


def pytest_sessionfinish(session):
    (HERE / "stop-server").touch()
    while not (HERE / "server-stopped").exists():
        time.sleep(0.02)
"""


def test_judgments_a_server_gone_at_the_end_could_not_take_are_flushed_to_it_later(
    pytester: pytest.Pytester, suite: Path, server: EvalrowsServer
) -> None:
    pytester.makeconftest(STOP_AT_THE_END)
    key = server.token
    done = threading.Event()

    def stop_when_asked() -> None:
        while not (suite / "stop-server").exists():
            if done.wait(0.02):
                return
        port = server.port
        server.stop()
        server.port = port
        (suite / "server-stopped").touch()

    stopper = threading.Thread(target=stop_when_asked)
    stopper.start()
    try:
        first = pytester.runpytest_subprocess(
            f"--eval-experiment={EXPERIMENT}",
            f"--eval-store={server.url}",
            f"--eval-api-key={key}",
            "--eval-http-retries=0",
        )
    finally:
        done.set()
        stopper.join()

    first.assert_outcomes(passed=2, failed=1)
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    assert "Traceback" not in output_of(first)
    spool = suite / ".evalrows" / "spool"
    assert f"6 judgments not saved: kept in {spool}" in "\n".join(summary_lines(first))

    assert server.port is not None
    server.start(server.port)
    evalrows("flush", "--store", server.url, "--spool", spool, cwd=suite, key=key, ok=True)
    found = evaluations(server.db)
    assert sorted((e.row_id, e.judge_id, e.status) for e in found) == sorted(
        (rid(case), judge, "success") for case in "abc" for judge in ("exact", "brevity")
    )
    listed = evalrows(
        "rows", EXPERIMENT, "--store", server.url, "--json", cwd=suite, key=key, ok=True
    )
    assert {row["id"]: judge_scores(row["scores"]) for row in json_lines(listed.stdout)} == {
        rid(case): scores for case, scores in EXPECTED_SCORES.items()
    }
