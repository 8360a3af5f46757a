"""The local spool: every row and its spans are written here before the store sees them.

One JSON-lines file per writing process (``<attempt>-<pid>.jsonl``): a line per row (written
by the test's thread as the row finishes, so it survives the process being killed), then an
``acks`` line per batch the store has taken. A process holds an exclusive lock on its own file, so
another session can tell a live file from one a dead or failed session left, and deliver the
latter. Files whose every batch is acknowledged are removed; a long session truncates its file
whenever everything in it has been delivered, so the spool stays bounded.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pydantic_core

from ..core.records import Attempt, RowDoc, SpanDoc, WriteResult
from ..errors import StoreError
from ..store.base import Store

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock, files are never shared
    fcntl = None  # type: ignore[assignment]

# Truncate a fully delivered spool file once it grows past this.
_TRUNCATE_BYTES = 16 * 1024 * 1024


@dataclass
class SpooledBatch:
    seq: int
    store: str
    project: str
    experiment: str
    rows: list[RowDoc]
    spans: list[SpanDoc]
    # A session's attempt record, spooled when the store could not take it.
    attempt: dict[str, Any] | None = None
    # Rows whose stale spans are to be removed once their rows are delivered.
    cleanup: list[str] | None = None

    @property
    def is_data(self) -> bool:
        """Rows and spans only: neither an attempt record nor a clean-up."""
        return self.attempt is None and self.cleanup is None


class Spool:
    """This process's spool file. Thread-safe: tests append, the writer acknowledges."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{name}.jsonl"
        while True:
            # Unbuffered: each entry is one write() the moment it is made, with no flush.
            self._file: IO[bytes] = open(self.path, "ab", buffering=0)  # noqa: SIM115
            _lock(self._file, blocking=True)
            # Another session delivering leftovers may have taken the new, empty file for a
            # dead one and removed it between our open and our lock: then open it again.
            if _same_file(self._file, self.path):
                break
            self._file.close()
        self._seq = 0
        self._mutex = threading.Lock()
        self.unacked: set[int] = set()
        # A write that failed part way (a full disk) left a torn line behind.
        self._torn = False

    def append(
        self,
        *,
        store: str,
        project: str,
        experiment: str,
        rows: list[RowDoc],
        spans: list[SpanDoc],
        attempt: dict[str, Any] | None = None,
        cleanup: list[str] | None = None,
    ) -> int:
        """Write an entry so that it survives this process being killed; return its number.
        Raises ValueError, writing nothing, when the entry cannot be serialized."""
        entry: dict[str, Any] = {"rows": rows, "spans": spans}
        if attempt is not None:
            entry["attempt"] = attempt
        if cleanup is not None:
            entry["cleanup"] = cleanup
        return self.append_to(entry_head(store, project, experiment), entry)

    def append_to(self, head: bytes, entry: dict[str, Any]) -> int:
        """``append`` for a caller that made the entry's ``head`` (``entry_head``) once: the
        per-row path of a session, whose every entry names the same store and experiment."""
        body = pydantic_core.to_json(entry)  # ValueError: nothing written
        with self._mutex:
            self._seq += 1
            self._write(b"".join((head, body[1:-1], b',"seq":%d}\n' % self._seq)))
            self.unacked.add(self._seq)
            return self._seq

    def _write(self, line: bytes) -> None:
        """Append one line (under the mutex). An unbuffered write may take part of it: the
        rest follows. After a torn line the next one starts on a line of its own, so that
        only the torn one is unreadable."""
        view = memoryview(b"\n" + line if self._torn else line)
        written = 0
        try:
            while view:
                count = self._file.write(view)
                if count is None:  # pragma: no cover - only non-blocking files write nothing
                    continue
                written += count
                view = view[count:]
        except OSError:
            self._torn = self._torn or written > 0
            raise
        self._torn = False

    def ack(self, seqs: list[int]) -> None:
        """Mark entries as delivered: the store has them."""
        with self._mutex:
            self.unacked.difference_update(seqs)
            if not self.unacked and self._file.tell() > _TRUNCATE_BYTES:
                self._file.truncate(0)
                self._file.seek(0)
                return
            self._write(_acks_line(seqs))

    def pending(self) -> list[SpooledBatch]:
        """The entries of this file the store does not have yet, oldest first."""
        with self._mutex:
            if not self.unacked:
                return []
            unacked = set(self.unacked)
        batches, _ = read_spool(self.path)
        return [batch for batch in batches if batch.seq in unacked]

    def close(self) -> None:
        """Release the file; remove it when the store has everything in it."""
        with self._mutex:
            if self._file.closed:
                return
            if not self.unacked:
                with suppress(OSError):
                    self.path.unlink()
            self._file.close()  # closing releases the lock


def entry_head(store: str, project: str, experiment: str) -> bytes:
    """The start of a spool line: which store, project and experiment the entry is for."""
    names = pydantic_core.to_json({"store": store, "project": project, "experiment": experiment})
    return names[:-1] + b","


def _open_existing(path: Path) -> IO[bytes] | None:
    """Open another session's spool file for appending acks, never creating it: a file its
    session removed a moment ago must stay removed."""
    try:
        return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND), "ab")
    except OSError:
        return None


def _same_file(file: IO[bytes], path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(file.fileno()), os.stat(path))
    except OSError:
        return False


def _acks_line(seqs: list[int]) -> bytes:
    return b'{"acks":[' + b",".join(b"%d" % seq for seq in seqs) + b"]}\n"


def _lock(file: IO[bytes], *, blocking: bool) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def read_spool(path: Path) -> tuple[list[SpooledBatch], int]:
    """The batches not acknowledged in a spool file, and how many lines could not be read
    (a torn last line: a kill mid-write)."""
    batches: dict[int, dict[str, Any]] = {}
    unreadable = 0
    with open(path, "rb") as file:
        for line in file:
            try:
                entry = json.loads(line)
            except ValueError:
                unreadable += 1
                continue
            if not isinstance(entry, dict):
                unreadable += 1
            elif "acks" in entry:
                for seq in entry["acks"]:
                    batches.pop(seq, None)
            elif "seq" in entry:
                batches[entry["seq"]] = entry
    found = [
        SpooledBatch(
            seq=seq,
            store=entry["store"],
            project=entry["project"],
            experiment=entry["experiment"],
            rows=entry["rows"],
            spans=entry["spans"],
            attempt=entry.get("attempt"),
            cleanup=entry.get("cleanup"),
        )
        for seq, entry in sorted(batches.items())
    ]
    return found, unreadable


def _unreadable_note(path: Path, count: int) -> str:
    return (
        f"spool file {path}: {count} unreadable line(s) skipped (a write cut short by a "
        "kill, or a damaged file); what they held cannot be delivered"
    )


@dataclass
class Pending:
    """What the spool still holds for one store."""

    rows: int = 0
    row_ids: set[tuple[str, str, str]] = field(default_factory=set)  # (project, experiment, row)
    cleanups: int = 0  # rows whose stale-span clean-up is still to be done
    problems: list[str] = field(default_factory=list)


def pending_in(directory: Path, store: str, *, own: Spool | None = None) -> Pending:
    """Count what the spool holds for ``store``: in ``own`` (this process's file, read only
    when it holds anything undelivered) and in every file no live session holds."""
    pending = Pending()
    if not directory.is_dir():
        return pending
    # This process's own file is read back only when it holds anything undelivered.
    for entry in own.pending() if own is not None else ():
        _count_pending(pending, entry, store)
    for path, file in _dead_files(directory, skip=own.path if own is not None else None):
        with file:  # a live session's file is not listed: its own session counts it
            entries, unreadable = read_spool(path)
        if unreadable:
            pending.problems.append(_unreadable_note(path, unreadable))
        for entry in entries:
            _count_pending(pending, entry, store)
    return pending


@dataclass
class Delivered:
    """What delivering left-over spool files did."""

    written: WriteResult = field(default_factory=WriteResult)
    # What rows of ``current_attempt`` (an xdist worker's spool file) did.
    own_written: WriteResult = field(default_factory=WriteResult)
    rows: set[tuple[str, str, str]] = field(default_factory=set)  # (project, experiment, row)
    files: int = 0
    errors: list[str] = field(default_factory=list)
    other_stores: set[str] = field(default_factory=set)  # entries left for other stores
    cleaned: int = 0  # stale spans removed by spooled clean-ups
    problems: list[str] = field(default_factory=list)  # unreadable lines, said once


def _count_pending(pending: Pending, entry: SpooledBatch, store: str) -> None:
    if entry.store == store:
        pending.rows += len(entry.rows)
        pending.row_ids.update(
            (entry.project, entry.experiment, row["row_id"]) for row in entry.rows
        )
        pending.cleanups += len(entry.cleanup or ())


def deliver_leftovers(
    directory: Path,
    store: Store,
    *,
    skip: Path | None = None,
    on_rows: Callable[[list[RowDoc]], None] | None = None,
    current_attempt: str | None = None,
) -> Delivered:
    """Deliver what earlier sessions left in ``directory`` for this ``store``, then the
    stale-span clean-ups they could not finish.

    Files that a live session holds are skipped, as is ``skip`` (this process's own file).
    Delivery is idempotent: a row version the store already has is not written twice, and
    rows of attempts other than ``current_attempt`` are written as late versions (a newer
    stored execution stays the latest). ``on_rows`` sees every delivered batch of rows.
    """
    done = Delivered()
    if not directory.is_dir():
        return done
    experiments: dict[tuple[str, str], str] = {}

    def experiment_id(entry: SpooledBatch) -> str:
        key = (entry.project, entry.experiment)
        if key not in experiments:
            experiments[key] = store.get_or_create_experiment(*key).id
        return experiments[key]

    for path, file in _dead_files(directory, skip=skip):
        with file:
            entries, unreadable = read_spool(path)
            if unreadable:
                done.problems.append(_unreadable_note(path, unreadable))
            mine = [entry for entry in entries if entry.store == store.display_url]
            done.other_stores.update(e.store for e in entries if e.store != store.display_url)
            if not _ends_with_newline(path):
                file.write(b"\n")  # a torn last line (a kill mid-write): acks go after it
            acked: set[int] = set()
            try:
                data = [entry for entry in mine if entry.cleanup is None]
                for chunk in chunks(data):
                    experiment = experiment_id(chunk[0])
                    rows = [row for entry in chunk for row in entry.rows]
                    spans = [span for entry in chunk for span in entry.spans]
                    late = any(row.get("attempt_id") != current_attempt for row in rows)
                    result = store.write(experiment, rows, spans, late=late)
                    if late:
                        done.written += result
                    else:
                        done.own_written += result
                    for entry in chunk:
                        if entry.attempt is not None:
                            record = {**entry.attempt, "experiment_id": experiment}
                            store.save_attempt(Attempt(**record))
                    _ack(file, chunk, acked)
                    done.rows.update(
                        (chunk[0].project, chunk[0].experiment, row["row_id"]) for row in rows
                    )
                    if on_rows is not None:
                        on_rows(rows)
                for entry in mine:
                    if entry.cleanup is not None:
                        removed = store.delete_stale_spans(experiment_id(entry), entry.cleanup)
                        done.cleaned += len(removed)
                        _ack(file, [entry], acked)
            except StoreError as exc:
                done.errors.append(str(exc))
                return done
            done.files += 1
            # An unreadable line is said once (in ``problems``) and goes with its file.
            if len(mine) == len(entries):
                with suppress(OSError):
                    path.unlink()
    return done


def _dead_files(directory: Path, *, skip: Path | None) -> Iterator[tuple[Path, IO[bytes]]]:
    """The spool files in ``directory`` that no live session holds (but ``skip``), each open
    for appending acks and locked; the caller closes it."""
    for path in sorted(directory.glob("*.jsonl")):
        if path == skip:
            continue
        file = _open_existing(path)
        if file is None:
            continue
        if not _lock(file, blocking=False):
            file.close()  # a live session's file
            continue
        yield path, file


def _ack(file: IO[bytes], entries: list[SpooledBatch], acked: set[int]) -> None:
    file.write(_acks_line([entry.seq for entry in entries]))
    file.flush()
    acked.update(entry.seq for entry in entries)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        if file.tell() == 0:
            return True
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


def chunks(entries: list[SpooledBatch], size: int = 500) -> Iterator[list[SpooledBatch]]:
    """Consecutive entries for one experiment, at most ``size`` at a time."""
    chunk: list[SpooledBatch] = []
    for entry in entries:
        if chunk and (
            len(chunk) >= size
            or (entry.project, entry.experiment) != (chunk[0].project, chunk[0].experiment)
        ):
            yield chunk
            chunk = []
        chunk.append(entry)
    if chunk:
        yield chunk


def default_spool_dir(anchor: Path) -> Path:
    """``.evalrows/spool`` under the project root: beside the default store, and usable
    when a store elsewhere is not."""
    return anchor / ".evalrows" / "spool"


def session_name(attempt_id: str) -> str:
    # Unique even when an attempt id is reused by a process with the same pid (a re-run CI
    # job in a container, where pytest is pid 1): never take over another session's file.
    return f"{attempt_id}-{os.getpid()}-{os.urandom(4).hex()}"
