"""URL ingestion against a real local HTTP server: limits, redirects and the address policy."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from api_server import ImageServer, free_port
from match.errors import FetchError, TooLarge, UpstreamError
from match.fetch import FetchLimits, address_problem, fetch_image

LOCAL = FetchLimits(timeout=10, max_bytes=5_000_000, max_redirects=3, allow_private=True)


@pytest.fixture(scope="module")
def images(photo_paths: list[Path]) -> Iterator[ImageServer]:
    with ImageServer(photo_paths[0].parent) as server:
        yield server


@pytest.fixture(scope="module")
def photo(photo_paths: list[Path]) -> Path:
    return photo_paths[0]


def test_fetches_the_exact_bytes(images: ImageServer, photo: Path) -> None:
    assert fetch_image(images.url(photo.name), LOCAL) == photo.read_bytes()


def test_keeps_the_url_host_in_the_host_header(images: ImageServer, photo: Path) -> None:
    # The connection goes to the checked address; the server still sees the URL's host name.
    url = f"http://localhost:{images.port}/files/{photo.name}"
    assert fetch_image(url, LOCAL) == photo.read_bytes()
    assert images.seen_hosts[-1] == f"localhost:{images.port}"


def test_follows_redirects_up_to_the_limit(images: ImageServer, photo: Path) -> None:
    assert fetch_image(f"{images.base}/redirect/3/{photo.name}", LOCAL) == photo.read_bytes()
    with pytest.raises(FetchError, match="redirects more than 3 times"):
        fetch_image(f"{images.base}/redirect/4/{photo.name}", LOCAL)


def test_no_redirects_allowed(images: ImageServer, photo: Path) -> None:
    limits = FetchLimits(timeout=10, max_bytes=5_000_000, max_redirects=0, allow_private=True)
    with pytest.raises(FetchError, match="redirects more than 0 times"):
        fetch_image(f"{images.base}/redirect/1/{photo.name}", limits)


@pytest.mark.parametrize("status", [404, 500, 403])
def test_remote_http_errors_are_upstream_errors(images: ImageServer, status: int) -> None:
    with pytest.raises(UpstreamError, match=f"HTTP {status}") as caught:
        fetch_image(f"{images.base}/status/{status}", LOCAL, name="url1")
    assert caught.value.status == 502
    assert "Parameter 'url1'" in caught.value.message


def test_a_stalled_download_is_an_upstream_error(images: ImageServer) -> None:
    limits = FetchLimits(timeout=0.5, max_bytes=5_000_000, max_redirects=0, allow_private=True)
    with pytest.raises(UpstreamError, match="stalled"):
        fetch_image(f"{images.base}/stall", limits)


def test_declared_size_over_the_cap_is_refused(images: ImageServer) -> None:
    with pytest.raises(TooLarge, match=r"larger than 4\.8 MiB"):
        fetch_image(f"{images.base}/declared-big", LOCAL)


def test_streamed_size_over_the_cap_is_refused(images: ImageServer) -> None:
    with pytest.raises(TooLarge, match="MATCH_URL_MAX_BYTES"):
        fetch_image(f"{images.base}/endless", LOCAL)


def test_file_just_under_the_cap_passes_and_just_over_fails(
    images: ImageServer, photo: Path
) -> None:
    size = photo.stat().st_size
    exact = FetchLimits(timeout=10, max_bytes=size, max_redirects=0, allow_private=True)
    assert len(fetch_image(images.url(photo.name), exact)) == size
    short = FetchLimits(timeout=10, max_bytes=size - 1, max_redirects=0, allow_private=True)
    with pytest.raises(TooLarge):
        fetch_image(images.url(photo.name), short)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.jpg",
        "file:///etc/passwd",
        "/etc/passwd",
        "gopher://x/",
        "javascript:alert(1)",
    ],
)
def test_only_http_and_https(url: str) -> None:
    with pytest.raises(FetchError, match="http:// or https://"):
        fetch_image(url, LOCAL)


def test_unresolvable_host() -> None:
    with pytest.raises(FetchError, match="cannot resolve host"):
        fetch_image("http://no-such-host.invalid/a.jpg", LOCAL)


def test_connection_refused_is_a_fetch_error() -> None:
    with pytest.raises(FetchError, match="cannot fetch") as caught:
        fetch_image(f"http://127.0.0.1:{free_port()}/a.jpg", LOCAL)
    assert caught.value.status == 400


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "0.0.0.0", "127.1.2.3"])
def test_private_addresses_are_refused_by_default(
    images: ImageServer, photo: Path, host: str
) -> None:
    limits = FetchLimits(timeout=10, max_bytes=5_000_000, max_redirects=3, allow_private=False)
    requests_before = len(images.seen_hosts)
    with pytest.raises(FetchError, match="MATCH_ALLOW_PRIVATE_URLS") as caught:
        fetch_image(f"http://{host}:{images.port}/files/{photo.name}", limits)
    assert caught.value.status == 400
    assert len(images.seen_hosts) == requests_before  # refused before connecting


def test_addresses_are_checked_again_after_a_redirect(images: ImageServer) -> None:
    # Private URLs allowed, but the redirect leads to the cloud metadata address: refused before
    # any connection to it.
    url = f"{images.base}/redirect-to?url=http://169.254.169.254/latest/meta-data/"
    with pytest.raises(FetchError, match="cloud metadata address"):
        fetch_image(url, LOCAL)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),  # reserved, which Python also counts as private
        ("0.0.0.0", "private"),
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("192.0.0.192", "cloud metadata"),
    ],
)
def test_address_policy(address: str, reason: str) -> None:
    problem = address_problem(ipaddress.ip_address(address), allow_private=False)
    assert problem is not None and reason in problem


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"]
)
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address), allow_private=False) is None


def test_allowing_private_urls_still_refuses_metadata() -> None:
    assert address_problem(ipaddress.ip_address("10.0.0.1"), allow_private=True) is None
    metadata = address_problem(ipaddress.ip_address("169.254.169.254"), allow_private=True)
    assert metadata == "a cloud metadata address"
