"""Where rows live: the interface, the embedded SQLite store, an in-memory store and the
PostgreSQL store.

Imported lazily: `store.urls` is needed to validate settings in every session, the stores
themselves only when recording.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Store
    from .memory import MemoryStore
    from .postgres import PostgresStore
    from .sqlite import SQLiteStore

_LAZY = {
    "Store": ".base",
    "MemoryStore": ".memory",
    "SQLiteStore": ".sqlite",
    "PostgresStore": ".postgres",
}

__all__ = ["MemoryStore", "PostgresStore", "SQLiteStore", "Store"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
