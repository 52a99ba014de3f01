"""Pickles read by walking their opcodes, never unpickled.

``read_pickle`` runs the unpickler's stack machine over ``pickletools.genops``
(DESIGN.md rule 2): the classes and functions a pickle names become
``PickledGlobal`` and ``PickledObject`` values, and nothing named in the data is
imported or called. A few builtins whose meaning is data (bytes, sets, complex
numbers, dates and times) come back as those plain values instead. The values it
makes (and ``Opaque``, ``PayloadError``) live in ``values``.
"""

from __future__ import annotations

import _compat_pickle  # the unpickler's Python 2 -> 3 name table: plain data
import datetime
import pickletools
from typing import Any

from .values import Opaque, PayloadError, PickledGlobal, PickledObject, render

# --- the walker ---------------------------------------------------------------

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
        if name in _DATE_CLASSES:
            value = _date_or_time(name, args)
            if value is not None:
                return value
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


def read_until_stop(data: bytes, max_ops: int) -> tuple[Any, int]:
    """The value of the pickle ``data`` starts with, and the offset of its STOP opcode. Raises PayloadError."""
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
    return read_until_stop(bytes(data), max_ops)[0]


# --- dates and times ----------------------------------------------------------

# How datetime's classes pickle (``_getstate`` in CPython's Lib/_pydatetime.py): a
# timedelta as (days, seconds, microseconds); the others as one bytes state, its
# numbers big-endian, then the tzinfo if there is one. From protocol 4, fold=1
# adds 128 to the month (datetime) or hour (time) byte.
_DATE_STATE_SIZES = {"datetime.date": 4, "datetime.time": 6, "datetime.datetime": 10}
_DATE_CLASSES = frozenset({*_DATE_STATE_SIZES, "datetime.timedelta"})
_MAX_DAYS = 999_999_999  # timedelta.max.days


def _date_or_time(name: str, args: tuple) -> Any:
    """The value a datetime class's REDUCE describes; None unless its arguments have CPython's layout."""
    if name == "datetime.timedelta":
        return _timedelta(args)
    if not args or not isinstance(args[0], bytes) or len(args[0]) != _DATE_STATE_SIZES[name]:
        return None
    state, tzinfo = args[0], None
    if len(args) == 2 and name != "datetime.date":
        tzinfo = _timezone(args[1])
        if tzinfo is None:  # zoneinfo, pytz, ...: left to the generic display
            return None
    elif len(args) != 1:
        return None
    try:  # the constructors check the ranges: a month 13 or an hour 24 is no state CPython writes
        if name == "datetime.date":
            return datetime.date(state[0] << 8 | state[1], state[2], state[3])
        if name == "datetime.time":
            hour, minute, second = state[:3]
            microsecond = int.from_bytes(state[3:], "big")
            return datetime.time(hour & 0x7F, minute, second, microsecond, tzinfo, fold=hour >> 7)
        month, day, hour, minute, second = state[2:7]
        microsecond = int.from_bytes(state[7:], "big")
        return datetime.datetime(
            state[0] << 8 | state[1], month & 0x7F, day, hour, minute, second, microsecond, tzinfo, fold=month >> 7
        )
    except ValueError:
        return None


def _timedelta(args: tuple) -> datetime.timedelta | None:
    if len(args) != 3 or any(type(arg) is not int for arg in args):
        return None
    days, seconds, microseconds = args  # normalized, as a timedelta stores them
    if abs(days) <= _MAX_DAYS and 0 <= seconds < 86_400 and 0 <= microseconds < 1_000_000:
        return datetime.timedelta(days, seconds, microseconds)
    return None


def _timezone(value: Any) -> datetime.timezone | None:
    """The fixed-offset zone a datetime.timezone REDUCE described; None for anything else."""
    if not (isinstance(value, PickledObject) and value.cls == "datetime.timezone" and 1 <= len(value.args) <= 2):
        return None
    offset, *name = value.args  # timezone.__getinitargs__: (offset,) or (offset, name)
    if value.kwargs or value.state is not None or not isinstance(offset, datetime.timedelta):
        return None
    if name and not (isinstance(name[0], str) and name[0].isprintable()):  # render shows it as is, on one line
        return None
    try:
        return datetime.timezone(offset, *name)
    except ValueError:  # an offset of a day or more
        return None
