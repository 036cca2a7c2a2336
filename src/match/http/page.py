"""The web page (docs/web.md): plain HTML, CSS and JavaScript under ``static/``, served by Match
itself at ``/`` to browsers and under ``/ui/``; no CDN, no build step, works offline.

``GET /`` answers the page when the request accepts ``text/html`` (a browser) and the JSON list
of routes otherwise (curl, httpx and other clients send ``*/*`` or ``application/json``). The
page's own files are code without data: with API keys set they are served without a key, so that
the page can ask for one; every request the page then makes carries it.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

STATIC = Path(__file__).resolve().parent / "static"
PREFIX = "/ui"

# What the page may load: its own files and the API; images also from blob: (thumbnails fetched
# with the key, uploads), data: (the placeholder) and http(s) (filepaths that are URLs, with no
# thumbnail stored). No inline script, no other origin's script or style.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' blob: data: http: https:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # loading a filepath's URL does not tell its host about us
    "Cache-Control": "no-cache",
    "Vary": "Accept",
}


def wants_page(scope: Scope) -> bool:
    """Whether a request of ``/`` is a browser's: it accepts text/html."""
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return b"text/html" in value.lower()
    return False


def is_page_request(scope: Scope) -> bool:
    """A request for one of the page's own files (open with API keys set)."""
    path = scope["path"]
    if scope["method"] not in ("GET", "HEAD"):
        return False
    return path.startswith(PREFIX + "/") or (path == "/" and wants_page(scope))


def page_response() -> Response:
    """The page's HTML."""
    return FileResponse(STATIC / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


class _StaticFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def page_routes() -> list[BaseRoute]:
    """``/ui/<file>``: the page's scripts and styles (``/`` itself is app.py's index route)."""
    return [Mount(PREFIX, app=_StaticFiles(directory=STATIC), name="ui")]
