"""Payload decoding: what an operator sees of a job's data, and that reading it runs nothing."""

from __future__ import annotations

import base64
import builtins
import collections
import contextlib
import dataclasses
import datetime
import decimal
import json
import math
import os
import pickle
import random
import subprocess
import sys
import time
import tracemalloc
import uuid
import zlib

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.payload import (
    Decoded,
    Opaque,
    PayloadError,
    PickledGlobal,
    PickledObject,
    decode,
    read_pickle,
    render,
    to_jsonable,
)

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
HERE = __name__  # the module name pickles record for the classes below


# --- classes whose instances the tests pickle ----------------------------------


class Counted:
    """Counts every construction and every state restore, so tests can prove none happen."""

    events = 0

    def __new__(cls, *args, **kwargs):
        Counted.events += 1
        return super().__new__(cls)

    def __setstate__(self, state):
        Counted.events += 1
        self.__dict__.update(state)


class Point(Counted):
    def __init__(self, x, y):
        self.x, self.y = x, y


class Temperature(Counted):
    def __init__(self, degrees):
        self.degrees = degrees

    def __reduce__(self):
        return (Temperature, (self.degrees,))


@dataclasses.dataclass
class User(Counted):
    id: int
    name: str


class Evil:
    """Unpickling this would run a shell command."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class EvilSubprocess(Evil):
    def __reduce__(self):
        return (subprocess.check_call, (["touch", self.command],))


class EvilEval(Evil):
    def __reduce__(self):
        return (builtins.eval, (f"__import__('os').system('touch {self.command}')",))


def roundtrip(value, protocol=pickle.DEFAULT_PROTOCOL):
    return read_pickle(pickle.dumps(value, protocol=protocol))


# --- pickles of builtins --------------------------------------------------------

BUILTIN_VALUES = [
    0,
    -1,
    255,
    65_535,
    2**31,
    -(2**63),
    2**100,
    -(7**300),
    1.5,
    -0.0,
    float("inf"),
    "",
    "hello",
    "ünïcödé \u2603 \U0001f600",
    "line\nbreak \\ 'quotes' \"double\"",
    b"",
    b"\x00\xffbytes",
    bytearray(b"mutable"),
    bytearray(),
    (),
    (1,),
    (1, 2),
    (1, 2, 3),
    (1, 2, 3, 4),
    [],
    [1, "a", None],
    {},
    {"a": 1, 2: "b", (3, 4): [5]},
    set(),
    {1, 2, 3},
    frozenset(),
    frozenset({"x", "y"}),
    None,
    True,
    False,
    complex(1, -2),
    [{"nested": [(1, {"deep": {2, 3}}), frozenset({(4, 5)})]}],
    list(range(2_000)),  # several APPENDS batches and, at protocol 4+, several frames
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
# ids by position and type: a set's repr depends on the process's hash seed, and the parallel
# test processes must collect the same ids.
@pytest.mark.parametrize("value", BUILTIN_VALUES, ids=[f"{i}-{type(v).__name__}" for i, v in enumerate(BUILTIN_VALUES)])
def test_read_pickle_returns_builtins_as_they_were_pickled(value, protocol):
    result = roundtrip(value, protocol)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_read_pickle_returns_nan(protocol):
    assert math.isnan(roundtrip(float("nan"), protocol))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_read_pickle_keeps_shared_references_shared(protocol):
    shared = [1, 2]
    result = roundtrip({"a": shared, "b": shared, "t": (shared,)}, protocol)
    assert result["a"] is result["b"] is result["t"][0]
    assert result["a"] == [1, 2]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_read_pickle_rebuilds_recursive_lists_and_dicts(protocol):
    loop = [1]
    loop.append(loop)
    own = {"name": "me"}
    own["self"] = own
    result_list, result_dict = roundtrip([loop, own], protocol)
    assert result_list[0] == 1 and result_list[1] is result_list
    assert result_dict["self"] is result_dict
    assert render(result_list) == "[1, […]]"
    assert render(result_dict) == "{'name': 'me', 'self': {…}}"
    assert to_jsonable(result_list) == [1, "…"]


def test_ordered_dict_shows_as_a_dict_and_defaultdict_shows_its_items():
    value = [collections.OrderedDict(b=1, a=2), collections.defaultdict(list, {"k": [1]})]
    ordered, default = read_pickle(pickle.dumps(value))
    assert ordered == {"b": 1, "a": 2}
    assert render(default) == "collections.defaultdict(builtins.list, {'k': [1]})"


# --- what the job systems store -------------------------------------------------

RQ_TUPLE = ("myapp.tasks.send", None, (1, "x"), {"to": "a@b"})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rq_style_zlib_pickle_decodes_to_the_job_tuple(protocol):
    data = zlib.compress(pickle.dumps(RQ_TUPLE, protocol=protocol))
    result = decode(data)
    assert result == Decoded(RQ_TUPLE, "zlib+pickle", None, len(data))


def test_rq_style_zlib_json_decodes_to_the_job_list():
    data = zlib.compress(json.dumps(list(RQ_TUPLE)).encode())
    result = decode(data)
    assert result.encoding == "zlib+json"
    assert result.value == ["myapp.tasks.send", None, [1, "x"], {"to": "a@b"}]
    assert result.error is None


def test_real_rq_job_data_decodes_without_redis():
    import rq.job as rq_job  # test dependencies: missing is a failure, never a skip
    import redis
    job = rq_job.Job.create(
        "myapp.tasks.send", args=(1, "x"), kwargs={"to": "a@b"}, connection=redis.Redis()
    )
    result = decode(job.to_dict()["data"])
    assert (result.encoding, result.value) == ("zlib+pickle", RQ_TUPLE)


def test_real_arq_job_decodes_from_pickle_and_from_msgpack():
    import arq.jobs as arq_jobs
    pickled = arq_jobs.serialize_job("fn", (1,), {"k": "v"}, 2, 123)
    packed = arq_jobs.serialize_job(
        "fn", (1,), {"k": "v"}, 2, 123, serializer=lambda d: msgpack.packb(d, use_bin_type=True)
    )
    expected = {"t": 2, "f": "fn", "a": (1,), "k": {"k": "v"}, "et": 123}
    assert decode(pickled) == Decoded(expected, "pickle", None, len(pickled))
    assert decode(packed) == Decoded({**expected, "a": [1]}, "msgpack", None, len(packed))


def test_arq_style_msgpack_dict_decodes_as_msgpack():
    job = {"t": 1, "f": "fn", "a": [1], "k": {}, "et": 123}
    result = decode(msgpack.packb(job))
    assert (result.encoding, result.value, result.error) == ("msgpack", job, None)


@pytest.mark.parametrize("scalar", [12345, "hello world", b"\x00\x01raw", 1.5, True, None])
def test_msgpack_scalars_are_not_reported_as_msgpack(scalar):
    result = decode(msgpack.packb(scalar, use_bin_type=True))
    assert "msgpack" not in result.encoding


def test_msgpack_ext_types_show_as_opaque():
    data = msgpack.packb({"x": msgpack.ExtType(42, b"abc")})
    assert decode(data).value == {"x": Opaque("msgpack ext type 42", 3)}


def test_celery_style_base64_json_body_decodes():
    body = [[2, 3], {"retry": True}, {"callbacks": None, "chord": None}]
    data = base64.b64encode(json.dumps(body).encode())
    result = decode(data)
    assert (result.encoding, result.value, result.error) == ("base64+json", body, None)


def test_rq_exception_text_decodes_through_base64_and_zlib():
    traceback = "Traceback (most recent call last):\nValueError: boom"
    result = decode(base64.b64encode(zlib.compress(traceback.encode())).decode())
    assert (result.encoding, result.value) == ("base64+zlib+text", traceback)


def test_urlsafe_base64_is_recognised():
    data = base64.urlsafe_b64encode(pickle.dumps({"k": b"\xfb\xff\xbf" * 20}, protocol=3))
    assert b"-" in data or b"_" in data
    assert decode(data).encoding == "base64+pickle"


@pytest.mark.parametrize("text", ["abcdefgh", "Passwords", "hello world.", "x^ not zlib", "12345678"])
def test_plain_words_stay_text(text):
    result = decode(text)
    assert result.error is None
    assert result.encoding in ("text", "json")  # "12345678" is a JSON number
    if result.encoding == "text":
        assert result.value == text


def test_dramatiq_style_json_message_decodes():
    message = {"queue_name": "default", "actor_name": "add", "args": [1, 2], "kwargs": {}}
    result = decode(json.dumps(message))
    assert (result.encoding, result.value) == ("json", message)


def test_explicit_layers_are_applied_in_order():
    data = base64.b64encode(zlib.compress(pickle.dumps(RQ_TUPLE)))
    result = decode(data, layers=["base64", "zlib", "pickle"])
    assert (result.encoding, result.value, result.error) == ("base64+zlib+pickle", RQ_TUPLE, None)
    assert decode(zlib.compress(b"raw"), layers=["zlib"]).value == b"raw"


def test_explicit_layers_name_the_layer_that_failed():
    result = decode(b"definitely not zlib", layers=["zlib", "pickle"])
    assert result.error.startswith("19 bytes, ")
    assert "zlib layer" in result.error
    assert isinstance(result.value, Opaque)
    assert "pickle layer" in decode(zlib.compress(b"{}"), layers=["zlib", "pickle"]).error
    assert "no such layer" in decode(b"x", layers=["rot13"]).error


def test_decode_accepts_none_str_bytearray_and_memoryview():
    assert decode(None) == Decoded(None, "none", None, 0)
    assert decode('{"a": 1}').value == {"a": 1}
    assert decode(bytearray(b"[1]")).value == [1]
    assert decode(memoryview(b"[1]")).value == [1]
    assert decode(b"") == Decoded("", "text", None, 0)


# --- objects: named, shown, never built -----------------------------------------


@contextlib.contextmanager
def nothing_constructed():
    before = Counted.events
    yield
    assert Counted.events == before, "decoding constructed or restored an instance"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_objects_display_as_their_class_with_their_values(protocol):
    values = [
        Point(1, 2),
        Temperature(21.5),
        User(7, "ada"),
        decimal.Decimal("1.5"),
        ValueError("boom"),
    ]
    data = pickle.dumps(values, protocol=protocol)
    with nothing_constructed():
        point, temperature, user, amount, error = decode(data).value

    assert str(point) == f"{HERE}.Point(x=1, y=2)"
    assert str(temperature) == f"{HERE}.Temperature(21.5)"
    assert str(user) == f"{HERE}.User(id=7, name='ada')"
    assert str(amount) == "decimal.Decimal('1.5')"
    assert str(error) == "builtins.ValueError('boom')"
    assert isinstance(user, PickledObject) and user.state == {"id": 7, "name": "ada"}


def test_object_state_can_refer_back_to_the_object():
    point = Point(1, 2)
    point.me = point
    data = pickle.dumps(point)
    with nothing_constructed():
        shown = decode(data).value
    assert shown.state["me"] is shown
    assert str(shown) == f"{HERE}.Point(x=1, y=2, me={HERE}.Point(…))"
    assert to_jsonable([shown]) == [f"{HERE}.Point(x=1, y=2, me={HERE}.Point(…))"]


def test_objects_can_be_dict_keys_and_set_members():
    value = {decimal.Decimal("1"): "one", "s": {Temperature(1)}}
    shown = read_pickle(pickle.dumps(value))
    assert render(shown) == f"{{decimal.Decimal('1'): 'one', 's': {{{HERE}.Temperature(1)}}}}"


def test_classes_and_functions_show_as_their_names():
    shown = read_pickle(pickle.dumps([Point, os.path.join, len]))
    assert shown == [
        PickledGlobal(f"{HERE}.Point"),
        PickledGlobal("posixpath.join"),
        PickledGlobal("builtins.len"),
    ]
    assert render(shown) == f"[{HERE}.Point, posixpath.join, builtins.len]"


# --- the security test ----------------------------------------------------------


@contextlib.contextmanager
def forbidding_execution():
    """Make every way of running or importing what a pickle names fail loudly.

    Yields the list of attempts; everything is restored on leaving, before pytest
    (which imports lazily) reports anything.
    """
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:1])
        raise AssertionError(f"decoding tried to run or import {args[:1]}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pickle._Unpickler, "find_class", refuse)
        for module, name in [
            (pickle, "loads"),
            (pickle, "load"),
            (pickle, "_loads"),
            (pickle, "Unpickler"),
            (pickle, "_Unpickler"),
            (os, "system"),
            (subprocess, "check_call"),
            (subprocess, "Popen"),
            (builtins, "eval"),
            (builtins, "exec"),
            (sys.modules["importlib"], "import_module"),
            (builtins, "__import__"),  # last: setattr itself imports
        ]:
            patch.setattr(module, name, refuse)
        yield attempts


def test_pickles_that_would_run_commands_are_only_described(tmp_path):
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    pickles = [
        pickle.dumps(Evil(f"touch {marker}")),
        pickle.dumps(EvilSubprocess(str(marker)), protocol=0),
        zlib.compress(pickle.dumps(EvilEval(str(marker)), protocol=2)),
    ]
    modules_before = set(sys.modules)
    with forbidding_execution() as attempts:
        results = [decode(data) for data in pickles]

    assert attempts == []
    assert not marker.exists()
    assert set(sys.modules) == modules_before
    assert [result.error for result in results] == [None, None, None]
    system, check_call, evaluate = (result.value for result in results)
    assert system == PickledObject(f"{os.system.__module__}.system", (f"touch {marker}",))
    assert system.cls in ("posix.system", "nt.system", "os.system")
    assert check_call == PickledObject("subprocess.check_call", (["touch", str(marker)],))
    assert evaluate.cls == "builtins.eval"
    assert str(marker) in evaluate.args[0]
    assert f"system('touch {marker}')" in str(system)


def test_read_pickle_and_the_explicit_pickle_layer_only_describe_commands_too(tmp_path):
    marker = tmp_path / "pwned"
    pickles = [pickle.dumps(Evil(f"touch {marker}"), protocol=p) for p in PROTOCOLS]
    pickles += [pickle.dumps(EvilEval(str(marker)), protocol=p) for p in PROTOCOLS]
    with forbidding_execution() as attempts:
        shown = [read_pickle(data) for data in pickles]
        shown += [decode(data, layers=["pickle"]).value for data in pickles]
    assert attempts == []
    assert not marker.exists()
    assert {value.cls for value in shown} == {f"{os.system.__module__}.system", "builtins.eval"}


@pytest.mark.parametrize(
    ("module", "data"),
    [
        # protocol 0: GLOBAL, MARK, STRING, TUPLE, REDUCE, STOP
        ("qw_never_imported_mod", b"cqw_never_imported_mod\nfunc\n(S'arg'\ntR."),
        # protocol 4: STACK_GLOBAL from two short unicode strings
        ("qw_never_imported_mod", b"\x80\x04\x8c\x15qw_never_imported_mod\x8c\x04func\x93\x8c\x03arg\x85R."),
        # a real standard-library module that prints when imported
        ("this", b"\x80\x02cthis\ns\nq\x00)Rq\x01."),
    ],
)
def test_decoding_never_imports_the_modules_a_pickle_names(module, data, monkeypatch):
    # Whatever imported it before, the module is absent while we decode (restored afterwards).
    monkeypatch.delitem(sys.modules, module, raising=False)
    with forbidding_execution() as attempts:
        result = decode(data)
    assert attempts == []
    assert module not in sys.modules
    assert result.error is None
    assert result.value.cls in (f"{module}.func", f"{module}.s")


# --- dates and times: read from their bytes, shown readably ------------------------

UTC = datetime.timezone.utc
INDIA = datetime.timezone(datetime.timedelta(hours=5, minutes=30))
DATES = [
    (
        datetime.datetime(2024, 5, 1, 12, 30, 5, 123456),
        "datetime.datetime(2024, 5, 1, 12, 30, 5, 123456)",
        "2024-05-01T12:30:05.123456",
    ),
    (
        datetime.datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "datetime.datetime(2024, 5, 1, 12, 30, tzinfo=UTC)",
        "2024-05-01T12:30:00+00:00",
    ),
    (
        datetime.datetime(1999, 12, 31, 23, 59, 59, tzinfo=INDIA),
        "datetime.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC+05:30)",
        "1999-12-31T23:59:59+05:30",
    ),
    (
        datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=2), "CEST")),
        "datetime.datetime(2024, 5, 1, 0, 0, tzinfo=CEST)",
        "2024-05-01T00:00:00+02:00",
    ),
    (datetime.datetime.min, "datetime.datetime(1, 1, 1, 0, 0)", "0001-01-01T00:00:00"),
    (datetime.datetime.max, "datetime.datetime(9999, 12, 31, 23, 59, 59, 999999)", "9999-12-31T23:59:59.999999"),
    (datetime.date(2024, 5, 1), "datetime.date(2024, 5, 1)", "2024-05-01"),
    (datetime.date.max, "datetime.date(9999, 12, 31)", "9999-12-31"),
    (datetime.time(12, 30, 5, 7), "datetime.time(12, 30, 5, 7)", "12:30:05.000007"),
    (datetime.time(23, 59, tzinfo=UTC), "datetime.time(23, 59, tzinfo=UTC)", "23:59:00+00:00"),
    (
        datetime.timedelta(days=1, seconds=5),
        "datetime.timedelta(days=1, seconds=5)",
        "datetime.timedelta(days=1, seconds=5)",
    ),
    (
        datetime.timedelta(microseconds=-1),
        "datetime.timedelta(days=-1, seconds=86399, microseconds=999999)",
        "datetime.timedelta(days=-1, seconds=86399, microseconds=999999)",
    ),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(("value", "text", "json_value"), DATES, ids=[text for _, text, _ in DATES])
def test_dates_times_and_timedeltas_show_as_readable_text_and_iso_json(value, text, json_value, protocol):
    data = zlib.compress(pickle.dumps({"when": value, "by date": {value: 1}}, protocol=protocol))
    decode(data)  # first imports the codecs pickletools reads protocol 0 with
    with forbidding_execution() as attempts:
        shown = decode(data).value
    assert attempts == []
    assert render(shown["when"]) == text
    assert render(shown["by date"]) == f"{{{text}: 1}}"
    assert to_jsonable(shown) == {"when": json_value, "by date": {json_value: 1}}
    assert shown["when"] == value and type(shown["when"]) is type(value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_fold_of_a_repeated_hour_is_shown_where_the_protocol_keeps_it(protocol):
    values = [datetime.datetime(2024, 11, 3, 1, 30, fold=1), datetime.time(1, 30, fold=1)]
    fold = ", fold=1" if protocol >= 4 else ""  # CPython writes the fold bit from protocol 4
    assert render(roundtrip(values, protocol)) == (
        f"[datetime.datetime(2024, 11, 3, 1, 30{fold}), datetime.time(1, 30{fold})]"
    )


class Reduces:
    """Pickles as a call of ``func`` with ``args``: date states CPython would never write."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class Fixed(datetime.tzinfo):
    """A tzinfo of the application's own: not a datetime.timezone."""

    def utcoffset(self, when):
        return datetime.timedelta(0)


MAY_1ST_NOON = b"\x07\xe8\x05\x01\x0c\x00\x00\x00\x00\x00"


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param(Reduces(datetime.datetime, MAY_1ST_NOON[:-1]), id="9-bytes"),
        pytest.param(Reduces(datetime.datetime, MAY_1ST_NOON + b"\x00"), id="11-bytes"),
        pytest.param(Reduces(datetime.datetime, MAY_1ST_NOON[:2] + b"\x0d" + MAY_1ST_NOON[3:]), id="month-13"),
        pytest.param(Reduces(datetime.datetime, MAY_1ST_NOON[:7] + b"\xff\xff\xff"), id="microsecond-16777215"),
        pytest.param(Reduces(datetime.datetime, MAY_1ST_NOON.decode("latin-1")), id="text-state"),
        pytest.param(Reduces(datetime.datetime, MAY_1ST_NOON, Fixed()), id="own-tzinfo"),
        pytest.param(
            Reduces(datetime.datetime, MAY_1ST_NOON, Reduces(datetime.timezone, datetime.timedelta(days=1))),
            id="offset-of-a-day",
        ),
        pytest.param(Reduces(datetime.datetime, MAY_1ST_NOON, UTC, None), id="three-arguments"),
        pytest.param(Reduces(datetime.date, MAY_1ST_NOON[:4], UTC), id="date-with-zone"),
        pytest.param(Reduces(datetime.time, b"\x18\x00\x00\x00\x00\x00"), id="hour-24"),
        pytest.param(Reduces(datetime.timedelta, 0, 86_400, 0), id="timedelta-not-normalized"),
        pytest.param(Reduces(datetime.timedelta, 1.5, 0, 0), id="timedelta-float"),
        pytest.param(Reduces(datetime.timedelta, 1_000_000_000, 0, 0), id="timedelta-too-long"),
    ],
)
def test_date_states_not_in_cpython_layout_fall_back_to_the_object_display(odd):
    data = pickle.dumps(odd, protocol=3)
    result = decode(data)
    assert result.error is None
    assert isinstance(result.value, PickledObject)
    assert result.value.cls == f"datetime.{odd.func.__name__}"
    json.dumps(to_jsonable(result.value))


def test_a_datetime_state_of_the_wrong_length_shows_its_bytes():
    data = pickle.dumps(Reduces(datetime.datetime, b"\x07\xe8\x05\x01"), protocol=5)
    assert render(read_pickle(data)) == "datetime.datetime(b'\\x07\\xe8\\x05\\x01')"


# --- corrupt and hostile input ----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "exhausted"),
        (b"\x80\x05", "exhausted"),
        (b"\x80\x05\xff.", "unknown"),
        (b"\x80\x02a.", "underflow"),
        (b"\x80\x02K\x01e.", "MARK missing"),
        (b"\x80\x02h\x07.", "memo key 7 missing"),
        (b"\x80\x02]K\x01R.", "REDUCE arguments"),
        (b"\x80\x02(]\x91.", "unhashable"),
        (b"\x80\x02}]K\x01s.", "unhashable"),
        (b"\x80\x02K\x00K\x01K\x02s.", "dict items"),
        (b"(lp-1\n.", "negative"),
        (b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00X\xff\xff\xff\x00abc", "unreadable"),
    ],
)
def test_malformed_pickles_raise_payload_error_with_a_reason(data, reason):
    with pytest.raises(PayloadError, match=reason):
        read_pickle(data)


NESTED_TUPLE = b"K\x01" + b"\x85" * 1_000  # (((...(1,)...),),) 1,000 deep


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x02}" + NESTED_TUPLE + b"K\x01s.",  # as a dict key
        b"\x80\x02(" + NESTED_TUPLE + b"\x91.",  # in a frozenset
        b"\x80\x02cbuiltins\nset\n]" + NESTED_TUPLE + b"a\x85R.",  # in set([...])
        b"\x80\x02}cm\nC\n" + NESTED_TUPLE + b"\x85RK\x01s.",  # inside an object used as a key
    ],
    ids=["dict-key", "frozenset", "set-reduce", "object-key"],
)
def test_deeply_nested_keys_are_refused(data):
    with pytest.raises(PayloadError, match="too deeply nested"):
        read_pickle(data)
    assert "too deeply nested" in decode(data).error


def test_a_key_that_would_crash_the_process_is_refused():
    # hash() of a tuple recurses in C without a guard: pickle.loads segfaults on this
    data = b"\x80\x02}K\x01" + b"\x85" * 300_000 + b"K\x01s."
    assert "too deeply nested" in decode(data).error


def test_keys_sharing_subtuples_are_refused_instead_of_hashing_forever():
    # t = (1,); then 100 times t = (t, t): hashing the last one would take 2**100 steps
    doubling = b"\x80\x02}K\x01\x85" + b"q\x000h\x00h\x00\x86" * 100 + b"K\x01s."
    with pytest.raises(PayloadError, match="too costly to hash"):
        read_pickle(doubling)
    modest = b"\x80\x02}K\x01\x85" + b"q\x000h\x00h\x00\x86" * 4 + b"K\x01s."
    (key,) = read_pickle(modest)
    assert render(key, limit=1000).count("1") == 16


def test_every_truncation_of_a_pickle_is_rejected_cleanly():
    data = pickle.dumps([RQ_TUPLE, Point(1, 2), {1, 2}, 2**80], protocol=5)
    for end in range(len(data)):
        with pytest.raises(PayloadError):
            read_pickle(data[:end])
        assert isinstance(decode(data[:end]), Decoded)


def test_too_many_opcodes_is_refused():
    with pytest.raises(PayloadError, match="more than 100 opcodes"):
        read_pickle(pickle.dumps(list(range(1000)), protocol=0), max_ops=100)


def test_a_header_that_claims_pickle_reports_why_it_is_not_one():
    result = decode(b"\x80\x04garbage")
    assert result.encoding == "pickle"
    assert result.error.startswith("9 bytes, not decodable (pickle layer:")


def test_non_utf8_bytes_are_reported_with_their_size():
    data = b"\xff\xfe\xfa\x00\x81\xc3\x28" * 3
    assert decode(data) == Decoded(Opaque("not decodable", 21), "bytes", "21 bytes, not decodable", 21)


def test_input_over_the_limit_is_not_read():
    result = decode(b"[" + b"1," * 1000 + b"1]", max_bytes=100)
    assert result.error == "2003 bytes, too large to decode"


def test_zlib_bomb_stops_at_max_bytes_and_memory_stays_bounded():
    compressor = zlib.compressobj(9)
    chunk = b"0" * 1_000_000
    bomb = b"".join(compressor.compress(chunk) for _ in range(200)) + compressor.flush()
    assert len(bomb) < 1_000_000  # 200 MB inside

    tracemalloc.start()
    try:
        result = decode(bomb, max_bytes=1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert result.error == (
        f"{len(bomb)} bytes, decompresses to more than 1000000 bytes, too large to decode"
    )
    assert "too large" in result.error
    assert peak < 5_000_000


DEPTH = 100_000


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x02" + b"]" * DEPTH + b"a" * (DEPTH - 1) + b".",  # EMPTY_LIST ... APPEND ...
        b"(" * DEPTH + b"l" * DEPTH + b".",  # protocol 0: MARK ... LIST ...
        b"[" * DEPTH + b"]" * DEPTH,  # JSON
        b"\x91" * DEPTH + b"\x00",  # msgpack arrays of one
        zlib.compress(b"[" * DEPTH + b"]" * DEPTH),
    ],
    ids=["pickle-2", "pickle-0", "json", "msgpack", "zlib-json"],
)
def test_deeply_nested_input_never_overflows_the_stack(data):
    result = decode(data)
    assert isinstance(result, Decoded)
    assert len(render(result.value)) <= 200
    json.dumps(to_jsonable(result.value))


def test_deeply_nested_pickle_is_read_without_recursion():
    value = read_pickle(b"\x80\x02" + b"]" * DEPTH + b"a" * (DEPTH - 1) + b".")
    assert render(value, limit=40) == "[[[[[[[[[…]]]]]]]]]"
    for _ in range(DEPTH - 1):
        (value,) = value
    assert value == []


def test_random_bytes_never_make_decode_raise():
    for seed in range(300):
        rng = random.Random(seed)
        data = rng.randbytes(rng.randrange(0, 300))
        for candidate in (data, b"\x80\x04" + data, b"x\x9c" + data, data + b"."):
            result = decode(candidate)
            assert isinstance(result, Decoded)
            assert result.error is None or isinstance(result.value, Opaque)


# --- render and to_jsonable --------------------------------------------------------


def test_render_looks_like_python_repr():
    value = [1, "a'b", b"\x00", (1,), (), {"k": {1}}, set(), frozenset({2}), None, 1.5, 2 + 3j]
    assert render(value) == repr(value)
    assert render(PickledObject("m.C", (1,), {"k": "v"}, {"s": 2})) == "m.C(1, k='v', s=2)"
    assert render(PickledObject("m.C", (), state=("x", 1))) == "m.C(('x', 1))"
    assert render(PickledObject("m.C", (), state=(None, {"slot": 1}))) == "m.C(slot=1)"
    assert render(Opaque("persistent id", 3)) == "<3 bytes, persistent id>"


def test_render_truncates_to_the_limit_with_an_ellipsis():
    text = render({"key": "x" * 500}, limit=30)
    assert len(text) == 30
    assert text.endswith("…")
    assert text.startswith("{'key': 'xxx")
    assert render([1, 2], limit=6) == "[1, 2]"
    assert render([1, 2, 3], limit=6) == "[1, 2…"


def test_render_of_huge_values_is_fast_and_short():
    huge_list = list(range(1_000_000))
    huge_text = "x" * 100_000_000
    huge_dict = dict.fromkeys(range(1_000_000))
    started = time.perf_counter()
    for value in (huge_list, huge_text, huge_dict, [huge_text], PickledObject("m.C", (huge_list,))):
        assert len(render(value)) == 200
    assert render(10 ** 5000).startswith("<int of 16610 bits>")
    assert time.perf_counter() - started < 0.5


def test_render_stops_at_depth_eight():
    nested = [1]
    for _ in range(20):
        nested = [nested]
    assert render(nested, limit=1000) == "[" * 8 + "[…]" + "]" * 8


def test_to_jsonable_makes_json_safe_values():
    value = {
        1: (b"\x00", {3}, frozenset()),
        "obj": PickledObject("m.C", (1,)),
        "fn": PickledGlobal("m.f"),
        "opaque": Opaque("persistent id", 4),
        "floats": [float("nan"), float("inf"), -float("inf"), 0.5],
        "big": 2**64,
        (1, 2): complex(1, 2),
        None: bytearray(b"x"),
    }
    result = to_jsonable(value)
    assert result == {
        "1": ["b'\\x00'", [3], []],
        "obj": "m.C(1)",
        "fn": "m.f",
        "opaque": "<4 bytes, persistent id>",
        "floats": ["nan", "inf", "-inf", 0.5],
        "big": str(2**64),
        "(1, 2)": "(1+2j)",
        "None": "bytearray(b'x')",
    }
    json.dumps(result, allow_nan=False)


def test_to_jsonable_is_bounded_in_items_and_depth():
    wide = to_jsonable([list(range(100)) for _ in range(1_000)])
    assert sum(len(row) for row in wide) < 10_200
    assert wide[-1] == "…"
    nested = []
    for _ in range(100):
        nested = [nested]
    deep = to_jsonable(nested)
    for _ in range(20):
        (deep,) = deep
    assert deep == "…"


# --- properties ------------------------------------------------------------------

FAST = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
structures = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5)
    | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=5)
    | st.frozensets(st.integers() | st.text(max_size=5), max_size=5),
    max_leaves=20,
)


@FAST
@given(value=structures, protocol=st.sampled_from(PROTOCOLS))
def test_any_builtin_structure_round_trips(value, protocol):
    assert read_pickle(pickle.dumps(value, protocol=protocol)) == value


@FAST
@given(data=st.binary(max_size=2000))
def test_arbitrary_bytes_never_make_decode_raise(data):
    assert isinstance(decode(data), Decoded)
    assert isinstance(decode(data, layers=["zlib", "pickle"]), Decoded)
    with contextlib.suppress(PayloadError):
        read_pickle(data)


@FAST
@given(
    value=structures,
    protocol=st.sampled_from(PROTOCOLS),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=4),
    cut=st.integers(min_value=0),
)
def test_mutated_pickles_raise_only_payload_error(value, protocol, flips, cut):
    data = bytearray(pickle.dumps(value, protocol=protocol))
    for position, byte in flips:
        data[position % len(data)] = byte
    data = bytes(data[: len(data) - cut % 3])
    try:
        shown = read_pickle(data)
    except PayloadError:
        pass
    else:
        render(shown)
        json.dumps(to_jsonable(shown))
    result = decode(data)
    assert isinstance(result, Decoded)
    render(result.value)
    json.dumps(to_jsonable(result.value))


@FAST
@given(
    evil=st.sampled_from([Evil, EvilSubprocess, EvilEval]),
    protocol=st.sampled_from(PROTOCOLS),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=3),
    layers=st.lists(st.sampled_from(["zlib", "base64"]), max_size=2),
)
def test_mutated_wrapped_command_pickles_never_run_and_raise_only_payload_error(tmp_path_factory, evil, protocol, flips, layers):
    """Issue 8: whatever shape a hostile payload takes, decoding runs and imports nothing."""
    marker = tmp_path_factory.getbasetemp() / f"pwned-{uuid.uuid4().hex}"
    data = bytearray(pickle.dumps(evil(f"touch {marker}" if evil is Evil else str(marker)), protocol=protocol))
    for position, byte in flips:
        data[position % len(data)] = byte
    blob = bytes(data)
    for layer in layers:
        blob = zlib.compress(blob) if layer == "zlib" else base64.b64encode(blob)
    with forbidding_execution() as attempts:
        result = decode(blob)
        try:
            read_pickle(bytes(data))
        except PayloadError:
            pass
    assert attempts == [] and not marker.exists()
    assert isinstance(result, Decoded)
    render(result.value)


def test_module_exports_the_documented_api():
    names = {"PayloadError", "PickledGlobal", "PickledObject", "Opaque", "Decoded"}
    names |= {"read_pickle", "decode", "render", "to_jsonable"}
    assert names <= set(vars(payload))
    assert issubclass(PayloadError, ValueError)
    with pytest.raises(dataclasses.FrozenInstanceError):
        PickledObject("m.C", ()).cls = "other"
