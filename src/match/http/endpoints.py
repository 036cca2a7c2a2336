"""The route table's building blocks: ``Endpoint`` (path, HTTP methods, declared parameters and
a blocking handler) and ``AppContext`` (settings, fetch limits, this worker's Matcher).

``starlette_route(endpoint)`` turns an Endpoint into a Starlette route whose request handling is
the same for every endpoint: read the declared parameters, run the handler in a worker thread
(image decoding and store calls are blocking and CPU-bound, and must not stall the event loop),
wrap the result in the envelope, and turn any error into the error envelope. The TinEye-style
routes and the OpenAPI description are built from the same Endpoint values.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from match.errors import MatchError
from match.fetch import FetchLimits
from match.http.auth import allowed_collections, key_is_read_only
from match.http.envelope import fail, ok
from match.http.params import Param, Params
from match.service import Matcher
from match.settings import Settings
from match.sizes import human_size

log = logging.getLogger("match.http")

# Image work runs in threads; more concurrent decodes per worker than this only add memory
# (a decoded 100-megapixel image is several hundred MB) without adding throughput.
WORK_THREADS = 4

# Room in a request body beyond the upload cap for multipart framing and the text fields.
FORM_OVERHEAD_BYTES = 1024 * 1024


class AppContext:
    """What the handlers of one worker process share: settings, fetch limits, the Matcher.

    The Matcher (and its store) is opened on first use and reopened after a failure, so a worker
    started while the store is unreachable answers 503 and recovers once it is back."""

    def __init__(self, settings: Settings, matcher: Matcher | None = None) -> None:
        self.settings = settings
        self.fetch_limits = FetchLimits.from_settings(settings)
        self.max_body_bytes = settings.match_max_upload_bytes + FORM_OVERHEAD_BYTES
        self.limiter = anyio.CapacityLimiter(WORK_THREADS)
        self._matcher = matcher
        self._lock = threading.Lock()

    @property
    def matcher(self) -> Matcher:
        with self._lock:
            if self._matcher is None:
                matcher = Matcher(self.settings)
                matcher.store  # noqa: B018 - open the store now, under the lock, once
                self._matcher = matcher
            return self._matcher

    def close(self) -> None:
        with self._lock:
            if self._matcher is not None:
                self._matcher.close()
                self._matcher = None


# Returns the envelope's result list (or an Answer, or a Response for a file); or, for an
# endpoint with its own responder, what it renders.
Handler = Callable[[AppContext, Params], Any]


@dataclass(frozen=True)
class Answer:
    """A handler's result list with extra top-level keys of the envelope (after the four), for
    answers that say more than dsys/match's result did without changing it."""

    result: list[Any]
    extra: dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """One API method: ``handler(context, params)`` returns the envelope's ``result`` list."""

    path: str
    methods: tuple[str, ...]
    name: str  # the envelope's "method"
    summary: str
    handler: Handler
    params: tuple[Param, ...] = ()
    result: dict[str, Any] = field(default_factory=dict)  # JSON schema of one result item
    errors: tuple[int, ...] = (400,)  # statuses documented besides 200
    # Builds the request handler; None: the dsys/match envelope with HTTP error statuses below.
    # (The TinEye-style routes answer 200 with the failure inside the envelope.)
    responder: Responder | None = None
    # Media types of a 200 answer that is not the envelope (an export's file); None: the envelope.
    media: tuple[str, ...] | None = None


Responder = Callable[[Endpoint, AppContext], Callable[[Request], Awaitable[Response]]]


def starlette_route(endpoint: Endpoint, context: AppContext) -> Route:
    return Route(
        endpoint.path,
        (endpoint.responder or _responder)(endpoint, context),
        methods=list(endpoint.methods),
        name=endpoint.name,
        include_in_schema=False,
    )


def _responder(endpoint: Endpoint, context: AppContext) -> Callable[[Request], Awaitable[Response]]:
    async def respond(request: Request) -> Response:
        params: Params | None = None
        try:
            params = await Params.read(
                request, endpoint.params, context.settings.match_max_upload_bytes
            )
            params.allowed_collections = allowed_collections(request.scope)
            params.read_only = key_is_read_only(request.scope)
            result = await anyio.to_thread.run_sync(
                endpoint.handler, context, params, limiter=context.limiter
            )
        except MatchError as error:
            return fail(endpoint.name, error.status, error.message, **_warnings(endpoint, params))
        except HTTPException as error:  # from Starlette's form parser
            return _form_error(endpoint.name, error, context.settings.match_max_upload_bytes)
        except ClientDisconnect:
            return fail(endpoint.name, 400, "The client disconnected before sending the body")
        except Exception:
            # Never a stack trace to the client; the log has it.
            log.exception("%s %s failed", request.method, request.url.path)
            return fail(endpoint.name, 500, "Internal server error (logged on the server)")
        if isinstance(result, Response):  # a file (a thumbnail), not the envelope
            return result
        if isinstance(result, Answer):
            return ok(endpoint.name, result.result, **result.extra, **_warnings(endpoint, params))
        return ok(endpoint.name, result, **_warnings(endpoint, params))

    respond.__name__ = f"{endpoint.name}_endpoint"
    return respond


def _warnings(endpoint: Endpoint, params: Params | None) -> dict[str, list[str]]:
    """``{"warning": [...]}`` naming each parameter the route does not take (nothing when all
    are known, so dsys/match's envelope keeps its four keys)."""
    unknown = params.unknown() if params is not None else []
    if not unknown:
        return {}
    known = [param.name for param in endpoint.params]
    messages = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        takes = ", ".join(known) or "no parameters"
        messages.append(f"Unknown parameter '{name}' ignored ({endpoint.path} takes {takes}){hint}")
    return {"warning": messages}


def _form_error(method: str, error: HTTPException, max_bytes: int) -> Response:
    if "maximum size" in str(error.detail):
        return fail(
            method,
            413,
            f"A form field is larger than {human_size(max_bytes)} (MATCH_MAX_UPLOAD_BYTES)",
        )
    return fail(method, error.status_code, f"Malformed request body: {error.detail}")
