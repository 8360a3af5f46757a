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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cli import evalrows, json_lines
from support.judge_project import DE, FR, IT, listed, make_project, one_error, run, scores
from support.openai_standin import OpenAIStandin
from support.servers import Servers

from pytest_evalrows.cli_judging.judge import Progress
from pytest_evalrows.store.sqlite import SQLiteStore


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


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
