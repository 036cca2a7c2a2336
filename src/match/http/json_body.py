"""Request bodies besides forms: a JSON object, read as the same parameters a form would give.

``{"filepath": "a.jpg", "url": "https://...", "metadata": {"id": 7}, "limit": 5}`` is the JSON
form of the fields of /add or /search: each member is a parameter; objects and arrays (metadata,
filter) are passed on as their JSON text, numbers and booleans as their text, null as not given.
A file cannot travel in JSON: send an image by ``url`` or stored ``filepath``, or upload it as
multipart/form-data. A body of any other type is refused with the types that are read, instead
of being ignored (which answered "Missing parameter" with no hint why).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from match.errors import BadParameter, UnsupportedFormat

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
JSON_TYPES = ("application/json",)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(request: Request) -> bool:
    kind = media_type(request)
    return kind in JSON_TYPES or kind.endswith("+json")


async def json_values(request: Request) -> dict[str, list[str]]:
    """The parameters of a JSON object body, as the text values a form gives."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise BadParameter(f"The request body is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise BadParameter(
            f"The JSON request body must be an object of parameters ({{...}}), "
            f"got {type(value).__name__}"
        )
    return {name: [text] for name, member in value.items() if (text := _text(member)) is not None}


async def refuse_unread_body(request: Request) -> None:
    """UnsupportedFormat (415) for a non-empty body that is neither a form nor JSON."""
    kind = media_type(request)
    if request.method in ("GET", "HEAD") or kind in FORM_TYPES or is_json(request):
        return
    if not (await request.body()).strip():
        return
    shown = kind or "none"
    raise UnsupportedFormat(
        f"The request body's Content-Type ({shown}) is not read: send multipart/form-data, "
        "application/x-www-form-urlencoded or application/json"
    )


def _text(member: Any) -> str | None:
    if member is None:
        return None
    if isinstance(member, bool):
        return "true" if member else "false"
    if isinstance(member, str):
        return member
    try:
        return json.dumps(member, ensure_ascii=False)
    except (ValueError, RecursionError):
        raise BadParameter("The JSON request body is nested too deeply") from None
