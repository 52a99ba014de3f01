"""A job record made from a failed result's own bytes, for requeue. Nothing is loaded.

Arq's worker reads only ``f``, ``a``, ``k``, ``t`` and ``et`` of a job record
(``arq.jobs.deserialize_job_raw``), and a result record starts with exactly
those. So a requeued job keeps its arguments as they were stored:

- **pickle**: the result pickle's opcodes are copied byte for byte, keeping the
  five job items of the top-level dict and dropping the others (``s``, ``r`` —
  the exception, which the worker would otherwise have to unpickle — ``st``,
  ``ft``, ``q``, ``id``); the value of ``t`` is replaced by ``BININT1 try``.
  FRAME opcodes are dropped (framing is optional to the unpickler) and memo
  puts are written with their explicit index (``MEMOIZE`` numbers implicitly,
  so dropping items would renumber what follows). Arguments of any class
  survive unchanged because nothing is re-pickled.
- **msgpack**: the map's kept entries are copied byte for byte; ``t`` is packed anew.
- **JSON**: the five items are re-encoded: JSON holds plain data only.

Anything else raises ``Unsupported`` with the reason.
"""

from __future__ import annotations

import bisect
import json
import pickletools
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from queuewatch.adapters.decoding.pickles import PayloadError, read_pickle
from queuewatch.adapters.errors import Unsupported

JOB_KEYS = ("t", "f", "a", "k", "et")
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_STRINGS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})
_TRY_VALUES = frozenset({"NONE", "BININT1", "BININT2", "BININT", "LONG1", "LONG4", "INT", "LONG"})
_MARK = pickletools.markobject


def job_record(data: bytes, encoding: str, job_try: int = 1) -> bytes:
    """The job record arq's worker will run, from the bytes of a result record."""
    if encoding == "pickle":
        return _pickle_job(data, job_try)
    if encoding == "msgpack":
        return _msgpack_job(data, job_try)
    if encoding == "json":
        return _json_job(data, job_try)
    raise Unsupported(f"the result is stored as {encoding}: queuewatch requeues pickle, msgpack or JSON records only")


# --- pickle -------------------------------------------------------------------


@dataclass(frozen=True)
class _Op:
    name: str
    arg: Any
    start: int
    end: int
    memo: int | None = None  # the index a memo put stores at


def _ops(data: bytes) -> list[_Op]:
    try:
        found = list(pickletools.genops(data))
    except Exception as exc:  # genops reports bad data as ValueError, and whatever its codecs raise
        raise Unsupported(f"the result pickle is unreadable ({exc})") from exc
    ops, memo = [], set()
    for i, (opcode, arg, pos) in enumerate(found):
        end = found[i + 1][2] if i + 1 < len(found) else pos + 1
        index = None
        if opcode.name == "MEMOIZE":
            index = len(memo)
        elif opcode.name in _MEMO_PUTS:
            index = arg
        if index is not None:
            memo.add(index)
        ops.append(_Op(opcode.name, arg, pos, end, index))
    return ops


_OPCODES = {op.name: op for op in pickletools.opcodes}


def _step(op: _Op, depth: int, marks: list[int]) -> int:
    """The stack depth after ``op``; a MARK takes a slot, as in the unpickler."""
    if op.name in ("STOP", "PROTO"):
        raise Unsupported(f"the result pickle has {op.name} inside its dict")
    if op.name == "MARK":
        marks.append(depth)
        return depth + 1
    before, after = _OPCODES[op.name].stack_before, _OPCODES[op.name].stack_after
    if _MARK in before:
        if not marks:
            raise Unsupported("a value of the result pickle reaches outside itself")
        depth = marks.pop() - before.index(_MARK)
    else:
        depth -= len(before)
    if depth < 0:
        raise Unsupported("a value of the result pickle reaches outside itself")
    while marks and marks[-1] >= depth:  # POP took a MARK off the stack
        marks.pop()
    return depth + len(after)


def _region(ops: list[_Op], i: int, batch: bool) -> tuple[list[tuple[int, int, int]], int]:
    """The items one SETITEMS (after its MARK) or one SETITEM adds: [(key start, value start,
    value end)], and the index of that opcode.

    The object at stack position p is made by the opcodes after the last one that
    left the stack at most p deep; memo puts after a key or value go with it.
    """
    first, depth, marks, depths = i, 0, [], []
    while True:
        if i >= len(ops):
            raise Unsupported("the result pickle ends inside its dict")
        op = ops[i]
        if not marks and (op.name == "SETITEMS" if batch else (op.name == "SETITEM" and depth == 2)):
            break
        depth = _step(op, depth, marks)
        depths.append(depth)
        i += 1
    if depth % 2 or (not batch and depth != 2):
        raise Unsupported("the result pickle's dict items do not pair up")
    floor = depths[:]  # floor[k]: the lowest the stack gets from opcode k on
    for k in range(len(floor) - 2, -1, -1):
        floor[k] = min(floor[k], floor[k + 1])
    starts = [first + bisect.bisect_left(floor, p + 1) for p in range(depth)] + [i]
    return [(starts[p], starts[p + 1], starts[p + 2]) for p in range(0, depth, 2)], i


def _skip_frames(ops: list[_Op], i: int) -> int:
    while i < len(ops) and ops[i].name == "FRAME":
        i += 1
    return i


def _expect(ops: list[_Op], i: int, name: str) -> int:
    i = _skip_frames(ops, i)
    if i >= len(ops) or ops[i].name != name:
        found = ops[i].name if i < len(ops) else "the end"
        raise Unsupported(f"the result pickle is not the dict arq writes ({found} where {name} belongs)")
    return i


def _items(ops: list[_Op]) -> tuple[int, list[int], list[tuple[int, int, int]]]:
    """(PROTO index, the dict's memo puts, [(key start, value start, value end)]) of a top-level dict."""
    proto = _expect(ops, 0, "PROTO")
    if ops[proto].arg < 2:
        raise Unsupported("the result uses pickle protocol < 2")
    i = _expect(ops, proto + 1, "EMPTY_DICT") + 1
    dict_puts = []
    while i < len(ops) and ops[i].name in _MEMO_PUTS:
        dict_puts.append(i)
        i += 1
    items = []
    while True:
        i = _skip_frames(ops, i)
        if i < len(ops) and ops[i].name == "STOP":
            break
        batch = i < len(ops) and ops[i].name == "MARK"
        found, i = _region(ops, i + batch, batch)
        items += found
        i += 1
    if i != len(ops) - 1:
        raise Unsupported("the result pickle has data after its dict")
    return proto, dict_puts, items


def _put(index: int) -> bytes:
    return b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)


def _pickle_job(data: bytes, job_try: int) -> bytes:
    if not 0 <= job_try < 256:
        raise ValueError("job_try must fit BININT1")
    ops = _ops(data)
    proto, dict_puts, items = _items(ops)
    strings = {}  # memo index -> the string stored there, to read keys written as memo GETs
    unframed = [op for op in ops if op.name != "FRAME"]
    for prev, op in zip(unframed, unframed[1:]):
        if op.memo is not None and prev.name in _STRINGS:
            strings[op.memo] = prev.arg
    kept: dict[str, tuple[int, int, int]] = {}
    for key_start, value_start, value_end in items:
        key_ops = [op for op in ops[key_start:value_start] if op.name not in _MEMO_PUTS and op.name != "FRAME"]
        name = None
        if len(key_ops) == 1 and key_ops[0].name in _STRINGS:
            name = key_ops[0].arg
        elif len(key_ops) == 1 and key_ops[0].name in _MEMO_GETS:
            name = strings.get(key_ops[0].arg)
        if name in JOB_KEYS:
            if name in kept:
                raise Unsupported(f"the result pickle has the key {name!r} twice")
            kept[name] = (key_start, value_start, value_end)
    missing = [k for k in JOB_KEYS if k not in kept]
    if missing:
        raise Unsupported(f"the result record has no {', '.join(missing)}: it is not one arq can run again")
    try_ops = [op for op in ops[kept["t"][1] : kept["t"][2]] if op.name not in _MEMO_PUTS and op.name != "FRAME"]
    if len(try_ops) != 1 or try_ops[0].name not in _TRY_VALUES:
        raise Unsupported("the result's try count is not a plain number")

    out = bytearray(data[ops[proto].start : ops[proto].end])
    out += b"}"  # EMPTY_DICT
    defined = set()
    for i in dict_puts:
        out += _put(ops[i].memo)  # type: ignore[arg-type]
        defined.add(ops[i].memo)
    out += b"("  # MARK
    for key_start, value_start, value_end in sorted(kept.values()):
        for i in range(key_start, value_end):
            op = ops[i]
            if op.name == "FRAME":
                continue
            if op.memo is not None:
                out += _put(op.memo)
                defined.add(op.memo)
            elif op is try_ops[0]:
                out += b"K" + bytes([job_try])  # BININT1
            else:
                if op.name in _MEMO_GETS and op.arg not in defined:
                    raise Unsupported("the arguments share an object with the exception: not separable safely")
                out += data[op.start : op.end]
    out += b"u."  # SETITEMS, STOP
    _check(bytes(out), data, job_try)
    return bytes(out)


def _check(job: bytes, result: bytes, job_try: int) -> None:
    """The rewritten pickle reads back (by the safe reader) as the job it must be."""
    try:
        new, old = read_pickle(job), read_pickle(result)
    except PayloadError as exc:
        raise Unsupported(f"the rewritten job pickle does not read back ({exc})") from exc
    if not isinstance(new, dict) or set(new) != set(JOB_KEYS) or new["t"] != job_try:
        raise Unsupported("the rewritten job pickle is not the record arq expects")
    if any(new[k] != old.get(k) for k in ("f", "et")):
        raise Unsupported("the rewritten job pickle does not match its result")


# --- msgpack and JSON -----------------------------------------------------------


def _msgpack_job(data: bytes, job_try: int) -> bytes:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1))
    spans: dict[Any, tuple[int, int, int]] = {}
    try:
        unpacker.feed(data)
        for _ in range(unpacker.read_map_header()):
            key_start = unpacker.tell()
            key = unpacker.unpack()
            value_start = unpacker.tell()
            unpacker.skip()
            if isinstance(key, str) and key in JOB_KEYS:
                spans[key] = (key_start, value_start, unpacker.tell())
        complete = unpacker.tell() == len(data)
    except Exception as exc:  # the C unpacker fed unexpected bytes: any failure means "not this"
        raise Unsupported(f"the result is not the msgpack map arq writes ({exc})") from exc
    missing = [k for k in JOB_KEYS if k not in spans]
    if missing or not complete:
        raise Unsupported(f"the msgpack result record has no {', '.join(missing) or 'clean end'}")
    out = bytearray(b"\x85")  # a fixmap of five entries
    for key in JOB_KEYS:
        key_start, value_start, value_end = spans[key]
        if key == "t":
            out += data[key_start:value_start] + msgpack.packb(job_try)
        else:
            out += data[key_start:value_end]
    return bytes(out)


def _json_job(data: bytes, job_try: int) -> bytes:
    try:
        record = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise Unsupported(f"the result is not JSON ({exc})") from exc
    if not isinstance(record, dict) or any(k not in record for k in JOB_KEYS):
        raise Unsupported("the JSON result record lacks the job's fields")
    return json.dumps({"t": job_try, **{k: record[k] for k in JOB_KEYS[1:]}}).encode("utf-8")
