"""The one response shape of the API (match.service.results.envelope), as HTTP responses, for
dsys/match's routes and the TinEye-style routes alike.

``ok`` and ``fail`` build the JSON responses; extra top-level keys (TinEye's ``stats``,
``query_image``) can be passed as keywords. ``method_name`` names the method from a path, so even
a 404 or 405 says which method the client was calling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse

from match.service.results import envelope


def ok(method: str, result: Sequence[Any] = (), **extra: Any) -> JSONResponse:
    return JSONResponse(envelope(method, result, **extra))


def fail(
    method: str, status: int, *messages: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    body = envelope(method, (), errors=messages or ("error",), **extra)
    return JSONResponse(body, status_code=status, headers=headers)


def method_name(path: str) -> str:
    """The method a path names: "/add" → "add", "/rest/search/" → "search", "/" → "index"."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 2 and parts[0] == "rest":
        return parts[1]
    return "/".join(parts) or "index"
