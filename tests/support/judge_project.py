"""A project for the ``evalrows judge``, ``judgments`` and ``judgment`` tests: a store with an
experiment of three rows and their traces, the judges module beside it, and running the
command there."""

from __future__ import annotations

from pathlib import Path

from pytest_evalrows.models import SpanRecord
from pytest_evalrows.store.sqlite import SQLiteStore
from support.cli import evalrows, json_lines
from support.store import make_row

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


def make_project(tmp_path: Path) -> Path:
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


def listed(project: Path, *args: str) -> list[str]:
    code, out, err = run(project, "judgments", "nightly", "--json", *args)
    assert (code, err) == (0, ""), err
    return [record["id"] for record in json_lines(out)]
