"""The Starlette application: ``create_app(settings)`` builds it; one per worker process.

Routes: dsys/match's API (``match.http.api.ENDPOINTS``), TinEye MatchEngine's under ``/rest/``
(``match.http.tineye.ENDPOINTS``), ``/openapi.json``, ``/docs`` and the web page (``/`` to a
browser, ``/ui/``: ``match.http.page``). Every answer, errors included,
is the JSON envelope of ``match.http.envelope``; an unknown route is 404 and a wrong method 405,
both naming the method from the path.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from match.errors import MatchError
from match.http import api, duplicates, hashes, health, tineye, web
from match.http.auth import access_control
from match.http.docs import render_docs
from match.http.endpoints import AppContext, Endpoint, starlette_route
from match.http.envelope import fail, method_name, ok
from match.http.limits import BODY_TIMEOUT_SECONDS, RequestLimits
from match.http.metrics import instrument
from match.http.openapi import openapi
from match.http.page import page_response, page_routes, wants_page
from match.http.slashes import TrailingSlash
from match.service import Matcher
from match.settings import Settings

log = logging.getLogger("match.http")

# Every API route the app serves, in the order the docs list them.
ENDPOINTS: tuple[Endpoint, ...] = (
    *api.ENDPOINTS,
    *health.ENDPOINTS,
    *duplicates.ENDPOINTS,
    *hashes.ENDPOINTS,
    *web.ENDPOINTS,
    *tineye.ENDPOINTS,
)


def create_app(
    settings: Settings | None = None,
    *,
    matcher: Matcher | None = None,
    endpoints: Sequence[Endpoint] = ENDPOINTS,
    body_timeout: float = BODY_TIMEOUT_SECONDS,
) -> Starlette:
    """The app for ``settings`` (default: read from the environment). ``matcher`` lets a caller
    share an already opened Matcher; by default each app opens its own on first use.
    ``body_timeout``: seconds a client has to send its request body (then 408)."""
    settings = settings if settings is not None else Settings.from_env()
    context = AppContext(settings, matcher)
    spec = openapi(endpoints)
    routes: list[BaseRoute] = [starlette_route(endpoint, context) for endpoint in endpoints]
    routes += _description_routes(spec, endpoints)
    paths = {endpoint.path for endpoint in endpoints} | {"/openapi.json", "/docs", "/metrics"}
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(TrailingSlash, paths=paths),  # before keys: "/ping/" is open as "/ping"
            *access_control(settings),  # keys first: no body is read for a refused request
            Middleware(RequestLimits, max_bytes=context.max_body_bytes, body_timeout=body_timeout),
        ],
        exception_handlers={HTTPException: _http_error, MatchError: _match_error},
        lifespan=_lifespan(context),
    )
    app.router.redirect_slashes = False  # match.http.slashes answers them instead
    instrument(app, lambda: context.matcher)  # /metrics, access log (match.http.metrics)
    app.state.context = context
    app.state.openapi = spec
    return app


def _description_routes(spec: dict, endpoints: Sequence[Endpoint]) -> list[BaseRoute]:
    page = render_docs(spec)
    index = [
        {"path": endpoint.path, "methods": list(endpoint.methods), "summary": endpoint.summary}
        for endpoint in endpoints
    ]

    async def routes(request: Request) -> Response:
        # GET /: the web page for a browser (match.http.page); for any other client, what a new
        # user (or a probe) finds at the root, in the envelope like every answer
        if wants_page(request.scope):
            return page_response()
        answer = ok("index", index)
        answer.headers["Vary"] = "Accept"
        return answer

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(spec)

    async def docs(request: Request) -> Response:
        return HTMLResponse(page)

    return [
        Route("/openapi.json", openapi_json, methods=["GET"], include_in_schema=False),
        Route("/docs", docs, methods=["GET"], include_in_schema=False),
        Route("/", routes, methods=["GET"], include_in_schema=False),
        *page_routes(),
    ]


def _lifespan(context: AppContext):
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Open the store at startup, its indexes ready, so problems show in the log at once
        # and no search waits for them; a failure is not fatal (requests answer 503 and retry).
        try:
            await anyio.to_thread.run_sync(lambda: context.matcher.store.prepare())
        except MatchError as error:
            log.error("The store is not available yet: %s", error.message)
        yield
        await anyio.to_thread.run_sync(context.close)

    return lifespan


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    method = method_name(request.url.path)
    if error.status_code == 404:
        return fail(method, 404, f"Not found: no route {request.url.path}")
    if error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        return fail(
            method,
            405,
            f"Method {request.method} is not allowed on {request.url.path}; use {allowed}",
            headers=error.headers,
        )
    return fail(method, error.status_code, str(error.detail))


async def _match_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, MatchError)
    return fail(method_name(request.url.path), error.status, error.message)
