"""pytest-xdist: one attempt across the controller and its workers.

Registered only when xdist is installed and active, so its hooks are optional ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from . import states

if TYPE_CHECKING:
    from .recorder import Recorder


class XdistBridge:
    """The controller's side: hand the attempt to every worker, collect their totals."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        # Called for every worker, replacements for crashed ones included, before it starts.
        node.workerinput["evalrows_attempt_id"] = self.recorder.attempt_id
        node.workerinput["evalrows_started"] = self.recorder.started
        # The one read of the store's rows: every worker decides resume from the same data,
        # so they all collect the same tests, and none reads the store itself.
        node.workerinput["evalrows_states"] = states.for_workers(self.recorder.states)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        worker = getattr(getattr(node, "gateway", None), "id", "?")
        output = getattr(node, "workeroutput", None)
        if output is None:
            self._report_lost(node, worker)
        self.recorder.merge_worker(output, worker)
        if output is not None:
            # The controller collects nothing: the gates look at the rows its workers collected.
            self.recorder.end.collected.update(output.get("evalrows_collected") or ())
            # Every worker collects the same tests: one of them says it for all.
            self.recorder.usage_error = output.get("evalrows_usage_error") or (
                self.recorder.usage_error
            )

    def _report_lost(self, node: Any, worker: str) -> None:
        """A worker died while running cases at once (--eval-concurrency): xdist reports one
        test of it as crashed, so each case it was running is reported here, as xdist reports
        its own, and recorded as an error row."""
        hook = self.recorder.config.hook
        for nodeid, location in self.recorder.workers.lost_with(worker):
            path = nodeid.split("::")[0]
            report = pytest.TestReport(
                nodeid=nodeid,
                location=tuple(location) if location else (path, None, path),
                keywords={},
                outcome="failed",
                longrepr=f"worker {worker!r} crashed while running {nodeid!r} (with other "
                "cases at once: --eval-concurrency)",
                when="???",  # type: ignore[arg-type]
            )
            report.node = node  # type: ignore[attr-defined]
            hook.pytest_runtest_logreport(report=report)
