"""Trailing slashes: ``/search/`` is answered as ``/search``, and ``/rest/search`` as the TinEye
route ``/rest/search/``, instead of Starlette's empty 307 redirect (which a POST with a body
cannot follow without sending it again). The path is rewritten before routing, keys and
metrics, so each of them sees the route's own path."""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send


class TrailingSlash:
    """ASGI middleware: a path that is not a route, but is one with its trailing slash added or
    removed, becomes that route's path."""

    def __init__(self, app: ASGIApp, *, paths: Iterable[str]) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path not in self.paths and path != "/":
                other = path[:-1] if path.endswith("/") else path + "/"
                if other in self.paths:
                    scope["path"] = other
                    scope["raw_path"] = other.encode()
        await self.app(scope, receive, send)
