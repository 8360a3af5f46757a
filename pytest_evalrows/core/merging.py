"""Partial updates of stored events (Braintrust's ``_is_merge``) as one pure function.

Pure: imports no pytest, nothing of the package. Every store applies merges with ``merge_body``,
so that a merge means the same in each of them: a store reads the stored body (a row version's
or a span's JSON), merges each patch into it in order, and writes it back.

A patch is a JSON object of three keys, all optional:

- ``values``: an object deep-merged into the body. Where both sides hold an object, the merge
  descends; anything else in ``values`` (a list, a scalar, ``null`` too) replaces what the
  body holds at that place.
- ``replace_paths``: paths (lists of keys from the body's top) below which the merge does not
  descend: the value at such a path replaces the stored one whole (Braintrust's
  ``_merge_paths``).
- ``union_paths``: paths where a list in ``values`` is added to a stored list as a set: the
  stored items first, then the new ones not already there (compared as JSON), unless the path
  is also a replace path (Braintrust merges ``tags`` this way).
- ``delete_paths``: paths whose key is removed from the body after the merge (where it is
  there): a score set to ``null`` leaves the numbers a row keeps.

After the merge, a body with numeric ``metrics.start`` and ``metrics.end`` (a row version)
gets ``metrics.duration`` = end - start, never below 0: the duration follows its times.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, TypeVar

#: The span attribute that holds the event id of a span written by another client (its
#: ``id``, which is not its span id): a merge names a span by it.
EVENT_ID_ATTRIBUTE = "braintrust.id"


class Patch(TypedDict, total=False):
    values: dict[str, Any]
    replace_paths: list[list[str]]
    union_paths: list[list[str]]
    delete_paths: list[list[str]]


Where = TypeVar("Where")


def merge_found(
    found: Mapping[str, tuple[Where, str]], patches: Sequence[tuple[str, Patch]]
) -> list[tuple[Where, dict[str, Any]]]:
    """The bodies a store found for the event ids that ``patches`` name (event id -> where the
    body is, its JSON text), each with its own patches merged in the order given: [(where,
    merged body)]. One body may be named by two ids (a span by its span id and by its event
    id): all its patches go into it, in order."""
    names: dict[Where, set[str]] = {}
    for event_id, (where, _) in found.items():
        names.setdefault(where, set()).add(event_id)
    bodies = dict(found.values())
    return [
        (where, merge_bodies(json.loads(body), [p for i, p in patches if i in names[where]]))
        for where, body in bodies.items()
    ]


def merge_body(body: dict[str, Any], patch: Patch) -> dict[str, Any]:
    """``body`` with ``patch`` merged into it (see the module's docstring); ``body`` itself
    is left as it was."""
    merged = copy.deepcopy(body)
    replace = {tuple(path) for path in patch.get("replace_paths") or ()}
    union = {tuple(path) for path in patch.get("union_paths") or ()} - replace
    _merge_into(merged, patch.get("values") or {}, (), replace, union)
    for path in patch.get("delete_paths") or ():
        _delete(merged, path)
    metrics = merged.get("metrics")
    if isinstance(metrics, dict):
        start, end = _number(metrics.get("start")), _number(metrics.get("end"))
        if start is not None and end is not None:
            metrics["duration"] = max(0.0, end - start)
    return merged


def merge_bodies(body: dict[str, Any], patches: Sequence[Patch]) -> dict[str, Any]:
    """Every patch merged in order."""
    for patch in patches:
        body = merge_body(body, patch)
    return body


def _merge_into(
    target: dict[str, Any],
    values: dict[str, Any],
    path: tuple[str, ...],
    replace: set[tuple[str, ...]],
    union: set[tuple[str, ...]],
) -> None:
    for key, new in values.items():
        here = (*path, key)
        old = target.get(key)
        if here in union and isinstance(old, list) and isinstance(new, list):
            seen = {_identity(item) for item in old}
            combined = list(old)
            for item in new:
                if _identity(item) not in seen:
                    seen.add(_identity(item))
                    combined.append(copy.deepcopy(item))
            target[key] = combined
        elif isinstance(old, dict) and isinstance(new, dict) and here not in replace:
            _merge_into(old, new, here, replace, union)
        else:
            target[key] = copy.deepcopy(new)


def _delete(body: dict[str, Any], path: Sequence[str]) -> None:
    parent: Any = body
    for key in path[:-1]:
        parent = parent.get(key) if isinstance(parent, dict) else None
    if isinstance(parent, dict) and path:
        parent.pop(path[-1], None)


def _identity(item: Any) -> str:
    return json.dumps(item, sort_keys=True)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
