"""``/health/live`` and ``/health/ready``: the probes of load balancers, Docker and Kubernetes.

``/ping`` keeps dsys/match's meaning (the store answers a read). ``/health/live`` says only
that this process answers requests: it never touches the store, so an engine outage or a
damaged store does not get healthy processes restarted. ``/health/ready`` says whether the
service can serve now: the store opens, reads and commits a write, it is not flagged as
damaged, its disk has room (MATCH_MIN_FREE_MB) and, on an engine, the index has the fields
Match needs and accepts writes; 503 lists in the envelope's ``error`` everything that failed.
Both are open without an API key, like ``/ping``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from starlette.requests import Request
from starlette.responses import Response

from match.errors import MatchError
from match.http.endpoints import AppContext, Endpoint
from match.http.envelope import fail, ok
from match.http.params import Params

PATHS = ("/health/live", "/health/ready")


def _live_responder(
    endpoint: Endpoint, context: AppContext
) -> Callable[[Request], Awaitable[Response]]:
    async def respond(request: Request) -> Response:
        if refused := await _body_refused(endpoint, request):
            return refused
        return ok(endpoint.name)  # in the event loop: no worker thread, no store

    return respond


def _ready_responder(
    endpoint: Endpoint, context: AppContext
) -> Callable[[Request], Awaitable[Response]]:
    async def respond(request: Request) -> Response:
        if refused := await _body_refused(endpoint, request):
            return refused
        try:
            problems = await anyio.to_thread.run_sync(
                lambda: context.matcher.readiness(), limiter=context.limiter
            )
        except MatchError as error:  # the store cannot even be opened
            problems = [error.message]
        if problems:
            return fail(endpoint.name, 503, *problems)
        return ok(endpoint.name)

    return respond


async def _body_refused(endpoint: Endpoint, request: Request) -> Response | None:
    """Read the body as every other route does, so one cut short is refused here too (a probe
    sends none: this costs it nothing)."""
    try:
        await request.body()
    except MatchError as error:
        return fail(endpoint.name, error.status, error.message)
    return None


def _unused(context: AppContext, params: Params) -> list:
    return []  # the responders above answer: these routes take no parameters


ENDPOINTS = (
    Endpoint(
        "/health/live",
        ("GET",),
        "health/live",
        "Liveness: ok while the process answers requests; never touches the store.",
        _unused,
        errors=(),
        responder=_live_responder,
    ),
    Endpoint(
        "/health/ready",
        ("GET",),
        "health/ready",
        "Readiness: ok when the store opens, reads and commits a write, is not damaged, has "
        "free disk space and (on an engine) a sound index; 503 lists what failed.",
        _unused,
        errors=(503,),
        responder=_ready_responder,
    ),
)
