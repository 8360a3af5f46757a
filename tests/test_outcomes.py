"""From pytest's phase outcomes (and its subtests' reports) to a row's status and error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pytest_evalrows.core.outcomes import SUBTESTS, is_subtest, row_status, subtest_description
from pytest_evalrows.models import STATUSES, ErrorInfo
from pytest_evalrows.plugin.building import with_subtests

OK = ("passed", False)
FAILED = ("failed", False)
SKIPPED = ("skipped", False)
XFAILED = ("skipped", True)  # pytest reports an expected failure as skipped with `wasxfail`
XPASSED = ("passed", True)


@pytest.mark.parametrize(
    ("phases", "status"),
    [
        ({"setup": OK, "call": OK, "teardown": OK}, "passed"),
        ({"setup": OK, "call": FAILED, "teardown": OK}, "failed"),
        ({"setup": FAILED, "teardown": OK}, "error"),
        ({"setup": FAILED, "teardown": FAILED}, "error"),
        ({"setup": OK, "call": OK, "teardown": FAILED}, "error"),
        ({"setup": OK, "call": FAILED, "teardown": FAILED}, "failed"),
        ({"setup": SKIPPED, "teardown": OK}, "skipped"),  # marker skip: no call phase
        ({"setup": OK, "call": SKIPPED, "teardown": OK}, "skipped"),  # pytest.skip() in the test
        ({"setup": SKIPPED, "teardown": FAILED}, "error"),
        ({"setup": OK, "call": XFAILED, "teardown": OK}, "xfailed"),
        ({"setup": XFAILED, "teardown": OK}, "xfailed"),  # xfail(run=False), setup error
        ({"setup": OK, "call": XPASSED, "teardown": OK}, "xpassed"),
        ({"setup": OK, "call": XPASSED, "teardown": FAILED}, "error"),
        ({"setup": OK, "call": XFAILED, "teardown": FAILED}, "error"),
        ({"setup": OK, "call": OK}, "passed"),  # teardown not reported yet
        ({}, "passed"),
    ],
)
def test_row_status(phases: dict[str, tuple[str, bool]], status: str) -> None:
    assert row_status(phases) == status
    assert status in STATUSES


def test_the_statuses() -> None:
    assert STATUSES == ("passed", "failed", "error", "skipped", "xfailed", "xpassed")


SUBFAILED = ("failed", False)


@pytest.mark.parametrize(
    ("phases", "status"),
    [
        ({"setup": OK, "call": OK, SUBTESTS: SUBFAILED, "teardown": OK}, "failed"),
        ({"setup": OK, "call": FAILED, SUBTESTS: SUBFAILED, "teardown": OK}, "failed"),
        # the test skipped or xfailed itself after a subtest had failed: pytest exits 1
        ({"setup": OK, "call": SKIPPED, SUBTESTS: SUBFAILED, "teardown": OK}, "failed"),
        ({"setup": OK, "call": XFAILED, SUBTESTS: SUBFAILED, "teardown": OK}, "failed"),
        ({"setup": OK, "call": XPASSED, SUBTESTS: SUBFAILED, "teardown": OK}, "failed"),
        # a failure stays a failure after a teardown error
        ({"setup": OK, "call": OK, SUBTESTS: SUBFAILED, "teardown": FAILED}, "failed"),
        ({"setup": OK, "call": OK, SUBTESTS: SUBFAILED}, "failed"),
    ],
)
def test_a_failed_subtest_fails_the_row(phases: dict[str, tuple[str, bool]], status: str) -> None:
    assert row_status(phases) == status


@dataclass
class Context:
    msg: str | None
    kwargs: dict[str, Any]


@dataclass
class Report:
    context: Context


@pytest.mark.parametrize(
    ("context", "name"),
    [
        (Context("check", {"i": 1, "s": "'x'"}), "[check] (i=1, s='x')"),
        (Context(None, {"i": 1}), "(i=1)"),
        (Context("only", {}), "[only]"),
        (Context(None, {}), "(<subtest>)"),
    ],
)
def test_a_subtest_report_is_told_by_its_context_and_named_as_pytest_names_it(
    context: Context, name: str
) -> None:
    report = Report(context)
    assert is_subtest(report)
    assert subtest_description(report) == name


def test_a_report_without_a_subtest_context_is_not_a_subtest() -> None:
    assert not is_subtest(object())
    assert not is_subtest(Report(context="something else"))  # type: ignore[arg-type]


ASSERTION = ErrorInfo("AssertionError", "assert 1 == 2", "t.py:3: in test\n    assert 1 == 2")
VALUE = ErrorInfo("ValueError", "bad", "t.py:9: in test\n    raise ValueError('bad')")


def test_failed_subtests_make_the_rows_error_naming_each() -> None:
    error = with_subtests(None, [("(i=1)", ASSERTION), ("[msg] (i=3)", ASSERTION)])
    assert error == ErrorInfo(
        "AssertionError",
        "subtest (i=1) failed: AssertionError: assert 1 == 2\n"
        "subtest [msg] (i=3) failed: AssertionError: assert 1 == 2",
        ASSERTION.traceback,
    )
    mixed = with_subtests(None, [("(i=1)", VALUE), ("(i=2)", ASSERTION)])
    assert (mixed.type, mixed.traceback) == ("SubtestFailures", VALUE.traceback)
    assert mixed.message.splitlines() == [
        "subtest (i=1) failed: ValueError: bad",
        "subtest (i=2) failed: AssertionError: assert 1 == 2",
    ]


def test_the_tests_own_error_comes_first_and_the_message_stays_short() -> None:
    own = ErrorInfo("KeyError", "'k'", "t.py:5: in test")
    error = with_subtests(own, [("(i=1)", VALUE)])
    assert error == ErrorInfo(
        "KeyError", "'k'\nsubtest (i=1) failed: ValueError: bad", own.traceback
    )
    long = with_subtests(None, [(f"(i={i})", VALUE) for i in range(500)])
    assert len(long.message) == 2_000
    assert long.message.endswith("...")
