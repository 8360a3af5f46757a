"""Set a case aside after its setup, so that the next case can be set up while its body runs.

pytest keeps one stack of set-up nodes (the session's ``SetupState``) and, for each fixture
definition, one cached value with its finalizers: built for one item at a time. Parking a set-up
case takes its entry off that stack and the cached values and finalizers of its function-scoped
fixtures off their definitions; unparking puts them back just before its teardown, so pytest's
own teardown runs them as if the case had been the only one. Higher-scoped fixtures stay where
they are, shared as usual.

These are pytest's private attributes, read here and nowhere else: ``problem`` says what is
missing when a pytest version has them no more, and the session then runs its cases one at a
time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

__all__ = ["Parked", "Parking", "problem", "set_up_key"]

# The function-scoped fixture definitions each case's setup ran, as they ran: one a fixture
# reaches through request.getfixturevalue (an overridden one above all) is known nowhere else.
set_up_key = pytest.StashKey[list[Any]]()

_Finalizers = list[Callable[[], object]]


def problem(session: pytest.Session) -> str | None:
    """Why cases cannot be parked in this pytest, or None when they can."""
    state = getattr(session, "_setupstate", None)
    if not isinstance(getattr(state, "stack", None), dict):
        return "pytest keeps no SetupState stack this plugin knows"
    for name in ("addfinalizer", "teardown_exact", "setup"):
        if not callable(getattr(state, name, None)):
            return f"pytest's SetupState has no {name}()"
    probe = pytest.FixtureDef.__init__
    if "cached_result" not in probe.__code__.co_names or "_finalizers" not in (
        probe.__code__.co_names
    ):
        return "pytest's FixtureDef keeps no cached_result and _finalizers"
    return None


@dataclass
class Parked:
    """What a parked case took off pytest's shared state."""

    # The item's entry on the setup stack: its finalizers (a fixture's teardown, the ones
    # its body adds through request.addfinalizer) and a setup error.
    entry: tuple[_Finalizers, Any] | None
    # (fixture definition, its cached result, its finalizers) of each function-scoped fixture.
    fixtures: list[tuple[Any, Any, _Finalizers]] = field(default_factory=list)


class Parking:
    """The cases set aside between their setup and their teardown."""

    def __init__(self, session: pytest.Session) -> None:
        self._state: Any = session._setupstate
        self.parked: dict[pytest.Item, Parked] = {}

    def start(self) -> None:
        """From now on a finalizer a parked case adds (``request.addfinalizer`` in its body)
        joins its parked entry, as it would join its entry on the stack."""
        self._state.addfinalizer = self._addfinalizer

    def stop(self) -> None:
        self._state.__dict__.pop("addfinalizer", None)

    def _addfinalizer(self, finalizer: Callable[[], object], node: Any) -> None:
        parked = self.parked.get(node)
        if parked is not None and parked.entry is not None:
            parked.entry[0].append(finalizer)
            return
        type(self._state).addfinalizer(self._state, finalizer, node)

    def park(self, item: pytest.Item) -> None:
        """After the item's setup (whatever its outcome): take it off the shared state."""
        entry = self._state.stack.pop(item, None)
        parked = Parked(entry)
        for fixturedef in _function_fixturedefs(item):
            finalizers = fixturedef._finalizers
            if fixturedef.cached_result is None and not finalizers:
                continue
            parked.fixtures.append((fixturedef, fixturedef.cached_result, list(finalizers)))
            fixturedef.cached_result = None
            finalizers.clear()
        self.parked[item] = parked

    def unpark(self, item: pytest.Item) -> None:
        """Before the item's teardown: put back what ``park`` took, for pytest to tear down."""
        parked = self.parked.pop(item, None)
        if set_up_key in item.stash:  # a rerun's setup records its own
            del item.stash[set_up_key]
        if parked is None:
            return
        for fixturedef, cached, finalizers in parked.fixtures:
            # Every other case is parked now: nothing of theirs is on the definition.
            fixturedef.cached_result = cached
            fixturedef._finalizers[:] = finalizers
        if parked.entry is not None:
            self._state.stack[item] = parked.entry

    def sibling(self, item: pytest.Item) -> pytest.Item | None:
        """A parked case other than ``item``: tearing ``item`` down towards it keeps what the
        two share (module, class) set up."""
        return next((other for other in self.parked if other is not item), None)


def _function_fixturedefs(item: pytest.Item) -> Iterator[Any]:
    """Every function-scoped fixture definition the item's setup may have run: those it
    requested (overridden ones included) and those its request looked up by name."""
    seen: set[int] = set()
    info = getattr(item, "_fixtureinfo", None)
    request = getattr(item, "_request", None)
    groups: list[Any] = list(getattr(info, "name2fixturedefs", {}).values())
    groups.append(list(getattr(request, "_fixture_defs", {}).values()))
    groups.append(item.stash.get(set_up_key, []))
    for group in groups:
        for fixturedef in group:
            if id(fixturedef) in seen or getattr(fixturedef, "scope", None) != "function":
                continue
            seen.add(id(fixturedef))
            if hasattr(fixturedef, "_finalizers"):
                yield fixturedef
