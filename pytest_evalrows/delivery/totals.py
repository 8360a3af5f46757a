"""What is delivered together (a ``Unit``), and what one process delivered (its ``Totals``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.compare import counted_scores
from ..core.records import RowDoc, SpanDoc, WriteResult
from ..core.report import JudgmentCounts
from ..core.values import json_value

if TYPE_CHECKING:
    from .leftovers import Delivered


@dataclass(slots=True)
class Unit:
    """What is written together: a row version and the spans of its execution."""

    row: RowDoc | None
    spans: list[SpanDoc] = field(default_factory=list)


@dataclass
class Totals:
    """What one process recorded and delivered; the xdist controller merges its workers'."""

    written: WriteResult = field(default_factory=WriteResult)
    delivered_rows: set[str] = field(default_factory=set)
    # Rows still in the spool at the end, counted from the spool itself by the process that
    # ends the session (the xdist controller, after it delivered what its workers left).
    undelivered_rows: int = 0
    # Rows that could be neither stored nor spooled: (row id, why).
    lost_rows: list[tuple[str, str]] = field(default_factory=list)
    # Rows whose stale-span clean-up waits in the spool (from this or earlier sessions).
    cleanup_pending: int = 0
    leftover_rows: int = 0  # rows of earlier sessions delivered from the spool
    own_leftovers: int = 0  # this attempt's rows delivered from a worker's spool file
    reruns: int = 0  # executions a rerun plugin repeated: they leave stale spans
    errors: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    scores: dict[str, list[float]] = field(default_factory=dict)  # name -> [sum, count]
    resumed: int = 0
    # Requests an HTTP store made, by endpoint: a worker's reach the controller's summary.
    requests: Counter[str] = field(default_factory=Counter)
    # What this process's judges concluded, and what became of their evaluations.
    judgments: JudgmentCounts = field(default_factory=JudgmentCounts)
    # Cases run as trials: the case's row id (without "#k") -> [trials passed, trials run].
    trials: dict[str, list[int]] = field(default_factory=dict)

    def add_trial(self, case_row_id: str, passed: bool) -> None:
        counts = self.trials.setdefault(case_row_id, [0, 0])
        counts[0] += int(passed)
        counts[1] += 1

    def add_scores(self, scores: dict[str, float], status: str) -> None:
        """Count a finished row's scores as every aggregate does (``counted_scores``: a row
        in error counts as pass 0)."""
        for name, value in counted_scores(scores, status).items():
            total = self.scores.setdefault(name, [0.0, 0])
            total[0] += value
            total[1] += 1

    def add_leftovers(self, done: Delivered, project: str, experiment: str) -> None:
        """Count what delivering earlier spool files did. This attempt's rows count as written
        by it; earlier sessions' rows do not, but a late version that did not become the latest
        is said."""
        self.errors.extend(done.errors + done.problems)
        self.judgments.leftover += done.evaluations
        # A worker spooled them, counted as spooled; saved now, they are this session's.
        self.judgments.saved += done.own_evaluations
        self.judgments.spooled -= min(self.judgments.spooled, done.own_evaluations)
        self.written += done.own_written
        self.written.superseded_rows += done.written.superseded_rows
        key = (project, experiment)
        self.delivered_rows.update(row_id for *where, row_id in done.rows if tuple(where) == key)

    def to_json(self) -> dict[str, Any]:
        return {
            "written": asdict(self.written),
            "delivered_rows": sorted(self.delivered_rows),
            "lost_rows": self.lost_rows,
            "leftover_rows": self.leftover_rows,
            "errors": self.errors,
            "reruns": self.reruns,
            "resumed": self.resumed,
            "requests": dict(self.requests),
            "judgments": self.judgments.to_json(),
            "trials": self.trials,
        }

    def merge(self, data: dict[str, Any]) -> None:
        """Add a worker's totals. Statuses and scores are not merged: the controller counts
        them from the reports it sees, which include the rows of a worker that crashed.
        Undelivered rows neither: the controller counts what is left in the spool at the end."""
        self.written += WriteResult(**data["written"])
        self.delivered_rows.update(data["delivered_rows"])
        self.lost_rows.extend((row_id, why) for row_id, why in data["lost_rows"])
        self.leftover_rows += data["leftover_rows"]
        self.errors.extend(data["errors"])
        self.reruns += data["reruns"]
        # Every worker collects the whole suite and resumes the same rows.
        self.resumed = max(self.resumed, data["resumed"])
        self.requests.update(data["requests"])
        self.judgments.merge(data.get("judgments") or {})
        # Not the workers' trials: the controller counts those from the reports, as it
        # counts statuses, so that a crashed worker's trials are not lost with it.


def storable(unit: Unit) -> None:
    """Make every field of the unit's row and spans JSON-safe, in place."""
    if unit.row is not None:
        unit.row = {key: json_value(value)[0] for key, value in unit.row.items()}
    unit.spans = [{key: json_value(value)[0] for key, value in span.items()} for span in unit.spans]
