"""Evaluations in the embedded and in-memory stores: judgments of a row version's trace, kept
by id, with their scores on the version they judged (and on no other)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.store import make_row

from pytest_evalrows import MemoryStore, SQLiteStore
from pytest_evalrows.core.judgments import SCORE_PREFIX, Evaluation, Judgment, Step
from pytest_evalrows.models import RowVersion, SpanRecord
from pytest_evalrows.store import sqlite_evaluations
from pytest_evalrows.store.postgres import PostgresStore
from pytest_evalrows.store.sqlite_schema import MIGRATIONS


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLiteStore | PostgresStore]:
    """The store contract runs on each kind of store that keeps everything."""
    made: SQLiteStore | PostgresStore
    if request.param == "postgresql":
        made = PostgresStore(request.getfixturevalue("postgres_url"))
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "rows.db")
    else:
        made = MemoryStore()
    with made:
        yield made


def version(
    row_id: str, attempt: str = "attempt-1", start: float = 100.0, **fields: object
) -> RowVersion:
    """A row version with a trace of its own."""
    row = make_row(row_id, attempt, **fields)  # type: ignore[arg-type]
    row.root_span_id = uuid.uuid4().hex
    row.span_id = uuid.uuid4().hex[:16]
    row.metrics.start = start
    return row


def spans_of(row: RowVersion, *names: str) -> list[SpanRecord]:
    """The row's root span and one child per name, in its trace."""
    root = SpanRecord(
        span_id=row.span_id,
        root_span_id=row.root_span_id,
        row_id=row.row_id,
        attempt_id=row.attempt_id,
        name=row.row_id,
        start=row.metrics.start,
        end=row.metrics.start + 1,
    )
    children = [
        SpanRecord(
            span_id=uuid.uuid4().hex[:16],
            root_span_id=row.root_span_id,
            span_parents=[row.span_id],
            row_id=row.row_id,
            attempt_id=row.attempt_id,
            name=name,
            start=row.metrics.start + 0.1 * (number + 1),
            end=row.metrics.start + 0.5,
        )
        for number, name in enumerate(names)
    ]
    return [root, *children]


def judged(
    row: RowVersion,
    judge: str = "cites",
    *,
    at: float = 1000.0,
    status: str = "success",
    **result: object,
) -> Evaluation:
    return Evaluation(
        id=str(uuid.uuid4()),
        row_id=row.row_id,
        trace_id=row.root_span_id,
        version_id=row.version_id,
        judge_id=judge,
        status=status,  # type: ignore[arg-type]
        created_at=at,
        started_at=at + 1 if status != "pending" else None,
        finished_at=at + 2 if status in ("success", "failure") else None,
        error="judge raised ValueError" if status == "failure" else None,
        result=Judgment.model_validate(result) if result else None,
    )


def test_the_embedded_stores_declare_that_they_keep_evaluations(store: SQLiteStore) -> None:
    assert store.evaluations is True


def test_evaluations_read_back_whole_oldest_first_and_one_by_id(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    row = version("r")
    store.write(experiment, [row], spans_of(row))
    late = judged(row, "late", at=2000.0, score=0.25)
    steps = [Step(span_id=row.span_id, name="r", result={"found": [1, "two"]})]
    early = judged(
        row,
        "early",
        at=1000.0,
        score=0.75,
        passed=True,
        reasoning="it cites",
        steps=steps,
        model="m",
        turns=2,
        latency_ms=12.5,
        prompt_tokens=10,
        completion_tokens=3,
        total_cost=0.001,
    )
    store.save_evaluations(experiment, [late, early])

    found = store.list_evaluations(experiment)
    assert found == [
        early.model_copy(update={"experiment_id": experiment}),
        late.model_copy(update={"experiment_id": experiment}),
    ]
    assert store.get_evaluation(experiment, early.id) == found[0]
    assert store.get_evaluation(experiment, "no-such-id") is None
    other = store.get_or_create_experiment("p", "other").id
    assert store.list_evaluations(other) == []
    assert store.get_evaluation(other, early.id) is None


def test_a_success_scores_its_version_without_a_new_version(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    row = version("r", scores={"exact": 1.0})
    store.write(experiment, [row], spans_of(row))
    store.save_evaluations(
        experiment, [judged(row, "cites", score=0.5), judged(row, "ok", passed=False)]
    )

    [latest] = store.latest_rows(experiment)
    assert latest.scores == {"exact": 1.0, "judge:cites": 0.5, "judge:ok": 0.0}
    assert (latest.version, latest.version_id) == (1, row.version_id)
    assert [each.scores for each in store.history(experiment, "r")] == [latest.scores]
    assert store.latest_states(experiment)["r"].status == "passed"


def test_an_evaluation_saved_again_is_updated_in_place(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    row = version("r")
    store.write(experiment, [row], [])
    pending = judged(row, status="pending")
    store.save_evaluations(experiment, [pending])
    assert store.latest_rows(experiment)[0].scores == {}

    running = pending.model_copy(update={"status": "in_progress", "started_at": 1001.0})
    store.save_evaluations(experiment, [running])
    assert [each.status for each in store.list_evaluations(experiment)] == ["in_progress"]

    done = running.model_copy(
        update={"status": "success", "finished_at": 1002.0, "result": Judgment(score=1.0)}
    )
    store.save_evaluations(experiment, [done])
    [stored] = store.list_evaluations(experiment)
    assert (stored.id, stored.status, stored.result) == (pending.id, "success", Judgment(score=1.0))
    assert store.latest_rows(experiment)[0].scores == {"judge:cites": 1.0}


def test_the_latest_success_of_a_judge_wins_and_a_failure_leaves_it(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    row = version("r")
    store.write(experiment, [row], [])
    # Saved out of order: the one created last wins, whichever was saved last.
    store.save_evaluations(experiment, [judged(row, at=3000.0, score=0.9)])
    store.save_evaluations(experiment, [judged(row, at=2000.0, score=0.1)])
    store.save_evaluations(experiment, [judged(row, at=4000.0, status="failure")])
    store.save_evaluations(experiment, [judged(row, at=5000.0, status="success")])  # says nothing

    assert store.latest_rows(experiment)[0].scores == {"judge:cites": 0.9}
    assert len(store.list_evaluations(experiment)) == 4


def test_a_rerun_makes_the_old_versions_judgments_history(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    first = version("r", "attempt-1", start=100.0)
    store.write(experiment, [first], spans_of(first, "search"))
    store.save_evaluations(experiment, [judged(first, score=0.5)])

    second = version("r", "attempt-2", start=200.0)
    store.write(experiment, [second], spans_of(second, "answer"))
    store.delete_stale_spans(experiment)

    [latest] = store.latest_rows(experiment)
    assert (latest.version_id, latest.scores) == (second.version_id, {})
    old, new = store.history(experiment, "r")
    assert (old.scores, new.scores) == ({"judge:cites": 0.5}, {})
    # The judgment itself is kept, and still names the version it judged.
    [kept] = store.list_evaluations(experiment)
    assert (kept.version_id, kept.trace_id) == (first.version_id, first.root_span_id)

    store.save_evaluations(experiment, [judged(second, score=1.0)])
    store.delete_stale_spans(experiment)
    assert store.latest_rows(experiment)[0].scores == {"judge:cites": 1.0}
    assert len(store.list_evaluations(experiment)) == 2
    assert {span.name for span in store.list_spans(experiment)} == {"r", "answer"}


def test_a_version_judged_before_it_arrives_gets_its_score_when_written(
    store: SQLiteStore,
) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    row = version("r", scores={"exact": 0.0})
    store.save_evaluations(experiment, [judged(row, score=0.75)])
    assert store.latest_rows(experiment) == []

    other = version("s")
    store.write(experiment, [row, other], [])
    rows = {each.row_id: each.scores for each in store.latest_rows(experiment)}
    assert rows == {"r": {"exact": 0.0, "judge:cites": 0.75}, "s": {}}


def test_a_redelivered_version_keeps_its_judgments(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    row = version("r")
    store.write(experiment, [row], [])
    store.save_evaluations(experiment, [judged(row, score=0.5)])
    result = store.write(experiment, [row], [])  # the same version again, from a spool
    assert result.duplicate_rows == 1
    assert store.latest_rows(experiment)[0].scores == {"judge:cites": 0.5}


def test_a_trace_is_found_by_its_id_for_the_latest_and_older_versions(
    store: SQLiteStore,
) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    first = version("r", "attempt-1", start=100.0)
    second = version("r", "attempt-2", start=200.0)
    neighbour = version("s", "attempt-2", start=200.0)
    store.write(experiment, [first], spans_of(first, "search"))
    store.write(experiment, [second, neighbour], spans_of(second, "answer") + spans_of(neighbour))

    latest = store.find_trace(experiment, second.root_span_id)
    assert latest is not None
    assert (latest.version_id, [span.name for span in latest.spans]) == (
        second.version_id,
        ["r", "answer"],
    )
    older = store.find_trace(experiment, first.root_span_id)
    assert older is not None
    assert (older.version_id, [span.name for span in older.spans]) == (
        first.version_id,
        ["r", "search"],
    )
    store.delete_stale_spans(experiment)
    cleaned = store.find_trace(experiment, first.root_span_id)
    assert cleaned is not None and (cleaned.version_id, cleaned.spans) == (first.version_id, [])
    assert store.find_trace(experiment, "f" * 32) is None
    other = store.get_or_create_experiment("p", "other").id
    assert store.find_trace(other, second.root_span_id) is None


@pytest.mark.parametrize("delivered", ["in order", "late"])
def test_of_versions_sharing_a_trace_the_one_started_last_is_found(
    store: SQLiteStore, delivered: str
) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    earlier = version("r", "attempt-1", start=100.0)
    later = version("r", "attempt-2", start=200.0)
    later.root_span_id = earlier.root_span_id  # one trace id logged twice
    for row in [earlier, later] if delivered == "in order" else [later, earlier]:
        store.write(experiment, [row], [])
    found = store.find_trace(experiment, earlier.root_span_id)
    assert found is not None and found.version_id == later.version_id


def test_judge_scores_read_back_whole(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    row = version("r")
    store.write(experiment, [row], [])
    scores = {"a": 0.5335866832987394, "b": 0.1, "c": 1 / 3, "d": 2.5e-7, "e": 1.0, "f": 0.0}
    store.save_evaluations(experiment, [judged(row, judge, score=s) for judge, s in scores.items()])
    read = store.latest_rows(experiment)[0].scores
    assert read == {f"{SCORE_PREFIX}{judge}": score for judge, score in scores.items()}
    assert all(type(value) is float for value in read.values())
    late = version("s")  # judged before it arrived: merged as it is written
    store.save_evaluations(experiment, [judged(late, score=0.5335866832987394)])
    store.write(experiment, [late], [])
    assert store.latest_rows(experiment, ["s"])[0].scores == {
        f"{SCORE_PREFIX}cites": 0.5335866832987394
    }


def test_latest_traces_hold_each_rows_latest_version_and_its_spans(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    old = version("a", "attempt-1", start=100.0)
    store.write(experiment, [old], spans_of(old, "stale"))
    a = version("a", "attempt-2", start=200.0)
    b = version("b", "attempt-2", start=200.0)
    store.write(experiment, [a, b], spans_of(a, "search", "answer") + spans_of(b))

    traces = store.latest_traces(experiment)
    assert [(trace.row_id, trace.version_id) for trace in traces] == [
        ("a", a.version_id),
        ("b", b.version_id),
    ]
    assert [span.name for span in traces[0].spans] == ["a", "search", "answer"]
    assert [span.name for span in traces[1].spans] == ["b"]
    assert [span.name for span in traces[0].find("search")] == ["search"]
    [only] = store.latest_traces(experiment, ["b"])
    assert only.row_id == "b"
    assert store.latest_traces(experiment, []) == []


def test_evaluations_outlive_the_store_object(tmp_path: Path) -> None:
    path = tmp_path / "rows.db"
    with SQLiteStore(path) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        row = version("r")
        store.write(experiment, [row], [])
        evaluation = judged(row, score=0.5, reasoning="kept")
        store.save_evaluations(experiment, [evaluation])
    with SQLiteStore(path, create=False) as store:
        assert store.get_evaluation(experiment, evaluation.id) == evaluation.model_copy(
            update={"experiment_id": experiment}
        )
        assert store.latest_rows(experiment)[0].scores == {"judge:cites": 0.5}
    connection = sqlite3.connect(path)
    try:
        # Finding a trace by its id is an index lookup, not a read of every version.
        plan = connection.execute(
            "EXPLAIN QUERY PLAN " + sqlite_evaluations._TRACE_VERSION, (experiment, "x")
        ).fetchall()
        assert any("row_versions_by_trace" in str(line) for line in plan), plan
    finally:
        connection.close()


def test_saving_no_evaluations_writes_nothing(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    store.save_evaluations(experiment, [])
    assert store.list_evaluations(experiment) == []


def test_the_stores_score_prefix_is_the_models() -> None:
    assert sqlite_evaluations._PREFIX == SCORE_PREFIX


def test_a_file_written_before_evaluations_existed_keeps_its_rows_and_gets_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.db"
    row = version("r", scores={"exact": 1.0})
    with SQLiteStore(path) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        store.write(experiment, [row], spans_of(row, "search"))
    # The file as it was before the migration: no table, no index, no record of it.
    connection = sqlite3.connect(path)
    try:
        connection.executescript(
            "DROP TABLE evaluations; DROP INDEX row_versions_by_trace; "
            "DELETE FROM evalrows_migrations WHERE name = '0007_evaluations';"
        )
    finally:
        connection.close()
    with SQLiteStore(path, create=False) as store:
        assert store.applied_migrations() == sorted(name for name, _ in MIGRATIONS)
        trace = store.find_trace(experiment, row.root_span_id)
        assert trace is not None and [span.name for span in trace.spans] == ["r", "search"]
        store.save_evaluations(experiment, [judged(row, score=0.5)])
        assert store.latest_rows(experiment)[0].scores == {"exact": 1.0, "judge:cites": 0.5}


def test_merged_scores_go_to_the_version_named_or_else_the_latest(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    first = version("r", "attempt-1", start=100.0, scores={"exact": 1.0})
    second = version("r", "attempt-2", start=200.0, scores={"exact": 0.0, "gone": 0.5})
    store.write(experiment, [first, second], [])

    missing = store.merge_scores(experiment, {"r": (first.version_id, {"judge:old": 0.25})})
    assert missing == []
    missing = store.merge_scores(experiment, {"r": (None, {"judge:new": 1.0, "gone": None})})
    assert missing == []
    old, new = store.history(experiment, "r")
    assert old.scores == {"exact": 1.0, "judge:old": 0.25}
    assert (new.version, new.scores) == (2, {"exact": 0.0, "judge:new": 1.0})


def test_a_merge_into_a_row_that_is_not_there_merges_nothing(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    row = version("r")
    store.write(experiment, [row], [])
    missing = store.merge_scores(
        experiment, {"r": (None, {"judge:x": 1.0}), "nowhere": (None, {"judge:x": 1.0})}
    )
    assert missing == ["nowhere"]
    assert store.merge_scores(experiment, {"r": ("no-such-version", {"judge:x": 1.0})}) == ["r"]
    assert store.latest_rows(experiment)[0].scores == {}


def test_an_evaluation_saved_under_another_experiment_scores_no_row_of_this_one(
    store: SQLiteStore,
) -> None:
    experiment = store.get_or_create_experiment("p", "e").id
    other = store.get_or_create_experiment("p", "other").id
    row = version("r")
    store.write(experiment, [row], [])
    store.save_evaluations(other, [judged(row, score=0.5)])
    assert store.latest_rows(experiment)[0].scores == {}
    assert store.list_evaluations(experiment) == []
