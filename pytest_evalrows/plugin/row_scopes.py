"""What code runs for, as span capture sees it: one execution of a row, a wider fixture, or a
plain test. Each is the value of the row scope in the context where it runs. Pure: imports no
pytest.
"""

from __future__ import annotations

from contextvars import Token

from opentelemetry import context as otel_context

from ..core import ids
from ..core.row import RowDraft


class ActiveRow:
    """One execution of a row while it runs: the ids and attributes its spans receive, and
    what entering it changed in its context."""

    __slots__ = (
        "attributes",
        "closed",
        "context",
        "draft",
        "late_token",
        "otel_token",
        "span_hex",
        "token",
        "trace_hex",
    )

    def __init__(self, draft: RowDraft, experiment: str, attempt_id: str) -> None:
        self.draft = draft
        self.trace_hex = ids.trace_id_hex(draft.trace_id)
        self.span_hex = ids.span_id_hex(draft.span_id)
        self.closed = False
        self.attributes: dict[str, str | int] = {
            "evalrows.attempt_id": attempt_id,
            "evalrows.row_id": draft.plan.row_id,
            "evalrows.experiment": experiment,
            "evalrows.execution": draft.execution,
        }
        # The OpenTelemetry context entered for the row: a root recorded late replaces it only
        # while it is still the current one.
        self.context: otel_context.Context | None = None
        self.otel_token: object = None
        self.late_token: object = None
        self.token: Token[Scope] | None = None


class Outside:
    """A session, package, module or class fixture sets up or tears down: no row's spans."""

    __slots__ = ("closed", "otel_token", "token")

    def __init__(self) -> None:
        self.closed = False
        self.otel_token: object = None
        self.token: Token[Scope] | None = None


class PlainTest:
    """A test that is not an eval runs: its spans are nobody's and are not kept."""

    __slots__ = ("closed", "token")

    def __init__(self) -> None:
        self.closed = False
        self.token: Token[Scope] | None = None


Scope = ActiveRow | Outside | PlainTest | None
