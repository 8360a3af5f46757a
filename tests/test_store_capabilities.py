"""A store says what it can do: callers check a declared capability, never a method that
quietly does nothing, and the server is typed against the narrow backend it needs."""

from __future__ import annotations

import inspect

import pytest

from pytest_evalrows.records import Attempt
from pytest_evalrows.store.base import ServerBackend, Store, UnsupportedError
from pytest_evalrows.store.memory import MemoryStore
from pytest_evalrows.store.sqlite import SQLiteStore


class _Bare(Store):
    """A store that implements only what every store must."""

    get_or_create_experiment = get_experiment = list_experiments = None  # type: ignore[assignment]
    write = latest_rows = latest_states = history = None  # type: ignore[assignment]
    list_spans = delete_stale_spans = None  # type: ignore[assignment]


def test_a_store_declares_no_optional_capability_by_default() -> None:
    bare = _Bare()
    assert (bare.attempts, bare.history_complete) == (False, False)
    assert dict(bare.request_counts()) == {}
    bare.save_attempt(Attempt(id="a", experiment_id="e", started=1.0))  # declared: not kept
    with pytest.raises(UnsupportedError, match="keeps no attempts"):
        bare.list_attempts("e")


def test_the_embedded_stores_keep_attempts_and_history() -> None:
    for store in (SQLiteStore(":memory:"), MemoryStore()):
        with store:
            assert (store.attempts, store.history_complete) == (True, True)
            assert dict(store.request_counts()) == {}


def test_the_embedded_store_is_a_server_backend() -> None:
    # mypy checks the assignment; this checks that every method the protocol names exists
    # with the same keyword parameters.
    with SQLiteStore(":memory:") as store:
        backend: ServerBackend = store
        for name, member in inspect.getmembers(ServerBackend, inspect.isfunction):
            if name.startswith("_"):
                continue
            wanted = inspect.signature(member).parameters
            have = inspect.signature(getattr(backend, name)).parameters
            assert set(wanted) - {"self"} <= set(have), name


def test_the_server_needs_no_more_than_the_backend_offers() -> None:
    import ast
    from pathlib import Path

    import pytest_evalrows.server as server

    tree = ast.parse(Path(server.__file__).read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "store"
    }
    offered = {name for name in dir(ServerBackend) if not name.startswith("_")}
    offered |= set(ServerBackend.__annotations__)
    assert used and used <= offered, used - offered
