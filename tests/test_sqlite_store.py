"""The embedded store, and the in-memory store that shares its code."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pydantic_core
import pytest
from support.store import make_row

from pytest_evalrows import MemoryStore, SQLiteStore, StoreError, UnknownExperimentError
from pytest_evalrows.models import Attempt, Metrics, RowVersion, SpanRecord, StaleSpan
from pytest_evalrows.store import sqlite_schema
from pytest_evalrows.store.base import Store
from pytest_evalrows.store.postgres import PostgresStore
from pytest_evalrows.store.sqlite_schema import MIGRATIONS

MIGRATION_NAMES = ["0001_experiments_attempts_rows", "0002_spans"]


@pytest.fixture(params=["sqlite", "memory", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SQLiteStore | PostgresStore]:
    """The store contract runs on each kind of store that keeps everything."""
    made: SQLiteStore | PostgresStore
    if request.param == "postgresql":
        made = PostgresStore(request.getfixturevalue("postgres_url"))
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "sub" / "rows.db")
    else:
        made = MemoryStore()
    with made:
        yield made


def test_migrations_are_named_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "rows.db"
    with SQLiteStore(path) as store:
        assert store.applied_migrations()[: len(MIGRATION_NAMES)] == MIGRATION_NAMES
        assert store.applied_migrations() == sorted(name for name, _ in MIGRATIONS)
    connection = sqlite3.connect(path)
    try:
        recorded = connection.execute("SELECT name FROM evalrows_migrations ORDER BY name")
        assert [name for (name,) in recorded] == sorted(name for name, _ in MIGRATIONS)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        connection.close()


def test_reopening_keeps_data_and_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "rows.db"
    with SQLiteStore(path) as store:
        experiment = store.get_or_create_experiment("p", "e")
        store.write(experiment.id, [make_row("r")], [])
        applied = store.applied_migrations()
    for _ in range(2):
        with SQLiteStore(path, create=False) as store:
            assert store.applied_migrations() == applied
            assert [row.row_id for row in store.latest_rows(experiment.id)] == ["r"]
    connection = sqlite3.connect(path)
    try:
        count = connection.execute("SELECT count(*) FROM evalrows_migrations").fetchone()
        assert count == (len(MIGRATIONS),)
    finally:
        connection.close()


def test_migration_names_and_order_are_those_databases_recorded() -> None:
    # Existing databases hold these names: renaming or reordering one would apply it twice.
    assert [name for name, _ in MIGRATIONS] == [
        "0001_experiments_attempts_rows",
        "0002_spans",
        "0003_projects",
        "0004_xact_ids",
        "0005_latest_trace",
        "0006_execution_order",
        "0007_evaluations",
        "0008_experiment_bases",
        "0009_spans_by_event_id",
    ]


def test_a_migration_with_semicolons_in_a_literal_and_a_trigger_applies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rows.db"
    with SQLiteStore(path) as store:
        experiment = store.get_or_create_experiment("p", "e")
    extra = (
        "9999_test_semicolons",
        sqlite_schema.Statements(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
            "INSERT INTO notes (text) VALUES ('one; two;')",
            """
            CREATE TRIGGER note_on_experiment AFTER INSERT ON experiments
            BEGIN
                INSERT INTO notes (text) VALUES ('made ' || new.name || ';');
                INSERT INTO notes (text) VALUES ('and; again');
            END
            """,
        ),
    )
    monkeypatch.setattr(sqlite_schema, "MIGRATIONS", (*MIGRATIONS, extra))
    with SQLiteStore(path, create=False) as store:
        assert store.applied_migrations() == sorted([*(name for name, _ in MIGRATIONS), extra[0]])
        assert store.get_or_create_experiment("p", "e").id == experiment.id
        store.get_or_create_experiment("p", "f")
    connection = sqlite3.connect(path)
    try:
        notes = [text for (text,) in connection.execute("SELECT text FROM notes ORDER BY id")]
        assert notes == ["one; two;", "made f;", "and; again"]
    finally:
        connection.close()


def test_memory_store_is_a_store_with_every_migration() -> None:
    with MemoryStore() as store:
        assert isinstance(store, Store)
        assert store.applied_migrations() == sorted(name for name, _ in MIGRATIONS)
        assert store.display_url == "sqlite:///:memory:"


def test_create_false_refuses_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(StoreError, match=r"^no store at "):
        SQLiteStore(missing, create=False)
    assert not missing.exists()


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"this is not a database, just some words " * 100)
    with pytest.raises(StoreError, match=r"^cannot open .*notes\.db: file is not a database"):
        SQLiteStore(path, create=False)


def test_experiments_are_created_once_per_project_and_name(store: SQLiteStore) -> None:
    first = store.get_or_create_experiment("proj", "nightly", git_commit="c1", git_branch="main")
    again = store.get_or_create_experiment("proj", "nightly", git_commit="c2", git_branch="dev")
    other = store.get_or_create_experiment("other", "nightly")

    assert again == first
    assert (first.git_commit, first.git_branch) == ("c1", "main")
    assert other.id != first.id
    assert [(e.project, e.name) for e in store.list_experiments()] == [
        ("other", "nightly"),
        ("proj", "nightly"),
    ]
    assert store.get_experiment("nightly", "proj") == first
    with pytest.raises(UnknownExperimentError, match=r"several projects \('proj', 'other'\)"):
        store.get_experiment("nightly")
    with pytest.raises(UnknownExperimentError, match=r"^no experiment 'weekly' in "):
        store.get_experiment("weekly")
    with pytest.raises(UnknownExperimentError, match=r"^no experiment 'nightly' in project 'x'"):
        store.get_experiment("nightly", "x")


def test_versions_are_append_only_and_readers_see_the_latest(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e")

    results = [
        store.write(experiment.id, [make_row("a", "t1", status="failed"), make_row("b", "t1")], []),
        store.write(experiment.id, [make_row("a", "t2")], []),
        store.write(experiment.id, [make_row("a", "t3", status="error"), make_row("c", "t3")], []),
    ]

    assert [(r.new_rows, r.updated_rows, r.duplicate_rows) for r in results] == [
        (2, 0, 0),
        (0, 1, 0),
        (1, 1, 0),
    ]
    latest = store.latest_rows(experiment.id)
    assert [(r.row_id, r.version, r.attempt_id, r.status) for r in latest] == [
        ("a", 3, "t3", "error"),
        ("b", 1, "t1", "passed"),
        ("c", 1, "t3", "passed"),
    ]
    assert all(r.created is not None for r in latest)
    assert [(r.version, r.attempt_id, r.status) for r in store.history(experiment.id, "a")] == [
        (1, "t1", "failed"),
        (2, "t2", "passed"),
        (3, "t3", "error"),
    ]
    assert store.history(experiment.id, "nope") == []
    selected = store.latest_rows(experiment.id, row_ids={"c", "a", "nope"})
    assert [(r.row_id, r.version) for r in selected] == [("a", 3), ("c", 1)]
    assert store.latest_rows(experiment.id, row_ids=[]) == []
    states = store.latest_states(experiment.id)
    assert {rid: (s.status, s.params_hash, s.attempt_id) for rid, s in states.items()} == {
        "a": ("error", "hash-1", "t3"),
        "b": ("passed", "hash-1", "t1"),
        "c": ("passed", "hash-1", "t3"),
    }


def test_one_row_twice_in_a_batch_makes_two_versions(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e")

    result = store.write(experiment.id, [make_row("a", "t1"), make_row("a", "t2")], [])

    assert (result.new_rows, result.updated_rows) == (1, 1)
    assert [(r.version, r.attempt_id) for r in store.history(experiment.id, "a")] == [
        (1, "t1"),
        (2, "t2"),
    ]


def test_writing_a_version_id_again_is_a_no_op(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e")
    row = make_row("a", "t1", version_id="v-1", output="first")
    store.write(experiment.id, [row], [])

    result = store.write(
        experiment.id, [make_row("a", "t2", version_id="v-1", output="changed")], []
    )

    assert (result.new_rows, result.updated_rows, result.duplicate_rows) == (0, 0, 1)
    (latest,) = store.latest_rows(experiment.id)
    assert (latest.version, latest.version_id, latest.output) == (1, "v-1", "first")
    assert len(store.history(experiment.id, "a")) == 1


def test_a_row_round_trips_every_field(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e")
    row = make_row(
        "r",
        input={"case": {"id": 1, "text": "é ✓"}},
        output=["x", 1.5, None],
        expected={"a": True},
        scores={"exact": 0.5},
        tags=["t"],
        params_hash=None,
    )
    store.write(experiment.id, [row], [])

    (back,) = store.latest_rows(experiment.id)

    assert back.model_dump(exclude={"version", "created"}) == row.model_dump(
        exclude={"version", "created"}
    )
    assert back.version == 1
    (state,) = store.latest_states(experiment.id).values()
    assert (state.status, state.params_hash, state.created) == ("passed", None, back.created)


def test_rows_of_experiments_are_kept_apart(store: SQLiteStore) -> None:
    one = store.get_or_create_experiment("p", "one")
    two = store.get_or_create_experiment("p", "two")
    store.write(one.id, [make_row("r", "t1")], [])

    result = store.write(two.id, [make_row("r", "t2")], [])

    assert result.new_rows == 1
    assert [(r.row_id, r.version) for r in store.latest_rows(one.id)] == [("r", 1)]
    assert [(r.row_id, r.version) for r in store.latest_rows(two.id)] == [("r", 1)]


def test_a_batch_is_written_all_or_nothing(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e")
    good = make_row("good")
    bad = make_row("bad")
    bad.output = object()  # cannot be serialized: the batch fails half way

    with pytest.raises(pydantic_core.PydanticSerializationError):
        store.write(experiment.id, [good, bad], [])

    assert store.latest_rows(experiment.id) == []
    assert store.write(experiment.id, [good], []).new_rows == 1


def test_attempts_are_inserted_then_updated(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e")
    attempt = Attempt(id="t1", experiment_id=experiment.id, started=10.0, args=["-x"])
    store.save_attempt(attempt)
    store.save_attempt(Attempt(id="t0", experiment_id=experiment.id, started=5.0))
    attempt.ended = 12.0
    attempt.counts = {"passed": 3}
    attempt.delivered = True
    store.save_attempt(attempt)

    listed = store.list_attempts(experiment.id)

    assert [a.id for a in listed] == ["t0", "t1"]
    assert listed[1] == attempt
    assert store.list_attempts("another-experiment") == []


def span(span_id: str, row_id: str | None, attempt_id: str, execution: int = 1) -> SpanRecord:
    return SpanRecord(
        span_id=span_id,
        root_span_id="0" * 31 + "1",  # the trace of helpers.make_row's rows, as under a row
        row_id=row_id,
        attempt_id=attempt_id,
        execution=execution,
        name=f"llm {span_id}",
        start=1.0,
        end=2.0,
    )


def test_stale_spans_are_those_of_older_attempts_of_rows_with_a_newer_version(
    store: SQLiteStore,
) -> None:
    experiment = store.get_or_create_experiment("p", "e")
    store.write(
        experiment.id,
        [make_row("a", "t1"), make_row("b", "t1")],
        [span("s1", "a", "t1"), span("s2", "b", "t1"), span("s0", None, "t1")],
    )
    result = store.write(experiment.id, [make_row("a", "t2")], [span("s3", "a", "t2")])
    assert result.spans == 1

    would = store.delete_stale_spans(experiment.id, dry_run=True)
    assert would == [StaleSpan("a", "s1", "t1", 1, "llm s1")]
    assert len(store.list_spans(experiment.id)) == 4

    assert store.delete_stale_spans(experiment.id, ["b"]) == []
    assert store.delete_stale_spans(experiment.id, ["a"]) == would
    assert [s.span_id for s in store.list_spans(experiment.id, "a")] == ["s3"]
    assert sorted(s.span_id for s in store.list_spans(experiment.id)) == ["s0", "s2", "s3"]
    assert store.delete_stale_spans(experiment.id) == []


def started_at(row: RowVersion, start: float) -> RowVersion:
    row.metrics = Metrics(start=start, end=start + 1, duration=1)
    return row


def test_a_late_older_execution_is_filed_in_history_and_never_becomes_the_latest(
    store: SQLiteStore,
) -> None:
    experiment = store.get_or_create_experiment("p", "e")
    store.write(experiment.id, [started_at(make_row("a", "first"), 100.0)], [])
    store.write(experiment.id, [started_at(make_row("a", "third"), 300.0)], [])

    # The second attempt's spool reaches the store last (a late `evalrows flush`).
    late = store.write(
        experiment.id,
        [started_at(make_row("a", "second"), 200.0), started_at(make_row("b", "second"), 200.0)],
        [],
    )

    assert (late.new_rows, late.updated_rows, late.superseded_rows) == (1, 0, 1)
    (latest,) = store.latest_rows(experiment.id, ["a"])
    assert (latest.attempt_id, latest.version) == ("third", 3)
    assert store.latest_states(experiment.id)["a"].attempt_id == "third"
    history = store.history(experiment.id, "a")
    assert [(r.version, r.attempt_id) for r in history] == [
        (1, "first"),
        (2, "second"),
        (3, "third"),
    ]
    # The next version goes on top of the renumbered history.
    store.write(experiment.id, [started_at(make_row("a", "fourth"), 400.0)], [])
    assert [r.version for r in store.history(experiment.id, "a")] == [1, 2, 3, 4]
    (latest,) = store.latest_rows(experiment.id, ["a"])
    assert (latest.attempt_id, latest.version) == ("fourth", 4)


def test_a_late_version_never_makes_the_newer_spans_stale(store: SQLiteStore) -> None:
    experiment = store.get_or_create_experiment("p", "e")
    newer = started_at(make_row("a", "newer"), 300.0)
    store.write(experiment.id, [newer], [span("s-newer", "a", "newer")])
    older = started_at(make_row("a", "older"), 200.0)
    store.write(experiment.id, [older], [span("s-older", "a", "older")])

    removed = store.delete_stale_spans(experiment.id, ["a"])

    assert [span.attempt_id for span in removed] == ["older"]
    assert [span.attempt_id for span in store.list_spans(experiment.id, "a")] == ["newer"]


def test_latest_scores_are_the_latest_rows_read_without_their_bodies(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        experiment = store.get_or_create_experiment("p", "e").id
        metrics = Metrics(start=1.0, end=2.0, duration=1.0, tokens=7, cost=0.25)
        store.write(
            experiment,
            [
                make_row("a", scores={"pass": 1.0, "q": 0.5}, output="x" * 1000),
                make_row("b", status="error").model_copy(update={"metrics": metrics}),
            ],
            [],
        )
        store.write(experiment, [make_row("a", "attempt-2", scores={"q": 0.75})], [])
        found = store.latest_scores(experiment)
        # What the default (the whole rows, read and decoded) says, with no body decoded.
        assert found == Store.latest_scores(store, experiment)
        assert [(row.row_id, row.attempt_id, row.scores) for row in found] == [
            ("a", "attempt-2", {"q": 0.75}),
            ("b", "attempt-1", {}),
        ]
        assert (found[1].metrics.tokens, found[1].metrics.cost) == (7, 0.25)
