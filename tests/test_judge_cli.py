"""``evalrows judge``, ``judgments`` and ``judgment``: judges run over stored traces from the
command line, and the evaluations they leave read back, on real stores through the real
command."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import evalrows, json_lines
from support.openai_standin import OpenAIStandin
from support.servers import Servers
from support.store import make_row

from pytest_evalrows.cli_judging.judge import Progress
from pytest_evalrows.core.judgments import Evaluation, Judgment, Step
from pytest_evalrows.models import SpanRecord
from pytest_evalrows.store.sqlite import SQLiteStore

FR = "test_q.py::test_capital[fr]"
DE = "test_q.py::test_capital[de]"
IT = "test_q.py::test_capital[it]"

# The judges a user keeps beside their suite, named on the command line as checks:NAME.
CHECKS = """
from pytest_evalrows.judging import LLMJudge, no_span_errors

def exact(trace):
    return trace.output == trace.expected

def broken(trace):
    raise RuntimeError("the judge fell over")

class Exact:
    name = "exact"

    def __call__(self, trace):
        return True

ALL = [exact, no_span_errors(), exact]  # the same judge twice judges once
TWICE = [exact, Exact()]
NOT_A_JUDGE = 3
nameless = lambda trace: True
spans_fine = no_span_errors()
"""


def trace_ids(row_id: str) -> tuple[str, str]:
    """A row's own trace and span ids (distinct per row, as the recorder makes them)."""
    n = {FR: 1, DE: 2, IT: 3}[row_id]
    return f"{n:032x}", f"{n:016x}"


def lookup_id(row_id: str) -> str:
    """The id of the one span under the row's own, its "lookup"."""
    return "c" + trace_ids(row_id)[1][1:]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory with a store (experiment 'nightly': FR and IT answered right and passed, DE
    wrong and failed, with an error span) and the judges module ``checks``."""
    (tmp_path / "checks.py").write_text(CHECKS)
    with SQLiteStore(tmp_path / "rows.db") as store:
        experiment = store.get_or_create_experiment("demo", "nightly")
        rows, spans = [], []
        for row_id, status, output, expected in (
            (FR, "passed", "Paris", "Paris"),
            (DE, "failed", "Bonn", "Berlin"),
            (IT, "passed", "Rome", "Rome"),
        ):
            trace_id, span_id = trace_ids(row_id)
            row = make_row(row_id, status=status, output=output, expected=expected)
            rows.append(row.model_copy(update={"root_span_id": trace_id, "span_id": span_id}))
            spans.append(
                SpanRecord(
                    span_id=lookup_id(row_id),
                    root_span_id=trace_id,
                    span_parents=[span_id],
                    row_id=row_id,
                    attempt_id="attempt-1",
                    name="lookup",
                    start=100.1,
                    end=100.2,
                    status="error" if row_id == DE else "ok",
                )
            )
        store.write(experiment.id, rows, spans)
    return tmp_path


def run(project: Path, *args: str) -> tuple[int, str, str]:
    done = evalrows(*args, "--store", project / "rows.db", cwd=project)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def scores(project: Path) -> dict[str, dict[str, float]]:
    code, out, err = run(project, "rows", "nightly", "--json")
    assert (code, err) == (0, ""), err
    return {record["id"]: record["scores"] for record in json_lines(out)}


def one_error(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("evalrows: error: "), err
    return lines[0].removeprefix("evalrows: error: ")


# -- judge -----------------------------------------------------------------------------------


def test_judge_stores_an_evaluation_per_row_and_the_rows_show_its_score(project: Path) -> None:
    code, out, err = run(project, "judge", "nightly", "--judge", "checks:exact", "--json")

    assert code == 0, err
    (summary,) = json_lines(out)
    assert summary == {
        "judge": "exact",
        "evaluations": 3,
        "successes": 3,
        "failures": 0,
        "passed": 2,
        "mean_score": pytest.approx(2 / 3),
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_cost": 0.0,
    }
    # Not a terminal: no bar, one plain line at the end.
    assert re.fullmatch(r"evalrows: judged 3 rows with 1 judge in \d+\.\d s\n", err), err
    assert {row: found.get("judge:exact") for row, found in scores(project).items()} == {
        FR: 1.0,
        DE: 0.0,
        IT: 1.0,
    }
    code, out, _ = run(project, "judgments", "nightly", "--json")
    assert sorted((e["row_id"], e["status"], e["result"]["passed"]) for e in json_lines(out)) == [
        (DE, "success", False),
        (FR, "success", True),
        (IT, "success", True),
    ]


def test_judge_prints_a_table_per_judge_of_a_list_and_what_it_saved(project: Path) -> None:
    code, out, _ = run(project, "judge", "nightly", "--judge", "checks:ALL")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "JUDGE", "EVALS", "OK", "FAILED", "PASSED", "MEAN", "SCORE", "IN", "TOKENS", "OUT",
        "TOKENS", "COST",
    ]  # fmt: skip
    assert lines[1].split() == ["exact", "3", "3", "0", "2", "0.667", "0", "0", "$0.000000"]
    assert lines[2].split() == ["no_span_errors", "3", "3", "0", "2", "0.667", "0", "0",
                                "$0.000000"]  # fmt: skip
    assert lines[3] == "saved 6 evaluations of 3 rows to experiment 'nightly'"
    assert scores(project)[DE] == {"judge:exact": 0.0, "judge:no_span_errors": 0.0}


def test_judge_takes_rows_by_id_and_by_status(project: Path) -> None:
    code, out, _ = run(project, "judge", "nightly", "--judge", "checks:exact", "--row", FR)
    assert code == 0
    assert "saved 1 evaluation of 1 row" in out
    code, out, _ = run(project, "judge", "nightly", "--judge", "checks:ALL", "--status", "failed")
    assert code == 0, out
    assert "saved 2 evaluations of 1 row" in out
    found = scores(project)
    assert found[FR] == {"judge:exact": 1.0}
    assert found[DE] == {"judge:exact": 0.0, "judge:no_span_errors": 0.0}
    assert found[IT] == {}


def test_a_judge_that_raises_is_stored_as_a_failure_and_said_but_exits_0(project: Path) -> None:
    code, out, err = run(project, "judge", "nightly", "--judge", "checks:broken", "--row", DE)

    assert code == 0
    assert "saved 1 evaluation of 1 row" in out
    warning = err.splitlines()[-1]
    assert warning.startswith(
        "evalrows: warning: 1 of 1 judgments failed, stored as failed evaluations "
        "(evalrows judgments nightly --status failure); the first: broken on "
    )
    assert "the judge fell over" in warning
    (stored,) = json_lines(run(project, "judgments", "nightly", "--json")[1])
    assert (stored["status"], stored["judge_id"]) == ("failure", "broken")
    assert "the judge fell over" in stored["error"]
    assert scores(project)[DE] == {}


BAD_JUDGE_COMMANDS = [
    (["--judge", "nowhere:exact"], "--judge 'nowhere:exact': no module 'nowhere' in the "),
    (["--judge", "checks"], "--judge 'checks': give MODULE:NAME, such as checks:exact_"),
    (
        ["--judge", "checks:nope"],
        "module checks has no 'nope' (its judges: ALL, TWICE, broken, exact, nameless, spans_fine)",
    ),
    (["--judge", "checks:NOT_A_JUDGE"], "--judge 'checks:NOT_A_JUDGE' is an int: a judge is "),
    (["--judge", "checks:LLMJudge"], "is the class LLMJudge (give an instance of it)"),
    (
        ["--judge", "checks:no_span_errors"],
        "--judge 'checks:no_span_errors': no_span_errors() cannot be called with a trace; if it "
        "makes judges, name one it makes (my_judge = no_span_errors(...))",
    ),
    (["--judge", "checks:nameless"], "--judge 'checks:nameless': a judge needs a name"),
    (["--judge", "checks:TWICE"], "a judge named 'exact' is already given by 'checks:TWICE'"),
    (
        ["--judge", "checks:exact", "--status", "done"],
        "--status 'done': expected one of passed, failed, error, skipped, xfailed, xpassed",
    ),
    (["--judge", "checks:exact", "--concurrency", "0"], "--concurrency '0': expected a whole "),
    (["--judge", "checks:exact", "--timeout", "soon"], "--timeout 'soon': expected a number"),
]


@pytest.mark.parametrize(("args", "said"), BAD_JUDGE_COMMANDS)
def test_a_bad_judge_command_is_one_line_naming_what_is_valid(
    project: Path, args: list[str], said: str
) -> None:
    code, out, err = run(project, "judge", "nightly", *args)

    assert (code, out) == (2, "")
    assert said in one_error(err)


def test_a_module_that_fails_to_import_is_one_line(project: Path) -> None:
    (project / "faulty.py").write_text("raise ValueError('no config here')\n")
    code, _, err = run(project, "judge", "nightly", "--judge", "faulty:exact")
    assert code == 2
    assert one_error(err) == (
        "--judge 'faulty:exact': importing faulty failed: ValueError: no config here"
    )


def test_an_unknown_experiment_or_row_is_one_line(project: Path) -> None:
    code, _, err = run(project, "judge", "weekly", "--judge", "checks:exact")
    assert code == 1
    assert one_error(err).startswith("no experiment 'weekly' in sqlite:///")
    code, _, err = run(
        project, "judge", "nightly", "--judge", "checks:exact", "--row", "x", "--row", FR
    )
    assert code == 1
    assert one_error(err) == "no row 'x' in experiment 'nightly'"
    assert scores(project)[FR] == {}  # nothing judged when one row is unknown
    exact = ("--judge", "checks:exact")
    code, _, err = run(project, "judge", "nightly", *exact, "--status", "xfailed")
    assert code == 1
    assert one_error(err) == "no rows with status xfailed to judge in 'nightly'"
    code, _, err = run(project, "judgments", "weekly")
    assert code == 1
    assert one_error(err).startswith("no experiment 'weekly' in sqlite:///")


def test_evaluations_the_store_cannot_take_are_one_line_and_exit_1(project: Path) -> None:
    # A judge that drops the store's evaluations table while it judges: the save must fail.
    (project / "vandal.py").write_text(
        "import sqlite3\n"
        "def vandal(trace):\n"
        "    with sqlite3.connect('rows.db') as raw:\n"
        "        raw.execute('DROP TABLE IF EXISTS evaluations')\n"
        "    raw.close()\n"
        "    return True\n"
    )
    code, out, err = run(project, "judge", "nightly", "--judge", "vandal:vandal", "--row", FR)

    assert (code, out) == (1, "")
    assert err.splitlines()[0].startswith("evalrows: judged 1 row with 1 judge in ")
    assert one_error("\n".join(err.splitlines()[1:])).startswith(
        "could not save the 1 evaluation to sqlite:///"
    )


def test_ctrl_c_while_judging_is_said_in_a_line_and_saves_nothing(project: Path) -> None:
    (project / "slow.py").write_text(
        "import pathlib, time\n"
        "def slow(trace):\n"
        "    pathlib.Path('started').touch()\n"
        "    time.sleep(60)\n"
        "    return True\n"
    )
    command = [sys.executable, "-m", "pytest_evalrows.cli", "judge", "nightly"]
    command += ["--judge", "slow:slow", "--row", FR, "--store", str(project / "rows.db")]
    with subprocess.Popen(command, cwd=project, stderr=subprocess.PIPE, text=True) as judging:
        for _ in range(600):  # wait for the judge to be running, as a user would
            if (project / "started").exists() or judging.poll() is not None:
                break
            time.sleep(0.05)
        judging.send_signal(signal.SIGINT)
        _, err = judging.communicate(timeout=60)

    assert judging.returncode == 130, err
    assert re.fullmatch(
        r"evalrows: interrupted after 0 of 1 judgments in \d+\.\d s\n"
        r"evalrows: error: interrupted: no evaluation was saved\n",
        err,
    ), err
    assert listed(project) == []


def test_the_progress_bar_is_drawn_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream in (Terminal(), io.StringIO()):
        progress = Progress(4, stream)
        for done in range(5):
            progress(done, 4)
        progress.finish("judged 2 rows with 2 judges")
        said = stream.getvalue()
        assert re.search(r"evalrows: judged 2 rows with 2 judges in \d+\.\d s\n$", said)
        if isinstance(stream, Terminal):
            assert "\rjudging [" + "#" * 15 + "." * 15 + "] 2/4" in said
            assert "] 4/4" in said
        else:
            assert "judging [" not in said


# -- the LLM judge: what --estimate says, and what a run spends -------------------------------

ANSWER = json.dumps({"score": 1, "passed": True, "reasoning": "ok", "steps": []})
USAGE = {"prompt_tokens": 10, "completion_tokens": 5}
JUDGE_MODULE = """
import os
from pytest_evalrows.judging import LLMJudge

capital = LLMJudge(
    "capital",
    "The answer names the right capital.",
    model="stand-in-1",
    base_url=os.environ["STANDIN_URL"],
    api_key_env="STANDIN_KEY",
    input_cost_per_token=0.001,
    output_cost_per_token=0.002,
)
"""


@pytest.fixture
def stand_in() -> Iterator[OpenAIStandin]:
    with OpenAIStandin(answer=ANSWER, usage=USAGE) as model:
        yield model


def test_estimate_calls_no_model_and_a_run_spends_what_the_answers_say(
    project: Path, stand_in: OpenAIStandin
) -> None:
    (project / "llm_checks.py").write_text(JUDGE_MODULE)
    env = {"STANDIN_URL": stand_in.base_url, "STANDIN_KEY": "sk-test"}
    judge = ("judge", "nightly", "--judge", "llm_checks:capital", "--judge", "checks:exact")
    store = ("--store", str(project / "rows.db"))

    estimated = evalrows(*judge, "--estimate", "--json", *store, cwd=project, env=env, ok=True)

    assert stand_in.requests == 0
    capital, exact, total = json_lines(estimated.stdout)
    # The judge's own estimate of each stored trace, added up.
    from pytest_evalrows.judging import LLMJudge

    pricing = LLMJudge("capital", "The answer names the right capital.", model="stand-in-1",
                       base_url=stand_in.base_url, input_cost_per_token=0.001,
                       output_cost_per_token=0.002)  # fmt: skip
    with SQLiteStore(project / "rows.db") as opened:
        traces = opened.latest_traces(opened.get_experiment("nightly").id)
    expected = [pricing.estimate(trace) for trace in traces]
    assert capital == {
        "judge": "capital",
        "model": "stand-in-1",
        "traces": 3,
        "input_tokens": sum(e.input_tokens for e in expected),
        "output_tokens": sum(e.output_tokens for e in expected),
        "estimated_cost": pytest.approx(sum(e.estimated_cost for e in expected)),
    }
    assert capital["input_tokens"] > 0
    assert exact == {"judge": "exact", "model": None, "traces": 3, "input_tokens": 0,
                     "output_tokens": 0, "estimated_cost": 0.0}  # fmt: skip
    assert total == {**capital, "judge": None, "model": None}
    table = evalrows(*judge, "--estimate", *store, cwd=project, env=env, ok=True)
    assert table.stdout.splitlines()[-1].split()[:2] == ["TOTAL", "3"]
    assert stand_in.requests == 0

    ran = evalrows(*judge, "--json", *store, cwd=project, env=env, ok=True)

    assert stand_in.requests == 3
    spent, _ = json_lines(ran.stdout)
    assert spent == {
        "judge": "capital",
        "evaluations": 3,
        "successes": 3,
        "failures": 0,
        "passed": 3,
        "mean_score": 1.0,
        "prompt_tokens": 30,
        "completion_tokens": 15,
        "total_cost": pytest.approx(30 * 0.001 + 15 * 0.002),
    }
    assert {row: found["judge:capital"] for row, found in scores(project).items()} == {
        FR: 1.0,
        DE: 1.0,
        IT: 1.0,
    }


# -- judgments, judgment ----------------------------------------------------------------------

EVALUATION_FIELDS = {
    "id", "experiment_id", "row_id", "trace_id", "version_id", "judge_id", "status",
    "created_at", "started_at", "finished_at", "error", "result",
}  # fmt: skip


def evaluation(
    number: int, row_id: str, judge: str, *, passed: bool | None, **more: object
) -> Evaluation:
    trace_id = trace_ids(row_id)[0]
    if passed is None:  # a judgment that failed to run
        done: dict[str, object] = {"status": "failure", "error": "RuntimeError: boom"}
    else:
        reasoning = f"{row_id}: the capital {'matches' if passed else 'is wrong'}"
        steps = [Step(span_id=lookup_id(row_id), name="lookup", result={"found": passed})]
        done = {
            "status": "success",
            "result": Judgment(
                score=float(passed), passed=passed, reasoning=reasoning, steps=steps
            ),
        }
    return Evaluation(
        id=f"ev-{number}",
        row_id=row_id,
        trace_id=trace_id,
        version_id="",
        judge_id=judge,
        created_at=1_700_000_000.0 + number,
        started_at=1_700_000_000.0 + number,
        finished_at=1_700_000_000.5 + number,
        **{**done, **more},
    )


@pytest.fixture
def judged(project: Path) -> Path:
    """Five evaluations of 'nightly' made one second apart: ev-1 oldest, ev-5 newest."""
    with SQLiteStore(project / "rows.db") as store:
        experiment = store.get_experiment("nightly")
        versions = {row.row_id: row.version_id for row in store.latest_rows(experiment.id)}
        made = [
            evaluation(1, FR, "exact", passed=True),
            evaluation(2, DE, "exact", passed=False),
            evaluation(3, IT, "exact", passed=True),
            evaluation(4, DE, "tone", passed=None),
            evaluation(5, FR, "tone", passed=True),
        ]
        for each in made:
            each.version_id = versions[each.row_id]
            each.experiment_id = experiment.id
        store.save_evaluations(experiment.id, made)
    return project


def listed(project: Path, *args: str) -> list[str]:
    code, out, err = run(project, "judgments", "nightly", "--json", *args)
    assert (code, err) == (0, ""), err
    return [record["id"] for record in json_lines(out)]


def test_judgments_are_a_table_newest_first_with_the_page_said(judged: Path) -> None:
    code, out, _ = run(judged, "judgments", "nightly")

    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "ROW", "JUDGE", "STATUS", "SCORE", "PASSED", "CREATED"]
    assert [line.split()[:6] for line in lines[1:3]] == [
        ["ev-5", FR, "tone", "success", "1", "yes"],
        ["ev-4", DE, "tone", "failure", "2023-11-14T22:13:24Z"],
    ]
    assert [line.split()[0] for line in lines[1:-1]] == ["ev-5", "ev-4", "ev-3", "ev-2", "ev-1"]
    assert lines[-1] == "page 1 of 1 (5 evaluations)"


def test_judgments_come_a_page_at_a_time(judged: Path) -> None:
    assert listed(judged, "--page-size", "2") == ["ev-5", "ev-4"]
    assert listed(judged, "--page-size", "2", "--page", "3") == ["ev-1"]
    code, out, _ = run(judged, "judgments", "nightly", "--page-size", "2", "--page", "2")
    assert out.splitlines()[-1] == "page 2 of 3 (5 evaluations)"
    code, out, err = run(judged, "judgments", "nightly", "--page-size", "2", "--page", "4")
    assert (code, out) == (2, "")
    assert one_error(err) == "--page 4: the 5 evaluations found fill pages 1 to 3"


def test_judgments_filter_by_judge_row_outcome_and_text(judged: Path) -> None:
    assert listed(judged, "--judge", "tone") == ["ev-5", "ev-4"]
    assert listed(judged, "--row", DE) == ["ev-4", "ev-2"]
    assert listed(judged, "--outcome", "pass") == ["ev-5", "ev-3", "ev-1"]
    # A judgment that could not be made neither passed nor failed: its status says so.
    assert listed(judged, "--outcome", "fail") == ["ev-2"]
    assert listed(judged, "--status", "failure") == ["ev-4"]
    assert listed(judged, "--search", "IS WRONG") == ["ev-2"]
    assert listed(judged, "--search", "boom") == ["ev-4"]
    assert listed(judged, "--judge", "exact", "--outcome", "pass", "--row", IT) == ["ev-3"]
    assert listed(judged, "--judge", "nobody") == []


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--outcome", "maybe"], "--outcome 'maybe': expected one of pass, fail"),
        (["--page", "0"], "--page '0': expected a whole number of 1 or more"),
        (["--page-size", "many"], "--page-size 'many': expected a whole number of 1 or more"),
        (["--page-size", "1001"], "--page-size '1001': at most 1000"),
        (
            ["--status", "done"],
            "--status 'done': expected one of pending, in_progress, success, failure",
        ),
    ],
)
def test_bad_judgments_options_are_one_line(judged: Path, args: list[str], said: str) -> None:
    code, out, err = run(judged, "judgments", "nightly", *args)
    assert (code, out) == (2, "")
    assert one_error(err) == said


def test_judgments_json_carries_the_evaluation_fields_with_the_result_nested(
    judged: Path,
) -> None:
    _, out, _ = run(judged, "judgments", "nightly", "--json", "--row", FR, "--judge", "exact")

    (record,) = json_lines(out)
    assert set(record) == EVALUATION_FIELDS
    assert (record["id"], record["row_id"], record["trace_id"]) == ("ev-1", FR, trace_ids(FR)[0])
    assert record["created_at"] == "2023-11-14T22:13:21.000Z"
    assert record["result"]["passed"] is True
    assert record["result"]["steps"] == [
        {"span_id": lookup_id(FR), "name": "lookup", "result": {"found": True}}
    ]


def test_judgment_shows_the_result_its_steps_and_its_reasoning(judged: Path) -> None:
    code, out, err = run(judged, "judgment", "ev-2")

    assert (code, err) == (0, ""), err
    with SQLiteStore(judged / "rows.db") as store:
        (row,) = store.latest_rows(store.get_experiment("nightly").id, [DE])
    assert textwrap.dedent(out) == textwrap.dedent(
        f"""\
        evaluation: ev-2
        experiment: nightly (project demo)
        row:        {DE}
        trace:      {trace_ids(DE)[0]}
        version:    {row.version_id}
        judge:      exact
        status:     success
        created:    2023-11-14T22:13:22Z
        finished:   2023-11-14T22:13:22Z
        score:      0
        passed:     no

        steps (1):
        SPAN              NAME    RESULT
        {lookup_id(DE)}  lookup  {{"found": false}}

        reasoning:
        {DE}: the capital is wrong
        """
    )
    code, out, _ = run(judged, "judgment", "ev-4", "--experiment", "nightly", "--json")
    record = json.loads(out)
    assert set(record) == EVALUATION_FIELDS
    assert (record["status"], record["error"], record["result"]) == (
        "failure",
        "RuntimeError: boom",
        None,
    )


def test_an_unknown_judgment_is_one_line(judged: Path) -> None:
    code, _, err = run(judged, "judgment", "ev-9")
    assert code == 1
    assert one_error(err).startswith("no evaluation 'ev-9' in sqlite:///")
    code, _, err = run(judged, "judgment", "ev-1", "--experiment", "weekly")
    assert code == 1
    assert one_error(err).startswith("no experiment 'weekly' in ")


# -- rows a real session recorded, in the embedded store and over HTTP -------------------------

SUITE = """
import pytest

CASES = {"fr": "Paris", "de": "Berlin", "it": "Milan"}


@pytest.mark.eval
@pytest.mark.parametrize("country", sorted(CASES))
def test_capital(country, eval_row):
    if country != "de":
        with eval_row.span("search", input=country):
            pass
    answer = CASES[country]
    eval_row.log(output=answer, expected={"it": "Rome"}.get(country, answer))
"""
SEARCHED = """
from pytest_evalrows.judging import span_called

searched = span_called("search")

def exact(trace):
    return trace.output == trace.expected
"""
ROW = "test_suite.py::test_capital[{}]"


def judge_what_a_session_recorded(
    pytester: pytest.Pytester, store: str, *, key: str | None = None
) -> None:
    """A session records three rows into ``store``; ``evalrows judge`` judges them with two
    judges and ``judgments`` and ``rows`` read the evaluations and scores back."""
    pytester.makepyfile(test_suite=SUITE, checks=SEARCHED)
    secret = () if key is None else (f"--eval-api-key={key}",)
    session = pytester.runpytest_subprocess(
        "--eval-experiment=nightly", f"--eval-store={store}", *secret
    )
    session.assert_outcomes(passed=3)
    cwd = pytester.path

    # The console script, as a user runs it: checks.py is found in the current directory,
    # which is not on its sys.path by itself (python -m puts it there).
    judged = evalrows(
        "judge", "nightly", "--judge", "checks:searched", "--judge", "checks:exact",
        "--store", store, "--json", cwd=cwd, key=key, ok=True, script=True,
    )  # fmt: skip

    summaries = {s["judge"]: (s["evaluations"], s["passed"]) for s in json_lines(judged.stdout)}
    assert summaries == {"span_called:search": (3, 2), "exact": (3, 2)}
    listed = evalrows("judgments", "nightly", "--store", store, "--json", cwd=cwd, key=key, ok=True)
    found = {(e["row_id"], e["judge_id"]): e["result"]["passed"] for e in json_lines(listed.stdout)}
    assert found == {
        (ROW.format("de"), "exact"): True,
        (ROW.format("de"), "span_called:search"): False,
        (ROW.format("fr"), "exact"): True,
        (ROW.format("fr"), "span_called:search"): True,
        (ROW.format("it"), "exact"): False,
        (ROW.format("it"), "span_called:search"): True,
    }
    # The judge looked at the span the test opened: its step names it.
    (searched,) = [
        e for e in json_lines(listed.stdout)
        if (e["row_id"], e["judge_id"]) == (ROW.format("fr"), "span_called:search")
    ]  # fmt: skip
    shown = evalrows("judgment", searched["id"], "--store", store, cwd=cwd, key=key, ok=True)
    assert re.search(r"^[0-9a-f]{16}  search  called$", shown.stdout, re.MULTILINE), shown.stdout
    rows = evalrows("rows", "nightly", "--store", store, "--json", cwd=cwd, key=key, ok=True)
    assert {r["id"]: r["scores"] for r in json_lines(rows.stdout)} == {
        ROW.format("de"): {"pass": 1.0, "judge:exact": 1.0, "judge:span_called:search": 0.0},
        ROW.format("fr"): {"pass": 1.0, "judge:exact": 1.0, "judge:span_called:search": 1.0},
        ROW.format("it"): {"pass": 1.0, "judge:exact": 0.0, "judge:span_called:search": 1.0},
    }


def test_judge_what_a_session_recorded_in_the_embedded_store(pytester: pytest.Pytester) -> None:
    judge_what_a_session_recorded(pytester, str(pytester.path / "rows.db"))


def test_judge_what_a_session_recorded_over_http(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    servers = Servers(tmp_path_factory.mktemp("served"))
    server = servers.make("evk-judge-cli")
    server.start()
    try:
        judge_what_a_session_recorded(pytester, server.url, key="evk-judge-cli")
    finally:
        servers.stop_all()
