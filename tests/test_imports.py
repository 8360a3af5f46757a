"""Import cost is paid by every pytest run: the plugin imports heavy modules only when it
records, and even then not the validated models, which are only for reading a store back."""

from __future__ import annotations

import pytest

PROBE = """
import sys
import pytest

HEAVY = (
    "pydantic", "opentelemetry.sdk.trace", "sqlite3", "httpx", "pytest_evalrows.plugin.recorder"
)

@pytest.mark.eval
@pytest.mark.parametrize("n", [1])
def test_probe(n, eval_row):
    eval_row.log(output=n)
    eval_row.score("one", 1.0)
    loaded = sorted(name for name in HEAVY if name in sys.modules)
    print("LOADED", ",".join(loaded) or "-")
"""


def loaded(result: pytest.RunResult) -> list[str]:
    (line,) = [line for line in result.outlines if "LOADED " in line]
    names = line.split("LOADED ", 1)[1].split()[0]
    return [] if names == "-" else names.split(",")


def test_an_inert_session_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_probe=PROBE)
    result = pytester.runpytest_subprocess("-s", "-p", "no:anyio", "-p", "no:xdist")
    result.assert_outcomes(passed=1)
    assert loaded(result) == []
    assert not (pytester.path / ".evalrows").exists()


def test_a_recording_session_leaves_the_read_models_alone(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_probe=PROBE)
    result = pytester.runpytest_subprocess(
        "-s", "-p", "no:anyio", "-p", "no:xdist", "--eval-experiment=imports"
    )
    result.assert_outcomes(passed=1)
    assert "pydantic" not in loaded(result)
    assert "pytest_evalrows.plugin.recorder" in loaded(result)


def test_the_testing_helpers_plugin_imports_nothing_heavy_in_an_inert_session(
    pytester: pytest.Pytester,
) -> None:
    # capture_rows() makes every session it runs load pytest_evalrows.testing as a plugin.
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_probe=PROBE)
    result = pytester.runpytest_subprocess(
        "-s", "-p", "no:anyio", "-p", "no:xdist", "-p", "pytest_evalrows.testing"
    )
    result.assert_outcomes(passed=1)
    assert loaded(result) == []


# Two rows without judges; the second looks at what the first one's session loaded and
# started (a judge thread would be running by then, and the judging modules imported).
NO_JUDGES = """
import sys
import threading

import pytest

JUDGING = ("pytest_evalrows.judging", "pytest_evalrows.plugin.judging", "pydantic")

@pytest.mark.eval
@pytest.mark.parametrize("n", [1, 2])
def test_probe(n, eval_row):
    eval_row.log(output=n, expected=n)
    eval_row.score("one", 1.0)
    if n == 2:
        loaded = sorted(name for name in JUDGING if name in sys.modules)
        threads = sorted(t.name for t in threading.enumerate() if "judge" in t.name)
        print("LOADED", ",".join(loaded) or "-")
        print("THREADS", ",".join(threads) or "-")
"""


def test_a_session_without_judges_starts_no_judge_thread_and_imports_no_judging_module(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_probe=NO_JUDGES)
    result = pytester.runpytest_subprocess(
        "-s", "-p", "no:anyio", "-p", "no:xdist", "-p", "no:randomly", "--eval-experiment=plain"
    )
    result.assert_outcomes(passed=2)
    assert loaded(result) == []
    result.stdout.fnmatch_lines(["THREADS -"])
