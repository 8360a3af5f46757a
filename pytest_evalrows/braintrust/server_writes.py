"""How ``evalrows serve`` writes one request's events into an experiment: the rows, spans,
deletes, attempts and evaluations ``server_bodies`` converted, and the merges (Braintrust's
``_is_merge``, and comments) as patches of the stored events.

Braintrust's rules, as its SDK relies on them: a merge deep-merges into the event with that
``id`` (its latest version, in place); a merge into an id nothing has yet is that event,
written whole; a comment goes to the event its ``origin`` names. A row another client wrote
takes the scores of its trace's score spans (Braintrust's SDK puts an ``Eval``'s scores there).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ..core.merging import Patch
from ..core.models import WriteResult, as_doc
from ..errors import StoreError
from ..store.base import ServerBackend
from . import sdk_events
from .server_bodies import BadRequest, Converted, EventBody, InsertBody, convert


def write(store: ServerBackend, experiment_id: str, converted: Converted) -> WriteResult:
    """Everything one request converted, as the request's all-or-nothing allows: the rows,
    spans and deletes in one write, then the merges, evaluations and attempts. Returns what
    the write did to the rows (new, updated, ...), counted in its transaction."""
    _check_merges(store, experiment_id, converted)
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
            _merge(store, experiment_id, converted.braintrust_merges)
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


def _merge(store: ServerBackend, experiment_id: str, events: list[dict[str, Any]]) -> None:
    """The merges and comments, in order. Each names its event: a span by its span id when
    it has parents, a row by its id when it says it is a root, else (feedback, a comment) a
    row if a row has that id, else a span."""
    patches: list[tuple[str, Patch]] = []
    root_spans: list[tuple[str, Patch]] = []
    creators: dict[str, dict[str, Any]] = {}
    rows: dict[str, bool] = {}

    def is_row(event_id: str) -> bool:
        if event_id not in rows:
            rows[event_id] = bool(store.history(experiment_id, event_id))
        return rows[event_id]

    for event in events:
        if sdk_events.is_comment(event):
            target, on_row, on_span = sdk_events.comment_patches(event)
            patches.append((target, on_row if is_row(target) else on_span))
            creators.setdefault(target, event)
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
        creators.setdefault(key, event)
    missing = store.merge_events(experiment_id, patches)
    if missing:
        # Braintrust writes a merge into an id that has no event yet as that event.
        _create(store, experiment_id, [creators[key] for key in missing])
        created = set(missing)
        rest = []
        for key, patch in patches:
            if key in created:
                created.discard(key)  # its first merge is the event just written
            else:
                rest.append((key, patch))
        still = store.merge_events(experiment_id, rest)
        if still:
            raise StoreError(f"merges found no event after writing it: {still}")
    if root_spans:
        # A row's own root span follows its times and status; one no longer kept is no loss.
        gone = store.merge_events(experiment_id, root_spans)
        if gone:
            store.merge_events(experiment_id, [each for each in root_spans if each[0] not in gone])


def _create(store: ServerBackend, experiment_id: str, events: list[dict[str, Any]]) -> None:
    comments = [event["origin"]["id"] for event in events if sdk_events.is_comment(event)]
    if comments:
        raise BadRequest(f"comment on {comments[0]!r}: the experiment has no event with that id")
    whole = [
        {key: value for key, value in event.items() if key not in ("_is_merge", "_merge_paths")}
        for event in events
    ]
    body = InsertBody(events=[EventBody.model_validate(event) for event in whole])
    experiment = store.get_experiment_by_id(experiment_id)
    converted = convert(body, whole, experiment.name)
    store.insert_events(experiment_id, converted.rows, converted.spans)


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
