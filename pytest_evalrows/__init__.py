"""pytest-evalrows: run LLM evals as pytest tests, one experiment row per case.

Names are imported on first use: pytest loads this package in every session, and a session
that records nothing should not pay for the store and the models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .core.row import EvalRow
from .errors import (
    EvalrowsError,
    EvalrowsWarning,
    InvalidScoreError,
    StoreAuthError,
    StoreError,
    UnknownExperimentError,
)

if TYPE_CHECKING:
    from .store import MemoryStore, SQLiteStore, Store

__version__ = "0.1.0"

_LAZY = {"MemoryStore": ".store", "SQLiteStore": ".store", "Store": ".store"}

__all__ = [
    "EvalRow",
    "EvalrowsError",
    "EvalrowsWarning",
    "InvalidScoreError",
    "MemoryStore",
    "SQLiteStore",
    "Store",
    "StoreAuthError",
    "StoreError",
    "UnknownExperimentError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
