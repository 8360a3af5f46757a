"""Values a test logs: JSON-safe copies, truncation, checked scores, and the ``eval_row`` handle."""

from __future__ import annotations

import dataclasses
import datetime
import json
from fractions import Fraction
from typing import Any

import pydantic
import pytest

from pytest_evalrows import EvalRow, EvalrowsError, InvalidScoreError
from pytest_evalrows.row import UNSET, RowDraft, RowPlan
from pytest_evalrows.values import MAX_FIELD_BYTES, check_score, json_value


@dataclasses.dataclass
class Answer:
    text: str
    sources: frozenset[str]
    when: datetime.date


class Model(pydantic.BaseModel):
    name: str
    sizes: tuple[int, ...]


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque 42>"


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (True, True),
        (12, 12),
        (0.25, 0.25),
        ("plain", "plain"),
        ([1, "a", None], [1, "a", None]),
        ((1, 2), [1, 2]),
        ({"a": {"b": [1.5]}}, {"a": {"b": [1.5]}}),
        ({3}, [3]),
        (frozenset({"x"}), ["x"]),
        (b"bytes", "bytes"),
        (datetime.date(2024, 5, 1), "2024-05-01"),
        (
            Answer("Paris", frozenset({"wiki"}), datetime.date(2024, 1, 2)),
            {
                "text": "Paris",
                "sources": ["wiki"],
                "when": "2024-01-02",
            },
        ),
        (Model(name="m", sizes=(1, 2)), {"name": "m", "sizes": [1, 2]}),
        (Opaque(), "<Opaque 42>"),
        ({"judge": Opaque(), "n": [Opaque()]}, {"judge": "<Opaque 42>", "n": ["<Opaque 42>"]}),
        (BrokenRepr(), "<BrokenRepr object; repr failed: RuntimeError>"),
        (float("nan"), "NaN"),
        ({"inf": float("inf")}, {"inf": "Infinity"}),
        ({1: "a"}, {"1": "a"}),
    ],
    ids=lambda value: type(value).__name__,
)
def test_json_value_is_faithful_or_a_repr(value: Any, expected: Any) -> None:
    safe, cut = json_value(value)
    assert safe == expected
    assert cut is None
    json.dumps(safe, allow_nan=False)  # really JSON


def test_a_set_keeps_every_member() -> None:
    safe, _ = json_value({"b", "a", "c"})
    assert sorted(safe) == ["a", "b", "c"]


def test_a_cycle_becomes_its_repr() -> None:
    cycle: list[Any] = [1]
    cycle.append(cycle)
    assert json_value(cycle) == ("[1, [...]]", None)


def test_a_value_over_the_limit_is_cut_to_the_start_of_its_json() -> None:
    assert MAX_FIELD_BYTES == 1_000_000
    safe, cut = json_value("x" * 1_500_000)
    assert cut == 1_500_002
    assert safe == '"' + "x" * 999_999

    safe, cut = json_value({"doc": ["y" * 700_000, "z" * 700_000]})
    assert cut == len('{"doc":["",""]}') + 1_400_000
    assert isinstance(safe, str) and len(safe) == MAX_FIELD_BYTES
    assert safe.startswith('{"doc":["yyy')


def test_the_limit_is_in_bytes_and_inclusive() -> None:
    at_limit = "x" * (MAX_FIELD_BYTES - 2)  # two quotes make exactly 1 MB of JSON
    assert json_value(at_limit) == (at_limit, None)
    safe, cut = json_value(at_limit + "x")
    assert cut == MAX_FIELD_BYTES + 1
    # Two bytes per character: 600,000 characters are 1.2 MB; the cut never splits a character.
    safe, cut = json_value("é" * 600_000)
    assert cut == 1_200_002
    assert safe == '"' + "é" * 499_999


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, 1.0), (False, 0.0), (0, 0.0), (1, 1.0), (0.5, 0.5), (Fraction(1, 4), 0.25)],
)
def test_valid_scores(value: object, expected: float) -> None:
    score = check_score("exact", value)
    assert score == expected
    assert type(score) is float


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("exact", 1.5, "score 'exact' must be a finite number in [0, 1], got 1.5"),
        ("exact", -0.01, "score 'exact' must be a finite number in [0, 1], got -0.01"),
        ("exact", 2, "score 'exact' must be a finite number in [0, 1], got 2"),
        ("exact", float("nan"), "score 'exact' must be a finite number in [0, 1], got nan"),
        ("exact", float("inf"), "score 'exact' must be a finite number in [0, 1], got inf"),
        ("exact", "0.5", "score 'exact' must be a number in [0, 1], got str '0.5'"),
        ("exact", None, "score 'exact' must be a number in [0, 1], got NoneType None"),
        ("exact", [1], "score 'exact' must be a number in [0, 1], got list [1]"),
        ("", 1, "a score name must be a non-empty string, got ''"),
        (3, 1, "a score name must be a non-empty string, got 3"),
    ],
)
def test_invalid_scores_raise_a_value_error(name: object, value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        check_score(name, value)
    assert str(info.value) == message
    assert isinstance(info.value, InvalidScoreError)
    assert isinstance(info.value, EvalrowsError)


# -- the eval_row handle -------------------------------------------------------------------


def draft() -> RowDraft:
    plan = RowPlan(
        row_id="t.py::test_x[a]",
        nodeid="t.py::test_x[a]",
        input={"case": "a"},
        params_hash="0" * 16,
        markers=["eval"],
    )
    return RowDraft(plan=plan, execution=1, trace_id=1, span_id=1, start=0.0)


def test_a_handle_without_a_row_accepts_everything_and_keeps_nothing() -> None:
    row = EvalRow()
    row.log(output=Opaque(), expected={1}, input=[1], scores={"s": 1}, metadata={}, tags="x")
    row.score("s", 0.5)
    assert row.recording is False
    assert row.row_id is None
    assert row.scores == {}
    assert repr(row) == "<EvalRow not recording>"


def test_a_handle_without_a_row_still_checks_what_it_is_given() -> None:
    row = EvalRow()
    with pytest.raises(ValueError, match="must be a finite number"):
        row.score("s", 7)
    with pytest.raises(ValueError, match="must be a number"):
        row.log(scores={"s": "high"})
    with pytest.raises(TypeError, match="metadata must be a mapping, got list"):
        row.log(metadata=["a"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tags must be strings, got int 3"):
        row.log(tags=["a", 3])  # type: ignore[list-item]


def test_logging_replaces_fields_and_adds_scores_metadata_and_tags() -> None:
    current = draft()
    row = EvalRow(current)
    assert row.recording is True
    assert row.row_id == "t.py::test_x[a]"
    assert repr(row) == "<EvalRow row_id='t.py::test_x[a]'>"
    assert current.input is UNSET

    row.log(output="first", expected={"x"}, scores={"a": 0.5}, metadata={"m": 1}, tags=["t1"])
    row.log(output=Opaque(), metadata={"n": Opaque()}, tags=["t1", "t2"])
    row.log(tags="t3", input={"prompt": "p"})
    row.score("b", True)
    row.score("a", 0.25)

    assert current.output == "<Opaque 42>"
    assert current.expected == ["x"]
    assert current.input == {"prompt": "p"}
    assert current.scores == {"a": 0.25, "b": 1.0}
    assert row.scores == {"a": 0.25, "b": 1.0}
    assert current.metadata == {"m": 1, "n": "<Opaque 42>"}
    assert current.tags == ["t1", "t2", "t3"]
    assert current.truncated == {}


def test_a_rejected_score_leaves_the_row_unchanged() -> None:
    current = draft()
    row = EvalRow(current)
    with pytest.raises(ValueError, match="score 'bad'"):
        row.log(output="kept?", scores={"good": 1, "bad": 2})
    assert current.output is None
    assert current.scores == {}


def test_truncation_is_noted_and_forgotten_when_the_field_is_replaced() -> None:
    current = draft()
    row = EvalRow(current)
    row.log(output="x" * 1_500_000, expected="y" * 1_200_000)
    assert current.truncated == {"output": 1_500_002, "expected": 1_200_002}
    assert len(current.output) == MAX_FIELD_BYTES

    row.log(output="short")

    assert current.truncated == {"expected": 1_200_002}
    assert current.output == "short"


def test_the_scores_property_is_a_copy() -> None:
    current = draft()
    row = EvalRow(current)
    row.score("a", 1)
    row.scores["a"] = 0.0
    assert current.scores == {"a": 1.0}
