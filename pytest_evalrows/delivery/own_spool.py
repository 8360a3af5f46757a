"""This process's spool file as its delivery writes it: every entry for one store and
experiment, so the start of each line is made once for the session."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..core.records import Attempt, RowDoc
from .leftovers import pending_in
from .spool import Spool, SpooledBatch, entry_head
from .totals import Totals, Unit, storable


class Unserializable(Exception):
    """A unit that not even its JSON-safe copy could be serialized (it is counted as lost)."""


class OwnSpool:
    """The spool file of one process, or none when the spool cannot be written: then every
    ``add`` returns None and the delivery keeps the unit in memory instead."""

    def __init__(
        self,
        directory: Path,
        name: str,
        *,
        store: str,
        project: str,
        experiment: str,
        totals: Totals,
    ) -> None:
        self.directory = directory
        self.store = store
        self.project = project
        self.experiment = experiment
        self.totals = totals
        self._head = entry_head(store, project, experiment)
        self.file: Spool | None = None
        try:
            self.file = Spool(directory, name)
        except OSError as exc:
            totals.errors.append(f"cannot write the spool in {directory}: {exc}")

    def name_store(self, store: str) -> None:
        """The store's own name for itself, known once it is open: what later entries carry."""
        if store != self.store:
            self.store = store
            self._head = entry_head(store, self.project, self.experiment)

    @property
    def path(self) -> Path | None:
        return self.file.path if self.file is not None else None

    @property
    def holds_undelivered(self) -> bool:
        return self.file is not None and bool(self.file.unacked)

    def add(self, unit: Unit) -> int | None:
        """Spool a unit; its entry's number, or None when the spool cannot be written.
        Raises ``Unserializable`` for a unit not even its JSON-safe copy can be written."""
        if self.file is None:
            return None
        for attempt in range(2):
            rows = [unit.row] if unit.row is not None else []
            try:
                return self.file.append_to(self._head, {"rows": rows, "spans": unit.spans})
            except OSError as exc:
                self._cannot_write(exc)
                return None
            except ValueError as exc:  # not serializable: a hook put something odd in
                if attempt == 0:
                    storable(unit)
                    continue
                lose(self.totals, unit, f"cannot be serialized: {exc}")
                raise Unserializable from None
        raise AssertionError("unreachable")  # pragma: no cover

    def add_cleanup(self, row_ids: Collection[str]) -> int | None:
        """Spool the stale-span clean-up of these rows before it runs."""
        return self._add_record({"rows": [], "spans": [], "cleanup": sorted(row_ids)})

    def add_attempt(self, attempt: Attempt) -> int | None:
        """Spool a session's attempt record that the store could not take."""
        return self._add_record({"rows": [], "spans": [], "attempt": asdict(attempt)})

    def add_evaluations(self, evaluations: list[dict[str, Any]]) -> int | None:
        """Spool judges' evaluations (as JSON) that the store could not take."""
        return self._add_record({"rows": [], "spans": [], "evaluations": evaluations})

    def _add_record(self, entry: dict[str, object]) -> int | None:
        if self.file is None:
            return None
        try:
            return self.file.append_to(self._head, entry)
        except (OSError, ValueError) as exc:
            self._cannot_write(exc)
            return None

    def _cannot_write(self, exc: Exception) -> None:
        self.totals.errors.append(f"cannot write the spool {self.path}: {exc}")

    def ack(self, seqs: list[int]) -> None:
        if seqs and self.file is not None:
            self.file.ack(seqs)

    def pending(self) -> list[SpooledBatch]:
        """This file's entries the store does not have yet, oldest first."""
        return self.file.pending() if self.file is not None else []

    def count_undelivered(self) -> set[str]:
        """Count the rows of this store still in the spool (this file and every file no live
        session holds: workers', earlier sessions'); the ids of this experiment's rows among
        them."""
        pending = pending_in(self.directory, self.store, own=self.file)
        self.totals.undelivered_rows = pending.rows
        self.totals.cleanup_pending = pending.cleanups
        self.totals.errors.extend(pending.problems)
        key = (self.project, self.experiment)
        return {row_id for *where, row_id in pending.row_ids if tuple(where) == key}

    def close(self) -> None:
        """Release the file (removed when everything in it was delivered)."""
        if self.file is not None:
            self.file.close()


def lose(totals: Totals, unit: Unit, why: str) -> None:
    """Count a unit that could be neither stored nor spooled."""
    row: RowDoc | None = unit.row
    if row is not None:
        totals.lost_rows.append((row["row_id"], why))
    else:
        totals.errors.append(f"a span under no row {why}")
