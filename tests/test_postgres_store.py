"""The PostgreSQL store beyond the store contract that tests/test_sqlite_store.py,
tests/test_store_evaluations.py and tests/test_store_merges.py run on every store: its
migrations, many writers into one experiment at once, and the privileges it needs. Its URLs and
errors are in tests/test_postgres_connections.py, a network or server that fails it in
tests/test_postgres_faults.py, writers waiting for each other in tests/test_postgres_locks.py,
what it keeps of the values written in tests/test_postgres_fidelity.py."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.sql
import pytest
from support.postgres import count
from support.store import make_row

from pytest_evalrows.errors import StoreError
from pytest_evalrows.models import Metrics, RowVersion, SpanRecord
from pytest_evalrows.store import postgres_schema
from pytest_evalrows.store.postgres import PostgresStore
from pytest_evalrows.store.postgres_schema import MIGRATIONS

HERE = Path(__file__).parent


# -- migrations --------------------------------------------------------------------------------


def test_migration_names_and_order_are_those_databases_recorded() -> None:
    # Databases hold these names: renaming or reordering one would apply it twice.
    assert [name for name, _ in MIGRATIONS] == [
        "0001_experiments_attempts_rows",
        "0002_spans",
        "0003_evaluations",
        "0004_bodies_as_written",
        "0005_experiment_bases",
    ]


def test_migrations_are_named_recorded_and_applied_once(postgres_url: str) -> None:
    names = [name for name, _ in MIGRATIONS]
    with PostgresStore(postgres_url) as store:
        assert store.applied_migrations() == names
        experiment = store.get_or_create_experiment("p", "e").id
        store.write(experiment, [make_row("r")], [])
    for _ in range(2):
        with PostgresStore(postgres_url, create=False) as store:
            assert store.applied_migrations() == names
            assert [row.row_id for row in store.latest_rows(experiment)] == ["r"]
    assert count(postgres_url, "SELECT count(*) FROM evalrows_migrations") == len(names)


def test_a_migration_added_later_is_applied_to_a_database_that_has_the_others(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PostgresStore(postgres_url) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        store.write(experiment, [make_row("r")], [])
    extra = (
        "9999_test_notes",
        (
            "CREATE TABLE notes (id serial PRIMARY KEY, text text NOT NULL)",
            "INSERT INTO notes (text) VALUES ('one; two;')",
        ),
    )
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", (*MIGRATIONS, extra))
    with PostgresStore(postgres_url, create=False) as store:
        assert store.applied_migrations()[-1] == "9999_test_notes"
        assert [row.row_id for row in store.latest_rows(experiment)] == ["r"]
    assert count(postgres_url, "SELECT text FROM notes") == "one; two;"


def test_a_database_of_jsonb_bodies_is_upgraded_and_keeps_its_rows(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", MIGRATIONS[:3])
    row = make_row("r", input={"question": "q", "id": 1})
    with PostgresStore(postgres_url) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        store.write(experiment, [row], [span("s1", row)])
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", MIGRATIONS)
    with PostgresStore(postgres_url, create=False) as store:
        assert "0004_bodies_as_written" in store.applied_migrations()
        [back] = store.latest_rows(experiment)
        assert (back.version_id, back.input) == (row.version_id, row.input)
        assert [each.span_id for each in store.list_spans(experiment)] == ["s1"]
    kinds = "SELECT string_agg(data_type, ',' ORDER BY table_name) FROM information_schema.columns"
    where = " WHERE table_name IN ('row_versions', 'spans') AND column_name = 'body'"
    assert count(postgres_url, kinds + where) == "json,json"


# A process that opens the store, waits for the others, then writes `BATCHES` batches of
# versions of the same rows, each with an execution start of its own, in an order that makes
# many arrive after a version that started later.
WRITER = """
import sys, time
from pathlib import Path
from support.store import make_row
from pytest_evalrows.models import Metrics
from pytest_evalrows.store.postgres import PostgresStore

url, go = sys.argv[1], Path(sys.argv[5])
me, writers, batches = map(int, sys.argv[2:5])
(go / f"ready-{me}").touch()
while len(list(go.iterdir())) < writers:
    time.sleep(0.01)
with PostgresStore(url) as store:
    experiment = store.get_or_create_experiment("p", "e").id
    for batch in range(batches):
        start = 1000.0 + (batches - batch if me % 2 else batch) * writers + me
        rows = []
        for row_id in ("a", "b", "c"):
            row = make_row(row_id, f"attempt-{me}-{batch}")
            row.metrics = Metrics(start=start, end=start + 1, duration=1)
            rows.append(row)
        store.write(experiment, rows, [])
"""


def test_processes_opening_a_fresh_database_at_once_migrate_it_once_and_lose_no_version(
    postgres_url: str, tmp_path: Path
) -> None:
    writers, batches = 4, 15
    go = tmp_path / "go"
    go.mkdir()
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, postgres_url, str(me), str(writers), str(batches), go],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me in range(writers)
    ]
    errors = [process.communicate(timeout=120)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * writers, errors

    assert count(postgres_url, "SELECT count(*) FROM evalrows_migrations") == len(MIGRATIONS)
    with PostgresStore(postgres_url, create=False) as store:
        [experiment] = store.list_experiments()
        for row_id in ("a", "b", "c"):
            history = store.history(experiment.id, row_id)
            # Every version kept, numbered 1..n in the order their executions started.
            assert [row.version for row in history] == list(range(1, writers * batches + 1))
            starts = [row.metrics.start for row in history]
            assert starts == sorted(starts) and len(set(starts)) == len(starts)
            [latest] = store.latest_rows(experiment.id, [row_id])
            assert latest.version_id == history[-1].version_id


def started(row: RowVersion, start: float) -> RowVersion:
    row.metrics = Metrics(start=start, end=start + 1, duration=1)
    return row


def span(span_id: str, row: RowVersion) -> SpanRecord:
    return SpanRecord(
        span_id=span_id,
        root_span_id=row.root_span_id,
        span_parents=[row.span_id],
        row_id=row.row_id,
        attempt_id=row.attempt_id,
        execution=row.execution,
        name=f"llm {span_id}",
        start=row.metrics.start + 0.5,
        end=row.metrics.start + 0.7,
    )


@pytest.mark.parametrize("isolation", ["read committed", "repeatable read"])
def test_threads_writing_one_experiment_commit_in_xact_order_and_lose_no_version(
    postgres_url: str, isolation: str
) -> None:
    # A reader that asks again and again for what was written after the last write-order
    # number it saw must see every version: a number is never taken by a writer that
    # commits after a writer with a larger one. Also where a DBA made transactions
    # repeatable read by default.
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        database = psycopg.sql.Identifier(urlsplit(postgres_url).path[1:])
        admin.execute(
            psycopg.sql.SQL("ALTER DATABASE {} SET default_transaction_isolation = {}").format(
                database, psycopg.sql.Literal(isolation)
            )
        )
    writers, batches = 6, 20
    with PostgresStore(postgres_url) as store:
        experiment = store.get_or_create_experiment("p", "e").id
    done = threading.Event()
    seen: set[int] = set()
    failures: list[BaseException] = []

    def write(me: int) -> None:
        try:
            with PostgresStore(postgres_url) as mine:
                for batch in range(batches):
                    start = 1000.0 + batch * writers + me
                    rows = [started(make_row(r, f"t{me}-{batch}"), start) for r in ("a", "b")]
                    mine.write(experiment, rows, [])
        except BaseException as exc:  # reported by the test's thread
            failures.append(exc)

    def read() -> None:
        last = 0
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            while True:
                finished = done.is_set()
                found = connection.execute(
                    "SELECT xact FROM row_versions WHERE experiment_id = %s AND xact > %s",
                    (experiment, last),
                ).fetchall()
                seen.update(xact for (xact,) in found)
                last = max([last, *(xact for (xact,) in found)])
                if finished:
                    return

    threads = [threading.Thread(target=write, args=(me,)) for me in range(writers)]
    reader = threading.Thread(target=read)
    reader.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join()

    assert failures == []
    every = count(
        postgres_url,
        "SELECT array_agg(xact) FROM row_versions WHERE experiment_id = %s",
        experiment,
    )
    assert len(every) == writers * batches * 2
    assert seen == set(every)
    with PostgresStore(postgres_url) as store:
        for row_id in ("a", "b"):
            history = store.history(experiment, row_id)
            assert [row.version for row in history] == list(range(1, writers * batches + 1))
            assert store.latest_rows(experiment, [row_id])[0].metrics.start == 1000.0 + (
                writers * batches - 1
            )


@pytest.fixture
def roles(postgres_url: str, postgres_server: str) -> Iterator[tuple[str, str]]:
    """Two roles of the test's own: one that may read and write the store's tables, one that
    may only read them (as a DBA grants them once the store's tables exist)."""
    suffix = uuid.uuid4().hex[:8]
    writer, reader = f"evalrows_writer_{suffix}", f"evalrows_reader_{suffix}"
    with PostgresStore(postgres_url):
        pass  # the tables
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        for role in (writer, reader):
            admin.execute(
                psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(role))
            )
        grants = [
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {writer}",
            "GRANT USAGE ON SEQUENCE evalrows_xact TO {writer}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}",
        ]
        for grant in grants:
            admin.execute(
                psycopg.sql.SQL(grant).format(
                    writer=psycopg.sql.Identifier(writer), reader=psycopg.sql.Identifier(reader)
                )
            )
    try:
        yield writer, reader
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            for role in (writer, reader):
                name = psycopg.sql.Identifier(role)
                admin.execute(psycopg.sql.SQL("DROP OWNED BY {}").format(name))
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            for role in (writer, reader):
                admin.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))


def test_a_role_with_table_privileges_writes_and_a_read_only_role_reads(
    postgres_url: str, roles: tuple[str, str]
) -> None:
    # Once the tables exist, a store needs no right to create anything.
    writer, reader = roles
    with PostgresStore(as_role(postgres_url, writer)) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        store.write(experiment, [make_row("a", "t1")], [span("s1", make_row("a", "t1"))])
        store.write(experiment, [started(make_row("a", "t2"), 200.0)], [])
        assert [each.span_id for each in store.delete_stale_spans(experiment)] == ["s1"]
    with PostgresStore(as_role(postgres_url, reader), create=False) as store:
        assert [row.attempt_id for row in store.latest_rows(experiment)] == ["t2"]
        with pytest.raises(StoreError) as raised:
            store.write(experiment, [make_row("b")], [])
    assert str(raised.value) == (
        f"writing rows in {store.display_url} failed: permission denied for table row_versions"
    )


def test_latest_traces_pair_each_version_with_its_own_spans_while_another_writes(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PostgresStore(postgres_url) as store, PostgresStore(postgres_url) as other:
        experiment = store.get_or_create_experiment("p", "e").id
        older = started(make_row("r", "t1"), 100.0)
        store.write(experiment, [older], [span("old", older)])
        newer = started(make_row("r", "t2"), 200.0)
        newer.root_span_id = "f" * 32  # a trace of its own
        read_rows = store._reads.latest_rows

        def another_session_writes_after_the_rows_are_read(*args: Any) -> Any:
            found = read_rows(*args)
            other.write(experiment, [newer], [span("new", newer)])
            return found

        monkeypatch.setattr(
            store._reads, "latest_rows", another_session_writes_after_the_rows_are_read
        )
        [trace] = store.latest_traces(experiment)
    assert (trace.version_id, [each.span_id for each in trace.spans]) == (
        older.version_id,
        ["old"],
    )
