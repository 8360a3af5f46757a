"""What a new user meets first: the two commands of the README, the help, the version, and a
warning when a test logs to ``eval_row`` without the eval marker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.store import rows

ROOT = Path(__file__).resolve().parent.parent

ROOT = Path(__file__).resolve().parent.parent

UNMARKED = """
import pytest

@pytest.mark.parametrize("n", [1, 2, 3])
def test_forgot_the_marker(n, eval_row):
    eval_row.log(output=n)
    eval_row.score("one", 1.0)

def test_forgot_it_too(eval_row):
    eval_row.log(output="x")

@pytest.mark.eval
@pytest.mark.parametrize("n", [1])
def test_marked(n, eval_row):
    eval_row.log(output=n)

def test_plain():
    pass
"""


def test_eval_row_without_the_marker_warns_once_per_test_function(
    pytester: pytest.Pytester, db: Path
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_unmarked=UNMARKED)
    result = pytester.runpytest_subprocess("--eval-experiment=door")

    result.assert_outcomes(passed=6, warnings=2)
    text = result.stdout.str()
    for function in ("test_forgot_the_marker", "test_forgot_it_too"):
        warned = [
            line
            for line in result.stdout.lines
            if f"test_unmarked.py::{function} uses eval_row" in line
        ]
        assert len(warned) == 1, text
        assert "@pytest.mark.eval" in warned[0]
        assert "EvalrowsWarning" in warned[0]
    # It points at the test, not into the plugin.
    assert "test_unmarked.py:3: EvalrowsWarning" in text
    assert list(rows(db, "door")) == ["test_unmarked.py::test_marked[1]"]


def test_eval_row_without_the_marker_is_quiet_when_nothing_is_recorded(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_unmarked=UNMARKED)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=6)


def test_under_filterwarnings_error_every_case_of_an_unmarked_test_fails_alike(
    pytester: pytest.Pytester, db: Path
) -> None:
    # The user asked for warnings to be errors: the tests that caused this one fail, as a
    # warning turned error fails any test, and pytest itself carries on.
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(test_unmarked=UNMARKED)
    result = pytester.runpytest_subprocess("--eval-experiment=door")

    result.assert_outcomes(passed=2, errors=4)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text
    errored = sorted(
        line.split(" - ")[0] for line in result.stdout.lines if line.startswith("ERROR ")
    )
    assert errored == [
        "ERROR test_unmarked.py::test_forgot_it_too",
        "ERROR test_unmarked.py::test_forgot_the_marker[1]",
        "ERROR test_unmarked.py::test_forgot_the_marker[2]",
        "ERROR test_unmarked.py::test_forgot_the_marker[3]",
    ]
    assert text.count("is not marked @pytest.mark.eval") >= 4
    assert list(rows(db, "door")) == ["test_unmarked.py::test_marked[1]"]


# -- the two commands of the README, from a checkout with no virtual environment -----------


def _checkout(to: Path) -> Path:
    """A copy of this checkout's files (tracked or new, not ignored), as a clone would hold."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # not one deleted from the working tree
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)
    return to


def _fresh_machine_env() -> dict[str, str]:
    """This environment without the virtual environment these tests run in."""
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    ours = str(Path(sys.prefix) / ("Scripts" if os.name == "nt" else "bin"))
    env["PATH"] = os.pathsep.join(
        entry for entry in env.get("PATH", "").split(os.pathsep) if entry and entry != ours
    )
    return env


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        cwd=cwd,
        env=_fresh_machine_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="no git")
def test_the_two_commands_of_the_readme_set_everything_up(tmp_path: Path) -> None:
    checkout = _checkout(tmp_path / "checkout")
    assert not (checkout / ".venv").exists()

    demo = _run(["scripts/demo"], checkout)

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "creating the virtual environment .venv" in demo.stderr
    assert "2 failed, 6 passed" in demo.stdout  # two wrong answers, on purpose
    # Two judges on each of the eight rows; the answers judge fails the two wrong ones.
    assert "judgments: 16 (16 succeeded); passed 14 of 16" in demo.stdout
    table = demo.stdout[demo.stdout.index("ROW ID") :].splitlines()
    assert len(table) == 9, demo.stdout
    assert table[1].startswith("examples/test_capitals.py::test_answers[capital-au]  failed  1")
    assert (checkout / ".evalrows" / "evalrows.db").exists()

    again = _run(["scripts/demo", "--lf"], checkout)  # the venv is there: nothing installed

    assert again.returncode == 0, again.stdout + again.stderr
    assert "installing" not in again.stderr
    assert "2 rows written (0 new, 2 updated)" in again.stdout

    tests = _run(["scripts/test", "tests/test_ids.py", "-q", "-p", "no:cacheprovider"], checkout)

    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "All checks passed!" in tests.stdout  # ruff
    assert "already formatted" in tests.stdout  # ruff format --check
    assert "Success: no issues found" in tests.stdout  # mypy
    assert " passed" in tests.stdout.splitlines()[-1]  # pytest
