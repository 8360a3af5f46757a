"""The store interface: what the recorder and the CLI need from wherever rows live."""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from ..core.records import (
    Attempt,
    Experiment,
    RowDoc,
    RowScores,
    RowState,
    ScoreMetrics,
    SpanDoc,
    StaleSpan,
    WriteResult,
)
from ..errors import StoreError

if TYPE_CHECKING:
    from ..core.judgments import Evaluation
    from ..core.merging import Patch
    from ..core.models import RowVersion, SpanRecord
    from ..core.trace import Trace


class UnsupportedError(StoreError):
    """A store was asked for something it declares it cannot do (see ``Store``'s
    capabilities)."""


class Store(abc.ABC):
    """Where experiments, attempts, row versions and spans are kept.

    Row versions are append-only: writing a row id again adds version n + 1, and readers see
    the latest. Writing the same ``version_id`` twice is a no-op, so a batch can be delivered
    again after a failure without duplicating anything.

    Optional capabilities are declared, not discovered: a caller checks the flag (and tells
    the user) instead of calling a method that would do nothing. ``request_counts`` is the
    one optional reading every store answers (empty when it makes no requests).
    """

    #: Keeps attempt records: ``save_attempt`` stores them and ``list_attempts`` reads them
    #: back. Without it ``save_attempt`` does nothing and ``list_attempts`` raises
    #: ``UnsupportedError``, so that "no attempts" is never said for "not kept".
    attempts: ClassVar[bool] = False
    #: ``history`` lists every version ever written. Without it, only the versions the
    #: store still returns (Braintrust's fetch may return only the latest of each row).
    history_complete: ClassVar[bool] = False

    #: Keeps evaluations (judgments of row versions' traces): ``save_evaluations`` stores
    #: them and ``list_evaluations`` reads them back, and a successful one's score shows on
    #: its row version as ``judge:<judge>`` without a new version. A store that can only
    #: keep finished ones (the HTTP store) leaves out those still pending or in progress.
    evaluations: ClassVar[bool] = False

    #: How the store is named in messages (never holds a secret).
    display_url: str = ""
    #: Whether calls retry failures that may pass (a remote store's 5xx, timeouts). The
    #: delivery turns it off while the store is known down, so that each try costs one call.
    retrying: bool = True

    @abc.abstractmethod
    def get_or_create_experiment(
        self,
        project: str,
        name: str,
        *,
        git_commit: str | None = None,
        git_branch: str | None = None,
    ) -> Experiment: ...

    @abc.abstractmethod
    def get_experiment(self, name: str, project: str | None = None) -> Experiment:
        """The experiment of that name; raises ``UnknownExperimentError``."""

    @abc.abstractmethod
    def list_experiments(self) -> list[Experiment]: ...

    def save_attempt(self, attempt: Attempt) -> None:  # noqa: B027 - see ``attempts``
        """Insert or update an attempt (when the store keeps ``attempts``)."""

    def list_attempts(self, experiment_id: str) -> list[Attempt]:
        """The experiment's attempts, oldest first."""
        raise UnsupportedError(f"{self.display_url or type(self).__name__} keeps no attempts")

    def request_counts(self) -> Mapping[str, int]:
        """Requests made so far, by endpoint: what the summary and the benchmark count.
        Empty for a store that makes no requests."""
        return {}

    @abc.abstractmethod
    def write(
        self,
        experiment_id: str,
        rows: Sequence[RowDoc | RowVersion],
        spans: Sequence[SpanDoc | SpanRecord],
        *,
        late: bool = False,
    ) -> WriteResult:
        """Write a batch of row versions and spans, all or nothing. Rows and spans come as
        models or as plain dicts of the same shape (what the recorder sends).

        A version whose execution started before the stored latest version's never becomes
        the latest (``WriteResult.superseded_rows``). ``late`` says the batch comes from a
        spool, written after the fact: a store that cannot order versions itself reads the
        stored latest versions first."""

    @abc.abstractmethod
    def latest_rows(
        self, experiment_id: str, row_ids: Collection[str] | None = None
    ) -> list[RowVersion]:
        """The latest version of every row (or of the given rows), by row id."""

    def latest_scores(self, experiment_id: str) -> list[RowScores]:
        """The latest version of every row, only as much as summing rows up needs (status,
        scores, tokens, cost): a store that can read that without the bodies does."""
        return [
            RowScores(
                row.row_id,
                row.status,
                row.attempt_id,
                row.scores,
                ScoreMetrics(row.metrics.tokens, row.metrics.cost),
            )
            for row in self.latest_rows(experiment_id)
        ]

    @abc.abstractmethod
    def latest_states(self, experiment_id: str) -> dict[str, RowState]:
        """Row id -> status, params hash, attempt and time of its latest version, in one
        read: what resume and the changed-parameters check need, without the row bodies."""

    @abc.abstractmethod
    def history(self, experiment_id: str, row_id: str) -> list[RowVersion]:
        """Every version of one row, oldest first."""

    @abc.abstractmethod
    def list_spans(self, experiment_id: str, row_id: str | None = None) -> list[SpanRecord]: ...

    @abc.abstractmethod
    def delete_stale_spans(
        self,
        experiment_id: str,
        row_ids: Collection[str] | None = None,
        *,
        dry_run: bool = False,
    ) -> list[StaleSpan]:
        """Delete the spans of the given rows (all rows when None) that do not belong to the
        latest version's attempt and execution; return what was (or would be) deleted.
        Spans under no row are never touched."""

    def remember_rows(self, experiment_id: str, row_ids: Collection[str]) -> None:  # noqa: B027
        """Row ids another process read from this store: they exist, so writing them again
        is an update (stores that count new rows themselves ignore it)."""

    # -- evaluations (see ``evaluations``) -------------------------------------------------

    def save_evaluations(self, experiment_id: str, evaluations: Sequence[Evaluation]) -> None:
        """Insert or update evaluations by id, all or nothing. A successful one's score is
        merged into its row version's ``scores`` as ``judge:<judge_id>`` (the latest
        evaluation of a judge wins); the version itself is not rewritten."""
        raise UnsupportedError(f"{self.display_url or type(self).__name__} keeps no evaluations")

    def list_evaluations(self, experiment_id: str) -> list[Evaluation]:
        """The experiment's evaluations, oldest first (by ``created_at``)."""
        raise UnsupportedError(f"{self.display_url or type(self).__name__} keeps no evaluations")

    def row_evaluations(self, experiment_id: str, row_id: str) -> list[Evaluation]:
        """One row's evaluations (of any of its versions), oldest first: what a row's page
        shows. A store that can read them alone overrides this."""
        return [each for each in self.list_evaluations(experiment_id) if each.row_id == row_id]

    def get_evaluation(self, experiment_id: str, evaluation_id: str) -> Evaluation | None:
        for evaluation in self.list_evaluations(experiment_id):
            if evaluation.id == evaluation_id:
                return evaluation
        return None

    def find_trace(self, experiment_id: str, trace_id: str) -> Trace | None:
        """The row version whose ``root_span_id`` is ``trace_id`` (the latest or an older
        one) with the spans the store still keeps of that trace; None when no version has
        that trace. Of versions of a row sharing a trace (an id logged twice), the highest
        numbered: the one whose execution started last."""
        from ..core.trace import Trace

        for row in self.latest_rows(experiment_id):
            if row.root_span_id == trace_id:
                return Trace(row, self.list_spans(experiment_id, row.row_id))
        for latest in self.latest_rows(experiment_id):
            for row in reversed(self.history(experiment_id, latest.row_id)):
                if row.root_span_id == trace_id:
                    return Trace(row, self.list_spans(experiment_id, row.row_id))
        return None

    def latest_traces(
        self, experiment_id: str, row_ids: Collection[str] | None = None
    ) -> list[Trace]:
        """The latest version of every row (or of the given rows) with its trace's spans,
        in two reads whatever the number of rows; by row id."""
        from ..core.trace import Trace

        rows = self.latest_rows(experiment_id, row_ids)
        by_trace: dict[str, list[SpanRecord]] = {}
        for span in self.list_spans(experiment_id):
            by_trace.setdefault(span.root_span_id, []).append(span)
        return [Trace(row, by_trace.get(row.root_span_id, ())) for row in rows]

    def close(self) -> None:  # noqa: B027 - optional for stores without resources
        """Release connections."""

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- what ``evalrows serve`` needs of a store -------------------------------------------------


class Project(NamedTuple):
    """A project as the HTTP API names it: experiments refer to it by name."""

    id: str
    name: str
    created: float


class StoredEvent(NamedTuple):
    """One row version or one span, with its place in write order (``xact``)."""

    xact: int
    created: float
    row: RowVersion | None
    span: SpanRecord | None


class ServerBackend(Protocol):
    """What ``evalrows serve`` needs of the store behind it (with some of a ``Store``'s reads):
    projects by id, experiments by id, every event in write order, an insert that applies
    one request's rows, spans and deletes together, and attempts. ``SQLiteStore`` is one."""

    display_url: str

    def get_or_create_project(self, name: str) -> Project: ...

    def get_project(self, project_id: str) -> Project | None: ...

    def list_projects(self) -> list[Project]: ...

    def create_experiment(
        self,
        project: str,
        name: str,
        *,
        git_commit: str | None = None,
        git_branch: str | None = None,
        base_experiment_id: str | None = None,
    ) -> Experiment | None:
        """A new experiment ``name`` in ``project`` (the project made if need be), or None
        when the project has one by that name: then nothing is written. Create-only, in one
        transaction: of several servers on one database asking for one name, one gets it.
        ``base_experiment_id``: the experiment it is to be compared with (Braintrust's
        ``base_exp_id``), kept with it."""
        ...

    def base_experiment_id(self, experiment_id: str) -> str | None:
        """The ``base_experiment_id`` the experiment was created with, if any."""
        ...

    def get_or_create_experiment(
        self,
        project: str,
        name: str,
        *,
        git_commit: str | None = None,
        git_branch: str | None = None,
    ) -> Experiment: ...

    def get_experiment(self, name: str, project: str | None = None) -> Experiment: ...

    def get_experiment_by_id(self, experiment_id: str) -> Experiment:
        """Raises ``UnknownExperimentError``."""
        ...

    def list_experiments(self) -> list[Experiment]: ...

    def fetch_events(
        self, experiment_id: str, *, limit: int, before: int | None = None
    ) -> list[StoredEvent]:
        """Row versions and spans (not the rows' own roots), newest first, at most
        ``limit`` with ``xact`` below ``before``."""
        ...

    def insert_events(
        self,
        experiment_id: str,
        rows: Sequence[RowDoc],
        spans: Sequence[SpanDoc],
        *,
        delete_span_ids: Collection[str] = (),
    ) -> WriteResult:
        """One insert request, all or nothing. A row's root is its row event: the roots of
        the versions it replaces are history, not spans to clean up later.

        A span under no row (``row_id`` None) in the trace of a row (its ``root_span_id`` is
        the ``root_span_id`` of a row's latest version) goes under that row, whichever came
        first: another client sends a trace's spans without row ids, and may send children
        before their root. Only spans of the traces this request writes (rows' and spans')
        are looked at; ``row_id`` changes in the column and in the stored body alike."""
        ...

    def save_attempt(self, attempt: Attempt) -> None: ...

    def list_attempts(self, experiment_id: str) -> list[Attempt]: ...

    def latest_states(self, experiment_id: str) -> dict[str, RowState]: ...

    def history(self, experiment_id: str, row_id: str) -> list[RowVersion]: ...

    def save_evaluations(self, experiment_id: str, evaluations: Sequence[Evaluation]) -> None: ...

    def list_evaluations(self, experiment_id: str) -> list[Evaluation]: ...

    def merge_scores(
        self, experiment_id: str, merges: Mapping[str, tuple[str | None, dict[str, Any]]]
    ) -> list[str]:
        """Merge scores into rows' versions (the API's ``_is_merge``), all or nothing: row
        id -> (version id, or None for the row's latest; scores, a None score removing
        one). Returns the row ids without such a version; then nothing is merged."""
        ...

    def find_trace(self, experiment_id: str, trace_id: str) -> Trace | None: ...

    def latest_scores(self, experiment_id: str) -> list[RowScores]: ...

    def latest_rows(
        self, experiment_id: str, row_ids: Collection[str] | None = None
    ) -> list[RowVersion]: ...

    def merge_events(self, experiment_id: str, patches: Sequence[tuple[str, Patch]]) -> list[str]:
        """Partial updates of stored events (the API's ``_is_merge``), in the order given,
        in place, all or nothing: (event id, patch) pairs, each merged into the stored body
        with ``core.merging.merge_body``.

        An event id names, in this order of precedence: the row with that row id (its latest
        version's body is merged, no new version is made); else the span with that span id;
        else the span whose ``attributes[core.merging.EVENT_ID_ATTRIBUTE]`` is that id. Two
        patches of one id are merged one after the other into the same body.

        What the store derives from a body follows the merged one: a version's status and
        params hash where the row's latest is listed, a span's start. Nothing else moves: a
        merge changes no version's number, order, attempt or trace, no span's row.

        Returns the event ids found nowhere, in the order given (each once); then nothing at
        all is merged."""
        ...
