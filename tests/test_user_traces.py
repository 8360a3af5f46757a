"""A user's own tracer provider and exporter, end to end (issue 9, items 10 to 12).

Their exporter must get whole traces: each row execution is a recorded root span there, with
the ids its children point to and the store has, the row's status and its exception. The
plugin's own provider keeps the cheap, non-recording root. A provider set in a session fixture
under ``--eval-tracing=auto`` is refused by OpenTelemetry, and the summary says so; under
``attach`` it gets every row's root, the first one's too. Spans of threads that carry the
test's context are in the row's trace in the user's data as in the store.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from support.output import header_line, read_summary, summary_lines
from support.sessions import EVALROWS_KEYS, INI
from support.store import Stored, default_db, stored

EXPERIMENT = "user-traces"

# What an exporter got, dumped as JSON by every process (xdist workers each have their own).
DUMP = textwrap.dedent(
    """
    import json
    import os
    import pathlib

    HERE = pathlib.Path(__file__).parent


    def dump(exporter):
        spans = [
            {
                "name": span.name,
                "trace_id": format(span.context.trace_id, "032x"),
                "span_id": format(span.context.span_id, "016x"),
                "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
                "status": span.status.status_code.name.lower(),
                "description": span.status.description,
                "start": span.start_time,
                "end": span.end_time,
                "attributes": dict(span.attributes or {}),
                "events": [
                    {"name": event.name, "attributes": dict(event.attributes or {})}
                    for event in span.events
                ],
            }
            for span in exporter.get_finished_spans()
        ]
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        (HERE / f"exported-{worker}.json").write_text(json.dumps(spans))
    """
)

# The user's provider, configured in conftest.py before the session starts.
USER_CONFTEST = DUMP + textwrap.dedent(
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    EXPORTER = InMemorySpanExporter()
    PROVIDER = TracerProvider()
    PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(PROVIDER)


    def pytest_sessionfinish(session):
        dump(EXPORTER)
    """
)

# Each case logs whether its current span is recorded, makes a span of its own, and works in
# a thread and a pool that carry its context, and in a thread that does not.
SUITE = """
import contextvars
import pathlib
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import trace

tracer = trace.get_tracer("user")
HERE = pathlib.Path(__file__).parent


def work(name, eval_row):
    with tracer.start_as_current_span(name):
        with eval_row.span(f"{name}-helper"):
            pass


def run(case, eval_row):
    eval_row.log(metadata={"root_recording": trace.get_current_span().is_recording()})
    with tracer.start_as_current_span(f"user-{case}"):
        pass
    copied = contextvars.copy_context()
    thread = threading.Thread(target=copied.run, args=(work, f"copied-{case}", eval_row))
    thread.start()
    thread.join()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(contextvars.copy_context().run, work, f"pooled-{case}", eval_row).result()
    plain = threading.Thread(
        target=lambda: tracer.start_span(f"plain-{case}").end()
    )
    plain.start()
    plain.join()


@pytest.fixture
def broken():
    raise RuntimeError("no fixture today")


@pytest.mark.eval
@pytest.mark.parametrize("case", ["passes", "fails"])
def test_case(case, eval_row):
    run(case, eval_row)
    assert case == "passes", "wrong answer"


@pytest.mark.eval
def test_setup_error(broken, eval_row):
    pass


@pytest.mark.eval
@pytest.mark.flaky(reruns=1)
def test_flaky(eval_row):
    run("flaky", eval_row)
    marker = HERE / "flaky-ran"
    first = not marker.exists()
    marker.touch()
    assert not first, "first execution fails"
"""


def exported(path: Path) -> list[dict[str, Any]]:
    """Every span the user's exporters got, from every process of the session."""
    found: list[dict[str, Any]] = []
    for dump in sorted(path.glob("exported-*.json")):
        found.extend(json.loads(dump.read_text()))
    return found


def roots_of(spans: list[dict[str, Any]], row_id: str) -> list[dict[str, Any]]:
    """The row's root spans: a thread's top span has no parent either, but no row status."""
    roots = [
        span
        for span in spans
        if span["parent_id"] is None
        and span["attributes"].get("evalrows.row_id") == row_id
        and "evalrows.status" in span["attributes"]
    ]
    return sorted(roots, key=lambda span: span["attributes"]["evalrows.execution"])


def check_root(span: dict[str, Any], found: Stored, row_id: str, attempt: str) -> None:
    """The exported root is the row's latest execution as the store has it."""
    row = found.rows[row_id]
    (stored_root,) = [s for s in found.spans_of(row_id) if not s.span_parents]
    assert (span["trace_id"], span["span_id"]) == (row.root_span_id, row.span_id)
    assert span["name"] == stored_root.name == row_id.split("::")[-1]
    assert span["attributes"] == {
        "evalrows.attempt_id": attempt,
        "evalrows.row_id": row_id,
        "evalrows.experiment": EXPERIMENT,
        "evalrows.execution": row.execution,
        "evalrows.status": row.status,
    }
    assert (span["start"], span["end"]) == (
        int(row.metrics.start * 1e9),
        int(row.metrics.end * 1e9),
    )
    assert span["status"] == stored_root.status == ("ok" if row.status == "passed" else "error")
    if row.error is None:
        assert (span["description"], span["events"]) == (None, [])
    else:
        assert span["description"] == f"{row.error.type}: {row.error.message}"
        assert span["events"] == [
            {"name": event["name"], "attributes": event["attributes"]}
            for event in stored_root.events
        ]
        assert span["events"][0]["attributes"]["exception.type"] == row.error.type


@pytest.mark.parametrize("workers", ["0", "2"])
def test_each_row_execution_is_a_recorded_root_span_in_the_users_exporter(
    pytester: pytest.Pytester, workers: str
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(USER_CONFTEST)
    pytester.makepyfile(test_traces=SUITE)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}", "-n", workers)
    result.assert_outcomes(passed=2, failed=1, errors=1)
    assert result.parseoutcomes()["rerun"] == 1
    attempt = read_summary(result).attempt
    found = stored(default_db(pytester), EXPERIMENT)
    spans = exported(pytester.path)
    by_id = {span["span_id"]: span for span in spans}
    assert len(by_id) == len(spans)

    statuses = {row_id: row.status for row_id, row in found.rows.items()}
    assert statuses == {
        "test_traces.py::test_case[passes]": "passed",
        "test_traces.py::test_case[fails]": "failed",
        "test_traces.py::test_setup_error": "error",
        "test_traces.py::test_flaky": "passed",
    }
    for row_id, row in found.rows.items():
        root = roots_of(spans, row_id)[-1]
        check_root(root, found, row_id, attempt)
        if row_id.endswith("test_setup_error"):
            continue
        # The test ran under that recorded root.
        assert row.metadata["root_recording"] is True
        case = row_id.split("[")[-1].rstrip("]") if "[" in row_id else "flaky"
        in_trace = {s["name"]: s for s in spans if s["trace_id"] == row.root_span_id}
        assert sorted(in_trace) == sorted(
            [
                root["name"],
                f"user-{case}",
                f"copied-{case}",
                f"copied-{case}-helper",
                f"pooled-{case}",
                f"pooled-{case}-helper",
            ]
        )
        # Whole traces: every parent is there, and the store has the same spans.
        assert in_trace[f"user-{case}"]["parent_id"] == row.span_id
        for name in (f"copied-{case}", f"pooled-{case}"):
            assert in_trace[name]["parent_id"] == row.span_id
            assert in_trace[f"{name}-helper"]["parent_id"] == in_trace[name]["span_id"]
        for span in in_trace.values():
            assert span["parent_id"] is None or span["parent_id"] in by_id
            if span is not root:
                assert {key: span["attributes"][key] for key in EVALROWS_KEYS} == {
                    key: root["attributes"][key] for key in EVALROWS_KEYS
                }
        stored_ids = found.span_ids(row_id)
        (plain,) = [s for s in found.spans_of(row_id) if s.name == f"plain-{case}"]
        assert stored_ids == {s["span_id"] for s in in_trace.values()} | {plain.span_id}
        # A thread started without the test's context is under the row in the store only:
        # in the user's data it is a trace of its own (see the README on threads).
        assert plain.span_parents == [row.span_id]
        plain_exported = by_id[plain.span_id]
        assert plain_exported["parent_id"] is None
        assert plain_exported["trace_id"] != row.root_span_id
        assert plain_exported["attributes"]["evalrows.row_id"] == row_id

    # The execution a rerun plugin repeated was a root of its own, in its own trace.
    (rerun, final) = roots_of(spans, "test_traces.py::test_flaky")
    executions = [span["attributes"]["evalrows.execution"] for span in (rerun, final)]
    assert executions == [1, 2]
    assert rerun["attributes"]["evalrows.status"] == "rerun"
    assert rerun["status"] == "error"
    assert rerun["description"].startswith("AssertionError: first execution fails")
    assert rerun["trace_id"] != final["trace_id"]
    # Nothing else became a root of the user's data with evalrows attributes.
    rooted = [s for s in spans if s["parent_id"] is None and "evalrows.status" in s["attributes"]]
    assert len(rooted) == len(found.rows) + 1


PLAIN_SUITE = """
import pytest
from opentelemetry import trace


@pytest.mark.eval
@pytest.mark.parametrize("case", ["a", "b"])
def test_x(case, eval_row):
    eval_row.log(metadata={"root_recording": trace.get_current_span().is_recording()})
    with trace.get_tracer("user").start_as_current_span(f"user-{case}"):
        pass
"""


def test_with_its_own_provider_the_plugin_records_no_root_span(
    pytester: pytest.Pytester,
) -> None:
    # The common case keeps its cost: the row's root is only a context, written to the store
    # by the plugin itself.
    pytester.makeini(INI)
    pytester.makepyfile(test_plain=PLAIN_SUITE)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    result.assert_outcomes(passed=2)
    assert header_line(result).endswith(
        "; spans captured by a tracer provider set up for this session"
    )
    found = stored(default_db(pytester), EXPERIMENT)
    for row_id, row in found.rows.items():
        assert row.metadata["root_recording"] is False
        names = sorted(span.name for span in found.spans_of(row_id))
        assert names == sorted([row_id.split("::")[-1], f"user-{row_id[-2]}"])


SESSION_FIXTURE_CONFTEST = DUMP + textwrap.dedent(
    """
    import pytest
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    EXPORTER = InMemorySpanExporter()


    @pytest.fixture(scope="session", autouse=True)
    def provider():
        configured = TracerProvider()
        configured.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(configured)
        yield configured


    def pytest_sessionfinish(session):
        dump(EXPORTER)
    """
)

REFUSED = (
    "error: OpenTelemetry refused a tracer provider set during the session (a process takes "
    "one, and evalrows had set one up at session start): its exporters got no spans. "
    "Configure yours in conftest.py or a plugin, or run with --eval-tracing=attach to keep it"
)


def test_a_provider_set_in_a_session_fixture_under_auto_is_refused_and_the_summary_says_so(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(SESSION_FIXTURE_CONFTEST)
    pytester.makepyfile(test_plain=PLAIN_SUITE)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK  # said, but the tests' outcome is theirs
    assert exported(pytester.path) == []
    lines = summary_lines(result)
    assert REFUSED in lines, lines
    # The store still has every span: the plugin's provider captured them.
    found = stored(default_db(pytester), EXPERIMENT)
    assert sorted(span.name for span in found.spans if span.span_parents) == ["user-a", "user-b"]


def test_under_attach_a_provider_set_in_a_session_fixture_gets_every_rows_root(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(SESSION_FIXTURE_CONFTEST)
    pytester.makepyfile(test_plain=PLAIN_SUITE)
    result = pytester.runpytest_subprocess(
        f"--eval-experiment={EXPERIMENT}", "--eval-tracing=attach"
    )
    result.assert_outcomes(passed=2)
    assert REFUSED not in summary_lines(result)
    attempt = read_summary(result).attempt
    found = stored(default_db(pytester), EXPERIMENT)
    spans = exported(pytester.path)
    # The first row's setup configured the provider: it got its recorded root too.
    for row_id, row in found.rows.items():
        (root,) = roots_of(spans, row_id)
        check_root(root, found, row_id, attempt)
        assert row.metadata["root_recording"] is True
        (child,) = [span for span in spans if span["parent_id"] == row.span_id]
        assert child["name"] == f"user-{row_id[-2]}"
        assert child["trace_id"] == row.root_span_id
    assert len(spans) == 4


HELPERS_SUITE = """
import threading

import pytest
from opentelemetry import context, trace

tracer = trace.get_tracer("user")


@pytest.mark.eval
def test_helpers(eval_row):
    def in_context():
        with tracer.start_as_current_span("run-in-context"):
            pass

    def attached():
        token = context.attach(eval_row.context())
        try:
            with tracer.start_as_current_span("attached"):
                pass
        finally:
            context.detach(token)

    def helper_span():
        with eval_row.span("helper-in-plain-thread"):
            pass

    threads = [
        threading.Thread(target=eval_row.run_in_context, args=(in_context,)),
        threading.Thread(target=attached),
        threading.Thread(target=helper_span),
    ]
    for thread in threads:
        thread.start()
        thread.join()
    assert eval_row.run_in_context(lambda a, b=0: a + b, 1, b=2) == 3


def test_without_recording(eval_row):
    assert eval_row.run_in_context(lambda: 5) == 5
    assert eval_row.context() is context.get_current()
"""


@pytest.mark.parametrize("provider", ["plugin", "user"])
def test_eval_row_carries_the_rows_context_into_threads_started_without_it(
    pytester: pytest.Pytester, provider: str
) -> None:
    pytester.makeini(INI)
    if provider == "user":
        pytester.makeconftest(USER_CONFTEST)
    pytester.makepyfile(test_helpers=HELPERS_SUITE)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    result.assert_outcomes(passed=2)
    found = stored(default_db(pytester), EXPERIMENT)
    row = found.rows["test_helpers.py::test_helpers"]
    names = ["attached", "helper-in-plain-thread", "run-in-context"]
    children = {span.name: span for span in found.spans_of(row.row_id) if span.span_parents}
    assert sorted(children) == names
    for span in children.values():
        assert span.span_parents == [row.span_id]
    if provider == "user":
        spans = exported(pytester.path)
        in_trace = {s["name"]: s for s in spans if s["trace_id"] == row.root_span_id}
        assert sorted(in_trace) == sorted([*names, "test_helpers"])
        for name in names:
            assert in_trace[name]["parent_id"] == row.span_id
            assert in_trace[name]["span_id"] == children[name].span_id
