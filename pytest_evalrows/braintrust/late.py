"""A late write (a batch delivered from a spool, after the fact) over the HTTP API, where
writing a row id again makes the latest version whatever its start: the versions an older
execution wrote, and those the store has already, are left out before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.models import RowDoc, SpanDoc, WriteResult
from . import wire
from .history import Versions, start


@dataclass
class StoredRows:
    """When each stored row's latest execution started, and every stored version id."""

    starts: dict[str, float] = field(default_factory=dict)
    version_ids: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, versions: Versions) -> StoredRows:
        stored = cls()
        for row_versions in versions.rows.values():
            for event in row_versions:
                stored.wrote(event, version_id=_version_id(event))
        return stored

    def wrote(self, row: dict[str, Any], version_id: str | None = None) -> None:
        """Remember a version written (a row document, or a row event with its id)."""
        row_id = row.get("row_id") or row["id"]
        self.starts[row_id] = max(self.starts.get(row_id, float("-inf")), start(row))
        self.version_ids.add(version_id or row["version_id"])

    def still_to_write(
        self, rows: list[RowDoc], spans: list[SpanDoc], result: WriteResult
    ) -> tuple[list[RowDoc], list[SpanDoc]]:
        """The rows and spans of a late batch worth writing; those left out are counted in
        ``result``. A version the store has is not written again (its spans are, as writing
        them is idempotent); a version of an older execution is not written at all, nor are
        its spans."""
        already = {row["version_id"] for row in rows} & self.version_ids
        result.duplicate_rows = len(already)
        rows = [row for row in rows if row["version_id"] not in already]
        older = {
            (row["row_id"], row["root_span_id"])
            for row in rows
            if self.starts.get(row["row_id"], float("-inf")) > start(row)
        }
        result.superseded_rows = len(older)
        rows = [row for row in rows if (row["row_id"], row["root_span_id"]) not in older]
        spans = [
            span for span in spans if (span.get("row_id"), span.get("root_span_id")) not in older
        ]
        return rows, spans


def _version_id(event: dict[str, Any]) -> str:
    own = wire.own_metadata(event)
    return str(own.get("version_id") or event.get("_xact_id") or "")
