"""From pytest's phase outcomes to a row's status."""

from __future__ import annotations

import pytest

from pytest_evalrows.models import STATUSES
from pytest_evalrows.outcomes import row_status

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
