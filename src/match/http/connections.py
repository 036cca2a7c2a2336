"""uvicorn's HTTP/1.1 protocol with a deadline for request headers (``match.http.server`` uses it).

uvicorn closes idle keep-alive connections, but not a connection whose request headers never
complete: a client that connects and sends nothing, or trickles a header byte every few seconds,
holds one of the worker's MAX_CONNECTIONS_PER_WORKER slots forever, and a few hundred such
clients make the worker answer 503 to everyone (slowloris). ``HeaderDeadlineProtocol`` closes a
connection whose request line and headers have not all arrived HEADER_TIMEOUT_SECONDS after it
opened or after the previous response ended. The body has its own deadline (match.http.limits).

It also notices a client that closes its side of the connection (end of input) before its
request body ended: uvicorn would close the connection and the request would end as a
disconnect nobody hears about; here the connection stays open for the answer, and the request's
``BodyState`` (in its scope) says the input ended, so match.http.limits answers a 400.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Scope
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_SECONDS = 10.0

# The key of a request's BodyState in its scope's "extensions".
BODY_STATE = "match.body"


class BodyState:
    """What the server knows of a request's body beyond its ASGI messages."""

    def __init__(self) -> None:
        self.input_ended = False  # the client closed its side before the body ended


def body_state(scope: Scope) -> BodyState | None:
    """The request's BodyState; None under a server that does not report it."""
    return (scope.get("extensions") or {}).get(BODY_STATE)


class HeaderDeadlineProtocol(H11Protocol):
    header_timeout = HEADER_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._input_ended = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle
        if cycle is not None:  # a new request's task has not run yet: give it its BodyState
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
            return
        self._arm_header_deadline()  # the next request on this connection gets its own

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

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
