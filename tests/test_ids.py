"""Pure identity functions: row ids, attempt ids, trace and span ids."""

from __future__ import annotations

import dataclasses
import enum
import os
import random
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from pytest_evalrows.core import ids
from pytest_evalrows.core.values import json_value

MARKERS = (".git", "pyproject.toml", "setup.py", "setup.cfg", "tox.ini", "pytest.ini")


def test_new_attempt_ids_are_fresh_valid_uuids() -> None:
    made = {ids.new_attempt_id() for _ in range(50)}
    assert len(made) == 50
    for attempt_id in made:
        assert uuid.UUID(attempt_id).version == 4
        assert ids.is_valid_attempt_id(attempt_id)


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("a", True),
        ("0", True),
        ("A1.b_c:d-e", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("-a", False),
        (".a", False),
        ("_a", False),
        ("a b", False),
        ("a/b", False),
        pytest.param("a\n", False, id="trailing-newline"),
        ("é", False),
    ],
)
def test_attempt_id_rules(value: str, valid: bool) -> None:
    assert ids.is_valid_attempt_id(value) is valid


def test_trace_and_span_ids() -> None:
    traces = {ids.new_trace_id() for _ in range(20)}
    spans = {ids.new_span_id() for _ in range(20)}
    assert len(traces) == 20 and len(spans) == 20
    assert all(0 < t < 2**128 for t in traces)
    assert all(0 < s < 2**64 for s in spans)
    assert ids.trace_id_hex(1) == "0" * 31 + "1"
    assert ids.span_id_hex(255) == "0" * 14 + "ff"
    assert ids.trace_id_hex(2**128 - 1) == "f" * 32
    assert all(re.fullmatch(r"[0-9a-f]{32}", ids.trace_id_hex(t)) for t in traces)


def test_no_marker_above_the_test_directory(tmp_path: Path) -> None:
    # The anchor tests below rely on this; a marker above tmp_path would change their meaning.
    assert not [str(p / m) for p in tmp_path.parents for m in MARKERS if (p / m).exists()]


def test_with_an_ini_file_the_anchor_is_the_rootdir(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    root = tmp_path / "tests"
    root.mkdir()
    assert ids.project_anchor(root, has_inifile=True) == root


@pytest.mark.parametrize("marker", MARKERS)
def test_without_an_ini_file_the_nearest_project_marker_is_the_anchor(
    tmp_path: Path, marker: str
) -> None:
    (tmp_path / marker).mkdir() if marker == ".git" else (tmp_path / marker).write_text("")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert ids.project_anchor(deep, has_inifile=False) == tmp_path
    assert ids.project_anchor(tmp_path, has_inifile=False) == tmp_path


def test_the_nearest_marker_wins(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    inner = tmp_path / "pkg"
    (inner / "tests").mkdir(parents=True)
    (inner / "pyproject.toml").write_text("")
    assert ids.project_anchor(inner / "tests", has_inifile=False) == inner


def test_without_any_marker_the_rootdir_is_the_anchor(tmp_path: Path) -> None:
    root = tmp_path / "x"
    root.mkdir()
    assert ids.project_anchor(root, has_inifile=False) == root


@pytest.mark.parametrize(
    ("nodeid", "expected"),
    [
        ("test_a.py::test_x[case0]", "tests/test_a.py::test_x[case0]"),
        ("../tests/test_a.py::test_x", "tests/test_a.py::test_x"),
        ("test_a.py::TestC::test_x[a::b[c]-d]", "tests/test_a.py::TestC::test_x[a::b[c]-d]"),
        ("test_a.py::test_x[\\xe9t\\xe9]", "tests/test_a.py::test_x[\\xe9t\\xe9]"),
        ("test_a.py", "tests/test_a.py"),
    ],
)
def test_node_ids_are_made_relative_to_the_anchor(
    tmp_path: Path, nodeid: str, expected: str
) -> None:
    path = tmp_path / "tests" / "test_a.py"
    assert ids.normalize_nodeid(nodeid, path, tmp_path) == expected


def test_a_file_outside_the_anchor_keeps_its_absolute_path(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "test_b.py"
    anchor = tmp_path / "project"
    assert (
        ids.normalize_nodeid("test_b.py::test_y", outside, anchor)
        == f"{outside.as_posix()}::test_y"
    )


def test_the_anchor_and_path_are_compared_resolved(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "tests").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    path = link / "tests" / "test_a.py"
    assert ids.normalize_nodeid("x::test_x", path, real) == "tests/test_a.py::test_x"


@pytest.mark.parametrize(
    ("nodeid", "name", "originalname", "expected"),
    [
        ("a.py::test_x[case0]", "test_x[case0]", "test_x", "a.py::test_x"),
        ("a.py::T::test_x[p::q]", "test_x[p::q]", "test_x", "a.py::T::test_x"),
        ("a.py::test_x", "test_x", "test_x", "a.py::test_x"),
    ],
)
def test_function_base(nodeid: str, name: str, originalname: str, expected: str) -> None:
    assert ids.function_base(nodeid, name, originalname) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("capital-fr", "a.py::test_x[capital-fr]"),
        ("été", "a.py::test_x[été]"),
        (7, "a.py::test_x[7]"),
        ({"b": 1, "a": [1, "x"]}, 'a.py::test_x[{"a":[1,"x"],"b":1}]'),
    ],
)
def test_keyed_row_ids(key: object, expected: str) -> None:
    assert ids.keyed_row_id("a.py::test_x", key) == expected


@dataclasses.dataclass
class Case:
    id: str
    question: str


def test_keys_are_found_by_parameter_name_mapping_field_or_attribute() -> None:
    assert ids.key_from_params({"case_id": "a", "case": {"id": "b"}}, "case_id") == "a"
    assert ids.key_from_params({"case": {"id": "b"}, "model": "m"}, "id") == "b"
    assert ids.key_from_params({"case": Case("c", "q?"), "n": 1}, "id") == "c"
    # A primitive's attributes are not fields of the case.
    assert ids.key_from_params({"text": "abc", "case": {"upper": 1}}, "upper") == 1


def test_a_missing_or_ambiguous_key_says_so() -> None:
    with pytest.raises(KeyError) as missing:
        ids.key_from_params({"case": {"q": 1}, "model": "m"}, "id")
    assert missing.value.args[0] == (
        "no parameter of this case has a field 'id' (parameters: ['case', 'model'])"
    )
    with pytest.raises(KeyError) as ambiguous:
        ids.key_from_params({"a": {"id": 1}, "b": Case("x", "y")}, "id")
    assert ambiguous.value.args[0] == (
        "2 parameters of this case has a field 'id' (parameters: ['a', 'b'])"
    )


class Color(enum.Enum):
    RED = 1


def scorer() -> None: ...


@pytest.mark.parametrize(
    ("callspec_id", "params", "indices", "expected"),
    [
        ("case0", {"case": {"id": "a"}}, {"case": 0}, ["case"]),
        ("small-case1", {"model": "small", "case": [1, 2]}, {"model": 0, "case": 1}, ["case"]),
        ("case3-v2", {"case": object(), "v": {1}}, {"case": 3, "v": 2}, ["case", "v"]),
        ("fr", {"case": {"id": "fr"}}, {"case": 0}, []),
        ("paris", {"city": "paris"}, {"city": 0}, []),
        ("doc0", {"doc": "y" * 101}, {"doc": 0}, ["doc"]),
        ("y" * 100, {"doc": "y" * 100}, {"doc": 0}, []),
        ("1-2.5-True-None", {"a": 1, "b": 2.5, "c": True, "d": None}, {"a": 0}, []),
        ("Color.RED-scorer-int", {"c": Color.RED, "f": scorer, "t": int}, {"c": 0}, []),
    ],
)
def test_positional_parameter_ids(
    callspec_id: str, params: dict[str, object], indices: dict[str, int], expected: list[str]
) -> None:
    assert ids.positional_params(callspec_id, params, indices) == expected


def test_params_hash_is_stable_and_short() -> None:
    first = ids.params_hash({"case": {"id": "a", "q": "x"}, "model": "m"})
    again = ids.params_hash({"model": "m", "case": {"q": "x", "id": "a"}})
    other = ids.params_hash({"case": {"id": "a", "q": "y"}, "model": "m"})
    assert first == again
    assert first != other
    assert re.fullmatch(r"[0-9a-f]{16}", first)


class Scorer:
    def grade(self, answer: str) -> float:
        return 1.0


def case_with_addresses() -> dict[str, Any]:
    """A case holding a new lambda, a new object and a new bound method each time."""
    judge = Scorer()
    return {"case": {"id": "a", "scorer": lambda answer: answer, "judge": judge}, "m": judge.grade}


def test_params_hash_of_a_stored_input_does_not_depend_on_memory_addresses() -> None:
    first, second = case_with_addresses(), case_with_addresses()
    assert repr(first) != repr(second)  # every repr names another address
    assert ids.params_hash(json_value(first)[0]) == ids.params_hash(json_value(second)[0])
    changed = case_with_addresses()
    changed["case"]["id"] = "b"
    assert ids.params_hash(json_value(changed)[0]) != ids.params_hash(json_value(first)[0])


def test_params_hash_of_a_stored_input_does_not_depend_on_set_order() -> None:
    one, other = {1, 9}, {9, 1}
    assert list(one) != list(other)  # the same set, iterated in another order
    assert ids.params_hash(json_value({"s": one})[0]) == ids.params_hash(
        json_value({"s": other})[0]
    )


def test_canonical_json() -> None:
    assert ids.canonical_json({"b": [1, 2], "a": "é"}) == '{"a":"é","b":[1,2]}'


def test_trace_and_span_ids_do_not_follow_the_users_random_seed() -> None:
    """pytest-randomly seeds ``random`` the same way before every test: the rows' ids must
    still differ."""
    traces, spans = set(), set()
    for _ in range(5):
        random.seed(0)
        traces.add(ids.new_trace_id())
        spans.add(ids.new_span_id())
    assert len(traces) == 5 and len(spans) == 5


FORK_SCRIPT = """
import os
from pytest_evalrows.core import ids

read, write = os.pipe()
pid = os.fork()
if pid == 0:  # the child: its next trace id, then gone
    os.write(write, ids.trace_id_hex(ids.new_trace_id()).encode())
    os._exit(0)
os.close(write)
child = os.read(read, 64).decode()
os.waitpid(pid, 0)
print(child, ids.trace_id_hex(ids.new_trace_id()))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_process_makes_ids_of_its_own() -> None:
    # In a process of its own: forking this one, with its threads, is not safe.
    done = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, check=True
    )
    child, parent = done.stdout.split()
    assert child != parent
