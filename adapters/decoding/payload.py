"""Job payloads decoded for display, never executed.

RQ and Arq store pickles; Celery, Dramatiq and Arq (optionally) store JSON or
msgpack, often wrapped in zlib or base64. This module peels those layers and
turns what is inside into plain display values, which ``values.render`` shows as
text and ``values.to_jsonable`` as JSON. Pickles are read by
``pickles.read_pickle``, which never unpickles. The names callers need are
re-exported here.
"""

from __future__ import annotations

import base64
import binascii
import json
import pickletools
import re
import time
import zlib
from contextvars import ContextVar, Token
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from .pickles import read_pickle, read_until_stop
from .values import Opaque, PayloadError, PickledGlobal, PickledObject, args_preview, render, to_jsonable

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
    "args_preview",
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


# The time left for decoding in this request (a contextvar: per request, and carried into the
# threads that read backends for it). 50 crafted 254 KB pickles cost 7.7 s of CPU per page before.
_DEADLINE: ContextVar[float | None] = ContextVar("queuewatch_decode_deadline", default=None)


def start_time_box(seconds: float) -> Token[float | None]:
    """From now, ``decode`` answers "not decoded" once ``seconds`` have passed (a page's budget)."""
    return _DEADLINE.set(time.monotonic() + seconds)


def end_time_box(token: Token[float | None]) -> None:
    _DEADLINE.reset(token)


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
    deadline = _DEADLINE.get()
    if deadline is not None and time.monotonic() > deadline:
        return Decoded(Opaque("not decoded: this page's decoding time is spent", size), "bytes",
                       f"{size} bytes, not decoded: this page spent its decoding time (reload, or open the job)", size)  # fmt: skip
    try:
        if layers is None:
            value, names, error = _peel(data, max_bytes)  # type: ignore[misc]  # never None here
        else:
            value, names, error = _apply(data, layers, max_bytes)
    except Exception as exc:  # a bug here must not turn a job page into a 500
        return Decoded(Opaque("not decodable", size), "bytes", f"{size} bytes, not decodable ({exc!r})", size)
    return Decoded(value, "+".join(names) or "bytes", None if error is None else f"{size} bytes, {error}", size)


