"""The README is the front door: every command and every setting is documented there."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest

from pytest_evalrows.cli import build_parser
from pytest_evalrows.plugin.settings import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _commands() -> list[str]:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(subparsers.choices)


@pytest.mark.parametrize("command", _commands())
def test_every_command_is_in_the_readme(command: str) -> None:
    assert f"`evalrows {command}" in README


@pytest.mark.parametrize("option", OPTIONS, ids=[option.name for option in OPTIONS])
def test_every_setting_is_in_the_configuration_table(option: object) -> None:
    from pytest_evalrows.plugin.settings import Option

    assert isinstance(option, Option)
    # The flag then a space or the closing backquote: --eval-concurrency is not the start of
    # --eval-concurrency-limit's row.
    pattern = re.compile(rf"\| `{re.escape(option.flag)}[ `]")
    rows = [line for line in README.splitlines() if pattern.match(line)]
    assert len(rows) == 1, f"{option.flag} has no row in the README's configuration table"
    assert f"`{option.ini}`" in rows[0]
    assert f"`{option.env}`" in rows[0]


def test_the_readme_commands_are_the_ci_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    setup = (ROOT / "scripts" / "venv.sh").read_text()
    test = (ROOT / "scripts" / "test").read_text()
    demo = (ROOT / "scripts" / "demo").read_text()
    # The two commands of the README, each in a block of its own.
    assert "\n```\nscripts/demo    # " in README
    assert "\nscripts/test    # " in README
    assert "\n```\nscripts/test\n```" in README
    # Both set up the virtual environment with the README's setup command.
    assert 'pip install -e ".[dev]"' in README
    assert 'pip install -e ".[dev]"' in setup
    assert "-m venv" in setup
    for script in (test, demo):
        assert ". scripts/venv.sh" in script
    # The test command runs what CI checks; CI runs it in a fresh virtual environment.
    for command in ("ruff check .", "ruff format --check .", "mypy", 'pytest -n 2 "$@"'):
        assert f"\n{command}\n" in test
    assert "\nrm -rf .venv\nscripts/test\n" in ci
    assert "pytest examples --eval-experiment=demo" in demo
    assert "evalrows rows demo" in demo


def test_every_script_is_executable_and_in_the_readme() -> None:
    for script in ("demo", "test", "screenshots", "postgres"):
        path = ROOT / "scripts" / script
        assert os.access(path, os.X_OK), path
        assert f"scripts/{script}" in README
    assert os.access(ROOT / ".ci" / "run", os.R_OK)


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n#", start + len(title))
    return text[start : end if end != -1 else len(text)]


def test_the_resume_help_and_the_readme_name_what_each_mode_skips(
    pytester: pytest.Pytester,
) -> None:
    from pytest_evalrows.plugin.collection import RESUMED_STATUSES

    shown = " ".join(pytester.runpytest_subprocess("--help").stdout.str().split())
    help_text = shown[shown.index("--eval-resume") : shown.index("--eval-spool")]
    readme = " ".join(_section(README, "### Resume").split())
    for text in (help_text, readme):
        for statuses in RESUMED_STATUSES.values():
            for status in statuses:
                assert re.search(rf"\b{status}\b", text), (status, text)
        assert "finished" in text
    assert "--eval-resume tests/" in help_text
    assert "`pytest --eval-resume tests/` runs `tests/` with resume on" in readme


def test_the_readme_examples_of_checking_your_own_suite_run(pytester: pytest.Pytester) -> None:
    section = _section(README, "### Checking what your own suite records")
    blocks = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2
    pytester.makeconftest('pytest_plugins = ["pytester"]\n')
    pytester.makepyfile(test_readme_examples="\n\n".join(blocks))
    # The examples' own test session records nothing; the sessions they start do.
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)
