"""The terminal summary of a recording session, rendered from its ``SessionReport``:
``--eval-report=full`` (``-q`` shortens it) or ``none`` (only failed gates, in one line)."""

from __future__ import annotations

from typing import Any

from ..core.report import SessionReport
from ..core.report_tables import gates_failed_line


def write_summary(report: SessionReport, terminalreporter: Any, mode: str = "full") -> None:
    if mode == "none":
        # A gate that changed the exit status is always said.
        line = gates_failed_line(report)
        if line is not None:
            terminalreporter.write_line(line, red=True)
        return
    short = getattr(terminalreporter, "verbosity", 0) < 0
    terminalreporter.write_sep("-", "evalrows")
    for line, red in report.lines(short=short):
        if red:
            terminalreporter.write_line(line, red=True)
        else:
            terminalreporter.write_line(line)
