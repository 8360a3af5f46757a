"""The terminal summary of a recording session, rendered from its ``SessionReport``."""

from __future__ import annotations

from typing import Any

from ..core.report import SessionReport


def write_summary(report: SessionReport, terminalreporter: Any) -> None:
    terminalreporter.write_sep("-", "evalrows")
    for line, red in report.lines():
        if red:
            terminalreporter.write_line(line, red=True)
        else:
            terminalreporter.write_line(line)
