"""Match's HTTP API from Python: ``Client`` (blocking) and ``AsyncClient`` (asyncio), on httpx.

    from match.client import Client

    with Client("http://127.0.0.1:8888", api_key="s3cret") as match:
        match.add("photos/cat.jpg", image="cat.jpg", metadata={"id": 7})
        for found in match.search(image="copy-of-cat.jpg", min_score=80):
            print(found["score"], found["filepath"])

One method per route, named like it (``add``, ``search``, ``compare``, ``delete``, ``count``,
``list``, ``duplicates``, ``ping``, ``collections``, ``drop_collection``, ``thumbnail``,
``access``, and ``search_hashes`` for ``POST /hashes/search``); each returns the envelope's
result (a list, or the one value of routes that answer one; ``thumbnail`` the image's bytes).
An image is given as ``image=`` (bytes, a path, or a binary file object), ``url=``, or, for
search and compare, the ``filepath=`` of a stored image. Other keyword options are sent as the
route's parameters (``min_score=80``, ``collection="shop-12"``, ``filter={"shop": 12}``):
booleans as true/false, dicts as JSON.

An error answer is raised as the exception of its status from ``match.errors`` (400
BadParameter, 401 Unauthorized, 403 Forbidden, 404 NotFound, 409 IncompatibleRecord, 413
TooLarge, 415 UnsupportedFormat, 502 UpstreamError, 503 StoreUnavailable; any other status a
MatchError whose ``status`` is that status), with the server's message. No answer at all
(refused, timed out) is ``ServiceUnreachable``. A warning in the envelope (an unknown parameter)
is issued as a ``MatchWarning``.

Adding a route: a function building its ``Call`` below, and a one-line method in each class.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from match import errors

ImageInput = bytes | str | os.PathLike[str] | IO[bytes]
Result = Any

DEFAULT_TIMEOUT = 120.0  # seconds: a search with partial matching on a large store can take a while

ERRORS_BY_STATUS: dict[int, type[errors.MatchError]] = {
    error.status: error
    for error in (
        errors.BadParameter,
        errors.Unauthorized,
        errors.Forbidden,
        errors.NotFound,
        errors.IncompatibleRecord,
        errors.TooLarge,
        errors.UnsupportedFormat,
        errors.UpstreamError,
        errors.StoreUnavailable,
    )
}


class MatchWarning(UserWarning):
    """A warning the server put in its answer (an unknown parameter it ignored)."""


# -- what each route sends -------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One request: HTTP method, path, fields, uploads, and how to read the result list."""

    method: str
    path: str
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    unpack: Callable[[list[Any]], Result] = list
    file: bool = False  # a success answers a file (its bytes are the result), not the envelope


def _add(
    filepath: str,
    image: ImageInput | None,
    url: str | None,
    metadata: Mapping[str, Any] | None,
    options: dict[str, Any],
) -> Call:
    fields = {"filepath": filepath, "metadata": metadata, **options}
    files = _image_source(fields, image=("image", image), url=("url", url))
    return Call("POST", "/add", _fields(fields), files, _nothing)


def _search(
    image: ImageInput | None, url: str | None, filepath: str | None, options: dict[str, Any]
) -> Call:
    fields = {**options, "filepath": filepath}
    files = _image_source(fields, image=("image", image), url=("url", url))
    return Call("POST", "/search", _fields(fields), files)


def _search_hashes(hashes: Iterable[str | bytes], options: dict[str, Any]) -> Call:
    # an upload, one hash a line: a list of any length within the upload limit
    lines = "".join(f"{h.hex() if isinstance(h, bytes) else h}\n" for h in hashes)
    files = {"file": ("hashes.txt", lines.encode("ascii", errors="replace"))}
    return Call("POST", "/hashes/search", _fields(options), files)


def _compare(images: dict[str, Any], options: dict[str, Any]) -> Call:
    fields: dict[str, Any] = dict(options)
    files: dict[str, tuple[str, bytes]] = {}
    for suffix in ("1", "2"):
        fields[f"filepath{suffix}"] = images[f"filepath{suffix}"]
        files |= _image_source(
            fields,
            image=(f"image{suffix}", images[f"image{suffix}"]),
            url=(f"url{suffix}", images[f"url{suffix}"]),
        )
    return Call("POST", "/compare", _fields(fields), files, _single)


def _delete(filepath: str, options: dict[str, Any]) -> Call:
    return Call("DELETE", "/delete", _fields({"filepath": filepath, **options}), unpack=_nothing)


def _count(options: dict[str, Any]) -> Call:
    return Call("POST", "/count", _fields(options), unpack=_single)


def _list(offset: int, limit: int, options: dict[str, Any]) -> Call:
    return Call("POST", "/list", _fields({"offset": offset, "limit": limit, **options}))


def _duplicates(offset: int, limit: int, options: dict[str, Any]) -> Call:
    return Call("GET", "/duplicates", _fields({"offset": offset, "limit": limit, **options}))


def _collections() -> Call:
    return Call("GET", "/collections")


def _drop_collection(collection: str) -> Call:
    return Call("DELETE", "/collections", {"collection": collection}, unpack=_single)


def _ping() -> Call:
    return Call("GET", "/ping", unpack=_nothing)


def _thumbnail(filepath: str, options: dict[str, Any]) -> Call:
    return Call("GET", "/thumbnail", _fields({"filepath": filepath, **options}), file=True)


def _access() -> Call:
    return Call("GET", "/access", unpack=_single)


def _nothing(result: list[Any]) -> None:
    return None


def _single(result: list[Any]) -> Any:
    return result[0]


def _image_source(
    fields: dict[str, Any],
    *,
    image: tuple[str, ImageInput | None],
    url: tuple[str, str | None],
) -> dict[str, tuple[str, bytes]]:
    """Put a URL in the fields; return an image as an upload. The server says which one is
    missing or doubled, so that the client's message is the API's."""
    fields[url[0]] = url[1]
    name, value = image
    return {} if value is None else {name: _upload(value)}


def _upload(image: ImageInput) -> tuple[str, bytes]:
    if isinstance(image, bytes | bytearray | memoryview):
        return "image", bytes(image)
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        try:
            return path.name, path.read_bytes()
        except OSError as error:
            raise errors.BadParameter(f"{path}: {error.strerror or error}") from None
    return Path(getattr(image, "name", "image")).name, image.read()


def _fields(values: Mapping[str, Any]) -> dict[str, str]:
    """Form fields as the API reads them; None is left out."""
    fields = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            fields[name] = "true" if value else "false"
        elif isinstance(value, Mapping):
            fields[name] = json.dumps(value)
        else:
            fields[name] = str(value)
    return fields


# -- the answer ----------------------------------------------------------------------------------
def _result(call: Call, response: httpx.Response) -> Result:
    """The call's result from the envelope, or the error the envelope names, raised."""
    if call.file and response.status_code == 200:
        return response.content
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "status" not in body:
        raise _error_of(
            response.status_code,
            f"{call.method} {call.path} answered {response.status_code} without the JSON "
            f"envelope: {response.text[:200]!r}",
        )
    for warning in body.get("warning") or ():
        warnings.warn(str(warning), MatchWarning, stacklevel=4)
    if response.status_code >= 400 or body["status"] != "ok":
        message = "; ".join(str(error) for error in body.get("error") or ()) or "error"
        raise _error_of(response.status_code, message)
    return call.unpack(list(body.get("result") or []))


def _error_of(status: int, message: str) -> errors.MatchError:
    error = ERRORS_BY_STATUS.get(status, errors.MatchError)(message)
    error.status = status  # the answer's own status, also for the classes shared by several
    return error


def _request_arguments(call: Call) -> dict[str, Any]:
    if call.method in ("GET",):
        return {"params": call.fields}
    if call.files:
        return {"data": call.fields, "files": call.files}
    return {"data": call.fields}


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _unreachable(url: str, error: httpx.TransportError) -> errors.ServiceUnreachable:
    return errors.ServiceUnreachable(f"No answer from {url}: {error or type(error).__name__}")


# -- the clients ---------------------------------------------------------------------------------
class Client:
    """A blocking client of the Match server at ``url``; ``api_key`` when MATCH_API_KEYS is set.
    Use it as a context manager, or call ``close()``."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    def add(
        self,
        filepath: str,
        image: ImageInput | None = None,
        *,
        url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        """Store an image (a file, bytes or ``url=``) under ``filepath``, replacing any."""
        return self._call(_add(filepath, image, url, metadata, options))

    def search(
        self,
        image: ImageInput | None = None,
        *,
        url: str | None = None,
        filepath: str | None = None,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """Stored images like the query, best first: dicts of score, filepath, metadata, ..."""
        return self._call(_search(image, url, filepath, options))

    def search_hashes(self, hashes: Iterable[str | bytes], **options: Any) -> list[dict[str, Any]]:
        """Each PDQ hash (hex, or 32 bytes) looked up at once: a dict of ``pdq`` and its
        ``matches`` (as search answers them) per hash, in their order."""
        return self._call(_search_hashes(hashes, options))

    def compare(
        self,
        image1: ImageInput | None = None,
        image2: ImageInput | None = None,
        *,
        url1: str | None = None,
        url2: str | None = None,
        filepath1: str | None = None,
        filepath2: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """The score of the second image against the first, and how it matched."""
        images = dict(
            image1=image1, image2=image2, url1=url1, url2=url2, filepath1=filepath1,
            filepath2=filepath2,
        )  # fmt: skip
        return self._call(_compare(images, options))

    def delete(self, filepath: str, **options: Any) -> None:
        return self._call(_delete(filepath, options))

    def count(self, **options: Any) -> int:
        return self._call(_count(options))

    def list(self, offset: int = 0, limit: int = 20, **options: Any) -> list[str]:
        return self._call(_list(offset, limit, options))

    def duplicates(self, offset: int = 0, limit: int = 20, **options: Any) -> list[dict[str, Any]]:
        return self._call(_duplicates(offset, limit, options))

    def collections(self) -> list[dict[str, Any]]:
        return self._call(_collections())

    def drop_collection(self, collection: str) -> dict[str, Any]:
        return self._call(_drop_collection(collection))

    def ping(self) -> None:
        return self._call(_ping())

    def thumbnail(self, filepath: str, **options: Any) -> bytes:
        return self._call(_thumbnail(filepath, options))

    def access(self) -> dict[str, Any]:
        return self._call(_access())

    # -- plumbing ------------------------------------------------------------------------------
    def _call(self, call: Call) -> Any:
        try:
            response = self._http.request(call.method, call.path, **_request_arguments(call))
        except httpx.TransportError as error:
            raise _unreachable(self.url, error) from error
        return _result(call, response)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncClient:
    """The same methods as ``Client``, each a coroutine. Use ``async with``, or ``aclose()``."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=_headers(api_key), timeout=timeout, transport=transport
        )

    async def add(
        self,
        filepath: str,
        image: ImageInput | None = None,
        *,
        url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        return await self._call(_add(filepath, image, url, metadata, options))

    async def search(
        self,
        image: ImageInput | None = None,
        *,
        url: str | None = None,
        filepath: str | None = None,
        **options: Any,
    ) -> list[dict[str, Any]]:
        return await self._call(_search(image, url, filepath, options))

    async def search_hashes(
        self, hashes: Iterable[str | bytes], **options: Any
    ) -> list[dict[str, Any]]:
        return await self._call(_search_hashes(hashes, options))

    async def compare(
        self,
        image1: ImageInput | None = None,
        image2: ImageInput | None = None,
        *,
        url1: str | None = None,
        url2: str | None = None,
        filepath1: str | None = None,
        filepath2: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        images = dict(
            image1=image1, image2=image2, url1=url1, url2=url2, filepath1=filepath1,
            filepath2=filepath2,
        )  # fmt: skip
        return await self._call(_compare(images, options))

    async def delete(self, filepath: str, **options: Any) -> None:
        return await self._call(_delete(filepath, options))

    async def count(self, **options: Any) -> int:
        return await self._call(_count(options))

    async def list(self, offset: int = 0, limit: int = 20, **options: Any) -> list[str]:
        return await self._call(_list(offset, limit, options))

    async def duplicates(
        self, offset: int = 0, limit: int = 20, **options: Any
    ) -> list[dict[str, Any]]:
        return await self._call(_duplicates(offset, limit, options))

    async def collections(self) -> list[dict[str, Any]]:
        return await self._call(_collections())

    async def drop_collection(self, collection: str) -> dict[str, Any]:
        return await self._call(_drop_collection(collection))

    async def ping(self) -> None:
        return await self._call(_ping())

    async def thumbnail(self, filepath: str, **options: Any) -> bytes:
        return await self._call(_thumbnail(filepath, options))

    async def access(self) -> dict[str, Any]:
        return await self._call(_access())

    async def _call(self, call: Call) -> Any:
        try:
            response = await self._http.request(call.method, call.path, **_request_arguments(call))
        except httpx.TransportError as error:
            raise _unreachable(self.url, error) from error
        return _result(call, response)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
