"""The PostgreSQL store beyond the store contract that tests/test_sqlite_store.py,
tests/test_store_evaluations.py and tests/test_store_merges.py run on every store: its
migrations, its URLs, its one-line errors, many writers into one experiment at once, and what it
stores next to what SQLite stores for the same writes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import psycopg.sql
import pytest
from support.postgres import ThrowawayServer, database_url
from support.servers import closed_port
from support.store import make_row

from pytest_evalrows.core.judgments import Evaluation, Judgment
from pytest_evalrows.errors import StoreError
from pytest_evalrows.models import Metrics, RowVersion, SpanRecord
from pytest_evalrows.store import postgres_schema
from pytest_evalrows.store.postgres import PostgresStore
from pytest_evalrows.store.postgres_connection import EXPERIMENT_LOCK, MISSING_DRIVER
from pytest_evalrows.store.postgres_schema import MIGRATIONS
from pytest_evalrows.store.sqlite import SQLiteStore
from pytest_evalrows.store.urls import VALID_FORMS, parse_store_url

HERE = Path(__file__).parent


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` for its user (the test servers trust every local login)."""
    parts = urlsplit(url)
    netloc = f"{parts.username or 'postgres'}:{password}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def count(url: str, query: str, *args: Any) -> Any:
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(query, args).fetchone()
    assert row is not None
    return row[0]


# -- migrations --------------------------------------------------------------------------------


def test_migration_names_and_order_are_those_databases_recorded() -> None:
    # Databases hold these names: renaming or reordering one would apply it twice.
    assert [name for name, _ in MIGRATIONS] == [
        "0001_experiments_attempts_rows",
        "0002_spans",
        "0003_evaluations",
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


# -- URLs and errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://evalrows:s3cret@127.0.0.1:5432/evals?sslmode=require",
            "postgresql://evalrows@127.0.0.1:5432/evals",
        ),
        ("postgres://evalrows:s3cret@db.example/evals", "postgresql://evalrows@db.example/evals"),
        ("postgresql://db.example", "postgresql://db.example"),
        ("postgresql:///evals?host=/run/postgresql", "postgresql:///evals?host=/run/postgresql"),
        ("postgresql://u:s3cret@[::1]:5433/evals", "postgresql://u@[::1]:5433/evals"),
        (
            "postgresql://h1:5432,h2:5433/evals?user=bob&password=s3cret",
            "postgresql://h1:5432,h2:5433/evals?user=bob",
        ),
    ],
)
def test_a_postgresql_url_is_shown_without_its_password(url: str, shown: str) -> None:
    parsed = parse_store_url(url, Path("/nowhere"))
    assert (parsed.scheme, parsed.path, parsed.text) == ("postgresql", None, url)
    assert parsed.display() == shown
    assert "s3cret" not in repr(parsed)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("postgresql://", "'postgresql://' names neither a host nor a database"),
        ("postgres://u:s3cret@", "'postgres://***@' names neither a host nor a database"),
        ("postgresql://db:99999/evals", "'postgresql://db:99999/evals' has a bad port '99999'"),
        ("postgresql://db:port/evals", "'postgresql://db:port/evals' has a bad port 'port'"),
    ],
)
def test_a_bad_postgresql_url_is_one_line_naming_the_valid_forms(url: str, why: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_store_url(url, Path("/nowhere"))
    assert str(raised.value) == f"{why}; use {VALID_FORMS}"
    assert "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in VALID_FORMS


def test_the_store_takes_only_a_postgresql_url(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^sqlite:///\S+ is not a postgresql:// URL$"):
        PostgresStore(f"sqlite:///{tmp_path / 'rows.db'}")
    with pytest.raises(ValueError, match=r"names neither a host nor a database"):
        PostgresStore("postgres://")


def test_an_unreachable_server_is_one_line_naming_the_store_without_its_password() -> None:
    port = closed_port()
    with pytest.raises(StoreError) as raised:
        PostgresStore(f"postgresql://evalrows:s3cret@127.0.0.1:{port}/evals")
    assert str(raised.value) == (
        f"cannot reach postgresql://evalrows@127.0.0.1:{port}/evals: connection refused"
    )


def test_a_missing_database_is_one_line_naming_it(postgres_server: str) -> None:
    url = with_password(database_url(postgres_server, "evalrows_not_here"), "s3cret")
    shown = parse_store_url(url, Path("/nowhere")).display()
    with pytest.raises(StoreError) as raised:
        PostgresStore(url)
    assert str(raised.value) == (
        f'cannot reach {shown}: database "evalrows_not_here" does not exist'
    )
    assert "s3cret" not in shown


def test_a_parameter_libpq_does_not_know_is_one_line_without_the_password() -> None:
    with pytest.raises(StoreError) as raised:
        PostgresStore("postgresql://evalrows:s3cret@127.0.0.1:5432/evals?colour=blue")
    assert str(raised.value) == (
        "postgresql://evalrows@127.0.0.1:5432/evals is not a valid PostgreSQL URL: "
        'invalid URI query parameter: "colour"'
    )


def test_create_false_refuses_a_database_without_the_store(postgres_url: str) -> None:
    shown = parse_store_url(postgres_url, Path("/nowhere")).display()
    with pytest.raises(StoreError) as raised:
        PostgresStore(postgres_url, create=False)
    assert str(raised.value) == f"no evalrows store in {shown}"
    assert count(postgres_url, "SELECT to_regclass('evalrows_migrations')") is None


def test_psycopg_is_imported_only_when_a_postgresql_store_is_opened() -> None:
    probe = """
import sys
from pathlib import Path
from pytest_evalrows.store.urls import parse_store_url
import pytest_evalrows.stores, pytest_evalrows.store.postgres, pytest_evalrows.cli
parse_store_url("postgresql://evalrows:s3cret@127.0.0.1:1/evals", Path.cwd())
print(sorted(name for name in ("psycopg", "psycopg_pool") if name in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_without_psycopg_the_store_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StoreError) as raised:
        PostgresStore("postgresql://evalrows@127.0.0.1:5432/evals")
    assert str(raised.value) == MISSING_DRIVER
    assert MISSING_DRIVER == (
        "a postgresql:// store needs psycopg: pip install 'pytest-evalrows[postgres]'"
    )


def test_a_connection_the_server_dropped_is_replaced(
    postgres_url: str, postgres_server: str
) -> None:
    with PostgresStore(postgres_url) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        store.write(experiment, [make_row("a")], [])
        database = urlsplit(postgres_url).path[1:]
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            found = admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchall()
            for (pid,) in found:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert found
        store.write(experiment, [make_row("b")], [])
        assert [row.row_id for row in store.latest_rows(experiment)] == ["a", "b"]


def waiting_for_a_lock(admin: psycopg.Connection[Any], other_than: int = 0) -> int:
    """The backend of the test's database that waits on an advisory lock (not ``other_than``):
    bounded polling, to follow a thread that is about to wait."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory' AND pid != %s",
            (other_than,),
        ).fetchall()
        if found:
            [(pid,)] = found
            return int(pid)
    raise AssertionError("no backend waits on the experiment's lock")


def test_a_write_whose_connection_is_lost_before_its_commit_runs_once_more(
    postgres_url: str,
) -> None:
    with PostgresStore(postgres_url) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        failures: list[BaseException] = []

        def write(row_id: str) -> None:
            try:
                store.write(experiment, [make_row(row_id)], [])
            except BaseException as exc:  # reported by the test's thread
                failures.append(exc)

        key = EXPERIMENT_LOCK + experiment
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            # The store's write waits on the experiment's lock, held here; its connection is
            # ended under it once: the write runs again on a fresh connection.
            admin.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
            writer = threading.Thread(target=write, args=("a",))
            writer.start()
            first = waiting_for_a_lock(admin)
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            waiting_for_a_lock(admin, other_than=first)
            admin.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
            writer.join()
            assert failures == []
            assert [row.version for row in store.history(experiment, "a")] == [1]

            # Lost twice: one line, and nothing written.
            admin.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
            writer = threading.Thread(target=write, args=("b",))
            writer.start()
            first = waiting_for_a_lock(admin)
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            second = waiting_for_a_lock(admin, other_than=first)
            admin.execute("SELECT pg_terminate_backend(%s)", (second,))
            writer.join()
            admin.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
        assert [str(each) for each in failures] == [
            f"lost the connection to {store.display_url} while writing rows: "
            "terminating connection due to administrator command"
        ]
        assert [row.row_id for row in store.latest_rows(experiment)] == ["a"]
        store.write(experiment, [make_row("b")], [])
        assert [row.row_id for row in store.latest_rows(experiment)] == ["a", "b"]


@pytest.fixture
def own_server() -> Iterator[ThrowawayServer]:
    server = ThrowawayServer()
    try:
        yield server
    finally:
        server.stop()


def test_a_server_gone_while_the_store_is_open_is_one_line(own_server: ThrowawayServer) -> None:
    url = with_password(own_server.url, "s3cret")
    with PostgresStore(url) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        store.write(experiment, [make_row("a")], [])
        own_server.stop()
        with pytest.raises(StoreError) as raised:
            store.write(experiment, [make_row("b")], [])
    message = str(raised.value)
    assert message == f"cannot reach {store.display_url}: connection refused"
    assert "s3cret" not in message and "\n" not in message


def test_a_nul_character_is_kept_as_the_replacement_character(postgres_url: str) -> None:
    # PostgreSQL cannot keep a NUL in any text: one such value must not make its batch
    # undeliverable.
    with PostgresStore(postgres_url) as store:
        experiment = store.get_or_create_experiment("p", "e").id
        row = make_row("r", output="a\x00b", input={"k": "back\\u0000slash"})
        store.write(experiment, [row], [])
        [back] = store.latest_rows(experiment)
    assert (back.output, back.input) == ("a\ufffdb", {"k": "back\\u0000slash"})


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
