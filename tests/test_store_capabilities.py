"""A store says what it can do: callers check a declared capability, never a method that
quietly does nothing, and the server is typed against the narrow backend it needs."""

from __future__ import annotations

import inspect
import secrets
from pathlib import Path

import pytest
from support.cli import evalrows, json_lines
from support.servers import EvalrowsServer

from pytest_evalrows.core.records import Attempt
from pytest_evalrows.store.base import ServerBackend, Store, UnsupportedError
from pytest_evalrows.store.memory import MemoryStore
from pytest_evalrows.store.postgres import PostgresStore
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


def test_the_postgresql_store_keeps_what_the_embedded_one_keeps_and_is_a_server_backend(
    postgres_url: str,
) -> None:
    with PostgresStore(postgres_url) as store:
        assert (store.attempts, store.history_complete, store.evaluations) == (True, True, True)
        assert dict(store.request_counts()) == {}
        backend: ServerBackend = store
        for name, member in inspect.getmembers(ServerBackend, inspect.isfunction):
            if name.startswith("_"):
                continue
            wanted = inspect.signature(member).parameters
            have = inspect.signature(getattr(backend, name)).parameters
            assert set(wanted) - {"self"} <= set(have), name


def test_the_server_needs_no_more_than_the_backend_offers() -> None:
    import ast

    import pytest_evalrows.braintrust.server as server

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


# -- attempts over HTTP, end to end ----------------------------------------------------------

SUITE = """
import pytest

@pytest.mark.eval
@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_case(case, eval_row):
    eval_row.log(output=case)
    eval_row.score("ok", 1.0)
    assert case != "c"
"""


def test_evalrows_attempts_reads_a_session_recorded_through_evalrows_serve(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    token = f"evk-{secrets.token_hex(16)}"
    served = tmp_path / "served"
    served.mkdir()
    server = EvalrowsServer(served / "served.db", token, served / "server.log")
    server.start()
    try:
        pytester.makeini("[pytest]\n")
        pytester.makepyfile(test_suite=SUITE)
        result = pytester.runpytest_subprocess(
            "--eval-experiment=nightly", f"--eval-store={server.url}", f"--eval-api-key={token}"
        )
        result.assert_outcomes(passed=2, failed=1)
        shown = evalrows("attempts", "nightly", "--json", "--store", server.url, key=token)
    finally:
        server.stop()
    assert shown.returncode == 0, shown.stderr
    assert token not in shown.stdout + shown.stderr
    (attempt,) = json_lines(shown.stdout)
    assert attempt["counts"] == {"passed": 2, "failed": 1}
    assert attempt["delivered"] is True and attempt["ended"]
    report = attempt["report"]
    assert (report["rows_written"], report["new_rows"], report["updated_rows"]) == (3, 3, 0)
    assert report["statuses"] == {"passed": 2, "failed": 1}
    assert report["undelivered_rows"] == 0
    assert f"attempt {attempt['id']}: 3 rows written" in result.stdout.str()
    # The same attempt, kept by the embedded store behind the server.
    with SQLiteStore(served / "served.db") as store:
        (kept,) = store.list_attempts(store.get_experiment("nightly").id)
        assert kept.id == attempt["id"] and kept.report == report
        assert len(store.latest_rows(kept.experiment_id)) == 3  # no attempt among the rows
