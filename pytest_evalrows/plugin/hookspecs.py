"""The plugin's own hooks. Implement them in a ``conftest.py`` or a plugin; call by keyword."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..store.base import Store
    from ..store.urls import StoreURL


@pytest.hookspec(firstresult=True)
def pytest_evalrows_row_id(item: pytest.Item, default: str) -> str | None:
    """Return the row id for an eval item, or None to keep ``default``.

    ``default`` is the rootdir-relative node id, or the id built from the ``key`` of the
    ``eval`` marker. Called once per eval item at collection. The id must not depend on the
    invocation directory, the selection or the machine. For a trial, ``default`` is its
    case's row id, and ``#<k>`` is added to the id returned.
    """


@pytest.hookspec()
def pytest_evalrows_row_fields(item: pytest.Item, fields: dict[str, Any]) -> None:
    """Change a row's fields just before it is written, for example to redact secrets.

    ``fields`` holds ``input``, ``output``, ``expected``, ``scores``, ``metadata`` and ``tags``
    as JSON-safe values; change it in place. Called once per recorded execution.
    """


@pytest.hookspec(firstresult=True)
def pytest_evalrows_make_store(config: pytest.Config, url: StoreURL) -> Store | None:
    """Return the store to record into, or None to open the one ``url`` names.

    Return a ``pytest_evalrows.MemoryStore`` to keep a test's rows in memory. A store returned
    here stays open when the session ends: closing it is its owner's business.
    """
