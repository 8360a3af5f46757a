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
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pydantic_core

from ..core.records import RowDoc, SpanDoc
from ..core.values import storable_text

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
    # Judges' evaluations (as JSON) the store could not take, saved once their rows are.
    evaluations: list[dict[str, Any]] | None = None

    @property
    def is_data(self) -> bool:
        """Rows and spans only: neither an attempt record, a clean-up nor evaluations."""
        return self.attempt is None and self.cleanup is None and self.evaluations is None


class Spool:
    """This process's spool file. Thread-safe: tests append, the writer acknowledges."""

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{name}.jsonl"
        while True:
            # Unbuffered: each entry is one write() the moment it is made, with no flush.
            self._file: IO[bytes] = open(self.path, "ab", buffering=0)  # noqa: SIM115
            lock_file(self._file, blocking=True)
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
            self._write(acks_line(seqs))

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
    names = {"store": store, "project": project, "experiment": experiment}
    safe = {key: spooled_text(value) for key, value in names.items()}
    return pydantic_core.to_json(safe)[:-1] + b","


def spooled_text(name: str) -> str:
    """A name as the spool keeps it: a store's path may hold bytes that are not UTF-8 (a
    folder's name), escaped as every stored text is; compare with names read back in this
    form."""
    return storable_text(name)


def open_existing(path: Path) -> IO[bytes] | None:
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


def acks_line(seqs: list[int]) -> bytes:
    return b'{"acks":[' + b",".join(b"%d" % seq for seq in seqs) + b"]}\n"


def lock_file(file: IO[bytes], *, blocking: bool) -> bool:
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
            evaluations=entry.get("evaluations"),
        )
        for seq, entry in sorted(batches.items())
    ]
    return found, unreadable


def unreadable_note(path: Path, count: int) -> str:
    return (
        f"spool file {path}: {count} unreadable line(s) skipped (a write cut short by a "
        "kill, or a damaged file); what they held cannot be delivered"
    )


def default_spool_dir(anchor: Path) -> Path:
    """``.evalrows/spool`` under the project root: beside the default store, and usable
    when a store elsewhere is not."""
    return anchor / ".evalrows" / "spool"


def session_name(attempt_id: str) -> str:
    # Unique even when an attempt id is reused by a process with the same pid (a re-run CI
    # job in a container, where pytest is pid 1): never take over another session's file.
    return f"{attempt_id}-{os.getpid()}-{os.urandom(4).hex()}"
