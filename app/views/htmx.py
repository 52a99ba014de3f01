"""Page or fragment: one decision for every view.

An htmx request for a refreshing component gets only the partial; a normal
load, a boosted link or a history restore gets the whole page.
"""

from __future__ import annotations

from typing import Any

from flask import Response, make_response, render_template, request


def wants_fragment() -> bool:
    headers = request.headers
    return (
        headers.get("HX-Request") == "true"
        and headers.get("HX-Boosted") != "true"
        and headers.get("HX-History-Restore-Request") != "true"
    )


def render(page_template: str, fragment_template: str, status: int = 200, **context: Any) -> Response:
    """Render the fragment for htmx, else the page (which includes the fragment)."""
    template = fragment_template if wants_fragment() else page_template
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response
