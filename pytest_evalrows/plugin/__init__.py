"""The pytest entry point: options, the marker, hook specs, the fixture, and the recorder."""

from __future__ import annotations

import warnings
from collections.abc import Generator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import pytest

from ..core import ids
from ..core.row import EvalRow
from ..errors import EvalrowsWarning
from . import hookspecs
from .settings import add_options, resolve, settings_key

if TYPE_CHECKING:
    from ..core.judgments import Judgment
    from ..core.row import RowDraft
    from ..store.base import Store
    from ..store.urls import StoreURL
    from .recorder import Recorder

recorder_key: pytest.StashKey[Recorder] = pytest.StashKey()
# Test functions that used ``eval_row`` without the eval marker -> the warning raised as an
# error for them (None when it was only shown).
_unmarked_key = pytest.StashKey[dict[str, EvalrowsWarning | None]]()

MARKER = (
    "eval(key=None): record each case of this test as a row of the --eval-experiment. "
    "key: a parameter name or a field of the case (or a callable taking the parameters) "
    "whose value identifies the row, instead of the node id. judges=[...]: judges (named "
    "callables taking the row's Trace) run on each finished row; their judgments show on "
    "the row as judge:<name> scores. trials=N: run each case N times when recording, each "
    "trial a row of its own (<row id>#<k>; the eval_trial fixture is k), instead of "
    "--eval-trials. concurrent=True: a sync case may run on a thread while others run "
    "(--eval-concurrency; async def cases always may). concurrency_group=NAME: the cases "
    "of a group run at most --eval-concurrency-limit NAME=N at once."
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    settings = resolve(config)
    config.stash[settings_key] = settings
    if not settings.recording:
        return  # inert: nothing imported, opened or written, each case run once
    from .trials import Trials

    # Also under --collect-only: it lists the trials a recording session runs.
    config.pluginmanager.register(Trials(config, settings.trials), "evalrows-trials")
    if config.option.collectonly:
        return
    from .recorder import Recorder

    recorder = Recorder(config, settings)
    config.stash[recorder_key] = recorder
    config.pluginmanager.register(recorder, "evalrows-recorder")
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        from .xdist import XdistBridge

        config.pluginmanager.register(XdistBridge(recorder), "evalrows-xdist")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Eval cases the plugin runs itself (``async def`` ones; with ``--eval-concurrency``
    above 1, sync ones marked ``concurrent=True``) get their runner; other sessions none."""
    config = session.config
    if config.option.collectonly or not session.items:
        return
    from .case_scan import runner_for

    runner = runner_for(session, config.stash[settings_key], lambda: _tracing_of(config))
    if runner is not None:
        for name, plugin in zip(
            ("cases", "cases-inside", "cases-outside"), runner.plugins, strict=True
        ):
            config.pluginmanager.register(plugin, f"evalrows-{name}")


def _tracing_of(config: pytest.Config) -> Any:
    recorder = config.stash.get(recorder_key, None)
    return recorder.tracing if recorder is not None else None


@pytest.hookimpl(wrapper=True)
def pytest_evalrows_make_store(
    config: pytest.Config, url: StoreURL
) -> Generator[None, Store | None, Store | None]:
    store = yield
    if store is not None:
        # The hook's implementer made it and may still read it (a MemoryStore in a test):
        # the session uses it and leaves it open.
        from ..delivery.delivery import lend

        lend(store)
    return store


# The item being set up, in the context its setup runs in (each concurrent case has its own):
# the eval_row fixture reads it rather than requesting ``request``, which pytest builds anew,
# with a signature inspection, for every test that asks for it.
_setting_up: ContextVar[pytest.Item] = ContextVar("evalrows_setting_up")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _setting_up.set(item)


@pytest.fixture
def eval_row() -> EvalRow:
    """The row of the running eval case: ``eval_row.log(output=..., expected=...)``,
    ``eval_row.score(name, value)`` and ``eval_row.judge(judge)``. Accepts everything and
    records nothing when recording is off or the test is not marked ``eval`` (then it warns,
    once per test function)."""
    node = _setting_up.get()
    recorder = node.config.stash.get(recorder_key, None)
    if recorder is None:
        return EvalRow(None, node, _judge_in_test)
    # The key through the recorder: an import statement here would be paid on every row.
    draft = node.stash.get(recorder.draft_key, None)
    if draft is None and node.get_closest_marker("eval") is None:
        _warn_unmarked(node)
    return EvalRow(draft, node, _judge_in_test)


@pytest.fixture
def eval_trial(request: pytest.FixtureRequest) -> int:
    """The number of the running trial of the case, from 1 (always 1 when the test has no
    trials, or recording is off)."""
    trial: int = getattr(request, "param", 1)
    return trial


def _judge_in_test(
    draft: RowDraft | None, item: Any, kept: list[tuple[Any, ...]] | None, judge: Any
) -> Judgment:
    """``eval_row.judge``: the judging modules are loaded by the first test that calls it."""
    __tracebackhide__ = True
    from .judging import judge_in_test

    config: pytest.Config = item.config
    recorder = config.stash.get(recorder_key, None)
    session = recorder.items.session_judging() if recorder is not None and draft else None
    timeout = config.stash[settings_key].judge_timeout
    return judge_in_test(judge, draft=draft, item=item, kept=kept, session=session, timeout=timeout)


def _warn_unmarked(item: pytest.Item) -> None:
    """Say once per test function that its rows go nowhere. Under ``filterwarnings = error``
    every case of the function fails the same way, not only the first one to run."""
    unmarked = item.config.stash.setdefault(_unmarked_key, {})
    name = getattr(item, "originalname", item.name)
    function = ids.function_base(item.nodeid, item.name, name)
    if function in unmarked:
        raised = unmarked[function]
        if raised is not None:
            raise EvalrowsWarning(*raised.args)
        return
    message = (
        f"evalrows: {function} uses eval_row but is not marked @pytest.mark.eval: what it "
        "logs and scores is not recorded. Mark it (or its class or module) with "
        "@pytest.mark.eval to make each of its cases a row"
    )
    unmarked[function] = None
    try:
        warnings.warn_explicit(
            EvalrowsWarning(message), EvalrowsWarning, str(item.path), (item.location[1] or 0) + 1
        )
    except EvalrowsWarning as error:  # turned into an error by a warnings filter
        unmarked[function] = error
        raise
