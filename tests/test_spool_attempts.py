"""A session that never reached its store still ends up with an attempt record: the attempt is
spooled with its rows and delivered with them."""

from __future__ import annotations

import json

import pytest
from helpers import evalrows_cli

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
    blocker = pytester.path / "blocker"
    blocker.write_text("a file where the store's directory should be")
    down = pytester.runpytest_subprocess(
        "--eval-experiment=down", "--eval-store=blocker/rows.db", "--eval-attempt-id=offline"
    )
    down.assert_outcomes(passed=2, failed=1)
    down.stdout.fnmatch_lines(["*3 rows not delivered*"])

    blocker.unlink()
    blocker.mkdir()
    flushed = evalrows_cli("flush", "--store", "blocker/rows.db", cwd=pytester.path)
    assert flushed.returncode == 0, flushed.stderr
    listed = evalrows_cli(
        "attempts", "down", "--store", "blocker/rows.db", "--json", cwd=pytester.path
    )
    assert listed.returncode == 0, listed.stderr
    (attempt,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert attempt["id"] == "offline"
    assert attempt["counts"] == {"passed": 2, "failed": 1}
    assert attempt["delivered"] is False  # true of the session itself: it delivered nothing
    assert attempt["ended"] is not None
    assert list((pytester.path / ".evalrows" / "spool").glob("*.jsonl")) == []
