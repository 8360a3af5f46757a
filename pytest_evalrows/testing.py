"""Helpers for your own tests: capture the rows and spans the pytest sessions you run wrote.

::

    from pytest_evalrows.testing import capture_rows

    def test_a_wrong_answer_is_a_failed_row(pytester):
        pytester.makepyfile(test_math=SUITE)  # an eval suite, as text
        with capture_rows() as captured:
            pytester.runpytest("--eval-experiment=math")  # or runpytest_subprocess
        assert captured.rows["test_math.py::test_math[2+3-5]"].status == "failed"

Inside ``capture_rows()`` every session records into a store of the helper's own, a SQLite
file in a temporary directory, instead of the one its settings name: a session run in this
process (``pytester.runpytest``, ``runpytest_inprocess``) and one run in a subprocess
(``runpytest_subprocess``, xdist workers) alike, since both find it through the environment.
The helper reads that file back and removes it when the block ends.

Loaded as a plugin by those sessions (``PYTEST_PLUGINS``); nothing heavy is imported until a
session records. PYTEST_DONT_REWRITE: the module is already imported when an in-process
session loads it as a plugin.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .core.judgments import Evaluation
    from .core.models import Attempt, RowVersion, SpanRecord
    from .store.base import Store
    from .store.urls import StoreURL

__all__ = ["CapturedRows", "Recorded", "capture_rows"]

#: The store file a session started inside ``capture_rows()`` records into.
CAPTURE_ENV = "PYTEST_EVALROWS_CAPTURE"
_PLUGIN = __name__


@dataclass
class Recorded:
    """What the captured sessions recorded into one experiment."""

    experiment: str
    project: str
    #: The latest version of every row, by row id.
    rows: dict[str, RowVersion] = field(default_factory=dict)
    #: Every version of every row, oldest first, by row id.
    versions: dict[str, list[RowVersion]] = field(default_factory=dict)
    #: Every span kept in the store, rows' root spans included, by start time.
    spans: list[SpanRecord] = field(default_factory=list)
    #: The sessions that recorded, oldest first.
    attempts: list[Attempt] = field(default_factory=list)
    #: The judges' evaluations of the rows (``@pytest.mark.eval(judges=...)``,
    #: ``eval_row.judge``), oldest first.
    evaluations: list[Evaluation] = field(default_factory=list)

    def spans_of(self, row_id: str) -> list[SpanRecord]:
        """The spans kept under one row (those of its latest execution, after clean-up)."""
        return [span for span in self.spans if span.row_id == row_id]


class CapturedRows:
    """What the sessions run inside ``capture_rows()`` recorded, read from its store.

    Inside the block every read goes to the store as it is now; after it, to what the store
    held when the block ended. ``rows``, ``versions``, ``spans``, ``attempts``,
    ``evaluations`` and ``spans_of`` are those of the one experiment recorded (empty when none
    was); when several were, pick one from ``experiments``.
    """

    def __init__(self, path: Path) -> None:
        self.path: Path | None = path
        self._final: dict[str, Recorded] | None = None

    @property
    def experiments(self) -> dict[str, Recorded]:
        """Everything recorded, by experiment name."""
        if self._final is not None:
            return self._final
        assert self.path is not None
        return _read(self.path)

    def _only(self) -> Recorded:
        found = self.experiments
        if len(found) > 1:
            raise LookupError(
                f"the captured sessions recorded {len(found)} experiments "
                f"({', '.join(sorted(found))}): read one from captured.experiments[NAME]"
            )
        if not found:
            return Recorded(experiment="", project="")
        (only,) = found.values()
        return only

    @property
    def rows(self) -> dict[str, RowVersion]:
        return self._only().rows

    @property
    def versions(self) -> dict[str, list[RowVersion]]:
        return self._only().versions

    @property
    def spans(self) -> list[SpanRecord]:
        return self._only().spans

    @property
    def attempts(self) -> list[Attempt]:
        return self._only().attempts

    @property
    def evaluations(self) -> list[Evaluation]:
        return self._only().evaluations

    def spans_of(self, row_id: str) -> list[SpanRecord]:
        return self._only().spans_of(row_id)

    def _close(self) -> None:
        assert self.path is not None
        self._final = _read(self.path)
        self.path = None


@contextmanager
def capture_rows() -> Iterator[CapturedRows]:
    """Capture what the pytest sessions started inside the block record, in this process or
    in its subprocesses. See the module's docstring for an example."""
    directory = Path(tempfile.mkdtemp(prefix="evalrows-capture-"))
    captured = CapturedRows(directory / "capture.db")
    saved = {name: os.environ.get(name) for name in (CAPTURE_ENV, "PYTEST_PLUGINS")}
    plugins = [name for name in (saved["PYTEST_PLUGINS"] or "").split(",") if name.strip()]
    os.environ[CAPTURE_ENV] = str(captured.path)
    os.environ["PYTEST_PLUGINS"] = ",".join(
        plugins if _PLUGIN in (name.strip() for name in plugins) else [*plugins, _PLUGIN]
    )
    try:
        yield captured
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        try:
            captured._close()
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def _read(path: Path) -> dict[str, Recorded]:
    if not path.exists():
        return {}  # no session recorded (yet)
    from .store.sqlite import SQLiteStore

    found: dict[str, Recorded] = {}
    with SQLiteStore(path, create=False) as store:
        for experiment in store.list_experiments():
            rows = store.latest_rows(experiment.id)
            found[experiment.name] = Recorded(
                experiment=experiment.name,
                project=experiment.project,
                rows={row.row_id: row for row in rows},
                versions={row.row_id: store.history(experiment.id, row.row_id) for row in rows},
                spans=store.list_spans(experiment.id),
                attempts=store.list_attempts(experiment.id),
                evaluations=store.list_evaluations(experiment.id),
            )
    return found


# -- the plugin the captured sessions load -------------------------------------------------


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_evalrows_make_store(config: pytest.Config, url: StoreURL) -> Store | None:
    path = os.environ.get(CAPTURE_ENV)
    if not path:
        return None
    from .store.sqlite import SQLiteStore

    store = SQLiteStore(path)
    # Ours to close: the session leaves open a store a hook gave it.
    config.add_cleanup(store.close)
    return store
