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
from pytest_evalrows.values import MAX_FIELD_BYTES, check_score, json_value, storable_text


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


# -- text UTF-8 cannot encode ----------------------------------------------------------------

# What subprocess output and file names hold when their bytes are not UTF-8.
CAFE = b"caf\xe9".decode("utf-8", "surrogateescape")


def utf8_json(value: Any) -> bytes:
    """``value`` as the spool and the stores write it: fails on a lone surrogate."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        (CAFE, "caf\\xe9"),
        (b"\x80\xff".decode("utf-8", "surrogateescape"), "\\x80\\xff"),
        ("a\ud800b", "a\\ud800b"),
        ("\udfff", "\\udfff"),
        ("\udc41", "\\udc41"),  # a low surrogate no byte escapes to
        ("\ud83d\ude00 pair", "\U0001f600 pair"),  # a pair is the character it encodes
        ("\ud83d" + CAFE, "\\ud83dcaf\\xe9"),
    ],
)
def test_lone_surrogates_are_stored_escaped(text: str, stored: str) -> None:
    assert storable_text(text) == stored
    assert json_value(text) == (stored, None)
    utf8_json(stored)


@pytest.mark.parametrize("text", ["plain", "", "café ☃ \U0001f600", "back\\xe9slash"])
def test_text_utf8_can_encode_is_returned_as_it_is(text: str) -> None:
    assert storable_text(text) is text
    assert json_value(text)[0] is text


def test_logged_bytes_and_their_surrogateescaped_text_are_stored_alike() -> None:
    assert json_value(b"caf\xe9") == json_value(CAFE) == ("caf\\xe9", None)
    assert json_value({"out": b"caf\xe9", "ok": b"utf-8 \xc3\xa9"}) == (
        {"out": "caf\\xe9", "ok": "utf-8 é"},
        None,
    )


@dataclasses.dataclass
class Listing:
    path: str
    names: list[str]


def test_surrogates_are_escaped_in_nested_values_and_in_keys() -> None:
    value = {
        CAFE: [CAFE, (1, CAFE), {"deep": {CAFE: None}}],
        "listing": Listing(CAFE, [CAFE]),
        "model": Model(name=CAFE, sizes=(1,)),
        "when": datetime.date(2024, 5, 1),
        "n": 1.5,
        2: "int key",
    }
    safe, cut = json_value(value)
    assert cut is None
    assert safe == {
        "caf\\xe9": ["caf\\xe9", [1, "caf\\xe9"], {"deep": {"caf\\xe9": None}}],
        "listing": {"path": "caf\\xe9", "names": ["caf\\xe9"]},
        "model": {"name": "caf\\xe9", "sizes": [1]},
        "when": "2024-05-01",
        "n": 1.5,
        "2": "int key",
    }
    utf8_json(safe)


def test_a_set_of_such_text_and_an_object_that_keeps_it_in_a_key_are_storable() -> None:
    safe, _ = json_value({CAFE, "plain"})
    assert sorted(safe) == ["caf\\xe9", "plain"]
    # pydantic cannot even make plain values of an object with such a key: its repr, escaped.
    safe, _ = json_value([Listing("p", []), {"obj": Model.model_construct(name={CAFE: 1})}])
    assert safe[0] == {"path": "p", "names": []}
    assert isinstance(safe[1]["obj"], str) and "caf" in safe[1]["obj"]
    utf8_json(safe)


def test_a_repr_with_such_text_is_escaped_too() -> None:
    class Shouting:
        def __repr__(self) -> str:
            return "<" + CAFE + ">"

    assert json_value(Shouting()) == ("<caf\\xe9>", None)
    assert json_value({"judge": Shouting()}) == ({"judge": "<caf\\xe9>"}, None)


def test_a_cycle_holding_such_text_is_still_its_repr() -> None:
    cycle: list[Any] = [CAFE]
    cycle.append(cycle)
    safe, cut = json_value(cycle)
    assert (safe, cut) == ("['caf\\udce9', [...]]", None)  # repr's own escape


def test_escapes_count_towards_the_limit() -> None:
    # 200,000 characters, each escaped to six and written as seven bytes of JSON.
    safe, cut = json_value("\ud800" * 200_000)
    assert cut == 1_400_002
    assert isinstance(safe, str) and len(safe) == MAX_FIELD_BYTES
    assert safe.startswith('"\\\\ud800\\\\ud800')
    # The same text as a short string, without an escape, takes the fast path unchanged.
    assert json_value("\u0800" * 100_000)[1] is None


def test_control_characters_count_towards_the_limit_as_the_json_escapes_they_become() -> None:
    # Six bytes of JSON each ("\u0000"): 200,000 of them are 1.2 MB, cut like any other.
    safe, cut = json_value("\x00" * 200_000)
    assert cut == 1_200_002
    assert isinstance(safe, str) and len(safe) == MAX_FIELD_BYTES


def test_a_handle_stores_such_text_escaped_everywhere_it_takes_text() -> None:
    current = draft()
    row = EvalRow(current)
    row.log(
        output=CAFE,
        expected=[CAFE],
        input={"file": CAFE},
        scores={CAFE: 1},
        metadata={CAFE: CAFE, "nested": {CAFE: b"\xff"}},
        tags=[CAFE, "plain"],
    )
    row.score("s" + CAFE, 0.5)
    assert current.output == "caf\\xe9"
    assert current.expected == ["caf\\xe9"]
    assert current.input == {"file": "caf\\xe9"}
    assert current.scores == {"caf\\xe9": 1.0, "scaf\\xe9": 0.5}
    assert current.metadata == {"caf\\xe9": "caf\\xe9", "nested": {"caf\\xe9": "\\xff"}}
    assert current.tags == ["caf\\xe9", "plain"]
    assert row.scores == current.scores
    utf8_json([current.output, current.expected, current.input, current.metadata, current.tags])
    utf8_json(list(current.scores))


def test_a_handle_given_a_metadata_cycle_keeps_its_repr_and_does_not_raise() -> None:
    current = draft()
    cycle: dict[str, Any] = {"a": 1}
    cycle["self"] = cycle
    EvalRow(current).log(metadata=cycle, output="kept")
    # The repr of the handle's copy of the mapping: one level more before the cycle shows.
    assert current.metadata == {"metadata_repr": "{'a': 1, 'self': {'a': 1, 'self': {...}}}"}
    assert current.output == "kept"
