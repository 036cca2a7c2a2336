"""TinEye MatchEngine's wire format: its envelope, its batches, and a responder that always
answers 200.

MatchEngine's clients raise on any HTTP status but 200, so every outcome of a TinEye-style route,
failures included, is a 200 whose envelope says what happened::

    {"method": "search", "status": "ok" | "warn" | "fail", "error": [...],
     "query_image": {...}, "result": [...], "stats": {"time_search": 3.2, "time_total": 4.1}}

``status`` is ``warn`` when a batch partly succeeded. Handlers return a ``Reply``; a
``MatchError`` they raise (or the parameter reading raises) becomes a ``fail`` envelope.

Batches: ``images[0]``, ``urls[0]``, ``filepaths[0]``, ``image_ids[0]``, ``metadata[0]``, ...
(at most MAX_BATCH items) or the single forms ``image``, ``url``, ``filepath``, ... for one item.
``batch_items`` gives one ``Item`` per index, whose fields are read by their single name.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from match.errors import BadParameter, MatchError
from match.http.auth import allowed_collections
from match.http.endpoints import AppContext, Endpoint
from match.http.params import Param, Params, ParamType
from match.service.results import envelope

log = logging.getLogger("match.http")

MAX_BATCH = 10  # MatchEngine: "Each request accepts maximum 10 images or URLs" (or filepaths)

# The envelope's keys in the order MatchEngine's documentation shows them.
_KEY_ORDER = ("method", "status", "error", "query_image", "result", "stats")

# MatchEngine names the timing of a method time_<method>, except update_metadata's.
_TIMING_NAMES = {"update_metadata": "time_update"}


@dataclass
class Reply:
    """What a TinEye-style handler answers. ``partial``: some items of a batch succeeded, so
    errors make the status ``warn`` rather than ``fail``."""

    result: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    partial: bool = False
    query_image: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        if not self.errors:
            return "ok"
        return "warn" if self.partial else "fail"

    def body(self, method: str, stats: dict[str, float]) -> dict[str, Any]:
        extra: dict[str, Any] = (
            {} if self.query_image is None else {"query_image": self.query_image}
        )
        body = envelope(method, self.result, errors=self.errors, **extra, stats=stats)
        body["status"] = self.status
        return {key: body[key] for key in _KEY_ORDER if key in body}


# -- the responder -------------------------------------------------------------------------------
def responder(endpoint: Endpoint, context: AppContext) -> Callable[[Request], Awaitable[Response]]:
    """The request handler of a TinEye-style endpoint (its ``Endpoint.responder``)."""
    timing = _TIMING_NAMES.get(endpoint.name, f"time_{endpoint.name}")
    max_bytes = context.settings.match_max_upload_bytes

    async def respond(request: Request) -> Response:
        started = time.perf_counter()
        worked: float | None = None
        try:
            params = await Params.read(request, endpoint.params, max_bytes)
            params.allowed_collections = allowed_collections(request.scope)
            check_common(params)
            began = time.perf_counter()
            reply = await anyio.to_thread.run_sync(
                endpoint.handler, context, params, limiter=context.limiter
            )
            worked = time.perf_counter() - began
        except MatchError as error:
            reply = Reply(errors=[error.message])
        except HTTPException as error:  # from Starlette's form parser
            reply = Reply(errors=[_body_error(error, max_bytes)])
        except ClientDisconnect:
            reply = Reply(errors=["The client disconnected before sending the body"])
        except Exception:
            # Never a stack trace to the client; the log has it.
            log.exception("%s %s failed", request.method, request.url.path)
            reply = Reply(errors=["Internal server error (logged on the server)"])
        stats = {} if worked is None else {timing: _ms(worked)}
        stats["time_total"] = _ms(time.perf_counter() - started)
        return JSONResponse(reply.body(endpoint.name, stats))

    respond.__name__ = f"tineye_{endpoint.name}_endpoint"
    return respond


def check_common(params: Params) -> None:
    """MatchEngine's common parameters: ``format`` (only json here), ``callback`` (JSONP: refused,
    it would let any web page read the collection through a visitor's browser); ``timeout`` is
    accepted and ignored."""
    fmt = params.raw("format")
    if isinstance(fmt, str) and fmt.strip().lower() != "json":
        raise BadParameter(f"Parameter 'format': only json is supported, not {fmt.strip()!r}")
    if params.given("callback"):
        raise BadParameter("Parameter 'callback': JSONP callbacks are not supported")


def _body_error(error: HTTPException, max_bytes: int) -> str:
    if "maximum size" in str(error.detail):
        return f"A form field is larger than {max_bytes} bytes (MATCH_MAX_UPLOAD_BYTES)"
    return f"Malformed request body: {error.detail}"


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


# -- batches -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """One field of a batch item: its single name, its numbered name's stem, its type."""

    single: str
    plural: str
    type: ParamType


class Item:
    """One item of a batch: ``item["filepath"]`` reads ``filepaths[3]`` (or ``filepath`` for a
    single-item request) by its declared type; ``item.name("filepath")`` is the wire name."""

    def __init__(
        self, params: Params, names: Mapping[str, str], types: Mapping[str, ParamType]
    ) -> None:
        self._names = dict(names)
        declared = [Param(names[key], types[key], "") for key in names]
        self.params = Params(declared, params.values)

    def name(self, key: str) -> str:
        return self._names[key]

    def __getitem__(self, key: str) -> Any:
        return self.params[self._names[key]]

    def given(self, key: str) -> bool:
        return self.params.given(self._names[key])

    def raw(self, key: str) -> Any:
        return self.params.raw(self._names[key])


_NUMBERED = re.compile(r"^(?P<stem>[a-z_]+)\[(?P<index>[^\]]*)\]$")


def batch_items(params: Params, fields: Iterable[Field], what: str) -> list[Item]:
    """The items of a request, in index order: one per index N of the numbered parameters, or
    one from the single parameters. BadParameter if both forms are mixed, an index is not a
    number, or there are more than MAX_BATCH ``what`` (e.g. "images")."""
    fields = list(fields)
    stems = {f.plural for f in fields}
    indices: set[int] = set()
    singles = False
    for name in params.names():
        if not params.given(name):
            continue
        found = _NUMBERED.match(name)
        if found and found["stem"] in stems:
            indices.add(_index(name, found["stem"], found["index"]))
        elif any(name == f.single for f in fields):
            singles = True
    if indices and singles:
        examples = ", ".join(f"'{f.single}'" for f in fields)
        raise BadParameter(
            f"Give either single parameters ({examples}) or numbered ones "
            f"('{fields[0].plural}[0]', ...), not both"
        )
    if len(indices) > MAX_BATCH:
        raise BadParameter(
            f"At most {MAX_BATCH} {what} per request, got {len(indices)}: "
            "send them in several requests"
        )
    types = {f.single: f.type for f in fields}
    if not indices:
        return [Item(params, {f.single: f.single for f in fields}, types)] if singles else []
    return [
        Item(params, {f.single: f"{f.plural}[{index}]" for f in fields}, types)
        for index in sorted(indices)
    ]


def _index(name: str, stem: str, text: str) -> int:
    if not re.fullmatch(r"0|[1-9][0-9]{0,8}", text):
        raise BadParameter(
            f"Parameter '{name}': the index must be a number without leading zeros, "
            f"as in '{stem}[0]'"
        )
    return int(text)


def each_item(
    items: Iterable[Item], work: Callable[[Item], None], label: Callable[[Item], str]
) -> Reply:
    """Run ``work`` on every item; a failed item is reported as "<label>: <message>" without
    stopping the others."""
    reply = Reply()
    for item in items:
        try:
            work(item)
        except MatchError as error:
            reply.errors.append(f"{label(item)}: {error.message}")
        else:
            reply.partial = True
    return reply
