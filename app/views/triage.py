"""Failure triage: failed jobs grouped by cause, across every queue or in one.

``GET /failures`` groups the failed lists of every queue on the Redis backends
(RabbitMQ dead letters are grouped on their own queue's page: reading them is
an inspection, which the operator asks for by opening that page).
``GET /queues/.../groups`` is one queue's groups, as a fragment its page loads.
The API answers the same as JSON. Every grouping walks the lists within a time
budget (app/failures/triage.py), says when the answer is partial, and is shared by
every viewer for ``CACHE_SECONDS``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, redirect, request, url_for

from queuewatch.failures import triage
from queuewatch.failures.inspections import Reader
from queuewatch.failures.triage import Filter, Grouping

from . import htmx, monitor
from . import shapes as serialize
from .failed_lists import require_inspection
from .operations import failing_targets

bp = Blueprint("triage", __name__)
api = Blueprint("triage_api", __name__, url_prefix="/api/v1")
CACHE_SECONDS = 15.0  # a grouping is a few seconds of reading: viewers share one this long
QUEUE = "/queues/<backend>/<system>/<segment:queue>"


def _everywhere(flt: Filter) -> Grouping:
    targets = failing_targets()
    mon = monitor()
    return mon.shared(
        ("groups", "everywhere", tuple(sorted(flt.args().items())), tuple(targets)),
        lambda: mon.costly.run(lambda: triage.groups(((t, mon.adapter(t[0], t[1])) for t in targets), flt)),
        max_age=CACHE_SECONDS,
    )


def _one(backend: str, system: str, queue: str, flt: Filter) -> Grouping:
    mon = monitor()
    adapter = mon.adapter(backend, system)
    where = (backend, system, queue)
    held = require_inspection(backend, system, queue)  # dead letters: the inspection held (409 without one)
    if held is not None:  # pure: its rows are in memory
        return triage.groups([(where, Reader(held.inspection, walk_page=adapter.walk_page))], flt, limit=20)  # type: ignore[list-item]
    return mon.read(backend, ("groups", where, tuple(sorted(flt.args().items()))),
                    lambda: triage.groups([(where, adapter)], flt, limit=20), max_age=CACHE_SECONDS, costly=True)  # fmt: skip


@bp.get("/failures")
def failures() -> Response | Any:
    """Every queue's failed jobs, grouped by fingerprint."""
    if triage.has_blanks(request.args):  # the filter form sends its empty fields: bookmark the short URL
        return redirect(triage.with_query(url_for("triage.failures"), request.args))
    flt = Filter.from_args(request.args)
    return htmx.render("failures.html", "partials/groups.html", grouping=_everywhere(flt), flt=flt, scope="everywhere",
                       snapshot=monitor().snapshot())  # fmt: skip


@bp.get(QUEUE + "/groups")
def queue_groups(backend: str, system: str, queue: str) -> Response:
    """One queue's failed jobs, grouped by fingerprint (a fragment of the queue page)."""
    flt = Filter.from_args(request.args)
    return htmx.render("failures.html", "partials/groups.html", grouping=_one(backend, system, queue, flt), flt=flt,
                       scope="queue", snapshot=monitor().snapshot())  # fmt: skip


# -- API -------------------------------------------------------------------------


def grouping_json(grouping: Grouping) -> dict[str, Any]:
    return {
        "groups": [
            {"fingerprint": f.group.fingerprint, "function": f.group.function, "exception": f.group.error_type,
             "message_pattern": f.group.message_pattern, "count": f.group.count,
             "first_seen": serialize.time_json(f.group.first_seen), "last_seen": serialize.time_json(f.group.last_seen),
             "sample": {"backend": f.sample_in[0], "system": f.sample_in[1], "queue": f.sample_in[2], "id": f.group.sample_id},
             "queues": [{"backend": b, "system": s, "queue": q, "count": n} for (b, s, q), n in f.queues]}
            for f in grouping.groups
        ],
        "examined": grouping.examined, "total": grouping.total, "partial": grouping.partial,
        "elapsed_seconds": round(grouping.elapsed, 3), "errors": list(grouping.errors), "unread_queues": grouping.unread,
    }  # fmt: skip


@api.get("/failures/groups")
def api_failures() -> Response:
    """Every Redis queue's failed jobs grouped by fingerprint, within a time budget."""
    return jsonify(grouping_json(_everywhere(Filter.from_args(request.args))))


@api.get(QUEUE + "/groups")
def api_queue_groups(backend: str, system: str, queue: str) -> Response:
    """One queue's failed jobs grouped by fingerprint, within a time budget."""
    return jsonify(grouping_json(_one(backend, system, queue, Filter.from_args(request.args))))
