"""The routes the web page needs beyond dsys/match's (docs/web.md): a stored image's thumbnail,
and what the request's API key may do (so the page shows no button a key would refuse)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from match.errors import NotFound
from match.http.endpoints import AppContext, Endpoint
from match.http.params import Param, Params
from match.http.scoping import COLLECTION, collection_of
from match.service.thumbnails import MEDIA_TYPE


def thumbnail(context: AppContext, params: Params) -> Response:
    filepath = params["filepath"]
    found = context.matcher.thumbnail(filepath, collection=collection_of(params))
    if found is None:
        raise NotFound(
            f"No thumbnail is stored for {filepath!r} (it was added with MATCH_THUMBNAILS=false "
            "or before Match stored thumbnails)"
        )
    headers = {"Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}
    if found.size is not None:
        headers["X-Image-Width"], headers["X-Image-Height"] = map(str, found.size)
    return Response(found.image, media_type=MEDIA_TYPE, headers=headers)


def access(context: AppContext, params: Params) -> list[dict[str, Any]]:
    read_only = params.read_only
    allowed = params.allowed_collections
    return [
        {
            "keys": read_only is not None,
            "read_only": bool(read_only),
            "collections": None if allowed is None else sorted(allowed),
        }
    ]


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "/thumbnail",
        ("GET",),
        "thumbnail",
        "The thumbnail stored with an image (WebP, long side 256 px; headers X-Image-Width and "
        "X-Image-Height give the stored image's size, to scale outlines onto it); 404 if none "
        "is stored.",
        thumbnail,
        (Param("filepath", "string", "The stored image's filepath.", required=True), COLLECTION),
        errors=(400, 403, 404, 503),
        media=(MEDIA_TYPE,),
    ),
    Endpoint(
        "/access",
        ("GET",),
        "access",
        "What the request's API key may do: keys (whether the server needs one), read_only, and "
        "collections (the ones it is limited to, or null).",
        access,
        result={
            "type": "object",
            "properties": {
                "keys": {"type": "boolean"},
                "read_only": {"type": "boolean"},
                "collections": {"type": "array", "nullable": True, "items": {"type": "string"}},
            },
        },
        errors=(),
    ),
)
