"""Working out each collected eval item's row: its id, input and checks on the whole set."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ..core import ids
from ..core.records import RowState
from ..core.row import RowPlan
from ..core.values import json_value
from ..errors import EvalrowsWarning
from .settings import settings_key
from .trials import FIXTURE as TRIAL_FIXTURE
from .trials import trials_used_key

plan_key = pytest.StashKey[RowPlan]()


def plan_items(items: Sequence[pytest.Item], anchor: Path, config: pytest.Config) -> list[RowPlan]:
    """Give every eval item its ``RowPlan`` (in ``item.stash``), and check the whole set.

    Two items with one row id stop the session; positional parameter ids warn once per test
    function.
    """
    plans: list[RowPlan] = []
    owners: dict[str, pytest.Item] = {}
    # Resolving paths touches the file system: once per file, not once per case.
    relative: dict[Path, str] = {}
    warned: set[Any] = set()
    # Asked once: calling a hook nobody implements still costs per item.
    row_id_hook = config.hook.pytest_evalrows_row_id if _implemented(config) else None
    # Looked at only when some test runs trials: other sessions pay nothing per row for them.
    trials = config.stash.get(trials_used_key, None)
    markers = _Markers()
    judges = _Judges()
    default_trials = config.stash[settings_key].trials
    for item in items:
        marker, names = markers.of(item)
        if marker is None:
            continue
        plan, positional = _plan(item, marker, names, anchor, row_id_hook, relative, trials)
        if "judges" in marker.kwargs:
            plan.judges = judges.of(item, marker.kwargs["judges"])
        other = owners.get(plan.row_id)
        if other is not None:
            raise pytest.UsageError(
                f"evalrows: {other.nodeid} and {item.nodeid} map to one row id "
                f"{plan.row_id!r}; give the cases distinct ids or keys"
            )
        owners[plan.row_id] = item
        item.stash[plan_key] = plan
        plans.append(plan)
        if positional:
            base = _base(item, plan.nodeid)
            if base not in warned:
                warned.add(base)
                _warn_positional(item, base, positional)
        asked = marker.kwargs.get("trials", default_trials)
        # A case's own pytest.param(marks=...) come after the test was parametrized.
        for mark in getattr(getattr(item, "callspec", None), "marks", ()):
            if mark.name == "eval" and "trials" in mark.kwargs:
                asked = mark.kwargs["trials"]
        if not plan.trial and isinstance(asked, int) and asked > 1:
            base = _base(item, plan.nodeid)
            if ("trials", base) not in warned:
                warned.add(("trials", base))
                _warn_untried(item, base, asked)
    return plans


def _implemented(config: pytest.Config) -> bool:
    return bool(config.hook.pytest_evalrows_row_id.get_hookimpls())


class _Markers:
    """An item's closest ``eval`` marker and the names of all its markers, as
    ``get_closest_marker`` and ``iter_markers`` find them, with each parent (class, module,
    package) read once for all of its cases rather than once per case."""

    def __init__(self) -> None:
        # By id: a node's hash is its node id, which pytest builds anew on each call.
        self._parents: dict[int, tuple[pytest.Mark | None, frozenset[str]]] = {}

    def of(self, node: Any) -> tuple[pytest.Mark | None, list[str]]:
        marker, names = self._of(node, cache=False)
        return marker, sorted(names - {"parametrize"})

    def _of(self, node: Any, *, cache: bool) -> tuple[pytest.Mark | None, frozenset[str]]:
        if cache and id(node) in self._parents:
            return self._parents[id(node)]
        own = node.own_markers
        marker = next((mark for mark in own if mark.name == "eval"), None)
        names = frozenset(mark.name for mark in own)
        if node.parent is not None:
            above, above_names = self._of(node.parent, cache=True)
            marker = marker or above
            names |= above_names
        if cache:  # parents live as long as the session: their ids stay theirs
            self._parents[id(node)] = (marker, names)
        return marker, names


class _Judges:
    """The marker's judges, checked once for all the cases of a test (they share the list)."""

    def __init__(self) -> None:
        # By id, with the list itself kept so that its id stays its own.
        self._checked: dict[int, tuple[object, tuple[tuple[str, Any], ...]]] = {}

    def of(self, item: pytest.Item, judges: object) -> tuple[tuple[str, Any], ...]:
        known = self._checked.get(id(judges))
        if known is not None and known[0] is judges:
            return known[1]
        # Loaded only for a suite with judges: a session without them pays nothing.
        from .judging import checked_judges

        checked = checked_judges(item.nodeid, judges)
        self._checked[id(judges)] = (judges, checked)
        return checked


def _plan(
    item: pytest.Item,
    marker: pytest.Mark,
    markers: list[str],
    anchor: Path,
    row_id_hook: Any,
    relative: dict[Path, str],
    trials: set[str] | None,
) -> tuple[RowPlan, list[str]]:
    path = relative.get(item.path)
    if path is None:
        path = relative[item.path] = ids.normalize_nodeid("", item.path, anchor)
    _, sep, rest = item.nodeid.partition("::")
    nodeid = path + sep + rest
    callspec = getattr(item, "callspec", None)
    params: dict[str, Any] = dict(callspec.params) if callspec is not None else {}
    # A trial's number is no parameter of its case: the case's input, hash and keys hold
    # without it, and its row id is the case's with "#<k>".
    trial: int = params.pop(TRIAL_FIXTURE, 0) if trials and _test_of(item) in trials else 0
    input_value, cut = json_value(params)
    key = marker.kwargs.get("key", marker.args[0] if marker.args else None)
    positional: list[str] = []
    if key is None:
        row_id = nodeid
        if callspec is not None:
            if trial:
                row_id = _case_nodeid(item, nodeid, callspec.id, trial)
            positional = ids.positional_params(callspec.id, params, callspec.indices)
    else:
        row_id = ids.keyed_row_id(_base(item, nodeid), _key_value(item, key, params))
    chosen = row_id_hook(item=item, default=row_id) if row_id_hook is not None else None
    if chosen is not None and chosen != row_id:
        if not isinstance(chosen, str) or not chosen:
            raise pytest.UsageError(
                f"evalrows: pytest_evalrows_row_id returned {chosen!r} for {item.nodeid}; "
                "a row id must be a non-empty string"
            )
        row_id, positional = chosen, []
    plan = RowPlan(
        row_id=row_id,
        nodeid=nodeid,
        input=input_value,
        params_hash=ids.params_hash(input_value),
        markers=markers,
        input_truncated=cut,
    )
    if trial:
        plan.trial, plan.case_row_id, plan.row_id = trial, row_id, ids.trial_row_id(row_id, trial)
    return plan, positional


def _test_of(item: pytest.Item) -> str:
    """The node id of the test function an item is a case of (as its definition's)."""
    parent = item.parent.nodeid if item.parent is not None else ""
    name = getattr(item, "originalname", item.name)
    return f"{parent}::{name}" if parent else name


def _case_nodeid(item: pytest.Item, nodeid: str, callspec_id: str, trial: int) -> str:
    """The trial's node id without its trial's parameter id: its case's."""
    name = item.name
    case = ids.name_without_trial(name, getattr(item, "originalname", name), callspec_id, trial)
    if case is None or not nodeid.endswith(name):
        raise pytest.UsageError(
            f"evalrows: cannot tell the case of the trial {item.nodeid}: its trial's id "
            f"{ids.trial_param_id(trial)!r} does not end its parameter id (another plugin "
            "parametrizes every test after evalrows, such as pytest-repeat's --count)"
        )
    return nodeid[: len(nodeid) - len(name)] + case


def _key_value(item: pytest.Item, key: Any, params: Mapping[str, Any]) -> Any:
    try:
        value = key(dict(params)) if callable(key) else ids.key_from_params(params, str(key))
    except Exception as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise pytest.UsageError(
            f"evalrows: cannot key the row of {item.nodeid} by {key!r}: {reason}"
        ) from None
    safe, _ = json_value(value)
    if safe is None or safe == "":
        raise pytest.UsageError(
            f"evalrows: the key {key!r} of {item.nodeid} is empty; every case needs a key"
        )
    return safe


def _base(item: pytest.Item, nodeid: str) -> str:
    return ids.function_base(nodeid, item.name, getattr(item, "originalname", item.name))


def _warn_untried(item: pytest.Item, base: str, asked: int) -> None:
    message = (
        f"evalrows: trials={asked} cannot take effect on {base}, which runs once: set trials= "
        "on the test function, its class or module (a pytest.param's marks come too late, and "
        "a unittest TestCase's methods are not parametrized)"
    )
    filename, lineno = str(item.path), (item.location[1] or 0) + 1
    with _warnings_as_usage_errors():
        warnings.warn_explicit(EvalrowsWarning(message), EvalrowsWarning, filename, lineno)


def _warn_positional(item: pytest.Item, base: str, names: list[str]) -> None:
    listed = ", ".join(names)
    message = (
        f"evalrows: the rows of {base} are keyed by positional parameter ids ({listed}); "
        "reordering the dataset would re-map them. Give each case an id "
        "(parametrize ids=... or pytest.param(..., id=...)) or key the rows by the case's "
        'data: @pytest.mark.eval(key="id")'
    )
    filename, lineno = str(item.path), (item.location[1] or 0) + 1
    with _warnings_as_usage_errors():
        warnings.warn_explicit(EvalrowsWarning(message), EvalrowsWarning, filename, lineno)


@contextmanager
def _warnings_as_usage_errors() -> Iterator[None]:
    """Under ``filterwarnings = error`` a warning raised during collection would crash pytest
    (INTERNALERROR): stop the session with the warning's text instead."""
    try:
        yield
    except EvalrowsWarning as warning:
        raise pytest.UsageError(str(warning)) from None


def warn_changed_params(plans: Sequence[RowPlan], stored: Mapping[str, RowState]) -> None:
    """One warning naming the rows whose parameters differ from their stored latest version."""
    changed = [
        plan.row_id
        for plan in plans
        if (state := stored.get(plan.row_id)) is not None
        and state.params_hash is not None
        and state.params_hash != plan.params_hash
    ]
    if not changed:
        return
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    message = (
        f"evalrows: the parameters of {len(changed)} row(s) changed since their stored "
        f"version: {shown}. Their next version will hold a different case; if the dataset "
        "was reordered, key the rows by the case's data"
    )
    _warn_without_stopping(EvalrowsWarning(message))


def _warn_without_stopping(warning: EvalrowsWarning) -> None:
    """Issue ``warning`` under the user's filters, except that it is never raised.

    A changed case is news about the data, not a reason to run no test: raised under
    ``-W error`` or ``filterwarnings = error`` it would stop the session at collection (a
    usage error, "no tests ran"), every session, for as long as the rows are stored. Where
    the filters would raise it, it is shown as pytest shows any warning instead (in the
    warnings summary); an ``ignore`` filter still silences it.
    """
    try:
        warnings.warn(warning, stacklevel=2)
    except EvalrowsWarning:
        with warnings.catch_warnings():  # restores the user's filters on the way out
            warnings.simplefilter("always", EvalrowsWarning)
            warnings.warn(warning, stacklevel=2)


RESUMED_STATUSES = {
    "passed": frozenset({"passed", "xfailed", "xpassed"}),
    "finished": frozenset({"passed", "xfailed", "xpassed", "failed", "skipped"}),
}


def resume_filter(
    items: list[pytest.Item], states: Mapping[str, RowState], mode: str
) -> tuple[list[pytest.Item], list[pytest.Item]]:
    """Split items into (to run, to deselect) by their row's stored status, as read once at
    session start (xdist workers all receive that one read, so they all collect the same)."""
    done = RESUMED_STATUSES[mode]
    keep: list[pytest.Item] = []
    skip: list[pytest.Item] = []
    for item in items:
        plan = item.stash.get(plan_key, None)
        state = states.get(plan.row_id) if plan is not None else None
        (skip if state is not None and state.status in done else keep).append(item)
    return keep, skip
