"""The report's lines about the rows as a whole: what ran, the score table (this session, the
experiment's latest rows, a baseline), trials and gates. ``SessionReport.lines`` puts them in.

Pure: imports nothing of the package, and no pytest. Each function takes a
``report.SessionReport`` (typed ``Any``: ``report`` imports this module).
"""

from __future__ import annotations

from typing import Any

SessionReport = Any

Line = tuple[str, bool]  # the text, and whether it is a problem (shown red)

# How many regressed rows, and worst cases of trials, the terminal names (JSON has them all).
_NAMED = 3
_STATUS_ORDER = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


def rows_run(report: SessionReport) -> str:
    counts = dict(report.statuses)
    run = sum(counts.values())
    parts = [
        f"{counts.pop(status, 0)} {'errors' if status == 'error' else status}"
        for status in _STATUS_ORDER[:4]
    ]
    parts += [f"{count} {status}" for status, count in sorted(counts.items()) if count]
    return f"rows run: {run} ({', '.join(parts)})"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(rows: list[list[str]]) -> list[str]:
    """Columns two spaces apart: the first left-aligned, the numbers right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def score_lines(report: SessionReport) -> list[Line]:
    """Every score's mean over this session's rows and over the experiment's latest rows, and
    against a baseline its delta and the rows that moved."""
    out: list[Line] = []
    if report.experiment_unread is not None:
        out.append((f"experiment's latest rows not read: {report.experiment_unread}", True))
    if report.experiment_rows is None:
        return out
    out.append((f"latest rows of the experiment: {report.experiment_rows}", False))
    comparison = report.comparison
    head = ["score", "session", "experiment"]
    if comparison is not None:
        head += [f"baseline {comparison['a']!r}", "delta", "improved", "regressed"]
    body = [head]
    changes: dict[str, Any] = (comparison or {}).get("scores", {})
    names = sorted(set(report.mean_scores) | set(report.experiment_means) | set(changes))
    for name in names:
        session, latest = report.mean_scores.get(name), report.experiment_means.get(name)
        if session is None and name.startswith("judge:"):  # this session's judgments
            session = report.judge_mean_scores.get(name.removeprefix("judge:"))
        row = [name, _number(session), _number(latest)]
        if comparison is not None:
            change = changes.get(name, {})
            delta = change.get("delta")
            row += [
                _number(change.get("a_mean")),
                "-" if delta is None else f"{delta:+.3f}",
                str(change.get("improved", 0)),
                str(change.get("regressed", 0)),
            ]
        body.append(row)
    if len(body) > 1:
        out += [(line, False) for line in _table(body)]
    if comparison is not None:
        out += _baseline_lines(comparison)
    elif report.baseline_unread is not None:
        out.append((f"baseline {report.baseline!r} not compared: {report.baseline_unread}", True))
    cost = _costs(report)
    if cost:
        out.append((cost, False))
    return out


def _baseline_lines(comparison: dict[str, Any]) -> list[Line]:
    rows = comparison["rows"]
    improved, regressed = comparison["improved"], comparison["regressed"]
    out: list[Line] = [
        (
            f"against baseline {comparison['a']!r}: {rows['compared']} rows compared "
            f"({rows['only_a']} only in the baseline, {rows['only_b']} only here): "
            f"{len(improved)} improved, {len(regressed)} regressed",
            False,
        )
    ]
    if regressed:
        named = ", ".join(regressed[:_NAMED])
        more = f" and {len(regressed) - _NAMED} more" if len(regressed) > _NAMED else ""
        out.append((f"  regressed: {named}{more}", False))
    return out


def _costs(report: SessionReport) -> str:
    parts = []
    if report.experiment_tokens is not None:
        session = report.session_tokens or 0
        parts.append(f"tokens {session:,} this session, {report.experiment_tokens:,} in all")
    if report.experiment_cost is not None:
        session_cost = report.session_cost or 0.0
        parts.append(f"cost ${session_cost:.4f} this session, ${report.experiment_cost:.4f} in all")
    return "; ".join(parts)


def trial_lines(report: SessionReport) -> list[Line]:
    """Each case's pass rate over its trials: the worst few, and how many passed all and any."""
    if not report.trials:
        return []
    cases = report.trials
    every = sum(1 for passed, run in cases.values() if run and passed == run)
    some = sum(1 for passed, _ in cases.values() if passed)
    out: list[Line] = [
        (
            f"trials: {len(cases)} cases; {every} passed every trial, {some} passed at least one",
            False,
        )
    ]
    worst = sorted(cases.items(), key=lambda item: (item[1][0] / max(item[1][1], 1), item[0]))
    for case, (passed, run) in worst[:_NAMED]:
        if run and passed < run:
            out.append((f"  {case}: {passed} of {run} trials passed", False))
    return out


def gate_text(gate: dict[str, Any]) -> str:
    """A gate as the user asked for it, and what it found."""
    if gate["gate"] == "max_regressions":
        name = f"at most {gate['threshold']} regressed rows"
        found = None if gate["value"] is None else f"{gate['value']} regressed"
    else:
        name = f"{gate['score']} >= {gate['threshold']:g}"
        found = None if gate["value"] is None else f"{gate['value']:.3f}"
        if found is not None and gate.get("rows") is not None:
            found += f" over {gate['rows']} rows"
    if gate["passed"]:
        return f"gate {name}: passed ({found})"
    if gate.get("why"):
        return f"gate {name}: FAILED: {gate['why']}"
    return f"gate {name}: FAILED ({found})"


def gate_lines(report: SessionReport) -> list[Line]:
    out: list[Line] = [(gate_text(gate), not gate["passed"]) for gate in report.gates]
    if report.gate_usage_error is not None:
        out.append((f"usage error: {report.gate_usage_error}", True))
    return out


def short_lines(report: SessionReport) -> list[Line]:
    """``-q``: the scores in one line, with the baseline's counts and the gates'."""
    means = report.experiment_means if report.experiment_rows is not None else report.mean_scores
    where = "experiment" if report.experiment_rows is not None else "session"
    text = f"{where} means: " + (
        ", ".join(f"{name} {mean:.3f}" for name, mean in sorted(means.items())) or "none"
    )
    if report.comparison is not None:
        comparison = report.comparison
        text += (
            f"; against {comparison['a']!r}: {len(comparison['improved'])} improved, "
            f"{len(comparison['regressed'])} regressed"
        )
    if report.gates:
        failed = len(report.gates_failed)
        text += f"; gates: {len(report.gates) - failed} passed, {failed} failed"
    return [(text, False)]


def gates_failed_line(report: SessionReport) -> str | None:
    """``--eval-report=none``: the one line that says why the gates failed, if they did."""
    said = [gate_text(gate) for gate in report.gates_failed]
    if report.gate_usage_error is not None:
        said.append(f"usage error: {report.gate_usage_error}")
    return "evalrows: " + "; ".join(said) if said else None
