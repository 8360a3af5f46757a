"""An experiment's events as the fetch endpoint returns them (every version of every id, in no
promised order), read back: each row's versions in the order their executions started, each
span's latest event, each attempt's latest record. Pure: no HTTP."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, NamedTuple

from ..core.models import Attempt, RowVersion
from . import wire

Event = dict[str, Any]


class Versions(NamedTuple):
    """Every row's versions (oldest first) and every span's latest event."""

    rows: dict[str, list[Event]]
    spans: dict[str, Event]

    def latest(self, row_ids: Collection[str] | None = None) -> dict[str, RowVersion]:
        """The latest version of every row (or of the given rows), by row id."""
        wanted = set(row_ids) if row_ids is not None else None
        return {
            row_id: wire.event_row(versions[-1], version=len(versions))
            for row_id, versions in sorted(self.rows.items())
            if wanted is None or row_id in wanted
        }


def versions(events: Iterable[Event]) -> Versions:
    rows: dict[str, dict[str, Event]] = {}
    spans: dict[str, Event] = {}
    for event in events:
        kind = wire.event_kind(event)
        if kind == wire.ROW_KIND:
            rows.setdefault(event["id"], {})[str(event.get("_xact_id", ""))] = event
        elif kind == wire.SPAN_KIND:
            _keep_latest(spans, event)
    # Versions in the order their executions started (a late write of an older execution
    # is not the latest), then in write order.
    ordered = {
        row_id: sorted(by_xact.values(), key=lambda event: (start(event), xact_key(event)))
        for row_id, by_xact in rows.items()
    }
    return Versions(ordered, spans)


def attempts(events: Iterable[Event], experiment_id: str) -> list[Attempt]:
    """The attempts' latest records (a session saves its attempt at its start and at its
    end), oldest first."""
    latest: dict[str, Event] = {}
    for event in events:
        if wire.event_kind(event) == wire.ATTEMPT_KIND:
            _keep_latest(latest, event)
    found = [wire.event_attempt(event, experiment_id) for event in latest.values()]
    return sorted(found, key=lambda attempt: (attempt.started, attempt.id))


def _keep_latest(latest: dict[str, Event], event: Event) -> None:
    current = latest.get(event["id"])
    if current is None or xact_key(event) > xact_key(current):
        latest[event["id"]] = event


def xact_key(event: Event) -> tuple[int, str]:
    """Where an event is in write order."""
    xact = str(event.get("_xact_id", ""))
    return (int(xact), xact) if xact.isdigit() else (-1, xact)


def start(row: Mapping[str, Any]) -> float:
    """When a row's execution started: a row document's or a row event's ``metrics.start``."""
    return float((row.get("metrics") or {}).get("start") or 0.0)
