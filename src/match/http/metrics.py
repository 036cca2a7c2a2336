"""Prometheus metrics at ``/metrics`` and the JSON access log, for several worker processes.

``instrument(app, matcher)`` is the one call the app makes: it adds a middleware that counts and
times every request by endpoint (the route's path template, so the label set stays small) and
writes one access-log line per request, times signatures and searches (an observer in
``match.service.TIMING_OBSERVERS``), and serves ``/metrics`` in Prometheus text format (not part
of the dsys/match API: no envelope).

Several uvicorn workers each count their own requests, so the server calls
``prepare_multiprocess()`` before it starts them: every worker then keeps its values in files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, chosen when the library is
first imported) and a scrape through any worker adds up all of them. Only counters and histograms
are used, which need no clean-up when a worker dies. Images stored is read from the store at
scrape time, so it is right whichever worker answers.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Match as RouteMatch
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from match.errors import MatchError
from match.http.logs import ACCESS_LOGGER
from match.service import TIMING_OBSERVERS, Matcher

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"  # endpoint label of requests no route matched (404s)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "match_http_requests", "HTTP requests answered.", ["method", "endpoint", "status"]
)
ERRORS = Counter(
    "match_http_errors", "HTTP requests answered with a 4xx or 5xx status.", ["endpoint", "status"]
)
LATENCY = Histogram(
    "match_http_request_duration_seconds",
    "Time from request to the end of the response body.",
    ["method", "endpoint"],
    buckets=_LATENCY_BUCKETS,
)
SIGNATURE = Histogram(
    "match_signature_seconds",
    "Time to decode an image and compute its signatures: orientations=1 for one, "
    "orientations=8 for all orientations of a query.",
    ["orientations"],
    buckets=_LATENCY_BUCKETS,
)
SEARCH = Histogram(
    "match_search_seconds",
    "Time the store takes to answer a search of 1 or 8 query signatures (orientations).",
    ["orientations"],
    buckets=_LATENCY_BUCKETS,
)

LOCAL_FEATURES = Histogram(
    "match_local_features_seconds",
    "Time to extract an image's local features (partial matching), decoding excluded.",
    buckets=_LATENCY_BUCKETS,
)
LOCAL_SEARCH = Histogram(
    "match_local_search_seconds",
    "Time of a search's partial matching: the store's candidates and their verification.",
    buckets=_LATENCY_BUCKETS,
)

PDQ_HASH = Histogram(
    "match_pdq_seconds",
    "Time to compute an image's PDQ hash: orientations=1 upright, 8 the dihedral hashes.",
    ["orientations"],
    buckets=_LATENCY_BUCKETS,
)
PDQ_SEARCH = Histogram(
    "match_pdq_search_seconds",
    "Time the store takes to look up 1 or 8 PDQ hashes (docs/pdq.md).",
    ["orientations"],
    buckets=_LATENCY_BUCKETS,
)
PDQ_SEARCH_BATCH = Histogram(
    "match_pdq_search_batch_seconds",
    "Time the store takes to look up a batch of PDQ hashes (POST /hashes/search).",
    buckets=_LATENCY_BUCKETS,
)

access_log = logging.getLogger(ACCESS_LOGGER)


# -- multiprocess set-up (called by the server before it starts the workers) --------------------


def prepare_multiprocess(workers: int) -> Path | None:
    """Give the worker processes a shared, empty metrics folder; None when one process serves.

    Uses PROMETHEUS_MULTIPROC_DIR if set (emptied of a previous run's files), else a new
    temporary folder removed at exit. Must run before the workers start: they inherit the variable.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        return folder
    if workers <= 1:
        return None
    folder = Path(tempfile.mkdtemp(prefix="match-metrics-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def _multiprocess_values() -> bool:
    """True if this process keeps its metrics in files (decided when prometheus_client loads)."""
    return values.ValueClass is not values.MutexValue


# -- the middleware ------------------------------------------------------------------------------


class MetricsMiddleware:
    """Counts, times and logs each HTTP request under its route's path template; an error's
    line gives the reason from its envelope."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = ()) -> None:
        self.app = app
        self.routes = routes  # to name the route of a request refused before routing (401/403)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        response: dict[str, int] = {"status": 500, "bytes": 0}
        error_body = bytearray()

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                response["bytes"] += len(body)
                if response["status"] >= 400 and len(error_body) < MAX_ERROR_BODY:
                    error_body.extend(body[: MAX_ERROR_BODY - len(error_body)])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The router records the matched route in the scope it was given (this one).
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or _route_path(self.routes, scope)
            _record(
                scope,
                endpoint,
                response["status"],
                response["bytes"],
                time.perf_counter() - started,
                _reason(bytes(error_body)) if response["status"] >= 400 else None,
            )


MAX_ERROR_BODY = 16 * 1024  # of an error answer, read for its reason


def _route_path(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The path template of the route a request was for, when it was answered before routing
    (a 401 or 403 of the access control); UNMATCHED when no route has its path."""
    for route in routes:
        matched, _ = route.matches(scope)
        if matched is not RouteMatch.NONE:
            return getattr(route, "path", None) or UNMATCHED
    return UNMATCHED


def _reason(body: bytes) -> str:
    """The envelope's error messages, or the start of a body that is not an envelope."""
    try:
        errors = json.loads(body).get("error")
    except (ValueError, AttributeError):
        errors = None
    if isinstance(errors, list) and errors:
        return "; ".join(str(error) for error in errors)[:1000]
    return body[:200].decode("utf-8", "replace") or "(no body)"


def _record(
    scope: Scope, endpoint: str, status: int, size: int, seconds: float, reason: str | None
) -> None:
    method = scope["method"]
    REQUESTS.labels(method, endpoint, str(status)).inc()
    LATENCY.labels(method, endpoint).observe(seconds)
    if status >= 400:
        ERRORS.labels(endpoint, str(status)).inc()
    client = scope.get("client")
    access_log.log(
        logging.ERROR if status >= 500 else logging.INFO,
        "%s %s %d%s",
        method,
        scope["path"],
        status,
        f": {reason}" if reason else "",
        extra={
            "method": method,
            "path": scope["path"],
            "endpoint": endpoint,
            "status": status,
            "reason": reason,
            "duration_ms": round(seconds * 1000, 3),
            "response_bytes": size,
            "client": client[0] if client else None,
            "user_agent": _header(scope, b"user-agent"),
        },
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


# -- signature and search timings ----------------------------------------------------------------


def _observe_timing(operation: str, signatures: int, seconds: float) -> None:
    if operation == "local":
        LOCAL_FEATURES.observe(seconds)
    elif operation == "local_search":
        LOCAL_SEARCH.observe(seconds)
    elif operation == "pdq_search_batch":
        PDQ_SEARCH_BATCH.observe(seconds)
    elif operation in ("pdq", "pdq_search"):
        (PDQ_HASH if operation == "pdq" else PDQ_SEARCH).labels(str(signatures)).observe(seconds)
    else:
        histogram = SIGNATURE if operation == "signature" else SEARCH
        histogram.labels(str(signatures)).observe(seconds)


# -- /metrics ------------------------------------------------------------------------------------

MatcherSource = Callable[[], Matcher]  # this worker's Matcher, opened on first use


class StoreCollector(Collector):
    """Images stored and whether the store answers, read when Prometheus scrapes."""

    def __init__(self, matcher: MatcherSource) -> None:
        self.matcher = matcher

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("match_store_up", "1 if the store answered this scrape, else 0.")
        try:
            count = self.matcher().count()
        except MatchError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily("match_images_stored", "Images in the store.", value=count)


def exposition(matcher: MatcherSource) -> bytes:
    """Every worker's request metrics plus the store gauges, in Prometheus text format."""
    store = CollectorRegistry(auto_describe=False)
    store.register(StoreCollector(matcher))
    if _multiprocess_values():
        requests = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(requests)
    else:
        requests = REGISTRY
    return generate_latest(requests) + generate_latest(store)


def metrics_endpoint(matcher: MatcherSource) -> Callable[[Request], Any]:
    async def metrics(_request: Request) -> Response:
        body = await run_in_threadpool(exposition, matcher)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


def instrument(app: Starlette, matcher: MatcherSource) -> None:
    """Add the metrics and access-log middleware and the /metrics route; time signatures and
    searches. ``matcher`` returns the worker's Matcher (called at scrape time)."""
    if _observe_timing not in TIMING_OBSERVERS:
        TIMING_OBSERVERS.append(_observe_timing)
    app.add_middleware(MetricsMiddleware, routes=app.routes)
    app.add_route(
        "/metrics",
        metrics_endpoint(matcher),
        methods=["GET"],
        name="metrics",
        include_in_schema=False,
    )
