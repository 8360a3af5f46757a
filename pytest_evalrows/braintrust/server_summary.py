"""An experiment's summary as Braintrust's ``summarize`` answers it (what the SDK prints after
an ``Eval`` and its pytest plugin after a session): each score's mean over the rows' latest
versions, compared with the experiment it is measured against.

That experiment is the one asked for (``comparison_experiment_id``), else the one it was
created to be compared with (``base_exp_id``), else the one before it: the latest experiment
of the same project created before it. Rows are compared by row id: a row is an improvement
of a score when its score is higher than the same row's there, a regression when lower.

Metrics (``duration`` in seconds, token counts) are each row's own, the mean over the rows
that have one; lower is better (an improvement), and ``diff`` is relative to the other
experiment's mean, as the SDK prints it (a percentage).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..core.models import Experiment
from ..errors import UnknownExperimentError
from ..store.base import ServerBackend


def base_experiment(store: ServerBackend, experiment_id: str) -> Experiment | None:
    """The experiment this one was created to be compared with, else the latest experiment
    of the same project created before this one."""
    experiment = store.get_experiment_by_id(experiment_id)
    base_id = store.base_experiment_id(experiment_id)
    if base_id is not None:
        try:
            return store.get_experiment_by_id(base_id)
        except UnknownExperimentError:
            pass  # not kept any longer: the one before it, as without
    earlier = [
        each
        for each in store.list_experiments()
        if each.project == experiment.project
        and each.id != experiment.id
        and (each.created, each.id) < (experiment.created, experiment.id)
    ]
    return max(earlier, key=lambda each: (each.created, each.id), default=None)


def summary(
    store: ServerBackend,
    experiment_id: str,
    comparison_id: str | None,
    base_url: str,
    summarize_scores: bool,
) -> dict[str, Any]:
    experiment = store.get_experiment_by_id(experiment_id)
    project_url = f"{base_url}/"
    answer: dict[str, Any] = {
        "project_name": experiment.project,
        "experiment_name": experiment.name,
        "project_url": project_url,
        "experiment_url": f"{base_url}/experiments/{experiment.id}",
        "comparison_experiment_name": None,
        "scores": {},
        "metrics": {},
    }
    if not summarize_scores:
        return answer
    if comparison_id is not None:
        try:
            other: Experiment | None = store.get_experiment_by_id(comparison_id)
        except UnknownExperimentError:
            raise UnknownExperimentError(
                f"comparison_experiment_id: no experiment with id {comparison_id!r}"
            ) from None
    else:
        other = base_experiment(store, experiment_id)
    scores = _scores(store, experiment.id)
    before = _scores(store, other.id) if other is not None else {}
    if other is not None:
        answer["comparison_experiment_name"] = other.name
    for name, by_row in sorted(scores.items()):
        mean = sum(by_row.values()) / len(by_row)
        item: dict[str, Any] = {"name": name, "score": mean, "improvements": 0, "regressions": 0}
        then = before.get(name)
        if then:
            item["diff"] = mean - sum(then.values()) / len(then)
            for row_id, value in by_row.items():
                if row_id in then and value > then[row_id]:
                    item["improvements"] += 1
                elif row_id in then and value < then[row_id]:
                    item["regressions"] += 1
        answer["scores"][name] = item
    metrics = _metrics(store, experiment.id)
    then_metrics = _metrics(store, other.id) if other is not None else {}
    for name, by_row in metrics.items():
        mean = sum(by_row.values()) / len(by_row)
        unit = "s" if name == "duration" else "tok"
        metric: dict[str, Any] = {
            "name": name,
            "metric": mean,
            "unit": unit,
            "improvements": 0,
            "regressions": 0,
        }
        then = then_metrics.get(name)
        if then:
            before_mean = sum(then.values()) / len(then)
            if before_mean:
                metric["diff"] = (mean - before_mean) / before_mean
            for row_id, value in by_row.items():
                if row_id in then and value < then[row_id]:
                    metric["improvements"] += 1
                elif row_id in then and value > then[row_id]:
                    metric["regressions"] += 1
        answer["metrics"][name] = metric
    return answer


# Braintrust's names for a row's metrics, from the store's.
_METRICS = (
    ("duration", "duration"),
    ("prompt_tokens", "prompt_tokens"),
    ("completion_tokens", "completion_tokens"),
    ("total_tokens", "tokens"),
)


def _metrics(store: ServerBackend, experiment_id: str) -> dict[str, dict[str, float]]:
    """Metric name -> row id -> the row's latest value (a row that has none is left out;
    a duration of a row that never said its times is none)."""
    found: dict[str, dict[str, float]] = {}
    for row in store.latest_rows(experiment_id):
        metrics = row.metrics
        for name, field in _METRICS:
            value = getattr(metrics, field, None)
            if field == "duration" and not (metrics.start and metrics.end):
                value = None
            if isinstance(value, (int, float)):
                found.setdefault(name, {})[row.row_id] = value
    return found


def _scores(store: ServerBackend, experiment_id: str) -> dict[str, dict[str, float]]:
    """Score name -> row id -> the row's latest score."""
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for row in store.latest_scores(experiment_id):
        for name, value in row.scores.items():
            found[name][row.row_id] = value
    return found
