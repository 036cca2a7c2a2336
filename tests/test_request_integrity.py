"""Request bodies that do not end properly, and text that is not UTF-8, are refused before any
handler runs: raw sockets against a real server (`python -m match.http.server`, what `match
serve` runs: 2 workers, embedded store) on loopback.

- A multipart body without its closing boundary (cut inside or after any of its parts) is a 400
  and nothing is stored, even though every byte of its Content-Length arrived.
- A body shorter than its Content-Length, or a chunked body without its last chunk, whose client
  then closes its side of the connection, is a 400 naming how much arrived, on every route of
  both API flavours (the TinEye-style routes answer their envelope with status "fail").
- A parameter whose bytes are not UTF-8 (percent-encoded in the query string or a urlencoded
  body, raw in a multipart part) is a 400 naming the parameter; nothing is stored.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api_server import Api, MatchServer
from match.http.app import ENDPOINTS
from raw_http import read_answer

HARDENING_SUITE = True

BOUNDARY = "integrity-boundary-7f3a"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatchServer]:
    folder = tmp_path_factory.mktemp("integrity")
    env = {"MATCH_DATA_DIR": str(folder / "data"), "WORKER_COUNT": "2"}
    with MatchServer(env, folder / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def api(server: MatchServer) -> Iterator[Api]:
    client = Api(server.url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def image(photo_paths: list[Path]) -> bytes:
    return photo_paths[0].read_bytes()


# -- raw HTTP ----------------------------------------------------------------------------------
def exchange(server: MatchServer, request: bytes, *, close_input: bool = False) -> tuple[int, dict]:
    """Send ``request`` on a new connection (then, with ``close_input``, shut down the sending
    side, as a client that stops early does) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(request)
        if close_input:
            sock.shutdown(socket.SHUT_WR)
        status, head, answer = read_answer(sock)
    assert b"content-type: application/json" in head.lower(), head[:300]
    return status, answer


def http_request(
    method: str, path: str, body: bytes, content_type: str, *, length: int | None = None
) -> bytes:
    """A request with ``body`` and a Content-Length (``length``, default the body's)."""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


def multipart(*parts: tuple[str, bytes, str | None]) -> bytes:
    """A complete multipart body of (name, data, filename or None) parts."""
    chunks = []
    for name, data, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        chunks.append(f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode())
        chunks.append(data + b"\r\n")
    chunks.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(chunks)


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def add_body(filepath: str, image: bytes) -> bytes:
    return multipart(
        ("filepath", filepath.encode(), None),
        ("image", image, "photo.jpg"),
        ("metadata", b'{"kept": true}', None),
    )


def stored(api: Api, filepath: str) -> bool:
    return filepath in api.ok("GET", "/list", params={"limit": 1000})


# -- a multipart body without its closing boundary -------------------------------------------------
def test_a_whole_multipart_add_is_stored_with_its_metadata(
    server: MatchServer, api: Api, image: bytes
) -> None:
    filepath = f"whole-{uuid.uuid4().hex[:8]}.jpg"
    status, body = exchange(
        server, http_request("POST", "/add", add_body(filepath, image), MULTIPART)
    )
    assert (status, body["status"]) == (200, "ok"), body
    found = {match["filepath"]: match for match in api.search(image)}
    assert found[filepath]["metadata"] == {"kept": True}
    api.ok("DELETE", "/delete", params={"filepath": filepath})


# Where the body stops: inside each part, and just before the end of the closing boundary.
CUTS = {
    "in the filepath part": lambda body: body[: body.index(b"whole-path") + 3],
    "in the image part": lambda body: body[: body.index(b'filename="photo.jpg"') + 400],
    "in the metadata part": lambda body: body[: body.index(b'{"kept"') + 4],
    "after the metadata data": lambda body: body[: body.rindex(b"\r\n--")],
    "before the closing dashes": lambda body: body[: body.rindex(b"--\r\n")],
}


@pytest.mark.parametrize("cut", list(CUTS), ids=list(CUTS))
def test_a_multipart_add_without_its_closing_boundary_is_refused_and_not_stored(
    server: MatchServer, api: Api, image: bytes, cut: str
) -> None:
    body = CUTS[cut](add_body("whole-path.jpg", image))
    filepath = f"cut-{uuid.uuid4().hex[:8]}.jpg"
    body = body.replace(b"whole-path.jpg", filepath.encode()).replace(b"whole-path", b"cut-")
    status, answer = exchange(server, http_request("POST", "/add", body, MULTIPART))
    assert (status, answer["status"]) == (400, "fail"), answer
    assert "closing boundary" in answer["error"][0]
    assert not stored(api, filepath)


def test_a_tineye_add_without_its_closing_boundary_fails_in_its_envelope(
    server: MatchServer, api: Api, image: bytes
) -> None:
    filepath = f"cut-tineye-{uuid.uuid4().hex[:8]}.jpg"
    body = multipart(("filepath", filepath.encode(), None), ("image", image, "photo.jpg"))
    cut = body[: body.rindex(b"\r\n--")]
    status, answer = exchange(server, http_request("POST", "/rest/add/", cut, MULTIPART))
    assert (status, answer["status"]) == (200, "fail"), answer  # MatchEngine's convention
    assert "closing boundary" in answer["error"][0]
    assert not stored(api, filepath)


# -- the client stops sending before the body ended ------------------------------------------------
ROUTES = sorted({(endpoint.path, endpoint.methods[0]) for endpoint in ENDPOINTS})


def _check_incomplete(path: str, status: int, answer: dict, detail: str) -> None:
    expected = 200 if path.startswith("/rest/") else 400
    assert (status, answer["status"]) == (expected, "fail"), answer
    assert "The request body ended" in answer["error"][0] and detail in answer["error"][0]


@pytest.mark.parametrize(("path", "method"), ROUTES, ids=[f"{m} {p}" for p, m in ROUTES])
def test_a_body_shorter_than_its_content_length_is_refused_on_every_route(
    server: MatchServer, path: str, method: str
) -> None:
    body = b"filepath=short.jpg&limit=5"
    request = http_request(method, path, body, "application/x-www-form-urlencoded", length=1000)
    status, answer = exchange(server, request, close_input=True)
    _check_incomplete(path, status, answer, f"after {len(body)} of its 1000 bytes")


@pytest.mark.parametrize("path", ["/add", "/rest/add/"])
def test_a_multipart_add_shorter_than_its_content_length_is_refused_and_not_stored(
    server: MatchServer, api: Api, image: bytes, path: str
) -> None:
    filepath = f"short-{uuid.uuid4().hex[:8]}.jpg"
    body = add_body(filepath, image)
    sent = body[: body.index(b'{"kept"')]  # the image whole, the metadata missing
    request = http_request("POST", path, sent, MULTIPART, length=len(body))
    status, answer = exchange(server, request, close_input=True)
    _check_incomplete(path, status, answer, f"after {len(sent)} of its {len(body)} bytes")
    assert not stored(api, filepath)


@pytest.mark.parametrize("path", ["/add", "/rest/add/"])
def test_a_chunked_add_without_its_last_chunk_is_refused_and_not_stored(
    server: MatchServer, api: Api, image: bytes, path: str
) -> None:
    filepath = f"chunked-{uuid.uuid4().hex[:8]}.jpg"
    body = add_body(filepath, image)  # whole: only the chunked framing ends early
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 4096]), body[i : i + 4096])
        for i in range(0, len(body), 4096)
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {MULTIPART}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    status, answer = exchange(server, head + chunks, close_input=True)  # no b"0\r\n\r\n"
    _check_incomplete(path, status, answer, "before the last chunk")
    assert not stored(api, filepath)
    whole = exchange(server, head + chunks + b"0\r\n\r\n", close_input=True)
    assert whole[0] == 200 and whole[1]["status"] == "ok", whole
    assert stored(api, filepath)


def test_a_whole_request_from_a_client_that_closes_its_side_is_answered(
    server: MatchServer,
) -> None:
    body = b"limit=5"
    request = http_request("POST", "/list", body, "application/x-www-form-urlencoded")
    status, answer = exchange(server, request, close_input=True)
    assert (status, answer["status"]) == (200, "ok"), answer


# -- text that is not UTF-8 -------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/add", "/rest/add/"])
def test_a_filepath_not_utf8_in_the_query_string_is_refused(
    server: MatchServer, api: Api, image: bytes, path: str
) -> None:
    body = multipart(("image", image, "photo.jpg"))
    request = http_request("POST", f"{path}?filepath=bad%FF%FE.jpg", body, MULTIPART)
    status, answer = exchange(server, request)
    _check_not_utf8(path, status, answer, "filepath")
    assert not any(filepath.startswith("bad") for filepath in api.ok("GET", "/list"))


@pytest.mark.parametrize("path", ["/delete", "/rest/delete/"])
def test_a_filepath_not_utf8_in_a_urlencoded_body_is_refused(
    server: MatchServer, path: str
) -> None:
    request = http_request(
        "DELETE" if path == "/delete" else "POST",
        path,
        b"filepath=bad%FF%FE.jpg",
        "application/x-www-form-urlencoded",
    )
    status, answer = exchange(server, request)
    _check_not_utf8(path, status, answer, "filepath")


@pytest.mark.parametrize("path", ["/add", "/rest/add/"])
def test_a_filepath_not_utf8_in_a_multipart_part_is_refused_and_not_stored(
    server: MatchServer, api: Api, image: bytes, path: str
) -> None:
    body = multipart(("filepath", b"bad\xff\xfe.jpg", None), ("image", image, "photo.jpg"))
    status, answer = exchange(server, http_request("POST", path, body, MULTIPART))
    _check_not_utf8(path, status, answer, "filepath")
    assert not any(filepath.startswith("bad") for filepath in api.ok("GET", "/list"))


def test_utf8_filepaths_are_stored_as_sent(server: MatchServer, api: Api, image: bytes) -> None:
    filepath = f"naïve-日本-{uuid.uuid4().hex[:6]}.jpg"
    body = multipart(("filepath", filepath.encode(), None), ("image", image, "photo.jpg"))
    status, answer = exchange(server, http_request("POST", "/add", body, MULTIPART))
    assert (status, answer["status"]) == (200, "ok"), answer
    assert stored(api, filepath)
    gone = httpx.request("DELETE", server.url + "/delete", params={"filepath": filepath})
    assert gone.status_code == 200 and not stored(api, filepath)


def _check_not_utf8(path: str, status: int, answer: dict, name: str) -> None:
    expected = 200 if path.startswith("/rest/") else 400
    assert (status, answer["status"]) == (expected, "fail"), answer
    assert answer["error"][0].startswith(f"Parameter '{name}' is not valid UTF-8"), answer
