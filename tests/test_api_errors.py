"""Every error path of the API answers the one error shape: a JSON envelope with status "fail",
the method named (also for 404 and 405), a message that says what is wrong, and no stack trace."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from api_server import STRICT_UPLOAD_BYTES, Api, ImageServer, MatchServer, free_port

HARDENING_SUITE = True  # deselected on engines past the first: api_server.HARDENING_STORE_KINDS


@dataclass(frozen=True)
class Case:
    id: str
    verb: str
    path: str
    status: int
    words: str  # in the error message
    kwargs: dict[str, Any] = field(default_factory=dict)
    server: str = "api"  # or "strict": default URL policy, small caps


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


BLANK = _png(np.full((64, 64, 3), 128, dtype=np.uint8))
NOISE = _png(np.random.default_rng(3).integers(0, 256, (400, 400, 3), dtype=np.uint8))
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
PHOTO = "PHOTO"  # replaced by a real photo's bytes
CHUNKED = "CHUNKED"  # replaced by a 4 MiB body sent in chunks, without a Content-Length


def upload(data: bytes | str, name: str = "image") -> dict[str, Any]:
    return {name: ("upload.jpg", data)}


CASES = [
    # missing, contradictory and malformed parameters
    Case(
        "add-no-filepath", "POST", "/add", 400, "'filepath' is required", {"files": upload(PHOTO)}
    ),
    Case(
        "add-empty-filepath",
        "POST",
        "/add",
        400,
        "'filepath' is required",
        {"data": {"filepath": ""}, "files": upload(PHOTO)},
    ),
    Case(
        "add-long-filepath",
        "POST",
        "/add",
        400,
        "'filepath'",
        {"data": {"filepath": "x" * 8193}, "files": upload(PHOTO)},
    ),
    Case("add-no-image", "POST", "/add", 400, "give 'url' or 'image'", {"data": {"filepath": "a"}}),
    Case(
        "add-url-and-image",
        "POST",
        "/add",
        400,
        "not 'url' and 'image'",
        {"data": {"filepath": "a", "url": "http://example.com/a.jpg"}, "files": upload(PHOTO)},
    ),
    Case(
        "add-metadata-not-json",
        "POST",
        "/add",
        400,
        "'metadata' is not valid JSON",
        {"data": {"filepath": "a", "metadata": "{oops"}, "files": upload(PHOTO)},
    ),
    Case(
        "add-metadata-not-object",
        "POST",
        "/add",
        400,
        "'metadata' must be a JSON object",
        {"data": {"filepath": "a", "metadata": "[1, 2]"}, "files": upload(PHOTO)},
    ),
    Case(
        "add-image-as-text",
        "POST",
        "/add",
        400,
        "'image' must be an uploaded file",
        {"data": {"filepath": "a", "image": "not a file"}},
    ),
    Case(
        "add-filepath-as-file",
        "POST",
        "/add",
        400,
        "'filepath' must be a text value",
        {"files": {"filepath": ("f.txt", b"a"), "image": ("a.jpg", b"x")}},
    ),
    Case(
        "search-limit-not-int",
        "POST",
        "/search",
        400,
        "'limit' must be an integer",
        {"data": {"limit": "ten"}, "files": upload(PHOTO)},
    ),
    Case(
        "search-limit-zero",
        "POST",
        "/search",
        400,
        "'limit' must be between 1 and",
        {"data": {"limit": "0"}, "files": upload(PHOTO)},
    ),
    Case(
        "search-offset-negative",
        "POST",
        "/search",
        400,
        "'offset' must be at least 0",
        {"params": {"offset": "-1"}, "files": upload(PHOTO)},
    ),
    Case(
        "search-min-score-high",
        "POST",
        "/search",
        400,
        "'min_score' must be between 0 and 100",
        {"data": {"min_score": "101"}, "files": upload(PHOTO)},
    ),
    Case(
        "search-min-score-nan",
        "POST",
        "/search",
        400,
        "'min_score' must be a number",
        {"data": {"min_score": "nan"}, "files": upload(PHOTO)},
    ),
    Case(
        "search-bad-boolean",
        "POST",
        "/search",
        400,
        "'all_orientations' must be true/false",
        {"data": {"all_orientations": "maybe"}, "files": upload(PHOTO)},
    ),
    Case("search-nothing", "POST", "/search", 400, "give 'url' or 'image' or 'filepath'"),
    Case(
        "compare-no-second",
        "POST",
        "/compare",
        400,
        "'url2' or 'image2' or 'filepath2'",
        {"files": upload(PHOTO, "image1")},
    ),
    Case(
        "list-limit-negative",
        "GET",
        "/list",
        400,
        "'limit' must be between 1 and",
        {"params": {"limit": "-5"}},
    ),
    Case(
        "list-offset-text",
        "POST",
        "/list",
        400,
        "'offset' must be an integer",
        {"data": {"offset": "first"}},
    ),
    Case("delete-no-filepath", "DELETE", "/delete", 400, "'filepath' is required"),
    Case(
        "malformed-multipart",
        "POST",
        "/add",
        400,
        "",
        {
            "content": b"--zz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--zz--\r\n",
            "headers": {"content-type": "multipart/form-data; boundary=zz"},
        },
    ),
    # images that cannot be used
    Case("not-an-image", "POST", "/search", 400, "not an image", {"files": upload(b"hello")}),
    Case("empty-image", "POST", "/search", 400, "empty", {"files": upload(b"")}),
    Case("svg", "POST", "/add", 415, "SVG", {"data": {"filepath": "s"}, "files": upload(SVG)}),
    Case(
        "blank-image",
        "POST",
        "/add",
        400,
        "blank",
        {"data": {"filepath": "b"}, "files": upload(BLANK)},
    ),
    # unknown filepaths
    Case(
        "delete-unknown",
        "DELETE",
        "/delete",
        404,
        "'no/such/image.jpg'",
        {"data": {"filepath": "no/such/image.jpg"}},
    ),
    Case(
        "search-unknown-filepath",
        "POST",
        "/search",
        404,
        "'no/such/image.jpg'",
        {"data": {"filepath": "no/such/image.jpg"}},
    ),
    # URLs
    Case(
        "url-scheme",
        "POST",
        "/search",
        400,
        "http:// or https://",
        {"data": {"url": "file:///etc/passwd"}},
    ),
    Case(
        "url-unresolvable",
        "POST",
        "/add",
        400,
        "cannot resolve host",
        {"data": {"filepath": "u", "url": "http://nothing.invalid/a.jpg"}},
    ),
    Case(
        "url-upstream-404",
        "POST",
        "/search",
        502,
        "HTTP 404",
        {"data": {"url": "IMAGES/status/404"}},
    ),
    Case(
        "url-too-big",
        "POST",
        "/search",
        413,
        "MATCH_URL_MAX_BYTES",
        {"data": {"url": "IMAGES/endless"}},
    ),
    Case(
        "url-private",
        "POST",
        "/search",
        400,
        "loopback",
        {"data": {"url": "IMAGES/files/x.jpg"}},
        server="strict",
    ),
    # limits
    Case(
        "upload-too-big",
        "POST",
        "/search",
        413,
        "'image'",
        {"files": upload(NOISE)},
        server="strict",
    ),
    Case(
        "body-too-big",
        "POST",
        "/add",
        413,
        "Request body is larger",
        {
            "content": b"x" * (STRICT_UPLOAD_BYTES + 2 * 1024 * 1024),
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        server="strict",
    ),
    Case(
        "chunked-body-too-big",
        "POST",
        "/add",
        413,
        "larger than",
        {
            "content": CHUNKED,
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
        server="strict",
    ),
    # routing
    Case("unknown-route", "GET", "/nope", 404, "no route /nope"),
    Case("unknown-rest-route", "GET", "/rest/nothing/", 404, "no route"),
    Case("wrong-method-add", "GET", "/add", 405, "use POST"),
    Case("wrong-method-delete", "POST", "/delete", 405, "use DELETE"),
    Case("wrong-method-search", "PUT", "/search", 405, "use POST"),
]


def _method_of(path: str) -> str:
    parts = [part for part in path.split("/") if part]
    return parts[1] if parts[0] == "rest" else parts[0]


@pytest.fixture(scope="module")
def photo_bytes(photo_paths: list[Path]) -> bytes:
    return photo_paths[0].read_bytes()


def _resolved(value: Any, photo: bytes, images: ImageServer) -> Any:
    if value == PHOTO:
        return photo
    if value == CHUNKED:
        return iter([b"x" * 1024 * 1024] * 4)
    if isinstance(value, str) and value.startswith("IMAGES"):
        return images.base + value[len("IMAGES") :]
    if isinstance(value, dict):
        return {key: _resolved(item, photo, images) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_resolved(item, photo, images) for item in value)
    return value


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_error_shape(
    case: Case, api: Api, strict: Api, images: ImageServer, photo_bytes: bytes
) -> None:
    client = api if case.server == "api" else strict
    before = client.ok("GET", "/count")
    status, body = client.call(case.verb, case.path, **_resolved(case.kwargs, photo_bytes, images))
    assert status == case.status, body
    assert list(body) == ["status", "error", "method", "result"]
    assert body["status"] == "fail"
    assert body["method"] == _method_of(case.path)
    assert body["result"] == []
    assert len(body["error"]) == 1 and isinstance(body["error"][0], str)
    message = body["error"][0]
    assert case.words.lower() in message.lower()
    assert "Traceback" not in message and 'File "' not in message
    assert client.ok("GET", "/count") == before  # a failed request changes nothing


def test_405_names_the_allowed_methods(api: Api) -> None:
    response = api.client.get("/delete")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE"


# -- the store unavailable: 503 ------------------------------------------------------------------
@pytest.fixture(scope="module", params=["embedded", "engine"])
def unavailable_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    if request.param == "embedded":
        blocker = tmp_path_factory.mktemp("unavailable") / "a-file"
        blocker.write_text("the store folder cannot be created inside a file")
        return {"MATCH_DATA_DIR": str(blocker / "data")}
    return {"ELASTICSEARCH_URL": f"http://127.0.0.1:{free_port()}", "ELASTICSEARCH_TIMEOUT": "2"}


@pytest.fixture(scope="module")
def broken_server(
    unavailable_store: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    server = MatchServer(
        unavailable_store | {"WORKER_COUNT": "1"},
        tmp_path_factory.mktemp("broken") / "server.log",
        ready_status=503,
    ).start()
    client = Api(server.url)
    yield client
    client.close()
    server.stop()


@pytest.mark.parametrize(
    ("verb", "path", "kwargs"),
    [
        ("GET", "/ping", {}),
        ("GET", "/count", {}),
        ("GET", "/list", {}),
        ("DELETE", "/delete", {"data": {"filepath": "a"}}),
        ("POST", "/add", {"data": {"filepath": "a"}, "files": upload(PHOTO)}),
        ("POST", "/search", {"files": upload(PHOTO)}),
    ],
)
def test_store_unavailable_is_503(
    broken_server: Api, photo_bytes: bytes, verb: str, path: str, kwargs: dict[str, Any]
) -> None:
    kwargs = {
        key: (upload(photo_bytes) if key == "files" else value) for key, value in kwargs.items()
    }
    status, body = broken_server.call(verb, path, **kwargs)
    assert status == 503, body
    assert body["status"] == "fail" and body["method"] == path.strip("/")
    assert body["error"][0]
