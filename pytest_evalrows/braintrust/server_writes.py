"""How ``evalrows serve`` writes one request's events into an experiment: the rows, spans,
deletes, attempts and evaluations ``server_bodies`` converted, and the merges (Braintrust's
``_is_merge``, and comments) as patches of the stored events.

Braintrust's rules, as its SDK relies on them: a merge deep-merges into the event with that
``id`` (its latest version, in place); a merge into an id nothing has yet is that event,
written whole; a comment goes to the event its ``origin`` names. A row another client wrote
takes the scores of its trace's score spans (Braintrust's SDK puts an ``Eval``'s scores there).

A comment on an id nothing has yet (the SDK may post it beside the batch with its event) is
kept pending by the server process and added once that event is written; it is lost if the
process stops first. Everything a request can be refused for is checked before anything is
written, and a request sent again writes no second version of its rows (``server_bodies``
names another client's row versions by their content).
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from typing import Any

import pydantic_core

from ..core.merging import Patch
from ..core.models import WriteResult, as_doc
from ..errors import StoreError
from ..store.base import ServerBackend
from . import sdk_events
from .server_bodies import BadRequest, Converted, InsertBody, convert, parse


class PendingComments:
    """Comments on ids nothing had yet, per experiment, until their event is written (at most
    ``LIMIT`` of them and ``MAX_BYTES`` of their JSON in all: the oldest go first; a comment
    larger than that alone is not kept)."""

    LIMIT = 10_000
    MAX_BYTES = 16 * 1024 * 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[tuple[str, dict[str, Any], int]] = []
        self._bytes = 0

    def add(self, experiment_id: str, events: list[dict[str, Any]]) -> None:
        sized = [(experiment_id, event, len(pydantic_core.to_json(event))) for event in events]
        sized = [each for each in sized if each[2] <= self.MAX_BYTES]
        with self._lock:
            self._events += sized
            self._bytes += sum(size for _, _, size in sized)
            while self._events and (len(self._events) > self.LIMIT or self._bytes > self.MAX_BYTES):
                self._bytes -= self._events.pop(0)[2]

    def of(self, experiment_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [event for owner, event, _ in self._events if owner == experiment_id]

    def done(self, experiment_id: str, ids: set[str]) -> None:
        with self._lock:
            self._events = [
                (owner, event, size)
                for owner, event, size in self._events
                if owner != experiment_id or event["id"] not in ids
            ]
            self._bytes = sum(size for _, _, size in self._events)


def check(store: ServerBackend, experiment_id: str, converted: Converted) -> None:
    """Everything the request could be refused for, before anything of it is written: the
    versions merges name, and the merges that may have to be written whole."""
    _check_merges(store, experiment_id, converted)
    whole: dict[str, dict[str, Any]] = {}
    for event in converted.braintrust_merges:
        if not sdk_events.is_comment(event):
            whole.setdefault(event["id"], _whole(event))
    if whole:
        events = list(whole.values())
        convert(bodies_of(events), events, None)


def write(
    store: ServerBackend,
    experiment_id: str,
    converted: Converted,
    pending: PendingComments | None = None,
) -> WriteResult:
    """Everything one request converted (``check``ed first): the rows, spans and deletes in
    one write, then the merges, evaluations and attempts. Returns what the write did to the
    rows (new, updated, ...), counted in its transaction."""
    pending = pending if pending is not None else PendingComments()
    result = WriteResult()
    try:
        if converted.rows or converted.spans or converted.deletes:
            result = store.insert_events(
                experiment_id,
                converted.rows,
                converted.spans,
                delete_span_ids=converted.deletes,
            )
        if converted.merges:
            missing = store.merge_scores(experiment_id, converted.merges)
            if missing:
                raise BadRequest(f"_is_merge: no version to merge scores into: {missing}")
        if converted.braintrust_merges:
            _merge(store, experiment_id, converted.braintrust_merges, pending)
        waiting = pending.of(experiment_id)
        if waiting and (converted.rows or converted.spans or converted.braintrust_merges):
            still = _merge(store, experiment_id, waiting, None)
            pending.done(experiment_id, {event["id"] for event in waiting} - still)
        if converted.traces:
            _roll_up_scores(store, experiment_id, converted.traces)
        # After the merges: a judge's latest success wins over a merged score.
        for evaluation in converted.evaluations:
            evaluation.experiment_id = experiment_id
        if converted.evaluations:
            store.save_evaluations(experiment_id, converted.evaluations)
        # The HTTP store sends an attempt in a request of its own: no all-or-nothing with
        # rows is needed.
        for attempt in converted.attempts:
            attempt.experiment_id = experiment_id
            store.save_attempt(attempt)
    except StoreError as exc:
        # Checked events make JSON SQLite reads; should one slip through, it is still the
        # request's fault: a 503 would have clients send it again forever.
        if "malformed JSON" in str(exc):
            raise BadRequest(f"events: the store cannot read them: {exc}") from None
        raise
    return result


def counts(
    result: WriteResult, store: ServerBackend | None = None, experiment_id: str = "", rows: Any = ()
) -> dict[str, Any]:
    """An insert's answer beside its ``row_ids`` (``evalrows``): what it did to the rows, as
    the store counted it in the write's transaction. Concurrent writers of the same rows each
    learn the truth, where a client's own guess cannot know what another wrote meanwhile.

    Versions that were stored already (``duplicate_rows``: a batch sent again after its
    answer was lost, or a spool delivered twice) are told apart too, given the ``store`` and
    the request's ``rows``: ``duplicates`` says how many are their row's first version (new
    when written) and how many are not (updates)."""
    answer: dict[str, Any] = {
        "new_rows": result.new_rows,
        "updated_rows": result.updated_rows,
        "superseded_rows": result.superseded_rows,
        "duplicate_rows": result.duplicate_rows,
        # Of the spans the request deleted, those that were there (a clean-up's own count).
        "deleted_span_ids": result.deleted_span_ids,
    }
    if result.duplicate_rows and store is not None:
        # Rare (retries and redeliveries): one read per row of the request.
        firsts = sum(
            any(
                version.version_id == row["version_id"] and version.version == 1
                for version in store.history(experiment_id, row["row_id"])
            )
            for row in rows
        )
        were_new = min(result.duplicate_rows, max(0, firsts - result.new_rows))
        answer["duplicates"] = {
            "new_rows": were_new,
            "updated_rows": result.duplicate_rows - were_new,
        }
    return answer


def _check_merges(store: ServerBackend, experiment_id: str, converted: Converted) -> None:
    """A merge into a version the HTTP store names goes into a row that is stored or written
    by the same request: said before anything is written."""
    sent = {row["row_id"] for row in converted.rows}
    unknown = set(converted.merges) - sent
    if unknown:
        stored = store.latest_states(experiment_id)
        missing = sorted(unknown - set(stored))
        if missing:
            raise BadRequest(f"_is_merge: no row to merge scores into: {missing}")
    # A merge that names a version: that version exists (merges are few; one read each).
    sent_versions = {row["version_id"] for row in converted.rows}
    for row_id, (version_id, _) in sorted(converted.merges.items()):
        if version_id is None or version_id in sent_versions:
            continue
        if all(row.version_id != version_id for row in store.history(experiment_id, row_id)):
            raise BadRequest(
                f"_is_merge: row {row_id!r} has no version {version_id!r} to merge scores into"
            )


def _merge(
    store: ServerBackend,
    experiment_id: str,
    events: list[dict[str, Any]],
    pending: PendingComments | None,
) -> set[str]:
    """The merges and comments, in order. Each names its event: a span by its span id when
    it has parents, a row by its id when it says it is a root, else (feedback, a comment) a
    row if a row has that id, else a span. Comments on ids nothing has go to ``pending``
    (None: they stay where they are). Returns the ids of the comments that wait."""
    patches: list[tuple[str, Patch]] = []
    root_spans: list[tuple[str, Patch]] = []
    creators: dict[str, int] = {}  # event id -> the index of the merge that writes it if need be
    commented: dict[str, list[dict[str, Any]]] = {}
    rows: dict[str, bool] = {}

    def is_row(event_id: str) -> bool:
        if event_id not in rows:
            rows[event_id] = bool(store.history(experiment_id, event_id))
        return rows[event_id]

    def on_target(event: dict[str, Any]) -> tuple[str, Patch]:
        target, on_row, on_span = sdk_events.comment_patches(event)
        return target, on_row if is_row(target) else on_span

    for event in events:
        if sdk_events.is_comment(event):
            patches.append(on_target(event))
            commented.setdefault(patches[-1][0], []).append(event)
            continue
        if event.get("span_parents"):
            key = event.get("span_id") or event["id"]
            patches.append((key, sdk_events.span_patch(event)))
        elif event.get("span_id") or is_row(event["id"]):
            key = event["id"]
            patches.append((key, sdk_events.row_patch(event)))
            root = sdk_events.root_span_patch(event)
            if root is not None and event.get("span_id"):
                root_spans.append((event["span_id"], root))
        else:
            key = event["id"]
            patches.append((key, sdk_events.span_patch(event)))
        creators.setdefault(key, len(patches) - 1)
    left: set[str] = set()
    missing = store.merge_events(experiment_id, patches)
    if missing:
        # Braintrust writes a merge into an id that has no event yet as that event; a
        # comment on such an id waits for it.
        unknown = {key for key in missing if key not in creators}
        waiting = [event for key in sorted(unknown) for event in commented[key]]
        if waiting and pending is not None:
            pending.add(experiment_id, waiting)
        left = {event["id"] for event in waiting}
        created = [key for key in missing if key in creators]
        # Each event made one patch: a patch's index is its event's.
        _create(store, experiment_id, [events[creators[key]] for key in created])
        writers = {creators[key] for key in created}
        rows.clear()  # what was written may be a row
        rest = []
        for index, (key, patch) in enumerate(patches):
            if key in unknown or index in writers:
                continue  # waiting, or the event just written
            if key in created and sdk_events.is_comment(events[index]):
                patch = on_target(events[index])[1]  # on the row or span just written
            rest.append((key, patch))
        still = store.merge_events(experiment_id, rest)
        if still:
            raise StoreError(f"merges found no event after writing it: {still}")
    if root_spans:
        # A row's own root span follows its times and status; one no longer kept is no loss.
        gone = store.merge_events(experiment_id, root_spans)
        if gone:
            store.merge_events(experiment_id, [each for each in root_spans if each[0] not in gone])
    return left


def _create(store: ServerBackend, experiment_id: str, events: list[dict[str, Any]]) -> None:
    if not events:
        return
    whole = [_whole(event) for event in events]
    experiment = store.get_experiment_by_id(experiment_id)
    converted = convert(bodies_of(whole), whole, experiment.name, experiment_id)
    store.insert_events(experiment_id, converted.rows, converted.spans)


def _whole(event: dict[str, Any]) -> dict[str, Any]:
    """A merge as the event it writes when its id has none yet."""
    return {key: value for key, value in event.items() if key not in ("_is_merge", "_merge_paths")}


def bodies_of(events: list[dict[str, Any]]) -> InsertBody:
    return parse(InsertBody, {"events": events})


def _roll_up_scores(store: ServerBackend, experiment_id: str, traces: Collection[str]) -> None:
    """Each of these traces' rows (another client's) takes its score spans' scores."""
    patches: list[tuple[str, Patch]] = []
    for trace_id in sorted(traces):
        trace = store.find_trace(experiment_id, trace_id)
        if trace is None or not sdk_events.is_foreign_row(as_doc(trace.row)):
            continue
        scores = sdk_events.rolled_up_scores([as_doc(span) for span in trace.spans])
        changed = {name: v for name, v in scores.items() if trace.row.scores.get(name) != v}
        if changed:
            patches.append((trace.row.row_id, {"values": {"scores": changed}}))
    if patches:
        store.merge_events(experiment_id, patches)
