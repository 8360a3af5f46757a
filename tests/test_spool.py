"""Never drop a row: with the store unwritable every row waits in the local spool, and the next
session or `evalrows flush` delivers it row for row; the spool's file format and delivery,
in-process (issue 4, invariant 5)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from support.cli import evalrows, session_report
from support.output import header, output_of, read_summary
from support.sessions import INI
from support.spool import spool_files, spooled_entries, spooled_rows, spooled_span_count
from support.store import (
    BLOCKED_STORE,
    assert_no_stale_spans,
    block_store,
    history,
    make_row,
    stored,
    unblock_store,
)

from pytest_evalrows.delivery.leftovers import deliver_leftovers
from pytest_evalrows.delivery.spool import Spool, read_spool
from pytest_evalrows.store.sqlite import SQLiteStore

SUITE = """
import pytest
from opentelemetry import trace

CASES = [f"c{i:02d}" for i in range(12)]


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
def test_case(case, eval_row):
    with trace.get_tracer("suite").start_as_current_span(f"user-{case}"):
        eval_row.log(output=f"out-{case}", expected=f"out-{case}")
    eval_row.score("quality", 0.5)
    assert case != "c04"
"""

CASES = [f"c{i:02d}" for i in range(12)]
STORE = f"--eval-store={BLOCKED_STORE}"


def rid(case: str) -> str:
    return f"test_suite.py::test_case[{case}]"


@pytest.fixture
def blocked(pytester: pytest.Pytester) -> Path:
    """A store whose parent directory is a regular file: it cannot be created or written, for
    root too. Returns the spool directory."""
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    assert block_store(pytester.path) == STORE
    return pytester.path / ".evalrows" / "spool"


def unblock(pytester: pytest.Pytester) -> Path:
    return unblock_store(pytester.path)


def check_spooled(spool: Path, cases: list[str], attempt: str) -> dict[str, dict[str, Any]]:
    """Every row of ``cases`` is in the spool, with its spans, nothing else."""
    spooled = spooled_rows(spool)
    assert sorted(spooled) == [rid(case) for case in cases]
    for case in cases:
        row = spooled[rid(case)]
        assert row["output"] == f"out-{case}"
        assert row["status"] == ("failed" if case == "c04" else "passed")
        assert row["attempt_id"] == attempt
    assert spooled_span_count(spool) == 2 * len(cases)  # root and user span of each
    return spooled


def check_delivered(db: Path, spooled: dict[str, dict[str, Any]], version: int = 1) -> None:
    """What the store holds for the spooled rows is what was spooled, row for row."""
    for row_id, doc in spooled.items():
        stored_version = history(db, "durable", row_id)[version - 1]
        assert stored_version.version == version
        assert stored_version.model_dump(exclude={"version", "created"}) == (
            type(stored_version).model_validate(doc).model_dump(exclude={"version", "created"})
        )


def test_an_unwritable_store_spools_every_row_and_the_next_session_delivers_them(
    pytester: pytest.Pytester, blocked: Path
) -> None:
    spool = blocked
    first = pytester.runpytest_subprocess("--eval-experiment=durable", STORE)

    first.assert_outcomes(passed=11, failed=1)  # outcomes and exit code as without the plugin
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    # The store cannot be read back yet: what the summary says is all there is.
    said = read_summary(first)
    assert said.undelivered == 12
    assert said.written == (0, 0)
    assert said.stale_removed is None  # no cleanup after a failed write
    assert said.store_error is not None
    attempt = header(first)["attempt"]
    assert len(spool_files(spool)) == 1
    spooled = check_spooled(spool, CASES, attempt)

    db = unblock(pytester)
    # The next recording session (the passing cases, failing on undelivered rows) delivers
    # the spool before it starts.
    second = pytester.runpytest_subprocess(
        "--eval-experiment=durable", STORE, "-k", "not c04", "--eval-fail-on-undelivered"
    )

    second.assert_outcomes(passed=11, deselected=1)
    assert second.ret == pytest.ExitCode.OK  # everything was delivered
    report = session_report(second, store=db)
    assert report["leftover_rows"] == 12
    assert (report["new_rows"], report["updated_rows"]) == (0, 11)  # new versions of its rows
    assert report["undelivered_rows"] == 0
    assert report["stale_spans_removed"] == 22  # the spooled root and user spans of its 11 rows
    check_delivered(db, spooled)  # every version 1 is the spooled one
    found = stored(db, "durable")
    assert set(found.rows) == {rid(case) for case in CASES}
    second_attempt = header(second)["attempt"]
    for case in CASES:
        row = found.rows[rid(case)]
        if case == "c04":
            assert (row.version, row.version_id) == (1, spooled[rid(case)]["version_id"])
            assert row.attempt_id == attempt
        else:
            assert (row.version, row.attempt_id) == (2, second_attempt)
        assert sorted(s.name for s in found.spans_of(rid(case))) == [
            f"test_case[{case}]",
            f"user-{case}",
        ]
    assert_no_stale_spans(found)
    assert spool_files(spool) == []

    # Delivered entries leave the spool: after a normal session nothing is left in it.
    third = pytester.runpytest_subprocess("--eval-experiment=durable", STORE)
    third.assert_outcomes(passed=11, failed=1)
    report = session_report(third, store=db)
    assert (report["new_rows"], report["updated_rows"], report["leftover_rows"]) == (0, 12, 0)
    assert spool_files(spool) == []
    assert list(spool.iterdir()) == []


def test_evalrows_flush_delivers_what_a_session_left_and_fail_on_undelivered(
    pytester: pytest.Pytester, blocked: Path
) -> None:
    spool = blocked
    passing = [case for case in CASES if case != "c04"]
    first = pytester.runpytest_subprocess(
        "--eval-experiment=durable", STORE, "-k", "not c04", "--eval-fail-on-undelivered"
    )

    first.assert_outcomes(passed=11, deselected=1)
    assert first.ret == pytest.ExitCode.TESTS_FAILED  # only because rows were not delivered
    assert read_summary(first).undelivered == 11
    spooled = check_spooled(spool, passing, header(first)["attempt"])
    assert "Traceback" not in output_of(first)

    db = unblock(pytester)
    flush = evalrows("flush", "--store", db, "--spool", spool, cwd=pytester.path)

    assert flush.returncode == 0, flush.stderr
    assert flush.stdout.splitlines() == [
        f"delivered 11 rows to experiment 'durable' (project '{pytester.path.name}')",
        "delivered 11 rows (11 new, 0 updated, 0 already there) and 22 spans from 1 spool "
        "files; removed 0 stale spans",
    ]
    check_delivered(db, spooled)
    found = stored(db, "durable")
    assert set(found.rows) == {rid(case) for case in passing}
    assert len(found.spans) == 22
    assert_no_stale_spans(found)
    assert spool_files(spool) == []

    again = evalrows("flush", "--store", db, "--spool", spool, cwd=pytester.path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "delivered 0 rows (0 new, 0 updated, 0 already there) and 0 spans from 0 spool files; "
        "removed 0 stale spans"
    ]


# -- the spool file, in-process ---------------------------------------------------------------

PROJECT, EXPERIMENT = "proj", "exp"


def row(row_id: str, attempt: str = "attempt-1") -> dict[str, Any]:
    return make_row(row_id, attempt, output=f"out-{row_id}").model_dump(mode="json")


def span(row_doc: dict[str, Any], name: str) -> dict[str, Any]:
    return {
        "span_id": os.urandom(8).hex(),
        "root_span_id": row_doc["root_span_id"],
        "span_parents": [],
        "row_id": row_doc["row_id"],
        "attempt_id": row_doc["attempt_id"],
        "execution": row_doc["execution"],
        "name": name,
        "start": 1.0,
        "end": 2.0,
    }


def append(spool: Spool, store: SQLiteStore, *rows: dict[str, Any]) -> int:
    return spool.append(
        store=store.display_url,
        project=PROJECT,
        experiment=EXPERIMENT,
        rows=list(rows),
        spans=[span(r, f"span-of-{r['row_id']}") for r in rows],
    )


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with SQLiteStore(tmp_path / "store.db") as opened:
        yield opened


def latest(store: SQLiteStore) -> dict[str, Any]:
    experiment = store.get_experiment(EXPERIMENT, PROJECT)
    return {r.row_id: r for r in store.latest_rows(experiment.id)}


def test_a_torn_last_line_is_skipped_and_said(tmp_path: Path, store: SQLiteStore) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory, "killed-1")
    first, second = row("r1"), row("r2")
    append(spool, store, first)
    append(spool, store, second)
    # A process killed in the middle of writing its third line.
    with open(spool.path, "ab") as file:
        file.write(b'{"seq":3,"store":"' + store.display_url.encode() + b'","rows":[{"row_id"')
    spool.close()  # releases the lock, as the process's death would
    assert spool.path.exists()  # two entries are not delivered yet

    done = deliver_leftovers(directory, store)

    assert done.errors == []
    assert done.rows == {(PROJECT, EXPERIMENT, "r1"), (PROJECT, EXPERIMENT, "r2")}
    assert (done.written.new_rows, done.written.duplicate_rows, done.written.spans) == (2, 0, 2)
    assert done.files == 1
    found = latest(store)
    assert sorted(found) == ["r1", "r2"]
    assert found["r1"].version_id == first["version_id"]
    assert found["r2"].output == "out-r2"
    assert spool_files(directory) == []
    # Never in silence: the torn line is named, once, with its file.
    assert done.problems == [
        f"spool file {spool.path}: 1 unreadable line(s) skipped (a write cut short by a kill, "
        "or a damaged file); what they held cannot be delivered"
    ]


def test_acks_remove_entries(tmp_path: Path, store: SQLiteStore) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory, "session-1")
    docs = [row(f"r{i}") for i in range(1, 4)]
    seqs = [append(spool, store, doc) for doc in docs]
    assert seqs == [1, 2, 3]
    spool.ack([1, 3])
    assert [entry.seq for entry in spool.pending()] == [2]
    spool.close()
    assert [entry["seq"] for entry in spooled_entries(directory)] == [2]

    done = deliver_leftovers(directory, store)

    assert done.rows == {(PROJECT, EXPERIMENT, "r2")}
    assert done.written.new_rows == 1
    assert sorted(latest(store)) == ["r2"]
    assert spool_files(directory) == []

    # A spool whose every entry was acknowledged removes its file when it closes.
    delivered = Spool(directory, "session-2")
    seq = append(delivered, store, row("r4"))
    delivered.ack([seq])
    assert delivered.pending() == []
    delivered.close()
    assert spool_files(directory) == []


def test_a_file_locked_by_a_live_spool_is_skipped(tmp_path: Path, store: SQLiteStore) -> None:
    directory = tmp_path / "spool"
    live = Spool(directory, "live-1")
    doc = row("r1")
    append(live, store, doc)

    done = deliver_leftovers(directory, store)

    assert (done.files, done.rows, done.errors) == (0, set(), [])
    assert spool_files(directory) == [live.path]
    assert [entry.seq for entry in live.pending()] == [1]  # nobody acknowledged it
    assert store.list_experiments() == []

    live.close()  # the session ends with its entry undelivered: now it is a leftover
    done = deliver_leftovers(directory, store)
    assert done.rows == {(PROJECT, EXPERIMENT, "r1")}
    assert latest(store)["r1"].version_id == doc["version_id"]
    assert spool_files(directory) == []


def test_redelivery_is_idempotent(tmp_path: Path, store: SQLiteStore) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory, "session-1")
    v1, other, v2 = row("r1"), row("r2"), row("r1", "attempt-2")
    append(spool, store, v1, other)
    append(spool, store, v2)  # a later version of r1 in the same file
    spool.close()
    copy = tmp_path / "copy.jsonl"
    shutil.copyfile(spool.path, copy)

    done = deliver_leftovers(directory, store)
    assert (done.written.new_rows, done.written.updated_rows, done.written.duplicate_rows) == (
        2,
        1,
        0,
    )
    experiment = store.get_experiment(EXPERIMENT, PROJECT)
    assert [v.version_id for v in store.history(experiment.id, "r1")] == [
        v1["version_id"],
        v2["version_id"],
    ]
    spans_before = store.list_spans(experiment.id)
    assert len(spans_before) == 3

    # The same file again (a delivery whose acks were lost): nothing new is written.
    shutil.copyfile(copy, spool.path)
    again = deliver_leftovers(directory, store)

    assert again.errors == []
    assert (again.written.new_rows, again.written.updated_rows) == (0, 0)
    assert again.written.duplicate_rows == 3
    assert [v.version_id for v in store.history(experiment.id, "r1")] == [
        v1["version_id"],
        v2["version_id"],
    ]
    assert [v.version for v in store.history(experiment.id, "r2")] == [1]
    assert latest(store)["r1"].version_id == v2["version_id"]  # the old one is not latest again
    assert store.list_spans(experiment.id) == spans_before
    assert spool_files(directory) == []


def test_a_store_that_refuses_leaves_the_spool_file_whole(
    tmp_path: Path, store: SQLiteStore
) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory, "session-1")
    doc = row("r1")
    append(spool, store, doc)
    spool.close()
    content = spool.path.read_bytes()
    refusing = SQLiteStore(store.path)
    refusing.close()  # every call now fails with a StoreError

    done = deliver_leftovers(directory, refusing)

    assert len(done.errors) == 1
    assert done.rows == set()
    assert spool.path.read_bytes() == content  # nothing acknowledged

    done = deliver_leftovers(directory, store)
    assert done.rows == {(PROJECT, EXPERIMENT, "r1")}
    assert spool_files(directory) == []


def test_an_ack_written_after_a_torn_line_is_kept(tmp_path: Path, store: SQLiteStore) -> None:
    directory = tmp_path / "spool"
    spool = Spool(directory, "killed-1")
    mine = row("r1")
    append(spool, store, mine)
    # An entry for another store keeps the file after this store's entries are delivered.
    spool.append(
        store="sqlite:////elsewhere/other.db",
        project=PROJECT,
        experiment=EXPERIMENT,
        rows=[row("r9")],
        spans=[],
    )
    with open(spool.path, "ab") as file:
        file.write(b'{"seq":3,"store":"')  # killed mid-write
    spool.close()

    first = deliver_leftovers(directory, store)
    assert first.rows == {(PROJECT, EXPERIMENT, "r1")}
    assert [entry["rows"][0]["row_id"] for entry in spooled_entries(directory)] == ["r9"]

    second = deliver_leftovers(directory, store)
    assert second.rows == set()
    assert second.written.duplicate_rows == 0


def test_flush_delivers_to_the_same_store_file_however_it_is_named(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    (tmp_path / "sub").mkdir()
    spool_dir = tmp_path / ".evalrows" / "spool"
    spool = Spool(spool_dir, "session-1")
    spool.append(
        store=f"sqlite:///{db}",  # how a session names the store it could not reach
        project=PROJECT,
        experiment=EXPERIMENT,
        rows=[row("r1")],
        spans=[],
    )
    spool.close()

    flush = evalrows("flush", "--store", "sub/../store.db", "--spool", spool_dir, cwd=tmp_path)

    assert flush.returncode == 0, flush.stderr
    assert f"delivered 1 rows to experiment '{EXPERIMENT}' (project '{PROJECT}')" in (
        flush.stdout.splitlines()
    )
    assert spool_files(spool_dir) == []


class _FullDisk:
    """A spool file that takes ``room`` more bytes, then fails as a full disk does."""

    def __init__(self, file: Any, room: int) -> None:
        self.file = file
        self.room = room

    def write(self, data: memoryview) -> int:
        if self.room <= 0:
            raise OSError(28, "No space left on device")
        taken = min(len(data), self.room)
        self.room -= taken
        return int(self.file.write(data[:taken]))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)


def test_an_entry_after_a_torn_write_is_still_read(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "session")
    entry = {"store": "s", "project": "p", "experiment": "e", "spans": []}
    spool.append(rows=[{"row_id": "first"}], **entry)
    real = spool._file
    spool._file = _FullDisk(real, room=10)  # type: ignore[assignment]
    with pytest.raises(OSError):
        spool.append(rows=[{"row_id": "torn"}], **entry)
    spool._file = real
    spool.append(rows=[{"row_id": "after"}], **entry)
    batches, unreadable = read_spool(spool.path)
    assert [batch.rows[0]["row_id"] for batch in batches] == ["first", "after"]
    assert unreadable == 1
    spool.close()
