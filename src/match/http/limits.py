"""ASGI middleware that bounds what one request may cost before a handler sees it.

- The body may not exceed ``max_bytes``: a larger Content-Length is answered 413 at once, and a
  body without one (chunked) fails with 413 as soon as it passes the cap while being read.
- The body must arrive within ``body_timeout`` seconds, so a client that trickles bytes cannot
  hold a worker's connection forever (408).
- The body must end properly: a client that closes its side of the connection before the last
  byte of its Content-Length, or before the last chunk of a chunked body, gets a 400
  (``IncompleteBody``) instead of a request handled as if the body were whole. The server's
  protocol (match.http.connections) reports that end of input in the request's scope.
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from match.errors import BadParameter, MatchError, TooLarge
from match.http.connections import body_state
from match.http.envelope import fail, method_name
from match.sizes import human_size

# Seconds a client has to send its whole request body.
BODY_TIMEOUT_SECONDS = 60.0


class SlowRequest(MatchError):
    """The client did not send its request body in time."""

    status = 408


class IncompleteBody(BadParameter):
    """The request body ended before it was complete (400): nothing was done."""


class RequestLimits:
    def __init__(
        self, app: ASGIApp, *, max_bytes: int, body_timeout: float = BODY_TIMEOUT_SECONDS
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = fail(
                method_name(scope["path"]),
                413,
                self._too_large().message,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, self._limited(scope, receive, declared), send)

    def _too_large(self) -> TooLarge:
        return TooLarge(
            f"Request body is larger than {human_size(self.max_bytes)} "
            "(MATCH_MAX_UPLOAD_BYTES plus 1 MiB for the form)"
        )

    def _limited(self, scope: Scope, receive: Receive, declared: int | None) -> Receive:
        received = 0
        body_done = False
        cut_short = False  # the input ended before this body did: the next receive fails
        state = body_state(scope)
        deadline = anyio.current_time() + self.body_timeout

        def incomplete() -> IncompleteBody:
            sent = (
                f"after {received} of its {declared} bytes (Content-Length)"
                if declared is not None
                else f"after {received} bytes, before the last chunk of a chunked body"
            )
            return IncompleteBody(
                f"The request body ended {sent}: the client closed the connection before "
                "sending all of it, so nothing was done"
            )

        async def limited_receive() -> Message:
            nonlocal received, body_done, cut_short
            if body_done:  # later receives only wait for a disconnect: no deadline
                return await receive()
            if cut_short:
                raise incomplete()
            remaining = max(deadline - anyio.current_time(), 0.0)
            with anyio.move_on_after(remaining) as scope:
                message = await receive()
            if scope.cancelled_caught:
                raise SlowRequest(f"The request body did not arrive within {self.body_timeout:g} s")
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
                body_done = not message.get("more_body", False)
                if not body_done and state is not None and state.input_ended:
                    # every byte that came before the end of input is in this message
                    if not message.get("body"):
                        raise incomplete()
                    cut_short = True
            return message

        return limited_receive


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
