"""The store the browser tests look at, built once: experiment 'capitals' (recorded by real
pytest sessions, with a rerun, nested spans, an exception, judgments and hostile text) against
its baseline 'capitals-base', and 'big', 10,000 rows written straight into the store.

Also used by ``scripts/screenshots`` and ``benchmarks/bench_web.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pytest_evalrows.core.judgments import Evaluation, Judgment, Step
from pytest_evalrows.core.records import Attempt, ErrorInfo
from pytest_evalrows.models import Metrics, RowVersion
from pytest_evalrows.store.sqlite import SQLiteStore

# The suite the sessions run: each case's answer and scores come from cases.json beside it,
# so that each session records what the test data says. Every case has a trace three spans
# deep under its root, the innermost one a model call with token counts; a case with
# "lookup_error" also has a span that caught an exception.
SUITE = """
import json
import pathlib

import pytest
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

CASES = json.loads(pathlib.Path(__file__).with_name("cases.json").read_text())
tracer = trace.get_tracer("capitals")


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_capital(case, eval_row):
    answer = case["answer"]
    with tracer.start_as_current_span("agent"):
        with tracer.start_as_current_span("plan"):
            with tracer.start_as_current_span("chat stand-in") as chat:
                chat.set_attribute("gen_ai.request.model", "stand-in-1")
                chat.set_attribute("gen_ai.usage.input_tokens", 10 + len(case["question"]))
                chat.set_attribute("gen_ai.usage.output_tokens", 2 + len(answer))
        if "lookup_error" in case:
            with tracer.start_as_current_span("lookup") as lookup:
                lookup.record_exception(LookupError(case["lookup_error"]))
                lookup.set_status(Status(StatusCode.ERROR, case["lookup_error"]))
    eval_row.log(input=case["question"], output=answer, expected=case["expected"])
    eval_row.score("exact", answer == case["expected"])
    eval_row.score("brevity", case["brevity"])
    assert case["expected"] in answer
"""

HOSTILE_INPUT = "<script>alert(1)</script> What is 2 + 2?"
HOSTILE_OUTPUT = "<img src=x onerror=alert(2)> 4"
LOOKUP_ERROR = "no city named Ottawa in the index"


def _case(
    case_id: str, question: str, expected: str, answer: str, brevity: float, **more: Any
) -> dict[str, Any]:
    return {
        "id": case_id,
        "question": question,
        "expected": expected,
        "answer": answer,
        "brevity": brevity,
        **more,
    }


BASE = [
    _case("capital-fr", "Capital of France?", "Paris", "Paris", 0.9),
    _case("capital-jp", "Capital of Japan?", "Tokyo", "Tokyo", 0.8),
    _case("capital-it", "Capital of Italy?", "Rome", "Rome", 0.95),
    _case("capital-ca", "Capital of Canada?", "Ottawa", "Ottawa", 0.85),
    _case("capital-au", "Capital of Australia?", "Canberra", "Sydney", 0.75),
    _case("hamlet", "Author of Hamlet?", "Shakespeare", "Shakespeare", 0.9),
    _case("planet", "Largest planet?", "Jupiter", "Jupiter", 0.5),
    _case("moon", "First on the Moon?", "Armstrong", "Armstrong", 0.7),
    _case("hostile-input", HOSTILE_INPUT, "4", HOSTILE_OUTPUT, 0.65),
]
NOW = [
    _case("capital-fr", "Capital of France?", "Paris", "Paris", 0.9),
    _case("capital-jp", "Capital of Japan?", "Tokyo", "Kyoto", 0.8),  # fails now
    _case("capital-it", "Capital of Italy?", "Rome", "Rome", 0.95),
    _case("capital-ca", "Capital of Canada?", "Ottawa", "Toronto", 0.7, lookup_error=LOOKUP_ERROR),
    _case("capital-au", "Capital of Australia?", "Canberra", "Canberra", 0.75),  # passes now
    _case("hamlet", "Author of Hamlet?", "Shakespeare", "William Shakespeare, the poet", 0.4),
    _case("planet", "Largest planet?", "Jupiter", "Jupiter", 0.92),
    _case("gold", "Chemical symbol for gold?", "Au", "Au", 1.0),
    _case("hostile-input", HOSTILE_INPUT, "4", HOSTILE_OUTPUT, 0.65),
]


def row_id(case_id: str) -> str:
    """The row id the sessions give a case: its node id."""
    return f"test_capitals.py::test_capital[{case_id}]"


# The rerun: one row gets version 2 with another answer (still wrong).
RERUN_ROW = row_id("capital-ca")
RERUN_ANSWER = "Toronto, surely"
RERUN = [
    _case(
        "capital-ca", "Capital of Canada?", "Ottawa", RERUN_ANSWER, 0.6, lookup_error=LOOKUP_ERROR
    )
]

# What the compare view of 'capitals' against 'capitals-base' must list first, in order:
# a row regressed when pass or a score both sides have went down (hamlet: brevity only).
REGRESSED = [row_id(case) for case in ("capital-ca", "capital-jp", "hamlet")]
IMPROVED = [row_id(case) for case in ("capital-au", "planet")]
FAILED = [row_id(case) for case in ("capital-ca", "capital-jp")]  # latest versions that failed
HOSTILE_ROW = row_id("hostile-input")
# Each latest row's brevity score (the rerun's for the row it ran again).
BREVITY = {row_id(case["id"]): case["brevity"] for case in [*NOW, *RERUN]}
ROWS = [row_id(case["id"]) for case in NOW]  # the latest rows of 'capitals'

# Judgments saved on the latest versions: judge id -> (row, score, reasoning).
JUDGMENTS = {
    "tone": (row_id("capital-ca"), 0.25, "Confident and wrong: Toronto is not the capital."),
    "grounded": (row_id("capital-fr"), 1.0, "The answer names the expected city."),
}

BIG_ROWS = 10_000
BIG_BATCH = 1_000


@dataclass(frozen=True)
class Seeded:
    """What the seeding built: the store file and the experiments' ids."""

    db: str
    project: str
    capitals: str
    base: str
    big: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Seeded:
        return cls(**json.loads(text))


def clean_env() -> dict[str, str]:
    """This process's environment without what must not reach an inner session: our
    settings, and the outer xdist worker's identity."""
    dropped = ("EVALROWS_", "PYTEST_XDIST_", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.pop("BRAINTRUST_API_KEY", None)
    return env


def run_session(suite: Path, cases: list[dict[str, Any]], *args: str) -> str:
    """One pytest session of the suite over ``cases``; its output. Failed tests are expected
    (exit 1); anything else fails the seeding with the output."""
    (suite / "cases.json").write_text(json.dumps(cases))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    done = subprocess.run(
        command, cwd=suite, env=clean_env(), capture_output=True, text=True, check=False
    )
    output = done.stdout + done.stderr
    last = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode not in (0, 1) or "error" in last or " in " not in last:
        raise AssertionError(f"seeding session {args} exited {done.returncode}:\n{output}")
    return output


def seed(directory: Path) -> Seeded:
    """Build the store in ``directory`` (``seeded.db``)."""
    db = directory / "seeded.db"
    suite = directory / "capitals-suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\n")
    (suite / "test_capitals.py").write_text(SUITE)
    store_arg = f"--eval-store={db}"
    run_session(suite, BASE, "--eval-experiment=capitals-base", store_arg)
    baseline = ("--eval-experiment=capitals", "--eval-baseline=capitals-base", store_arg)
    run_session(suite, NOW, *baseline)
    run_session(suite, RERUN, *baseline)
    with SQLiteStore(db, create=False) as store:
        capitals = store.get_experiment("capitals")
        base = store.get_experiment("capitals-base")
        _judge(store, capitals.id)
        big = write_big(store, capitals.project)
    return Seeded(str(db), capitals.project, capitals.id, base.id, big)


def _judge(store: SQLiteStore, experiment_id: str) -> None:
    """Judgments of two rows' latest versions, with reasoning and steps."""
    latest = {row.row_id: row for row in store.latest_rows(experiment_id)}
    now = time.time()
    evaluations = []
    for judge_id, (judged, score, reasoning) in JUDGMENTS.items():
        row = latest[judged]
        evaluations.append(
            Evaluation(
                id=f"{judge_id}-{row.version_id}",
                row_id=row.row_id,
                trace_id=row.root_span_id,
                version_id=row.version_id,
                judge_id=judge_id,
                status="success",
                created_at=now,
                started_at=now,
                finished_at=now + 0.5,
                result=Judgment(
                    score=score,
                    passed=score >= 0.5,
                    reasoning=reasoning,
                    steps=[
                        Step(name="read the answer", result=row.output),
                        Step(name="compare", result={"expected": row.expected}),
                    ],
                    model="judge-stand-in",
                ),
            )
        )
    store.save_evaluations(experiment_id, evaluations)


def big_row_status(number: int) -> str:
    """Row ``number`` of 'big': every 50th in error, every other 7th failed."""
    return "error" if number % 50 == 0 else "failed" if number % 7 == 0 else "passed"


def big_row(number: int, attempt_id: str) -> RowVersion:
    """Row ``number`` of 'big', with two scores (and pass, unless in error)."""
    status = big_row_status(number)
    big_id = f"test_big.py::test_case[{number:05d}]"
    start = 1_700_000_000.0 + number
    duration = 0.05 + (number % 97) / 100
    scores = {"exact": float(status == "passed"), "similarity": (number % 101) / 100}
    if status != "error":  # as the recorder scores them: a row in error has no pass
        scores["pass"] = float(status == "passed")
    return RowVersion(
        row_id=big_id,
        version_id=f"big-{number}",
        nodeid=big_id,
        attempt_id=attempt_id,
        execution=1,
        status=status,
        input={"question": f"question {number}"},
        output=f"answer {number}",
        expected=f"answer {number if status == 'passed' else number + 1}",
        scores=scores,
        error=ErrorInfo("AssertionError", "wrong answer") if status != "passed" else None,
        metrics=Metrics(
            start=start,
            end=start + duration,
            duration=duration,
            prompt_tokens=40,
            completion_tokens=number % 30,
            tokens=40 + number % 30,
        ),
        root_span_id=f"{number:032x}",
        span_id=f"{number:016x}",
    )


def write_big(store: SQLiteStore, project: str, rows: int = BIG_ROWS) -> str:
    """Experiment 'big': ``rows`` rows by one attempt, written in batches. Its id."""
    experiment = store.get_or_create_experiment(project, "big")
    attempt_id = "b" * 8 + "-0000-4000-8000-" + "0" * 12
    started = time.time()
    for first in range(0, rows, BIG_BATCH):
        batch = [big_row(n, attempt_id) for n in range(first, min(first + BIG_BATCH, rows))]
        store.write(experiment.id, batch, [])
    counts = {"passed": 0, "failed": 0, "error": 0}
    for number in range(rows):
        counts[big_row(number, attempt_id).status] += 1
    store.save_attempt(
        Attempt(
            id=attempt_id,
            experiment_id=experiment.id,
            started=started,
            ended=time.time(),
            host="seeding",
            counts=counts,
        )
    )
    return experiment.id


def report_command(
    db: str, experiment: str, output: Path, *, baseline: str | None = None
) -> list[str]:
    """``evalrows report`` of ``experiment`` into ``output``."""
    command = [sys.executable, "-m", "pytest_evalrows.cli", "report", experiment]
    command += ["-o", str(output), "--store", db]
    if baseline is not None:
        command += ["--baseline", baseline]
    return command


def make_report(
    db: str, experiment: str, output: Path, *, baseline: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = report_command(db, experiment, output, baseline=baseline)
    return subprocess.run(command, env=clean_env(), capture_output=True, text=True, check=False)
