"""Getting rows to the store without ever dropping one.

Every unit goes to the local spool first, then to the store, from one background thread.
When the store cannot be reached or refuses a write, the session stops paying for retries (a
circuit breaker): units keep being spooled, and the store is probed now and then with what the
spool holds; what still fails at the end stays in the spool for the next session or
``evalrows flush``. A unit that cannot even be serialized is counted and reported, never
dropped in silence, and never stops the writer.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.records import Attempt, Experiment, RowDoc, SpanDoc, WriteResult
from ..core.values import json_value
from ..errors import StoreAuthError, StoreError
from ..store.base import Store
from .spool import Spool, chunks, deliver_leftovers, pending_in
from .writer import BatchWriter

# While the store is down, how often the writer tries it again with what the spool holds.
PROBE_SECONDS = 2.0

# Stores someone else made and owns (a ``pytest_evalrows_make_store`` hook returned them), by
# id: the delivery uses them and leaves them open. Weak values, so an id is never reused.
_lent: weakref.WeakValueDictionary[int, Store] = weakref.WeakValueDictionary()


def lend(store: Store) -> None:
    """Mark a store that its maker keeps: the delivery that uses it will not close it."""
    _lent[id(store)] = store


def is_lent(store: Store) -> bool:
    return _lent.get(id(store)) is store


@dataclass
class Unit:
    """What is written together: a row version and the spans of its execution."""

    row: RowDoc | None
    spans: list[SpanDoc] = field(default_factory=list)


@dataclass
class Totals:
    """What one process recorded and delivered; the xdist controller merges its workers'."""

    written: WriteResult = field(default_factory=WriteResult)
    delivered_rows: set[str] = field(default_factory=set)
    # Rows still in the spool at the end, counted from the spool itself by the process that
    # ends the session (the xdist controller, after it delivered what its workers left).
    undelivered_rows: int = 0
    # Rows that could be neither stored nor spooled: (row id, why).
    lost_rows: list[tuple[str, str]] = field(default_factory=list)
    # Rows whose stale-span clean-up waits in the spool (from this or earlier sessions).
    cleanup_pending: int = 0
    leftover_rows: int = 0  # rows of earlier sessions delivered from the spool
    own_leftovers: int = 0  # this attempt's rows delivered from a worker's spool file
    reruns: int = 0  # executions a rerun plugin repeated: they leave stale spans
    errors: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    scores: dict[str, list[float]] = field(default_factory=dict)  # name -> [sum, count]
    resumed: int = 0
    # Requests an HTTP store made, by endpoint: a worker's reach the controller's summary.
    requests: Counter[str] = field(default_factory=Counter)

    def add_scores(self, scores: dict[str, float]) -> None:
        for name, value in scores.items():
            total = self.scores.setdefault(name, [0.0, 0])
            total[0] += value
            total[1] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "written": asdict(self.written),
            "delivered_rows": sorted(self.delivered_rows),
            "lost_rows": self.lost_rows,
            "leftover_rows": self.leftover_rows,
            "errors": self.errors,
            "reruns": self.reruns,
            "resumed": self.resumed,
            "requests": dict(self.requests),
        }

    def merge(self, data: dict[str, Any]) -> None:
        """Add a worker's totals. Statuses and scores are not merged: the controller counts
        them from the reports it sees, which include the rows of a worker that crashed.
        Undelivered rows neither: the controller counts what is left in the spool at the end."""
        self.written += WriteResult(**data["written"])
        self.delivered_rows.update(data["delivered_rows"])
        self.lost_rows.extend((row_id, why) for row_id, why in data["lost_rows"])
        self.leftover_rows += data["leftover_rows"]
        self.errors.extend(data["errors"])
        self.reruns += data["reruns"]
        # Every worker collects the whole suite and resumes the same rows.
        self.resumed = max(self.resumed, data["resumed"])
        self.requests.update(data["requests"])


class Delivery:
    """The store, the spool and the writer thread of one process."""

    def __init__(
        self,
        *,
        open_store: Callable[[], Store],
        store_display: str,
        project: str,
        experiment: str,
        spool_dir: Path,
        spool_name: str,
        totals: Totals,
        attempt_id: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.attempt_id = attempt_id
        self._open_store = open_store
        self.store_display = store_display
        self.project = project
        self.experiment_name = experiment
        self.spool_dir = spool_dir
        self.spool_name = spool_name
        self.totals = totals
        self.store: Store | None = None
        self.experiment: Experiment | None = None
        self.store_error: str | None = None
        self.spool: Spool | None = None
        self.writer: BatchWriter[tuple[int | None, Unit]] | None = None
        self._clock = clock
        self._down_since: float | None = None
        self._last_probe = 0.0
        self._reached = False  # whether the store answered at all in this session
        self._unspooled: list[Unit] = []  # only when the spool itself cannot be written
        # Called with the rows of this attempt delivered from another process's spool file.
        self.on_own_leftovers: Callable[[list[RowDoc]], None] | None = None

    @property
    def store_down(self) -> bool:
        return self._down_since is not None

    # -- start ---------------------------------------------------------------------------

    def start(
        self, *, git_commit: str | None, git_branch: str | None, leftovers: bool = True
    ) -> None:
        try:
            self.spool = Spool(self.spool_dir, self.spool_name)
        except OSError as exc:
            self.totals.errors.append(f"cannot write the spool in {self.spool_dir}: {exc}")
        self.connect(git_commit=git_commit, git_branch=git_branch)
        if leftovers and self.store is not None:
            self.deliver_leftovers()
        self.writer = BatchWriter(self._deliver)

    def connect(self, *, git_commit: str | None = None, git_branch: str | None = None) -> bool:
        """Open the store and create-or-get the experiment; False (and why) when it fails."""
        if self.experiment is not None:
            return True
        try:
            if self.store is None:
                self.store = self._open_store()
                self.store_display = self.store.display_url or self.store_display
            self.experiment = self.store.get_or_create_experiment(
                self.project, self.experiment_name, git_commit=git_commit, git_branch=git_branch
            )
        except StoreAuthError:
            self._mark_down()
            raise
        except StoreError as exc:
            self.store_error = str(exc)
            self._mark_down()
            return False
        self._reached = True
        self.store_error = None
        return True

    def _reconnect(self) -> bool:
        try:
            return self.connect()
        except StoreAuthError as exc:
            self.totals.errors.append(str(exc))
            return False

    def deliver_leftovers(self) -> None:
        """Deliver what earlier sessions (or this session's workers) left in the spool."""
        if self.store is None or self.store_down:
            return
        own = self.spool.path if self.spool is not None else None

        def count(rows: list[RowDoc]) -> None:
            mine = [row for row in rows if row["attempt_id"] == self.attempt_id]
            self.totals.own_leftovers += len(mine)
            self.totals.leftover_rows += len(rows) - len(mine)
            if mine and self.on_own_leftovers is not None:
                self.on_own_leftovers(mine)

        done = deliver_leftovers(
            self.spool_dir, self.store, skip=own, on_rows=count, current_attempt=self.attempt_id
        )
        self.totals.errors.extend(done.errors + done.problems)
        if done.errors:
            self._mark_down()
        # This attempt's rows count as written by it; earlier sessions' rows do not, but a
        # late version that did not become the latest is said.
        self.totals.written += done.own_written
        self.totals.written.superseded_rows += done.written.superseded_rows
        self.totals.delivered_rows.update(
            row_id
            for project, experiment, row_id in done.rows
            if (project, experiment) == (self.project, self.experiment_name)
        )

    # -- while tests run -----------------------------------------------------------------

    def send(self, unit: Unit) -> None:
        """Spool the unit on the caller's thread (it survives a kill from here on), then
        queue it for the store."""
        try:
            seq = self._spool(unit)
        except _Unserializable:
            return  # counted and reported
        entry = (seq, unit)
        if self.writer is None or self.writer.closed:
            self._deliver([entry])
        else:
            self.writer.put(entry)

    def _spool(self, unit: Unit) -> int | None:
        """The unit's spool number; None when the spool cannot be written (the unit is kept
        in memory instead). Raises ``_Unserializable`` for a unit that cannot be serialized
        even made JSON-safe (counted as lost)."""
        if self.spool is None:
            return None
        rows = [unit.row] if unit.row is not None else []
        for attempt in range(2):
            try:
                return self.spool.append(
                    store=self.store_display,
                    project=self.project,
                    experiment=self.experiment_name,
                    rows=rows,
                    spans=unit.spans,
                )
            except OSError as exc:
                self.totals.errors.append(f"cannot write the spool {self.spool.path}: {exc}")
                return None
            except ValueError as exc:  # not serializable: a hook put something odd in
                if attempt == 0:
                    storable(unit)
                    rows = [unit.row] if unit.row is not None else []
                    continue
                self._lose(unit, f"cannot be serialized: {exc}")
                raise _Unserializable from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _lose(self, unit: Unit, why: str) -> None:
        if unit.row is not None:
            self.totals.lost_rows.append((unit.row["row_id"], why))
        else:
            self.totals.errors.append(f"a span under no row {why}")

    def _deliver(self, batch: list[tuple[int | None, Unit]]) -> None:
        """Write a batch to the store (runs on the writer thread). Never raises."""
        if self.store_down:
            if self._clock() - self._last_probe >= PROBE_SECONDS:
                self._probe(batch)
            else:
                self._unspooled.extend(unit for seq, unit in batch if seq is None)
            return
        if self.store is None or self.experiment is None:
            self._unspooled.extend(unit for seq, unit in batch if seq is None)
            return
        self._write([seq for seq, _ in batch], [unit for _, unit in batch])

    def _write(self, seqs: list[int | None], units: list[Unit]) -> bool:
        """Write units in one transaction; acknowledge their spool entries. False (and the
        store marked down) when the store failed."""
        assert self.store is not None and self.experiment is not None
        rows = [unit.row for unit in units if unit.row is not None]
        spans = [span for unit in units for span in unit.spans]
        try:
            result = self.store.write(self.experiment.id, rows, spans)
        except StoreError as exc:
            self._mark_down()
            self.totals.errors.append(str(exc))
            self._unspooled.extend(
                unit for seq, unit in zip(seqs, units, strict=True) if seq is None
            )
            return False
        except Exception as exc:  # a unit the store cannot take: find it, keep the others
            if len(units) == 1:
                self._lose(units[0], f"cannot be stored: {exc!r}")
                self.ack([seq for seq in seqs if seq is not None])
                return True
            half = len(units) // 2
            if not self._write(seqs[:half], units[:half]):
                rest = zip(seqs[half:], units[half:], strict=True)
                self._unspooled.extend(unit for seq, unit in rest if seq is None)
                return False
            return self._write(seqs[half:], units[half:])
        self.ack([seq for seq in seqs if seq is not None])
        self.totals.written += result
        self.totals.delivered_rows.update(row["row_id"] for row in rows)
        return True

    def ack(self, seqs: list[int]) -> None:
        if seqs and self.spool is not None:
            self.spool.ack(seqs)

    def _mark_down(self) -> None:
        """The store failed after its retries: from now on each try is a single request."""
        if self._down_since is None:
            self._down_since = self._clock()
        self._last_probe = self._clock()
        if self.store is not None:
            self.store.retrying = False

    def _mark_up(self) -> None:
        self._down_since = None
        self.store_error = None
        self._reached = True
        assert self.store is not None
        self.store.retrying = True

    def _probe(self, batch: Sequence[tuple[int | None, Unit]] = ()) -> bool:
        """Try the store again: with ``batch`` first (one small write, while the store is down
        a single request), then, once it is back, with everything this process has not
        delivered yet (read back from the spool only then)."""
        self._last_probe = self._clock()
        if not self._reconnect():
            self._unspooled.extend(unit for seq, unit in batch if seq is None)
            return False
        if batch and not self._write([seq for seq, _ in batch], [unit for _, unit in batch]):
            return False
        self._mark_up()
        pending = self.spool.pending() if self.spool is not None else []
        for chunk in chunks([entry for entry in pending if entry.is_data]):
            # A spooled entry is one unit (what ``send`` spooled), already serialized once.
            units = [Unit(entry.rows[0] if entry.rows else None, entry.spans) for entry in chunk]
            if not self._write([entry.seq for entry in chunk], units):
                return False
        if self._unspooled:
            units, self._unspooled = self._unspooled, []
            if not self._write([None] * len(units), units):
                return False
        return True

    # -- end -----------------------------------------------------------------------------

    def finish(self) -> None:
        """Deliver everything queued; try the store once more if it was down; keep the
        rest spooled. What could be neither stored nor spooled is lost, and counted."""
        if self.writer is not None:
            self.writer.close()
            if self.writer.crash is not None:
                self.totals.errors.append(f"the writer thread failed: {self.writer.crash!r}")
        unacked = self.spool is not None and bool(self.spool.unacked)
        if self.store_down or self.experiment is None or unacked or self._unspooled:
            if self._reached and self.store is not None:
                # A store that answered earlier in the session may be back in a moment (a
                # flap): the last try pays for its retries once. One never reached does not.
                self.store.retrying = True
            self._probe()
        for unit in self._unspooled:
            self._lose(unit, "could not be delivered, and the spool could not be written")
        self._unspooled = []

    def spool_cleanup(self, row_ids: Collection[str]) -> int | None:
        """Spool the stale-span clean-up of these rows before it runs, so that a clean-up
        that fails (or a session killed during it) is finished by a later session."""
        if self.spool is None:
            return None
        try:
            return self.spool.append(
                store=self.store_display,
                project=self.project,
                experiment=self.experiment_name,
                rows=[],
                spans=[],
                cleanup=sorted(row_ids),
            )
        except (OSError, ValueError) as exc:
            self.totals.errors.append(f"cannot write the spool {self.spool.path}: {exc}")
            return None

    def count_undelivered(self) -> set[str]:
        """Count the rows of this store still in the spool (this process's file and every
        file no live session holds: workers', earlier sessions'); the ids of this
        experiment's rows among them."""
        pending = pending_in(self.spool_dir, self.store_display, own=self.spool)
        self.totals.undelivered_rows = pending.rows
        self.totals.cleanup_pending = pending.cleanups
        self.totals.errors.extend(pending.problems)
        key = (self.project, self.experiment_name)
        return {row_id for *where, row_id in pending.row_ids if tuple(where) == key}

    def close_spool(self, unsaved_attempt: Attempt | None = None) -> None:
        """Release this process's spool file (removed when everything in it was delivered).
        An attempt the store could not take is kept there with the rows, for whichever session
        or ``evalrows flush`` delivers them."""
        if self.spool is None:
            return
        if unsaved_attempt is not None:
            try:
                self.spool.append(
                    store=self.store_display,
                    project=self.project,
                    experiment=self.experiment_name,
                    rows=[],
                    spans=[],
                    attempt=asdict(unsaved_attempt),
                )
            except (OSError, ValueError) as exc:
                self.totals.errors.append(f"cannot write the spool {self.spool.path}: {exc}")
        self.spool.close()

    def close(self) -> None:
        """Close the store if this delivery opened it; one a hook lent stays open for its
        owner, who may still read it (a ``MemoryStore`` in a test)."""
        if self.store is not None:
            if not is_lent(self.store):
                self.store.close()
            self.store = None


class _Unserializable(Exception):
    """A unit that not even its JSON-safe copy could be serialized."""


def storable(unit: Unit) -> None:
    """Make every field of the unit's row and spans JSON-safe, in place."""
    if unit.row is not None:
        unit.row = {key: json_value(value)[0] for key, value in unit.row.items()}
    unit.spans = [{key: json_value(value)[0] for key, value in span.items()} for span in unit.spans]
