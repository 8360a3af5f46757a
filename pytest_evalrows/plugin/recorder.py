"""The session's recorder: the pytest-facing plugin object of a recording session.

It owns the parts that do the work and forwards the hooks to them: ``items.ItemRows`` (each
item's row), ``workers.WorkerRows`` (the xdist controller's books of its workers' rows) and
``session_end.SessionEnd`` (leftovers, crashed rows, clean-up, the attempt, the report).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Generator
from typing import Any

import pytest

from ..core import ids
from ..core.records import Attempt, RowState, SpanDoc
from ..core.redaction import redacted
from ..core.report import SessionReport
from ..core.row import RowPlan
from ..delivery.delivery import Delivery
from ..delivery.spool import default_spool_dir, session_name
from ..delivery.totals import Totals, Unit
from ..errors import StoreAuthError
from ..stores import open_store
from . import gates, gitinfo, states
from .collection import plan_items, resume_filter, warn_changed_params
from .items import ItemRows, draft_key
from .session_end import SessionEnd
from .settings import Settings
from .summary import write_summary
from .tracing import RowSpanProcessor, Tracing
from .workers import WorkerRows

__all__ = ["Recorder", "draft_key"]


class Recorder:
    """Registered as a plugin when recording is on; one per pytest process.

    Under xdist every worker records and delivers the rows it runs; the controller makes the
    attempt, records rows of crashed workers, merges the workers' totals and cleans up once.
    """

    #: Where an item's running draft is kept: the ``eval_row`` fixture reads it.
    draft_key = draft_key

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
        self.plans: list[RowPlan] = []
        # The latest stored state of every row, read once by the session's first process
        # and handed to xdist workers: for resume and the changed-parameters check.
        self.states: dict[str, RowState] | None = None
        self.tracing_note = "span capture off"
        # A usage error found in an xdist worker's collection, said by the controller.
        self.usage_error: str | None = None
        names = {"experiment": self.experiment_name, "attempt_id": self.attempt_id}
        self.items = ItemRows(
            config, is_worker=self.is_worker, totals=self.totals, send=self._send, **names
        )
        self.workers = WorkerRows(totals=self.totals, **names)
        self.end = SessionEnd(
            settings, is_worker=self.is_worker, totals=self.totals, workers=self.workers, **names
        )
        self.end.items = self.items

    @property
    def tracing(self) -> Tracing | None:
        return self.items.tracing

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
            tracing = Tracing(processor, self.settings.tracing)
            self.items.tracing = self.end.tracing = tracing
            self.tracing_note = tracing.connect()
        self.delivery = _delivery(self.config, self.settings, self.attempt_id, self.totals)
        self.delivery.on_own_leftovers = self.workers.own_rows_from_spool
        self.end.delivery = self.delivery
        commit, branch = gitinfo.git_head(self.settings.anchor)
        try:
            # Workers leave earlier sessions' spool files to the controller.
            self.delivery.start(git_commit=commit, git_branch=branch, leftovers=not self.is_worker)
        except StoreAuthError as exc:
            # No money is spent on a run that cannot be recorded.
            raise pytest.UsageError(f"evalrows: {exc}") from None
        if self.is_worker:
            self.states = states.inherited(self.config, self.delivery)
        else:
            self.started = time.time()
            self.states = states.read(self.delivery, self.settings, self.totals)
            # An unknown baseline stops the session before any test costs anything.
            self.end.baseline = gates.find_baseline(self.delivery, self.settings)
            self.end.attempt = Attempt(
                id=self.attempt_id,
                experiment_id=self.delivery.experiment.id if self.delivery.experiment else "",
                started=self.started,
                host=socket.gethostname(),
                args=redacted(self.config.invocation_params.args),
                git_commit=commit,
                git_branch=branch,
            )
            self.end.save_attempt()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        try:
            self.plans = plan_items(items, self.settings.anchor, config)
        except pytest.UsageError as exc:
            if not self.is_worker:
                raise
            # Raised in an xdist worker it would crash it (an INTERNALERROR): the worker runs
            # nothing, and the controller says it and exits as for a usage error.
            self.usage_error, items[:] = str(exc), []
            return
        # The gates look at every collected row, those resume deselects included.
        self.end.collected.update(plan.row_id for plan in self.plans)
        # Asked once: calling a hook nobody implements still costs per row.
        self.items.has_row_fields_hook = bool(
            config.hook.pytest_evalrows_row_fields.get_hookimpls()
        )
        stored = self.states or {}
        if self.plans and stored:
            warn_changed_params(self.plans, stored)
        if self.settings.resume != "off" and stored:
            started = time.perf_counter()
            keep, skip = resume_filter(items, stored, self.settings.resume)
            if skip:
                items[:] = keep
                config.hook.pytest_deselected(items=skip)
                self.totals.resumed = len(skip)
            self.end.resume_seconds = time.perf_counter() - started

    # -- one item: forwarded to ItemRows (the controller's reports of workers' rows to
    # WorkerRows) ---------------------------------------------------------------------------

    # Wrappers, registered last and so outermost: the row exists and its context is current
    # before any other plugin's setup runs (one may skip, fail, or open a span of its own),
    # and the context is left after every teardown, even one an interrupt cut short.
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        self.items.setup(item)
        return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        try:
            return (yield)
        finally:
            self.items.teardown_done(item)

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

    # A plain hook where a wrapper is not needed: it is paid for on every phase of every row.
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> None:
        self.items.phase_done(item, call)

    # tryfirst: a worker's scores must be on the report before xdist sends it on.
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not self.items.logreport(report) and not self.is_worker:
            self.workers.track(report)

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
            # The controller collects nothing: its gates look at the rows workers collected.
            workeroutput["evalrows_collected"] = sorted(self.end.collected)
            workeroutput["evalrows_usage_error"] = self.usage_error
            return
        gates.exit_status(session, self.settings, self.totals, self.end.findings)
        if self.usage_error is not None:
            gates.say_usage_error(session, self.usage_error)

    def finish(self) -> None:
        self.end.finish()

    def merge_worker(self, output: dict[str, Any] | None, worker: str) -> None:
        """Controller side: add a finished worker's totals (None when it crashed)."""
        self.workers.merge_worker(output, worker)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.finish()
        if self.delivery is not None:
            self.delivery.close()

    # -- summary -------------------------------------------------------------------------

    def report(self) -> SessionReport:
        """What this session did, as the summary prints it and the attempt keeps it."""
        return self.end.report()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write_summary(self.report(), terminalreporter, self.settings.report)


def _delivery(
    config: pytest.Config, settings: Settings, attempt_id: str, totals: Totals
) -> Delivery:
    """The session's delivery to its store (the ``pytest_evalrows_make_store`` hook's, or the
    one its URL names), spooling to this process's own file."""
    url = settings.store
    spool_dir = settings.spool or default_spool_dir(settings.anchor)

    def make_store() -> Any:
        hook = config.hook.pytest_evalrows_make_store
        return hook(config=config, url=url) or open_store(
            url,
            api_key=settings.api_key,
            timeout=settings.http_timeout,
            retries=settings.http_retries,
        )

    assert settings.experiment is not None
    return Delivery(
        open_store=make_store,
        store_display=url.display(),
        project=settings.project,
        experiment=settings.experiment,
        spool_dir=spool_dir,
        spool_name=session_name(attempt_id),
        totals=totals,
        attempt_id=attempt_id,
    )
