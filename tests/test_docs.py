"""The README is the front door: every command and every setting is documented there."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pytest_evalrows.cli import build_parser
from pytest_evalrows.settings import OPTIONS

README = (Path(__file__).parent.parent / "README.md").read_text()


def _commands() -> list[str]:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(subparsers.choices)


@pytest.mark.parametrize("command", _commands())
def test_every_command_is_in_the_readme(command: str) -> None:
    assert f"`evalrows {command}" in README


@pytest.mark.parametrize("option", OPTIONS, ids=[option.name for option in OPTIONS])
def test_every_setting_is_in_the_configuration_table(option: object) -> None:
    from pytest_evalrows.settings import Option

    assert isinstance(option, Option)
    rows = [line for line in README.splitlines() if line.startswith(f"| `{option.flag}")]
    assert len(rows) == 1, f"{option.flag} has no row in the README's configuration table"
    assert f"`{option.ini}`" in rows[0]
    assert f"`{option.env}`" in rows[0]


def test_the_readme_commands_are_the_ci_commands() -> None:
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]"' in README
    assert 'pip install -e ".[dev]"' in ci
    assert "\n```\npytest\n```" in README
    assert "\npytest\n" in ci
