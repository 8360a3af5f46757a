"""The session's recorder: each eval item's row from setup to store, and the session's books."""

from __future__ import annotations

import socket
import time
import uuid
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

from . import gitinfo, ids
from .collection import plan_items, plan_key, warn_changed_params
from .errors import StoreError
from .models import (
    Attempt,
    ErrorInfo,
    Experiment,
    Metrics,
    RowVersion,
    SpanRecord,
    WriteResult,
)
from .outcomes import row_status
from .row import UNSET, RowDraft, RowPlan
from .settings import Settings
from .store.base import Store
from .store.urls import open_store
from .tracing import ActiveRow, RowSpanProcessor, Tracing
from .writer import BatchWriter

draft_key = pytest.StashKey[RowDraft]()
_execution_key = pytest.StashKey[int]()
_active_key = pytest.StashKey[ActiveRow]()

_TRACEBACK_CHARS = 4_000
_MESSAGE_CHARS = 2_000


@dataclass
class Unit:
    """What is written together: a row version and the spans of its execution."""

    row: RowVersion | None
    spans: list[SpanRecord] = field(default_factory=list)


@dataclass
class Delivery:
    """What the session delivered, filled in by the writer thread."""

    written: WriteResult = field(default_factory=WriteResult)
    delivered_rows: set[str] = field(default_factory=set)
    undelivered: list[Unit] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Recorder:
    """Registered as a plugin when recording is on; one per pytest process."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        assert settings.experiment is not None
        self.experiment_name: str = settings.experiment
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        self.is_worker = workerinput is not None
        inherited = workerinput.get("evalrows_attempt_id") if workerinput else None
        self.attempt_id: str = settings.attempt_id or inherited or ids.new_attempt_id()
        self.store: Store | None = None
        self.store_error: str | None = None
        self.experiment: Experiment | None = None
        self.attempt: Attempt | None = None
        self.writer: BatchWriter[Unit] | None = None
        self.delivery = Delivery()
        self.plans: list[RowPlan] = []
        self.drafts: dict[str, RowDraft] = {}
        self.carried_spans: dict[str, list[SpanRecord]] = {}
        self.statuses: Counter[str] = Counter()
        self.score_totals: dict[str, list[float]] = {}
        self.finished = False
        self.has_row_fields_hook = False
        self.tracing: Tracing | None = None
        self.tracing_note = "span capture off"
        self.stale_spans_removed: int | None = None

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
        if self.settings.tracing != "off":
            processor = RowSpanProcessor(self.attempt_id, self._unowned_span, self._late_span)
            self.tracing = Tracing(processor, self.settings.tracing)
            self.tracing_note = self.tracing.connect()
        commit, branch = gitinfo.git_head(self.settings.anchor)
        try:
            store = self.config.hook.pytest_evalrows_make_store(
                config=self.config, url=self.settings.store
            ) or open_store(self.settings.store)
            self.store = store
            self.experiment = store.get_or_create_experiment(
                self.settings.project, self.experiment_name, git_commit=commit, git_branch=branch
            )
        except StoreError as exc:
            self.store_error = str(exc)
            return
        self.attempt = Attempt(
            id=self.attempt_id,
            experiment_id=self.experiment.id,
            started=time.time(),
            host=socket.gethostname(),
            args=list(self.config.invocation_params.args),
            git_commit=commit,
            git_branch=branch,
        )
        if not self.is_worker:
            self._save_attempt()
        self.writer = BatchWriter(self._deliver)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        self.plans = plan_items(items, self.settings.anchor, config)
        # Asked once: calling a hook nobody implements still costs per row.
        self.has_row_fields_hook = bool(config.hook.pytest_evalrows_row_fields.get_hookimpls())
        if self.plans and self.store is not None and self.experiment is not None:
            try:
                stored = self.store.latest_states(self.experiment.id)
            except StoreError as exc:
                self.store_error = str(exc)
            else:
                warn_changed_params(self.plans, stored)

    # -- one item ------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        plan = item.stash.get(plan_key, None)
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
            active = item.stash.get(_active_key, None)
            if active is not None and self.tracing is not None:
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

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.excinfo is not None and report.failed:
            draft = item.stash.get(draft_key, None)
            if draft is not None and draft.error is None:
                draft.error = _error_info(call.excinfo, item)
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        draft = self.drafts.get(report.nodeid)
        if draft is None:
            return
        # pytest-rerunfailures reports an execution it will repeat with outcome "rerun".
        outcome: str = report.outcome
        if outcome == "rerun":
            draft.rerun = True
        draft.phases[report.when] = (outcome, hasattr(report, "wasxfail"))
        if report.when == "teardown":
            del self.drafts[report.nodeid]
            self._finish(draft, report)

    def _finish(self, draft: RowDraft, report: pytest.TestReport) -> None:
        plan = draft.plan
        spans = self.carried_spans.pop(report.nodeid, [])
        if draft.rerun:
            # An execution that a rerun plugin will repeat: its spans go with the final
            # execution's row, to be cleaned once that row is written.
            spans.append(self._root_span(draft, "rerun", report.stop))
            spans.extend(draft.spans)
            draft.spans = []
            self.carried_spans[report.nodeid] = spans
            return
        status = row_status(draft.phases)
        scores = dict(draft.scores)
        if status in ("passed", "failed"):
            scores.setdefault("pass", 1.0 if status == "passed" else 0.0)
        metadata: dict[str, Any] = {
            **draft.metadata,
            "nodeid": plan.nodeid,
            "attemptId": self.attempt_id,
            "execution": draft.execution,
            "params_hash": plan.params_hash,
            "markers": plan.markers,
        }
        truncated = dict(draft.truncated)
        if plan.input_truncated is not None and draft.input is UNSET:
            truncated["input"] = plan.input_truncated
        if truncated:
            metadata["truncated"] = truncated
        fields: dict[str, Any] = {
            "input": plan.input if draft.input is UNSET else draft.input,
            "output": draft.output,
            "expected": draft.expected,
            "scores": scores,
            "metadata": metadata,
            "tags": list(draft.tags),
        }
        if self.has_row_fields_hook:
            self.config.hook.pytest_evalrows_row_fields(item=draft.item, fields=fields)
        end = report.stop
        row = RowVersion.model_construct(
            row_id=plan.row_id,
            version_id=str(uuid.uuid4()),
            nodeid=plan.nodeid,
            attempt_id=self.attempt_id,
            execution=draft.execution,
            status=status,
            error=draft.error if status in ("failed", "error") else None,
            metrics=Metrics.model_construct(
                start=draft.start, end=end, duration=max(0.0, end - draft.start)
            ),
            root_span_id=ids.trace_id_hex(draft.trace_id),
            span_id=ids.span_id_hex(draft.span_id),
            version=None,
            created=None,
            **fields,
        )
        self.statuses[status] += 1
        for name, value in row.scores.items():
            self.score_totals.setdefault(name, []).append(value)
        if draft.prompt_tokens or draft.completion_tokens:
            row.metrics.prompt_tokens = draft.prompt_tokens
            row.metrics.completion_tokens = draft.completion_tokens
            row.metrics.tokens = draft.prompt_tokens + draft.completion_tokens
        spans.append(self._root_span(draft, status, end))
        spans.extend(draft.spans)
        draft.spans = []
        self._send(Unit(row, spans))

    def _root_span(self, draft: RowDraft, status: str, end: float) -> SpanRecord:
        """The execution's own span: the root its children hang under."""
        item = draft.item
        row_id = draft.plan.row_id
        return SpanRecord.model_construct(
            span_id=ids.span_id_hex(draft.span_id),
            root_span_id=ids.trace_id_hex(draft.trace_id),
            span_parents=[],
            row_id=row_id,
            attempt_id=self.attempt_id,
            execution=draft.execution,
            name=item.name if item is not None else row_id,
            kind="internal",
            start=draft.start,
            end=end,
            status="ok" if status in ("passed", "xfailed", "skipped") else "error",
            attributes={
                "evalrows.attempt_id": self.attempt_id,
                "evalrows.row_id": row_id,
                "evalrows.experiment": self.experiment_name,
                "evalrows.execution": draft.execution,
                "evalrows.status": status,
            },
            events=[],
        )

    def _unowned_span(self, record: SpanRecord) -> None:
        self._send(Unit(None, [record]))

    def _late_span(self, row: ActiveRow, record: SpanRecord) -> None:
        """A span that ended after its row was finished (a thread outliving the test)."""
        self._send(Unit(None, [record]))

    # -- delivery ------------------------------------------------------------------------

    def _send(self, unit: Unit) -> None:
        if self.writer is None or self.writer.closed:
            self.delivery.undelivered.append(unit)
        else:
            self.writer.put(unit)

    def _deliver(self, batch: list[Unit]) -> None:
        """Runs on the writer thread: one transaction for the whole batch."""
        assert self.store is not None
        assert self.experiment is not None
        rows = [unit.row for unit in batch if unit.row is not None]
        spans = [span for unit in batch for span in unit.spans]
        try:
            result = self.store.write(self.experiment.id, rows, spans)
        except StoreError as exc:
            self.delivery.undelivered.extend(batch)
            self.delivery.errors.append(str(exc))
            return
        written = self.delivery.written
        written.new_rows += result.new_rows
        written.updated_rows += result.updated_rows
        written.duplicate_rows += result.duplicate_rows
        written.spans += result.spans
        self.delivery.delivered_rows.update(row.row_id for row in rows)

    # -- session end ---------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.finish()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.tracing is not None:
            self.tracing.flush()
        if self.writer is not None:
            self.writer.close()
            if self.writer.crash is not None:
                self.delivery.errors.append(f"the writer failed: {self.writer.crash!r}")
        if not self.is_worker:
            self._clean_stale_spans()
        if self.attempt is not None and not self.is_worker:
            self.attempt.ended = time.time()
            self.attempt.counts = dict(self.statuses)
            self.attempt.delivered = not self.delivery.undelivered
            self._save_attempt()

    def _clean_stale_spans(self) -> None:
        """Delete the spans earlier attempts and executions left under the rows this session
        delivered. Runs after delivery, only for rows whose write went through: a row that
        failed to write keeps every span it had."""
        rows = self.delivery.delivered_rows
        if self.settings.keep_stale_spans or not rows:
            return
        assert self.store is not None and self.experiment is not None
        try:
            removed = self.store.delete_stale_spans(self.experiment.id, rows)
        except StoreError as exc:
            self.delivery.errors.append(str(exc))
            return
        self.stale_spans_removed = len(removed)

    def _save_attempt(self) -> None:
        assert self.store is not None
        assert self.attempt is not None
        try:
            self.store.save_attempt(self.attempt)
        except StoreError as exc:
            self.delivery.errors.append(str(exc))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.finish()
        if self.store is not None:
            self.store.close()
            self.store = None

    # -- summary -------------------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        terminalreporter.write_sep("-", "evalrows")
        write(
            f"experiment {self.experiment_name!r} (project {self.settings.project!r}) "
            f"in {self.settings.store.display()}"
        )
        written = self.delivery.written
        total = written.new_rows + written.updated_rows
        write(
            f"attempt {self.attempt_id}: {total} rows written "
            f"({written.new_rows} new, {written.updated_rows} updated)"
        )
        if self.stale_spans_removed is not None:
            write(f"stale spans removed: {self.stale_spans_removed}")
        elif self.settings.keep_stale_spans:
            write("stale spans kept (--eval-keep-stale-spans)")
        if self.score_totals:
            means = ", ".join(
                f"{name} {sum(values) / len(values):.3f}"
                for name, values in sorted(self.score_totals.items())
            )
            write(f"mean scores: {means}")
        if self.store_error:
            write(f"store unavailable: {self.store_error}", red=True)
        for error in dict.fromkeys(self.delivery.errors):
            write(f"write failed: {error}", red=True)
        lost = sum(1 for unit in self.delivery.undelivered if unit.row is not None)
        if lost:
            write(f"{lost} rows were not delivered", red=True)


def _error_info(excinfo: pytest.ExceptionInfo[BaseException], item: pytest.Item) -> ErrorInfo:
    def from_test_file(info: pytest.ExceptionInfo[BaseException]) -> Any:
        # Start at the test's own file, as pytest's report does, and honour __tracebackhide__.
        return info.traceback.cut(path=item.path).filter(info)

    try:
        traceback = str(excinfo.getrepr(style="short", chain=False, tbfilter=from_test_file))
    except Exception:  # a broken __repr__ somewhere in the frames
        traceback = ""
    if len(traceback) > _TRACEBACK_CHARS:
        traceback = "..." + traceback[-_TRACEBACK_CHARS:]
    try:
        message = str(excinfo.value)
    except Exception:
        message = f"<{excinfo.typename}: str() failed>"
    return ErrorInfo(type=excinfo.typename, message=message[:_MESSAGE_CHARS], traceback=traceback)
