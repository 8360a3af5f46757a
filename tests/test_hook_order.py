"""The plugin's place among other plugins' hooks: a row exists, and its context is current,
before any other setup hook runs, and is left after every teardown."""

from __future__ import annotations

import pytest
from support.sessions import INI
from support.store import default_db, rows, stored

EXPERIMENT = "hook-order"

SETUP_RAISES = """
import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_env"):
        raise RuntimeError("env broken")
    yield
"""

SETUP_SKIPS = """
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if "skipme" in item.name:
        pytest.skip("not here")
"""

CASES = """
import pytest

@pytest.mark.eval
@pytest.mark.needs_env
def test_env(eval_row):
    pass

@pytest.mark.eval
def test_ok(eval_row):
    pass

@pytest.mark.eval
@pytest.mark.parametrize("n", [1, 2])
def test_skipme(n, eval_row):
    pass
"""


def test_a_case_another_plugins_setup_fails_or_skips_still_has_its_row(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI + "markers =\n    needs_env: needs the environment\n")
    pytester.makeconftest(SETUP_RAISES)
    # A tryfirst hook of a conftest registered after the plugin, in a folder of its own.
    pytester.mkdir("sub")
    pytester.path.joinpath("sub", "conftest.py").write_text(SETUP_SKIPS)
    pytester.path.joinpath("sub", "test_cases.py").write_text(CASES)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    result.assert_outcomes(passed=1, skipped=2, errors=1)
    found = rows(default_db(pytester), EXPERIMENT)
    statuses = {row_id.split("::")[-1]: row.status for row_id, row in found.items()}
    assert statuses == {
        "test_env": "error",
        "test_ok": "passed",
        "test_skipme[1]": "skipped",
        "test_skipme[2]": "skipped",
    }
    error = found["sub/test_cases.py::test_env"].error
    assert error is not None
    assert (error.type, error.message) == ("RuntimeError", "env broken")


SETUP_SPAN = """
import pytest
from opentelemetry import trace

tracer = trace.get_tracer("wrap")

@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    with tracer.start_as_current_span("setup-wrapper"):
        return (yield)
"""

SPANS = """
import pytest
from opentelemetry import trace

@pytest.mark.eval
def test_a(eval_row):
    with trace.get_tracer("t").start_as_current_span("body-a"):
        pass

@pytest.mark.eval
def test_b(eval_row):
    with trace.get_tracer("t").start_as_current_span("body-b"):
        pass
"""


def test_a_span_another_plugins_setup_opens_is_the_rows_and_does_not_leak_into_the_next(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(SETUP_SPAN)
    pytester.makepyfile(test_spans=SPANS)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    result.assert_outcomes(passed=2)
    found = stored(default_db(pytester), EXPERIMENT)
    for name in ("a", "b"):
        row = found.rows[f"test_spans.py::test_{name}"]
        spans = {span.name: span for span in found.spans_of(row.row_id)}
        assert set(spans) == {f"test_{name}", "setup-wrapper", f"body-{name}"}
        root = spans[f"test_{name}"]
        # Every span is in the row's trace, under the row's root.
        assert {span.root_span_id for span in spans.values()} == {row.root_span_id}
        assert spans["setup-wrapper"].span_parents == [root.span_id]
        assert spans[f"body-{name}"].span_parents == [root.span_id]
    assert found.spans_of(None) == []


RERUN_WITH_SUBTEST_IN_TEARDOWN = """
import pytest

@pytest.fixture
def checks(subtests):
    yield
    with subtests.test("after"):
        pass

@pytest.mark.eval
@pytest.mark.flaky(reruns=1)
def test_fails(checks, eval_row):
    raise ValueError("the real cause")
"""


def test_a_rerun_failure_keeps_its_own_error_past_a_subtest_in_teardown(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_rerun=RERUN_WITH_SUBTEST_IN_TEARDOWN)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    error = rows(default_db(pytester), EXPERIMENT)["test_rerun.py::test_fails"].error
    assert error is not None
    assert (error.type, error.message) == ("ValueError", "the real cause")


INTERRUPTED_TEARDOWN_CONFTEST = """
from opentelemetry import trace

def pytest_sessionfinish(session):
    with trace.get_tracer("t").start_as_current_span("sessionfinish-span"):
        pass
"""

INTERRUPTED_TEARDOWN = """
import pytest
from opentelemetry import trace

@pytest.fixture
def interrupt_in_teardown():
    yield
    raise KeyboardInterrupt

@pytest.mark.eval
def test_a(eval_row):
    pass

@pytest.mark.eval
def test_b(interrupt_in_teardown, eval_row):
    pass
"""


def test_after_an_interrupt_in_teardown_spans_belong_to_no_row(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini(INI)
    pytester.makeconftest(INTERRUPTED_TEARDOWN_CONFTEST)
    pytester.makepyfile(test_interrupted=INTERRUPTED_TEARDOWN)
    result = pytester.runpytest_subprocess(f"--eval-experiment={EXPERIMENT}")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    found = stored(default_db(pytester), EXPERIMENT)
    assert [span.name for span in found.spans_of(None)] == ["sessionfinish-span"]
