"""Spans end to end: every span started while a row runs is stored under it, stamped with the
attempt; a rerun replaces the spans of the rows it ran and no others (issue 3)."""

from __future__ import annotations

import json
import sqlite3
import textwrap
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from support.cli import evalrows, json_lines, session_report
from support.output import header_line, read_summary
from support.sessions import EVALROWS_KEYS, INI, SERVER_CONFTEST, USER_PROVIDER_CONFTEST
from support.store import Stored, default_db, stored

EXPERIMENT = "spans"
CASES = [f"c{i:02d}" for i in range(10)]
FAILING = ["c03", "c07"]


# Each case makes three child spans: one through httpx instrumentation to the local server,
# one user span, one in a thread. Which cases fail is read from failing.txt.
SUITE = textwrap.dedent(
    """
    import pathlib
    import threading

    import httpx
    import pytest
    from opentelemetry import trace

    HERE = pathlib.Path(__file__).parent
    CASES = [f"c{i:02d}" for i in range(10)]
    tracer = trace.get_tracer("inner")


    @pytest.mark.eval
    @pytest.mark.parametrize("case", CASES)
    def test_case(case, server_url, eval_row):
        with httpx.Client() as client:
            assert client.get(f"{server_url}/{case}").text == f"/{case}"
        with tracer.start_as_current_span(f"user-{case}"):
            pass

        def work():
            with tracer.start_as_current_span(f"thread-{case}"):
                pass

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        eval_row.log(output=case)
        assert case not in (HERE / "failing.txt").read_text().split()
    """
)


def row_id(case: str) -> str:
    return f"test_suite.py::test_case[{case}]"


def check_row_spans(found: Stored, case: str, attempt: str, execution: int = 1) -> None:
    """The row has exactly its root plus three children, all of this attempt and execution."""
    rid = row_id(case)
    row = found.rows[rid]
    assert (row.attempt_id, row.execution) == (attempt, execution)
    spans = found.spans_of(rid)
    roots = [span for span in spans if span.span_parents == []]
    assert [span.span_id for span in roots] == [row.span_id]
    children = sorted((span for span in spans if span.span_parents), key=lambda s: s.name)
    assert [(span.name, span.kind) for span in children] == [
        ("GET", "client"),
        (f"thread-{case}", "internal"),
        (f"user-{case}", "internal"),
    ]
    for span in spans:
        assert span.root_span_id == row.root_span_id
        assert (span.attempt_id, span.execution) == (attempt, execution)
    for span in children:
        assert span.span_parents == [row.span_id]
        assert {key: span.attributes.get(key) for key in EVALROWS_KEYS} == {
            "evalrows.attempt_id": attempt,
            "evalrows.row_id": rid,
            "evalrows.experiment": EXPERIMENT,
            "evalrows.execution": execution,
        }


@pytest.mark.parametrize("provider", ["plugin", "user"])
def test_lf_rerun_replaces_only_the_rerun_rows_spans(
    pytester: pytest.Pytester, provider: str
) -> None:
    conftest = SERVER_CONFTEST
    if provider == "user":
        conftest = USER_PROVIDER_CONFTEST + conftest
    pytester.makeini(INI)
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_suite=SUITE)
    failing = pytester.path / "failing.txt"
    failing.write_text(" ".join(FAILING))
    db = default_db(pytester)

    first = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    first.assert_outcomes(passed=8, failed=2)
    expected_note = {
        "plugin": "spans captured by a tracer provider set up for this session",
        "user": "spans captured from your tracer provider",
    }[provider]
    assert header_line(first).endswith(f"; {expected_note}")
    assert session_report(first)["stale_spans_removed"] == 0
    attempt1 = read_summary(first).attempt
    before = stored(db, EXPERIMENT)
    assert sorted(before.rows) == sorted(row_id(case) for case in CASES)
    assert [before.rows[row_id(c)].status for c in FAILING] == ["failed", "failed"]
    for case in CASES:
        check_row_spans(before, case, attempt1)
    assert len(before.spans) == 40
    if provider == "user":
        exported = json.loads((pytester.path / "exported.json").read_text())
        # The user's exporter saw every span the store has, the rows' roots included, each
        # stamped with the evalrows attributes.
        records = {s.span_id: s for s in before.spans}
        assert sorted(span["span_id"] for span in exported) == sorted(records)
        for span in exported:
            record = records[span["span_id"]]
            assert span["name"] == record.name
            assert {key: span["attributes"][key] for key in EVALROWS_KEYS} == {
                key: record.attributes[key] for key in EVALROWS_KEYS
            }

    failing.write_text("")
    second = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", "--lf", "-q")
    second.assert_outcomes(passed=2)
    attempt2 = read_summary(second).attempt
    assert attempt2 != attempt1
    assert session_report(second)["stale_spans_removed"] == 8
    after = stored(db, EXPERIMENT)
    assert sorted(after.rows) == sorted(before.rows)
    for case in CASES:
        if case in FAILING:
            assert after.rows[row_id(case)].status == "passed"
            assert after.rows[row_id(case)].version == 2
            check_row_spans(after, case, attempt2)
            assert not after.span_ids(row_id(case)) & before.span_ids(row_id(case))
        else:
            assert after.rows[row_id(case)] == before.rows[row_id(case)]
            assert after.spans_of(row_id(case)) == before.spans_of(row_id(case))
    assert after.spans_of(None) == []
    assert len(after.spans) == 40

    if provider == "user":
        exported = json.loads((pytester.path / "exported.json").read_text())
        reran = {s.span_id for c in FAILING for s in after.spans_of(row_id(c))}
        assert sorted(span["span_id"] for span in exported) == sorted(reran)
        assert {span["attributes"]["evalrows.attempt_id"] for span in exported} == {attempt2}
        # The plugin only flushed the user's provider: it still exports after the session.
        after_session = json.loads((pytester.path / "after.json").read_text())
        assert after_session == {
            "names": [span["name"] for span in exported] + ["after-session"],
            "provider_is_global": True,
        }


def test_tracing_off_records_rows_but_no_spans(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(USER_PROVIDER_CONFTEST)
    pytester.makepyfile(
        test_off="""
        import pytest
        from opentelemetry import trace

        @pytest.mark.eval
        @pytest.mark.parametrize("case", ["a", "b", "c"])
        def test_x(case, eval_row):
            with trace.get_tracer("t").start_as_current_span(f"user-{case}"):
                pass
        """
    )
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", "--eval-tracing=off")
    result.assert_outcomes(passed=3)
    assert header_line(result).endswith("; span capture off")
    found = stored(default_db(pytester), EXPERIMENT)
    assert sorted(found.rows) == [f"test_off.py::test_x[{c}]" for c in "abc"]
    assert {row.status for row in found.rows.values()} == {"passed"}
    # Nothing was captured: at most each row's own root, never a child or an unowned span.
    row_span_ids = {row.span_id for row in found.rows.values()}
    assert [s for s in found.spans if s.span_parents or s.span_id not in row_span_ids] == []
    # The user's provider was left alone: their spans carry no evalrows attributes.
    exported = json.loads((pytester.path / "exported.json").read_text())
    assert sorted(span["name"] for span in exported) == ["user-a", "user-b", "user-c"]
    assert [span["attributes"] for span in exported] == [{}, {}, {}]


ATTACH_CONFTEST = """
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider


@pytest.fixture(scope="session", autouse=True)
def provider():
    configured = TracerProvider()
    trace.set_tracer_provider(configured)
    yield configured
"""

ATTACH_SUITE = """
import pytest
from opentelemetry import trace


@pytest.mark.eval
@pytest.mark.parametrize("case", ["a", "b", "c"])
def test_x(case, eval_row):
    with trace.get_tracer("t").start_as_current_span(f"user-{case}"):
        pass
"""


def run_attach(pytester: pytest.Pytester) -> tuple[pytest.RunResult, Stored]:
    pytester.makeini(INI)
    pytester.makeconftest(ATTACH_CONFTEST)
    pytester.makepyfile(test_attach=ATTACH_SUITE)
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "--eval-tracing=attach"
    )
    result.assert_outcomes(passed=3)
    return result, stored(default_db(pytester), EXPERIMENT)


def user_spans(found: Stored) -> dict[str, list[str]]:
    return {
        rid: sorted(span.name for span in found.spans_of(rid) if span.span_parents)
        for rid in sorted(found.rows)
    }


def test_attach_picks_up_a_provider_configured_in_a_session_fixture(
    pytester: pytest.Pytester,
) -> None:
    result, found = run_attach(pytester)
    assert header_line(result).endswith("; spans captured once you configure a tracer provider")
    assert len(found.rows) == 3
    # Every row after the one whose setup configured the provider has its span, stamped.
    spans = user_spans(found)
    assert spans["test_attach.py::test_x[b]"] == ["user-b"]
    assert spans["test_attach.py::test_x[c]"] == ["user-c"]
    for case in "bc":
        rid = f"test_attach.py::test_x[{case}]"
        (child,) = [s for s in found.spans_of(rid) if s.span_parents]
        assert child.span_parents == [found.rows[rid].span_id]
        assert child.attributes["evalrows.row_id"] == rid


def test_attach_captures_the_first_rows_spans_too(pytester: pytest.Pytester) -> None:
    _, found = run_attach(pytester)
    assert user_spans(found) == {
        f"test_attach.py::test_x[{case}]": [f"user-{case}"] for case in "abc"
    }


def test_bad_tracing_mode_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "--eval-tracing=bogus"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.strip()]
    assert len(errors) == 1, result.stderr.str()
    assert "--eval-tracing='bogus'" in errors[0]
    assert "auto, attach, off" in errors[0]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not default_db(pytester).exists()


def test_gen_ai_tokens_add_up_and_the_span_helper_records_input_and_output(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(
        test_llm="""
        import threading

        import pytest
        from opentelemetry import trace

        tracer = trace.get_tracer("llm")


        def llm_call(name, **usage):
            with tracer.start_as_current_span(name) as span:
                for key, value in usage.items():
                    span.set_attribute(f"gen_ai.usage.{key}", value)


        @pytest.mark.eval
        @pytest.mark.parametrize("case", ["tokens", "none"])
        def test_llm(case, eval_row):
            if case == "tokens":
                llm_call("call-1", input_tokens=10, output_tokens=3)
                llm_call("call-2", prompt_tokens=5, completion_tokens=2)
                thread = threading.Thread(target=llm_call, args=("call-3",),
                                          kwargs={"input_tokens": 100})
                thread.start()
                thread.join()
            with eval_row.span("retrieve", input={"q": case}, type="tool") as span:
                with tracer.start_as_current_span("inner"):
                    pass
                span.log(output=[case, "ü"], metadata={"k": 1})
        """
    )
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    result.assert_outcomes(passed=2)
    attempt = read_summary(result).attempt
    found = stored(default_db(pytester), EXPERIMENT)

    metrics = found.rows["test_llm.py::test_llm[tokens]"].metrics
    assert (metrics.prompt_tokens, metrics.completion_tokens, metrics.tokens) == (115, 5, 120)
    metrics = found.rows["test_llm.py::test_llm[none]"].metrics
    assert (metrics.prompt_tokens, metrics.completion_tokens, metrics.tokens) == (None, None, None)

    for case in ("tokens", "none"):
        rid = f"test_llm.py::test_llm[{case}]"
        row = found.rows[rid]
        spans = {span.name: span for span in found.spans_of(rid)}
        retrieve = spans["retrieve"]
        assert retrieve.span_parents == [row.span_id]
        assert retrieve.root_span_id == row.root_span_id
        assert spans["inner"].span_parents == [retrieve.span_id]
        assert json.loads(retrieve.attributes["evalrows.input"]) == {"q": case}
        assert json.loads(retrieve.attributes["evalrows.output"]) == [case, "ü"]
        assert json.loads(retrieve.attributes["evalrows.metadata"]) == {"k": 1}
        assert retrieve.attributes["evalrows.span_type"] == "tool"
        assert retrieve.attributes["evalrows.attempt_id"] == attempt
        assert retrieve.attributes["evalrows.row_id"] == rid
    assert sorted(s.name for s in found.spans_of("test_llm.py::test_llm[tokens]")) == [
        "call-1",
        "call-2",
        "call-3",
        "inner",
        "retrieve",
        "test_llm[tokens]",
    ]


def test_spans_command_json_row_filter_and_tree(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(
        """
        import pytest
        from opentelemetry import trace

        @pytest.fixture(scope="session", autouse=True)
        def session_span():
            with trace.get_tracer("fx").start_as_current_span("session-setup"):
                pass
            yield
        """
    )
    pytester.makepyfile(
        test_tree="""
        import pytest
        from opentelemetry import trace

        tracer = trace.get_tracer("tree")

        @pytest.mark.eval
        @pytest.mark.parametrize("case", ["a", "b"])
        def test_t(case, eval_row):
            with tracer.start_as_current_span(f"outer-{case}") as outer:
                outer.set_attribute("case", case)
                with tracer.start_as_current_span(f"nested-{case}"):
                    pass
        """
    )
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    result.assert_outcomes(passed=2)
    attempt = read_summary(result).attempt
    found = stored(default_db(pytester), EXPERIMENT)
    store = f"--store={default_db(pytester)}"

    listed = evalrows("spans", EXPERIMENT, "--json", store, cwd=pytester.path)
    assert listed.returncode == 0, listed.stderr
    objects = json_lines(listed.stdout)
    keys = {"span_id", "root_span_id", "span_parents", "row_id", "attempt_id", "execution"}
    keys |= {"name", "start", "end", "attributes"}
    for obj in objects:
        assert keys <= set(obj), obj
    assert sorted(obj["span_id"] for obj in objects) == sorted(s.span_id for s in found.spans)
    by_name = {obj["name"]: obj for obj in objects}
    row_a = found.rows["test_tree.py::test_t[a]"]
    assert by_name["outer-a"]["row_id"] == row_a.row_id
    assert by_name["outer-a"]["root_span_id"] == row_a.root_span_id
    assert by_name["outer-a"]["span_parents"] == [row_a.span_id]
    assert by_name["outer-a"]["attempt_id"] == attempt
    assert by_name["outer-a"]["execution"] == 1
    assert by_name["outer-a"]["attributes"]["case"] == "a"
    assert by_name["nested-a"]["span_parents"] == [by_name["outer-a"]["span_id"]]
    assert by_name["session-setup"]["row_id"] is None
    assert by_name["outer-a"]["start"] <= by_name["nested-a"]["start"]
    assert by_name["nested-a"]["end"] <= by_name["outer-a"]["end"]

    one = evalrows("spans", EXPERIMENT, "--json", "--row", row_a.row_id, store, cwd=pytester.path)
    assert one.returncode == 0, one.stderr
    assert sorted(obj["name"] for obj in json_lines(one.stdout)) == [
        "nested-a",
        "outer-a",
        "test_t[a]",
    ]
    missing = evalrows("spans", EXPERIMENT, "--row", "nope", store, cwd=pytester.path)
    assert missing.returncode == 1
    assert "nope" in missing.stderr
    assert missing.stdout == ""

    tree = evalrows("spans", EXPERIMENT, store, cwd=pytester.path)
    assert tree.returncode == 0, tree.stderr
    shape = [
        (len(line) - len(line.lstrip(" ")), line.split()[0] if line.strip() else "")
        for line in tree.stdout.splitlines()
    ]
    assert shape == [
        (0, "row"),
        (2, "test_t[a]"),
        (4, "outer-a"),
        (6, "nested-a"),
        (0, "row"),
        (2, "test_t[b]"),
        (4, "outer-b"),
        (6, "nested-b"),
        (0, "no"),
        (2, "session-setup"),
    ]
    lines = tree.stdout.splitlines()
    assert lines[0] == f"row {row_a.row_id}"
    assert lines[1].endswith(f"attempt {attempt[:8]} exec 1] {row_a.span_id}")
    assert lines[8] == "no row (session fixtures)"


def test_spans_nested_in_a_thread_keep_their_tree(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(SERVER_CONFTEST)
    pytester.makepyfile(
        test_threaded="""
        import threading

        import httpx
        import pytest
        from opentelemetry import trace

        tracer = trace.get_tracer("threaded")


        @pytest.mark.eval
        @pytest.mark.parametrize("case", ["a"])
        def test_t(case, server_url, eval_row):
            def work():
                with tracer.start_as_current_span("worker"):
                    with httpx.Client() as client:
                        client.get(server_url)

            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
        """
    )
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    result.assert_outcomes(passed=1)
    found = stored(default_db(pytester), EXPERIMENT)
    row = found.rows["test_threaded.py::test_t[a]"]
    spans = {span.name: span for span in found.spans_of(row.row_id)}
    assert sorted(spans) == ["GET", "test_t[a]", "worker"]
    assert spans["worker"].span_parents == [row.span_id]
    assert spans["GET"].root_span_id == row.root_span_id
    assert spans["GET"].span_parents == [spans["worker"].span_id]


FAILING_SUITE = """
import pytest


@pytest.fixture
def broken():
    raise RuntimeError("no fixture today")


@pytest.mark.eval
@pytest.mark.parametrize("case", ["right", "wrong"])
def test_answer(case, eval_row):
    assert case == "right", "wrong answer"


@pytest.mark.eval
def test_setup(broken, eval_row):
    pass
"""


def raw_spans(db: Path, row_id: str) -> list[dict[str, Any]]:
    """The span bodies of a row as stored, every key included."""
    with closing(sqlite3.connect(db)) as connection:
        found = connection.execute("SELECT body FROM spans WHERE row_id = ?", (row_id,))
        return [json.loads(body) for (body,) in found]


def test_a_failed_or_erroring_rows_root_span_describes_its_exception(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_failing=FAILING_SUITE)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    db = default_db(pytester)
    found = stored(db, EXPERIMENT)

    for row_id, kind, message in [
        ("test_failing.py::test_answer[wrong]", "AssertionError", "wrong answer"),
        ("test_failing.py::test_setup", "RuntimeError", "no fixture today"),
    ]:
        row = found.rows[row_id]
        assert row.error is not None
        assert (row.error.type, row.error.message.splitlines()[0]) == (kind, message)
        (root,) = raw_spans(db, row_id)
        assert root["span_id"] == row.span_id
        assert root["status"] == "error"
        assert root["status_description"] == f"{kind}: {row.error.message}"
        # OpenTelemetry's semantic conventions for exceptions, as SDKs record them.
        assert root["events"] == [
            {
                "name": "exception",
                "timestamp": root["end"],
                "attributes": {
                    "exception.type": kind,
                    "exception.message": row.error.message,
                    "exception.stacktrace": row.error.traceback,
                },
            }
        ]
        assert "test_failing.py:" in row.error.traceback
        (record,) = found.spans_of(row_id)
        assert record.events == root["events"]

    (passed,) = raw_spans(db, "test_failing.py::test_answer[right]")
    assert (passed["status"], passed["events"]) == ("ok", [])
    assert "status_description" not in passed


def test_a_failed_roots_status_description_is_read_back_and_travels_over_http() -> None:
    from pytest_evalrows.braintrust import wire
    from pytest_evalrows.models import SpanRecord

    doc = {
        "span_id": "1" * 16,
        "root_span_id": "2" * 32,
        "row_id": "r",
        "attempt_id": "a",
        "name": "llm",
        "start": 1.0,
        "end": 2.0,
        "status": "error",
        "status_description": "ValueError: bad",
    }
    assert SpanRecord.model_validate(doc).status_description == "ValueError: bad"
    assert wire.event_span(wire.span_event(doc)).status_description == "ValueError: bad"
