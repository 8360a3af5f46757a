"""Settings: flag > ini key > env var > default, and a clear usage error for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.output import header, usage_error
from support.store import rows

from pytest_evalrows.plugin.settings import resolve
from pytest_evalrows.store.urls import VALID_FORMS

ONE_ROW = """
import pytest

@pytest.mark.eval
def test_one(eval_row):
    eval_row.score("s", 1)
"""

ENV = {
    "EVALROWS_EXPERIMENT": "from-env",
    "EVALROWS_STORE": "env.db",
    "EVALROWS_PROJECT": "env-project",
    "EVALROWS_ATTEMPT_ID": "env-attempt",
}
INI = """
[pytest]
eval_experiment = from-ini
eval_store = sqlite:///ini.db
eval_project = ini-project
eval_attempt_id = ini-attempt
"""


def test_env_vars_alone_turn_recording_on(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(test_one=ONE_ROW)

    result = pytester.runpytest_subprocess()

    result.assert_outcomes(passed=1)
    assert header(result) == {
        "experiment": "from-env",
        "project": "env-project",
        "store": f"sqlite:///{pytester.path / 'env.db'}",
        "attempt": "env-attempt",
        "anchor": str(pytester.path),
    }
    (row,) = rows(pytester.path / "env.db", "from-env").values()
    assert row.attempt_id == "env-attempt"
    assert not (pytester.path / ".evalrows" / "evalrows.db").exists()


def test_ini_keys_beat_env_vars(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    pytester.makeini(INI)
    pytester.makepyfile(test_one=ONE_ROW)

    result = pytester.runpytest_subprocess()

    result.assert_outcomes(passed=1)
    assert header(result) == {
        "experiment": "from-ini",
        "project": "ini-project",
        "store": f"sqlite:///{pytester.path / 'ini.db'}",
        "attempt": "ini-attempt",
        "anchor": str(pytester.path),
    }
    (row,) = rows(pytester.path / "ini.db", "from-ini").values()
    assert row.attempt_id == "ini-attempt"
    assert not (pytester.path / "env.db").exists()


def test_flags_beat_ini_keys_and_env_vars(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    pytester.makeini(INI)
    pytester.makepyfile(test_one=ONE_ROW)
    absolute = tmp_path / "elsewhere" / "flag.db"

    result = pytester.runpytest_subprocess(
        "--eval-experiment=from-flag",
        f"--eval-store=sqlite:///{absolute}",
        "--eval-project=flag-project",
        "--eval-attempt-id=flag-attempt",
    )

    result.assert_outcomes(passed=1)
    assert header(result) == {
        "experiment": "from-flag",
        "project": "flag-project",
        "store": f"sqlite:///{absolute}",
        "attempt": "flag-attempt",
        "anchor": str(pytester.path),
    }
    (row,) = rows(absolute, "from-flag").values()
    assert row.attempt_id == "flag-attempt"
    assert not (pytester.path / "ini.db").exists()
    assert not (pytester.path / "env.db").exists()


NAME_RULE = (
    "an experiment name must be 1 to 200 characters of UTF-8 text with no control characters "
    "and not only spaces"
)
ATTEMPT_RULE = (
    "an attempt id must be 1 to 128 characters: letters, digits and . _ : - "
    "(starting with a letter or digit)"
)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param(
            ["--eval-store=mysql://x"],
            {},
            "--eval-store='mysql://x': unknown store scheme 'mysql' in 'mysql://x'; "
            f"use {VALID_FORMS}",
            id="unknown-scheme",
        ),
        pytest.param(
            ["--eval-store=sqlite://"],
            {},
            f"--eval-store='sqlite://': 'sqlite://' names no file; use {VALID_FORMS}",
            id="sqlite-without-file",
        ),
        pytest.param(
            ["--eval-attempt-id=not valid!"],
            {},
            f"--eval-attempt-id='not valid!': {ATTEMPT_RULE}",
            id="bad-attempt-id",
        ),
        pytest.param(
            ["--eval-experiment="], {}, f"--eval-experiment='': {NAME_RULE}", id="empty-experiment"
        ),
        pytest.param(
            # Bytes that are not UTF-8 on a command line reach Python as surrogates.
            ["--eval-experiment=caf\udce9"],
            {},
            f"--eval-experiment='caf\\udce9': {NAME_RULE}",
            id="experiment-not-utf8",
        ),
        pytest.param(
            ["--eval-http-timeout=soon"],
            {},
            "--eval-http-timeout='soon': not a number of seconds; valid values: a number above 0",
            id="bad-http-timeout",
        ),
        pytest.param(
            [],
            {"EVALROWS_HTTP_RETRIES": "-1"},
            "env var EVALROWS_HTTP_RETRIES='-1': valid values: a whole number, 0 or more",
            id="bad-http-retries",
        ),
        pytest.param(
            ["--eval-report=short"],
            {},
            "--eval-report='short': not a valid value; valid values: full, none",
            id="bad-report",
        ),
        pytest.param(
            ["--eval-fail-under", "pass=0.9", "--eval-fail-under", "exact=high"],
            {},
            "--eval-fail-under='pass=0.9\\nexact=high': 'exact=high' is not NAME=VALUE with "
            "VALUE a number from 0 to 1 (e.g. pass=0.9, exact=0.75)",
            id="bad-fail-under",
        ),
        pytest.param(
            [],
            {"EVALROWS_FAIL_UNDER": "pass=1.5"},
            "env var EVALROWS_FAIL_UNDER='pass=1.5': 'pass=1.5' is not NAME=VALUE with VALUE a "
            "number from 0 to 1 (e.g. pass=0.9, exact=0.75)",
            id="fail-under-out-of-range",
        ),
        pytest.param(
            ["--eval-max-regressions=2"],
            {},
            "--eval-max-regressions counts regressions against a baseline: name one with "
            "--eval-baseline EXPERIMENT",
            id="regressions-without-baseline",
        ),
        pytest.param(
            ["--eval-trials=0"],
            {},
            "--eval-trials='0': valid values: a whole number, 1 or more",
            id="no-trials",
        ),
        pytest.param(
            ["--eval-concurrency=0"],
            {},
            "--eval-concurrency='0': valid values: a whole number, 1 or more",
            id="no-concurrency",
        ),
        pytest.param(
            ["--eval-concurrency-limit", "openai=8", "--eval-concurrency-limit", "judge"],
            {},
            "--eval-concurrency-limit='openai=8\\njudge': 'judge' is not NAME=N with N a whole "
            "number of at least 1 (e.g. openai=8)",
            id="bad-concurrency-limit",
        ),
        pytest.param(
            [],
            {"EVALROWS_STORE": "mysql://db/rows"},
            "env var EVALROWS_STORE='mysql://db/rows': unknown store scheme 'mysql' in "
            f"'mysql://db/rows'; use {VALID_FORMS}",
            id="bad-env-var",
        ),
    ],
)
def test_a_bad_value_is_a_one_line_usage_error(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(
        test_never="""
        import pathlib

        def test_never():
            pathlib.Path("ran").write_text("ran")
        """
    )

    result = pytester.runpytest_subprocess("--eval-experiment=nightly", *args)

    assert usage_error(result) == f"ERROR: evalrows: {message}"
    assert not (pytester.path / "ran").exists()
    assert not (pytester.path / ".evalrows").exists()


# -- the resolver in-process (no subprocess): every source and every form -----------------


def test_defaults(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()
    settings = resolve(config, {})

    assert settings.recording is False
    assert settings.experiment is None
    assert settings.attempt_id is None
    assert settings.anchor == pytester.path
    assert settings.project == pytester.path.name
    assert settings.store.scheme == "sqlite"
    assert settings.store.path == pytester.path / ".evalrows" / "evalrows.db"
    assert settings.concurrency == 1
    assert settings.concurrency_limits == ()


@pytest.mark.parametrize(
    ("flag", "ini", "env", "expected"),
    [
        (None, None, "e", "e"),
        (None, "i", "e", "i"),
        ("f", "i", "e", "f"),
        ("f", None, "e", "f"),
        ("f", "i", None, "f"),
        (None, "i", None, "i"),
        (None, None, "", None),  # an empty env var is unset
        (None, None, None, None),
    ],
)
def test_precedence_of_the_experiment(
    pytester: pytest.Pytester, flag: str | None, ini: str | None, env: str | None, expected: str
) -> None:
    if ini is not None:
        pytester.makeini(f"[pytest]\neval_experiment = {ini}\n")
    args = [f"--eval-experiment={flag}"] if flag is not None else []
    environ = {"EVALROWS_EXPERIMENT": env} if env is not None else {}

    settings = resolve(pytester.parseconfig(*args), environ)

    assert settings.experiment == expected
    assert settings.recording is (expected is not None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sqlite:///rows.db", "{root}/rows.db"),
        ("sqlite:///deep/er/rows.db", "{root}/deep/er/rows.db"),
        ("sqlite:////abs/rows.db", "/abs/rows.db"),
        ("plain.db", "{root}/plain.db"),
        ("/abs/plain.db", "/abs/plain.db"),
        ("sqlite:///:memory:", ":memory:"),
    ],
)
def test_store_url_forms(pytester: pytest.Pytester, value: str, expected: str) -> None:
    settings = resolve(pytester.parseconfig(f"--eval-store={value}"), {})

    assert str(settings.store.path) == expected.format(root=pytester.path)


@pytest.mark.parametrize(
    ("ini", "environ", "message"),
    [
        (
            "eval_attempt_id = has space",
            {},
            f"evalrows: ini key eval_attempt_id='has space': {ATTEMPT_RULE}",
        ),
        (
            "eval_store = ftp://x",
            {},
            f"evalrows: ini key eval_store='ftp://x': unknown store scheme 'ftp' in 'ftp://x'; "
            f"use {VALID_FORMS}",
        ),
        (
            "",
            {"EVALROWS_PROJECT": "   "},
            "evalrows: env var EVALROWS_PROJECT='   ': a project name must be 1 to 200 "
            "characters of UTF-8 text with no control characters and not only spaces",
        ),
        (
            "",
            {"EVALROWS_EXPERIMENT": "tab\there"},
            f"evalrows: env var EVALROWS_EXPERIMENT='tab\\there': {NAME_RULE}",
        ),
        (
            "",
            {"EVALROWS_EXPERIMENT": "x" * 201},
            f"evalrows: env var EVALROWS_EXPERIMENT='{'x' * 201}': {NAME_RULE}",
        ),
        (
            "",
            {"EVALROWS_ATTEMPT_ID": "a" * 129},
            f"evalrows: env var EVALROWS_ATTEMPT_ID='{'a' * 129}': {ATTEMPT_RULE}",
        ),
    ],
)
def test_bad_values_name_their_source(
    pytester: pytest.Pytester, ini: str, environ: dict[str, str], message: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    config = pytester.parseconfig()

    with pytest.raises(pytest.UsageError) as info:
        resolve(config, environ)

    assert str(info.value) == message


def test_limits_are_inclusive(pytester: pytest.Pytester) -> None:
    environ = {"EVALROWS_EXPERIMENT": "x" * 200, "EVALROWS_ATTEMPT_ID": "A" + "b.c_d:e-" * 15}
    settings = resolve(pytester.parseconfig(), environ)

    assert settings.experiment == "x" * 200
    assert settings.attempt_id == "A" + "b.c_d:e-" * 15


def test_project_anchor_is_the_marked_project_without_an_ini_file(
    pytester: pytest.Pytester,
) -> None:
    pytester.mkdir(".git")
    sub = pytester.mkdir("tests")
    pytester.makepyfile(**{"tests/test_x": "def test_x(): pass"})

    settings = resolve(pytester.parseconfig(str(sub)), {"EVALROWS_EXPERIMENT": "e"})

    assert settings.anchor == pytester.path
    assert settings.project == pytester.path.name
    assert settings.store.path == pytester.path / ".evalrows" / "evalrows.db"


def test_a_name_ending_in_a_newline_is_rejected(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfig()

    with pytest.raises(pytest.UsageError) as info:
        resolve(config, {"EVALROWS_EXPERIMENT": "nightly\n"})

    assert str(info.value) == f"evalrows: env var EVALROWS_EXPERIMENT='nightly\\n': {NAME_RULE}"


# -- --eval-resume takes a mode only: a path after it stays a path ------------------------

SUITE_IN_TESTS = """
import pytest

@pytest.mark.eval
@pytest.mark.parametrize("n", [1, 2, 3])
def test_n(n, eval_row):
    assert n != 3
"""


def test_eval_resume_before_a_path_runs_that_path_with_resume_on(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    pytester.mkdir("tests")
    pytester.makepyfile(**{"tests/test_in": SUITE_IN_TESTS})
    pytester.makepyfile(test_outside="def test_outside():\n    assert False\n")
    first = pytester.runpytest_subprocess("--eval-experiment=front", "tests/")
    first.assert_outcomes(passed=2, failed=1)

    second = pytester.runpytest_subprocess("--eval-experiment=front", "--eval-resume", "tests/")

    # Only tests/ was collected (test_outside would fail), and the two passed rows resumed.
    second.assert_outcomes(failed=1, deselected=2)
    assert "resumed: 2 cases whose row already passed were not run again" in second.stdout.str()

    third = pytester.runpytest_subprocess(
        "--eval-experiment=front", "--eval-resume", "finished", "tests/"
    )
    third.assert_outcomes(deselected=3)


@pytest.mark.parametrize(
    ("args", "mode", "paths"),
    [
        pytest.param(["--eval-resume", "tests/"], "passed", ["tests/"], id="bare-then-dir"),
        pytest.param(["--eval-resume", "tests"], "passed", ["tests"], id="bare-then-dir-name"),
        pytest.param(
            ["--eval-resume", "tests/test_in.py::test_n"],
            "passed",
            ["tests/test_in.py::test_n"],
            id="bare-then-node-id",
        ),
        pytest.param(["tests/", "--eval-resume"], "passed", ["tests/"], id="path-then-bare"),
        pytest.param(["--eval-resume", "finished", "tests/"], "finished", ["tests/"], id="space"),
        pytest.param(["--eval-resume=finished", "tests/"], "finished", ["tests/"], id="equals"),
        pytest.param(["--eval-resume", "OFF"], "off", [], id="any-case"),
        pytest.param(["--eval-resume"], "passed", [], id="bare"),
        pytest.param(
            ["a.py", "--eval-resume", "tests/", "b.py"],
            "passed",
            ["a.py", "b.py", "tests/"],
            id="among-paths",
        ),
    ],
)
def test_eval_resume_takes_a_mode_and_leaves_paths_to_pytest(
    pytester: pytest.Pytester, args: list[str], mode: str, paths: list[str]
) -> None:
    pytester.mkdir("tests")
    config = pytester.parseconfig("--eval-experiment=x", *args)

    assert resolve(config, {}).resume == mode
    # Every path is kept (one the flag gave back comes after the others).
    assert sorted(config.args) == sorted(paths or [str(pytester.path)])


def test_a_mistyped_resume_mode_after_a_space_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_one=ONE_ROW)
    result = pytester.runpytest_subprocess("--eval-experiment=x", "--eval-resume", "pased")
    line = usage_error(result)
    assert line == (
        "ERROR: evalrows: --eval-resume='pased': not a valid value; "
        "valid values: passed, finished, off"
    )


def test_the_resume_ini_key_and_env_var_still_work(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\neval_resume = finished\n")
    assert resolve(pytester.parseconfig("--eval-experiment=x"), {}).resume == "finished"
    pytester.makeini("[pytest]\n")
    environ = {"EVALROWS_RESUME": "finished"}
    assert resolve(pytester.parseconfig("--eval-experiment=x"), environ).resume == "finished"
    config = pytester.parseconfig("--eval-experiment=x", "--eval-resume", "tests/")
    assert resolve(config, environ).resume == "passed"  # the flag wins


def test_fail_under_gathers_every_flag_the_ini_lines_or_the_env_commas(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = pytester.parseconfig(
        "--eval-experiment=x", "--eval-fail-under", "pass=0.9", "--eval-fail-under=exact=0.5"
    )
    assert resolve(config, {}).fail_under == (("exact", 0.5), ("pass", 0.9))
    pytester.makeini("[pytest]\neval_fail_under =\n    pass=0.8\n    tone=0.25\n")
    config = pytester.parseconfig("--eval-experiment=x")
    assert resolve(config, {}).fail_under == (("pass", 0.8), ("tone", 0.25))
    config = pytester.parseconfig("--eval-experiment=x", "-c", "/dev/null")
    found = resolve(config, {"EVALROWS_FAIL_UNDER": "pass=0.7, exact=1"})
    assert found.fail_under == (("exact", 1.0), ("pass", 0.7))
    assert (found.trials, found.report, found.baseline, found.max_regressions) == (
        1,
        "full",
        None,
        None,
    )


# -- concurrency: how many cases run at once, recording or not ----------------------------

CONCURRENCY_RULE = "valid values: a whole number, 1 or more"
GROUP_RULE = "is not NAME=N with N a whole number of at least 1 (e.g. openai=8)"


@pytest.mark.parametrize(
    ("args", "ini", "env", "message"),
    [
        pytest.param(
            ["--eval-concurrency=0"],
            "",
            {},
            f"--eval-concurrency='0': {CONCURRENCY_RULE}",
            id="zero-flag",
        ),
        pytest.param(
            [],
            "",
            {"EVALROWS_CONCURRENCY": "-1"},
            f"env var EVALROWS_CONCURRENCY='-1': {CONCURRENCY_RULE}",
            id="negative-env",
        ),
        pytest.param(
            [],
            "eval_concurrency = x",
            {},
            f"ini key eval_concurrency='x': {CONCURRENCY_RULE}",
            id="word-ini",
        ),
        pytest.param(
            ["--eval-concurrency-limit=openai"],
            "",
            {},
            f"--eval-concurrency-limit='openai': 'openai' {GROUP_RULE}",
            id="no-limit-flag",
        ),
        pytest.param(
            [],
            "",
            {"EVALROWS_CONCURRENCY_LIMIT": "openai=0"},
            f"env var EVALROWS_CONCURRENCY_LIMIT='openai=0': 'openai=0' {GROUP_RULE}",
            id="zero-limit-env",
        ),
        pytest.param(
            [],
            "eval_concurrency_limit = =3",
            {},
            f"ini key eval_concurrency_limit='=3': '=3' {GROUP_RULE}",
            id="no-name-ini",
        ),
        pytest.param(
            [],
            "",
            {"EVALROWS_CONCURRENCY_LIMIT": "a=1,a=2"},
            "env var EVALROWS_CONCURRENCY_LIMIT='a=1,a=2': group 'a' is given a limit twice; "
            "give each group one NAME=N",
            id="one-group-twice",
        ),
    ],
)
def test_a_bad_concurrency_is_a_usage_error_also_when_not_recording(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    ini: str,
    env: dict[str, str],
    message: str,
) -> None:
    # Concurrency is about running the cases, so no --eval-experiment is needed to be told.
    monkeypatch.delenv("EVALROWS_EXPERIMENT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(
        test_never="""
        import pathlib

        def test_never():
            pathlib.Path("ran").write_text("ran")
        """
    )

    result = pytester.runpytest_subprocess(*args)

    assert usage_error(result) == f"ERROR: evalrows: {message}"
    assert not (pytester.path / "ran").exists()


@pytest.mark.parametrize(
    ("flag", "ini", "env", "expected"),
    [
        (None, None, "3", 3),
        (None, "2", "3", 2),
        ("4", "2", "3", 4),
        ("4", None, None, 4),
        (None, None, "", 1),  # an empty env var is unset
        (None, None, None, 1),
    ],
)
def test_precedence_of_the_concurrency(
    pytester: pytest.Pytester, flag: str | None, ini: str | None, env: str | None, expected: int
) -> None:
    if ini is not None:
        pytester.makeini(f"[pytest]\neval_concurrency = {ini}\n")
    args = [f"--eval-concurrency={flag}"] if flag is not None else []
    environ = {"EVALROWS_CONCURRENCY": env} if env is not None else {}

    settings = resolve(pytester.parseconfig(*args), environ)

    assert settings.concurrency == expected
    assert settings.recording is False


@pytest.mark.parametrize(
    ("flag", "ini", "env", "expected"),
    [
        (None, None, "env=3", (("env", 3),)),
        (None, "ini=2", "env=3", (("ini", 2),)),
        ("flag=4", "ini=2", "env=3", (("flag", 4),)),
        ("flag=4", None, None, (("flag", 4),)),
        (None, None, None, ()),
    ],
)
def test_precedence_of_the_concurrency_limits(
    pytester: pytest.Pytester,
    flag: str | None,
    ini: str | None,
    env: str | None,
    expected: tuple[tuple[str, int], ...],
) -> None:
    if ini is not None:
        pytester.makeini(f"[pytest]\neval_concurrency_limit = {ini}\n")
    args = [f"--eval-concurrency-limit={flag}"] if flag is not None else []
    environ = {"EVALROWS_CONCURRENCY_LIMIT": env} if env is not None else {}

    settings = resolve(pytester.parseconfig(*args), environ)

    # The winning source's groups only: the sources are not merged.
    assert settings.concurrency_limits == expected


def test_concurrency_limits_gather_every_flag_the_ini_lines_or_the_env_commas(
    pytester: pytest.Pytester,
) -> None:
    config = pytester.parseconfig(
        "--eval-concurrency-limit", "openai=8", "--eval-concurrency-limit=anthropic=2"
    )
    assert resolve(config, {}).concurrency_limits == (("anthropic", 2), ("openai", 8))
    pytester.makeini("[pytest]\neval_concurrency_limit =\n    slow = 1\n    judge=16\n")
    config = pytester.parseconfig()
    assert resolve(config, {}).concurrency_limits == (("judge", 16), ("slow", 1))
    config = pytester.parseconfig("-c", "/dev/null")
    found = resolve(config, {"EVALROWS_CONCURRENCY_LIMIT": "openai=8, local model=1,"})
    assert found.concurrency_limits == (("local model", 1), ("openai", 8))
    assert found.concurrency == 1
