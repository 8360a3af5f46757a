"""Edges where the plugin used to crash, lose data or accept bad input."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from pytest_evalrows import StoreError
from pytest_evalrows.braintrust.client import HTTPStore
from pytest_evalrows.delivery.spool import Spool, session_name
from pytest_evalrows.store.sqlite import SQLiteStore
from pytest_evalrows.store.urls import parse_store_url


def test_a_reused_attempt_id_never_shares_a_spool_file(tmp_path: Path) -> None:
    # Same attempt id, same process (as a re-run CI job in a container, pytest being pid 1).
    # Checked first: with one name, the second Spool below would wait forever for the lock.
    assert session_name("ci-42") != session_name("ci-42")
    first = Spool(tmp_path, session_name("ci-42"))
    try:
        first.append(store="s", project="p", experiment="e", rows=[{"row_id": "r"}], spans=[])
        second = Spool(tmp_path, session_name("ci-42"))
        second.close()
        assert second.path != first.path
        assert first.path.exists()  # the second session neither took it over nor removed it
    finally:
        first.close()


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://localhost:99999", "Port out of range"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://local host", "names no valid host"),
        ("https://", "names no valid host"),
    ],
)
def test_a_malformed_http_store_url_is_refused_up_front(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_store_url(url, Path.cwd())


def test_an_old_sqlite_is_refused_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(StoreError, match=r"SQLite 3\.31\.1 is too old.*3\.35 or newer"):
        SQLiteStore(tmp_path / "rows.db")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (httpx.Response(413, text="too big"), r"refused POST /v1/project as too large \(413\)"),
        (httpx.Response(200, json={"name": "p"}), r"answered without a 'id'"),
        (httpx.Response(200, json=["not", "an", "object"]), r"answered POST /v1/project with"),
    ],
)
def test_odd_answers_from_an_http_store_are_store_errors(
    answer: httpx.Response, message: str
) -> None:
    transport = httpx.MockTransport(lambda request: answer)
    with (
        HTTPStore("http://store.test", transport=transport) as store,
        pytest.raises(StoreError, match=message),
    ):
        store.get_or_create_experiment("p", "e")


def test_warnings_as_errors_stop_the_session_with_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_positional="""
        import pytest

        @pytest.mark.eval
        @pytest.mark.parametrize("case", [{"q": 1}, {"q": 2}])
        def test_case(case):
            pass
        """
    )
    result = pytester.runpytest_subprocess("--eval-experiment=strict")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in output
    result.stderr.fnmatch_lines(["ERROR: evalrows: the rows of *keyed by positional*"])


def test_a_reused_attempt_id_still_leaves_only_the_latest_spans(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_traced="""
        import pytest
        from opentelemetry import trace

        @pytest.mark.eval
        @pytest.mark.parametrize("n", [1, 2])
        def test_n(n):
            with trace.get_tracer("t").start_as_current_span("step"):
                pass
        """
    )
    args = ("--eval-experiment=reused", "--eval-attempt-id=ci-123")
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=2)
    second = pytester.runpytest_subprocess(*args)
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(["stale spans removed: 4 *"])
    with SQLiteStore(pytester.path / ".evalrows" / "evalrows.db") as store:
        experiment = store.get_experiment("reused")
        latest = {row.row_id: row.root_span_id for row in store.latest_rows(experiment.id)}
        spans = store.list_spans(experiment.id)
        assert store.delete_stale_spans(experiment.id, dry_run=True) == []
    assert len(spans) == 4  # a root and a step per row, of the second session only
    assert {(span.row_id, span.root_span_id) for span in spans} == set(latest.items())
