"""End to end: logged values reach the store faithfully and never change a test's outcome.

Real pytest sessions in subprocesses log odd values, bytes, numpy-like values, parameters whose
repr holds a memory address and inputs over the 1 MB limit; the rows are read back from the
SQLite store (issue 9, items 2 and 4 to 7).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from support.store import history, rows, stored

pytest_plugins = ("pytester",)

EXPERIMENT = "--eval-experiment=nightly"


def by_test(db: Path, module: str) -> dict[str, Any]:
    prefix = f"{module}.py::"
    return {rid.removeprefix(prefix): row for rid, row in rows(db, "nightly").items()}


# -- item 2: a logged value never changes the outcome -------------------------------------------

ODD_VALUES = r"""
import pytest


class BrokenRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


class UnreadableMapping(dict):
    def items(self):
        raise RuntimeError("cannot read")

    def keys(self):
        raise RuntimeError("cannot read")

    def __iter__(self):
        raise RuntimeError("cannot read")


def nested(levels):
    value = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.eval
def test_undecodable_bytes_in_metadata(eval_row):
    eval_row.log(metadata={"blob": b"\xff"})


@pytest.mark.eval
def test_an_int_beyond_pythons_digit_limit(eval_row):
    eval_row.log(output=10**5000, metadata={"n": -(10**5000)})
    with eval_row.span("big", input=10**5000) as span:
        span.log(output=[10**5000], metadata={"n": 10**5000})


@pytest.mark.eval
def test_cycles(eval_row):
    cycle = {"name": "loop"}
    cycle["self"] = cycle
    eval_row.log(output=cycle, metadata={"loop": cycle})


@pytest.mark.eval
def test_a_broken_repr_and_an_unreadable_mapping(eval_row):
    eval_row.log(output=[BrokenRepr()], expected=BrokenRepr(), metadata={"r": BrokenRepr()})
    eval_row.log(metadata=UnreadableMapping(a=1))


@pytest.mark.eval
def test_a_logged_generator_is_not_consumed(eval_row):
    answers = (word for word in ["a", "b"])
    eval_row.log(output=answers)
    assert list(answers) == ["a", "b"]


@pytest.mark.eval
def test_deep_nesting(eval_row):
    eval_row.log(output=nested(5_000))


@pytest.mark.eval
def test_odd_keys(eval_row):
    eval_row.log(output={b"\xff": 1, (1, 2): 2, None: 3, 1.5: 4, BrokenRepr(): 5})


@pytest.mark.eval
def test_a_span_named_by_a_number(eval_row):
    with eval_row.span(42, type=None) as span:
        span.log(output=b"\xff")
"""


def test_odd_logged_values_change_no_outcome_and_are_stored(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makepyfile(test_odd=ODD_VALUES)
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    recorded = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", EXPERIMENT)

    plain.assert_outcomes(passed=8)
    recorded.assert_outcomes(passed=8)
    assert recorded.ret == plain.ret == pytest.ExitCode.OK

    found = by_test(db, "test_odd")
    assert {row.status for row in found.values()} == {"passed"}
    assert found["test_undecodable_bytes_in_metadata"].metadata["blob"] == {
        "$bytes": "base64",
        "data": "/w==",
    }
    big = found["test_an_int_beyond_pythons_digit_limit"]
    assert big.output == "<int of 16610 bits>"
    assert big.metadata["n"] == "<int of 16610 bits>"
    cycle = found["test_cycles"]
    assert cycle.output == {"name": "loop", "self": "<cycle: dict>"}
    assert cycle.metadata["loop"] == {"name": "loop", "self": "<cycle: dict>"}
    broken = found["test_a_broken_repr_and_an_unreadable_mapping"]
    assert broken.output == ["<BrokenRepr object; repr failed: RuntimeError>"]
    assert broken.expected == "<BrokenRepr object; repr failed: RuntimeError>"
    assert broken.metadata["r"] == "<BrokenRepr object; repr failed: RuntimeError>"
    assert broken.metadata["metadata_repr"] == "{'a': 1}"  # what cannot be read: its repr
    generator = found["test_a_logged_generator_is_not_consumed"].output
    assert generator.startswith("<generator object test_a_logged_generator_is_not_consumed.")
    assert " at 0x" not in generator
    deep = found["test_deep_nesting"].output
    for _ in range(100):
        assert isinstance(deep, list) and len(deep) == 1
        deep = deep[0]
    assert deep == "<cut: nested deeper than 100>"
    assert found["test_odd_keys"].output == {
        "b'\\xff'": 1,
        "[1,2]": 2,
        "null": 3,
        "1.5": 4,
        "<BrokenRepr object; repr failed: RuntimeError>": 5,
    }
    spans = stored(db, "nightly")
    named = {span.name: span for span in spans.spans}
    assert named["42"].attributes["evalrows.span_type"] == "None"
    assert json.loads(named["42"].attributes["evalrows.output"]) == {
        "$bytes": "base64",
        "data": "/w==",
    }
    assert json.loads(named["big"].attributes["evalrows.input"]) == "<int of 16610 bits>"


# -- item 4: bytes -----------------------------------------------------------------------------

BYTES_SUITE = r"""
import pytest


@pytest.mark.eval
@pytest.mark.parametrize("payload", [b"caf\xc3\xa9", b"caf\xe9"], ids=["utf8", "latin1"])
def test_bytes(payload, eval_row):
    eval_row.log(
        output={"raw": payload, "parts": [payload, "text", 1], "set": {b"b", b"a"}},
        expected=bytearray(b"\x00\xff"),
        metadata={"blob": b"\xff", "text": b"plain", "view": memoryview(b"ok")},
    )
"""


def test_bytes_are_stored_as_marked_text_or_base64_element_by_element(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makepyfile(test_bytes=BYTES_SUITE)
    pytester.runpytest_subprocess(EXPERIMENT).assert_outcomes(passed=2)

    utf8 = {"$bytes": "utf-8", "text": "café"}
    latin1 = {"$bytes": "base64", "data": base64.b64encode(b"caf\xe9").decode()}
    found = by_test(db, "test_bytes")
    for case, stored_as in (("utf8", utf8), ("latin1", latin1)):
        row = found[f"test_bytes[{case}]"]
        assert row.input == {"payload": stored_as}
        assert row.output == {
            "raw": stored_as,
            "parts": [stored_as, "text", 1],
            "set": [{"$bytes": "utf-8", "text": "a"}, {"$bytes": "utf-8", "text": "b"}],
        }
        assert row.expected == {"$bytes": "base64", "data": "AP8="}
        assert row.metadata["blob"] == {"$bytes": "base64", "data": "/w=="}
        assert row.metadata["text"] == {"$bytes": "utf-8", "text": "plain"}
        assert row.metadata["view"] == {"$bytes": "utf-8", "text": "ok"}
    assert base64.b64decode(latin1["data"]) == b"caf\xe9"


# -- item 5: numpy and the like ----------------------------------------------------------------

NUMPY_LIKE_SUITE = r'''
import pytest


class Array:
    """Like numpy.ndarray: tolist(), ndim, and float() only for one element."""

    def __init__(self, *items):
        self.items = list(items)
        self.ndim = 1

    def tolist(self):
        return list(self.items)

    def item(self):
        if len(self.items) != 1:
            raise ValueError("can only convert an array of size 1")
        return self.items[0]

    def __float__(self):
        return float(self.item())

    def __repr__(self):
        return f"array({self.items!r})"


class Float32:
    """Like numpy.float32: not a Python float, item() gives one."""

    ndim = 0

    def __init__(self, value):
        self.value = value

    def item(self):
        return self.value

    def tolist(self):
        return self.value

    def __float__(self):
        return float(self.value)

    def __repr__(self):
        return f"np.float32({self.value})"


class Bool:
    """Like numpy.bool_: no __index__, not numbers.Real, item() gives a bool."""

    ndim = 0

    def __init__(self, value):
        self.value = value

    def item(self):
        return self.value

    def __bool__(self):
        return self.value

    def __repr__(self):
        return f"np.{self.value}"


class Index:
    """Any integer-like scalar: only __index__."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value


@pytest.mark.eval
@pytest.mark.parametrize("weights", [Array(0, 1, 2)], ids=["w"])
def test_numpy_like(weights, eval_row):
    eval_row.log(
        output=Array(0.5, 0.25),
        expected=Float32(0.5),
        metadata={"n": Index(7), "flag": Bool(True), "nested": [Array(1), {"x": Float32(2.0)}]},
    )
    eval_row.score("bool", Bool(True))
    eval_row.score("float32", Float32(0.5))
    eval_row.score("index", Index(1))
    for bad in (Array(0.5), Array(0.5, 0.5), "0.5", None, Float32(float("nan")), Float32(2)):
        with pytest.raises(ValueError, match="score 'bad' must be"):
            eval_row.score("bad", bad)


@pytest.mark.eval
def test_real_numpy(eval_row):
    np = pytest.importorskip("numpy")
    eval_row.log(
        output=np.array([0, 1, 2]),
        expected={"f": np.float32(0.5), "i": np.int64(7), "b": np.bool_(False)},
        metadata={"matrix": np.arange(4).reshape(2, 2), "f64": np.float64(0.25)},
    )
    eval_row.score("exact", np.bool_(True))
    eval_row.score("f32", np.float32(0.5))
    eval_row.score("i64", np.int64(0))
    with pytest.raises(ValueError, match="score 'bad' must be"):
        eval_row.score("bad", np.array([0.5]))
    with pytest.raises(ValueError, match="score 'bad' must be"):
        eval_row.score("bad", np.float64("nan"))
'''


def test_numpy_like_values_become_numbers_and_lists_and_scores(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makepyfile(test_numpy=NUMPY_LIKE_SUITE)
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    recorded = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", EXPERIMENT)
    outcomes = recorded.parseoutcomes()
    assert plain.parseoutcomes() == outcomes
    assert outcomes["passed"] >= 1 and outcomes.get("failed", 0) == 0

    found = by_test(db, "test_numpy")
    row = found["test_numpy_like[w]"]
    assert row.input == {"weights": [0, 1, 2]}
    assert row.output == [0.5, 0.25]
    assert row.expected == 0.5
    assert row.metadata["n"] == "<test_numpy.Index object>"  # not a number to store: its repr
    assert row.metadata["flag"] is True
    assert row.metadata["nested"] == [[1], {"x": 2.0}]
    assert row.scores == {"bool": 1.0, "float32": 0.5, "index": 1.0, "pass": 1.0}


def test_real_numpy_values_become_numbers_and_lists_and_scores(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytest.importorskip("numpy")
    pytester.makepyfile(test_numpy=NUMPY_LIKE_SUITE)
    result = pytester.runpytest_subprocess("-W", "error", EXPERIMENT, "-k", "real")
    result.assert_outcomes(passed=1, deselected=1)

    row = by_test(db, "test_numpy")["test_real_numpy"]
    assert row.output == [0, 1, 2]
    assert row.expected == {"f": 0.5, "i": 7, "b": False}
    assert row.metadata["matrix"] == [[0, 1], [2, 3]]
    assert row.metadata["f64"] == 0.25
    assert row.scores == {"exact": 1.0, "f32": 0.5, "i64": 0.0, "pass": 1.0}


# -- item 6: parameters whose repr holds an address --------------------------------------------

ADDRESS_SUITE = r"""
import functools

import pytest


def exact_match(answer, expected):
    return answer == expected


class Judge:
    def grade(self, answer):
        return 1.0


class Plain:
    pass


CASES = [
    pytest.param(lambda answer: answer.strip(), id="lambda"),
    pytest.param(exact_match, id="function"),
    pytest.param(Judge().grade, id="method"),
    pytest.param(Judge, id="class"),
    pytest.param(Plain(), id="object"),
    pytest.param(functools.partial(exact_match, "a"), id="partial"),
    pytest.param({"apple", "banana", "cherry", "damson"}, id="set"),
    pytest.param({"scorer": exact_match, "judges": [Judge(), Plain()]}, id="nested"),
]


@pytest.mark.eval
@pytest.mark.parametrize("param", CASES)
def test_scorer(param, eval_row):
    eval_row.log(output="ok")
"""


def test_parameters_with_addresses_keep_their_hash_across_sessions(
    pytester: pytest.Pytester, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(test_addresses=ADDRESS_SUITE)
    # Another hash seed per session, as every fresh interpreter has: sets iterate differently.
    monkeypatch.setenv("PYTHONHASHSEED", "1")
    first = pytester.runpytest_subprocess("-W", "error", EXPERIMENT)
    monkeypatch.setenv("PYTHONHASHSEED", "2")
    second = pytester.runpytest_subprocess("-W", "error", EXPERIMENT)

    first.assert_outcomes(passed=8)
    second.assert_outcomes(passed=8)
    assert second.ret == pytest.ExitCode.OK
    assert "changed since" not in second.stdout.str() + second.stderr.str()

    found = by_test(db, "test_addresses")
    assert {case: row.input["param"] for case, row in found.items()} == {
        "test_scorer[lambda]": "<function test_addresses.<lambda>>",
        "test_scorer[function]": "<function test_addresses.exact_match>",
        "test_scorer[method]": (
            "<bound method test_addresses.Judge.grade of <test_addresses.Judge object>>"
        ),
        "test_scorer[class]": "<class 'test_addresses.Judge'>",
        "test_scorer[object]": "<test_addresses.Plain object>",
        "test_scorer[partial]": "functools.partial(<function exact_match>, 'a')",
        "test_scorer[set]": ["apple", "banana", "cherry", "damson"],
        "test_scorer[nested]": {
            "scorer": "<function test_addresses.exact_match>",
            "judges": ["<test_addresses.Judge object>", "<test_addresses.Plain object>"],
        },
    }
    for row_id in rows(db, "nightly"):
        versions = history(db, "nightly", row_id)
        assert [version.version for version in versions] == [1, 2]
        assert len({version.metadata["params_hash"] for version in versions}) == 1, row_id


CHANGING_SUITE = """
import json
import pathlib

import pytest

CASES = json.loads(pathlib.Path(__file__).with_name("cases.json").read_text())


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_case(case, eval_row):
    eval_row.log(output=case["q"])
"""

CHANGED_WARNING = (
    "*EvalrowsWarning: evalrows: the parameters of 1 row(s) changed since their stored "
    "version: test_changing.py::test_case[[]b[]]*"
)


@pytest.mark.parametrize("how", ["-W error", "filterwarnings = error"])
def test_a_changed_case_warns_but_never_stops_a_session(
    pytester: pytest.Pytester, db: Path, how: str
) -> None:
    pytester.makepyfile(test_changing=CHANGING_SUITE)
    cases = pytester.path / "cases.json"
    cases.write_text(json.dumps([{"id": "a", "q": "alpha"}, {"id": "b", "q": "beta"}]))
    pytester.runpytest_subprocess(EXPERIMENT).assert_outcomes(passed=2)
    cases.write_text(json.dumps([{"id": "a", "q": "alpha"}, {"id": "b", "q": "BETA?"}]))
    if how == "-W error":
        args: tuple[str, ...] = ("-W", "error")
    else:
        pytester.makeini("[pytest]\nfilterwarnings =\n    error\n")
        args = ()

    result = pytester.runpytest_subprocess(*args, EXPERIMENT)

    result.assert_outcomes(passed=2, warnings=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*warnings summary*", CHANGED_WARNING])
    assert [row.output for row in history(db, "nightly", "test_changing.py::test_case[b]")] == [
        "beta",
        "BETA?",
    ]
    # An ignore filter still silences it.
    cases.write_text(json.dumps([{"id": "a", "q": "alpha"}, {"id": "b", "q": "beta"}]))
    quiet = pytester.runpytest_subprocess(
        *args, "-W", "ignore::pytest_evalrows.errors.EvalrowsWarning", EXPERIMENT
    )
    quiet.assert_outcomes(passed=2)
    assert "changed since" not in quiet.stdout.str()


# -- item 7: a large input keeps its shape -----------------------------------------------------

LARGE_SUITE = r"""
import pytest

DOC = "word " * 400_000  # 2 MB
CASE = {"id": "big", "doc": DOC, "pages": list(range(200_000)), "lang": "en"}


@pytest.mark.eval
@pytest.mark.parametrize("case", [CASE], ids=["big"])
def test_large(case, eval_row):
    eval_row.log(
        output=[{"page": n, "text": "x" * 3_000} for n in range(600)],
        metadata={"doc": DOC, "small": 1},
    )
"""


def test_a_large_input_is_cut_keeping_its_shape(pytester: pytest.Pytester, db: Path) -> None:
    pytester.makepyfile(test_large=LARGE_SUITE)
    pytester.runpytest_subprocess(EXPERIMENT).assert_outcomes(passed=1)

    row = by_test(db, "test_large")["test_large[big]"]
    original = {
        "case": {"id": "big", "doc": "word " * 400_000, "pages": list(range(200_000)), "lang": "en"}
    }
    output = [{"page": n, "text": "x" * 3_000} for n in range(600)]
    metadata = {"doc": "word " * 400_000, "small": 1}

    def size(value: Any) -> int:
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())

    assert row.metadata["truncated"] == {
        "input": size(original),
        "output": size(output),
        "metadata": size(metadata),
    }
    case = row.input["case"]
    assert list(case) == ["id", "doc", "pages", "lang"]
    assert (case["id"], case["lang"]) == ("big", "en")
    doc, cut = case["doc"].split("<cut: ")
    assert doc == ("word " * 400_000)[: len(doc)] and len(doc) > 100_000
    assert cut == f"{2_000_000 - len(doc)} more characters>"
    pages = case["pages"]
    kept = len(pages) - 1
    assert pages[:kept] == list(range(kept)) and kept > 10_000
    assert pages[-1] == f"<cut: {200_000 - kept} more items>"
    assert size(row.input) <= 1_000_000

    # Every item of a list that fits at 1 KB an item is kept, its largest leaves cut.
    assert [item["page"] for item in row.output] == list(range(600))
    for item in row.output:
        text, cut = item["text"].split("<cut: ")
        assert text == "x" * len(text) and len(text) > 1_000
        assert cut == f"{3_000 - len(text)} more characters>"
    assert size(row.output) <= 1_000_000

    assert row.metadata["small"] == 1
    assert row.metadata["doc"].startswith("word word ") and row.metadata["doc"].endswith(
        " more characters>"
    )
