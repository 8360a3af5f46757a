"""Pure identity functions: row ids, attempt ids, trace and span ids.

Nothing here imports pytest: the plugin hands in plain strings and values.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import random
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_ATTEMPT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# Values pytest gives readable ids; anything else gets a positional one such as `case0`.
_PRIMITIVE = (str, bytes, int, float, bool, complex, type(None))
# Since pytest 9.1 strings longer than this get positional ids too.
_LONG_STRING = 100


def new_attempt_id() -> str:
    return str(uuid.uuid4())


def is_valid_attempt_id(value: str) -> bool:
    return _ATTEMPT_ID.fullmatch(value) is not None


# Trace and span ids come from a generator of this module's own, seeded by the system: a test
# that seeds ``random`` (pytest-randomly does before every test) cannot make two rows' ids
# alike, and an id costs no system call. A forked child seeds its own.
_ids = random.Random(os.urandom(32))
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_trace_id() -> int:
    """A random 128-bit OpenTelemetry trace id (never 0)."""
    return _ids.getrandbits(128) or 1


def new_span_id() -> int:
    """A random 64-bit OpenTelemetry span id (never 0)."""
    return _ids.getrandbits(64) or 1


def trace_id_hex(trace_id: int) -> str:
    return f"{trace_id:032x}"


def span_id_hex(span_id: int) -> str:
    return f"{span_id:016x}"


def version_id(attempt_id: str, row_id: str, trace_id: int) -> str:
    """The id of one execution's row version (its trace id is new for every execution)."""
    text = f"{attempt_id}\x00{row_id}\x00{trace_id_hex(trace_id)}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def project_anchor(rootpath: Path, has_inifile: bool) -> Path:
    """The directory row ids and the default store are relative to.

    With an ini file pytest's rootdir is stable. Without one it is the common ancestor of the
    arguments, so it moves with the invocation directory; then the nearest enclosing project
    marker is the stable choice, and the rootdir itself the last resort.
    """
    if has_inifile:
        return rootpath
    for directory in (rootpath, *rootpath.parents):
        for marker in (".git", "pyproject.toml", "setup.py", "setup.cfg", "tox.ini", "pytest.ini"):
            if (directory / marker).exists():
                return directory
    return rootpath


def normalize_nodeid(nodeid: str, item_path: Path, anchor: Path) -> str:
    """Rewrite the file part of a node id as a POSIX path relative to ``anchor``.

    Only the first ``::`` is looked at: everything after it (class, function, parameter id,
    which may itself contain ``::`` or ``[``) is kept verbatim.
    """
    _, sep, rest = nodeid.partition("::")
    try:
        relative = item_path.resolve().relative_to(anchor.resolve()).as_posix()
    except ValueError:
        relative = item_path.resolve().as_posix()
    return relative + sep + rest if sep else relative


def function_base(nodeid: str, name: str, originalname: str) -> str:
    """The node id of the test function without its parameter id (``a.py::T::test_x``)."""
    if nodeid.endswith(name):
        return nodeid[: len(nodeid) - len(name)] + originalname
    return nodeid


def keyed_row_id(base: str, key: Any) -> str:
    """Row id from the case's own data: reordering the dataset cannot re-map it."""
    text = key if isinstance(key, str) else canonical_json(key)
    return f"{base}[{text}]"


def trial_param_id(trial: int) -> str:
    """The parameter id of a trial: the last component of its item's parameter id."""
    return f"trial{trial}"


def trial_row_id(case_row_id: str, trial: int) -> str:
    return f"{case_row_id}#{trial}"


def name_without_trial(name: str, originalname: str, callspec_id: str, trial: int) -> str | None:
    """An item's name without its trial (``test_x[a-b-trial2]`` -> ``test_x[a-b]``,
    ``test_x[trial2]`` -> ``test_x``), or None when the trial's id does not end it (a plugin
    parametrized the test after the trials)."""
    own = trial_param_id(trial)
    if name != f"{originalname}[{callspec_id}]":
        return None
    if callspec_id == own:
        return originalname
    if callspec_id.endswith("-" + own):
        return f"{originalname}[{callspec_id[: -len(own) - 1]}]"
    return None


def key_from_params(params: Mapping[str, Any], key: str) -> Any:
    """Find ``key`` among the parametrized values: a parameter of that name, or a field of
    exactly one parameter value (a mapping key or an attribute).
    """
    if key in params:
        return params[key]
    found: list[Any] = []
    for value in params.values():
        if isinstance(value, Mapping) and key in value:
            found.append(value[key])
        elif not isinstance(value, _PRIMITIVE) and hasattr(value, key):
            found.append(getattr(value, key))
    if len(found) == 1:
        return found[0]
    where = "no parameter" if not found else f"{len(found)} parameters"
    raise KeyError(f"{where} of this case has a field {key!r} (parameters: {sorted(params)})")


def positional_params(
    callspec_id: str, params: Mapping[str, Any], indices: Mapping[str, int]
) -> list[str]:
    """Names of parameters whose id pytest generated from their position (``case0``).

    Such ids shift when the dataset is reordered. A parameter counts when its value is of a
    kind pytest cannot name and ``<argname><index>`` stands as a whole component of the id.
    """
    parts = set(callspec_id.split("-"))
    positional = []
    for name, value in params.items():
        if _has_readable_id(value):
            continue
        index = indices.get(name)
        if index is not None and f"{name}{index}" in parts:
            positional.append(name)
    return positional


def _has_readable_id(value: Any) -> bool:
    """Whether pytest names this parameter value by its content rather than its position."""
    if isinstance(value, str):
        return len(value) <= _LONG_STRING
    if isinstance(value, (*_PRIMITIVE, enum.Enum, re.Pattern, type)):
        return True
    return callable(value) and hasattr(value, "__name__")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def params_hash(input_value: Any) -> str:
    """A short digest of a case's JSON-safe parameters, to notice a row whose case changed.

    ``input_value`` is the input as stored (``values.json_value``), which is the same in every
    process for an unchanged case: functions by their qualified names, reprs without memory
    addresses, sets sorted. Keys are sorted here, so their order does not count either.
    """
    return hashlib.sha256(canonical_json(input_value).encode()).hexdigest()[:16]
