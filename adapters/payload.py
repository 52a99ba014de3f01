"""Job payloads decoded for display, never executed.

RQ and Arq store pickles; Celery, Dramatiq and Arq (optionally) store JSON or
msgpack, often wrapped in zlib or base64. This module peels those layers and
turns what is inside into plain display values, which ``render`` shows as text
and ``to_jsonable`` as JSON. Pickles are read by ``pickles.read_pickle``, which
never unpickles; its names are re-exported here.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import math
import pickletools
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from .pickles import Opaque, PayloadError, PickledGlobal, PickledObject, read_pickle, read_until_stop

__all__ = [
    "Decoded",
    "Opaque",
    "PayloadError",
    "PickledGlobal",
    "PickledObject",
    "decode",
    "read_pickle",
    "render",
    "to_jsonable",
]

_ELLIPSIS = "…"


@dataclass(frozen=True)
class Decoded:
    """A payload as the dashboard shows it."""

    value: Any  # a display value (see render)
    encoding: str  # layers, outermost first, joined with "+": "zlib+pickle", "json", "bytes"
    error: str | None  # None when decoded; else a sentence that starts with the size
    size: int  # bytes of the original input


# --- layers -------------------------------------------------------------------

_MAX_LAYERS = 4
_PROTO_0_1_STARTS = frozenset(op.code.encode("latin-1") for op in pickletools.opcodes if op.proto <= 1)
_JSON_STARTS = frozenset(b'{["-0123456789tfn')
_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}|[A-Za-z0-9_-]+={0,2}")


class _TooLarge(PayloadError):
    """Decoding would need more memory than allowed: stop, do not try other layers."""


def _unzlib(data: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj()
    try:  # max_length bounds the output: a zlib bomb stops here
        out = inflater.decompress(data, max(max_bytes, 1))
    except zlib.error as exc:
        raise PayloadError(f"not zlib data ({exc})") from exc
    if not inflater.eof:
        if inflater.unconsumed_tail or len(out) >= max_bytes:
            raise _TooLarge(f"decompresses to more than {max_bytes} bytes, too large to decode")
        raise PayloadError("truncated zlib stream")
    return out


def _unbase64(data: bytes) -> bytes:
    text = data.strip()
    if len(text) < 8 or len(text) % 4 or not _BASE64.fullmatch(text):
        raise PayloadError("not base64")
    try:
        return base64.b64decode(text, altchars=b"-_" if re.search(rb"[-_]", text) else None, validate=True)
    except binascii.Error as exc:
        raise PayloadError(f"not base64 ({exc})") from exc


def _unjson(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # also UnicodeDecodeError and too-long ints
        raise PayloadError(f"not JSON ({exc})") from exc


def _unmsgpack(data: bytes, *, containers_only: bool = False) -> Any:
    try:  # unpackb caps the lengths a header may claim at len(data): no huge preallocation
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            ext_hook=lambda code, ext: Opaque(f"msgpack ext type {code}", len(ext)),
        )
    except Exception as exc:  # a C parser fed hostile bytes: any failure means "not msgpack"
        raise PayloadError(f"not msgpack ({exc})") from exc
    if containers_only and not isinstance(value, (dict, list)):
        raise PayloadError("a msgpack scalar")  # nearly any bytes start with one
    return value


def _untext(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("not UTF-8 text") from exc


_Peeled = tuple[Any, list[str], "str | None"]  # value, layer names, error


def _peel(data: bytes, max_bytes: int, depth: int = 0, structured_only: bool = False) -> _Peeled | None:
    """Detect the outermost layer of ``data``, decode it and what it wraps.

    With ``structured_only`` (inside base64, which plain words can pass for), answer
    None unless a zlib, pickle, JSON or msgpack layer is found.
    """
    nested = depth < _MAX_LAYERS
    if nested and data[:1] == b"\x78" and data[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
        try:
            inner = _unzlib(data, max_bytes)
        except _TooLarge as exc:
            return Opaque("too large to decode", len(data)), ["zlib"], str(exc)
        except PayloadError:
            pass  # "x^..." text, say: try the other layers
        else:
            value, layers, error = _peel(inner, max_bytes, depth + 1)
            return value, ["zlib", *layers], error
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        try:  # a protocol header says pickle: its failure is the answer
            return read_pickle(data), ["pickle"], None
        except PayloadError as exc:
            return Opaque("not decodable", len(data)), ["pickle"], f"not decodable (pickle layer: {exc})"
    if data.endswith(b".") and data[:1] in _PROTO_0_1_STARTS:
        try:  # protocols 0 and 1 have no header: accept only a pickle that is the whole input
            value, stop = read_until_stop(data, 1_000_000)
            if stop == len(data) - 1:
                return value, ["pickle"], None
        except PayloadError:
            pass
    first = data.lstrip()[:1]
    if first and first[0] in _JSON_STARTS:
        try:
            return _unjson(data), ["json"], None
        except PayloadError:
            pass
    try:
        return _unmsgpack(data, containers_only=True), ["msgpack"], None
    except PayloadError:
        pass
    if nested:
        try:
            inner = _unbase64(data)
        except PayloadError:
            pass
        else:
            found = _peel(inner, max_bytes, depth + 1, structured_only=True)
            if found is not None:
                return found[0], ["base64", *found[1]], found[2]
    if structured_only:
        return None
    try:
        return _untext(data), ["text"], None
    except PayloadError:
        return Opaque("not decodable", len(data)), ["bytes"], "not decodable"


def _apply(data: bytes, layers: Sequence[str], max_bytes: int) -> _Peeled:
    """Decode exactly the layers named, outermost first."""
    readers = {
        "zlib": lambda chunk: _unzlib(chunk, max_bytes),
        "base64": _unbase64,
        "pickle": read_pickle,
        "json": _unjson,
        "msgpack": _unmsgpack,
        "text": _untext,
    }
    value: Any = data
    for name in layers:
        if name not in readers:
            return Opaque("not decodable", len(data)), list(layers), f"{name} layer: no such layer"
        if not isinstance(value, bytes):
            return value, list(layers), f"{name} layer: nothing left to decode"
        try:
            value = readers[name](value)
        except PayloadError as exc:
            return Opaque("not decodable", len(value)), list(layers), f"not decodable ({name} layer: {exc})"
    return value, list(layers), None


def decode(
    data: bytes | str | None,
    *,
    layers: Sequence[str] | None = None,
    max_bytes: int = 16 * 1024 * 1024,
) -> Decoded:
    """Peel zlib / base64 / pickle / JSON / msgpack layers. Never raises (returns Decoded with error set)."""
    if data is None:
        return Decoded(None, "none", None, 0)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    elif isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    elif not isinstance(data, bytes):
        return Decoded(None, "none", f"cannot decode a {type(data).__name__}", 0)
    size = len(data)
    if size > max_bytes:
        return Decoded(Opaque("too large to decode", size), "bytes", f"{size} bytes, too large to decode", size)
    try:
        if layers is None:
            value, names, error = _peel(data, max_bytes)  # type: ignore[misc]  # never None here
        else:
            value, names, error = _apply(data, layers, max_bytes)
    except Exception as exc:  # a bug here must not turn a job page into a 500
        return Decoded(Opaque("not decodable", size), "bytes", f"{size} bytes, not decodable ({exc!r})", size)
    return Decoded(value, "+".join(names) or "bytes", None if error is None else f"{size} bytes, {error}", size)


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
