"""Where rows live: the interface, the embedded SQLite store and an in-memory store.

Imported lazily: `store.urls` is needed to validate settings in every session, the stores
themselves only when recording.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Store
    from .memory import MemoryStore
    from .sqlite import SQLiteStore

_LAZY = {"Store": ".base", "MemoryStore": ".memory", "SQLiteStore": ".sqlite"}

__all__ = ["MemoryStore", "SQLiteStore", "Store"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
