"""Trials: each case of an eval test run N times in one session, each trial a row of its own.

``@pytest.mark.eval(trials=N)`` (or ``--eval-trials N`` for every eval test; the marker wins
for its test) parametrizes the test once more, last, with the trial number: the trial's id
(``trial<k>``) ends the node id (``test_answer[capital-fr-trial2]``), so ``--lf`` and node
selection see each trial. The row id is the case's with ``#<k>`` appended
(``test_answer[capital-fr]#2``), worked out in ``collection``. Registered only when recording:
an inert session runs each case once.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..core.ids import trial_param_id

#: The fixture parametrized with the trial number (the test may ask for it too).
FIXTURE = "eval_trial"
VALID = "a whole number, 1 or more"

#: The node ids of the test functions this session runs trials of (none: rows are planned
#: without a look at trials). Only their ``eval_trial`` is a trial: a test may have a
#: parameter of that name of its own.
trials_used_key = pytest.StashKey[set[str]]()


def is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class Trials:
    """Parametrizes each eval test that has trials with its trial numbers, and stops the
    session on a bad ``trials=`` once collection is done (a usage error raised while pytest
    collects a module would be shown as a collection error with a traceback)."""

    def __init__(self, config: pytest.Config, default: int) -> None:
        self.config = config
        self.default = default
        self.bad: list[str] = []
        self.is_worker = hasattr(config, "workerinput")

    # Last, as pytest-repeat does: the trial's id ends the parameter id, after the test's
    # own parametrize ids.
    @pytest.hookimpl(trylast=True)
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        marker = metafunc.definition.get_closest_marker("eval")
        if marker is None:
            return
        count: Any = marker.kwargs.get("trials", self.default)
        if not is_count(count):
            bad = (
                f"evalrows: @pytest.mark.eval(trials={count!r}) of {metafunc.definition.nodeid}: "
                f"valid values: {VALID}"
            )
            if self.is_worker:
                # A usage error would crash an xdist worker (an INTERNALERROR): a collection
                # error reaches the controller and is shown as its one line.
                raise pytest.Collector.CollectError(bad)
            self.bad.append(bad)
            return
        if count == 1:
            return  # one trial is no trial: node ids and row ids as ever
        if FIXTURE not in metafunc.fixturenames:
            metafunc.fixturenames.append(FIXTURE)
        numbers = range(1, count + 1)
        names = [trial_param_id(k) for k in numbers]
        metafunc.parametrize(FIXTURE, numbers, indirect=True, ids=names)
        self.config.stash.setdefault(trials_used_key, set()).add(metafunc.definition.nodeid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self) -> None:
        if self.bad:
            raise pytest.UsageError(self.bad[0])
