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
from pytest_evalrows.core.row import UNSET, RowDraft, RowPlan
from pytest_evalrows.core.values import MAX_FIELD_BYTES, check_score, json_value, storable_text


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
        (b"bytes", {"$bytes": "utf-8", "text": "bytes"}),
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


def test_a_cycle_becomes_a_marker_where_it_closes() -> None:
    cycle: list[Any] = [1]
    cycle.append(cycle)
    assert json_value(cycle) == ([1, "<cycle: list>"], None)


def json_size(value: Any) -> int:
    """Bytes of compact UTF-8 JSON, as the limit counts them."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def test_a_value_over_the_limit_is_cut_keeping_its_shape() -> None:
    assert MAX_FIELD_BYTES == 1_000_000
    safe, cut = json_value("x" * 1_500_000)
    assert cut == 1_500_002
    kept = MAX_FIELD_BYTES - len('""<cut: 500000 more characters>')
    assert safe == "x" * kept + f"<cut: {1_500_000 - kept} more characters>"
    assert json_size(safe) == MAX_FIELD_BYTES

    safe, cut = json_value({"doc": ["y" * 700_000, "z" * 700_000]})
    assert cut == len('{"doc":["",""]}') + 1_400_000
    (first, second) = safe["doc"]  # still a dict of a list of two texts, each cut alike
    assert first.startswith("yyy") and first.endswith(" more characters>")
    assert second.startswith("zzz") and len(second) == len(first)
    assert MAX_FIELD_BYTES - 100 < json_size(safe) <= MAX_FIELD_BYTES


def test_the_limit_is_in_bytes_and_inclusive() -> None:
    at_limit = "x" * (MAX_FIELD_BYTES - 2)  # two quotes make exactly 1 MB of JSON
    assert json_value(at_limit) == (at_limit, None)
    safe, cut = json_value(at_limit + "x")
    assert cut == MAX_FIELD_BYTES + 1
    assert json_size(safe) <= MAX_FIELD_BYTES
    # Two bytes per character: 600,000 characters are 1.2 MB.
    safe, cut = json_value("é" * 600_000)
    assert cut == 1_200_002
    text, marker = safe.split("<cut: ")
    assert text == "é" * len(text) and marker == f"{600_000 - len(text)} more characters>"
    assert MAX_FIELD_BYTES - 64 <= json_size(safe) <= MAX_FIELD_BYTES


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
    assert current.output.endswith(" more characters>")

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


def test_logged_bytes_are_not_text_even_when_their_surrogateescaped_text_is() -> None:
    assert json_value(CAFE) == ("caf\\xe9", None)
    assert json_value(b"caf\xe9") == ({"$bytes": "base64", "data": "Y2Fm6Q=="}, None)
    assert json_value({"out": b"caf\xe9", "ok": b"utf-8 \xc3\xa9"}) == (
        {
            "out": {"$bytes": "base64", "data": "Y2Fm6Q=="},
            "ok": {"$bytes": "utf-8", "text": "utf-8 é"},
        },
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
    # A model built without validation, holding such text in a key: its fields, escaped.
    safe, _ = json_value([Listing("p", []), {"obj": Model.model_construct(name={CAFE: 1})}])
    assert safe == [{"path": "p", "names": []}, {"obj": {"name": {"caf\\xe9": 1}}}]
    utf8_json(safe)


def test_a_repr_with_such_text_is_escaped_too() -> None:
    class Shouting:
        def __repr__(self) -> str:
            return "<" + CAFE + ">"

    assert json_value(Shouting()) == ("<caf\\xe9>", None)
    assert json_value({"judge": Shouting()}) == ({"judge": "<caf\\xe9>"}, None)


def test_a_cycle_holding_such_text_keeps_it_escaped() -> None:
    cycle: list[Any] = [CAFE]
    cycle.append(cycle)
    assert json_value(cycle) == (["caf\\xe9", "<cycle: list>"], None)


def test_escapes_count_towards_the_limit() -> None:
    # 200,000 characters, each escaped to six and written as seven bytes of JSON.
    safe, cut = json_value("\ud800" * 200_000)
    assert cut == 1_400_002
    assert safe.startswith("\\ud800\\ud800") and safe.endswith(" more characters>")
    assert MAX_FIELD_BYTES - 10 <= json_size(safe) <= MAX_FIELD_BYTES
    # The same text as a short string, without an escape, takes the fast path unchanged.
    assert json_value("\u0800" * 100_000)[1] is None


def test_control_characters_count_towards_the_limit_as_the_json_escapes_they_become() -> None:
    # Six bytes of JSON each ("\u0000"): 200,000 of them are 1.2 MB, cut like any other.
    safe, cut = json_value("\x00" * 200_000)
    assert cut == 1_200_002
    assert safe.startswith("\x00\x00") and safe.endswith(" more characters>")
    assert MAX_FIELD_BYTES - 10 <= json_size(safe) <= MAX_FIELD_BYTES


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
    assert current.metadata == {
        "caf\\xe9": "caf\\xe9",
        "nested": {"caf\\xe9": {"$bytes": "base64", "data": "/w=="}},
    }
    assert current.tags == ["caf\\xe9", "plain"]
    assert row.scores == current.scores
    utf8_json([current.output, current.expected, current.input, current.metadata, current.tags])
    utf8_json(list(current.scores))


def test_a_handle_given_a_metadata_cycle_keeps_the_mapping_and_does_not_raise() -> None:
    current = draft()
    cycle: dict[str, Any] = {"a": 1}
    cycle["self"] = cycle
    EvalRow(current).log(metadata=cycle, output="kept")
    assert current.metadata == {"a": 1, "self": "<cycle: dict>"}
    assert current.output == "kept"


# -- bytes, numpy-like values, addresses, hostile objects ------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (b"", {"$bytes": "utf-8", "text": ""}),
        (b"caf\xc3\xa9", {"$bytes": "utf-8", "text": "café"}),
        (b"\x00\xff", {"$bytes": "base64", "data": "AP8="}),
        (bytearray(b"ok"), {"$bytes": "utf-8", "text": "ok"}),
        (memoryview(b"\xff"), {"$bytes": "base64", "data": "/w=="}),
    ],
    ids=["empty", "utf-8", "binary", "bytearray", "memoryview"],
)
def test_bytes_are_marked_text_or_base64(value: Any, stored: Any) -> None:
    assert json_value(value) == (stored, None)
    assert json_value([value, {"k": (value,)}]) == ([stored, {"k": [stored]}], None)


def test_bytes_never_turn_their_container_into_a_repr() -> None:
    safe, cut = json_value({"ok": "text", "raw": b"\xff", b"\xfe": 1, "set": {b"b", b"a"}})
    assert cut is None
    assert safe == {
        "ok": "text",
        "raw": {"$bytes": "base64", "data": "/w=="},
        "b'\\xfe'": 1,  # a bytes key: its repr, so it cannot clash with a text key
        "set": [{"$bytes": "utf-8", "text": "a"}, {"$bytes": "utf-8", "text": "b"}],
    }


@dataclasses.dataclass
class Attachment:
    name: str
    data: bytes
    labels: set[str]


class Upload(pydantic.BaseModel):
    data: bytes


def test_bytes_inside_dataclasses_and_models_are_stored_the_same_way() -> None:
    assert json_value(Attachment("a.bin", b"\xff", {"y", "x"})) == (
        {"name": "a.bin", "data": {"$bytes": "base64", "data": "/w=="}, "labels": ["x", "y"]},
        None,
    )
    assert json_value(Upload(data=b"\xff")) == (
        {"data": {"$bytes": "base64", "data": "/w=="}},
        None,
    )


class FakeArray:
    """Like numpy.ndarray without numpy: ``tolist()``, ``ndim``."""

    ndim = 1

    def __init__(self, *items: Any) -> None:
        self.items = list(items)

    def tolist(self) -> list[Any]:
        return list(self.items)


class FakeScalar:
    """Like a numpy scalar: ``item()`` gives the Python number, ``__float__`` works."""

    ndim = 0

    def __init__(self, value: Any) -> None:
        self.value = value

    def item(self) -> Any:
        return self.value

    def __float__(self) -> float:
        return float(self.value)


class FakeBool:
    """Like numpy.bool_: ``item()`` and ``__bool__``, no ``__index__``, not numbers.Real."""

    def __init__(self, value: bool) -> None:
        self.value = value

    def item(self) -> bool:
        return self.value

    def __bool__(self) -> bool:
        return self.value


class Index:
    def __index__(self) -> int:
        return 1


class Floaty:
    def __float__(self) -> float:
        return 0.5


class Unconvertible:
    def __float__(self) -> float:
        raise DeprecationWarning("conversion of an array with ndim > 0")


class SelfListing:
    def tolist(self) -> SelfListing:
        return SelfListing()

    def __repr__(self) -> str:
        return "<SelfListing>"


class BrokenListing:
    def tolist(self) -> list[int]:
        raise RuntimeError("no list")

    def __repr__(self) -> str:
        return "<BrokenListing>"


class Basket:
    """Has an ``item`` method but is no number: not called."""

    def item(self) -> str:
        raise AssertionError("must not be called")

    def __repr__(self) -> str:
        return "<Basket>"


def test_numpy_like_values_become_numbers_and_lists_without_numpy() -> None:
    value = {
        "array": FakeArray(0, 1, 2),
        "matrix": FakeArray(FakeArray(1, 2), FakeArray(3, 4)),
        "f32": FakeScalar(0.5),
        "i64": FakeScalar(7),
        "bool": FakeBool(True),
        "nan": FakeScalar(float("nan")),
    }
    assert json_value(value) == (
        {
            "array": [0, 1, 2],
            "matrix": [[1, 2], [3, 4]],
            "f32": 0.5,
            "i64": 7,
            "bool": True,
            "nan": "NaN",
        },
        None,
    )
    assert json_value(FakeArray(b"\xff")) == ([{"$bytes": "base64", "data": "/w=="}], None)
    # No nearer to plain values, or raising: the repr, of that element only.
    assert json_value([SelfListing(), BrokenListing(), Basket()]) == (
        ["<SelfListing>", "<BrokenListing>", "<Basket>"],
        None,
    )


def test_real_numpy_values_become_numbers_and_lists() -> None:
    np = pytest.importorskip("numpy")
    assert json_value(
        {"a": np.array([0, 1, 2]), "f": np.float32(0.5), "i": np.int64(7), "b": np.bool_(True)}
    ) == ({"a": [0, 1, 2], "f": 0.5, "i": 7, "b": True}, None)
    assert json_value(np.float64("inf")) == ("Infinity", None)
    assert check_score("s", np.bool_(True)) == 1.0
    assert check_score("s", np.float32(0.25)) == 0.25
    with pytest.raises(InvalidScoreError):
        check_score("s", np.array([0.5]))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (FakeBool(True), 1.0),
        (FakeBool(False), 0.0),
        (FakeScalar(0.5), 0.5),
        (FakeScalar(True), 1.0),
        (Index(), 1.0),
        (Floaty(), 0.5),
        (__import__("decimal").Decimal("0.25"), 0.25),
    ],
    ids=["bool_-true", "bool_-false", "float32", "item-bool", "index", "float", "decimal"],
)
def test_any_real_number_or_bool_like_scalar_is_a_score(value: object, expected: float) -> None:
    assert check_score("s", value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (FakeArray(0.5), "score 's' must be a number in [0, 1], got FakeArray <"),
        (FakeScalar("0.5"), "score 's' must be a number in [0, 1], got FakeScalar <"),
        (FakeScalar(float("nan")), "score 's' must be a finite number in [0, 1], got <"),
        (FakeScalar(2), "score 's' must be a finite number in [0, 1], got <"),
        (Unconvertible(), "score 's' must be a number in [0, 1], got Unconvertible <"),
        (1j, "score 's' must be a number in [0, 1], got complex 1j"),
        (b"1", "score 's' must be a number in [0, 1], got bytes b'1'"),
        ("x" * 1_000, "score 's' must be a number in [0, 1], got str 'xxxx"),
    ],
    ids=["array", "item-text", "nan", "over", "raising", "complex", "bytes", "long-text"],
)
def test_what_is_not_a_real_scalar_is_still_refused(value: object, message: str) -> None:
    with pytest.raises(InvalidScoreError) as info:
        check_score("s", value)
    assert str(info.value).startswith(message)
    assert len(str(info.value)) < 300


def exact_match(answer: str, expected: str) -> bool:
    return answer == expected


class Judge:
    def grade(self) -> float:
        return 1.0


class Plain:
    pass


def test_reprs_lose_their_memory_addresses_and_functions_are_named() -> None:
    from functools import partial
    from unittest import mock

    safe, _ = json_value(
        {
            "function": exact_match,
            "lambda": lambda: 1,
            "method": Judge().grade,
            "class": Judge,
            "object": Plain(),
            "partial": partial(exact_match, "a"),
            "mock": mock.Mock(),
            "builtin": len,
        }
    )
    assert safe == {
        "function": "<function test_values.exact_match>",
        "lambda": (
            "<function test_values.test_reprs_lose_their_memory_addresses_and_functions_are_named"
            ".<locals>.<lambda>>"
        ),
        "method": "<bound method test_values.Judge.grade of <test_values.Judge object>>",
        "class": "<class 'test_values.Judge'>",
        "object": "<test_values.Plain object>",
        "partial": "functools.partial(<function exact_match>, 'a')",
        "mock": "<Mock>",
        "builtin": "<built-in function len>",
    }


def test_sets_are_sorted_so_every_process_stores_them_alike() -> None:
    assert json_value({"b", "c", "a"}) == (["a", "b", "c"], None)
    # Members of any kind, in the order of their JSON text.
    assert json_value(frozenset({2, "1", None, (1, 2)})) == (["1", 2, [1, 2], None], None)


def test_an_iterator_is_never_consumed() -> None:
    answers = iter(["a", "b"])
    words = (word for word in ["c"])
    safe, _ = json_value({"answers": answers, "words": words})
    assert list(answers) == ["a", "b"]
    assert list(words) == ["c"]
    assert safe["answers"] == "<list_iterator object>"
    assert safe["words"].startswith("<generator object test_an_iterator_is_never_consumed.")


class RaisingProperty:
    @property
    def value(self) -> int:
        raise RuntimeError("no value")


@dataclasses.dataclass
class Broken:
    ok: int
    bad: Any = dataclasses.field(default=None)

    def __getattribute__(self, name: str) -> Any:
        if name == "bad":
            raise RuntimeError("cannot read bad")
        return super().__getattribute__(name)

    def __repr__(self) -> str:
        return "<Broken>"


class UnreadableMapping(dict[str, int]):
    def items(self) -> Any:
        raise RuntimeError("cannot read")


class HugeLen(list[int]):
    def __len__(self) -> int:
        raise OverflowError("too long")


def test_hostile_values_never_raise_and_spoil_only_themselves() -> None:
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]
    value = {
        "deep": deep,
        "int": 10**5000,
        "negative": -(10**400),
        "nonfinite": [float("nan"), float("inf"), float("-inf")],
        "keys": {None: 1, True: 2, 1.5: 3, float("nan"): 4, (1, "a"): 5, Plain(): 6},
        "broken": Broken(1),
        "property": RaisingProperty(),
        "unreadable": UnreadableMapping(a=1),
        "huge_len": HugeLen([1]),
        "ok": "kept",
    }
    safe, cut = json_value(value)
    assert cut is None
    json.dumps(safe, allow_nan=False).encode()
    assert safe["int"] == "<int of 16610 bits>"
    assert safe["negative"] == -(10**400)  # within Python's digit limit: the number itself
    assert safe["nonfinite"] == ["NaN", "Infinity", "-Infinity"]
    assert safe["keys"] == {
        "null": 1,
        "true": 2,
        "1.5": 3,
        "NaN": 4,
        '[1,"a"]': 5,
        "<test_values.Plain object>": 6,
    }
    assert safe["broken"] == "<Broken>"
    assert safe["property"].startswith("<test_values.RaisingProperty object")
    assert safe["unreadable"] == "{'a': 1}"
    assert safe["huge_len"] == "[1]"
    assert safe["ok"] == "kept"
    level = safe["deep"]
    for _ in range(99):
        level = level[0]
    assert level == "<cut: nested deeper than 100>"


def test_keys_and_tuples_are_stored_as_json_writes_them_whatever_else_is_there() -> None:
    plain = {"a": [1, 2.5, None, True, "é"], 3: {"x": (1, 2)}}
    walked = json_value({**plain, "s": {1}})[0]
    assert walked == {"a": [1, 2.5, None, True, "é"], "3": {"x": [1, 2]}, "s": [1]}
    assert json_value(plain)[0] == {"a": [1, 2.5, None, True, "é"], "3": {"x": [1, 2]}}


def test_a_logged_value_is_a_copy() -> None:
    value = {"list": [1], "nested": {"k": "v"}}
    safe, _ = json_value(value)
    value["list"].append(2)
    value["nested"]["k"] = "changed"
    assert safe == {"list": [1], "nested": {"k": "v"}}


# -- cutting large values down, keeping their shape -------------------------------------------

LARGE_VALUES = {
    "text": "x" * 3_000_000,
    "wide text": "日本" * 400_000,
    "ints": list(range(500_000)),
    "dict of docs": {"id": "a", "doc": "d" * 2_000_000, "n": 3, "tags": ["t"] * 10},
    "many keys": {f"key{i}": "v" * 100 for i in range(20_000)},
    "list of docs": [{"page": i, "text": "p" * 5_000} for i in range(400)],
    "one huge key": {"k" * 2_000_000: 1, "b": 2},
    "nested": {"a": {"b": {"c": ["x" * 900_000, "y" * 900_000], "d": list(range(100_000))}}},
    "two texts and a small one": ["a" * 1_500_000, "b" * 10, "c" * 1_500_000],
}


@pytest.mark.parametrize("name", list(LARGE_VALUES))
def test_a_large_value_is_cut_to_the_limit_and_says_how_large_it_was(name: str) -> None:
    value = LARGE_VALUES[name]
    safe, cut = json_value(value)
    assert cut == json_size(value)
    assert json_size(safe) <= MAX_FIELD_BYTES
    assert type(safe) is type(value)
    assert json_value(safe) == (safe, None)  # what was cut is within the limit for good


def test_a_dict_keeps_its_keys_and_cuts_its_largest_values() -> None:
    safe, _ = json_value(LARGE_VALUES["dict of docs"])
    assert list(safe) == ["id", "doc", "n", "tags"]
    assert (safe["id"], safe["n"], safe["tags"]) == ("a", 3, ["t"] * 10)
    doc, marker = safe["doc"].split("<cut: ")
    assert doc == "d" * len(doc)
    assert marker == f"{2_000_000 - len(doc)} more characters>"


def test_a_list_keeps_its_first_items_and_counts_the_rest() -> None:
    safe, _ = json_value(LARGE_VALUES["ints"])
    kept = len(safe) - 1
    assert safe[:kept] == list(range(kept))
    assert safe[-1] == f"<cut: {500_000 - kept} more items>"
    # Large items are cut alike, and a small one between them is kept whole.
    first, small, last = json_value(LARGE_VALUES["two texts and a small one"])[0]
    assert small == "b" * 10
    assert first.startswith("aaa") and last.startswith("ccc")
    assert first.endswith(" more characters>") and len(first) == len(last)


def test_a_dict_with_too_many_keys_keeps_its_first_ones() -> None:
    safe, _ = json_value(LARGE_VALUES["many keys"])
    keys = list(safe)
    assert keys[:-1] == [f"key{i}" for i in range(len(keys) - 1)]
    assert all(safe[key] == "v" * 100 for key in keys[:-1])
    assert keys[-1] == "<cut>"
    assert safe["<cut>"] == f"<cut: {20_000 - len(keys) + 1} more keys>"
    assert json_value(LARGE_VALUES["one huge key"]) == (
        {"<cut>": "<cut: 2 more keys>"},
        json_size(LARGE_VALUES["one huge key"]),
    )


def test_a_value_near_the_limit_is_measured_not_guessed() -> None:
    # 200,000 characters could be 1.2 MB of JSON; these are 200,002 bytes: kept whole.
    text = "x" * 199_000
    assert json_value({"a": text, "b": [text]}) == ({"a": text, "b": [text]}, None)
