"""The life of each eval item's row: one execution from setup to the unit sent for delivery."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from ..core import ids
from ..core.outcomes import INTERRUPTED, SUBTESTS, is_subtest, row_status, subtest_description
from ..core.records import ErrorInfo, SpanDoc
from ..core.row import RowDraft
from ..delivery.totals import Totals, Unit
from . import building
from .collection import plan_key
from .row_scopes import PlainTest
from .settings import settings_key
from .tracing import ActiveRow, Tracing

if TYPE_CHECKING:
    from .judging import SessionJudging

draft_key = pytest.StashKey[RowDraft]()
_execution_key = pytest.StashKey[int]()
_active_key = pytest.StashKey[ActiveRow]()
_plain_key = pytest.StashKey[PlainTest]()


class ItemRows:
    """Each execution of an eval item becomes a draft at setup, collects its phases' reports
    and becomes a row (or, when a rerun plugin repeats it, spans carried to the next one)."""

    def __init__(
        self,
        config: pytest.Config,
        *,
        experiment: str,
        attempt_id: str,
        is_worker: bool,
        totals: Totals,
        send: Callable[[Unit], None],
    ) -> None:
        self.config = config
        self.experiment_name = experiment
        self.attempt_id = attempt_id
        self.is_worker = is_worker
        self.totals = totals
        self.send = send
        self.tracing: Tracing | None = None
        self.has_row_fields_hook = False
        self.drafts: dict[str, RowDraft] = {}
        # node id -> (subtest, error) of the running execution's failed subtests
        self._subtest_failures: dict[str, list[tuple[str, ErrorInfo]]] = {}
        self.carried_spans: dict[str, list[SpanDoc]] = {}
        # Made by the first row with judges: a session without any pays nothing for them.
        self.judging: SessionJudging | None = None
        self._judging_lock = threading.Lock()

    def session_judging(self) -> SessionJudging:
        if self.judging is not None:
            return self.judging
        from .judging import SessionJudging

        with self._judging_lock:  # two cases judging first at once make one runner
            if self.judging is None:
                self.judging = SessionJudging(
                    self.config,
                    self.config.stash[settings_key],
                    attempt_id=self.attempt_id,
                    experiment=self.experiment_name,
                    totals=self.totals,
                    row_fields_hook=self.has_row_fields_hook,
                )
            return self.judging

    def setup(self, item: pytest.Item) -> None:
        """Before the item's setup: a new execution's draft, and its row context."""
        plan = item.stash.get(plan_key, None)
        if plan is None:
            if self.tracing is not None:
                item.stash[_plain_key] = self.tracing.enter_plain()
            return
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

    def teardown_done(self, item: pytest.Item) -> None:
        """After the item's teardown: leave its row context."""
        if self.tracing is not None:
            plain = item.stash.get(_plain_key, None)
            if plain is not None:
                del item.stash[_plain_key]
                self.tracing.exit_plain(plain)
            active = item.stash.get(_active_key, None)
            if active is not None:
                del item.stash[_active_key]
                self.tracing.exit_row(active)

    def phase_done(self, item: pytest.Item, call: pytest.CallInfo[None]) -> None:
        """A phase ran (whatever it raised); its report is about to be made. The call is kept
        until the report is logged: only then is it known to be a failure, and whether the
        test's own or one subtest's."""
        draft = item.stash.get(draft_key, None)
        if draft is not None:
            # The call itself: pytest's unittest support sets its exception only later, as
            # it makes the report. Last in, first out: a subtest's report (made and logged
            # at once) can come between a phase's report and its logging by a rerun plugin.
            draft.calls.setdefault(call.when, []).append(call)

    def logreport(self, report: pytest.TestReport) -> bool:
        """Take a report of one of this process's rows; False when it is of no row here."""
        draft = self.drafts.get(report.nodeid)
        if draft is None:
            return False
        # pytest-rerunfailures reports an execution it will repeat with outcome "rerun".
        outcome: str = report.outcome
        error = None
        calls = draft.calls.get(report.when)
        call = calls.pop() if calls else None
        if report.failed or outcome == "rerun":
            if call is not None and call.excinfo is not None and draft.item is not None:
                error = building.error_info(call.excinfo, draft.item)
            elif report.longrepr:  # failed without an exception: a strict XPASS, say
                error = building.plain_error(report)
        subtest = is_subtest(report)
        if self.is_worker and report.when == "setup" and not subtest:
            # Travels with the report to the controller, which records the row as an error
            # should this worker die before the row is written.
            report.evalrows_row = building.in_flight(draft)  # type: ignore[attr-defined]
        if subtest:
            # An extra report of the call phase: it must not stand for the call, and a
            # failed one fails the row (pytest exits 1 with its SUBFAILED line).
            if error is not None:
                draft.phases[SUBTESTS] = ("failed", False)
                failed = self._subtest_failures.setdefault(report.nodeid, [])
                failed.append((subtest_description(report), error))
            return True
        if error is not None and draft.error is None:
            draft.error = error
        if outcome == "rerun":
            draft.rerun = True
        draft.phases[report.when] = (outcome, hasattr(report, "wasxfail"))
        if getattr(report, "evalrows_interrupted", False):
            draft.phases[INTERRUPTED] = ("failed", False)
        if report.when == "teardown":
            del self.drafts[report.nodeid]
            self._finish(draft, report)
        return True

    def _finish(self, draft: RowDraft, report: pytest.TestReport) -> None:
        spans = self.carried_spans.pop(report.nodeid, [])
        end = report.stop
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
            if self.judging is not None:
                self.judging.forget(draft)
            return
        status = row_status(draft.phases)
        fields = building.row_fields(draft, status, self.attempt_id)
        if self.has_row_fields_hook:
            self.config.hook.pytest_evalrows_row_fields(item=draft.item, fields=fields)
        row = building.row_version(
            draft, status=status, end=end, attempt_id=self.attempt_id, fields=fields
        )
        self.totals.statuses[status] += 1
        self.totals.add_scores(row["scores"], status)
        if draft.plan.case_row_id is not None:  # a final execution only: reruns returned above
            self.totals.add_trial(draft.plan.case_row_id, status == "passed")
        if self.is_worker:  # the controller counts scores from the reports it receives
            report.evalrows_scores = row["scores"]  # type: ignore[attr-defined]
        spans.append(self._root_span(draft, status, end))
        spans.extend(draft.spans)
        draft.spans = []
        item = draft.item
        draft.item = None
        if item is not None:  # nothing holds a finished row for the rest of the session
            del item.stash[draft_key]
        if draft.plan.judges:  # judged from what is about to be sent, before it is
            self.session_judging().judge_row(draft.plan.judges, row, spans)
        self.send(Unit(row, spans))

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
