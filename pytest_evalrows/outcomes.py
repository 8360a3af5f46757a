"""From pytest's phase outcomes to a row's status. Pure."""

from __future__ import annotations

from collections.abc import Mapping

from .records import Status


def row_status(phases: Mapping[str, tuple[str, bool]]) -> Status:
    """The status of one execution from its phases: ``when -> (outcome, was_xfail)``.

    A setup failure is an error; a test skipped (by marker, in setup, or in the test) is
    skipped; a teardown failure turns a pass into an error and leaves a failure a failure.
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
    teardown, _ = phases.get("teardown", ("passed", False))
    if teardown == "failed" and status in ("passed", "xpassed", "skipped", "xfailed"):
        status = "error"
    return status
