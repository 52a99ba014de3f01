"""Arq's records read for display: job and result records, exceptions, health reports.

Arq writes a job as ``{t, f, a, k, et}`` (try, function, args, kwargs, enqueue
time in ms) and a result as the same plus ``s`` (success), ``r`` (return value
or exception), ``st``/``ft`` (start and finish, ms), ``q`` (queue) and ``id``,
with pickle (its default), msgpack or JSON. Records are decoded by
``payload.decode``: a pickled exception becomes a ``PickledObject`` whose class
and arguments are read from the opcodes; nothing is ever loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from queuewatch.adapters.base import JobDetail
from queuewatch.adapters.decoding import payload
from queuewatch.adapters.decoding.payload import PickledObject, args_preview
from queuewatch.adapters.decoding.tracebacks import clip

MESSAGE_LIMIT = 4_000  # characters of an exception message
TRACEBACK_LIMIT = 64_000  # characters of the exception as stored, on the job page
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Exceptions whose str() is "[Errno N] text: 'filename'" when built with an errno.
_OS_ERRORS = frozenset(
    "OSError FileNotFoundError FileExistsError PermissionError IsADirectoryError NotADirectoryError"
    " TimeoutError BlockingIOError ChildProcessError InterruptedError ProcessLookupError BrokenPipeError"
    " ConnectionError ConnectionAbortedError ConnectionRefusedError ConnectionResetError".split()
)


@dataclass(frozen=True)
class ArqRecord:
    """A job or result record as display values; ``error`` says why it could not be read."""

    encoding: str  # "pickle", "msgpack", "json", ... as payload.decode names the layers
    size: int
    error: str | None = None
    function: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    job_try: int | None = None
    enqueued_ms: int | None = None
    is_result: bool = False
    success: bool | None = None
    result: Any = None
    started_ms: int | None = None
    finished_ms: int | None = None
    queue: str | None = None  # None: the record does not say (results of older arq, and jobs)

    @property
    def failed(self) -> bool:
        return self.is_result and self.success is False


def read_record(data: bytes | None, *, max_bytes: int = 16 * 1024 * 1024) -> ArqRecord:
    """A job or result record, decoded without running anything. Never raises."""
    decoded = payload.decode(data, max_bytes=max_bytes)
    value = decoded.value
    if decoded.error is not None:
        return ArqRecord(decoded.encoding, decoded.size, decoded.error)
    if not isinstance(value, dict) or not isinstance(value.get("f"), str):
        return ArqRecord(decoded.encoding, decoded.size, f"{decoded.size} bytes of {decoded.encoding}, not an Arq record")
    args = value.get("a")
    kwargs = value.get("k")
    return ArqRecord(
        encoding=decoded.encoding,
        size=decoded.size,
        function=value["f"],
        args=tuple(args) if isinstance(args, (list, tuple)) else (() if args is None else (args,)),
        kwargs={str(k): v for k, v in kwargs.items()} if isinstance(kwargs, dict) else {},
        job_try=_int(value.get("t")),
        enqueued_ms=_int(value.get("et")),
        is_result="s" in value,
        success=value["s"] if isinstance(value.get("s"), bool) else None,
        result=value.get("r"),
        started_ms=_int(value.get("st")),
        finished_ms=_int(value.get("ft")),
        queue=value["q"] if isinstance(value.get("q"), str) else None,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def unix_time(unix: float | None) -> datetime | None:
    """A unix time as a datetime; None when absent or beyond what a date can hold (an absurd TTL)."""
    try:
        return None if unix is None else datetime.fromtimestamp(unix, timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def ms_time(ms: int | None) -> datetime | None:
    """Arq's millisecond timestamps as aware UTC datetimes."""
    if ms is None:
        return None
    try:
        return _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return None


def describe_error(result: Any) -> tuple[str | None, str | None]:
    """(type, message) of a failed result's ``r``, as Python's traceback would print them.

    A pickled exception is a PickledObject: its class names the type (builtins
    bare, others with their module), its arguments make the message. Anything
    else in a failed result is what arq stored instead of an exception (with
    msgpack or JSON, exceptions cannot be serialized and arq stores the text
    "unable to serialize result"); arq's own ``Job.result()`` raises
    ``SerializationError`` with it, and so it is shown.
    """
    if isinstance(result, PickledObject):
        return result.cls.removeprefix("builtins."), _message(result)
    if isinstance(result, str):
        return "SerializationError", result[:MESSAGE_LIMIT]
    if result is None:
        return "SerializationError", None
    return "SerializationError", payload.render(result, limit=MESSAGE_LIMIT)


def _message(exc: PickledObject) -> str:
    args = exc.args
    name = exc.cls.removeprefix("builtins.")
    if name == "KeyError" and len(args) == 1:
        return payload.render(args[0], limit=MESSAGE_LIMIT)
    if name in _OS_ERRORS and len(args) >= 2 and type(args[0]) is int and isinstance(args[1], str):
        text = f"[Errno {args[0]}] {args[1]}"
        if len(args) >= 3 and args[2] is not None:
            text += f": {payload.render(args[2], limit=MESSAGE_LIMIT)}"
        return text[:MESSAGE_LIMIT]
    if not args:
        return ""
    if len(args) == 1:
        return args[0][:MESSAGE_LIMIT] if isinstance(args[0], str) else payload.render(args[0], limit=MESSAGE_LIMIT)
    return payload.render(args, limit=MESSAGE_LIMIT)


def attempts(record: ArqRecord, error_type: str | None, error_message: str | None) -> int | None:
    """How many times the job ran. Arq records try N+1 when it refused to run a job
    past ``max_tries`` N ("max N retries exceeded"): that try never ran."""
    if record.job_try is None:
        return None
    if error_type == "arq.worker.JobExecutionFailed" and (error_message or "").startswith("max "):
        return max(record.job_try - 1, 0)
    return record.job_try


def job_detail(job_id: str, queue: str, record: ArqRecord, status: str, expires_at: float | None) -> JobDetail:
    """One job in full, from its result record (or its job record while it waits)."""
    error_type, message = describe_error(record.result) if record.failed else (None, None)
    notes, traceback = [], None
    if record.failed:
        shown = payload.render(record.result, limit=TRACEBACK_LIMIT)
        text = f"{error_type}: {message}\n\nArq stores the exception, not its traceback. As stored:\n{shown}"
        traceback = clip(text, TRACEBACK_LIMIT)
        if error_type == "SerializationError":
            notes.append("Arq could not serialize this job's exception with the queue's serializer and stored this text "
                         "instead; the worker's log has the real error.")  # fmt: skip
        if record.queue is None:
            notes.append("This result does not name its queue (older arq): it is listed under arq:queue "
                         "and cannot be requeued here.")  # fmt: skip
    details = [("serializer", record.encoding), ("size", f"{record.size:,} bytes")]
    if record.job_try is not None:
        details.append(("try", str(record.job_try)))
    if record.is_result:
        when = "never (kept forever)" if expires_at is None else _iso(datetime.fromtimestamp(expires_at, timezone.utc))
        details += [("result expires", when), ("finished", _iso(ms_time(record.finished_ms)))]
    return JobDetail(
        id=job_id,
        function=record.function,
        args_preview=args_preview(record.args, record.kwargs) if record.error is None else record.error,
        error_type=error_type,
        error_message=clip(message, MESSAGE_LIMIT),
        failed_at=ms_time(record.finished_ms) if record.failed else None,
        attempts=attempts(record, error_type, message),
        queue=queue,
        args=record.args,
        kwargs=record.kwargs,
        traceback=traceback,
        payload_encoding=record.encoding,
        payload_error=record.error,
        status=status,
        enqueued_at=ms_time(record.enqueued_ms),
        started_at=ms_time(record.started_ms),
        details=tuple(details),
        notes=tuple(notes),
    )


def _iso(moment: datetime | None) -> str:
    return moment.isoformat(timespec="milliseconds") if moment else "—"


# --- health-check reports -----------------------------------------------------

_HEALTH = re.compile(
    r"^(?P<mon>[A-Za-z]{3})-(?P<day>\d{2}) (?P<h>\d{2}):(?P<m>\d{2}):(?P<s>\d{2})"
    r" j_complete=(?P<complete>\d+) j_failed=(?P<failed>\d+) j_retried=(?P<retried>\d+)"
    r" j_ongoing=(?P<ongoing>\d+) queued=(?P<queued>\d+)$"
)
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_SKEW = timedelta(minutes=2)  # clocks a little apart are not a different time zone
# A report younger than this is evidence a worker is alive; an older one (arq's default
# interval is an hour) says nothing either way: the worker may have died since.
LIVE_EVIDENCE_SECONDS = 120.0


@dataclass(frozen=True)
class HealthReport:
    """What ``<queue>:health-check`` says.

    Arq writes it every ``health_check_interval`` seconds (3600 by default) with
    an expiry of interval + 1 s, as ``"Mar-05 14:03:22 j_complete=… j_failed=…
    j_retried=… j_ongoing=… queued=…"`` in the worker's local time, with no
    year and no zone. The time is read in the dashboard's time zone; when that
    puts it in the future, the worker's zone differs and the age is unknown.
    """

    text: str
    complete: int
    failed: int
    retried: int
    ongoing: int
    queued: int
    remaining_ms: int | None  # the key's PTTL; None if it has no expiry
    written_at: datetime | None  # None when the report's time cannot be placed

    @property
    def age_seconds(self) -> float | None:
        if self.written_at is None:
            return None
        return max(0.0, (datetime.now(timezone.utc) - self.written_at).total_seconds())

    @property
    def interval_seconds(self) -> float | None:
        """The worker's health_check_interval: it set the key to live interval + 1 s."""
        age = self.age_seconds
        if age is None or self.remaining_ms is None:
            return None
        return max(0.0, round(age + self.remaining_ms / 1000 - 1, 1))

    @property
    def stale(self) -> bool:
        """Older than its interval: the key is in its last second, the worker missed its write."""
        return self.remaining_ms is not None and self.remaining_ms < 1000

    @property
    def liveness(self) -> str:
        """"alive" (a report younger than LIVE_EVIDENCE_SECONDS), "dead" (it missed its own
        interval) or "unknown" (older, or written at a time that cannot be placed)."""
        if self.stale:
            return "dead"
        age = self.age_seconds
        return "alive" if age is not None and age <= LIVE_EVIDENCE_SECONDS else "unknown"

    def unknown_reason(self) -> str:
        """Why liveness is unknown, and how to know: for the queue page, the alerts and the workers page."""
        age, interval = self.age_seconds, self.interval_seconds
        when = f"last report {_words(age)} ago" if age is not None else "last report at a time that cannot be placed here"
        every = f"every {_words(interval)}" if interval is not None else "every health_check_interval"
        return (f"Workers unknown: {when}; arq reports {every}, so a worker may have died since. "
                f"Set health_check_interval to 30-60 s in the worker's settings for real liveness.")


def _words(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def parse_health(raw: bytes | None, pttl: int | None, now: datetime | None = None) -> HealthReport | None:
    """The report in a health-check value, or None if the value is not one."""
    if not raw:
        return None
    text = raw.decode("utf-8", "replace").strip()
    match = _HEALTH.match(text)
    if match is None:
        return None
    numbers = {k: int(match.group(k)) for k in ("complete", "failed", "retried", "ongoing", "queued")}
    return HealthReport(
        text=text,
        remaining_ms=pttl if pttl is not None and pttl >= 0 else None,
        written_at=_report_time(match, now or datetime.now().astimezone()),
        **numbers,
    )


def _report_time(match: re.Match[str], now: datetime) -> datetime | None:
    month = _MONTHS.get(match.group("mon").lower())
    if month is None:  # a non-English %b
        return None
    # A report from December read in January was written last year.
    year = now.year - 1 if month == 12 and now.month == 1 else now.year
    try:
        written = datetime(year, month, *(int(match.group(k)) for k in ("day", "h", "m", "s"))).astimezone()
    except ValueError:  # Feb-30, hour 25: not a time arq wrote
        return None
    if written > now + _SKEW:  # in the future: the worker's clock is in another zone
        return None
    return written.astimezone(timezone.utc)


def report_details(report: HealthReport | None) -> tuple[tuple[str, int | None], ...]:
    """The report's counters, as a queue's details."""
    if report is None:
        return ()
    return (("worker complete", report.complete), ("worker failed", report.failed), ("worker retried", report.retried),
            ("worker ongoing", report.ongoing), ("worker saw queued", report.queued))  # fmt: skip


def report_notes(report: HealthReport | None) -> list[str]:
    """What a queue page says about its worker report."""
    if report is None:
        return ["No Arq worker has reported on this queue within its health-check interval."]
    counters = report.text.split(" ", 2)[-1]
    age, interval = report.age_seconds, report.interval_seconds
    if age is None:
        head = f"Worker report written {report.text[:15]} by the worker's clock (a time that cannot be placed here)"
    else:
        head = f"Worker report {age:,.0f} s old" + (f" (written every {interval:,.0f} s)" if interval is not None else "")
    notes = [f"{head}: {counters}. Arq records no per-worker identity: every worker of a queue writes this one "
             "report, so it is the latest one's, and workers is 1 when at least one is alive."]  # fmt: skip
    if report.stale:
        notes.append("The worker report is stale: older than its interval, so no worker has written it in time.")
    elif report.liveness == "unknown":
        notes.append(report.unknown_reason())
    return notes
