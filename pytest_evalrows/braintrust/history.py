"""An experiment's events as the fetch endpoint returns them (every version of every id, in no
promised order), read back: each row's versions in the order their executions started, each
span's latest event, each attempt's and each evaluation's latest record. Pure: no HTTP."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, NamedTuple

from pydantic import ValidationError

from ..core.judgments import Evaluation
from ..core.models import Attempt, RowVersion, SpanRecord, StaleSpan
from . import judgments, sdk_events, wire

Event = dict[str, Any]


class Versions(NamedTuple):
    """Every row's versions (oldest first), every span's latest event, and every
    evaluation's (oldest first)."""

    rows: dict[str, list[Event]]
    spans: dict[str, Event]
    evaluations: list[Evaluation]
    #: Version id -> its judgments' scores (``judgments.judge_scores``).
    judge_scores: dict[str, dict[str, float]]
    #: What could not be read (an evaluation event of another shape): said, never in the
    #: way of the rest (clean-up included).
    unreadable: tuple[str, ...] = ()
    #: Trace (root span id) -> row id, for spans another client wrote without row ids.
    traces: Mapping[str, str] = {}

    def spans_read(self) -> list[SpanRecord]:
        """Every span, each under its row (another client's spans by their trace)."""
        found = []
        for event in self.spans.values():
            span = wire.event_span(event)
            if span.row_id is None:
                span.row_id = self.traces.get(span.root_span_id)
            found.append(span)
        return found

    def latest(self, row_ids: Collection[str] | None = None) -> dict[str, RowVersion]:
        """The latest version of every row (or of the given rows), by row id."""
        wanted = set(row_ids) if row_ids is not None else None
        return {
            row_id: self.row(versions[-1], len(versions))
            for row_id, versions in sorted(self.rows.items())
            if wanted is None or row_id in wanted
        }

    def stale_spans(self, row_ids: Collection[str] | None = None) -> list[StaleSpan]:
        """The spans of the given rows (all rows when None) that do not belong to their row's
        latest attempt, execution and trace. Only span events: a row's root is its row event,
        and the versions it replaced are its history, not spans (``evalrows serve`` drops
        their roots as it writes them)."""
        latest = self.latest(row_ids)
        stale: list[StaleSpan] = []
        for span in self.spans_read():
            row = latest.get(span.row_id or "")
            if row is None:
                continue  # a row this call may not touch, or spans under no row
            if (span.attempt_id, span.execution) != (row.attempt_id, row.execution) or (
                span.root_span_id and row.root_span_id and span.root_span_id != row.root_span_id
            ):
                stale.append(
                    StaleSpan(
                        span.row_id or "", span.span_id, span.attempt_id, span.execution, span.name
                    )
                )
        return stale

    def row(self, event: Event, version: int) -> RowVersion:
        """A row event as its version, with its judgments' scores."""
        return judgments.with_judge_scores(
            wire.event_row(event, version=version), self.judge_scores
        )


def versions(events: Iterable[Event], experiment_id: str = "") -> Versions:
    rows: dict[str, dict[str, Event]] = {}
    spans: dict[str, Event] = {}
    evaluations: dict[str, Event] = {}
    for event in events:
        kind = wire.event_kind(event)
        if kind is None and sdk_events.is_foreign(event) and not sdk_events.is_comment(event):
            # Another client's (the Braintrust SDK's): a root span is a row, the rest spans.
            kind = wire.SPAN_KIND if event.get("span_parents") else wire.ROW_KIND
        if kind == wire.ROW_KIND:
            # One entry per version: a merge into a row's event (its judgments' scores) is
            # the same version again, under a later write.
            key = wire.own_metadata(event).get("version_id") or str(event.get("_xact_id", ""))
            _keep_latest(rows.setdefault(event["id"], {}), event, str(key))
        elif kind == wire.SPAN_KIND:
            _keep_latest(spans, event)
        elif kind == judgments.EVALUATION_KIND:
            _keep_latest(evaluations, event)
    # Versions in the order their executions started (a late write of an older execution
    # is not the latest), then in write order.
    ordered = {
        row_id: sorted(by_xact.values(), key=lambda event: (start(event), xact_key(event)))
        for row_id, by_xact in rows.items()
    }
    found: list[Evaluation] = []
    unreadable: list[str] = []
    for event in evaluations.values():
        try:
            found.append(judgments.event_evaluation(event, experiment_id))
        except ValidationError as exc:
            first = str(exc).splitlines()[0]
            unreadable.append(f"evaluation event {event['id']!r} cannot be read: {first}")
    found.sort(key=lambda evaluation: (evaluation.created_at, evaluation.id))
    traces = {
        str(versions[-1].get("root_span_id")): row_id
        for row_id, versions in ordered.items()
        if versions[-1].get("root_span_id")
    }
    judged = judgments.judge_scores(found)
    return Versions(ordered, spans, found, judged, tuple(unreadable), traces)


def attempts(events: Iterable[Event], experiment_id: str) -> list[Attempt]:
    """The attempts' latest records (a session saves its attempt at its start and at its
    end), oldest first."""
    latest: dict[str, Event] = {}
    for event in events:
        if wire.event_kind(event) == wire.ATTEMPT_KIND:
            _keep_latest(latest, event)
    found = [wire.event_attempt(event, experiment_id) for event in latest.values()]
    return sorted(found, key=lambda attempt: (attempt.started, attempt.id))


def _keep_latest(latest: dict[str, Event], event: Event, key: str | None = None) -> None:
    """Keep the event under ``key`` (its id by default) if no later write is kept there."""
    key = key if key is not None else event["id"]
    current = latest.get(key)
    if current is None or xact_key(event) > xact_key(current):
        latest[key] = event


def xact_key(event: Event) -> tuple[int, str]:
    """Where an event is in write order."""
    xact = str(event.get("_xact_id", ""))
    return (int(xact), xact) if xact.isdigit() else (-1, xact)


def start(row: Mapping[str, Any]) -> float:
    """When a row's execution started: a row document's or a row event's ``metrics.start``."""
    return float((row.get("metrics") or {}).get("start") or 0.0)
