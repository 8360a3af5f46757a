"""The session's recorder: each eval item's row from setup to store, and the session's books."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Generator
from typing import Any

import pytest

from . import building, gitinfo, ids
from .collection import plan_items, plan_key, resume_filter, warn_changed_params
from .delivery import Delivery, Totals, Unit
from .errors import StoreAuthError, StoreError
from .outcomes import SUBTESTS, is_subtest, row_status, subtest_description
from .records import Attempt, ErrorInfo, RowDoc, RowState, SpanDoc
from .redaction import redacted
from .report import CRASHED, UNREAD, SessionReport
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
        # node id -> phase -> the error of a failed report, from when it is made until it is
        # logged: only then is it known to be the test's own or one subtest's. (A rerun
        # plugin makes all three phases' reports before it logs any.)
        self._failures: dict[str, dict[str, ErrorInfo]] = {}
        # node id -> (subtest, error) of the running execution's failed subtests
        self._subtest_failures: dict[str, list[tuple[str, ErrorInfo]]] = {}
        self.carried_spans: dict[str, list[SpanDoc]] = {}
        self.in_flight: dict[str, dict[str, Any]] = {}  # controller: rows running on workers
        self.worker_rows: set[str] = set()  # controller: rows its workers finished
        # Controller: rows whose worker died while running them, written at the end unless
        # the worker's own row of that execution turns up in its spool.
        self.crashed: dict[str, Unit] = {}
        self.crashed_workers = 0
        # The latest stored state of every row, read once by the session's first process
        # and handed to xdist workers: for resume and the changed-parameters check.
        self.states: dict[str, RowState] | None = None
        self.states_error: str | None = None
        self.rows_written_in_store: int | None = None
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
            # A span that ends after its row was finished (a thread outliving the test)
            # goes as one of no row.
            processor = RowSpanProcessor(
                self.attempt_id, self._unowned_span, lambda row, record: self._unowned_span(record)
            )
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
        self.delivery.on_own_leftovers = self._own_rows_from_spool
        commit, branch = gitinfo.git_head(self.settings.anchor)
        try:
            # Workers leave earlier sessions' spool files to the controller.
            self.delivery.start(git_commit=commit, git_branch=branch, leftovers=not self.is_worker)
        except StoreAuthError as exc:
            # No money is spent on a run that cannot be recorded.
            raise pytest.UsageError(f"evalrows: {exc}") from None
        if self.is_worker:
            self._inherit_states()
        else:
            self.started = time.time()
            self._read_states()
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
        states = self.states or {}
        if self.plans and states:
            warn_changed_params(self.plans, states)
        if self.settings.resume != "off" and states:
            started = time.perf_counter()
            keep, skip = resume_filter(items, states, self.settings.resume)
            if skip:
                items[:] = keep
                config.hook.pytest_deselected(items=skip)
                self.totals.resumed = len(skip)
            self.resume_seconds = time.perf_counter() - started

    def _read_states(self) -> None:
        """Read the latest state of every stored row, once for the whole session (xdist
        workers get it from the controller). Resume cannot decide without it: then the
        session stops."""
        delivery = self.delivery
        assert delivery is not None
        try:
            if delivery.store is None or delivery.experiment is None:
                raise StoreError(delivery.store_error or f"{delivery.store_display} is unavailable")
            self.states = delivery.store.latest_states(delivery.experiment.id)
        except StoreError as exc:
            self.states_error = str(exc)
            if self.settings.resume != "off":
                raise pytest.UsageError(
                    f"evalrows: --eval-resume={self.settings.resume} needs the stored rows, and "
                    f"they cannot be read: {exc}. Run without --eval-resume to run every case"
                ) from None
            self.totals.errors.append(str(exc))

    def _inherit_states(self) -> None:
        workerinput: dict[str, Any] = getattr(self.config, "workerinput", {})
        stored = workerinput.get("evalrows_states")
        if stored is None:
            return
        self.states = {row_id: RowState(*state) for row_id, state in stored.items()}
        delivery = self.delivery
        if delivery is not None and delivery.store is not None and delivery.experiment is not None:
            delivery.store.remember_rows(delivery.experiment.id, self.states)

    def states_for_workers(self) -> dict[str, list[Any]] | None:
        """What every xdist worker receives instead of reading the store itself."""
        if self.states is None:
            return None
        return {row_id: list(state) for row_id, state in self.states.items()}

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
        if report.failed:
            if call.excinfo is not None:
                error = building.error_info(call.excinfo, item)
            else:  # failed without an exception: a strict XPASS
                error = building.plain_error(report)
            self._failures.setdefault(item.nodeid, {})[call.when] = error
        if self.is_worker and call.when == "setup":
            # Travels with the report to the controller, which records the row as an error
            # should this worker die before the row is written.
            report.evalrows_row = building.in_flight(draft)  # type: ignore[attr-defined]
        return report

    # tryfirst: a worker's scores must be on the report before xdist sends it on.
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        draft = self.drafts.get(report.nodeid)
        if draft is None:
            if not self.is_worker:
                self._track_worker_row(report)
            return
        # pytest-rerunfailures reports an execution it will repeat with outcome "rerun".
        outcome: str = report.outcome
        error = None
        if report.failed or outcome == "rerun":
            error = self._failures.get(report.nodeid, {}).pop(report.when, None)
            if error is None and report.longrepr:
                error = building.plain_error(report)
        if is_subtest(report):
            # An extra report of the call phase: it must not stand for the call, and a
            # failed one fails the row (pytest exits 1 with its SUBFAILED line).
            if error is not None:
                draft.phases[SUBTESTS] = ("failed", False)
                failed = self._subtest_failures.setdefault(report.nodeid, [])
                failed.append((subtest_description(report), error))
            return
        if error is not None and draft.error is None:
            draft.error = error
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
        if is_subtest(report):
            # Counted as the worker counts it: a failed subtest fails the row.
            if report.failed:
                info["phases"][SUBTESTS] = ("failed", False)
            return
        outcome: str = report.outcome
        if report.when in ("setup", "call", "teardown"):
            info["phases"][report.when] = (outcome, hasattr(report, "wasxfail"))
            info["rerun"] = info.get("rerun") or outcome == "rerun"
            if report.when == "teardown":
                del self.in_flight[nodeid]
                if not info["rerun"]:
                    self.totals.statuses[row_status(info["phases"])] += 1
                    self.totals.add_scores(getattr(report, "evalrows_scores", None) or {})
                    self.worker_rows.add(info["row_id"])
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
            self.crashed[row["row_id"]] = Unit(row, [root])

    def _finish(self, draft: RowDraft, report: pytest.TestReport) -> None:
        spans = self.carried_spans.pop(report.nodeid, [])
        end = report.stop
        self._failures.pop(report.nodeid, None)  # of reports a rerun plugin did not log
        failed_subtests = self._subtest_failures.pop(report.nodeid, None)
        if failed_subtests:
            draft.error = building.with_subtests(draft.error, failed_subtests)
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
        if self.is_worker:  # the controller counts scores from the reports it receives
            report.evalrows_scores = row["scores"]  # type: ignore[attr-defined]
        spans.append(self._root_span(draft, status, end))
        spans.extend(draft.spans)
        draft.spans = []
        item = draft.item
        draft.item = None
        if item is not None:  # nothing holds a finished row for the rest of the session
            del item.stash[draft_key]
        self._send(Unit(row, spans))

    def _root_span(self, draft: RowDraft, status: str, end: float) -> SpanDoc:
        root = building.root_span(
            draft,
            status=status,
            end=end,
            attempt_id=self.attempt_id,
            experiment=self.experiment_name,
        )
        if self.tracing is not None:  # the user's exporters get the same root
            self.tracing.end_row(draft, root)
        return root

    def _unowned_span(self, record: SpanDoc) -> None:
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
            store = self.delivery.store if self.delivery is not None else None
            self.totals.requests.update(getattr(store, "requests", None) or {})
            workeroutput: dict[str, Any] = self.config.workeroutput  # type: ignore[attr-defined]
            workeroutput["evalrows"] = self.totals.to_json()
        elif (
            self.settings.fail_on_undelivered
            and (self.totals.undelivered_rows or self.totals.lost_rows)
            and session.exitstatus == pytest.ExitCode.OK
        ):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def finish(self) -> None:
        if self.finished or self.delivery is None:
            return
        self.finished = True
        if self.tracing is not None:
            self.tracing.flush()
            self.totals.errors.extend(self.tracing.problems())
        delivery = self.delivery
        delivery.finish()
        unsaved = None
        if not self.is_worker:
            # What workers (crashed or not) and earlier sessions left in the spool, then the
            # rows of crashed workers, then the clean-up of everything delivered.
            delivery.deliver_leftovers()
            self._write_crashed_rows()
            delivery.finish()
            pending = delivery.count_undelivered()
            self._count_rows_in_store()
            self._clean_stale_spans(pending)
            if self.attempt is not None:
                self.attempt.ended = time.time()
                self.attempt.counts = dict(self.totals.statuses)
                self.attempt.delivered = not (self.totals.undelivered_rows or self.totals.lost_rows)
                # What the summary is about to say, kept with the attempt for readers.
                self.attempt.report = self.report().to_json()
                if not self._save_attempt():
                    unsaved = self.attempt
        delivery.close_spool(unsaved)

    def merge_worker(self, output: dict[str, Any] | None, worker: str) -> None:
        """Controller side: add a finished worker's totals (None when it crashed)."""
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

    def _own_rows_from_spool(self, rows: list[RowDoc]) -> None:
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
        self.totals.add_scores(row.get("scores") or {})

    def _write_crashed_rows(self) -> None:
        """Write the error rows of cases whose worker died while running them, unless the
        worker delivered its own row of that execution before it died."""
        delivery = self.delivery
        if not self.crashed or delivery is None:
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

    def _count_rows_in_store(self) -> None:
        """A crashed worker's totals died with it: count this attempt's rows in the store."""
        delivery = self.delivery
        if not self.crashed_workers or delivery is None or delivery.store_down:
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

    def _clean_stale_spans(self, pending: set[str]) -> None:
        """Delete the spans earlier attempts and executions left under the rows delivered
        in this session. Rows whose write failed keep every span they had. The clean-up is
        spooled before it runs: one that fails is finished by a later session."""
        # Rows a crashed worker delivered before it died are in no worker's totals: every
        # row a worker finished counts, but for those still in the spool (or lost). The
        # store only removes spans its stored latest version does not own.
        lost = {row_id for row_id, _ in self.totals.lost_rows}
        rows = (self.totals.delivered_rows | self.worker_rows) - pending - lost
        delivery = self.delivery
        if self.settings.keep_stale_spans or not rows or delivery is None:
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
            crashed_workers=self.crashed_workers,
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
        if self.rows_written_in_store is not None:
            report.rows_written = self.rows_written_in_store
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

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write_summary(self.report(), terminalreporter)
