"""Opening the store a URL names: the one place that knows every kind of store.

Above the layers (like ``cli`` and ``plugin``): it picks between ``store.sqlite`` and
``braintrust.client``, which may not import each other. Each store's module is imported
only when its URL is opened (psycopg only for a ``postgresql://`` one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import EvalrowsError

if TYPE_CHECKING:
    from .store.base import Store
    from .store.postgres import PostgresStore
    from .store.sqlite import SQLiteStore
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
    return open_local_store(url, create=create)


def open_local_store(url: StoreURL, *, create: bool = True) -> SQLiteStore | PostgresStore:
    """The store a URL names when it is one ``evalrows serve`` can serve (a SQLite file or a
    PostgreSQL database: each also a ``ServerBackend``). Raises EvalrowsError for another kind,
    StoreError when it cannot be opened."""
    if url.scheme == "postgresql":
        from .store.postgres import PostgresStore

        return PostgresStore(url.text, create=create)
    if url.scheme != "sqlite" or url.path is None:
        raise EvalrowsError(
            f"evalrows serve serves a SQLite file or a PostgreSQL database, not {url.display()}"
        )
    from .store.sqlite import SQLiteStore

    return SQLiteStore(url.path, create=create)
