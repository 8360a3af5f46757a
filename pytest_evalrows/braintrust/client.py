"""A store that speaks Braintrust's REST API: Braintrust itself, or ``evalrows serve``.

Rows and spans become experiment events (see ``wire``). The calls, their retries and batches
are ``api``; experiments and projects ``experiments``; reading the fetched events back
``history``; what a late write leaves out ``late``. Nothing here logs or returns the API key.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

import httpx

from ..core.models import (
    Attempt,
    Experiment,
    RowDoc,
    RowState,
    RowVersion,
    SpanDoc,
    SpanRecord,
    StaleSpan,
    WriteResult,
    as_doc,
)
from ..core.redaction import public_url
from ..store.base import Store
from . import history, judgments, wire
from .api import FETCH_LIMIT, MAX_BYTES, MAX_EVENTS, APIClient, batches
from .experiments import Experiments
from .history import Versions
from .late import StoredRows

if TYPE_CHECKING:
    from ..core.judgments import Evaluation
    from ..core.trace import Trace

# Where they have always been imported from.
__all__ = ["FETCH_LIMIT", "MAX_BYTES", "MAX_EVENTS", "HTTPStore", "batches", "public_url"]


class HTTPStore(Store):
    """Rows in a Braintrust experiment, through ``/v1/project``, ``/v1/experiment`` and its
    ``insert`` and ``fetch`` endpoints. ``transport`` lets tests inject an httpx transport."""

    # Braintrust has no attempts. Each is kept as an event of the experiment (see
    # ``wire.attempt_event``), not in the experiment's metadata: PATCH /v1/experiment/{id}
    # replaces that object, so two sessions finishing at once would lose one's record (read,
    # change, write), and the record would grow with every session. An insert of its own id
    # is append-safe, retried and spooled like any write, and ``evalrows serve`` keeps it as
    # an attempt. The cost: Braintrust's UI lists it among the rows, named "evalrows attempt".
    attempts = True
    # Finished evaluations only: each is an event of its own (see ``judgments``).
    evaluations = True

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api = APIClient(
            base_url,
            api_key=api_key,
            timeout=timeout,
            retries=retries,
            transport=transport,
            sleep=sleep,
        )
        self.display_url = self._api.display_url
        self._experiments = Experiments(self._api)
        # Row ids known to exist per experiment: tells a new row from an update.
        self._known: dict[str, set[str]] = {}
        # Experiments whose rows this process read (or was told of): what it tells new from
        # updated by, where the server does not count them.
        self._read: set[str] = set()
        # The stored rows' starts and version ids, once read for a late write.
        self._stored: dict[str, StoredRows] = {}
        # The versions written or read, for the evaluations of them.
        self._judged: dict[str, judgments.KnownVersions] = {}
        #: What the last read could not make sense of (named by the CLI, like SQLite's).
        self.unreadable: list[str] = []
        # Requests made, by the endpoint's last path part: what the benchmark counts.
        self.requests: Counter[str] = self._api.requests

    @property
    def retrying(self) -> bool:
        return self._api.retrying

    @retrying.setter
    def retrying(self, value: bool) -> None:
        self._api.retrying = value

    def close(self) -> None:
        self._api.close()

    def request_counts(self) -> dict[str, int]:
        return dict(self.requests)

    # -- experiments and attempts --------------------------------------------------------

    def get_or_create_experiment(
        self,
        project: str,
        name: str,
        *,
        git_commit: str | None = None,
        git_branch: str | None = None,
    ) -> Experiment:
        return self._experiments.get_or_create(project, name, git_commit, git_branch)

    def get_experiment(self, name: str, project: str | None = None) -> Experiment:
        return self._experiments.get(name, project)

    def list_experiments(self) -> list[Experiment]:
        return self._experiments.list_all()

    def save_attempt(self, attempt: Attempt) -> None:
        self._api.insert(attempt.experiment_id, [wire.attempt_event(attempt)])

    def list_attempts(self, experiment_id: str) -> list[Attempt]:
        # Fetch has no filter the contract promises: read every event, keep the attempts.
        return history.attempts(self._api.fetch_all(experiment_id), experiment_id)

    # -- rows and spans ------------------------------------------------------------------

    def write(
        self,
        experiment_id: str,
        rows: Sequence[RowDoc | RowVersion],
        spans: Sequence[SpanDoc | SpanRecord],
        *,
        late: bool = False,
    ) -> WriteResult:
        docs = [as_doc(row) for row in rows]
        result = WriteResult()
        span_docs = [as_doc(span) for span in spans]
        if late and docs:
            stored = self._stored_rows(experiment_id)
            docs, span_docs = stored.still_to_write(docs, span_docs, result)
        events = [wire.row_event(row) for row in docs]
        for doc in span_docs:
            # The row's event is its root span; spans under no row would show as rows.
            if doc.get("row_id") is not None and not wire.is_root_record(doc):
                events.append(wire.span_event(doc))
        counted = self._api.insert(experiment_id, events)
        known = self._known.setdefault(experiment_id, set())
        result.spans = len(events) - len(docs)
        remembered = self._stored.get(experiment_id)
        judged = self._judged.setdefault(experiment_id, judgments.KnownVersions())
        for row in docs:
            judged.wrote(row["row_id"], row["version_id"], row["span_id"], history.start(row))
            if counted is None:
                # Told from what this process read and wrote: right unless another process
                # wrote the same rows meanwhile (``certain`` says when nothing was read).
                result.updated_rows += int(row["row_id"] in known)
                result.new_rows += int(row["row_id"] not in known)
            known.add(row["row_id"])
            if remembered is not None:
                remembered.wrote(row)
        if counted is not None:
            counted.add_to(result, late=late)
        else:
            # A batch without rows (an attempt's spool entry) tells new from updated for none.
            result.certain = experiment_id in self._read or not docs
        return result

    def remember_rows(self, experiment_id: str, row_ids: Collection[str]) -> None:
        self._known.setdefault(experiment_id, set()).update(row_ids)
        self._read.add(experiment_id)

    def _stored_rows(self, experiment_id: str) -> StoredRows:
        """What a late write checks against: read once, then kept up to date by this store's
        own writes."""
        if experiment_id not in self._stored:
            self._stored[experiment_id] = StoredRows.read(self._versions(experiment_id))
        return self._stored[experiment_id]

    def _versions(self, experiment_id: str) -> Versions:
        """Every row's versions and every span's latest event; the rows are known then."""
        found = history.versions(self._api.fetch_all(experiment_id), experiment_id)
        self.unreadable[:] = found.unreadable
        self._known[experiment_id] = set(found.rows)
        self._read.add(experiment_id)
        self._judged[experiment_id] = judgments.KnownVersions.of_events(found.rows)
        return found

    def latest_rows(
        self, experiment_id: str, row_ids: Collection[str] | None = None
    ) -> list[RowVersion]:
        return list(self._versions(experiment_id).latest(row_ids).values())

    def latest_states(self, experiment_id: str) -> dict[str, RowState]:
        return {
            row.row_id: RowState(
                row.status,
                row.metadata.get("params_hash"),
                row.attempt_id,
                row.created or 0.0,
            )
            for row in self.latest_rows(experiment_id)
        }

    def history(self, experiment_id: str, row_id: str) -> list[RowVersion]:
        found = self._versions(experiment_id)
        return [
            found.row(event, number)
            for number, event in enumerate(found.rows.get(row_id, []), start=1)
        ]

    # -- evaluations ---------------------------------------------------------------------

    def save_evaluations(self, experiment_id: str, evaluations: Sequence[Evaluation]) -> None:
        """The finished ones, as events (pending and running ones are not kept). A score is
        merged into the row's event when the version judged is the row's latest, as read
        just before."""
        finished = [evaluation for evaluation in evaluations if evaluation.finished]
        if not finished:
            return
        # Read afresh every time: a merge lands on whatever the row's event is now, so a
        # version another process wrote since this store last read must not get this score.
        self._versions(experiment_id)
        self._api.insert(experiment_id, judgments.events(finished, self._judged[experiment_id]))

    def list_evaluations(self, experiment_id: str) -> list[Evaluation]:
        return self._versions(experiment_id).evaluations

    def find_trace(self, experiment_id: str, trace_id: str) -> Trace | None:
        found = self._versions(experiment_id)
        rows = [
            found.row(event, number)
            for events in found.rows.values()
            for number, event in enumerate(events, start=1)
            if event.get("root_span_id") == trace_id
        ]
        spans = found.spans_read()
        return judgments.trace_of(rows, spans, trace_id, self._experiments.name_of(experiment_id))

    def latest_traces(
        self, experiment_id: str, row_ids: Collection[str] | None = None
    ) -> list[Trace]:
        found = self._versions(experiment_id)
        spans = found.spans_read()
        experiment = self._experiments.name_of(experiment_id)
        return judgments.traces_of(found.latest(row_ids).values(), spans, experiment)

    def list_spans(self, experiment_id: str, row_id: str | None = None) -> list[SpanRecord]:
        found = self._versions(experiment_id)
        # The rows' roots carry the experiment's name, as the embedded store's do.
        experiment = self._experiments.name_of(experiment_id)
        spans = [wire.row_root_span(row, experiment) for row in found.latest().values()]
        spans += found.spans_read()
        if row_id is not None:
            spans = [span for span in spans if span.row_id == row_id]
        return sorted(spans, key=lambda span: (span.start, span.span_id))

    def delete_stale_spans(
        self,
        experiment_id: str,
        row_ids: Collection[str] | None = None,
        *,
        dry_run: bool = False,
    ) -> list[StaleSpan]:
        stale = self._versions(experiment_id).stale_spans(row_ids)
        if stale and not dry_run:
            deletes = [wire.delete_event(span.span_id) for span in stale]
            deleted = self._api.insert(experiment_id, deletes)
            if deleted is not None and deleted.deleted_span_ids is not None:
                # What this call removed: another session cleaning the same rows at once
                # may have removed some first (evalrows serve says; Braintrust does not).
                gone = set(deleted.deleted_span_ids)
                stale = [span for span in stale if span.span_id in gone]
        return stale
