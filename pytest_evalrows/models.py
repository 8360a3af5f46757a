"""The models rows are read back as (public: kept at this path for users' code).

A re-export of ``pytest_evalrows.core.models``.
"""

from __future__ import annotations

from .core.models import (
    MAX_FIELD_BYTES,
    STATUSES,
    Attempt,
    ErrorInfo,
    Experiment,
    Metrics,
    RowDoc,
    RowState,
    RowVersion,
    SpanDoc,
    SpanRecord,
    StaleSpan,
    Status,
    WriteResult,
    as_doc,
    check_score,
    json_value,
)

__all__ = [
    "MAX_FIELD_BYTES",
    "STATUSES",
    "Attempt",
    "ErrorInfo",
    "Experiment",
    "Metrics",
    "RowDoc",
    "RowState",
    "RowVersion",
    "SpanDoc",
    "SpanRecord",
    "StaleSpan",
    "Status",
    "WriteResult",
    "as_doc",
    "check_score",
    "json_value",
]
