"""uvicorn's HTTP/1.1 protocol, hardened against idle, slow and cut-short clients
(``match.http.server`` uses it as ``MatchProtocol``).

- **Idle connections cannot starve a worker.** A worker holds at most ``limit_concurrency``
  connections (MAX_CONNECTIONS_PER_WORKER). A connection is *idle* while no request is in
  progress on it: just opened, headers still trickling in, or kept alive after a response. When
  a new connection would pass the cap, the oldest idle one is closed to make room, so a flood of
  idle sockets (however many a client opens, and however often it reopens them) only ever
  costs its own oldest sockets, never a request being served. Only when every connection has a
  request in progress is the new one refused: its request is answered 503 in the JSON envelope
  with ``Retry-After`` (uvicorn's own limit answered a plain-text 503 to everyone).
- **Headers have a deadline.** A connection whose request line and headers have not all arrived
  HEADER_TIMEOUT_SECONDS after it opened, or after its previous response ended, is closed
  (slowloris). The body has its own deadline (match.http.limits).
- **A body cut short is said.** A client that closes its side of the connection (end of input)
  before its request body ended would end as a disconnect nobody hears about; here the
  connection stays open for the answer, and the request's ``BodyState`` (in its scope) says the
  input ended, so match.http.limits answers a 400.
- uvicorn's plain-text 400 for a malformed request is the JSON envelope too.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import h11
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from match.http.envelope import fail, method_name
from match.service.results import envelope

HEADER_TIMEOUT_SECONDS = 10.0
RETRY_AFTER_SECONDS = 1

# The key of a request's BodyState in its scope's "extensions".
BODY_STATE = "match.body"


class BodyState:
    """What the server knows of a request's body beyond its ASGI messages."""

    def __init__(self) -> None:
        self.input_ended = False  # the client closed its side before the body ended


def body_state(scope: Scope) -> BodyState | None:
    """The request's BodyState; None under a server that does not report it."""
    return (scope.get("extensions") or {}).get(BODY_STATE)


async def refuse_busy(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer on a connection accepted beyond the cap while no other was idle."""
    response = fail(
        method_name(scope["path"]),
        503,
        "The server is busy: every connection of this worker has a request in progress; "
        f"retry in {RETRY_AFTER_SECONDS} s",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS), "Connection": "close"},
    )
    await response(scope, receive, send)


class MatchProtocol(H11Protocol):
    header_timeout = HEADER_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the cap is ours (uvicorn's check answers a plain-text 503 and closes nothing)
        self.max_connections: int | None = self.limit_concurrency
        self.limit_concurrency = None
        self._header_timer: asyncio.TimerHandle | None = None
        self._input_ended = False

    @property
    def _idle(self) -> dict[MatchProtocol, None]:
        """This server's idle connections, oldest first (a dict keeps insertion order)."""
        return self.server_state.__dict__.setdefault("match_idle_connections", {})

    # -- connection lifecycle ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._make_room()
        self._became_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._idle.pop(self, None)
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _make_room(self) -> None:
        if self.max_connections is None or len(self.connections) <= self.max_connections:
            return
        idle = self._idle
        if idle:
            oldest = next(iter(idle))
            idle.pop(oldest)
            oldest._close_idle()
        else:  # every connection is serving a request: this one is answered 503
            self.app = refuse_busy

    def _close_idle(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _became_idle(self) -> None:
        self._idle.pop(self, None)
        self._idle[self] = None  # the newest idle: closed last
        self._arm_header_deadline()

    # -- requests ------------------------------------------------------------------------------
    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self._idle.pop(self, None)  # a request in progress: never closed to make room
            # its task has not run yet: give it its BodyState
            extensions = cycle.scope.setdefault("extensions", {})  # type: ignore[typeddict-item]
            extensions.setdefault(BODY_STATE, BodyState())

    def eof_received(self) -> bool | None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return None  # nothing pending: the connection closes
        self._input_ended = True
        if cycle.more_body:
            state = body_state(cycle.scope)  # type: ignore[arg-type]
            if state is not None:
                state.input_ended = True
            cycle.message_event.set()  # wake a receive waiting for more body
        return True  # keep the connection open to send the answer

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._input_ended:
            self.transport.close()  # the client sends nothing more on this connection
        elif not self.transport.is_closing():
            self._became_idle()  # the next request on this connection gets its own deadline

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a request h11 cannot parse, in the envelope like every answer
        message = "Malformed HTTP request: its request line or headers could not be parsed"
        body = json.dumps(envelope("index", (), errors=[message])).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    # -- the header deadline -------------------------------------------------------------------
    def _arm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._header_timer = None
        # No request in progress: its headers have not arrived (a request whose headers did
        # has a cycle, and its body and handler are bounded elsewhere).
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self.transport.is_closing():
            self.transport.close()
