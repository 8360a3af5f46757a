"""An experiment's summary as Braintrust's ``summarize`` answers it (what the SDK prints after
an ``Eval`` and its pytest plugin after a session): each score's mean over the rows' latest
versions, compared with the experiment it is measured against.

That experiment is the one asked for (``comparison_experiment_id``), else the one it was
created to be compared with (``base_exp_id``), else the one before it: the latest experiment
of the same project created before it. Rows are compared by row id: a row is an improvement
of a score when its score is higher than the same row's there, a regression when lower.
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
    return answer


def _scores(store: ServerBackend, experiment_id: str) -> dict[str, dict[str, float]]:
    """Score name -> row id -> the row's latest score."""
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for row in store.latest_scores(experiment_id):
        for name, value in row.scores.items():
            found[name][row.row_id] = value
    return found
