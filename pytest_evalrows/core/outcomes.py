"""From pytest's phase outcomes to a row's status. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .records import Status

# The phases key under which an execution notes that one of its subtests failed.
SUBTESTS = "subtests"
# A phase key for an execution cut short by an interrupt while its body ran (cases at once).
INTERRUPTED = "interrupted"


def row_status(phases: Mapping[str, tuple[str, bool]]) -> Status:
    """The status of one execution from its phases: ``when -> (outcome, was_xfail)``.

    A setup failure is an error; a test skipped (by marker, in setup, or in the test) is
    skipped; a failed subtest (unittest's ``subTest``, pytest's ``subtests``) fails the row
    whatever the test itself did after it; a teardown failure turns a pass into an error and
    leaves a failure a failure.
    """
    status: Status
    setup, setup_xfail = phases.get("setup", ("passed", False))
    if setup == "failed":
        status = "error"
    elif setup == "skipped":
        status = "xfailed" if setup_xfail else "skipped"
    else:
        call, call_xfail = phases.get("call", ("passed", False))
        if call == "failed":
            status = "failed"
        elif call == "skipped":
            status = "xfailed" if call_xfail else "skipped"
        else:
            status = "xpassed" if call_xfail else "passed"
    if INTERRUPTED in phases:  # cut short while running: neither passed nor failed
        return "error"
    if status != "error" and phases.get(SUBTESTS, ("passed", False))[0] == "failed":
        status = "failed"
    teardown, _ = phases.get("teardown", ("passed", False))
    if teardown == "failed" and status in ("passed", "xpassed", "skipped", "xfailed"):
        status = "error"
    return status


def is_subtest(report: Any) -> bool:
    """Whether a report is one subtest's (pytest's ``SubtestReport``, of unittest's
    ``subTest`` or of the ``subtests`` fixture): an extra report of the test's node id during
    its call phase. Told by shape: the package imports nothing of ``_pytest``."""
    context = getattr(report, "context", None)
    return context is not None and hasattr(context, "msg") and hasattr(context, "kwargs")


def subtest_description(report: Any) -> str:
    """How pytest names a subtest in its ``SUBFAILED`` line: ``[msg] (key=value, ...)``."""
    context = report.context
    parts = []
    if context.msg is not None:
        parts.append(f"[{context.msg}]")
    if context.kwargs:
        parts.append("(" + ", ".join(f"{k}={v}" for k, v in context.kwargs.items()) + ")")
    return " ".join(parts) or "(<subtest>)"
