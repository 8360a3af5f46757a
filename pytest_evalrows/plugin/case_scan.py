"""Finding the eval cases the plugin runs itself, once the session's items are known."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

from .case_kinds import CaseKind, case_kind, concurrency_blocker
from .concurrency import CaseRunner, Slots
from .parking import problem
from .settings import Settings

__all__ = ["runner_for"]


def runner_for(
    session: pytest.Session, settings: Settings, tracing: Callable[[], Any]
) -> CaseRunner | None:
    """The runner of the session's async eval cases and concurrent ones, or None when it has
    none. Looking costs one check per item when concurrency is 1."""
    overlap = settings.concurrency > 1
    kinds: dict[pytest.Item, CaseKind] = {}
    for item in session.items:
        if not overlap and not inspect.iscoroutinefunction(getattr(item, "obj", None)):
            continue
        kind = case_kind(item)
        if kind is not None:
            kinds[item] = kind
    if not kinds:
        return None
    config = session.config
    if overlap and any(kind.concurrent for kind in kinds.values()):
        why = concurrency_blocker(config) or problem(session)
        if why is not None:
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(
                    f"evalrows: --eval-concurrency {settings.concurrency} is not used with "
                    f"{why}: eval cases run one at a time"
                )
            overlap = False

    def on_overlap(overlapping: bool) -> None:
        # While cases overlap, a span started without a row in its context is nobody's.
        found = tracing()
        if found is not None:
            found.processor.concurrent = overlapping

    return CaseRunner(
        config,
        kinds,
        slots=Slots(settings.concurrency, dict(settings.concurrency_limits)),
        overlap=overlap,
        on_overlap=on_overlap,
    )
