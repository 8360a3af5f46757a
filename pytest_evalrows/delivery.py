"""Getting rows to the store without ever dropping one.

Every batch goes to the local spool first, then to the store, from one background thread.
When the store cannot be reached or refuses a write, the session stops trying (each try could
cost a timeout), keeps spooling, and tries once more at the end; what still fails stays in the
spool for the next session or ``evalrows flush``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import StoreAuthError, StoreError
from .records import Attempt, Experiment, RowDoc, SpanDoc, WriteResult
from .spool import Spool, chunks, deliver_leftovers
from .store.base import Store
from .writer import BatchWriter


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
    undelivered_rows: int = 0
    leftover_rows: int = 0
    own_leftovers: int = 0  # this attempt's rows a crashed worker left in the spool
    reruns: int = 0  # executions a rerun plugin repeated: they leave stale spans
    errors: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    scores: dict[str, list[float]] = field(default_factory=dict)  # name -> [sum, count]
    resumed: int = 0

    def add_scores(self, scores: dict[str, float]) -> None:
        for name, value in scores.items():
            total = self.scores.setdefault(name, [0.0, 0])
            total[0] += value
            total[1] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "written": asdict(self.written),
            "delivered_rows": sorted(self.delivered_rows),
            "undelivered_rows": self.undelivered_rows,
            "leftover_rows": self.leftover_rows,
            "errors": self.errors,
            "statuses": dict(self.statuses),
            "scores": self.scores,
            "resumed": self.resumed,
            "reruns": self.reruns,
        }

    def merge(self, data: dict[str, Any]) -> None:
        written = WriteResult(**data["written"])
        self.written.certain = self.written.certain and written.certain
        self.written.new_rows += written.new_rows
        self.written.updated_rows += written.updated_rows
        self.written.duplicate_rows += written.duplicate_rows
        self.written.spans += written.spans
        self.delivered_rows.update(data["delivered_rows"])
        self.undelivered_rows += data["undelivered_rows"]
        self.leftover_rows += data["leftover_rows"]
        self.errors.extend(data["errors"])
        # Statuses are not merged: the controller counts them from the reports it sees,
        # which include the rows of a worker that crashed.
        for name, (total, count) in data["scores"].items():
            mine = self.scores.setdefault(name, [0.0, 0])
            mine[0] += total
            mine[1] += count
        self.reruns += data.get("reruns", 0)
        # Every worker collects the whole suite and resumes the same rows.
        self.resumed = max(self.resumed, data["resumed"])


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
        self._store_down = False
        self._unspooled: list[Unit] = []  # only when the spool itself cannot be written

    # -- start ---------------------------------------------------------------------------

    def start(self, *, git_commit: str | None, git_branch: str | None) -> None:
        try:
            self.spool = Spool(self.spool_dir, self.spool_name)
        except OSError as exc:
            self.totals.errors.append(f"cannot write the spool in {self.spool_dir}: {exc}")
        self.connect(git_commit=git_commit, git_branch=git_branch)
        if self.store is not None:
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
            self._store_down = True
            raise
        except StoreError as exc:
            self.store_error = str(exc)
            self._store_down = True
            return False
        self.store_error = None
        return True

    def _reconnect(self) -> bool:
        try:
            return self.connect()
        except StoreAuthError as exc:
            self.totals.errors.append(str(exc))
            return False

    def deliver_leftovers(self) -> None:
        """Deliver what earlier (or crashed) sessions left in the spool for this store."""
        if self.store is None:
            return
        own = self.spool.path if self.spool is not None else None

        def count(rows: list[RowDoc]) -> None:
            # Rows of this very attempt (an xdist worker that crashed) are this session's.
            for row in rows:
                if row["attempt_id"] == self.attempt_id:
                    self.totals.add_scores(row.get("scores") or {})
                    self.totals.own_leftovers += 1
                else:
                    self.totals.leftover_rows += 1

        done = deliver_leftovers(self.spool_dir, self.store, skip=own, on_rows=count)
        self.totals.errors.extend(done.errors)
        self.totals.undelivered_rows += done.pending_rows
        self.totals.delivered_rows.update(
            row_id
            for project, experiment, row_id in done.rows
            if (project, experiment) == (self.project, self.experiment_name)
        )

    # -- while tests run -----------------------------------------------------------------

    def send(self, unit: Unit) -> None:
        """Spool the unit on the caller's thread (it survives a kill from here on), then
        queue it for the store."""
        rows = [unit.row] if unit.row is not None else []
        seq: int | None = None
        if self.spool is not None:
            try:
                seq = self.spool.append(
                    store=self.store_display,
                    project=self.project,
                    experiment=self.experiment_name,
                    rows=rows,
                    spans=unit.spans,
                )
            except (OSError, ValueError) as exc:
                self.totals.errors.append(f"cannot write the spool {self.spool.path}: {exc}")
        entry = (seq, unit)
        if self.writer is None or self.writer.closed:
            self._deliver([entry])
        else:
            self.writer.put(entry)

    def _deliver(self, batch: list[tuple[int | None, Unit]]) -> None:
        """Write a batch to the store in one transaction (runs on the writer thread)."""
        rows = [unit.row for _, unit in batch if unit.row is not None]
        spans = [span for _, unit in batch for span in unit.spans]
        if self._store_down or self.store is None or self.experiment is None:
            self._unspooled.extend(unit for seq, unit in batch if seq is None)
            return
        try:
            result = self.store.write(self.experiment.id, rows, spans)
        except StoreError as exc:
            self._store_down = True
            self.totals.errors.append(str(exc))
            self._unspooled.extend(unit for seq, unit in batch if seq is None)
            return
        seqs = [seq for seq, _ in batch if seq is not None]
        if seqs and self.spool is not None:
            self.spool.ack(seqs)
        self._count(result, rows)

    def _count(self, result: WriteResult, rows: list[RowDoc]) -> None:
        written = self.totals.written
        written.certain = written.certain and result.certain
        written.new_rows += result.new_rows
        written.updated_rows += result.updated_rows
        written.duplicate_rows += result.duplicate_rows
        written.spans += result.spans
        self.totals.delivered_rows.update(row["row_id"] for row in rows)

    # -- end -----------------------------------------------------------------------------

    def finish(self) -> None:
        """Deliver everything queued; try once more what failed; keep the rest spooled."""
        if self.writer is not None:
            self.writer.close()
            if self.writer.crash is not None:
                self.totals.errors.append(f"the writer thread failed: {self.writer.crash!r}")
        pending = self.spool.pending() if self.spool is not None else []
        if (pending or self._unspooled) and self._reconnect():
            assert self.store is not None and self.experiment is not None
            self._store_down = False
            try:
                for chunk in chunks(pending):
                    rows = [row for entry in chunk for row in entry.rows]
                    spans = [span for entry in chunk for span in entry.spans]
                    result = self.store.write(self.experiment.id, rows, spans)
                    assert self.spool is not None
                    self.spool.ack([entry.seq for entry in chunk])
                    self._count(result, rows)
                if self._unspooled:
                    rows = [unit.row for unit in self._unspooled if unit.row is not None]
                    spans = [span for unit in self._unspooled for span in unit.spans]
                    self._count(self.store.write(self.experiment.id, rows, spans), rows)
                    self._unspooled = []
            except StoreError as exc:
                self.totals.errors.append(str(exc))
        remaining = self.spool.pending() if self.spool is not None else []
        self.totals.undelivered_rows += sum(len(entry.rows) for entry in remaining)
        self.totals.undelivered_rows += sum(1 for unit in self._unspooled if unit.row is not None)

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
        if self.store is not None:
            self.store.close()
            self.store = None
