"""Read back what inner pytest sessions recorded into a SQLite store, and build rows by hand."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_evalrows.models import Attempt, Metrics, RowVersion, SpanRecord
from pytest_evalrows.store.sqlite import SQLiteStore


def default_db(pytester: pytest.Pytester) -> Path:
    """Where the inner sessions' default store lives: ``<rootdir>/.evalrows/evalrows.db``."""
    return pytester.path / ".evalrows" / "evalrows.db"


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


@dataclass
class Stored:
    """What one experiment holds: latest rows by row id and every span."""

    rows: dict[str, RowVersion]
    spans: list[SpanRecord]

    def spans_of(self, row_id: str | None) -> list[SpanRecord]:
        return [span for span in self.spans if span.row_id == row_id]

    def by_row(self) -> dict[str | None, list[SpanRecord]]:
        found: dict[str | None, list[SpanRecord]] = defaultdict(list)
        for span in self.spans:
            found[span.row_id].append(span)
        return dict(found)

    def span_ids(self, row_id: str | None) -> set[str]:
        return {span.span_id for span in self.spans_of(row_id)}


def stored(db: Path, experiment: str) -> Stored:
    with SQLiteStore(db, create=False) as store:
        found = store.get_experiment(experiment)
        rows = {row.row_id: row for row in store.latest_rows(found.id)}
        spans = store.list_spans(found.id)
    return Stored(rows, spans)


def live(span: SpanRecord, rows: dict[str, RowVersion]) -> bool:
    """Whether a row span belongs to its row's latest version."""
    assert span.row_id is not None
    row = rows[span.row_id]
    return span.attempt_id == row.attempt_id and span.execution == row.execution


def assert_no_stale_spans(found: Stored) -> None:
    """Every span under a row belongs to that row's latest version (attempt and execution),
    and every row has its root span."""
    for span in found.spans:
        if span.row_id is not None:
            assert span.row_id in found.rows, span
            assert live(span, found.rows), (span.row_id, span.name, span.attempt_id)
    for row_id, row in found.rows.items():
        roots = [span.span_id for span in found.spans_of(row_id) if not span.span_parents]
        assert roots == [row.span_id], row_id


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


# -- a store that cannot be opened -----------------------------------------------------------

# Where an inner session's store goes, relative to its directory, when ``block_store`` has put
# a regular file where the store's directory should be: it can be neither created nor written
# (for root too), so the rows wait in the spool.
BLOCKED_STORE = "blocker/rows.db"


def block_store(directory: Path) -> str:
    """Block ``directory/blocker/rows.db``; returns the ``--eval-store`` option naming it."""
    (directory / "blocker").write_text("a file where the store's directory should be")
    return f"--eval-store={BLOCKED_STORE}"


def unblock_store(directory: Path) -> Path:
    """The directory in the file's place: the blocked store can be made. Returns its path."""
    blocker = directory / "blocker"
    blocker.unlink()
    blocker.mkdir()
    return directory / BLOCKED_STORE
