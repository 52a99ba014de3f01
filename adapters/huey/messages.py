"""Huey's pickled values read without unpickling: task messages, Error records, revoke markers.

Huey pickles (``pickle.HIGHEST_PROTOCOL``) a ``huey.registry.Message`` namedtuple
per task: ``(id, name, eta, retries, retry_delay, priority, args, kwargs,
on_complete, on_error, expires, expires_resolved)`` in 2.5, plus ``timeout,
chord_config, retry_backoff`` in 3.x; ``eta`` is a naive datetime (UTC unless
the app set ``utc=False``). Its Serializer may gzip (or zlib) the pickle, and
``SignedSerializer`` appends ``b":" + 40 hex``. The priority storages prefix
each queue member with 8 bytes: the enqueue time in microseconds, big-endian.
A failure is ``huey.utils.Error({"error", "retries", "traceback", "task_id"})``;
a revoke marker is ``(revoke_until, revoke_once)``.

Everything is read by ``payload.decode`` (opcodes walked, nothing imported or
called); gzip is inflated here a bounded piece at a time. ``with_eta`` rewrites
a message's eta in place (the same length: no opcode moves) for "enqueue now".
"""

from __future__ import annotations

import ast
import datetime
import gzip
import pickletools
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.payload import PickledObject, args_preview
from queuewatch.adapters.decoding.tracebacks import split_exception
from queuewatch.adapters.errors import Unsupported

PREFIX_BYTES = 8  # a priority queue member's enqueue time
MESSAGE_CLASS = "huey.registry.Message"
ERROR_CLASS = "huey.utils.Error"
FIELDS = ("id", "name", "eta", "retries", "retry_delay", "priority", "args", "kwargs", "on_complete", "on_error",
          "expires", "expires_resolved", "timeout", "chord_config", "retry_backoff")  # fmt: skip
# What huey.revoke_by_id(id) stores (pickle.dumps((None, False), 5)), byte for byte.
REVOKE_FOREVER = b"\x80\x05\x95\x05\x00\x00\x00\x00\x00\x00\x00N\x89\x86\x94."
MAX_DECODE_BYTES = 16 * 1024 * 1024
MESSAGE_LIMIT = 4_000
_SIGNATURE = re.compile(rb"\.:[0-9a-f]{40}\Z")
_ERROR_REPR = re.compile(r"\A([A-Za-z_][\w.]*)\((.*)\)\Z", re.DOTALL)
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"})
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


# --- layers ---------------------------------------------------------------------


def compression(data: bytes) -> str | None:
    """ "gzip" or "zlib" when Huey's Serializer(compression=True) wrote ``data``."""
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:1] == b"\x78" and data[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
        return "zlib"
    return None


def inflate(data: bytes, max_bytes: int, *, partial: bool = False) -> bytes:
    """The gzip or zlib ``data`` inflated, at most ``max_bytes`` of it (a bomb stops there).
    ``partial``: a head is enough (the start of a message), truncation is no error.
    Raises ValueError."""
    kind = compression(data)
    inflater = zlib.decompressobj(31 if kind == "gzip" else 15)
    try:
        out = inflater.decompress(data, max(max_bytes, 1))
    except zlib.error as exc:
        if partial:
            return b""
        raise ValueError(f"not {kind} data ({exc})") from exc
    if not partial and not inflater.eof:
        if inflater.unconsumed_tail or len(out) >= max_bytes:
            raise ValueError(f"{kind} inflates to more than {max_bytes:,} bytes, too large to decode")
        raise ValueError(f"truncated {kind} data")
    return out


def _unwrap(data: bytes, max_bytes: int) -> tuple[bytes, list[str], str | None]:
    layers = []
    kind = compression(data)
    if kind is not None:
        try:
            data = inflate(data, max_bytes)
        except ValueError as exc:
            return b"", [kind], str(exc)
        layers.append(kind)
    if _SIGNATURE.search(data[-42:]):
        layers.append("signed")
        data = data[:-41]
    return data, layers, None


def head_of(data: bytes, prefixed: bool = False) -> bytes:
    """The start of a value as a pickle: the priority prefix dropped, compression undone."""
    if prefixed:
        data = data[PREFIX_BYTES:]
    return inflate(data, 4096, partial=True) if compression(data) else data


# --- task messages ---------------------------------------------------------------


@dataclass(frozen=True)
class HueyMessage:
    """A task message as display values; ``error`` says why it could not be read."""

    size: int
    encoding: str
    error: str | None = None
    id: str | None = None
    name: str | None = None
    eta: datetime.datetime | None = None
    retries: Any = None
    retry_delay: Any = None
    priority: Any = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    others: tuple[tuple[str, Any], ...] = ()  # the further fields that are set
    fields: int = 0
    enqueued_at: datetime.datetime | None = None  # priority queues only

    @property
    def function(self) -> str | None:
        return self.name

    @property
    def preview(self) -> str:
        return self.error if self.error is not None else args_preview(self.args, self.kwargs)

    @property
    def scheduled_for(self) -> datetime.datetime | None:
        """The eta, read as UTC (Huey's default, ``utc=True``)."""
        return self.eta.replace(tzinfo=datetime.timezone.utc) if self.eta is not None else None


def read_message(data: bytes, *, prefixed: bool = False, max_bytes: int = MAX_DECODE_BYTES) -> HueyMessage:
    """A queue or schedule member decoded without running anything. Never raises."""
    enqueued_at = None
    if prefixed and len(data) >= PREFIX_BYTES:
        micros = struct.unpack(">Q", data[:PREFIX_BYTES])[0]
        enqueued_at = _micros_time(micros)
        data = data[PREFIX_BYTES:]
    size = len(data)
    if size > max_bytes:
        return HueyMessage(size, "bytes", f"{size:,} bytes, too large to decode here", enqueued_at=enqueued_at)
    inner, layers, error = _unwrap(data, max_bytes)
    if error is not None:
        return HueyMessage(size, "+".join(layers), f"{size:,} bytes, not decodable ({error})", enqueued_at=enqueued_at)
    decoded = payload.decode(inner, max_bytes=max_bytes)
    encoding = "+".join([*layers, decoded.encoding])
    if decoded.error is not None:
        return HueyMessage(size, encoding, f"{size:,} bytes, {decoded.error.split(', ', 1)[-1]}", enqueued_at=enqueued_at)
    value = decoded.value
    if not (isinstance(value, PickledObject) and value.cls == MESSAGE_CLASS and len(value.args) >= 8):
        return HueyMessage(size, encoding, f"{size:,} bytes of {encoding}, not a Huey task message", enqueued_at=enqueued_at)
    values = dict(zip(FIELDS, value.args))
    task_id, name, eta = values["id"], values["name"], values["eta"]
    args, kwargs = values["args"], values["kwargs"]
    if not isinstance(task_id, str) or not isinstance(name, str):
        return HueyMessage(size, encoding, f"{size:,} bytes, a Huey message without a text id and name",
                           enqueued_at=enqueued_at)  # fmt: skip
    others = tuple((k, values[k]) for k in FIELDS[8:] if values.get(k) not in (None, 0))
    return HueyMessage(
        size=size,
        encoding=encoding,
        id=task_id,
        name=name,
        eta=eta if isinstance(eta, datetime.datetime) and eta.tzinfo is None else None,
        retries=values["retries"],
        retry_delay=values["retry_delay"],
        priority=values["priority"],
        args=tuple(args) if isinstance(args, (list, tuple)) else (args,),
        kwargs={str(k): v for k, v in kwargs.items()} if isinstance(kwargs, dict) else {},
        others=others,
        fields=len(value.args),
        enqueued_at=enqueued_at,
    )


def peek_id(head: bytes) -> str | None:
    """A message's id from its first bytes (``head_of``), walking only its first opcodes:
    the class ``huey.registry.Message``, a MARK, then the id string. None if it is not that."""
    strings: list[Any] = []
    seen_class = False
    try:
        for n, (opcode, arg, _) in enumerate(pickletools.genops(head)):
            name = opcode.name
            if n > 16 or name == "STOP":
                return None
            if name in _STRINGS:
                if seen_class:
                    return arg if isinstance(arg, str) else None
                strings.append(arg)
            elif name == "STACK_GLOBAL":
                seen_class = strings[-2:] == ["huey.registry", "Message"]
                if not seen_class:
                    return None
            elif name == "GLOBAL":
                seen_class = arg == "huey.registry Message"
                if not seen_class:
                    return None
            elif seen_class and name not in ("MARK", "MEMOIZE", "BINPUT", "PUT", "LONG_BINPUT", "FRAME"):
                return None
    except Exception:  # genops reached the end of the head, or garbage: no id to be had
        return None
    return None


def with_eta(data: bytes, eta: datetime.datetime) -> bytes:
    """The message ``data`` (no priority prefix) with its eta set to the naive ``eta``, every
    other byte unchanged. Raises Unsupported when that cannot be done exactly."""
    kind = compression(data)
    inner = data
    if kind is not None:
        try:
            inner = inflate(data, MAX_DECODE_BYTES)
        except ValueError as exc:
            raise Unsupported(f"its message cannot be read ({exc})") from exc
    if _SIGNATURE.search(inner[-42:]):
        raise Unsupported("its message is signed (SignedSerializer): queuewatch does not hold the key to sign it again")
    before = read_message(inner)
    if before.error is not None:
        raise Unsupported(f"its message cannot be read ({before.error})")
    if before.eta is None:
        return data  # no eta: due as soon as it is in the queue
    offset = _eta_offset(inner, before.eta)
    state = struct.pack(">HBBBBB", eta.year, eta.month, eta.day, eta.hour, eta.minute, eta.second) + eta.microsecond.to_bytes(
        3, "big"
    )
    patched = inner[:offset] + state + inner[offset + 10 :]
    after = read_message(patched)
    if after.eta != eta.replace(tzinfo=None) or (after.id, after.name, after.args, after.kwargs, after.others) != (
        before.id, before.name, before.args, before.kwargs, before.others):  # fmt: skip
        raise Unsupported("its eta could not be rewritten exactly")
    if kind == "gzip":
        return gzip.compress(patched, 6)
    if kind == "zlib":
        return zlib.compress(patched, 6)
    return patched


def _eta_offset(data: bytes, eta: datetime.datetime) -> int:
    """Where the eta's 10-byte state starts: the first datetime of the message (id and name,
    before it, are strings), pickled as ``datetime.datetime`` + SHORT_BINBYTES(10)."""
    try:
        for opcode, arg, pos in pickletools.genops(data):
            if opcode.name == "SHORT_BINBYTES" and isinstance(arg, bytes) and len(arg) == 10:
                if _state_time(arg) == eta:
                    return pos + 2  # the opcode and its length byte
                break
            if opcode.name in ("REDUCE", "NEWOBJ", "BINBYTES", "BINBYTES8", "TUPLE"):
                break
    except Exception as exc:
        raise Unsupported(f"its message cannot be walked ({exc})") from exc
    raise Unsupported("its eta is not stored the way Huey's default pickle stores it")


def _state_time(state: bytes) -> datetime.datetime | None:
    try:
        return datetime.datetime((state[0] << 8) | state[1], state[2] & 0x7F, *state[3:7], int.from_bytes(state[7:], "big"))
    except ValueError:
        return None


def _micros_time(micros: int) -> datetime.datetime | None:
    try:
        return _EPOCH + datetime.timedelta(microseconds=micros)
    except OverflowError:
        return None


# --- Error records and revoke markers --------------------------------------------


@dataclass(frozen=True)
class HueyError:
    """An Error record of the result store; ``problem`` says why it could not be read."""

    size: int
    encoding: str
    problem: str | None = None
    error: str | None = None  # repr(exception), or a TaskException's own text
    retries: int | None = None  # retries the task had left when it failed
    traceback: str | None = None
    task_id: str | None = None

    @property
    def described(self) -> tuple[str | None, str | None]:
        """(type, message) of the exception."""
        if self.problem is not None:
            return None, self.problem
        return describe_error(self.error, self.traceback)


def is_error_head(head: bytes) -> bool:
    """Whether a result-store value (its first bytes, ``head_of``) is an Error record."""
    return b"huey.utils" in head[:160] and b"Error" in head[:160]


def read_error(data: bytes, *, max_bytes: int = MAX_DECODE_BYTES) -> HueyError:
    """An Error record, decoded without running anything. Never raises."""
    size = len(data)
    inner, layers, error = _unwrap(data, max_bytes)
    if error is not None:
        return HueyError(size, "+".join(layers), f"{size:,} bytes, not decodable ({error})")
    decoded = payload.decode(inner, max_bytes=max_bytes)
    encoding = "+".join([*layers, decoded.encoding])
    if decoded.error is not None:
        return HueyError(size, encoding, f"{size:,} bytes, {decoded.error.split(', ', 1)[-1]}")
    value = decoded.value
    if not (isinstance(value, PickledObject) and value.cls == ERROR_CLASS and value.args and isinstance(value.args[0], dict)):
        return HueyError(size, encoding, f"{size:,} bytes of {encoding}, not a Huey Error record")
    meta = value.args[0]

    def text(key: str) -> str | None:
        item = meta.get(key)
        return item if isinstance(item, str) or item is None else payload.render(item, limit=MESSAGE_LIMIT)

    retries = meta.get("retries")
    return HueyError(size, encoding, None, text("error"), retries if type(retries) is int else None, text("traceback"),
                     text("task_id"))  # fmt: skip


def describe_error(error: str | None, traceback: str | None) -> tuple[str | None, str | None]:
    """(type, message): from the traceback's last line (Huey 3), else from the exception's repr
    (Huey 2.5 stores ``'NoneType: None'`` as the traceback)."""
    if traceback and "Traceback (most recent call last)" in traceback:
        found = split_exception(traceback)
        if found[0] is not None:
            return found[0], (found[1] or "")[:MESSAGE_LIMIT]
    if not error:
        return None, None
    match = _ERROR_REPR.match(error[: 4 * MESSAGE_LIMIT])
    if match is None:
        return None, error[:MESSAGE_LIMIT]  # a TaskException's own text
    name, inside = match.groups()
    try:
        args = ast.literal_eval(f"({inside},)") if inside.strip() else ()
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return name, inside[:MESSAGE_LIMIT]
    if len(args) == 1:
        message = args[0] if isinstance(args[0], str) else payload.render(args[0], limit=MESSAGE_LIMIT)
    else:
        message = payload.render(args, limit=MESSAGE_LIMIT) if args else ""
    return name, message[:MESSAGE_LIMIT]


@dataclass(frozen=True)
class Revoked:
    """A revoke marker: until when (None: until restored), and whether only once."""

    until: datetime.datetime | None
    once: bool
    problem: str | None = None

    @property
    def text(self) -> str:
        if self.problem is not None:
            return self.problem
        if self.once:
            return "revoked for its next run only"
        if self.until is not None:
            return f"revoked until {self.until.isoformat(sep=' ')} (UTC)"
        return "revoked until restored"


def read_revoke(data: bytes) -> Revoked:
    """A revoke marker ``(revoke_until, revoke_once)``. Never raises."""
    inner, _, error = _unwrap(data, 64 * 1024)
    decoded = payload.decode(inner, max_bytes=64 * 1024) if error is None else None
    value = decoded.value if decoded is not None and decoded.error is None else None
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], bool):
        until = value[0]
        if until is None or (isinstance(until, datetime.datetime) and until.tzinfo is None):
            return Revoked(until, value[1])
    return Revoked(None, False, f"{len(data):,} bytes, not a revoke marker Huey wrote")
