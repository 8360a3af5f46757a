"""Evaluations (judgments of a row version's trace) as Braintrust experiment events, and back.
Pure: no pytest, no HTTP.

A finished evaluation is a ``score`` span under the row's trace (so Braintrust shows it under
the row), kind ``evaluation`` in ``metadata.evalrows``, which holds the whole evaluation: readers
of rows and spans skip it, and stale-span clean-up never deletes it. Its score is also merged
into the row's event (``_is_merge``) when the version it judged is the row's latest, so that
Braintrust lists it with the row's scores. Readers do not depend on that merge: they put each
version's judgments' scores on it themselves (``judge_scores``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..core.judgments import Evaluation
from ..core.models import RowVersion, SpanRecord
from ..core.trace import Trace
from . import wire

EVALUATION_KIND = "evaluation"
EVALUATION_ID_PREFIX = "evalrows-evaluation-"

Event = dict[str, Any]


def evaluation_event(evaluation: Evaluation, parent_span_id: str | None = None) -> Event:
    """The evaluation as a ``score`` span under its trace (under the row's own span when
    ``parent_span_id`` names it)."""
    event_id = EVALUATION_ID_PREFIX + evaluation.id
    score = evaluation.row_score
    result = evaluation.result
    metrics: dict[str, float] = {}
    start = evaluation.started_at or evaluation.created_at
    metrics["start"] = start
    metrics["end"] = evaluation.finished_at or start
    if result is not None:
        for name in ("prompt_tokens", "completion_tokens"):
            value = getattr(result, name)
            if value is not None:
                metrics[name] = value
    return {
        "id": event_id,
        "span_id": event_id,
        "root_span_id": evaluation.trace_id,
        "span_parents": [parent_span_id] if parent_span_id else [],
        "scores": {evaluation.score_name: score} if score is not None else {},
        "output": None if result is None else result.model_dump(mode="json"),
        "error": evaluation.error,
        "metadata": {
            "evalrows": {
                "kind": EVALUATION_KIND,
                "row_id": evaluation.row_id,
                "evaluation": evaluation.model_dump(mode="json", exclude={"experiment_id"}),
            }
        },
        "metrics": metrics,
        "span_attributes": {"name": evaluation.score_name, "type": "score"},
    }


def event_evaluation(event: Event, experiment_id: str) -> Evaluation:
    """The evaluation an ``evaluation_event`` carries; raises pydantic's ``ValidationError``
    when it carries none."""
    own = wire.own_metadata(event).get("evaluation")
    evaluation = Evaluation.model_validate(own)
    evaluation.experiment_id = experiment_id
    return evaluation


def is_evaluation(event: Event) -> bool:
    return wire.event_kind(event) == EVALUATION_KIND


def merge_event(row_id: str, version_id: str, scores: Mapping[str, float]) -> Event:
    """Scores merged into a row's event. The version id it names is the one the row's event
    holds already: a merge that lands on it changes nothing else."""
    return {
        "id": row_id,
        "_is_merge": True,
        "scores": dict(scores),
        "metadata": {"evalrows": {"version_id": version_id}},
    }


def judge_scores(evaluations: Iterable[Evaluation]) -> dict[str, dict[str, float]]:
    """Version id -> ``judge:<judge>`` -> score: each judge's latest successful score of each
    version (a failure leaves the last success's)."""
    ranked = sorted(evaluations, key=lambda evaluation: (evaluation.created_at, evaluation.id))
    found: dict[str, dict[str, float]] = {}
    for evaluation in ranked:
        score = evaluation.row_score
        if score is not None:
            found.setdefault(evaluation.version_id, {})[evaluation.score_name] = score
    return found


def with_judge_scores(row: RowVersion, scores: Mapping[str, dict[str, float]]) -> RowVersion:
    judged = scores.get(row.version_id)
    if judged:
        row.scores = {**row.scores, **judged}
    return row


class VersionRef(NamedTuple):
    """What an evaluation's event needs of the version it judged."""

    row_id: str
    span_id: str
    start: float


class KnownVersions:
    """The versions an HTTP store wrote or read, by version id: which row and span each is,
    and which is each row's latest (by start, then by when it became known)."""

    def __init__(self) -> None:
        self._refs: dict[str, VersionRef] = {}
        self._latest: dict[str, str] = {}

    def __contains__(self, version_id: object) -> bool:
        return version_id in self._refs

    @classmethod
    def of_events(cls, rows: Mapping[str, list[Event]]) -> KnownVersions:
        """The versions of fetched row events (each row's oldest first)."""
        known = cls()
        for row_id, versions in rows.items():
            for event in versions:
                version_id = wire.own_metadata(event).get("version_id") or event.get("_xact_id")
                start = float((event.get("metrics") or {}).get("start") or 0.0)
                known.wrote(row_id, str(version_id), str(event.get("span_id") or ""), start)
        return known

    def wrote(self, row_id: str, version_id: str, span_id: str, start: float) -> None:
        """A version written or read."""
        self._refs[version_id] = VersionRef(row_id, span_id, start)
        latest = self._refs.get(self._latest.get(row_id, ""))
        if latest is None or start >= latest.start:
            self._latest[row_id] = version_id

    def get(self, version_id: str) -> VersionRef | None:
        return self._refs.get(version_id)

    def is_latest(self, version_id: str) -> bool:
        ref = self._refs.get(version_id)
        return ref is not None and self._latest.get(ref.row_id) == version_id


def events(evaluations: Sequence[Evaluation], known: KnownVersions) -> list[Event]:
    """The events that save finished evaluations: one per evaluation, then one merge per
    row whose latest version they judged (a later evaluation of a judge over an earlier)."""
    found = [
        evaluation_event(evaluation, (known.get(evaluation.version_id) or _NO_REF).span_id)
        for evaluation in evaluations
    ]
    merges: dict[str, tuple[str, dict[str, float]]] = {}
    ranked = sorted(evaluations, key=lambda evaluation: (evaluation.created_at, evaluation.id))
    for evaluation in ranked:
        score = evaluation.row_score
        if score is None or not known.is_latest(evaluation.version_id):
            continue
        _, scores = merges.setdefault(evaluation.row_id, (evaluation.version_id, {}))
        scores[evaluation.score_name] = score
    found += [
        merge_event(row_id, version_id, scores) for row_id, (version_id, scores) in merges.items()
    ]
    return found


_NO_REF = VersionRef("", "", 0.0)


def trace_of(
    rows: Iterable[RowVersion],
    spans: Iterable[SpanRecord],
    trace_id: str,
    experiment: str | None,
) -> Trace | None:
    """The trace of the version whose root span is ``trace_id``, with its root span (its
    row's event stands for it) and the spans under it."""
    for row in rows:
        if row.root_span_id == trace_id:
            under = [span for span in spans if span.root_span_id == trace_id]
            return Trace(row, [wire.row_root_span(row, experiment), *under])
    return None


def traces_of(
    rows: Iterable[RowVersion],
    spans: Iterable[SpanRecord],
    experiment: str | None,
    row_ids: Collection[str] | None = None,
) -> list[Trace]:
    """Each row's trace, with its root span and the spans under it; by row id."""
    by_trace: dict[str, list[SpanRecord]] = {}
    for span in spans:
        by_trace.setdefault(span.root_span_id, []).append(span)
    return [
        Trace(row, [wire.row_root_span(row, experiment), *by_trace.get(row.root_span_id, ())])
        for row in sorted(rows, key=lambda row: row.row_id)
        if row_ids is None or row.row_id in row_ids
    ]
