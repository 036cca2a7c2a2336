"""Network safety of URL ingestion beyond tests/test_fetch.py: metadata and private addresses
hidden in IPv6 forms, numeric spellings and DNS names, reached directly or through redirects from
a real local server; the total time budget against servers that trickle; and the same refusals
through the HTTP API, where nothing is stored.

Refusing a *private* address after a redirect under the default policy would need a public first
hop (no network here), so redirects are tested with private URLs allowed and a metadata address
as the target, which is refused whatever the policy: that proves each hop is checked."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from api_server import Api, ImageServer, MatchServer
from match.errors import FetchError, UpstreamError
from match.fetch import FetchLimits, address_problem, fetch_image
from match.http.connections import HEADER_TIMEOUT_SECONDS

HARDENING_SUITE = True  # deselected on engines past the first: api_server.HARDENING_STORE_KINDS
# deadlines measured in seconds: run alone, not beside the parallel run's other tests
pytestmark = pytest.mark.alone

LOCAL = FetchLimits(timeout=10, max_bytes=5_000_000, max_redirects=3, allow_private=True)
DEFAULT = FetchLimits(timeout=10, max_bytes=5_000_000, max_redirects=3, allow_private=False)

# The cloud metadata address 169.254.169.254 in other spellings that reach it (httpx refuses
# some numeric spellings as invalid URLs; the others resolve to it and are refused as such).
REFUSED = "cloud metadata address|(not a valid|Invalid) URL"
METADATA_SPELLINGS = [
    "[::ffff:169.254.169.254]",  # IPv4-mapped IPv6
    "[::ffff:a9fe:a9fe]",
    "[64:ff9b::a9fe:a9fe]",  # NAT64
    "[2002:a9fe:a9fe::1]",  # 6to4
    "2852039166",  # one decimal number
    "0xa9fea9fe",  # hexadecimal
    "0251.0376.0251.0376",  # octal
    "169.254.43518",  # a.b.c with a 16-bit last part
]


# -- the address policy, by address ------------------------------------------------------------
@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize(
    "address",
    ["::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::", "169.254.169.254"],
)
def test_metadata_is_refused_in_every_ipv6_form_whatever_the_policy(
    address: str, allow_private: bool
) -> None:
    problem = address_problem(ipaddress.ip_address(address), allow_private=allow_private)
    assert problem == "a cloud metadata address"


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:c0a8:101::", "private"),  # 6to4 of 192.168.1.1
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
    ],
)
def test_private_addresses_inside_ipv6_forms_are_refused_by_default(
    address: str, kind: str
) -> None:
    problem = address_problem(ipaddress.ip_address(address), allow_private=False)
    assert problem is not None and kind in problem


@pytest.mark.parametrize("address", ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"])
def test_public_addresses_inside_ipv6_forms_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), allow_private=False) is None


# -- direct URLs, refused before any connection ------------------------------------------------
@pytest.mark.parametrize("host", METADATA_SPELLINGS)
@pytest.mark.parametrize("limits", [DEFAULT, LOCAL], ids=["default", "private-allowed"])
def test_metadata_spellings_are_refused(host: str, limits: FetchLimits) -> None:
    with pytest.raises(FetchError, match=REFUSED) as caught:
        fetch_image(f"http://{host}/latest/meta-data/", limits)
    assert caught.value.status == 400


def _local_names() -> list[str]:
    """Names that resolve to this machine: localhost spelled oddly, and this host's own name."""
    names = ["LocalHost", "127.1", "0x7f000001", "[::]", "[0:0:0:0:0:ffff:7f00:1]"]
    hostname = socket.gethostname()
    resolved = {info[4][0] for info in socket.getaddrinfo(hostname, 80)}
    if all(address_problem(ipaddress.ip_address(a), allow_private=False) for a in resolved):
        names.append(hostname)
    return names


@pytest.mark.parametrize("host", _local_names())
def test_names_and_spellings_of_this_machine_are_refused_by_default(
    images: ImageServer, photo: Path, host: str
) -> None:
    seen = len(images.seen_hosts)
    with pytest.raises(FetchError, match="MATCH_ALLOW_PRIVATE_URLS"):
        fetch_image(f"http://{host}:{images.port}/files/{photo.name}", DEFAULT)
    assert len(images.seen_hosts) == seen  # refused before connecting


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com@127.0.0.1:{port}/files/{name}",  # userinfo looks like the host
        "http://127.0.0.1:{port}\\@example.com/files/{name}",
        "http://127.0.0.1:{port}#@example.com/",
    ],
)
def test_url_parsing_tricks_do_not_hide_the_real_host(
    images: ImageServer, photo: Path, url: str
) -> None:
    seen = len(images.seen_hosts)
    with pytest.raises(FetchError):
        fetch_image(url.format(port=images.port, name=photo.name), DEFAULT)
    assert len(images.seen_hosts) == seen


# -- through redirects from a real local server ------------------------------------------------
@pytest.mark.parametrize("host", METADATA_SPELLINGS)
def test_redirects_to_metadata_spellings_are_refused(images: ImageServer, host: str) -> None:
    url = f"{images.base}/redirect-to?url=http://{host}/latest/meta-data/"
    with pytest.raises(FetchError, match=REFUSED):
        fetch_image(url, LOCAL)


@pytest.mark.parametrize(
    "target", ["file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1:70/_x", "//[::1"]
)
def test_redirects_to_other_schemes_or_bad_urls_are_refused(
    images: ImageServer, target: str
) -> None:
    with pytest.raises(FetchError, match="'url'"):
        fetch_image(f"{images.base}/redirect-to?url={target}", LOCAL)


# -- time budget against trickling servers ------------------------------------------------------
TRICKLE_SECONDS = 0.25  # between two bytes: far below the read timeout, so only the total counts


class _Trickle(BaseHTTPRequestHandler):
    """/body: a 40-byte body, one byte every TRICKLE_SECONDS. /headers: headers the same way."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        try:
            if self.path == "/body":
                self.send_response(200)
                self.send_header("Content-Length", "40")
                self.end_headers()
                self._trickle(b"\xff" * 40)
            else:
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                self._trickle(b"X-Slow: " + b"a" * 32 + b"\r\nContent-Length: 0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _trickle(self, data: bytes) -> None:
        for byte in data:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(TRICKLE_SECONDS)


@pytest.fixture(scope="module")
def trickle() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_body_trickled_past_the_time_budget_is_an_upstream_error(trickle: str) -> None:
    limits = FetchLimits(timeout=1.0, max_bytes=1000, max_redirects=0, allow_private=True)
    with pytest.raises(UpstreamError, match="took longer than 1 s") as caught:
        fetch_image(f"{trickle}/body", limits)
    assert caught.value.status == 502


def test_headers_trickled_past_the_time_budget_are_an_upstream_error(trickle: str) -> None:
    limits = FetchLimits(timeout=1.0, max_bytes=1000, max_redirects=0, allow_private=True)
    with pytest.raises(UpstreamError, match="took longer than 1 s") as caught:
        fetch_image(f"{trickle}/headers", limits)
    assert caught.value.status == 502


# -- through the HTTP API: refused, nothing stored ---------------------------------------------
@pytest.mark.parametrize("host", ["[::ffff:169.254.169.254]", "2852039166"])
@pytest.mark.parametrize("path", ["/add", "/search", "/compare", "/rest/add/"])
def test_the_api_refuses_metadata_urls_directly_and_after_redirects(
    api: Api, images: ImageServer, host: str, path: str
) -> None:
    before = api.ok("GET", "/list", params={"limit": 10_000})
    metadata_url = f"http://{host}/latest/meta-data/iam/security-credentials/"
    for url in (metadata_url, f"{images.base}/redirect-to?url={metadata_url}"):
        fields = {
            "/add": {"url": url, "filepath": "network/metadata"},
            "/rest/add/": {"url": url, "filepath": "network/metadata"},
            "/search": {"url": url},
            "/compare": {"url1": url, "url2": url},
        }[path]
        status, body = api.call("POST", path, data=fields)
        if path.startswith("/rest/"):
            assert (status, body["status"]) == (200, "fail"), body
        else:
            assert status == 400, body
        assert "cloud metadata address" in " ".join(body["error"]), body
    assert api.ok("GET", "/list", params={"limit": 10_000}) == before


@pytest.fixture(scope="module")
def photo(photo_paths: list[Path]) -> Path:
    return photo_paths[0]


# -- slow clients cannot hold a connection forever (match.http.connections) --------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatchServer]:
    folder = tmp_path_factory.mktemp("slow-clients")
    env = {"MATCH_DATA_DIR": str(folder / "data"), "WORKER_COUNT": "1"}
    server = MatchServer(env, folder / "server.log").start()
    yield server
    server.stop()


def _closed_by_server(sock: socket.socket, trickle: bytes = b"") -> bool:
    """Send ``trickle`` a byte a second (after a partial request line) until the server closes
    the connection; True when it did, False if still open after a generous bound."""
    sock.settimeout(1.0)
    sock.sendall(b"GET /count HTTP/1.1\r\nHost: x\r\n")
    give_up = time.monotonic() + HEADER_TIMEOUT_SECONDS * 6
    position = 0
    while time.monotonic() < give_up:
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            pass
        except ConnectionResetError:
            return True
        if trickle:
            try:
                sock.sendall(trickle[position % len(trickle) :][:1])
            except (BrokenPipeError, ConnectionResetError):
                return True
            position += 1
    return False


@pytest.mark.parametrize("trickle", [b"", b"X-Slow: aaaaaaaa\r\n"], ids=["silent", "trickling"])
def test_a_client_that_never_finishes_its_headers_is_disconnected(
    served: MatchServer, trickle: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        assert _closed_by_server(sock, trickle)
    assert httpx.get(served.url + "/count", timeout=30).status_code == 200


def test_a_request_whose_headers_arrive_is_served_and_the_connection_kept(
    served: MatchServer,
) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        for _ in range(3):
            assert client.get("/count").status_code == 200


def test_a_body_slower_than_the_header_deadline_is_still_served(served: MatchServer) -> None:
    # The header deadline ends with the headers: a slow body has its own, longer deadline.
    body = b"x=" + b"1" * int(HEADER_TIMEOUT_SECONDS + 3)
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        sock.sendall(
            b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded"
            b"\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        for byte in body:
            sock.sendall(bytes([byte]))
            time.sleep(1.0)
        sock.settimeout(30)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
