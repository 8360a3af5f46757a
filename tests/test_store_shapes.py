"""The same row written through every kind of store reads back as the same shapes: the root span
that the HTTP store and ``evalrows serve`` rebuild from a row's event is the one the embedded
store keeps."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.servers import EvalrowsServer

from pytest_evalrows.braintrust.client import HTTPStore
from pytest_evalrows.core import rows
from pytest_evalrows.models import ErrorInfo, SpanRecord
from pytest_evalrows.store.base import Store
from pytest_evalrows.store.sqlite import SQLiteStore

PROJECT = "shapes"
EXPERIMENT = "nightly-shapes"
NODEID = "tests/test_app.py::test_answers[capital-fr]"


def row_and_root(status: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A row version and its root span as the recorder builds them (the root named by the
    node id's last part, as a pytest item names it)."""
    error = None
    if status != "passed":
        error = {"type": "AssertionError", "message": "assert 'Lyon' == 'Paris'", "traceback": ""}
    row = {
        "row_id": NODEID,
        "version_id": os.urandom(16).hex(),
        "nodeid": NODEID,
        "attempt_id": "attempt-shapes",
        "execution": 2,
        "status": status,
        "input": {"q": "Capital of France?"},
        "output": "Paris",
        "expected": "Paris",
        "scores": {"exact": 1.0},
        "metadata": {"params_hash": "abc"},
        "tags": [],
        "error": error,
        "metrics": {"start": 1700000000.25, "end": 1700000001.75, "duration": 1.5},
        "root_span_id": os.urandom(16).hex(),
        "span_id": os.urandom(8).hex(),
    }
    root = rows.root_span(
        row_id=row["row_id"],
        trace_hex=row["root_span_id"],
        span_hex=row["span_id"],
        attempt_id=row["attempt_id"],
        execution=row["execution"],
        name="test_answers[capital-fr]",
        start=row["metrics"]["start"],
        end=row["metrics"]["end"],
        status=status,
        error=None if error is None else ErrorInfo(**error),
        experiment=EXPERIMENT,
    )
    return row, dict(root)


def written_root(store: Store, row: dict[str, Any], root: dict[str, Any]) -> SpanRecord:
    """Write the row and its root span; the root span the store reads back."""
    experiment = store.get_or_create_experiment(PROJECT, EXPERIMENT)
    store.write(experiment.id, [row], [root])
    (span,) = store.list_spans(experiment.id, row["row_id"])
    return span


@pytest.fixture
def served(tmp_path: Path) -> Iterator[EvalrowsServer]:
    server = EvalrowsServer(tmp_path / "served.db", "", tmp_path / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
    log = server.log.read_text() if server.log.exists() else ""
    assert server.exit_codes == [0], log
    assert "Traceback" not in log, log


@pytest.mark.parametrize("status", ["passed", "failed"])
def test_every_store_reads_back_the_root_span_the_embedded_store_keeps(
    tmp_path: Path, served: EvalrowsServer, status: str
) -> None:
    row, root = row_and_root(status)
    with SQLiteStore(tmp_path / "embedded.db") as embedded:
        expected = written_root(embedded, row, root)
    assert expected.attributes["evalrows.experiment"] == EXPERIMENT

    with HTTPStore(served.url) as http:
        over_http = written_root(http, row, root)
    # What the server keeps behind the API: the root it derived from the row's event.
    with SQLiteStore(served.db, create=False) as behind:
        (experiment,) = behind.list_experiments()
        (kept,) = behind.list_spans(experiment.id, row["row_id"])

    for span in (over_http, kept):
        assert span.attributes == expected.attributes
        assert span.attributes["evalrows.experiment"] == EXPERIMENT
        assert span == expected


def test_a_fresh_http_store_names_the_experiment_of_the_root_span_too(
    served: EvalrowsServer,
) -> None:
    # A store that did not create the experiment itself (as `evalrows spans` reads it) still
    # knows the experiment's name by its id.
    row, root = row_and_root("passed")
    with HTTPStore(served.url) as http:
        experiment = http.get_or_create_experiment(PROJECT, EXPERIMENT)
        http.write(experiment.id, [row], [root])
    with HTTPStore(served.url) as fresh:
        (span,) = fresh.list_spans(experiment.id)
    assert span.attributes["evalrows.experiment"] == EXPERIMENT
