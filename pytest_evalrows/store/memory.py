"""An in-memory store for users' own tests: the embedded store without a file."""

from __future__ import annotations

from .sqlite import SQLiteStore


class MemoryStore(SQLiteStore):
    """Everything the embedded store does, kept in memory for the life of the object.

    Inject it through the ``pytest_evalrows_make_store`` hook to check what a suite records
    without touching the disk.
    """

    def __init__(self) -> None:
        super().__init__(":memory:")
