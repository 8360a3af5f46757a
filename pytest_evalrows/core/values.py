"""Values a test logs: JSON-safe copies and checked scores.

Light on purpose: the plugin imports this even when recording is off. Imports no pytest.

How a logged value is stored (``json_value``), element by element, so that a container stays a
container whatever it holds:

- ``str``, ``int``, ``float``, ``bool`` and ``None`` as they are; NaN and infinities as the
  strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``; an int too long for Python's decimal
  conversion (over 4,300 digits by default) as ``"<int of N bits>"``.
- dicts (any mapping) as objects: a key that is not text becomes text the way ``json.dumps``
  writes it (``1`` → ``"1"``, ``True`` → ``"true"``, ``None`` → ``"null"``), a bytes key its
  Python repr (``"b'\\xff'"``), any other key its stored form (or that form's JSON text).
- lists and tuples as arrays; sets as arrays sorted by their members' JSON, so a set is stored
  the same in every process.
- bytes (``bytes``, ``bytearray``, ``memoryview``) as an object that says they were bytes:
  ``{"$bytes": "utf-8", "text": "…"}`` when they are valid UTF-8,
  ``{"$bytes": "base64", "data": "…"}`` otherwise.
- numpy and the like, without importing them: an object with a ``tolist()`` method (arrays,
  numpy scalars, tensors) as what it returns, a number-like scalar with ``item()`` likewise.
- dataclasses and pydantic models as objects of their fields; enums as their values; dates,
  times, UUIDs, decimals and paths as pydantic writes them in JSON.
- functions as ``"<function module.qualname>"``; anything else as its ``repr``, with memory
  addresses (`` at 0x7f…``) removed, so that an unchanged case is stored, and hashed, the same
  in every session. Iterators are never consumed: they are stored as their repr.
- a reference back to a container that holds it as ``"<cycle: list>"`` (or ``dict``…), a
  container nested deeper than 100 levels as ``"<cut: nested deeper than 100>"``.

A field larger than ``MAX_FIELD_BYTES`` of JSON is cut down and keeps its shape: text is cut and
ends with ``"<cut: N more characters>"``; a list keeps its first items (large ones cut, small ones
whole) and ends with ``"<cut: N more items>"``; a dict keeps its keys and cuts its largest
values, and only when the keys alone do not fit does it keep its first ones and add
``"<cut>": "<cut: N more keys>"``. ``json_value`` then also returns the field's original size,
which the row keeps in ``metadata.truncated``.

Text that UTF-8 cannot encode (lone surrogates: bytes a program decoded with
``surrogateescape``, as ``os`` does for file names and ``subprocess`` output may) is stored
escaped, the same way everywhere a row or span takes text from a test (``storable_text``):

- a ``surrogateescape``'d byte (U+DC80 to U+DCFF) becomes ``\\x`` and two hex digits, so
  ``b"caf\\xe9".decode("utf-8", "surrogateescape")`` is stored as the text ``caf\\xe9``;
- any other lone surrogate becomes ``\\u`` and four hex digits (``\\ud800``);
- a high surrogate followed by a low one is the character they encode together.

The escapes are plain text: a stored ``\\xe9`` cannot be told from one the test logged as such.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import math
import numbers
import operator
import re
import types
from collections.abc import Iterable, Iterator, Mapping
from json.encoder import encode_basestring  # the C one when available
from typing import Any

from ..errors import InvalidScoreError

# A logged field larger than this (as JSON text) is cut down and the row says so.
MAX_FIELD_BYTES = 1_000_000
# Shorter text cannot reach the limit: a character is at most six bytes of JSON ("\u0000").
_SHORT_TEXT = MAX_FIELD_BYTES // 6
# Deeper containers are not walked: the walk must not exhaust the stack of the test's thread.
_MAX_DEPTH = 100
# Ints this long always have a decimal form; longer ones are checked against Python's limit.
_PLAIN_INT_BITS = 1_000
# When cutting: a text, list or dict can always be cut to this (its marker fits) ...
_CUT_FLOOR = 64
# ... and list items up to this size are kept whole or dropped, never cut to scraps.
_ITEM_FLOOR = 1_024

_SURROGATES = re.compile("[\ud800-\udbff][\udc00-\udfff]|[\ud800-\udfff]")
# Memory addresses in reprs (`<object at 0x7f..>`, mocks' `id='1401...'`) change every session.
_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+| id='\d+'")
# Measures (exactly) what the size bound cannot rule out: compact JSON, as the limit counts it.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def storable_text(text: str) -> str:
    """``text`` as UTF-8 can store it: lone surrogates escaped (see the module's docstring)."""
    # Runs per logged string: ASCII and valid text return at C speed.
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub(_escape_surrogate, text)
    return text


def _escape_surrogate(match: re.Match[str]) -> str:
    found = match.group()
    if len(found) == 2:
        return found.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    code = ord(found)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def json_value(value: Any) -> tuple[Any, int | None]:
    """A faithful JSON-safe copy of ``value`` (in the forms the module's docstring lists), and
    the size of its JSON when it was over ``MAX_FIELD_BYTES`` and had to be cut. Never raises:
    a logged value must not change a test's outcome.
    """
    # Runs for every logged value on the test's thread: the common kinds return first.
    kind = type(value)
    if value is None or kind is bool:
        return value, None
    if kind is int and value.bit_length() <= _PLAIN_INT_BITS:
        return value, None
    if kind is float and math.isfinite(value):
        return value, None
    if kind is str and len(value) < _SHORT_TEXT:
        safe = storable_text(value)
        if safe is value:
            return value, None
        value = safe  # escapes are longer than what they replace: measured below
    try:
        return _json_value(value)
    except Exception as exc:  # MemoryError, a stack already nearly full: never the test's fault
        return f"<{type(value).__name__} object; could not be stored: {type(exc).__name__}>", None


def _json_value(value: Any) -> tuple[Any, int | None]:
    walk = _Walk()
    plain = walk.plain(value, 0)
    # A bound on the JSON size saves encoding what cannot be over the limit (nearly everything).
    if 6 * walk.chars + 27 * (walk.nodes + 1) <= MAX_FIELD_BYTES:
        return plain, None
    text = _ENCODER.encode(plain)
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    return (plain, None) if size <= MAX_FIELD_BYTES else (_cut(plain), size)


# Ints in this range take at most 20 digits and a sign; others are looked at closer.
_LOW_INT = -(2**63)
_HIGH_INT = 2**64


class _Walk:
    """Makes a value plain JSON types, element by element, and bounds the size of its JSON.

    The bound: six bytes per character of text (``"\\u0000"``), and 27 per value or key
    besides (a float's 24 characters and a comma; quotes, a colon, brackets). ``chars``
    counts every character of text the copy holds, ``nodes`` every value and key.
    """

    __slots__ = ("chars", "nodes", "path")

    def __init__(self) -> None:
        self.path: set[int] = set()  # the containers above the current value: cycles
        self.chars = 0
        self.nodes = 0

    def plain(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            if not value.isascii():
                value = storable_text(value)
            self.chars += len(value)
            return value
        if kind is int:
            return value if _LOW_INT <= value <= _HIGH_INT else self.big_int(value)
        if value is None or kind is bool:
            return value
        if kind is float:
            return value if value - value == 0.0 else _nonfinite(value)  # NaN, ±inf: not 0
        if kind is dict or kind is list or kind is tuple:
            return self.container(value, depth)
        try:
            result = self.other(value, depth)
        except Exception:  # a property, tolist() or serializer that raises: this element only
            result = repr_text(value)
        if type(result) is str:
            self.chars += len(result)
        return result

    def big_int(self, value: int) -> int | str:
        bits = value.bit_length()
        if bits > _PLAIN_INT_BITS:
            try:
                int.__repr__(value)  # what the JSON encoder calls: over Python's limit it raises
            except ValueError:
                text = f"<int of {bits} bits>"
                self.chars += len(text)
                return text
        self.chars += bits // 3 + 2  # its digits and sign
        return value

    def container(self, value: Any, depth: int) -> Any:
        """A dict, list, tuple, set or other mapping: its elements, each made plain."""
        if depth >= _MAX_DEPTH:
            return self.marker(f"<cut: nested deeper than {_MAX_DEPTH}>")
        seen = id(value)
        if seen in self.path:
            return self.marker(f"<cycle: {type(value).__name__}>")
        self.path.add(seen)
        depth += 1
        plain, container = self.plain, self.container
        chars = 0
        # Elements that are plain already are copied in the loops: a call per element costs.
        try:
            # The leaf cases below are written out twice (dict values, list items) on purpose:
            # a helper call per element would cost every logged container its time.
            if type(value) is dict or isinstance(value, Mapping):
                self.nodes += 2 * len(value)
                copy: dict[str, Any] = {}
                for key, item in value.items():
                    if type(key) is str and key.isascii():
                        chars += len(key)
                    else:
                        key = self.key(key, depth)
                    kind = type(item)
                    if kind is str:
                        if not item.isascii():
                            item = storable_text(item)
                        chars += len(item)
                    elif kind is int:
                        if not _LOW_INT <= item <= _HIGH_INT:
                            item = self.big_int(item)
                    elif kind is float:
                        if item - item != 0.0:
                            item = _nonfinite(item)
                    elif kind is dict or kind is list:
                        item = container(item, depth)
                    elif item is not None and kind is not bool:
                        item = plain(item, depth)
                    copy[key] = item
                return copy
            self.nodes += len(value)
            items: list[Any] = []
            append = items.append
            for item in value:
                kind = type(item)
                if kind is str:
                    if not item.isascii():
                        item = storable_text(item)
                    chars += len(item)
                elif kind is int:
                    if not _LOW_INT <= item <= _HIGH_INT:
                        item = self.big_int(item)
                elif kind is float:
                    if item - item != 0.0:
                        item = _nonfinite(item)
                elif kind is dict or kind is list:
                    item = container(item, depth)
                elif item is not None and kind is not bool:
                    item = plain(item, depth)
                append(item)
            if isinstance(value, (set, frozenset)):
                items.sort(key=_canonical)  # iteration order of a set changes between processes
            return items
        finally:
            self.chars += chars
            self.path.discard(seen)

    def marker(self, text: str) -> str:
        self.chars += len(text)
        return text

    def key(self, key: Any, depth: int) -> str:
        """A dict key as text, the way ``json.dumps`` writes keys where it can."""
        kind = type(key)
        if kind is str:
            text = storable_text(key)
        elif key is None:
            text = "null"
        elif kind is bool:
            text = "true" if key else "false"
        elif isinstance(key, (bytes, bytearray)):
            text = repr_text(key)  # text, and not the same key as the str it may decode to
        else:
            plain = self.plain(key, depth)
            text = plain if type(plain) is str else _canonical(plain)
        return self.marker(text)

    def other(self, value: Any, depth: int) -> Any:
        """Anything but the exact plain kinds. What is text here is counted by ``plain``."""
        kind = type(value)
        # Subclasses of the plain kinds (IntEnum, numpy.float64, namedtuple, OrderedDict...).
        if isinstance(value, str):
            return storable_text(str.__str__(value))
        if isinstance(value, int):
            return self.big_int(int(value))
        if isinstance(value, float):
            number = float(value)
            return number if math.isfinite(number) else _nonfinite(number)
        if isinstance(value, (Mapping, list, tuple, set, frozenset)):
            return self.container(value, depth)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.container(_bytes(value), depth)
        if isinstance(value, enum.Enum):
            return self.plain(value.value, depth + 1)
        if getattr(kind, "__dataclass_fields__", None) is not None and not isinstance(value, type):
            if id(value) in self.path:
                return f"<cycle: {kind.__name__}>"
            self.path.add(id(value))
            try:
                fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
                return self.container(fields, depth)
            finally:
                self.path.discard(id(value))
        if callable(getattr(kind, "model_dump", None)) and hasattr(kind, "__pydantic_serializer__"):
            # Python mode keeps bytes and sets, so that they are stored as everywhere else.
            return self.plain(value.model_dump(warnings=False), depth + 1)
        if callable(getattr(kind, "tolist", None)):  # numpy arrays and scalars, tensors, array
            return self.derived(value, value.tolist(), depth)
        if callable(getattr(kind, "item", None)) and _number_like(kind):  # other scalars
            return self.derived(value, value.item(), depth)
        if isinstance(value, Iterator):
            return repr_text(value)  # consuming it would take the values from the test
        # Named, not by their repr: that holds the address, new in every session.
        if isinstance(value, types.FunctionType):
            return f"<function {value.__module__}.{value.__qualname__}>"
        if isinstance(value, types.MethodType):
            function = value.__func__
            name = (
                f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"
            )
            return f"<bound method {name} of {repr_text(value.__self__)}>"
        import pydantic_core  # only paid for by values that need it

        converted = pydantic_core.to_jsonable_python(
            value, fallback=repr_text, inf_nan_mode="strings"
        )
        return self.plain(converted, depth + 1)

    def derived(self, value: Any, result: Any, depth: int) -> Any:
        if type(result) is type(value):  # no nearer to plain values
            return repr_text(value)
        return self.plain(result, depth + 1)


def _nonfinite(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _number_like(kind: type) -> bool:
    return any(hasattr(kind, name) for name in ("__float__", "__index__", "__bool__"))


def _bytes(value: bytes | bytearray | memoryview) -> dict[str, str]:
    data = value.tobytes() if isinstance(value, memoryview) else bytes(value)
    try:
        return {"$bytes": "utf-8", "text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"$bytes": "base64", "data": base64.b64encode(data).decode("ascii")}


def _canonical(plain: Any) -> str:
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a broken __repr__ must not break the row
        return f"<{type(value).__name__} object; repr failed: {type(exc).__name__}>"


def repr_text(value: Any) -> str:
    """``repr(value)`` as stored: without memory addresses, escaped for UTF-8; never raises."""
    return storable_text(_ADDRESS.sub("", _safe_repr(value)))


# -- cutting a field down to the limit, keeping its shape ---------------------------------------


def _cut(plain: Any) -> Any:
    try:
        return _Cutter().cut(plain, MAX_FIELD_BYTES)
    except RecursionError:  # nested deeper than the stack allows: the start of its JSON text
        return _cut_text(_ENCODER.encode(plain), MAX_FIELD_BYTES)


def _text_size(text: str) -> int:
    quoted: str = encode_basestring(text)
    return len(quoted) if quoted.isascii() else len(quoted.encode("utf-8"))


def _count(number: int, noun: str) -> str:
    return f"{number} more {noun}" + ("" if number == 1 else "s")


def _cut_text(text: str, budget: int) -> str:
    """The start of ``text`` and a marker, in at most ``budget`` bytes of JSON."""

    def attempt(keep: int) -> tuple[str, int]:
        cut = text[:keep] + f"<cut: {_count(len(text) - keep, 'character')}>"
        return cut, _text_size(cut) - budget

    keep = len(text) * budget // max(_text_size(text), 1)  # right for evenly wide text
    cut, over = attempt(keep)
    while over > 0 and keep > 0:
        keep = max(0, keep - over)  # every character takes at least one byte
        cut, over = attempt(keep)
    for _ in range(8):  # unevenly wide text: grow while much room is left
        grown = min(len(text), keep + (-over) // 6)  # at most six bytes each: never over
        if over > -_CUT_FLOOR or grown == keep:
            break
        keep = grown
        cut, over = attempt(keep)
    return cut


class _Cutter:
    """Cuts plain values to a budget of JSON bytes, largest parts first."""

    def __init__(self) -> None:
        self._sizes: dict[int, int] = {}  # containers' JSON sizes, by id (they outlive the cut)

    def size(self, value: Any) -> int:
        kind = type(value)
        if kind is str:
            return _text_size(value)
        if kind is dict or kind is list:
            known = self._sizes.get(id(value))
            if known is None:
                if not value:
                    known = 2
                elif kind is dict:  # braces, a colon per key, commas between
                    known = 1 + 2 * len(value)
                    known += sum(_text_size(k) + self.size(v) for k, v in value.items())
                else:  # brackets, commas between
                    known = 1 + len(value) + sum(self.size(item) for item in value)
                self._sizes[id(value)] = known
            return known
        if value is None or value is True:
            return 4
        if value is False:
            return 5
        if kind is int:
            return len(int.__repr__(value))
        return len(float.__repr__(value))

    def cut(self, value: Any, budget: int) -> Any:
        if self.size(value) <= budget:
            return value
        kind = type(value)
        if kind is str:
            return _cut_text(value, budget)
        if kind is list:
            return self._cut_list(value, budget)
        if kind is dict:
            return self._cut_dict(value, budget)
        return value  # a number: budgets never go below a number's own size

    def _cut_list(self, items: list[Any], budget: int) -> list[Any]:
        marker = len(f'"<cut: {_count(len(items), "item")}>"') + 1
        shares = self._shares(((0, item) for item in items), len(items), budget, marker)
        result = [self.cut(item, share) for item, share in zip(items, shares, strict=False)]
        if len(shares) < len(items):
            result.append(f"<cut: {_count(len(items) - len(shares), 'item')}>")
        return result

    def _cut_dict(self, value: dict[str, Any], budget: int) -> dict[str, Any]:
        marker = len(f'"<cut>":"<cut: {_count(len(value), "key")}>"') + 1
        parts = [(_text_size(key) + 1, item) for key, item in value.items()]
        # Every key, if their values can be cut that far; else the first keys, whole values.
        shares = self._shares(parts, len(parts), budget, marker, _CUT_FLOOR)
        if len(shares) < len(parts):
            shares = self._shares(parts, len(parts), budget, marker)
        result = {
            key: self.cut(value[key], share) for key, share in zip(value, shares, strict=False)
        }
        if len(shares) < len(value):
            result["<cut>"] = f"<cut: {_count(len(value) - len(shares), 'key')}>"
        return result

    def _shares(
        self,
        parts: Iterable[tuple[int, Any]],
        count: int,
        budget: int,
        marker: int,
        floor: int = _ITEM_FLOOR,
    ) -> list[int]:
        """Budgets for the first of ``count`` parts (a key's overhead and a value) that fit
        in ``budget`` with the brackets, commas and a ``marker`` of the rest, each at least
        at its floor: text, lists and dicts can be cut to ``floor``, numbers cannot."""
        room = budget - 2 - marker
        sizes: list[int] = []
        floors: list[int] = []
        used = overheads = 0
        for overhead, item in parts:
            size = self.size(item)
            least = min(size, floor) if type(item) in (str, list, dict) else size
            cost = overhead + least + (1 if sizes else 0)
            if used + cost > room:
                break
            used += cost
            overheads += overhead
            sizes.append(size)
            floors.append(least)
        if len(sizes) == count:  # nothing dropped: no marker
            room += marker
        return _share(sizes, floors, room - overheads - max(len(sizes) - 1, 0))


def _share(sizes: list[int], floors: list[int], room: int) -> list[int]:
    """Budgets for parts of these sizes within ``room``: parts under an even share keep their
    size, the larger ones share the rest equally, and none goes under its floor (the floors
    fit: the caller kept only as many parts as they allow)."""
    if sum(sizes) <= room:
        return sizes
    fixed = sum(size for size, floor in zip(sizes, floors, strict=True) if size <= floor)
    large = [(size, floor) for size, floor in zip(sizes, floors, strict=True) if size > floor]
    low, high = 0, max(size for size, _ in large)
    while low < high:  # the largest cap under which everything fits
        cap = (low + high + 1) // 2
        if fixed + sum(max(floor, min(size, cap)) for size, floor in large) <= room:
            low = cap
        else:
            high = cap - 1
    return [max(floor, min(size, low)) for size, floor in zip(sizes, floors, strict=True)]


# -- scores ---------------------------------------------------------------------------------------


def check_score(name: object, value: object) -> float:
    """A score as stored: a finite number in [0, 1] under a non-empty string name.

    Any real number or bool-like scalar counts: ``bool``, ``int``, ``float``, ``Fraction``,
    ``Decimal``, numpy's numbers and ``numpy.bool_`` (through ``item()``, ``__index__`` or
    ``__float__``). Text, ``None`` and arrays (even of one element) do not.
    """
    __tracebackhide__ = True
    if not isinstance(name, str) or not name:
        raise InvalidScoreError(f"a score name must be a non-empty string, got {_short(name)}")
    number = _score_number(value)
    if number is None:
        raise InvalidScoreError(
            f"score {name!r} must be a number in [0, 1], got {type(value).__name__} {_short(value)}"
        )
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise InvalidScoreError(
            f"score {name!r} must be a finite number in [0, 1], got {_short(value)}"
        )
    return number


def _score_number(value: object) -> float | None:
    try:
        # bool is allowed on purpose: score("exact", answer == expected) is the common case.
        if isinstance(value, numbers.Real):
            return float(value)
        if value is None or isinstance(value, (str, bytes, bytearray, complex)):
            return None
        if getattr(value, "ndim", 0):  # an array is not a score
            return None
        kind = type(value)
        if callable(getattr(kind, "item", None)) and _number_like(kind):
            scalar = value.item()  # type: ignore[attr-defined]  # numpy.bool_ -> bool
            return float(scalar) if isinstance(scalar, numbers.Real) else None
        if hasattr(kind, "__index__"):
            return float(operator.index(value))  # type: ignore[arg-type]
        if hasattr(kind, "__float__"):
            return float(value)  # type: ignore[arg-type]
    except Exception:  # a conversion that raises (or warns, under -W error): not a number
        return None
    return None


def _short(value: object) -> str:
    text = _safe_repr(value)
    return text if len(text) <= 200 else text[:200] + "..."
