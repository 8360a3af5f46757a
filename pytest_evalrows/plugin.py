"""The pytest entry point: options, the marker, hook specs, the fixture, and the recorder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from . import hookspecs
from .row import EvalRow
from .settings import add_options, resolve

if TYPE_CHECKING:
    from .recorder import Recorder

recorder_key: pytest.StashKey[Recorder] = pytest.StashKey()

MARKER = (
    "eval(key=None): record each case of this test as a row of the --eval-experiment. "
    "key: a parameter name or a field of the case (or a callable taking the parameters) "
    "whose value identifies the row, instead of the node id."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    settings = resolve(config)
    if not settings.recording or config.option.collectonly:
        return  # inert: nothing imported, opened or written
    from .recorder import Recorder

    recorder = Recorder(config, settings)
    config.stash[recorder_key] = recorder
    config.pluginmanager.register(recorder, "evalrows-recorder")
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        from .xdist import XdistBridge

        config.pluginmanager.register(XdistBridge(recorder), "evalrows-xdist")


@pytest.fixture
def eval_row(request: pytest.FixtureRequest) -> EvalRow:
    """The row of the running eval case: ``eval_row.log(output=..., expected=...)`` and
    ``eval_row.score(name, value)``. Accepts everything and records nothing when recording is
    off or the test is not marked ``eval``."""
    recorder = request.config.stash.get(recorder_key, None)
    if recorder is None:
        return EvalRow()
    from .recorder import draft_key

    return EvalRow(request.node.stash.get(draft_key, None))
