"""The audit log: who did what to which queue, when, from where, and how it went.

Every action (app/failures/actions.py) and every login attempt is recorded here: one
entry in the state store (the audit page and ``GET /api/v1/audit`` read it
back, newest first) and one JSON line on the ``queuewatch.audit`` logger.
Other writes (alert rules, settings) call ``record`` the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from flask import current_app, g, has_request_context, request

from .logins import client_address

from queuewatch.adapters.store import StateStore

log = logging.getLogger("queuewatch.audit")
MAX_IDS = 100  # ids kept per entry; "count" says how many there were


@dataclass(frozen=True)
class Entry:
    time: str
    user: str
    role: str | None
    action: str
    backend: str | None = None
    system: str | None = None
    queue: str | None = None
    ids: list[str] | str | None = None  # job ids, or "all"
    id_count: int | None = None
    affected: int | None = None
    result: str = "ok"  # "ok", "refused", or "error: ..." ; the action's own outcome
    client: str | None = None
    id: str | None = None  # the store's id, once stored


def _who() -> tuple[str, str | None, str | None]:
    if not has_request_context():
        return "system", None, None
    principal = g.get("principal")
    name, role = (principal.name, principal.role) if principal else ("anonymous", None)
    return name, role, client_address(current_app.extensions["queuewatch.auth"].proxies) if "queuewatch.auth" in current_app.extensions else request.remote_addr


def record(action: str, *, backend: str | None = None, system: str | None = None, queue: str | None = None,
           ids: Sequence[str] | str | None = None, affected: int | None = None, result: str = "ok",
           user: str | None = None, role: str | None = None, store: StateStore | None = None) -> Entry:  # fmt: skip
    """Store and log one entry; the user, role and client come from the request unless given."""
    who, who_role, client = _who()
    id_list = ids if ids is None or isinstance(ids, str) else list(ids)
    entry = Entry(
        time=datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        user=user if user is not None else who,
        role=role if user is not None else who_role,
        action=action, backend=backend, system=system, queue=queue,
        ids=id_list if isinstance(id_list, (str, type(None))) else id_list[:MAX_IDS],
        id_count=None if id_list is None or isinstance(id_list, str) else len(id_list),
        affected=affected, result=result, client=client,
    )  # fmt: skip
    text = json.dumps({k: v for k, v in asdict(entry).items() if k != "id"}, ensure_ascii=False)
    log.info(text)
    target = store if store is not None else current_app.extensions["queuewatch.store"]
    try:
        target.add_audit(text)
    except Exception:  # the action happened; losing its record must not turn it into an error page
        log.exception("could not store the audit entry above")
    return entry


def record_login(name: str, role: str | None, result: str) -> Entry:
    return record("login", result=result, user=name or "?", role=role)


def entries(store: StateStore, limit: int, cursor: str | None = None) -> tuple[list[Entry], str | None]:
    """A page of entries, newest first, and the cursor of the next (older) page."""
    rows = store.audit(limit + 1, cursor)
    known = Entry.__dataclass_fields__
    page = [Entry(**{k: v for k, v in json.loads(text).items() if k in known}, id=entry_id) for entry_id, text in rows[:limit]]
    return page, (page[-1].id if len(rows) > limit and page else None)


def entry_json(entry: Entry) -> dict[str, Any]:
    return asdict(entry)
