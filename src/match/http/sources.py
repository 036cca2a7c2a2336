"""Where a query image comes from: an uploaded file, a URL, or the filepath of a stored image.

Shared by every route that takes an image (/add, /search, /compare and the TinEye-style routes):
``choose_source`` picks the one parameter the client gave, ``image_bytes`` gets the encoded
image (downloading a URL within the fetch limits) and ``query`` turns any source into the
service's Query (signatures in 1 or 8 orientations, and local features) to search with.
All of it is blocking: call it from a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from match.errors import NotAnImage, TooLarge, UnsupportedFormat
from match.fetch import FetchLimits, fetch_image
from match.http.params import Params
from match.service import Matcher, Query
from match.stores.filters import DEFAULT_COLLECTION


@dataclass(frozen=True)
class ImageSource:
    kind: str  # "url", "image" or "filepath"
    name: str  # the parameter it came from, for messages
    value: str | bytes


def choose_source(
    params: Params, *, url: str = "url", image: str = "image", filepath: str | None = None
) -> ImageSource:
    """The single image source among the given parameter names; BadParameter otherwise."""
    names = [url, image] + ([filepath] if filepath else [])
    name = params.exactly_one(names)
    kind = "url" if name == url else "image" if name == image else "filepath"
    return ImageSource(kind, name, params[name])


def image_bytes(source: ImageSource, limits: FetchLimits) -> bytes:
    """The encoded image of an upload or URL source."""
    if source.kind == "url":
        data = fetch_image(str(source.value), limits, name=source.name)
    else:
        data = bytes(source.value) if isinstance(source.value, bytes) else b""
    if not data:
        raise NotAnImage(f"Parameter '{source.name}' is empty: no image data")
    return data


def query(
    matcher: Matcher,
    source: ImageSource,
    limits: FetchLimits,
    all_orientations: bool,
    collection: str = DEFAULT_COLLECTION,
) -> Query:
    """The query of any source; a stored filepath is looked up in ``collection``."""
    if source.kind == "filepath":
        return matcher.stored_query(str(source.value), all_orientations, collection=collection)
    data = image_bytes(source, limits)
    with naming(source.name):
        return matcher.query(data, all_orientations, name=f"image in '{source.name}'")


@contextmanager
def naming(name: str) -> Iterator[None]:
    """Prefix image errors (not an image, unsupported, too many pixels) with the parameter."""
    try:
        yield
    except (NotAnImage, UnsupportedFormat, TooLarge) as error:
        if error.message.startswith("Parameter"):
            raise
        raise type(error)(f"Parameter '{name}': {error.message}") from None
