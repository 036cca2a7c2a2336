"""Match's exception tree. Every error a client can cause or see is one of these.

    MatchError                      base; ``status`` is the HTTP status the API answers with
    ├── BadParameter (400)          a missing, malformed or contradictory request parameter
    ├── NotAnImage (400)            the bytes are not an image any decoder understands
    ├── UnsupportedFormat (415)     an image, but in a format Match does not read (SVG, ...)
    ├── BlankImage (400)            decodes, but is featureless: its signature is all zeros
    ├── TooLarge (413)              a body, image or URL download over a configured limit
    ├── FetchError (400)            a URL that is refused or cannot be fetched
    │   └── UpstreamError (502)     the remote server answered with an error or broke off
    ├── Unauthorized (401)          a missing or unknown API key
    ├── Forbidden (403)             an API key that may not act on this collection
    ├── NotFound (404)              an unknown filepath or collection
    ├── IncompatibleRecord (409)    a stored record made by another signature algorithm/version
    ├── StoreUnavailable (503)      the embedded store or the search engine cannot be reached
    │   └── StoreDamaged (503)      the store is damaged (a malformed file, missing rows, a
    │                               missing or wrongly mapped index): refused until repaired
    └── ServiceUnreachable          (match.client) no answer from the Match server at all

The HTTP layer turns each into the one error envelope; the CLI into a one-line message; the
client (match.client) turns an error envelope back into the class of its status.
Engine-specific exceptions (sqlite3, HTTP client errors) are translated into this tree in one
place per store implementation and never reach a client.
"""

from __future__ import annotations


class MatchError(Exception):
    """Base class: ``str(error)`` is a message fit for an API client."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadParameter(MatchError):
    status = 400


class NotAnImage(MatchError):
    status = 400


class UnsupportedFormat(MatchError):
    status = 415


class BlankImage(MatchError):
    status = 400


class TooLarge(MatchError):
    status = 413


class FetchError(MatchError):
    status = 400


class UpstreamError(FetchError):
    status = 502


class Unauthorized(MatchError):
    status = 401


class Forbidden(MatchError):
    status = 403


class NotFound(MatchError):
    status = 404


class IncompatibleRecord(MatchError):
    status = 409


class StoreUnavailable(MatchError):
    status = 503


class StoreDamaged(StoreUnavailable):
    """Damage was seen: the store answers nothing from it (never a wrong result) until it is
    repaired (``match check --repair``) or restored."""


class ServiceUnreachable(MatchError):
    """The client could not reach the server (refused, timed out, broken off): no status."""

    status = 503
