"""Helpers for the end-to-end tests: read back what an inner pytest session recorded."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pytest_evalrows.models import Attempt, Metrics, RowVersion
from pytest_evalrows.store.sqlite import SQLiteStore

HEADER = re.compile(
    r"^evalrows: recording experiment '(?P<experiment>[^']*)' \(project '(?P<project>[^']*)'\) "
    r"into (?P<store>\S+), attempt (?P<attempt>[^,\s]+), row ids relative to (?P<anchor>[^;\s]+)",
    re.MULTILINE,
)


def rows(db: Path, experiment: str) -> dict[str, RowVersion]:
    """The latest version of every row of ``experiment``, by row id."""
    with SQLiteStore(db, create=False) as store:
        found = store.get_experiment(experiment)
        return {row.row_id: row for row in store.latest_rows(found.id)}


def history(db: Path, experiment: str, row_id: str) -> list[RowVersion]:
    with SQLiteStore(db, create=False) as store:
        return store.history(store.get_experiment(experiment).id, row_id)


def attempts(db: Path, experiment: str) -> list[Attempt]:
    with SQLiteStore(db, create=False) as store:
        return store.list_attempts(store.get_experiment(experiment).id)


def header(result: pytest.RunResult) -> dict[str, str]:
    """The fields of the plugin's one report-header line (exactly one such line)."""
    text = result.stdout.str()
    found = list(HEADER.finditer(text))
    assert len(found) == 1, text
    return found[0].groupdict()


def summary(result: pytest.RunResult) -> list[str]:
    """The lines of the plugin's terminal-summary section."""
    lines = result.stdout.lines
    starts = [i for i, line in enumerate(lines) if re.fullmatch(r"-+ evalrows -+", line)]
    assert len(starts) == 1, result.stdout.str()
    section = []
    for line in lines[starts[0] + 1 :]:
        if re.fullmatch(r"[=_-]+ .* [=_-]+", line) or re.fullmatch(r"=+", line):
            break
        section.append(line)
    return section


def usage_error(result: pytest.RunResult) -> str:
    """The one line a usage error prints; checks there is no traceback and exit code 4."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str() + result.stderr.str()
    output = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in output
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, errors
    return errors[0]


def evalrows_cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the ``evalrows`` command in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_evalrows.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def make_row(
    row_id: str,
    attempt_id: str = "attempt-1",
    *,
    status: str = "passed",
    version_id: str | None = None,
    params_hash: str | None = "hash-1",
    execution: int = 1,
    **fields: Any,
) -> RowVersion:
    """A row version as the recorder would build it."""
    metadata = {"nodeid": row_id, "attemptId": attempt_id, "execution": execution}
    if params_hash is not None:
        metadata["params_hash"] = params_hash
    return RowVersion(
        row_id=row_id,
        version_id=version_id or str(uuid.uuid4()),
        nodeid=row_id,
        attempt_id=attempt_id,
        execution=execution,
        status=status,
        metadata=metadata,
        metrics=Metrics(start=100.0, end=101.5, duration=1.5),
        root_span_id="0" * 31 + "1",
        span_id="0" * 15 + "2",
        **fields,
    )
