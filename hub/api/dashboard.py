"""The operator dashboard: one page served by the hub, over the same JSON API.

``GET /`` and ``GET /dashboard`` answer the page; ``/dashboard/app.js`` and
``/dashboard/app.css`` its script and style sheet. All three are package data
(``hub/api/static/``): no build step, nothing fetched from the internet, no CDN.

They are public and hold no data. The page asks for an API token, keeps it in the tab's
``sessionStorage`` (never in a URL, a cookie or a log line) and polls the API with
``Authorization: Bearer``: /flows, /topics, /dead-letters, /metrics (the exact count of open dead
letters), /approvals?overdue=true and /review when those routes exist. A strict Content Security
Policy allows only this origin's script, style and API: no inline script, no third party.

The routes are left out of the OpenAPI document: they are a page, not the API.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from fastapi import APIRouter, Response

router = APIRouter(include_in_schema=False)

CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
_TYPES = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


@lru_cache(maxsize=len(_TYPES))
def asset(name: str) -> bytes:
    """One of the page's files, read once from the package."""
    return resources.files("hub.api.static").joinpath(name).read_bytes()


def _serve(name: str) -> Response:
    return Response(asset(name), media_type=_TYPES[name], headers=HEADERS)


@router.get("/")
@router.get("/dashboard")
async def page() -> Response:
    """The dashboard page (public: it holds no data; it asks for a token)."""
    return _serve("dashboard.html")


@router.get("/dashboard/app.js")
async def script() -> Response:
    return _serve("dashboard.js")


@router.get("/dashboard/app.css")
async def style() -> Response:
    return _serve("dashboard.css")
