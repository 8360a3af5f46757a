"""What a recording session did, as one value: the terminal summary renders it and the
attempt record keeps it, so ``evalrows attempts --json`` tells what the summary told.

Pure: imports nothing of the package and no pytest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from . import report_tables as tables

# Why new and updated counts are not known for certain.
CRASHED = "a worker crashed; counted in the store"
UNREAD = "the store could not be read first"

# How many judge failures the report names (the rest are counted).
_JUDGE_ERRORS_SHOWN = 3


@dataclass
class JudgmentCounts:
    """What the judges of one process (and, merged, of its xdist workers) concluded."""

    succeeded: int = 0
    failed: int = 0  # evaluations that got no judgment: the judge raised or timed out
    passed: int = 0  # judgments that said passed
    not_passed: int = 0  # judgments that said not passed
    saved: int = 0  # evaluations the store took
    spooled: int = 0  # kept in the spool: the store could not take them now
    unsaved: int = 0  # neither: the store keeps no evaluations, or the spool failed
    unsaved_why: str | None = None
    leftover: int = 0  # earlier sessions' evaluations saved from the spool
    scores: dict[str, list[float]] = field(default_factory=dict)  # judge -> [sum, count]
    # The first few kinds of failure: [judge, error, how many, the first row's id].
    failures: list[list[Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.succeeded + self.failed

    def add(
        self,
        judge_id: str,
        row_id: str,
        *,
        error: str | None,
        passed: bool | None,
        score: float | None,
    ) -> None:
        """Count one finished evaluation (``error`` set for a failed one)."""
        if error is not None:
            self.failed += 1
            self._failure([judge_id, error, 1, row_id])
            return
        self.succeeded += 1
        if passed is not None:
            if passed:
                self.passed += 1
            else:
                self.not_passed += 1
        if score is not None:
            total = self.scores.setdefault(judge_id, [0.0, 0])
            total[0] += score
            total[1] += 1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def merge(self, data: dict[str, Any]) -> None:
        """Add another process's counts (an xdist worker's)."""
        for name in ("succeeded", "failed", "passed", "not_passed", "saved", "spooled", "leftover"):
            setattr(self, name, getattr(self, name) + data.get(name, 0))
        self.unsaved += data.get("unsaved", 0)
        self.unsaved_why = self.unsaved_why or data.get("unsaved_why")
        for judge, (total, count) in data.get("scores", {}).items():
            mine = self.scores.setdefault(judge, [0.0, 0])
            mine[0] += total
            mine[1] += count
        for failure in data.get("failures", []):
            self._failure(list(failure))

    def _failure(self, failure: list[Any]) -> None:
        """Count a kind of failure: the same judge's same error is one line, however often."""
        judge, error, count, _ = failure
        for known in self.failures:
            if known[:2] == [judge, error]:
                known[2] += count
                return
        if len(self.failures) < _JUDGE_ERRORS_SHOWN:
            self.failures.append(failure)


@dataclass(kw_only=True)
class Findings:
    """What the end of a session found of the rows as a whole (``plugin.gates``): fields of
    the ``SessionReport`` too, copied into it by ``fill``."""

    # The experiment's latest rows, read once after delivery (``experiment_unread`` says why
    # they could not be): their number, score means, tokens and cost; and this attempt's.
    experiment_rows: int | None = None
    experiment_means: dict[str, float] = field(default_factory=dict)
    experiment_tokens: int | None = None
    experiment_cost: float | None = None
    experiment_unread: str | None = None
    session_tokens: int | None = None
    session_cost: float | None = None
    collected_rows: int | None = None  # rows this session collected (resumed ones included)
    # ``--eval-baseline``: its name, and the comparison over the collected rows
    # (``core.compare.Comparison.to_json()``), or why there is none.
    baseline: str | None = None
    comparison: dict[str, Any] | None = None
    baseline_unread: str | None = None
    # Each gate: {"gate", "score", "threshold", "value", "rows", "passed", "why"}.
    gates: list[dict[str, Any]] = field(default_factory=list)
    gate_usage_error: str | None = None  # a gate naming a score no collected row has

    def fill(self, report: Findings) -> None:
        for each in fields(Findings):
            setattr(report, each.name, getattr(self, each.name))

    @property
    def failed(self) -> bool:
        return any(not gate["passed"] for gate in self.gates)


@dataclass
class SessionReport(Findings):
    """Every number the end of a session prints, each one counted, not guessed."""

    experiment: str
    project: str
    store: str  # the store's display form: never a secret
    attempt_id: str
    rows_written: int = 0
    # None when unknown (``unknown_why`` says why): a guess is never saved as a count.
    new_rows: int | None = 0
    updated_rows: int | None = 0
    unknown_why: str | None = None
    own_leftovers: int = 0  # this attempt's rows delivered from its workers' spool files
    crashed_workers: int = 0
    resumed: int = 0
    resume_mode: str = "off"
    resume_seconds: float = 0.0
    leftover_rows: int = 0  # rows of earlier sessions delivered from the spool
    superseded_rows: int = 0
    # None when no clean-up ran (kept on request, nothing delivered, or it failed).
    stale_spans_removed: int | None = None
    cleanup_seconds: float = 0.0
    stale_spans_kept: bool = False
    cleanup_pending: int = 0  # rows whose stale spans are left, their clean-up spooled
    requests: dict[str, int] = field(default_factory=dict)
    mean_scores: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    store_error: str | None = None
    errors: list[str] = field(default_factory=list)
    undelivered_rows: int = 0
    spool_dir: str = "the spool"
    lost_rows: list[tuple[str, str]] = field(default_factory=list)  # (row id, why)
    # Judges' evaluations of this session's rows (``@pytest.mark.eval(judges=...)`` and
    # ``eval_row.judge``): how many there were, and what became of them.
    judgments: int = 0
    judgments_succeeded: int = 0
    judgments_failed: int = 0
    judgments_passed: int = 0
    judgments_not_passed: int = 0
    judgments_saved: int = 0
    judgments_spooled: int = 0
    judgments_unsaved: int = 0
    judgments_unsaved_why: str | None = None
    judgments_leftover: int = 0  # earlier sessions' judgments saved from the spool
    judge_mean_scores: dict[str, float] = field(default_factory=dict)  # by judge id
    # The first few kinds of failure: [judge, error, how many, the first row's id].
    judgment_failures: list[list[Any]] = field(default_factory=list)
    # Cases run as trials: case row id -> [trials passed, trials run].
    trials: dict[str, list[int]] = field(default_factory=dict)

    @property
    def gates_failed(self) -> list[dict[str, Any]]:
        return [gate for gate in self.gates if not gate["passed"]]

    def add_judgments(self, counts: JudgmentCounts) -> None:
        """Take the judges' counts into the report."""
        self.judgments = counts.total
        self.judgments_succeeded = counts.succeeded
        self.judgments_failed = counts.failed
        self.judgments_passed = counts.passed
        self.judgments_not_passed = counts.not_passed
        self.judgments_saved = counts.saved
        self.judgments_spooled = counts.spooled
        self.judgments_unsaved = counts.unsaved
        self.judgments_unsaved_why = counts.unsaved_why
        self.judgments_leftover = counts.leftover
        self.judge_mean_scores = {
            judge: total / count for judge, (total, count) in counts.scores.items() if count
        }
        self.judgment_failures = [list(failure) for failure in counts.failures]

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict, as saved with the attempt."""
        data = asdict(self)
        data["lost_rows"] = [list(lost) for lost in self.lost_rows]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionReport:
        # Keys a newer version added are ignored: an older reader still reads the rest.
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["lost_rows"] = [(row_id, why) for row_id, why in data.get("lost_rows", [])]
        return cls(**values)

    def lines(self, short: bool = False) -> list[tuple[str, bool]]:
        """The summary's lines, each with whether it is a problem (shown red). ``short``
        (``-q``): who and what was written, one line of scores, the gates and the problems."""
        out: list[tuple[str, bool]] = []

        def say(line: str, red: bool = False) -> None:
            out.append((line, red))

        say(f"experiment {self.experiment!r} (project {self.project!r}) in {self.store}")
        if self.unknown_why is not None:
            detail = f"new or updated unknown: {self.unknown_why}"
        else:
            detail = f"{self.new_rows} new, {self.updated_rows} updated"
        say(f"attempt {self.attempt_id}: {self.rows_written} rows written ({detail})")
        if short:
            problems = [(line, True) for line, red in self._full_lines() if red]
            return out + tables.short_lines(self) + problems
        return out + self._full_lines()

    def _full_lines(self) -> list[tuple[str, bool]]:
        out: list[tuple[str, bool]] = []

        def say(line: str, red: bool = False) -> None:
            out.append((line, red))

        say(tables.rows_run(self))
        if self.own_leftovers:
            say(
                f"of which {self.own_leftovers} rows its workers had not delivered were "
                "delivered from their spool files"
            )
        if self.crashed_workers:
            say(f"{self.crashed_workers} worker(s) crashed; their rows were recovered")
        if self.resumed:
            took = f" (decided in {self.resume_seconds:.2f} s)" if self.resume_seconds else ""
            say(
                f"resumed: {self.resumed} cases whose row already {self.resume_mode} "
                f"were not run again{took}"
            )
        if self.leftover_rows:
            say(f"delivered {self.leftover_rows} rows an earlier session left in the spool")
        if self.judgments_leftover:
            say(f"saved {self.judgments_leftover} judgments an earlier session left in the spool")
        if self.superseded_rows:
            say(
                f"{self.superseded_rows} delivered versions were older than the stored latest "
                "one: kept in history, not the latest"
            )
        if self.stale_spans_removed is not None:
            say(
                f"stale spans removed: {self.stale_spans_removed} (in {self.cleanup_seconds:.2f} s)"
            )
        elif self.stale_spans_kept:
            say("stale spans kept (--eval-keep-stale-spans)")
        if self.requests:
            counts = ", ".join(f"{name} {count}" for name, count in sorted(self.requests.items()))
            say(f"requests to the store: {counts}")
        if self.mean_scores:
            means = ", ".join(
                f"{name} {mean:.3f}" for name, mean in sorted(self.mean_scores.items())
            )
            say(f"mean scores: {means}")
        out.extend(tables.score_lines(self))
        out.extend(tables.trial_lines(self))
        if self.judgments:
            self._judgment_lines(say)
        if self.store_error:
            say(f"store unavailable: {self.store_error}", red=True)
        for error in dict.fromkeys(self.errors):
            say(f"error: {error}", red=True)
        if self.undelivered_rows:
            say(
                f"{self.undelivered_rows} rows not delivered: kept in {self.spool_dir}; the next "
                "recording session delivers them, or run `evalrows flush`",
                red=True,
            )
        if self.cleanup_pending:
            say(
                f"stale spans left under {self.cleanup_pending} rows: their clean-up is kept in "
                f"{self.spool_dir}; the next recording session or `evalrows flush` finishes it, "
                f"or run `evalrows gc {self.experiment}`",
                red=True,
            )
        if self.lost_rows:
            say(f"{len(self.lost_rows)} rows could be neither stored nor kept in the spool:", True)
            for row_id, why in self.lost_rows:
                say(f"  row {row_id!r} {why}", red=True)
        out.extend(tables.gate_lines(self))
        return out

    def _judgment_lines(self, say: Callable[..., None]) -> None:
        failed = f", {self.judgments_failed} failed" if self.judgments_failed else ""
        line = f"judgments: {self.judgments} ({self.judgments_succeeded} succeeded{failed})"
        said = self.judgments_passed + self.judgments_not_passed
        if said:
            line += f"; passed {self.judgments_passed} of {said}"
        if self.judge_mean_scores:
            means = ", ".join(
                f"judge:{judge} {mean:.3f}"
                for judge, mean in sorted(self.judge_mean_scores.items())
            )
            line += f"; mean score by judge: {means}"
        say(line)
        for judge, error, count, row_id in self.judgment_failures:
            rows = f"row {row_id!r}" if count == 1 else f"{count} rows (the first {row_id!r})"
            say(f"  judge {judge!r} failed on {rows}: {error}", red=True)
        more = self.judgments_failed - sum(failure[2] for failure in self.judgment_failures)
        if more > 0:
            say(f"  and {more} more failed judgment(s): `evalrows judgments` lists them", True)
        if self.judgments_spooled:
            say(
                f"{self.judgments_spooled} judgments not saved: kept in {self.spool_dir}; the "
                "next recording session saves them, or run `evalrows flush`",
                red=True,
            )
        if self.judgments_unsaved:
            why = self.judgments_unsaved_why or "they could not be saved"
            say(f"{self.judgments_unsaved} judgments not saved: {why}", red=True)
