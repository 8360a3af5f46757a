"""Opening the store a URL names: the one place that knows every kind of store.

Above the layers (like ``cli`` and ``plugin``): it picks between ``store.sqlite`` and
``braintrust.client``, which may not import each other. Each store's module is imported
only when its URL is opened (psycopg only for a ``postgresql://`` one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store.base import Store
    from .store.urls import StoreURL


def open_store(
    url: StoreURL,
    *,
    create: bool = True,
    api_key: str | None = None,
    timeout: float = 30.0,
    retries: int = 5,
) -> Store:
    """Open the store a URL names. Raises StoreError when it cannot."""
    if url.scheme == "http":
        from .braintrust.client import HTTPStore

        return HTTPStore(url.text, api_key=api_key, timeout=timeout, retries=retries)
    if url.scheme == "postgresql":
        from .store.postgres import PostgresStore

        return PostgresStore(url.text, create=create)
    from .store.sqlite import SQLiteStore

    assert url.path is not None
    return SQLiteStore(url.path, create=create)
