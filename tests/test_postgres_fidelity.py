"""What the PostgreSQL store keeps of the values written: a NUL character, JSON as written (key
order, numbers), and the same history of writes read back as SQLite reads it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from support.store import make_row

from pytest_evalrows.core.judgments import Evaluation, Judgment
from pytest_evalrows.models import Metrics, RowVersion, SpanRecord
from pytest_evalrows.store.postgres import PostgresStore
from pytest_evalrows.store.sqlite import SQLiteStore


def test_a_nul_character_is_kept_as_the_replacement_character(postgres_url: str) -> None:
    # PostgreSQL cannot keep a NUL in any text: one such value must not make its batch
    # undeliverable.
    with PostgresStore(postgres_url) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        row = make_row("r", output="a\x00b", input={"k": "back\\u0000slash"})
        store.write(experiment, [row], [])
        [back] = store.latest_rows(experiment)
    assert (back.output, back.input) == ("a\ufffdb", {"k": "back\\u0000slash"})


def test_json_reads_back_as_written_as_sqlite_reads_it(postgres_url: str, tmp_path: Path) -> None:
    # Keys in the order the test wrote them, not sorted; a float written in exponent form
    # stays a float. Also once a judge's score and a merge have changed the body.
    given = {"question": "q", "id": 1, "answer": "a", "big": 1e20, "tiny": 1e-7, "whole": 2.0}
    output = {"zeta": [1e20, {"z": 1, "b": 2.5}], "a": -0.0}
    read: dict[str, list[str]] = {}
    for store in (SQLiteStore(tmp_path / "rows.db"), PostgresStore(postgres_url)):
        with store:
            experiment = store.get_or_create_experiment("p", "e").id
            row = traced("r", "t1", 100.0, input=given, output=output)
            traced_span = span("s1", row)
            traced_span.attributes = given
            store.write(experiment, [row], [traced_span])
            before = store.latest_rows(experiment)[0]
            store.save_evaluations(experiment, [judgment(row, 0.5335866832987394)])
            store.merge_scores(experiment, {"r": (None, {"judge:m": 0.25})})
            [after] = store.latest_rows(experiment)
            [span_back] = store.list_spans(experiment)
            read[type(store).__name__] = [
                json.dumps(each, allow_nan=False)
                for each in (before.input, before.output, after.input, after.output)
            ] + [json.dumps(span_back.attributes), str(sorted(after.scores.items()))]
    assert read["PostgresStore"] == read["SQLiteStore"]
    assert read["SQLiteStore"][0] == json.dumps(given)
    assert read["SQLiteStore"][1] == json.dumps(output)


def judgment(row: RowVersion, score: float) -> Evaluation:
    return Evaluation(
        id=f"e-{row.version_id}",
        row_id=row.row_id,
        trace_id=row.root_span_id,
        version_id=row.version_id,
        judge_id="cites",
        status="success",
        created_at=1.0,
        result=Judgment(score=score),
    )


# -- the same writes, the same store -----------------------------------------------------------


def span(span_id: str, row: RowVersion, *, parent: bool = True) -> SpanRecord:
    return SpanRecord(
        span_id=span_id,
        root_span_id=row.root_span_id,
        span_parents=[row.span_id] if parent else [],
        row_id=row.row_id,
        attempt_id=row.attempt_id,
        execution=row.execution,
        name=f"llm {span_id}",
        start=row.metrics.start + 0.5,
        end=row.metrics.start + 0.7,
    )


def started(row: RowVersion, start: float) -> RowVersion:
    row.metrics = Metrics(start=start, end=start + 1, duration=1)
    return row


def traced(row_id: str, attempt: str, start: float, **fields: Any) -> RowVersion:
    row = started(make_row(row_id, attempt, version_id=f"{row_id}-{attempt}", **fields), start)
    row.root_span_id = f"{row_id}-{attempt}".ljust(32, "0")
    return row


def write_the_same(store: SQLiteStore | PostgresStore) -> dict[str, Any]:
    """A history of writes: new rows, reruns, a late older execution, a redelivery, a batch
    with one row twice, spans, clean-up, judgments, merges; and what the store then says."""
    experiment = store.get_or_create_experiment("proj", "same").id
    a1, b1 = traced("a", "t1", 100.0, scores={"x": 1.0}), traced("b", "t1", 100.0)
    results = [store.write(experiment, [a1, b1], [span("s1", a1), span("s2", b1)])]
    a3 = traced("a", "t3", 300.0, status="failed", output={"why": ["é", 1.5, None]})
    results.append(store.write(experiment, [a3], [span("s3", a3), span("s0", a3, parent=False)]))
    a2 = traced("a", "t2", 200.0)  # late: started before the latest
    results.append(store.write(experiment, [a2], [span("s4", a2)]))
    results.append(store.write(experiment, [a2, b1], []))  # redelivered
    c1, c2 = traced("c", "t4", 400.0), traced("c", "t5", 500.0)
    results.append(store.write(experiment, [c1, c2], [span("s5", c2)]))
    would = store.delete_stale_spans(experiment, dry_run=True)
    deleted = store.delete_stale_spans(experiment, ["a", "b"])
    judged = Evaluation(
        id="e1",
        row_id="a",
        trace_id=a3.root_span_id,
        version_id=a3.version_id,
        judge_id="cites",
        status="success",
        created_at=1000.0,
        result=Judgment(score=0.5),
    )
    store.save_evaluations(experiment, [judged])
    missing = store.merge_scores(experiment, {"b": (None, {"judge:m": 0.25}), "z": (None, {})})
    store.merge_scores(experiment, {"b": (None, {"judge:m": 0.25})})
    unfound = store.merge_events(experiment, [("s3", {"values": {"name": "renamed"}})])
    events = store.fetch_events(experiment, limit=100)
    paged: list[Any] = []
    before = None
    while page := store.fetch_events(experiment, limit=3, before=before):
        paged += page
        before = page[-1].xact
    assert paged == events
    older = store.find_trace(experiment, a2.root_span_id)
    assert older is not None
    return {
        "results": results,
        "latest": [row.model_dump(exclude={"created"}) for row in store.latest_rows(experiment)],
        "history": {
            row_id: [
                row.model_dump(exclude={"created"}) for row in store.history(experiment, row_id)
            ]
            for row_id in ("a", "b", "c")
        },
        "states": {
            row_id: state._replace(created=0.0)
            for row_id, state in store.latest_states(experiment).items()
        },
        "scores": store.latest_scores(experiment),
        "spans": [s.model_dump() for s in store.list_spans(experiment)],
        # In no promised order: compared as sets.
        "stale": [
            sorted(found) for found in (would, deleted, store.delete_stale_spans(experiment))
        ],
        "evaluations": [
            each.model_dump(exclude={"experiment_id"})
            for each in store.list_evaluations(experiment)
        ],
        "merges": (missing, unfound),
        "events": [
            (
                event.row.version_id if event.row else None,
                event.span.span_id if event.span else None,
            )
            for event in events
        ],
        "older trace": (older.version_id, [s.span_id for s in older.spans]),
        "traces": [
            (trace.version_id, [s.span_id for s in trace.spans])
            for trace in store.latest_traces(experiment)
        ],
    }


def test_postgresql_stores_what_sqlite_stores_for_the_same_writes(
    postgres_url: str, tmp_path: Path
) -> None:
    with SQLiteStore(tmp_path / "same.db") as sqlite, PostgresStore(postgres_url) as postgres:
        expected = write_the_same(sqlite)
        found = write_the_same(postgres)
    for key in expected:
        assert found[key] == expected[key], key
    # The scenario reaches what it means to compare.
    assert [r.superseded_rows for r in expected["results"]] == [0, 0, 1, 0, 0]
    assert [r.duplicate_rows for r in expected["results"]] == [0, 0, 0, 2, 0]
    assert [row["version"] for row in expected["history"]["a"]] == [1, 2, 3]
    assert expected["stale"][1] and expected["latest"][0]["scores"]["judge:cites"] == 0.5
