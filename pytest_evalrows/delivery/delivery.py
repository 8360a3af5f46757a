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
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from ..core.records import Attempt, Experiment, RowDoc
from ..errors import StoreAuthError, StoreError
from ..store.base import Store
from .breaker import Breaker
from .leftovers import chunks, deliver_leftovers
from .own_spool import OwnSpool, Unserializable, lose
from .totals import Totals, Unit
from .writer import BatchWriter

# Totals and Unit are what a delivery is made with and sends: importable from here too.
__all__ = ["Delivery", "Totals", "Unit", "is_lent", "lend"]

# Stores someone else made and owns (a ``pytest_evalrows_make_store`` hook returned them), by
# id: the delivery uses them and leaves them open. Weak values, so an id is never reused.
_lent: weakref.WeakValueDictionary[int, Store] = weakref.WeakValueDictionary()


def lend(store: Store) -> None:
    """Mark a store that its maker keeps: the delivery that uses it will not close it."""
    _lent[id(store)] = store


def is_lent(store: Store) -> bool:
    return _lent.get(id(store)) is store


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
        self.spool: OwnSpool | None = None
        self.writer: BatchWriter[tuple[int | None, Unit]] | None = None
        self.breaker = Breaker(clock)
        self._reached = False  # whether the store answered at all in this session
        self._unspooled: list[Unit] = []  # only when the spool itself cannot be written
        # Called with the rows of this attempt delivered from another process's spool file.
        self.on_own_leftovers: Callable[[list[RowDoc]], None] | None = None

    @property
    def store_down(self) -> bool:
        return self.breaker.open

    # -- start ---------------------------------------------------------------------------

    def start(
        self, *, git_commit: str | None, git_branch: str | None, leftovers: bool = True
    ) -> None:
        self.spool = OwnSpool(
            self.spool_dir,
            self.spool_name,
            store=self.store_display,
            project=self.project,
            experiment=self.experiment_name,
            totals=self.totals,
        )
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
                if self.spool is not None:
                    self.spool.name_store(self.store_display)
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
        done = deliver_leftovers(
            self.spool_dir,
            self.store,
            skip=own,
            on_rows=self._leftover_rows,
            current_attempt=self.attempt_id,
        )
        self.totals.add_leftovers(done, self.project, self.experiment_name)
        if done.errors:
            self._mark_down()

    def _leftover_rows(self, rows: list[RowDoc]) -> None:
        mine = [row for row in rows if row["attempt_id"] == self.attempt_id]
        self.totals.own_leftovers += len(mine)
        self.totals.leftover_rows += len(rows) - len(mine)
        if mine and self.on_own_leftovers is not None:
            self.on_own_leftovers(mine)

    # -- while tests run -----------------------------------------------------------------

    def send(self, unit: Unit) -> None:
        """Spool the unit on the caller's thread (it survives a kill from here on), then
        queue it for the store."""
        try:
            seq = self.spool.add(unit) if self.spool is not None else None
        except Unserializable:
            return  # counted and reported
        writer = self.writer
        if writer is None or writer.closed:
            self._deliver([(seq, unit)])
        else:
            writer.put((seq, unit))

    def _deliver(self, batch: list[tuple[int | None, Unit]]) -> None:
        """Write a batch to the store (runs on the writer thread). Never raises."""
        if self.store_down and self.breaker.probe_due():
            self._probe(batch)
        elif self.store_down or self.store is None or self.experiment is None:
            self._unspooled.extend(unit for seq, unit in batch if seq is None)
        else:
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
                lose(self.totals, units[0], f"cannot be stored: {exc!r}")
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
        if self.spool is not None:
            self.spool.ack(seqs)

    def _mark_down(self) -> None:
        """The store failed after its retries: from now on each try is a single request."""
        self.breaker.trip()
        if self.store is not None:
            self.store.retrying = False

    def _probe(self, batch: Sequence[tuple[int | None, Unit]] = ()) -> bool:
        """Try the store again: with ``batch`` first (one small write, while the store is down
        a single request), then, once it is back, with everything this process has not
        delivered yet (read back from the spool only then)."""
        self.breaker.probing()
        if not self._reconnect():
            self._unspooled.extend(unit for seq, unit in batch if seq is None)
            return False
        if batch and not self._write([seq for seq, _ in batch], [unit for _, unit in batch]):
            return False
        self.breaker.close()
        self.store_error = None
        self._reached = True
        assert self.store is not None
        self.store.retrying = True
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
        unacked = self.spool is not None and self.spool.holds_undelivered
        if self.store_down or self.experiment is None or unacked or self._unspooled:
            if self._reached and self.store is not None:
                # A store that answered earlier in the session may be back in a moment (a
                # flap): the last try pays for its retries once. One never reached does not.
                self.store.retrying = True
            self._probe()
        for unit in self._unspooled:
            lose(self.totals, unit, "could not be delivered, and the spool could not be written")
        self._unspooled = []

    def spool_cleanup(self, row_ids: Collection[str]) -> int | None:
        """Spool the stale-span clean-up of these rows before it runs, so that a clean-up
        that fails (or a session killed during it) is finished by a later session."""
        return self.spool.add_cleanup(row_ids) if self.spool is not None else None

    def count_undelivered(self) -> set[str]:
        """See ``OwnSpool.count_undelivered``."""
        return self.spool.count_undelivered() if self.spool is not None else set()

    def close_spool(self, unsaved_attempt: Attempt | None = None) -> None:
        """Release this process's spool file (removed when everything in it was delivered).
        An attempt the store could not take is kept there with the rows, for whichever session
        or ``evalrows flush`` delivers them."""
        if self.spool is None:
            return
        if unsaved_attempt is not None:
            self.spool.add_attempt(unsaved_attempt)
        self.spool.close()

    def close(self) -> None:
        """Close the store if this delivery opened it; one a hook lent stays open for its
        owner, who may still read it (a ``MemoryStore`` in a test)."""
        if self.store is not None:
            if not is_lent(self.store):
                self.store.close()
            self.store = None
