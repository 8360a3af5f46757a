"""The PostgreSQL store's writers of one experiment waiting for each other: a writer that holds
the experiment (stopped inside its transaction) is waited for at most the lock timeout, writers
waiting for a busy experiment leave the pool's connections to everyone else, and a waiting
write whose connection is lost runs once more."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from support.postgres import ended
from support.store import make_row

from pytest_evalrows.store import postgres_limits as limits
from pytest_evalrows.store.postgres import PostgresStore
from pytest_evalrows.store.postgres_connection import EXPERIMENT_LOCK


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


def test_a_writer_holding_the_experiment_is_waited_for_within_the_lock_timeout(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "LOCK_TIMEOUT_S", 0.5)
    with PostgresStore(postgres_url) as store, psycopg.connect(postgres_url) as stalled:
        experiment = store.get_or_create_experiment("p", "e").id
        # A writer stopped inside its transaction (a process suspended) holds the lock.
        stalled.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (EXPERIMENT_LOCK + experiment,)
        )
        failed = ended(lambda: store.write(experiment, [make_row("a")], []))
        assert str(failed) == (
            f"writing rows in {store.display_url} failed: another writer held the experiment "
            "for over 0.5 s"
        )
        stalled.rollback()
        store.write(experiment, [make_row("a")], [])
        assert [row.row_id for row in store.latest_rows(experiment)] == ["a"]


def test_writers_waiting_for_one_experiment_leave_connections_to_the_others(
    postgres_url: str,
) -> None:
    with PostgresStore(postgres_url) as store, psycopg.connect(postgres_url) as holder:
        busy = store.get_or_create_experiment("p", "busy").id
        other = store.get_or_create_experiment("p", "other").id
        holder.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (EXPERIMENT_LOCK + busy,)
        )
        # More writers of the busy experiment than the pool has connections.
        writers = [
            threading.Thread(target=store.write, args=(busy, [make_row(f"r{n}")], []))
            for n in range(8)
        ]
        for writer in writers:
            writer.start()
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            waiting_for_a_lock(admin)
        # A read and a write of another experiment go on meanwhile.
        assert ended(lambda: store.write(other, [make_row("x")], [])) is None
        assert [row.row_id for row in store.latest_rows(other)] == ["x"]
        holder.rollback()
        for writer in writers:
            writer.join(timeout=90)
        assert len(store.latest_rows(busy)) == 8
