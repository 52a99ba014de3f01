"""Job payloads decoded for display, never executed.

RQ and Arq store pickles; Celery, Dramatiq and Arq (optionally) store JSON or
msgpack, often wrapped in zlib or base64. This module peels those layers and
turns what is inside into plain display values. Pickles are never unpickled
(DESIGN.md rule 2): their opcodes are read with ``pickletools.genops`` and the
unpickler's stack machine is simulated, so the classes and functions a pickle
names become ``PickledGlobal`` and ``PickledObject`` values, and nothing named
in the data is ever imported or called.
"""

from __future__ import annotations

import _compat_pickle  # the unpickler's Python 2 -> 3 name table: plain data
import base64
import binascii
import json
import math
import pickletools
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

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


@dataclass(frozen=True)
class Decoded:
    """A payload as the dashboard shows it."""

    value: Any  # a display value (see render)
    encoding: str  # layers, outermost first, joined with "+": "zlib+pickle", "json", "bytes"
    error: str | None  # None when decoded; else a sentence that starts with the size
    size: int  # bytes of the original input


# --- pickles ------------------------------------------------------------------

# Opcodes whose argument, as genops reads it, is already the value they push.
_LITERALS = frozenset(
    "INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT STRING BINSTRING"
    " SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8 UNICODE"
    " SHORT_BINUNICODE BINUNICODE BINUNICODE8".split()
)
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_EMPTY = {"EMPTY_LIST": list, "EMPTY_DICT": dict, "EMPTY_SET": set}
_NOTHING_TO_DO = frozenset({"FRAME", "READONLY_BUFFER"})
_HASH_DEPTH = 100  # deepest tuple accepted as a dict key or set member


def _complete(obj: PickledObject, **fields: Any) -> None:
    # BUILD, APPENDS and SETITEMS reach an object after it was made, possibly
    # through memo references, so the walker fills it in place, as the real
    # unpickler does. Callers only ever see finished, frozen values.
    for name, value in fields.items():
        object.__setattr__(obj, name, value)


def _hash_work(value: Any) -> int:
    return 1 + value.bit_length() // 8192 if isinstance(value, int) else 1  # int hashing reads every digit


def _name_of(func: Any) -> str:
    return func.name if isinstance(func, PickledGlobal) else render(func, limit=80)


class _Walker:
    """The unpickler's stack machine, building display values instead of objects."""

    def __init__(self, size: int) -> None:
        self.stack: list = []
        self.marks: list[list] = []
        self.memo: dict = {}
        self.proto = 0
        # Copies made for nicer display (set(list), bytes from latin-1 text) are
        # paid from this: a real pickle copies each thing once, a hostile one
        # could otherwise REDUCE the same big memo entry again and again.
        self.copy_budget = size
        # CPython hashes a tuple by hashing its items recursively, with no recursion
        # guard and no cache: a key nested 300,000 deep crashes the process, and
        # sub-tuples shared through the memo make hashing exponential. Keys are
        # measured as they are made, and their hashing is paid from this.
        self.hash_budget = 4 * size + 100_000
        self.measured: dict = {}  # id -> (tuple or object, nesting, hashing work), see note()
        self.extras: dict = {}  # (id(obj), kind) -> (obj, items a subclass receives)

    def push(self, value: Any) -> None:
        self.stack.append(value)

    def pop(self) -> Any:
        if not self.stack:
            raise PayloadError("stack underflow")
        return self.stack.pop()

    def top(self) -> Any:
        if not self.stack:
            raise PayloadError("stack underflow")
        return self.stack[-1]

    def pop_many(self, count: int) -> list:
        if len(self.stack) < count:
            raise PayloadError("stack underflow")
        items = self.stack[len(self.stack) - count :]
        del self.stack[len(self.stack) - count :]
        return items

    def pop_mark(self) -> list:
        if not self.marks:
            raise PayloadError("MARK missing")
        items, self.stack = self.stack, self.marks.pop()
        return items

    def global_name(self, module: str, name: str) -> str:
        if self.proto < 3:  # what the unpickler's fix_imports does for Python 2 names
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        return f"{module}.{name}"

    def step(self, name: str, arg: Any) -> None:
        if name in _LITERALS:
            self.push(arg)
        elif name in _CONSTANTS:
            self.push(_CONSTANTS[name])
        elif name in _EMPTY:
            self.push(_EMPTY[name]())
        elif name == "MARK":
            self.marks.append(self.stack)
            self.stack = []
        elif name == "POP":  # with an empty stack, POP discards a MARK
            if self.stack:
                self.stack.pop()
            else:
                self.pop_mark()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            self.push(self.top())
        elif name == "TUPLE":
            self.push(self.note(tuple(self.pop_mark())))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            self.push(self.note(tuple(self.pop_many(int(name[-1])))))
        elif name == "LIST":
            self.push(self.pop_mark())
        elif name == "DICT":
            self.push(self.set_items({}, self.pop_mark()))
        elif name == "FROZENSET":
            self.push(frozenset(self.add_items(set(), self.pop_mark())))
        elif name in ("APPEND", "APPENDS"):
            items = [self.pop()] if name == "APPEND" else self.pop_mark()
            target = self.top()
            if isinstance(target, list):
                target.extend(items)
            elif isinstance(target, PickledObject):
                self.items_of(target, list).extend(items)
            else:
                raise PayloadError(f"{name} to a {type(target).__name__}")
        elif name in ("SETITEM", "SETITEMS"):
            items = self.pop_many(2) if name == "SETITEM" else self.pop_mark()
            self.set_items(self.top(), items)
        elif name == "ADDITEMS":
            items = self.pop_mark()
            self.add_items(self.top(), items)
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if arg not in self.memo:
                raise PayloadError(f"memo key {arg} missing")
            self.push(self.memo[arg])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if arg < 0:
                raise PayloadError("negative memo key")
            self.memo[arg] = self.top()
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = self.top()
        elif name == "GLOBAL":
            module, _, qualname = arg.partition(" ")
            self.push(PickledGlobal(self.global_name(module, qualname)))
        elif name == "STACK_GLOBAL":
            qualname, module = self.pop(), self.pop()
            if not (isinstance(module, str) and isinstance(qualname, str)):
                raise PayloadError("STACK_GLOBAL needs two strings")
            self.push(PickledGlobal(self.global_name(module, qualname)))
        elif name == "REDUCE":
            args = self.pop()
            func = self.pop()
            if not isinstance(args, tuple):
                raise PayloadError("REDUCE arguments are not a tuple")
            self.push(self.reduce(func, args))
        elif name in ("NEWOBJ", "NEWOBJ_EX"):
            kwargs = self.pop() if name == "NEWOBJ_EX" else {}
            args, cls = self.pop(), self.pop()
            if not isinstance(args, tuple) or not isinstance(kwargs, dict):
                raise PayloadError(f"{name} arguments are not a tuple and a dict")
            self.push(self.new_object(_name_of(cls), args, kwargs))
        elif name == "OBJ":
            items = self.pop_mark()
            if not items:
                raise PayloadError("OBJ without a class")
            self.push(self.new_object(_name_of(items[0]), tuple(items[1:])))
        elif name == "INST":
            module, _, qualname = arg.partition(" ")
            self.push(self.new_object(self.global_name(module, qualname), tuple(self.pop_mark())))
        elif name == "BUILD":
            state = self.pop()
            target = self.top()
            if isinstance(target, PickledObject):  # state on builtins has nothing to show
                _complete(target, state=state)
        elif name in ("EXT1", "EXT2", "EXT4"):
            self.push(PickledGlobal(f"copyreg extension {arg}"))
        elif name in ("PERSID", "BINPERSID"):
            pid = arg if name == "PERSID" else self.pop()
            self.push(Opaque("persistent id", len(pid) if isinstance(pid, (str, bytes)) else 0))
        elif name == "NEXT_BUFFER":
            self.push(Opaque("out-of-band buffer", 0))
        elif name == "PROTO":
            self.proto = arg
        elif name not in _NOTHING_TO_DO:
            raise PayloadError(f"unsupported opcode {name}")

    def note(self, value: Any) -> Any:
        """Record the nesting and hashing work of a new tuple or object (see hash_budget)."""
        nesting = work = 1
        for part in value if isinstance(value, tuple) else (value.args,):
            known = self.measured.get(id(part))
            if known is None:
                work += _hash_work(part)
            else:
                nesting = max(nesting, known[1] + 1)
                work += known[2]
        self.measured[id(value)] = (value, nesting, work)
        return value

    def new_object(self, cls: str, args: tuple, kwargs: dict | None = None) -> PickledObject:
        if id(args) not in self.measured:
            self.note(args)
        return self.note(PickledObject(cls, args, dict(kwargs or {})))

    def check_hashable(self, values: Any) -> None:
        for value in values:
            _, nesting, work = self.measured.get(id(value), (value, 0, _hash_work(value)))
            self.hash_budget -= work
            if nesting > _HASH_DEPTH or self.hash_budget < 0:
                raise PayloadError("dict key or set item too deeply nested or too costly to hash")

    def set_items(self, target: Any, flat: list) -> Any:
        if isinstance(target, PickledObject):
            target = self.items_of(target, dict)
        if not isinstance(target, dict) or len(flat) % 2:
            raise PayloadError("dict items without a dict, or an odd number of them")
        self.check_hashable(flat[0::2])
        try:
            for i in range(0, len(flat), 2):
                target[flat[i]] = flat[i + 1]
        except (TypeError, RecursionError) as exc:  # unhashable key; what the unpickler would hit
            raise PayloadError("unhashable dict key") from exc
        return target

    def add_items(self, target: Any, items: list) -> Any:
        if isinstance(target, PickledObject):
            target = self.items_of(target, set)
        if not isinstance(target, set):
            raise PayloadError("set items without a set")
        self.check_hashable(items)
        try:
            target.update(items)
        except (TypeError, RecursionError) as exc:
            raise PayloadError("unhashable set item") from exc
        return target

    def items_of(self, obj: PickledObject, kind: type) -> Any:
        key = (id(obj), kind)
        if key not in self.extras:  # first items for this object: show them as one more argument
            self.extras[key] = (obj, kind())
            _complete(obj, args=obj.args + (self.extras[key][1],))
        return self.extras[key][1]

    def affordable(self, cost: int) -> bool:
        self.copy_budget -= cost
        return self.copy_budget >= 0

    def reduce(self, func: Any, args: tuple) -> Any:
        """What REDUCE makes: a PickledObject, or plain data for a few harmless
        builtins whose meaning is data. Computed here; nothing named is called."""
        name = _name_of(func)
        if name == "copyreg._reconstructor" and len(args) == 3 and isinstance(args[0], PickledGlobal):
            return self.new_object(args[0].name, () if args[2] is None else (args[2],))
        if name == "copyreg.__newobj__" and args and isinstance(args[0], PickledGlobal):
            return self.new_object(args[0].name, args[1:])
        if name == "collections.OrderedDict" and not args:
            return {}  # SETITEMS follow
        if name == "builtins.bytes" and not args:
            return b""
        if name in ("_codecs.encode", "builtins.bytearray") and len(args) == 2:
            text, encoding = args  # protocols 0-2 carry bytes as latin-1 text
            if isinstance(text, str) and encoding in ("latin1", "latin-1") and self.affordable(len(text)):
                try:
                    data = text.encode("latin-1")
                except UnicodeEncodeError:
                    return self.new_object(name, args)
                return data if name == "_codecs.encode" else bytearray(data)
        if name == "builtins.bytearray" and len(args) <= 1:
            data = args[0] if args else b""
            if isinstance(data, bytes) and self.affordable(len(data)):
                return bytearray(data)
        if name in ("builtins.set", "builtins.frozenset") and len(args) <= 1:
            items = args[0] if args else []
            if isinstance(items, (list, tuple)) and self.affordable(len(items)):
                members = self.add_items(set(), list(items))
                return members if name == "builtins.set" else frozenset(members)
        if name == "builtins.complex" and 1 <= len(args) <= 2 and all(type(a) in (int, float) for a in args):
            try:
                return complex(*args)
            except OverflowError:
                pass
        return self.new_object(name, args)


def _walk(data: bytes, max_ops: int) -> tuple[Any, int]:
    """The value a pickle holds and the offset of its STOP opcode."""
    walker = _Walker(len(data))
    ops = pickletools.genops(data)
    for _ in range(max_ops):
        try:
            opcode, arg, pos = next(ops)
        # genops reports bad data as ValueError, and can raise whatever the codecs it
        # uses raise (e.g. escape warnings turned into errors): all mean "not a pickle".
        except Exception as exc:
            raise PayloadError(f"unreadable pickle ({exc})") from exc
        if opcode.name == "STOP":
            return walker.pop(), pos
        walker.step(opcode.name, arg)
    raise PayloadError(f"more than {max_ops} opcodes")


def read_pickle(data: bytes, *, max_ops: int = 1_000_000) -> Any:
    """Walk the pickle's opcodes into a display value. Never imports or calls anything. Raises PayloadError."""
    return _walk(bytes(data), max_ops)[0]


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
            value, stop = _walk(data, 1_000_000)
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
    lists; dict keys strings. Ints beyond 2**53 and NaN/inf become strings too.
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
        if not isinstance(value, (list, tuple, set, frozenset, dict)):
            return render(value, limit=_JSON_TEXT)  # objects, Opaque, bytes, complex
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
                    text = key if isinstance(key, str) else render(key, limit=_JSON_TEXT)
                    result[text] = self.convert(item, depth + 1)
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
