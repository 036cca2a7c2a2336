"""uvicorn's HTTP/1.1 protocol with a deadline for request headers (``match.http.server`` uses it).

uvicorn closes idle keep-alive connections, but not a connection whose request headers never
complete: a client that connects and sends nothing, or trickles a header byte every few seconds,
holds one of the worker's MAX_CONNECTIONS_PER_WORKER slots forever, and a few hundred such
clients make the worker answer 503 to everyone (slowloris). ``HeaderDeadlineProtocol`` closes a
connection whose request line and headers have not all arrived HEADER_TIMEOUT_SECONDS after it
opened or after the previous response ended. The body has its own deadline (match.http.limits).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_SECONDS = 10.0


class HeaderDeadlineProtocol(H11Protocol):
    header_timeout = HEADER_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
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
