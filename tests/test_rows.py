"""End to end: real pytest sessions in subprocesses, real SQLite files, rows read back."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from support.output import header, summary_lines, usage_error
from support.store import attempts, history, rows

EXPERIMENT = "--eval-experiment=nightly"

TWELVE_CASES = """
import json
import pathlib

import pytest

CASES = [{"id": f"q{i:02d}", "question": f"question {i}"} for i in range(12)]
BROKEN = pathlib.Path(__file__).with_name("broken.json")


@pytest.mark.eval
@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_answers(case, eval_row):
    broken = json.loads(BROKEN.read_text()) if BROKEN.exists() else []
    expected = case["question"].upper()
    answer = "wrong" if case["id"] in broken else expected
    eval_row.log(output=answer, expected=expected)
    eval_row.score("exact", answer == expected)
    assert answer == expected
"""

BROKEN_IDS = ("q02", "q05", "q11")


def row_id(case_id: str) -> str:
    return f"test_answers.py::test_answers[{case_id}]"


def test_lf_rerun_writes_new_versions_of_the_failed_rows_only(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makepyfile(test_answers=TWELVE_CASES)
    (pytester.path / "broken.json").write_text(json.dumps(BROKEN_IDS))

    first = pytester.runpytest_subprocess(EXPERIMENT)

    first.assert_outcomes(passed=9, failed=3)
    head = header(first)
    first_attempt = head["attempt"]
    assert str(uuid.UUID(first_attempt)) == first_attempt  # a fresh UUID by default
    assert head["experiment"] == "nightly"
    assert head["project"] == pytester.path.name
    assert head["store"] == f"sqlite:///{db}"
    assert head["anchor"] == str(pytester.path)
    lines = summary_lines(first)
    assert f"experiment 'nightly' (project '{pytester.path.name}') in sqlite:///{db}" in lines
    assert f"attempt {first_attempt}: 12 rows written (12 new, 0 updated)" in lines
    assert "mean scores: exact 0.750, pass 0.750" in lines

    before = rows(db, "nightly")
    assert sorted(before) == [row_id(f"q{i:02d}") for i in range(12)]
    assert {row.version for row in before.values()} == {1}
    assert {row.attempt_id for row in before.values()} == {first_attempt}
    assert {row.metadata["attemptId"] for row in before.values()} == {first_attempt}
    failed = {rid for rid, row in before.items() if row.status == "failed"}
    assert failed == {row_id(case) for case in BROKEN_IDS}
    broken = before[row_id("q05")]
    assert broken.output == "wrong"
    assert broken.expected == "QUESTION 5"
    assert broken.input == {"case": {"id": "q05", "question": "question 5"}}
    assert broken.scores == {"exact": 0.0, "pass": 0.0}
    assert broken.error is not None
    assert broken.error.type == "AssertionError"
    assert broken.error.message.startswith("assert 'wrong' == 'QUESTION 5'")
    assert broken.error.traceback.startswith("test_answers.py:")
    assert "E   AssertionError: assert 'wrong' == 'QUESTION 5'" in broken.error.traceback

    # The three cases are fixed; only they run again.
    (pytester.path / "broken.json").unlink()
    second = pytester.runpytest_subprocess(EXPERIMENT, "--lf", "--eval-attempt-id=second-attempt")

    second.assert_outcomes(passed=3)
    assert header(second)["attempt"] == "second-attempt"
    lines = summary_lines(second)
    assert "attempt second-attempt: 3 rows written (0 new, 3 updated)" in lines
    assert "mean scores: exact 1.000, pass 1.000" in lines

    after = rows(db, "nightly")
    assert len(after) == 12
    assert sorted(after) == sorted(before)
    rerun = {rid: row for rid, row in after.items() if row.version == 2}
    assert sorted(rerun) == sorted(failed)
    for row in rerun.values():
        assert row.status == "passed"
        assert row.attempt_id == "second-attempt"
        assert row.metadata["attemptId"] == "second-attempt"
        assert row.error is None
        assert row.scores == {"exact": 1.0, "pass": 1.0}
    for rid, row in after.items():
        if rid not in rerun:
            assert row.version == 1
            assert row.status == "passed"
            assert row.attempt_id == first_attempt
            assert row.version_id == before[rid].version_id  # untouched

    versions = history(db, "nightly", row_id("q11"))
    assert [(v.version, v.status, v.attempt_id) for v in versions] == [
        (1, "failed", first_attempt),
        (2, "passed", "second-attempt"),
    ]

    recorded = attempts(db, "nightly")
    assert [a.id for a in recorded] == [first_attempt, "second-attempt"]
    assert recorded[0].counts == {"passed": 9, "failed": 3}
    assert recorded[1].counts == {"passed": 3}
    assert all(a.ended is not None and a.ended >= a.started for a in recorded)
    assert "--lf" in recorded[1].args


IDS_MODULE = """
import pytest

@pytest.mark.eval
@pytest.mark.parametrize("city", ["paris", "rome", "oslo"])
def test_city(city, eval_row):
    eval_row.log(output=city.title())

class TestGroup:
    @pytest.mark.eval
    def test_member(self, eval_row):
        pass
"""

ROW_IDS = [
    "tests/test_ids.py::TestGroup::test_member",
    "tests/test_ids.py::test_city[oslo]",
    "tests/test_ids.py::test_city[paris]",
    "tests/test_ids.py::test_city[rome]",
]


def test_row_ids_do_not_depend_on_the_invocation_directory_with_an_ini_file(
    pytester: pytest.Pytester, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\n")
    tests = pytester.mkdir("tests")
    (tests / "test_ids.py").write_text(IDS_MODULE)
    sub = pytester.mkdir("sub")

    first = pytester.runpytest_subprocess(EXPERIMENT)
    monkeypatch.chdir(sub)
    second = pytester.runpytest_subprocess(EXPERIMENT, "..")
    third = pytester.runpytest_subprocess(EXPERIMENT, "../tests/test_ids.py::test_city[rome]")

    first.assert_outcomes(passed=4)
    second.assert_outcomes(passed=4)
    third.assert_outcomes(passed=1)
    for result in (first, second, third):
        assert header(result)["anchor"] == str(pytester.path)
        assert header(result)["store"] == f"sqlite:///{db}"
    found = rows(db, "nightly")
    assert sorted(found) == ROW_IDS
    versions = {rid: row.version for rid, row in found.items()}
    assert versions == {
        "tests/test_ids.py::TestGroup::test_member": 2,
        "tests/test_ids.py::test_city[oslo]": 2,
        "tests/test_ids.py::test_city[paris]": 2,
        "tests/test_ids.py::test_city[rome]": 3,
    }
    assert (
        found["tests/test_ids.py::test_city[rome]"].nodeid == "tests/test_ids.py::test_city[rome]"
    )
    assert not (sub / ".evalrows").exists()


def test_row_ids_do_not_depend_on_the_rootdir_without_an_ini_file(
    pytester: pytest.Pytester, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No ini file: pytest's rootdir follows the arguments, so its node ids change. A `.git`
    # directory marks the project, and row ids stay relative to it.
    pytester.mkdir(".git")
    tests = pytester.mkdir("tests")
    (tests / "test_ids.py").write_text(IDS_MODULE)
    sub = pytester.mkdir("sub")

    first = pytester.runpytest_subprocess(EXPERIMENT)
    monkeypatch.chdir(tests)
    second = pytester.runpytest_subprocess(EXPERIMENT)
    monkeypatch.chdir(sub)
    third = pytester.runpytest_subprocess(EXPERIMENT, "../tests/test_ids.py")

    assert f"rootdir: {pytester.path}" in first.stdout.lines
    assert f"rootdir: {tests}" in second.stdout.lines
    # pytest's own node ids really differ between the runs ...
    first.stdout.fnmatch_lines(["tests/test_ids.py .... *"])
    second.stdout.fnmatch_lines(["test_ids.py .... *"])
    third.stdout.fnmatch_lines(["../tests/test_ids.py .... *"])
    for result in (first, second, third):
        result.assert_outcomes(passed=4)
        assert header(result)["anchor"] == str(pytester.path)
    # ... but the rows do not.
    found = rows(db, "nightly")
    assert sorted(found) == ROW_IDS
    assert {row.version for row in found.values()} == {3}
    assert {row.nodeid for row in found.values()} == set(ROW_IDS)
    assert not (tests / ".evalrows").exists()
    assert not (sub / ".evalrows").exists()


def test_inert_without_an_experiment(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_inert="""
        import sys

        import pytest

        @pytest.mark.eval
        @pytest.mark.parametrize("n", [1, 2])
        def test_case(n, eval_row):
            assert eval_row.recording is False
            assert eval_row.row_id is None
            eval_row.log(output={"n": n}, expected=n, metadata={"obj": object()},
                         tags=["t"], scores={"s": 0.5})
            eval_row.score("exact", True)
            assert eval_row.scores == {}
            with pytest.raises(ValueError, match=r"must be a finite number in \\[0, 1\\]"):
                eval_row.score("exact", 2)

        def test_nothing_of_the_recorder_is_imported():
            loaded = {"pytest_evalrows.plugin.recorder", "pytest_evalrows.models",
                      "pytest_evalrows.store.sqlite"} & set(sys.modules)
            assert loaded == set()
        """
    )
    result = pytester.runpytest_subprocess()

    result.assert_outcomes(passed=3)
    assert result.ret == 0
    assert not (pytester.path / ".evalrows").exists()
    assert not any(line.startswith("evalrows:") for line in result.stdout.lines)
    assert not any(re.fullmatch(r"-+ evalrows -+", line) for line in result.stdout.lines)


def test_two_items_with_one_row_id_stop_the_session_before_any_test_runs(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makepyfile(
        test_dup="""
        import pathlib

        import pytest

        CASES = [{"id": "same", "q": 1}, {"id": "other", "q": 2}, {"id": "same", "q": 3}]

        @pytest.mark.eval(key="id")
        @pytest.mark.parametrize("case", CASES, ids=["first", "second", "third"])
        def test_case(case):
            pathlib.Path("ran-" + str(case["q"])).write_text("ran")
        """
    )
    result = pytester.runpytest_subprocess(EXPERIMENT)

    line = usage_error(result)
    assert line == (
        "ERROR: evalrows: test_dup.py::test_case[first] and test_dup.py::test_case[third] "
        "map to one row id 'test_dup.py::test_case[same]'; give the cases distinct ids or keys"
    )
    assert list(pytester.path.glob("ran-*")) == []
    assert rows(db, "nightly") == {}


def test_a_key_the_case_does_not_have_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_key="""
        import pytest

        @pytest.mark.eval(key="name")
        @pytest.mark.parametrize("case", [{"id": "a"}], ids=["a"])
        def test_case(case):
            pass
        """
    )
    result = pytester.runpytest_subprocess(EXPERIMENT)

    assert usage_error(result) == (
        "ERROR: evalrows: cannot key the row of test_key.py::test_case[a] by 'name': "
        "no parameter of this case has a field 'name' (parameters: ['case'])"
    )


def test_positional_ids_warn_once_per_test_function(pytester: pytest.Pytester, db: Path) -> None:
    pytester.makepyfile(
        test_pos="""
        import pytest

        CASES = [{"id": "a"}, {"id": "b"}, {"id": "c"}]

        @pytest.mark.eval
        @pytest.mark.parametrize("case", CASES)
        def test_positional(case):
            pass

        @pytest.mark.eval
        @pytest.mark.parametrize("case", CASES)
        @pytest.mark.parametrize("model", ["small", "large"])
        def test_positional_two_axes(case, model):
            pass

        class TestGroup:
            @pytest.mark.eval
            @pytest.mark.parametrize("case", CASES)
            def test_in_class(self, case):
                pass

        @pytest.mark.eval(key="id")
        @pytest.mark.parametrize("case", CASES)
        def test_keyed(case):
            pass

        @pytest.mark.eval("id")
        @pytest.mark.parametrize("case", CASES)
        def test_keyed_positionally(case):
            pass

        @pytest.mark.eval(key=lambda params: params["case"]["id"].upper())
        @pytest.mark.parametrize("case", CASES)
        def test_keyed_by_callable(case):
            pass

        @pytest.mark.eval
        @pytest.mark.parametrize("case", CASES, ids=lambda case: case["id"])
        def test_named(case):
            pass

        @pytest.mark.parametrize("case", CASES)
        def test_not_a_row(case):
            pass
        """
    )
    result = pytester.runpytest_subprocess(EXPERIMENT)

    result.assert_outcomes(passed=27, warnings=3)
    text = result.stdout.str()
    assert text.count("EvalrowsWarning: evalrows: the rows of ") == 3
    for base in (
        "test_pos.py::test_positional",
        "test_pos.py::test_positional_two_axes",
        "test_pos.py::TestGroup::test_in_class",
    ):
        assert f"the rows of {base} are keyed by positional parameter ids (case);" in text
    assert 'key the rows by the case\'s data: @pytest.mark.eval(key="id")' in text
    found = rows(db, "nightly")
    assert len(found) == 24
    assert {rid for rid in found if "keyed" in rid} == {
        "test_pos.py::test_keyed_by_callable[A]",
        "test_pos.py::test_keyed_by_callable[B]",
        "test_pos.py::test_keyed_by_callable[C]",
        "test_pos.py::test_keyed[a]",
        "test_pos.py::test_keyed[b]",
        "test_pos.py::test_keyed[c]",
        "test_pos.py::test_keyed_positionally[a]",
        "test_pos.py::test_keyed_positionally[b]",
        "test_pos.py::test_keyed_positionally[c]",
    }
    assert found["test_pos.py::test_keyed[b]"].nodeid == "test_pos.py::test_keyed[case1]"
    assert not any("test_not_a_row" in rid for rid in found)


REORDER_MODULE = """
import json
import pathlib

import pytest

CASES = json.loads(pathlib.Path(__file__).with_name("dataset.json").read_text())

@pytest.mark.eval(key="id")
@pytest.mark.parametrize("case", CASES)
def test_keyed(case, eval_row):
    eval_row.log(output=case["q"].upper())

@pytest.mark.eval
@pytest.mark.parametrize("case", CASES)
def test_positional(case):
    pass
"""


def test_keyed_rows_keep_their_ids_when_the_dataset_is_reordered(
    pytester: pytest.Pytester, db: Path
) -> None:
    dataset = [{"id": "a", "q": "alpha"}, {"id": "b", "q": "beta"}, {"id": "c", "q": "gamma"}]
    pytester.makepyfile(test_reorder=REORDER_MODULE)
    (pytester.path / "dataset.json").write_text(json.dumps(dataset))
    first = pytester.runpytest_subprocess(EXPERIMENT)
    # Reordered, and case b's question edited.
    edited = [dataset[2], {"id": "b", "q": "BETA?"}, dataset[0]]
    (pytester.path / "dataset.json").write_text(json.dumps(edited))
    second = pytester.runpytest_subprocess(EXPERIMENT)

    first.assert_outcomes(passed=6, warnings=1)  # the positional ids
    second.assert_outcomes(passed=6, warnings=2)  # ... and the changed cases
    assert "changed since" not in first.stdout.str()
    second.stdout.fnmatch_lines(
        [
            "*EvalrowsWarning: evalrows: the parameters of 4 row(s) changed since their stored "
            "version: test_reorder.py::test_keyed[[]b[]], "
            "test_reorder.py::test_positional[[]case0[]], "
            "test_reorder.py::test_positional[[]case1[]], "
            "test_reorder.py::test_positional[[]case2[]]. Their next version will hold a "
            "different case*"
        ]
    )
    found = rows(db, "nightly")
    assert len(found) == 6
    for case in (dataset[0], dataset[2]):
        row = found[f"test_reorder.py::test_keyed[{case['id']}]"]
        assert row.version == 2
        assert row.input == {"case": case}
        assert row.output == case["q"].upper()
        assert [v.input for v in history(db, "nightly", row.row_id)] == [{"case": case}] * 2
    assert [v.output for v in history(db, "nightly", "test_reorder.py::test_keyed[b]")] == [
        "BETA",
        "BETA?",
    ]
    # The positional rows were silently re-mapped to other cases: what the warnings are about.
    assert found["test_reorder.py::test_positional[case0]"].input == {"case": dataset[2]}
    assert [v.input for v in history(db, "nightly", "test_reorder.py::test_positional[case0]")] == [
        {"case": dataset[0]},
        {"case": dataset[2]},
    ]


STATUSES_MODULE = """
import pytest

@pytest.fixture
def broken_setup():
    raise RuntimeError("no database")

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("cleanup failed")

@pytest.mark.eval
def test_passed(eval_row):
    eval_row.score("quality", 0.25)

@pytest.mark.eval
def test_failed():
    raise ValueError("bad answer")

@pytest.mark.eval
def test_setup_error(broken_setup):
    pass

@pytest.mark.eval
def test_teardown_error(broken_teardown, eval_row):
    eval_row.score("quality", 1)

@pytest.mark.eval
def test_failed_then_teardown_error(broken_teardown):
    assert 1 == 2

@pytest.mark.eval
@pytest.mark.skip(reason="not today")
def test_skipped_by_marker(eval_row):
    pass

@pytest.mark.eval
def test_skipped_inside(eval_row):
    eval_row.score("quality", 0.5)
    pytest.skip("later")

@pytest.mark.eval
@pytest.mark.xfail(reason="known")
def test_xfailed():
    assert False

@pytest.mark.eval
@pytest.mark.xfail(reason="known")
def test_xpassed():
    pass

@pytest.mark.eval
@pytest.mark.xfail(reason="known")
def test_xfailed_in_setup(broken_setup):
    pass
"""


def test_statuses_scores_and_errors_of_every_outcome(pytester: pytest.Pytester, db: Path) -> None:
    pytester.makepyfile(test_statuses=STATUSES_MODULE)
    result = pytester.runpytest_subprocess(EXPERIMENT, "--eval-attempt-id=a1")

    result.assert_outcomes(passed=2, failed=2, errors=3, skipped=2, xfailed=2, xpassed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    found = {rid.split("::")[1]: row for rid, row in rows(db, "nightly").items()}
    assert {name: row.status for name, row in found.items()} == {
        "test_passed": "passed",
        "test_failed": "failed",
        "test_setup_error": "error",
        "test_teardown_error": "error",
        "test_failed_then_teardown_error": "failed",
        "test_skipped_by_marker": "skipped",
        "test_skipped_inside": "skipped",
        "test_xfailed": "xfailed",
        "test_xpassed": "xpassed",
        "test_xfailed_in_setup": "xfailed",
    }
    assert {name: row.scores for name, row in found.items()} == {
        "test_passed": {"quality": 0.25, "pass": 1.0},
        "test_failed": {"pass": 0.0},
        "test_setup_error": {},
        "test_teardown_error": {"quality": 1.0},
        "test_failed_then_teardown_error": {"pass": 0.0},
        "test_skipped_by_marker": {},
        "test_skipped_inside": {"quality": 0.5},
        "test_xfailed": {},
        "test_xpassed": {},
        "test_xfailed_in_setup": {},
    }
    errors = {
        name: (row.error.type, row.error.message) if row.error else None
        for name, row in found.items()
    }
    assert errors == {
        "test_passed": None,
        "test_failed": ("ValueError", "bad answer"),
        "test_setup_error": ("RuntimeError", "no database"),
        "test_teardown_error": ("RuntimeError", "cleanup failed"),
        "test_failed_then_teardown_error": ("AssertionError", "assert 1 == 2"),
        "test_skipped_by_marker": None,
        "test_skipped_inside": None,
        "test_xfailed": None,
        "test_xpassed": None,
        "test_xfailed_in_setup": None,
    }
    failed = found["test_failed"].error
    assert failed is not None
    assert failed.traceback.startswith("test_statuses.py:")
    assert 'raise ValueError("bad answer")' in failed.traceback
    assert "E   ValueError: bad answer" in failed.traceback
    setup = found["test_setup_error"].error
    assert setup is not None
    assert "in broken_setup" in setup.traceback
    assert "E   RuntimeError: no database" in setup.traceback
    for row in found.values():
        assert row.attempt_id == "a1"
        assert row.version == 1
        assert row.execution == 1
        assert row.metrics.start <= row.metrics.end
        assert row.metrics.duration == pytest.approx(row.metrics.end - row.metrics.start)
    assert found["test_skipped_by_marker"].metadata["markers"] == ["eval", "skip"]
    assert found["test_xpassed"].metadata["markers"] == ["eval", "xfail"]
    # The pass rate: 1 passed of 5 rows that passed, failed or ended in error (a row in
    # error did not pass, whether it stored a pass score or not).
    assert "mean scores: pass 0.200, quality 0.583" in summary_lines(result)
    (attempt,) = attempts(db, "nightly")
    assert attempt.counts == {
        "passed": 1,
        "failed": 2,
        "error": 2,
        "skipped": 2,
        "xfailed": 2,
        "xpassed": 1,
    }


def test_a_strict_xpass_row_says_why_it_failed(pytester: pytest.Pytester, db: Path) -> None:
    pytester.makepyfile(
        test_strict="""
        import pytest

        @pytest.mark.eval
        @pytest.mark.xfail(reason="should fail", strict=True)
        def test_unexpectedly_fine():
            pass
        """
    )
    result = pytester.runpytest_subprocess(EXPERIMENT)

    result.assert_outcomes(failed=1)
    row = rows(db, "nightly")["test_strict.py::test_unexpectedly_fine"]
    assert row.status == "failed"
    assert row.scores == {"pass": 0.0}
    assert row.error is not None
    assert "XPASS(strict)" in row.error.type + row.error.message


VALUES_MODULE = """
import dataclasses
import pytest

@dataclasses.dataclass
class Answer:
    text: str
    sources: set

class Opaque:
    def __repr__(self):
        return "<Opaque 42>"

@pytest.mark.eval
@pytest.mark.parametrize("case", [{"id": "fr", "q": "Capital of France?"}], ids=["fr"])
@pytest.mark.parametrize("model", ["small"])
def test_values(case, model, eval_row, tmp_path, request, monkeypatch):
    eval_row.log(
        output=Answer("Paris", {"wiki"}),
        expected={"Paris"},
        metadata={"judge": Opaque(), "n": 3},
        tags=["geo", "geo", "easy"],
    )
    eval_row.log(expected="Paris", metadata={"m": [1, 2]}, tags="capital")
    assert eval_row.recording
    assert eval_row.row_id == "test_values.py::test_values[small-fr]"

@pytest.mark.eval
def test_input_given(eval_row, tmp_path):
    eval_row.log(input={"prompt": "custom"}, output=None)

@pytest.mark.eval
def test_big_output(eval_row):
    eval_row.log(output="x" * 1_500_000)

@pytest.mark.eval
@pytest.mark.parametrize("doc", [pytest.param("y" * 1_200_000, id="huge")])
def test_big_input(doc):
    pass

@pytest.mark.eval
@pytest.mark.parametrize(
    "bad", [1.5, float("nan"), "0.9"], ids=["over", "nan", "text"]
)
def test_bad_score(bad, eval_row):
    eval_row.score("exact", bad)

@pytest.mark.eval
def test_bad_scores_are_value_errors(eval_row):
    for bad in (-0.1, float("inf"), None, "1"):
        with pytest.raises(ValueError, match="score 'exact' must be"):
            eval_row.log(scores={"exact": bad})
    eval_row.score("kept", 0.75)
"""


def test_logged_values_are_stored_faithfully(pytester: pytest.Pytester, db: Path) -> None:
    pytester.makepyfile(test_values=VALUES_MODULE)
    result = pytester.runpytest_subprocess(EXPERIMENT)

    result.assert_outcomes(passed=5, failed=3)
    found = {rid.removeprefix("test_values.py::"): row for rid, row in rows(db, "nightly").items()}
    assert sorted(found) == [
        "test_bad_score[nan]",
        "test_bad_score[over]",
        "test_bad_score[text]",
        "test_bad_scores_are_value_errors",
        "test_big_input[huge]",
        "test_big_output",
        "test_input_given",
        "test_values[small-fr]",
    ]

    values = found["test_values[small-fr]"]
    # input: the parametrized values only, not tmp_path, request or monkeypatch
    assert values.input == {"model": "small", "case": {"id": "fr", "q": "Capital of France?"}}
    assert values.output == {"text": "Paris", "sources": ["wiki"]}
    assert values.expected == "Paris"
    assert values.metadata["judge"] == "<Opaque 42>"
    assert values.metadata["n"] == 3
    assert values.metadata["m"] == [1, 2]
    assert "truncated" not in values.metadata
    assert values.tags == ["geo", "easy", "capital"]

    assert found["test_input_given"].input == {"prompt": "custom"}
    assert found["test_input_given"].output is None

    big = found["test_big_output"]
    assert big.status == "passed"
    assert big.metadata["truncated"] == {"output": 1_500_002}
    assert big.output == "x" * 999_969 + "<cut: 500031 more characters>"
    big_input = found["test_big_input[huge]"]
    assert big_input.metadata["truncated"] == {"input": 1_200_010}
    doc, cut = big_input.input["doc"].split("<cut: ")  # still a dict with its key
    assert doc == "y" * len(doc) and cut == f"{1_200_000 - len(doc)} more characters>"

    lines = result.stdout.lines
    messages = {
        "over": "score 'exact' must be a finite number in [0, 1], got 1.5",
        "nan": "score 'exact' must be a finite number in [0, 1], got nan",
        "text": "score 'exact' must be a number in [0, 1], got str '0.9'",
    }
    for case, message in messages.items():
        row = found[f"test_bad_score[{case}]"]
        assert row.status == "failed"
        assert row.scores == {"pass": 0.0}
        assert row.error is not None
        assert (row.error.type, row.error.message) == ("InvalidScoreError", message)
        expected_line = f"pytest_evalrows.errors.InvalidScoreError: {message}"
        assert any(line.startswith("E ") and line.endswith(expected_line) for line in lines)
    # The plugin's own frames are hidden: the traceback ends at the test's call.
    assert [line for line in lines if "pytest_evalrows/" in line] == []
    assert found["test_bad_scores_are_value_errors"].scores == {"kept": 0.75, "pass": 1.0}


def test_metadata_over_one_megabyte_keeps_its_start(pytester: pytest.Pytester, db: Path) -> None:
    pytester.makepyfile(
        test_meta="""
        import pytest

        @pytest.mark.eval
        def test_big_metadata(eval_row):
            eval_row.log(metadata={"big": "y" * 1_200_000})
        """
    )
    result = pytester.runpytest_subprocess(EXPERIMENT)

    result.assert_outcomes(passed=1)
    row = rows(db, "nightly")["test_meta.py::test_big_metadata"]
    assert row.metadata["truncated"] == {"metadata": 1_200_010}
    big, cut = row.metadata["big"].split("<cut: ")  # the key kept, its text cut
    assert big == "y" * len(big) and cut == f"{1_200_000 - len(big)} more characters>"


def test_only_eval_marked_tests_are_rows(pytester: pytest.Pytester, db: Path) -> None:
    pytester.makepyfile(
        test_module_mark="""
        import pytest

        pytestmark = pytest.mark.eval

        def test_one(eval_row):
            assert eval_row.recording

        @pytest.mark.parametrize("n", [1, 2])
        def test_two(n):
            pass
        """,
        test_class_mark="""
        import pytest

        @pytest.mark.eval
        class TestMarked:
            def test_a(self, eval_row):
                assert eval_row.row_id == "test_class_mark.py::TestMarked::test_a"

        class TestPlain:
            def test_b(self, eval_row):
                assert not eval_row.recording

        @pytest.mark.eval
        def test_function(eval_row):
            assert eval_row.recording

        def test_unmarked(eval_row):
            eval_row.log(output="ignored")
            eval_row.score("s", 1)
            assert eval_row.recording is False
            assert eval_row.row_id is None
        """,
    )
    result = pytester.runpytest_subprocess(EXPERIMENT, "--strict-markers")

    result.assert_outcomes(passed=7)
    found = rows(db, "nightly")
    assert sorted(found) == [
        "test_class_mark.py::TestMarked::test_a",
        "test_class_mark.py::test_function",
        "test_module_mark.py::test_one",
        "test_module_mark.py::test_two[1]",
        "test_module_mark.py::test_two[2]",
    ]
    assert found["test_module_mark.py::test_two[2]"].input == {"n": 2}
    assert found["test_module_mark.py::test_two[2]"].metadata["markers"] == ["eval"]
    assert "5 rows written (5 new, 0 updated)" in " ".join(summary_lines(result))


def test_the_eval_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--markers")

    assert result.ret == 0
    result.stdout.fnmatch_lines(["@pytest.mark.eval(key=None): record each case of this test *"])


def test_an_unreachable_store_does_not_change_test_outcomes(pytester: pytest.Pytester) -> None:
    (pytester.path / "blocker").write_text("a file, not a directory")
    pytester.makepyfile(
        test_ok="""
        import pytest

        @pytest.mark.eval
        @pytest.mark.parametrize("n", [1, 2])
        def test_ok(n, eval_row):
            eval_row.score("s", 1)
        """
    )
    result = pytester.runpytest_subprocess(EXPERIMENT, "--eval-store=blocker/sub/rows.db")

    result.assert_outcomes(passed=2)
    assert result.ret == 0
    lines = summary_lines(result)
    assert any(line.endswith(": 0 rows written (0 new, 0 updated)") for line in lines)
    cause = f"store unavailable: cannot create {pytester.path / 'blocker' / 'sub'}: "
    assert [line for line in lines if line.startswith(cause)] == [cause + "Not a directory"]
    # Nothing is dropped silently: the two rows that could not be written are reported.
    assert len([line for line in lines if re.match(r"2 rows (were )?not delivered", line)]) == 1
