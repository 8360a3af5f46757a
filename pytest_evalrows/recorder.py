"""The session's recorder: each eval item's row from setup to store, and the session's books."""

from __future__ import annotations

import socket
import time
from collections.abc import Generator
from typing import Any

import pytest

from . import building, gitinfo, ids
from .collection import plan_items, plan_key, resume_filter, warn_changed_params
from .delivery import Delivery, Totals, Unit
from .errors import StoreAuthError, StoreError
from .outcomes import row_status
from .records import Attempt, RowState, SpanDoc
from .redaction import redacted
from .row import RowDraft, RowPlan
from .settings import Settings
from .spool import default_spool_dir, session_name
from .store.urls import open_store
from .summary import write_summary
from .tracing import ActiveRow, RowSpanProcessor, Tracing

draft_key = pytest.StashKey[RowDraft]()
_execution_key = pytest.StashKey[int]()
_active_key = pytest.StashKey[ActiveRow]()


class Recorder:
    """Registered as a plugin when recording is on; one per pytest process.

    Under xdist every worker records and delivers the rows it runs; the controller makes the
    attempt, records rows of crashed workers, merges the workers' totals and cleans up once.
    """

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        assert settings.experiment is not None
        self.experiment_name: str = settings.experiment
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        self.is_worker = workerinput is not None
        inherited = workerinput or {}
        self.attempt_id: str = (
            settings.attempt_id or inherited.get("evalrows_attempt_id") or ids.new_attempt_id()
        )
        # Resume decides on versions written before this instant, the same in every worker.
        self.started: float = inherited.get("evalrows_started") or time.time()
        self.totals = Totals()
        self.delivery: Delivery | None = None
        self.attempt: Attempt | None = None
        self.plans: list[RowPlan] = []
        self.drafts: dict[str, RowDraft] = {}
        self.carried_spans: dict[str, list[SpanDoc]] = {}
        self.in_flight: dict[str, dict[str, Any]] = {}  # controller: rows running on workers
        self.worker_rows: set[str] = set()  # controller: rows its workers finished
        self.has_row_fields_hook = False
        self.tracing: Tracing | None = None
        self.tracing_note = "span capture off"
        self.stale_spans_removed: int | None = None
        self.cleanup_seconds = 0.0
        self.resume_seconds = 0.0
        self.finished = False

    # -- session start -------------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> str:
        return (
            f"evalrows: recording experiment {self.experiment_name!r} "
            f"(project {self.settings.project!r}) into {self.settings.store.display()}, "
            f"attempt {self.attempt_id}, row ids relative to {self.settings.anchor}; "
            f"{self.tracing_note}"
        )

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # An xdist controller runs no test: its workers capture the spans.
        distributing = self.config.pluginmanager.has_plugin("dsession")
        if self.settings.tracing != "off" and distributing:
            self.tracing_note = "spans captured by each xdist worker"
        elif self.settings.tracing != "off":
            processor = RowSpanProcessor(self.attempt_id, self._unowned_span, self._late_span)
            self.tracing = Tracing(processor, self.settings.tracing)
            self.tracing_note = self.tracing.connect()
        url = self.settings.store
        spool_dir = self.settings.spool or default_spool_dir(self.settings.anchor)

        def make_store() -> Any:
            hook = self.config.hook.pytest_evalrows_make_store
            return hook(config=self.config, url=url) or open_store(
                url,
                api_key=self.settings.api_key,
                timeout=self.settings.http_timeout,
                retries=self.settings.http_retries,
            )

        self.delivery = Delivery(
            open_store=make_store,
            store_display=url.display(),
            project=self.settings.project,
            experiment=self.experiment_name,
            spool_dir=spool_dir,
            spool_name=session_name(self.attempt_id),
            totals=self.totals,
            attempt_id=self.attempt_id,
        )
        commit, branch = gitinfo.git_head(self.settings.anchor)
        try:
            self.delivery.start(git_commit=commit, git_branch=branch)
        except StoreAuthError as exc:
            # No money is spent on a run that cannot be recorded.
            raise pytest.UsageError(f"evalrows: {exc}") from None
        if not self.is_worker:
            # Resume judges versions written before now: after the leftovers just delivered,
            # before any worker starts (workers inherit this instant).
            self.started = time.time()
        if not self.is_worker:
            self.attempt = Attempt(
                id=self.attempt_id,
                experiment_id=self.delivery.experiment.id if self.delivery.experiment else "",
                started=self.started,
                host=socket.gethostname(),
                args=redacted(self.config.invocation_params.args),
                git_commit=commit,
                git_branch=branch,
            )
            self._save_attempt()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        self.plans = plan_items(items, self.settings.anchor, config)
        # Asked once: calling a hook nobody implements still costs per row.
        self.has_row_fields_hook = bool(config.hook.pytest_evalrows_row_fields.get_hookimpls())
        started = time.perf_counter()
        states = self._stored_states() if self.plans else {}
        if states:
            warn_changed_params(self.plans, states)
        if self.settings.resume != "off" and states:
            keep, skip = resume_filter(
                items, states, self.settings.resume, self.started, self._status_before_start
            )
            if skip:
                items[:] = keep
                config.hook.pytest_deselected(items=skip)
                self.totals.resumed = len(skip)
            self.resume_seconds = time.perf_counter() - started

    def _stored_states(self) -> dict[str, RowState]:
        """The latest state of every stored row, in one read (resume and drift checks)."""
        delivery = self.delivery
        if delivery is None or delivery.store is None or delivery.experiment is None:
            return {}
        try:
            return delivery.store.latest_states(delivery.experiment.id)
        except StoreError as exc:
            self.totals.errors.append(str(exc))
            return {}

    def _status_before_start(self, row_id: str) -> str | None:
        delivery = self.delivery
        assert delivery is not None and delivery.store is not None
        assert delivery.experiment is not None
        earlier = [
            version
            for version in delivery.store.history(delivery.experiment.id, row_id)
            if (version.created or 0) < self.started
        ]
        return earlier[-1].status if earlier else None

    # -- one item ------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        plan = item.stash.get(plan_key, None)
        if self.tracing is not None:
            self.tracing.processor.in_plain_test = plan is None
        if plan is not None:
            execution = item.stash.get(_execution_key, 0) + 1
            item.stash[_execution_key] = execution
            draft = RowDraft(
                plan=plan,
                execution=execution,
                trace_id=ids.new_trace_id(),
                span_id=ids.new_span_id(),
                start=time.time(),
                item=item,
            )
            item.stash[draft_key] = draft
            self.drafts[item.nodeid] = draft
            if self.tracing is not None:
                self.tracing.reconnect()
                active = ActiveRow(draft, self.experiment_name, self.attempt_id)
                item.stash[_active_key] = active
                self.tracing.enter_row(active)
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            if self.tracing is not None:
                self.tracing.processor.in_plain_test = False
                active = item.stash.get(_active_key, None)
                if active is not None:
                    del item.stash[_active_key]
                    self.tracing.exit_row(active)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, object, object]:
        tracing = self.tracing
        if tracing is None or fixturedef.scope == "function":
            return (yield)
        # Session, package, module and class fixtures belong to no row, in setup and in
        # teardown. Finalizers run last-in first-out, so the one added now runs after the
        # fixture's own teardown and the one added after setup runs before it.
        fixturedef.addfinalizer(tracing.exit_outside)
        tracing.enter_outside()
        try:
            return (yield)
        finally:
            tracing.exit_outside()
            fixturedef.addfinalizer(tracing.enter_outside)
            # A provider configured by this fixture serves the rows from now on.
            tracing.reconnect()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        draft = item.stash.get(draft_key, None)
        if draft is None:
            return report
        if report.failed and draft.error is None:
            if call.excinfo is not None:
                draft.error = building.error_info(call.excinfo, item)
            else:  # failed without an exception: a strict XPASS
                draft.error = building.plain_error(report)
        if self.is_worker and call.when == "setup":
            # Travels with the report to the controller, which records the row as an error
            # should this worker die before the row is written.
            report.evalrows_row = building.in_flight(draft)  # type: ignore[attr-defined]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        draft = self.drafts.get(report.nodeid)
        if draft is None:
            if not self.is_worker:
                self._track_worker_row(report)
            return
        # pytest-rerunfailures reports an execution it will repeat with outcome "rerun".
        outcome: str = report.outcome
        if outcome == "rerun":
            draft.rerun = True
        draft.phases[report.when] = (outcome, hasattr(report, "wasxfail"))
        if report.when == "teardown":
            del self.drafts[report.nodeid]
            self._finish(draft, report)

    def _track_worker_row(self, report: pytest.TestReport) -> None:
        """Controller side: follow the rows running on workers, count their statuses from the
        reports (a crashed worker's included), and record a row whose worker died."""
        nodeid = report.nodeid
        info = getattr(report, "evalrows_row", None)
        if info is not None:
            self.in_flight[nodeid] = info
            info["phases"] = {}
        info = self.in_flight.get(nodeid)
        if info is None:
            return
        outcome: str = report.outcome
        if report.when in ("setup", "call", "teardown"):
            info["phases"][report.when] = (outcome, hasattr(report, "wasxfail"))
            info["rerun"] = info.get("rerun") or outcome == "rerun"
            if report.when == "teardown":
                del self.in_flight[nodeid]
                if not info["rerun"]:
                    self.totals.statuses[row_status(info["phases"])] += 1
                    self.worker_rows.add(info["row_id"])
        else:
            # xdist reports a worker that died mid-test with when="???".
            del self.in_flight[nodeid]
            row, root = building.crashed_row(
                info, str(report.longrepr), time.time(), self.attempt_id, self.experiment_name
            )
            self.totals.statuses["error"] += 1
            self._send(Unit(row, [root]))

    def _finish(self, draft: RowDraft, report: pytest.TestReport) -> None:
        spans = self.carried_spans.pop(report.nodeid, [])
        end = report.stop
        if draft.rerun:
            # An execution a rerun plugin will repeat: its spans go with the final execution's
            # row, and are cleaned once that row is written.
            spans.append(self._root_span(draft, "rerun", end))
            spans.extend(draft.spans)
            draft.spans = []
            self.carried_spans[report.nodeid] = spans
            self.totals.reruns += 1
            return
        status = row_status(draft.phases)
        fields = building.row_fields(draft, status, self.attempt_id)
        if self.has_row_fields_hook:
            self.config.hook.pytest_evalrows_row_fields(item=draft.item, fields=fields)
        row = building.row_version(
            draft, status=status, end=end, attempt_id=self.attempt_id, fields=fields
        )
        self.totals.statuses[status] += 1
        self.totals.add_scores(row["scores"])
        spans.append(self._root_span(draft, status, end))
        spans.extend(draft.spans)
        draft.spans = []
        item = draft.item
        draft.item = None
        if item is not None:  # nothing holds a finished row for the rest of the session
            del item.stash[draft_key]
        self._send(Unit(row, spans))

    def _root_span(self, draft: RowDraft, status: str, end: float) -> SpanDoc:
        return building.root_span(
            draft,
            status=status,
            end=end,
            attempt_id=self.attempt_id,
            experiment=self.experiment_name,
        )

    def _unowned_span(self, record: SpanDoc) -> None:
        self._send(Unit(None, [record]))

    def _late_span(self, row: ActiveRow, record: SpanDoc) -> None:
        """A span that ended after its row was finished (a thread outliving the test)."""
        self._send(Unit(None, [record]))

    def _send(self, unit: Unit) -> None:
        if self.delivery is not None:
            self.delivery.send(unit)

    # -- session end ---------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        try:
            self.finish()
        except Exception as exc:  # a worker's failure here is easy to lose: make it loud
            self.totals.errors.append(f"finishing the session failed: {exc!r}")
        if self.is_worker:
            workeroutput: dict[str, Any] = self.config.workeroutput  # type: ignore[attr-defined]
            workeroutput["evalrows"] = self.totals.to_json()
        elif (
            self.settings.fail_on_undelivered
            and self.totals.undelivered_rows
            and session.exitstatus == pytest.ExitCode.OK
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def finish(self) -> None:
        if self.finished or self.delivery is None:
            return
        self.finished = True
        if self.tracing is not None:
            self.tracing.flush()
        self.delivery.finish()
        unsaved = None
        if not self.is_worker:
            # Files that crashed workers left behind, then the clean-up for everything
            # this session delivered.
            self.delivery.deliver_leftovers()
            self._clean_stale_spans()
            if self.attempt is not None:
                self.attempt.ended = time.time()
                self.attempt.counts = dict(self.totals.statuses)
                self.attempt.delivered = not self.totals.undelivered_rows
                if not self._save_attempt():
                    unsaved = self.attempt
        self.delivery.close_spool(unsaved)

    def merge_worker(self, output: dict[str, Any] | None, worker: str) -> None:
        """Controller side: add a finished worker's totals (None when it crashed)."""
        if output is None:
            # Its totals died with it: new and updated counts are no longer certain, so
            # clean-up must not be skipped on their account.
            self.totals.written.certain = False
            return
        data = output.get("evalrows")
        if data is None:
            self.totals.errors.append(f"worker {worker} reported no rows: its recorder failed")
            return
        self.totals.merge(data)

    def _clean_stale_spans(self) -> None:
        """Delete the spans earlier attempts and executions left under the rows delivered
        in this session. Rows whose write failed keep every span they had."""
        rows = set(self.totals.delivered_rows)
        if not self.totals.undelivered_rows:
            # Rows a crashed worker delivered before it died are in no worker's totals. The
            # store only removes spans its stored latest version does not own, so this is
            # safe once nothing is left undelivered.
            rows |= self.worker_rows
        delivery = self.delivery
        if self.settings.keep_stale_spans or not rows or delivery is None:
            return
        if delivery.store is None or delivery.experiment is None:
            return
        totals = self.totals
        written = totals.written
        if written.certain and not (written.updated_rows or totals.reruns or totals.leftover_rows):
            # Only new rows, each run once: nothing can be stale, so no need to read the
            # store (for an http(s) store that read is the whole experiment).
            self.stale_spans_removed = 0
            return
        started = time.perf_counter()
        try:
            removed = delivery.store.delete_stale_spans(delivery.experiment.id, rows)
        except StoreError as exc:
            self.totals.errors.append(str(exc))
            return
        self.cleanup_seconds = time.perf_counter() - started
        self.stale_spans_removed = len(removed)

    def _save_attempt(self) -> bool:
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

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.finish()
        if self.delivery is not None:
            self.delivery.close()

    # -- summary -------------------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write_summary(self, terminalreporter)
