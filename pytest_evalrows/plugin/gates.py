"""The rows as a whole, at the end of a recording session: the experiment's latest rows (read
once, after delivery), a baseline compared with them (``--eval-baseline``, read once), and the
gates (``--eval-fail-under``, ``--eval-max-regressions``) that set pytest's exit status.

The gates look at the latest versions of the rows this session collected (after ``-k`` and
``-m``, with the rows ``--eval-resume`` deselected), wherever and whenever they last ran. A gate
that cannot be checked (the store unread, rows still in the spool) fails: it never passes in
silence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from ..core.compare import compare, means, score_names, scores_of, summarize
from ..core.records import Experiment
from ..core.report import Findings
from ..delivery.delivery import Delivery
from ..delivery.totals import Totals
from ..errors import StoreError, UnknownExperimentError
from .settings import Settings

if TYPE_CHECKING:
    from ..core.records import RowScores

# A mean read back from the store may differ from the written one in its last bits.
_SAME = 1e-9


def find_baseline(delivery: Delivery, settings: Settings) -> Experiment | None:
    """The baseline experiment, looked up once at the start (by the xdist controller). An
    unknown one stops pytest with the experiments there are; a store that cannot be read
    now leaves it to the end."""
    name = settings.baseline
    store = delivery.store
    if name is None or store is None or delivery.store_down:
        return None
    try:
        experiments = store.list_experiments()
    except StoreError:
        return None
    if name == settings.experiment:
        # Read at the end, it would be this session's own rows: every row against itself.
        raise pytest.UsageError(
            f"evalrows: --eval-baseline {name!r} is the experiment this session records into; "
            "name an earlier one"
        )
    ours = [e for e in experiments if e.project == settings.project]
    for experiment in ours:
        if experiment.name == name:
            return experiment
    known = ", ".join(sorted(repr(e.name) for e in ours if e.name != settings.experiment))
    raise pytest.UsageError(
        f"evalrows: --eval-baseline {name!r}: no such experiment in project "
        f"{settings.project!r} of {delivery.store_display}; the experiments there: "
        f"{known or 'none besides this one'}"
    )


def conclude(
    delivery: Delivery,
    settings: Settings,
    *,
    attempt_id: str,
    collected: set[str],
    baseline: Experiment | None,
    undelivered: int,
) -> Findings:
    """Read the experiment's latest rows (and the baseline's), sum them up, check the gates."""
    found = Findings(baseline=settings.baseline, collected_rows=len(collected))
    latest = _read_latest(delivery, found)
    scope: list[RowScores] = []
    if latest is not None:
        summary = summarize(latest)
        found.experiment_rows = summary.rows
        found.experiment_means = summary.scores
        found.experiment_tokens, found.experiment_cost = summary.tokens, summary.cost
        mine = summarize(row for row in latest if row.attempt_id == attempt_id)
        found.session_tokens, found.session_cost = mine.tokens, mine.cost
        # The rows this session is about; every row when it collected none it knows of.
        scope = [row for row in latest if row.row_id in collected] if collected else latest
        if settings.baseline is not None:
            _compare(delivery, settings, baseline, scope, found)
    why = None
    if latest is None:
        unread = found.experiment_unread
        why = f"it cannot be checked: the experiment's rows could not be read ({unread})"
    elif undelivered:
        why = (
            f"it cannot be checked: {undelivered} rows of this session are not in the store "
            "(see above)"
        )
    elif not collected:
        why = "it cannot be checked: this session collected no row"
    elif unreadable := _unreadable(delivery, collected, scope):
        why = f"it cannot be checked: {unreadable}"
    _fail_under(settings, scope, why, found)
    _max_regressions(settings, why, found)
    return found


def gates_asked(settings: Settings) -> bool:
    return bool(settings.fail_under) or settings.max_regressions is not None


def unchecked(settings: Settings, why: str) -> Findings:
    """What the end says when it could not look at the rows at all: every gate fails."""
    found = Findings(baseline=settings.baseline, experiment_unread=why)
    _fail_under(settings, [], f"it cannot be checked: {why}", found)
    _max_regressions(settings, f"it cannot be checked: {why}", found)
    return found


def _read_latest(delivery: Delivery, found: Findings) -> list[RowScores] | None:
    store, experiment = delivery.store, delivery.experiment
    if delivery.store_down or store is None or experiment is None:
        found.experiment_unread = delivery.store_error or f"{delivery.store_display} is down"
        return None
    try:
        return store.latest_scores(experiment.id)
    except StoreError as exc:
        found.experiment_unread = str(exc)
    except Exception as exc:  # the report says so; the session's end goes on
        found.experiment_unread = f"reading the rows failed: {exc!r}"
    return None


def _compare(
    delivery: Delivery,
    settings: Settings,
    baseline: Experiment | None,
    scope: list[RowScores],
    found: Findings,
) -> None:
    """The scope's rows against the baseline's latest rows: those on one side only are
    counted (a row ``-k`` left out is one only the baseline has), not compared."""
    store = delivery.store
    assert store is not None and settings.baseline is not None
    try:
        if baseline is None:  # the store could not be read at the start
            baseline = store.get_experiment(settings.baseline, settings.project)
        rows = store.latest_scores(baseline.id)
    except UnknownExperimentError:
        found.baseline_unread = "no such experiment"
        return
    except StoreError as exc:
        found.baseline_unread = str(exc)
        return
    found.comparison = compare(
        rows, scope, a_name=settings.baseline, b_name=settings.experiment or ""
    ).to_json()


def _fail_under(
    settings: Settings, scope: list[RowScores], why: str | None, found: Findings
) -> None:
    if not settings.fail_under:
        return
    names = score_names(scope)
    by_name = means(scope)
    unknown = []
    for name, threshold in settings.fail_under:
        gate: dict[str, Any] = {
            "gate": "fail_under",
            "score": name,
            "threshold": threshold,
            "value": None,
            "rows": None,
            "passed": False,
            "why": why,
        }
        if why is None and name not in by_name:
            unknown.append(name)
            continue
        if why is None:
            gate["value"] = by_name[name]
            gate["rows"] = sum(1 for row in scope if name in scores_of(row))
            gate["passed"] = by_name[name] >= threshold - _SAME
        found.gates.append(gate)
    if unknown:
        listed = ", ".join(names) or "none"
        found.gate_usage_error = (
            f"--eval-fail-under names {', '.join(map(repr, unknown))}, a score no collected "
            f"row has; the scores there are: {listed}"
        )


def _max_regressions(settings: Settings, why: str | None, found: Findings) -> None:
    limit = settings.max_regressions
    if limit is None:
        return
    gate: dict[str, Any] = {
        "gate": "max_regressions",
        "score": None,
        "threshold": limit,
        "value": None,
        "rows": None,
        "passed": False,
        "why": why,
    }
    if why is None and found.comparison is None:
        gate["why"] = (
            f"it cannot be checked: baseline {settings.baseline!r} could not be read "
            f"({found.baseline_unread})"
        )
    elif why is None and found.comparison is not None:
        regressed = len(found.comparison["regressed"])
        gate["value"] = regressed
        gate["rows"] = found.comparison["rows"]["compared"]
        gate["passed"] = regressed <= limit
    found.gates.append(gate)


def exit_status(
    session: pytest.Session, settings: Settings, totals: Totals, findings: Findings | None
) -> None:
    """The exit status the user asked for: rows not delivered (``--eval-fail-on-undelivered``)
    or a failed gate fail a session that would have passed; a gate naming a score no row has
    is a usage error."""
    failed = pytest.ExitCode.TESTS_FAILED
    # A session that ran no test (every case resumed) is judged by its rows as any other.
    passing = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    undelivered = settings.fail_on_undelivered and (totals.undelivered_rows or totals.lost_rows)
    if findings is not None and findings.gate_usage_error is not None:
        if session.exitstatus in (*passing, failed):
            session.exitstatus = pytest.ExitCode.USAGE_ERROR
    elif session.exitstatus in passing and (
        undelivered or (findings.failed if findings is not None else gates_asked(settings))
    ):
        session.exitstatus = failed


def _unreadable(delivery: Delivery, collected: set[str], scope: list[RowScores]) -> str | None:
    """Why some collected rows are not among those read (a stored body that cannot be read,
    say): a gate over the others would pass on rows it did not see."""
    missing = sorted(collected - {row.row_id for row in scope})
    if not missing:
        return None
    named = ", ".join(repr(row_id) for row_id in missing[:3])
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    said = list(getattr(delivery.store, "unreadable", None) or [])
    because = f" ({said[0]})" if said else ""
    return f"{len(missing)} collected rows were not read: {named}{more}{because}"


def say_usage_error(session: pytest.Session, message: str) -> None:
    """A usage error an xdist worker found: said as pytest says its own, exit status 4."""
    session.exitstatus = pytest.ExitCode.USAGE_ERROR
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"ERROR: {message}", red=True)
