"""The end of a recording session: what is left delivered, crashed workers' rows written,
stale spans cleaned, the attempt saved, and the ``SessionReport`` the summary renders."""

from __future__ import annotations

import time
from collections import Counter

from ..core.records import Attempt, Experiment
from ..core.report import CRASHED, UNREAD, Findings, SessionReport
from ..delivery.delivery import Delivery
from ..delivery.totals import Totals
from ..errors import StoreError
from .gates import conclude, gates_asked, unchecked
from .items import ItemRows
from .settings import Settings
from .tracing import Tracing
from .workers import WorkerRows


class SessionEnd:
    """Runs once per process at the end of the session; what it finds goes in the report."""

    def __init__(
        self,
        settings: Settings,
        *,
        experiment: str,
        attempt_id: str,
        is_worker: bool,
        totals: Totals,
        workers: WorkerRows,
    ) -> None:
        self.settings = settings
        self.experiment_name = experiment
        self.attempt_id = attempt_id
        self.is_worker = is_worker
        self.totals = totals
        self.workers = workers
        # Set when the session starts.
        self.delivery: Delivery | None = None
        self.tracing: Tracing | None = None
        self.items: ItemRows | None = None
        self.attempt: Attempt | None = None
        self.stale_spans_removed: int | None = None
        self.cleanup_seconds = 0.0
        self.resume_seconds = 0.0
        self.finished = False
        # The row ids this session collected (its xdist workers', on the controller), the
        # baseline found at the start, and what the end found over the rows as a whole.
        self.collected: set[str] = set()
        self.baseline: Experiment | None = None
        self.findings: Findings | None = None

    def finish(self) -> None:
        if self.finished or self.delivery is None:
            return
        self.finished = True
        if self.tracing is not None:
            self.tracing.flush()
            self.totals.errors.extend(self.tracing.problems())
        delivery = self.delivery
        delivery.finish()
        # The rows are in the store (or spooled): their judgments go on them.
        judging = self.items.judging if self.items is not None else None
        if judging is not None:
            try:
                judging.finish(delivery)
            except Exception as exc:  # the rows, the clean-up and the attempt still go on
                self.totals.errors.append(f"finishing the judgments failed: {exc!r}")
        unsaved = None
        if not self.is_worker:
            # What workers (crashed or not) and earlier sessions left in the spool, then the
            # rows of crashed workers, then the clean-up of everything delivered.
            delivery.deliver_leftovers()
            self.workers.write_crashed_rows(delivery)
            delivery.finish()
            pending = delivery.count_undelivered()
            self.workers.count_rows_in_store(delivery)
            self._clean_stale_spans(delivery, pending)
            self._conclude(delivery, len(pending) + len(self.totals.lost_rows))
            if self.attempt is not None:
                self.attempt.ended = time.time()
                self.attempt.counts = dict(self.totals.statuses)
                self.attempt.delivered = not (self.totals.undelivered_rows or self.totals.lost_rows)
                # What the summary is about to say, kept with the attempt for readers.
                self.attempt.report = self.report().to_json()
                if not self.save_attempt():
                    unsaved = self.attempt
        delivery.close_spool(unsaved)

    def _clean_stale_spans(self, delivery: Delivery, pending: set[str]) -> None:
        """Delete the spans earlier attempts and executions left under the rows delivered
        in this session. Rows whose write failed keep every span they had. The clean-up is
        spooled before it runs: one that fails is finished by a later session."""
        # Rows a crashed worker delivered before it died are in no worker's totals: every
        # row a worker finished counts, but for those still in the spool (or lost). The
        # store only removes spans its stored latest version does not own.
        lost = {row_id for row_id, _ in self.totals.lost_rows}
        rows = (self.totals.delivered_rows | self.workers.worker_rows) - pending - lost
        if self.settings.keep_stale_spans or not rows:
            return
        totals = self.totals
        written = totals.written
        if written.certain and not (
            written.updated_rows
            or written.superseded_rows
            or totals.reruns
            or totals.leftover_rows
            or totals.own_leftovers
        ):
            # Only new rows, each run once: nothing can be stale, so no need to read the
            # store (for an http(s) store that read is the whole experiment).
            self.stale_spans_removed = 0
            return
        seq = delivery.spool_cleanup(rows)
        started = time.perf_counter()
        try:
            if delivery.store_down or delivery.store is None or delivery.experiment is None:
                raise StoreError(delivery.store_error or f"{delivery.store_display} is down")
            removed = delivery.store.delete_stale_spans(delivery.experiment.id, rows)
        except StoreError as exc:
            if seq is not None:
                self.totals.cleanup_pending += len(rows)
            self.totals.errors.append(f"removing stale spans failed: {exc}")
            return
        if seq is not None:
            delivery.ack([seq])
        self.cleanup_seconds = time.perf_counter() - started
        self.stale_spans_removed = len(removed)

    def _conclude(self, delivery: Delivery, undelivered: int) -> None:
        """The one read of the experiment's rows (and the baseline's) for the report and the
        gates; skipped when neither asks for it."""
        settings = self.settings
        if settings.report == "none" and not gates_asked(settings):
            return
        try:
            self.findings = conclude(
                delivery,
                settings,
                attempt_id=self.attempt_id,
                collected=self.collected,
                baseline=self.baseline,
                undelivered=undelivered,
            )
        except Exception as exc:  # the attempt and the summary still go on
            self.totals.errors.append(f"reading the experiment's rows failed: {exc!r}")
            self.findings = unchecked(settings, f"reading the rows failed: {exc!r}")

    def save_attempt(self) -> bool:
        """Record the attempt in the store; False when the store cannot take it now."""
        delivery = self.delivery
        if self.attempt is None or delivery is None or delivery.store is None:
            return False
        if delivery.experiment is None:
            return False
        self.attempt.experiment_id = delivery.experiment.id
        try:
            delivery.store.save_attempt(self.attempt)
        except StoreError as exc:
            self.totals.errors.append(str(exc))
            return False
        return True

    def report(self) -> SessionReport:
        """What this session did, as the summary prints it and the attempt keeps it."""
        totals = self.totals
        delivery = self.delivery
        written = totals.written
        report = SessionReport(
            experiment=self.experiment_name,
            project=self.settings.project,
            store=delivery.store_display if delivery is not None else self.settings.store.display(),
            attempt_id=self.attempt_id,
            rows_written=written.new_rows + written.updated_rows,
            new_rows=written.new_rows,
            updated_rows=written.updated_rows,
            own_leftovers=totals.own_leftovers,
            crashed_workers=self.workers.crashed_workers,
            resumed=totals.resumed,
            resume_mode=self.settings.resume,
            resume_seconds=self.resume_seconds,
            leftover_rows=totals.leftover_rows,
            superseded_rows=written.superseded_rows,
            stale_spans_removed=self.stale_spans_removed,
            cleanup_seconds=self.cleanup_seconds,
            stale_spans_kept=self.settings.keep_stale_spans,
            cleanup_pending=totals.cleanup_pending,
            mean_scores={name: total / count for name, (total, count) in totals.scores.items()},
            statuses=dict(totals.statuses),
            store_error=delivery.store_error if delivery is not None else None,
            errors=list(totals.errors),
            undelivered_rows=totals.undelivered_rows,
            spool_dir=str(delivery.spool_dir) if delivery is not None else "the spool",
            lost_rows=list(totals.lost_rows),
        )
        report.add_judgments(totals.judgments)
        report.baseline = self.settings.baseline
        report.trials = {case: list(counts) for case, counts in sorted(totals.trials.items())}
        if self.findings is None and not self.is_worker and gates_asked(self.settings):
            # The end failed before the rows were read: the gates fail, saying so.
            self.findings = unchecked(
                self.settings, "the session's end failed before the rows were read"
            )
        if self.findings is not None:
            self.findings.fill(report)
        if self.workers.rows_written_in_store is not None:
            report.rows_written = self.workers.rows_written_in_store
            report.new_rows = report.updated_rows = None
            report.unknown_why = CRASHED
        elif not written.certain:
            report.new_rows = report.updated_rows = None
            report.unknown_why = UNREAD
        # This process's requests, and its xdist workers'.
        requests = Counter(totals.requests)
        store = delivery.store if delivery is not None else None
        requests.update(getattr(store, "requests", None) or {})
        report.requests = dict(requests)
        return report
