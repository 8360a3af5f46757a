"""The store interface: what the recorder and the CLI need from wherever rows live."""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from ..records import Attempt, Experiment, RowDoc, RowState, SpanDoc, StaleSpan, WriteResult

if TYPE_CHECKING:
    from ..models import RowVersion, SpanRecord


class Store(abc.ABC):
    """Where experiments, attempts, row versions and spans are kept.

    Row versions are append-only: writing a row id again adds version n + 1, and readers see
    the latest. Writing the same ``version_id`` twice is a no-op, so a batch can be delivered
    again after a failure without duplicating anything.
    """

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

    @abc.abstractmethod
    def save_attempt(self, attempt: Attempt) -> None:
        """Insert or update an attempt."""

    @abc.abstractmethod
    def list_attempts(self, experiment_id: str) -> list[Attempt]: ...

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
