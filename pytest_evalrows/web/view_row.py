"""A row's page from what a store reads of it: its versions, its input, output and expected
beside the previous version's, its latest trace as a tree, and its judgments.

Pure: takes the row's history, spans and evaluations, reads no store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from ..core.judgments import Evaluation
from ..core.models import RowVersion, SpanRecord
from ..core.trace import INPUT_TOKENS, OUTPUT_TOKENS
from .pages import (
    EventLine,
    ExperimentRef,
    FieldSides,
    JudgmentLine,
    RowPage,
    SpanNode,
    StepLine,
    VersionLine,
    Waterfall,
)
from .view_errors import PageNotFound
from .view_text import error_text, pretty, same_value

FIELDS: tuple[Literal["input", "output", "expected"], ...] = ("input", "output", "expected")
EXCEPTION = "exception"  # OpenTelemetry's name of the event that records an exception


def build_row_page(
    ref: ExperimentRef,
    history: Sequence[RowVersion],
    spans: Iterable[SpanRecord],
    evaluations: Iterable[Evaluation],
) -> RowPage:
    """A row's page from its versions (oldest first), the spans the store keeps of it and
    the experiment's evaluations (those of other rows are left out)."""
    if not history:
        raise PageNotFound(f"experiment {ref.name!r} has no such row")
    latest = history[-1]
    previous = history[-2] if len(history) > 1 else None
    versions = [version_line(version) for version in reversed(history)]
    return RowPage(
        experiment=ref,
        row_id=latest.row_id,
        nodeid=latest.nodeid,
        latest=versions[0],
        versions=versions,
        sides=[field_sides(name, latest, previous) for name in FIELDS],
        metadata=pretty(latest.metadata),
        tags=list(latest.tags),
        trace=waterfall(trace_spans(latest, spans)),
        judgments=judgment_lines(latest, evaluations),
    )


def version_line(row: RowVersion) -> VersionLine:
    return VersionLine(
        version=row.version,
        version_id=row.version_id,
        attempt_id=row.attempt_id,
        attempt_short=row.attempt_id[:8],
        execution=row.execution,
        created=row.created,
        status=row.status,
        scores=dict(sorted(row.scores.items())),
        duration=row.metrics.duration,
        tokens=row.metrics.tokens,
        error=error_text(row.error),
        traceback=row.error.traceback if row.error is not None else "",
    )


def field_sides(
    name: Literal["input", "output", "expected"], latest: RowVersion, previous: RowVersion | None
) -> FieldSides:
    now = getattr(latest, name)
    if previous is None:
        return FieldSides(name=name, latest=pretty(now), previous=None, changed=False)
    before = getattr(previous, name)
    return FieldSides(
        name=name, latest=pretty(now), previous=pretty(before), changed=not same_value(now, before)
    )


# -- the trace ------------------------------------------------------------------------------


def trace_spans(latest: RowVersion, spans: Iterable[SpanRecord]) -> list[SpanRecord]:
    """The spans of the latest version's trace (older versions' spans may still be kept)."""
    if latest.root_span_id:
        return [span for span in spans if span.root_span_id == latest.root_span_id]
    return [
        span
        for span in spans
        if span.attempt_id == latest.attempt_id and span.execution == latest.execution
    ]


def waterfall(spans: Iterable[SpanRecord]) -> Waterfall:
    """Spans as a tree: each under its parent (the last of its ``span_parents``), in start
    order; a span whose parent is not among them is a root. Offsets count from the earliest
    start."""
    unique: dict[str, SpanRecord] = {}
    for span in sorted(spans, key=lambda span: (span.start, span.span_id)):
        unique.setdefault(span.span_id, span)
    ordered = list(unique.values())
    if not ordered:
        return Waterfall(roots=[], duration=0.0, spans=0)
    start = ordered[0].start
    end = max(span.end for span in ordered)
    parents = _parents(ordered)
    nodes = {span.span_id: span_node(span, start) for span in ordered}
    roots = []
    for span in ordered:
        parent = parents[span.span_id]
        if parent is None:
            roots.append(nodes[span.span_id])
        else:
            nodes[parent].children.append(nodes[span.span_id])
    return Waterfall(roots=roots, duration=max(0.0, end - start), spans=len(ordered))


def _parents(spans: Sequence[SpanRecord]) -> dict[str, str | None]:
    """Each span's parent among ``spans``, or None: a root. A loop of parents (bad data) is
    cut at its earliest span, so every span is reached from a root once."""
    known = {span.span_id for span in spans}
    parents: dict[str, str | None] = {}
    for span in spans:
        parent = span.span_parents[-1] if span.span_parents else None
        parents[span.span_id] = parent if parent in known and parent != span.span_id else None
    for span in spans:
        seen = {span.span_id}
        above = parents[span.span_id]
        while above is not None:
            if above == span.span_id:
                parents[span.span_id] = None
                break
            if above in seen:  # a loop above this span: cut where it comes round
                break
            seen.add(above)
            above = parents[above]
    return parents


def span_node(span: SpanRecord, trace_start: float) -> SpanNode:
    events = [event_line(event, span.start, trace_start) for event in span.events]
    return SpanNode(
        span_id=span.span_id,
        name=span.name,
        kind=span.kind,
        offset=max(0.0, span.start - trace_start),
        duration=max(0.0, span.end - span.start),
        error=span.status == "error" or any(event.exception for event in events),
        status_description=span.status_description,
        attributes=attribute_lines(span.attributes),
        events=events,
        input_tokens=_tokens(span.attributes, INPUT_TOKENS),
        output_tokens=_tokens(span.attributes, OUTPUT_TOKENS),
    )


def event_line(event: Mapping[str, Any], span_start: float, trace_start: float) -> EventLine:
    name = str(event.get("name", ""))
    when = event.get("timestamp")
    at = float(when) if isinstance(when, (int, float)) else span_start
    attributes = event.get("attributes")
    return EventLine(
        name=name,
        offset=max(0.0, at - trace_start),
        attributes=attribute_lines(attributes if isinstance(attributes, Mapping) else {}),
        exception=name == EXCEPTION,
    )


def attribute_lines(attributes: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(str(key), pretty(value)) for key, value in sorted(attributes.items())]


def _tokens(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


# -- judgments ------------------------------------------------------------------------------


def judgment_lines(latest: RowVersion, evaluations: Iterable[Evaluation]) -> list[JudgmentLine]:
    """The row's evaluations, newest first."""
    mine = [each for each in evaluations if each.row_id == latest.row_id]
    mine.sort(key=lambda each: (each.created_at, each.id), reverse=True)
    return [judgment_line(each, latest.version_id) for each in mine]


def judgment_line(evaluation: Evaluation, latest_version_id: str) -> JudgmentLine:
    result = evaluation.result
    return JudgmentLine(
        id=evaluation.id,
        judge_id=evaluation.judge_id,
        status=evaluation.status,
        score=evaluation.row_score,
        passed=result.passed if result is not None else None,
        reasoning=result.reasoning if result is not None else "",
        steps=[
            StepLine(span_id=step.span_id, name=step.name, result=pretty(step.result))
            for step in (result.steps if result is not None else [])
        ],
        model=result.model if result is not None else None,
        error=evaluation.error,
        created_at=evaluation.created_at,
        version_id=evaluation.version_id,
        latest=evaluation.version_id == latest_version_id,
    )
