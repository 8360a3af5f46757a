"""A suite whose cases' score and outcome are read from ``scores.json`` beside it, so that a
test sets each session's rows before running it (the report's and the gates' tests)."""

from __future__ import annotations

import json
from pathlib import Path

SCORED_SUITE = """
import json
import pathlib

import pytest

SCORES = json.loads(pathlib.Path(__file__).with_name("scores.json").read_text())


@pytest.mark.eval
@pytest.mark.parametrize("case", sorted(SCORES))
def test_case(case, eval_row):
    quality, ok = SCORES[case]
    eval_row.score("q", quality)
    assert ok
"""


def scores(path: Path, cases: dict[str, tuple[float, bool]]) -> None:
    """Case -> (score q, whether the test passes), for the next session in ``path``."""
    (path / "scores.json").write_text(json.dumps(cases))
