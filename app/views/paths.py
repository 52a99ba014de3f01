"""Queue names and job ids in URLs: one path segment each, percent-encoded.

A queue may be named ``amb/jobs/x1``. Routed on the decoded path, that name
would open the job ``x1`` of queue ``amb``, and ``a/failed`` would reach the
failed-jobs API of ``a``. So a name is one segment of the URL, its ``/``
encoded as ``%2F`` (what DESIGN.md's API asks of clients, and what ``url_for``
makes); ``RawSegments`` routes on the raw request path (gunicorn's
``RAW_URI``, werkzeug's ``REQUEST_URI``) so that an encoded ``/`` stays inside
its segment; the ``segment`` converter decodes it back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, unquote

from werkzeug.routing import BaseConverter

# Inside PATH_INFO a decoded segment keeps its "/" and "%" escaped (these two only).
_SLASH, _PERCENT = "%2F", "%25"


class SegmentConverter(BaseConverter):
    """One path segment, any characters: ``/`` and ``%`` are carried escaped by ``RawSegments``."""

    regex = "[^/]+"
    part_isolating = True

    def to_python(self, value: str) -> str:
        return value.replace(_SLASH, "/").replace(_PERCENT, "%")

    def to_url(self, value: str) -> str:
        return quote(value, safe="")


class RawSegments:
    """WSGI middleware: PATH_INFO rebuilt from the raw path, each segment decoded but for ``/`` and ``%``."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw:
            path = raw.split("?", 1)[0].split("#", 1)[0]
            if "://" in path:  # an absolute request target: keep only its path
                path = "/" + path.split("://", 1)[1].partition("/")[2]
            if "%" in path:
                segments = [unquote(s, errors="surrogateescape").replace("%", _PERCENT).replace("/", _SLASH) for s in path.split("/")]
                # PATH_INFO is bytes read as latin-1 (PEP 3333)
                environ["PATH_INFO"] = "/".join(segments).encode("utf-8", "surrogateescape").decode("latin-1")
        return self.app(environ, start_response)
