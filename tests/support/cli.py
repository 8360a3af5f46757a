"""The one way tests run the ``evalrows`` command, and read a session's saved report with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from .output import read_summary


def evalrows(
    *args: str | Path,
    cwd: Path | None = None,
    key: str | None = None,
    env: Mapping[str, str] | None = None,
    script: bool = False,
    ok: bool = False,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the ``evalrows`` command in a subprocess, as a user would.

    The environment is the test's own (the tests' conftest keeps the developer's EVALROWS_*
    out of it), with ``key`` as ``EVALROWS_API_KEY`` and ``env`` on top. ``script`` runs the
    installed console script instead of ``python -m pytest_evalrows.cli``; ``ok`` asserts the
    command succeeded.
    """
    command = (
        [str(Path(sys.executable).with_name("evalrows"))]
        if script
        else [sys.executable, "-m", "pytest_evalrows.cli"]
    )
    environ = dict(os.environ)
    if key is not None:
        environ["EVALROWS_API_KEY"] = key
    environ.update(env or {})
    done = subprocess.run(
        [*command, *map(str, args)],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    if ok:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def json_lines(text: str) -> list[dict[str, Any]]:
    """The objects of a ``--json`` output, one a line (a blank line is not one)."""
    return [json.loads(line) for line in text.splitlines()]


def attempt_records(
    experiment: str,
    store: str | Path,
    *,
    cwd: Path | None = None,
    key: str | None = None,
    project: str | None = None,
) -> list[dict[str, Any]]:
    """``evalrows attempts EXPERIMENT --json``: every session's record, oldest first."""
    named = ("--project", project) if project is not None else ()
    done = evalrows(
        "attempts", experiment, *named, "--store", store, "--json", cwd=cwd, key=key, ok=True
    )
    return json_lines(done.stdout)


def session_report(
    result: pytest.RunResult | str,
    *,
    store: str | Path | None = None,
    cwd: Path | None = None,
    key: str | None = None,
) -> dict[str, Any]:
    """The report the session of ``result`` saved with its attempt, read back with
    ``evalrows attempts --json``: the counts its summary printed, as numbers.

    The experiment, project and attempt are the ones its summary names (printed under ``-q``
    too, unlike the header); so is the store unless given (an HTTP store is shown without its
    key: pass ``key``).
    """
    said = read_summary(result)
    assert said.experiment is not None and said.store is not None, said.lines
    assert said.attempt is not None, said.lines
    records = attempt_records(
        said.experiment, store or said.store, cwd=cwd, key=key, project=said.project
    )
    (record,) = [record for record in records if record["id"] == said.attempt]
    report = record["report"]
    assert report is not None, record
    assert report["attempt_id"] == said.attempt
    return dict(report)
