"""The display values decoded payloads are made of, and how they are shown.

A decoded payload is plain data (numbers, text, bytes, lists, dicts, dates)
plus three values of our own: ``PickledGlobal`` (a class or function a pickle
names), ``PickledObject`` (an object a pickle would construct) and ``Opaque``
(what could not or would not be decoded, with its size). ``render`` shows any
of them as one line of text within a budget, ``to_jsonable`` as JSON;
``args_preview`` is the short text of a call's arguments the lists show.
Nothing here imports or calls anything named in the data.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_ELLIPSIS = "…"


class PayloadError(ValueError):
    """Raised by read_pickle / the layer readers when data is not what it claims."""


@dataclass(frozen=True)
class PickledGlobal:
    """A class or function named in a pickle; never imported."""

    name: str  # "module.qualname"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class PickledObject:
    """An object a pickle would construct; never constructed.

    ``args`` holds the constructor arguments, followed by the items a list, dict
    or set subclass would receive (APPENDS, SETITEMS, ADDITEMS); ``state`` is
    what BUILD would set.
    """

    cls: str  # "module.qualname" of the callable or class
    args: tuple
    kwargs: dict = field(default_factory=dict)
    state: Any = None

    def __hash__(self) -> int:
        # Pickles use objects as dict keys and set members. The state is left out:
        # BUILD may set it after the object became a key (see _complete).
        try:
            return hash((self.cls, self.args))
        except TypeError:  # a list or dict among the arguments
            return hash(self.cls)

    def __str__(self) -> str:
        return render(self)


@dataclass(frozen=True)
class Opaque:
    """Something we could not or would not decode."""

    reason: str
    size: int  # bytes

    def __str__(self) -> str:
        return f"<{self.size} bytes, {self.reason}>"


# --- display ------------------------------------------------------------------

_RENDER_DEPTH = 8
_JSON_ITEMS = 10_000
_JSON_DEPTH = 20
_JSON_TEXT = 10_000  # longest text made for an object, bytes or a dict key
_JS_SAFE_INT = 2**53  # larger ints lose digits in a browser: send them as text


class _Full(Exception):
    """The render budget is spent: unwinds the walk, which keeps render O(limit)."""


class _Text:
    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.room = limit

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.room -= len(text)
        if self.room < 0:
            raise _Full


def render(value: Any, *, limit: int = 200) -> str:
    """A Python-repr-like one-line text of a display value, truncated with '…' to at most `limit` characters."""
    limit = max(limit, 1)
    out = _Text(limit)
    try:
        _render(value, out, 0, set())
    except _Full:
        pass
    text = "".join(out.parts)
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS


def _render(value: Any, out: _Text, depth: int, active: set[int]) -> None:
    if value is None or isinstance(value, (bool, float, complex)):
        out.write(repr(value))
    elif isinstance(value, int):
        bits = value.bit_length()  # str() of a huge int is slow, and refused past 4300 digits
        out.write(repr(value) if bits <= min(4 * out.room + 64, 12_000) else f"<int of {bits} bits>")
    elif isinstance(value, (str, bytes, bytearray)):
        out.write(repr(value[: out.room + 1]))  # the slice keeps a 100 MB string cheap
    elif isinstance(value, (PickledGlobal, Opaque)):
        out.write(str(value))
    elif isinstance(value, (datetime.date, datetime.time, datetime.timedelta)):
        out.write(_date_text(value, out.room))
    elif isinstance(value, (PickledObject, list, tuple, dict, set, frozenset)):
        _render_container(value, out, depth, active)
    else:  # not a display value (a msgpack Timestamp, say)
        out.write(repr(value)[: out.room + 1])


def _render_container(value: Any, out: _Text, depth: int, active: set[int]) -> None:
    if isinstance(value, PickledObject):
        opener, closer = f"{value.cls[: out.room + 1]}(", ")"
        entries: Any = _object_entries(value)
    elif isinstance(value, dict):
        opener, closer, entries = "{", "}", ((k, ": ", v) for k, v in value.items())
    else:
        opener, closer = _brackets(value)
        entries = ((None, "", item) for item in value)
    if depth >= _RENDER_DEPTH or id(value) in active:  # too deep, or a cycle
        out.write(f"{opener}{_ELLIPSIS}{closer}")
        return
    active.add(id(value))
    try:
        out.write(opener)
        for i, (key, separator, item) in enumerate(entries):
            if i:
                out.write(", ")
            if separator == "=" and isinstance(key, str):
                out.write(key[: out.room + 1] + "=")
            elif separator:
                _render(key, out, depth + 1, active)
                out.write(separator)
            _render(item, out, depth + 1, active)
        out.write(closer)
    finally:
        active.discard(id(value))


def _date_text(value: datetime.date | datetime.time | datetime.timedelta, room: int) -> str:
    """Python's repr, but an aware value's zone by its name: tzinfo=UTC, tzinfo=UTC+02:00."""
    if isinstance(value, (datetime.datetime, datetime.time)) and value.tzinfo is not None:
        naive = repr(value.replace(tzinfo=None))
        return f"{naive[:-1]}, tzinfo={str(value.tzinfo)[: room + 1]})"  # a zone's name can be long: cut first
    return repr(value)


def _brackets(value: list | tuple | set | frozenset) -> tuple[str, str]:
    if isinstance(value, list):
        return "[", "]"
    if isinstance(value, tuple):
        return "(", ",)" if len(value) == 1 else ")"
    if isinstance(value, frozenset):
        return ("frozenset({", "})") if value else ("frozenset(", ")")
    return ("{", "}") if value else ("set(", ")")


def _object_entries(obj: PickledObject) -> Any:
    yield from ((None, "", arg) for arg in obj.args)
    yield from ((k, "=", v) for k, v in obj.kwargs.items())
    state = obj.state
    if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
        dicts = [s for s in state if s]  # (__dict__, __slots__ values)
    elif isinstance(state, dict):
        dicts = [state]
    else:
        dicts = []
        if state is not None:
            yield None, "", state
    for attributes in dicts:
        yield from ((k, "=", v) for k, v in attributes.items())


def to_jsonable(value: Any) -> Any:
    """A JSON-safe copy of a display value.

    PickledObject/PickledGlobal/Opaque/bytes/sets become strings or lists; tuples
    lists; dict keys strings; dates and times ISO 8601 text. Ints beyond 2**53 and
    NaN/inf become strings too.
    """
    return _Jsonable().convert(value, 0)


class _Jsonable:
    """One conversion: at most _JSON_ITEMS values, _JSON_DEPTH levels, no cycles."""

    def __init__(self) -> None:
        self.left = _JSON_ITEMS
        self.active: set[int] = set()

    def convert(self, value: Any, depth: int) -> Any:
        self.left -= 1
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return value if abs(value) <= _JS_SAFE_INT else render(value, limit=_JSON_TEXT)
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)  # JSON has no NaN or inf
        if isinstance(value, PickledGlobal):
            return value.name
        if isinstance(value, (datetime.date, datetime.time)):
            return value.isoformat()
        if not isinstance(value, (list, tuple, set, frozenset, dict)):
            return render(value, limit=_JSON_TEXT)  # objects, Opaque, bytes, complex, timedeltas
        if depth >= _JSON_DEPTH or id(value) in self.active:
            return _ELLIPSIS
        self.active.add(id(value))
        try:
            if isinstance(value, dict):
                result = {}
                for key, item in value.items():
                    if self.left <= 0:
                        result[_ELLIPSIS] = _ELLIPSIS
                        break
                    result[_json_key(key)] = self.convert(item, depth + 1)
                return result
            items = []
            for item in value:
                if self.left <= 0:
                    items.append(_ELLIPSIS)
                    break
                items.append(self.convert(item, depth + 1))
            return items
        finally:
            self.active.discard(id(value))


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, (datetime.date, datetime.time)):
        return key.isoformat()
    return render(key, limit=_JSON_TEXT)


def args_preview(args: Sequence[Any], kwargs: dict[str, Any], limit: int = 160) -> str:
    """``1, 'x', to='a@b'`` cut to ``limit`` characters."""
    items = [("", value) for value in args] + [(f"{key}=", value) for key, value in kwargs.items()]
    parts: list[str] = []
    budget = limit
    for prefix, value in items:
        if budget <= 0:
            break
        text = prefix + render(value, limit=budget)
        parts.append(text)
        budget -= len(text) + 2
    preview = ", ".join(parts)
    return preview if len(preview) <= limit else preview[: limit - 1] + "…"
