"""Settings: flag > ini key > env var > default, and a clear usage error for every bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import header, rows, usage_error

from pytest_evalrows.settings import resolve
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
    "an experiment name must be 1 to 200 characters with no control characters and not only spaces"
)
ATTEMPT_RULE = (
    "an attempt id must be 1 to 128 characters: letters, digits and . _ : - "
    "(starting with a letter or digit)"
)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param(
            ["--eval-store=postgres://x"],
            {},
            "--eval-store='postgres://x': unknown store scheme 'postgres' in 'postgres://x'; "
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
            "characters with no control characters and not only spaces",
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
