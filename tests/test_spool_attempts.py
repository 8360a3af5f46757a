"""A session that never reached its store still ends up with an attempt record: the attempt is
spooled with its rows and delivered with them."""

from __future__ import annotations

import pytest
from support.cli import attempt_records, evalrows
from support.store import BLOCKED_STORE, block_store, unblock_store

SUITE = """
import pytest

@pytest.mark.eval
@pytest.mark.parametrize("n", [1, 2, 3])
def test_n(n):
    assert n != 3
"""


def test_an_attempt_made_while_the_store_was_down_is_delivered_with_its_rows(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_suite=SUITE)
    store = block_store(pytester.path)
    down = pytester.runpytest_subprocess(
        "--eval-experiment=down", store, "--eval-attempt-id=offline"
    )
    down.assert_outcomes(passed=2, failed=1)
    down.stdout.fnmatch_lines(["*3 rows not delivered*"])

    unblock_store(pytester.path)
    flushed = evalrows("flush", "--store", BLOCKED_STORE, cwd=pytester.path)
    assert flushed.returncode == 0, flushed.stderr
    (attempt,) = attempt_records("down", BLOCKED_STORE, cwd=pytester.path)
    assert attempt["id"] == "offline"
    assert attempt["counts"] == {"passed": 2, "failed": 1}
    assert attempt["delivered"] is False  # true of the session itself: it delivered nothing
    assert attempt["ended"] is not None
    assert list((pytester.path / ".evalrows" / "spool").glob("*.jsonl")) == []
