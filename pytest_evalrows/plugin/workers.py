"""The xdist controller's books of its workers' rows: those in flight, those finished, and
those whose worker died while running them."""

from __future__ import annotations

import time
from typing import Any

import pytest

from ..core.compare import PASS
from ..core.outcomes import INTERRUPTED, SUBTESTS, is_subtest, row_status
from ..core.records import RowDoc
from ..delivery.delivery import Delivery
from ..delivery.totals import Totals, Unit
from ..errors import StoreError
from . import building


class WorkerRows:
    """Controller side: counts the workers' rows from their reports, and writes the rows of
    crashed workers at the end of the session."""

    def __init__(self, *, experiment: str, attempt_id: str, totals: Totals) -> None:
        self.experiment_name = experiment
        self.attempt_id = attempt_id
        self.totals = totals
        self.in_flight: dict[str, dict[str, Any]] = {}  # rows running on workers
        self.worker_rows: set[str] = set()  # rows its workers finished
        # Rows whose worker died while running them, written at the end unless the worker's
        # own row of that execution turns up in its spool.
        self.crashed: dict[str, Unit] = {}
        self.crashed_workers = 0
        # The crashed rows that are trials: row id -> the trial's case's row id.
        self.crashed_trials: dict[str, str] = {}
        self.rows_written_in_store: int | None = None

    def track(self, report: pytest.TestReport) -> None:
        """Follow the rows running on workers, count their statuses from the reports (a
        crashed worker's included), and record a row whose worker died."""
        nodeid = report.nodeid
        info = getattr(report, "evalrows_row", None)
        if info is not None:
            self.in_flight[nodeid] = info
            info["phases"] = {}
            # Cases a worker ran at once with others are each reported if it dies: xdist
            # names only one test per dead worker.
            if getattr(report, "evalrows_overlapped", False):
                info["overlapped_on"] = _worker_of(report)
                info["location"] = report.location
        info = self.in_flight.get(nodeid)
        if info is None:
            return
        if is_subtest(report):
            # Counted as the worker counts it: a failed subtest fails the row.
            if report.failed:
                info["phases"][SUBTESTS] = ("failed", False)
            return
        outcome: str = report.outcome
        if report.when in ("setup", "call", "teardown"):
            info["phases"][report.when] = (outcome, hasattr(report, "wasxfail"))
            if getattr(report, "evalrows_interrupted", False):
                info["phases"][INTERRUPTED] = ("failed", False)
            info["rerun"] = info.get("rerun") or outcome == "rerun"
            if report.when == "teardown":
                del self.in_flight[nodeid]
                if not info["rerun"]:
                    status = row_status(info["phases"])
                    self.totals.statuses[status] += 1
                    scores = getattr(report, "evalrows_scores", None) or {}
                    self.totals.add_scores(scores, status)
                    self.worker_rows.add(info["row_id"])
                    if info.get("case_row_id") is not None:
                        self.totals.add_trial(info["case_row_id"], status == "passed")
        else:
            # xdist reports a worker that died mid-test with when="???". Its row is written
            # at the end, unless the worker's own row of this execution turns up in its spool
            # (it died after spooling the row, before its report left): one execution, one
            # version.
            del self.in_flight[nodeid]
            row, root = building.crashed_row(
                info, str(report.longrepr), time.time(), self.attempt_id, self.experiment_name
            )
            self.totals.statuses["error"] += 1
            self.totals.add_scores({}, "error")
            if info.get("case_row_id") is not None:  # a trial that did not pass
                self.totals.add_trial(info["case_row_id"], False)
                self.crashed_trials[row["row_id"]] = info["case_row_id"]
            self.crashed[row["row_id"]] = Unit(row, [root])

    def lost_with(self, worker: str) -> list[tuple[str, Any]]:
        """(node id, location) of the cases a dead worker was running at once with others."""
        return [
            (nodeid, info.get("location"))
            for nodeid, info in self.in_flight.items()
            if info.get("overlapped_on") == worker
        ]

    def merge_worker(self, output: dict[str, Any] | None, worker: str) -> None:
        """Add a finished worker's totals (None when it crashed)."""
        if output is None:
            # Its totals died with it: new and updated counts are no longer certain, so
            # clean-up must not be skipped on their account.
            self.totals.written.certain = False
            self.crashed_workers += 1
            return
        data = output.get("evalrows")
        if data is None:
            self.totals.errors.append(f"worker {worker} reported no rows: its recorder failed")
            return
        self.totals.merge(data)

    def own_rows_from_spool(self, rows: list[RowDoc]) -> None:
        """Rows of this attempt delivered from a worker's spool file. A crashed worker's row
        of the execution it died in replaces the error row the controller would write."""
        for row in rows:
            crashed = self.crashed.get(row["row_id"])
            if (
                crashed is not None
                and crashed.row is not None
                and (crashed.row["execution"] == row["execution"])
            ):
                del self.crashed[row["row_id"]]
                self._count_as(row)

    def _count_as(self, row: RowDoc) -> None:
        """Count a crashed worker's row by what it really was, not as the crash error."""
        statuses = self.totals.statuses
        statuses["error"] -= 1
        if not statuses["error"]:
            del statuses["error"]
        statuses[row["status"]] += 1
        # The crash's own pass of 0 (the row in error) goes: the row counts as what it was.
        crash_pass = self.totals.scores.get(PASS)
        if crash_pass is not None:
            crash_pass[1] -= 1
            if not crash_pass[1]:
                del self.totals.scores[PASS]
        self.totals.add_scores(row.get("scores") or {}, row["status"])
        case = self.crashed_trials.pop(row["row_id"], None)
        if case is not None and row["status"] == "passed":  # counted as failed at the crash
            self.totals.trials[case][0] += 1

    def write_crashed_rows(self, delivery: Delivery) -> None:
        """Write the error rows of cases whose worker died while running them, unless the
        worker delivered its own row of that execution before it died."""
        if not self.crashed:
            return
        if delivery.store is not None and delivery.experiment is not None:
            try:
                stored = delivery.store.latest_rows(delivery.experiment.id, list(self.crashed))
            except StoreError as exc:
                self.totals.errors.append(str(exc))
                stored = []
            for version in stored:
                crashed = self.crashed[version.row_id]
                assert crashed.row is not None
                if (version.attempt_id, version.root_span_id) == (
                    self.attempt_id,
                    crashed.row["root_span_id"],
                ):
                    del self.crashed[version.row_id]
                    self._count_as(version.model_dump(mode="json"))
        for unit in self.crashed.values():
            delivery.send(unit)
        self.crashed = {}

    def count_rows_in_store(self, delivery: Delivery) -> None:
        """A crashed worker's totals died with it: count this attempt's rows in the store."""
        if not self.crashed_workers or delivery.store_down:
            return
        if delivery.store is None or delivery.experiment is None:
            return
        try:
            states = delivery.store.latest_states(delivery.experiment.id)
        except StoreError as exc:
            self.totals.errors.append(str(exc))
            return
        self.rows_written_in_store = sum(
            1 for state in states.values() if state.attempt_id == self.attempt_id
        )


def _worker_of(report: pytest.TestReport) -> str:
    """The id of the xdist worker a report came from (``gw0``)."""
    node = getattr(report, "node", None)
    return str(getattr(getattr(node, "gateway", None), "id", getattr(report, "worker_id", "?")))
