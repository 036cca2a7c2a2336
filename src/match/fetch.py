"""URL ingestion: download an image from an http(s) URL, safely.

The rules, all from the settings: http and https only; a total time budget (MATCH_URL_TIMEOUT);
a byte cap enforced while streaming (MATCH_URL_MAX_BYTES → 413); at most MATCH_URL_MAX_REDIRECTS
redirects, followed one at a time. Before every request (the first and each redirect) the host
is resolved and every address it resolves to is checked; the connection then goes to the checked
address (the URL's host stays in the Host header and the TLS server name), so a DNS answer that
changes between the check and the connection cannot slip through. Loopback, private, link-local,
multicast, reserved and otherwise non-global addresses are refused unless MATCH_ALLOW_PRIVATE_URLS
is on; cloud metadata addresses are refused always.

Errors: FetchError (400) for a URL that is refused or cannot be fetched, UpstreamError (502) when
the remote server answers with an error, stalls or breaks off, TooLarge (413) past the byte cap.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from match.errors import FetchError, TooLarge, UpstreamError
from match.settings import Settings
from match.sizes import human_size

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services of the big clouds: refused even when private URLs are allowed,
# because reaching them from a server is how credentials leak.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "168.63.129.16",  # Azure wire server
    )
)

# The watchdog is a backstop, fired this long after the budget, so that the read timeout and the
# budget checks while reading, which name the problem more precisely, answer first when they can.
WATCHDOG_GRACE_SECONDS = 1.0

USER_AGENT = "match (+https://github.com/dsys/match)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchLimits:
    timeout: float = 10.0
    max_bytes: int = 25 * 1024 * 1024
    max_redirects: int = 3
    allow_private: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchLimits:
        return cls(
            timeout=settings.match_url_timeout,
            max_bytes=settings.match_url_max_bytes,
            max_redirects=max(settings.match_url_max_redirects, 0),
            allow_private=settings.match_allow_private_urls,
        )


def fetch_image(url: str, limits: FetchLimits, *, name: str = "url") -> bytes:
    """The body of ``url`` (following redirects), within ``limits``. ``name`` is the request
    parameter the URL came from, used in error messages."""
    deadline = time.monotonic() + limits.timeout
    current = _parse_url(url, name)
    watchdog = _Watchdog(deadline)
    with (
        httpx.Client(trust_env=False, follow_redirects=False, timeout=limits.timeout) as client,
        watchdog,
    ):
        for _ in range(limits.max_redirects + 1):
            address = _checked_address(current, limits, name)
            body, location = _get(client, current, address, limits, watchdog, name)
            if location is None:
                return body
            current = _parse_url(str(current.join(location)), name)
    raise FetchError(f"Parameter '{name}': {url} redirects more than {limits.max_redirects} times")


def address_problem(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why connecting to ``address`` is refused (e.g. "a loopback address"), or None."""
    embedded = _embedded_ipv4(address)  # first: ::ffff:169.254.169.254 is the metadata service
    if embedded is not None:
        return address_problem(embedded, allow_private=allow_private)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if allow_private:
        return None
    for attribute, kind in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_private", "a private address"),
        ("is_unspecified", "an unspecified address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, attribute):
            return kind
    if not address.is_global:
        return "not a public address"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches: IPv4-mapped, 6to4 or NAT64 (64:ff9b::/96)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None or address.sixtofour is not None:
        return address.ipv4_mapped or address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _parse_url(url: str, name: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as error:
        raise FetchError(f"Parameter '{name}' is not a valid URL: {error}") from None
    if parsed.scheme not in {"http", "https"}:
        raise FetchError(f"Parameter '{name}' must be an http:// or https:// URL, got {url!r}")
    if not parsed.host:
        raise FetchError(f"Parameter '{name}' has no host: {url!r}")
    return parsed


def _checked_address(url: httpx.URL, limits: FetchLimits, name: str) -> str:
    """Resolve the URL's host and check every address; return the one to connect to."""
    addresses = _resolve(url, name)
    for address in addresses:
        problem = address_problem(address, allow_private=limits.allow_private)
        if problem:
            where = f"{url.host} is" if url.host == str(address) else f"{url.host} is {address},"
            hint = (
                "" if address in METADATA_ADDRESSES else " (MATCH_ALLOW_PRIVATE_URLS=1 allows it)"
            )
            raise FetchError(f"Parameter '{name}': refused to fetch {url}: {where} {problem}{hint}")
    return str(addresses[0])


def _resolve(url: httpx.URL, name: str) -> list[IPAddress]:
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(_ascii_host(url), port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise FetchError(f"Parameter '{name}': cannot resolve host {url.host!r}: {error}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchError(f"Parameter '{name}': host {url.host!r} has no address")
    return addresses


class _Watchdog:
    """Shuts the connection's socket down once the total time budget is spent. The per-read
    timeout alone would let a server that trickles its status line and headers, a byte at a
    time, hold a fetch (and its worker thread) far past MATCH_URL_TIMEOUT."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.timers: list[threading.Timer] = []

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace extension: arm a timer on each new connection's socket."""
        if event != "connection.connect_tcp.complete":
            return
        sock = info["return_value"].get_extra_info("socket")
        if sock is not None:
            delay = max(self.deadline + WATCHDOG_GRACE_SECONDS - time.monotonic(), 0.0)
            timer = threading.Timer(delay, _shut, (sock,))
            timer.daemon = True
            timer.start()
            self.timers.append(timer)

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def __enter__(self) -> _Watchdog:
        return self

    def __exit__(self, *exc: object) -> None:
        for timer in self.timers:
            timer.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing to stop
        sock.shutdown(socket.SHUT_RDWR)


def _get(
    client: httpx.Client,
    url: httpx.URL,
    address: str,
    limits: FetchLimits,
    watchdog: _Watchdog,
    name: str,
) -> tuple[bytes, str | None]:
    """One GET to ``address``: (body, None), or (b"", location) for a redirect."""
    request = _request_to(client, url, address)
    request.extensions["trace"] = watchdog.trace
    try:
        response = client.send(request, stream=True)
    except httpx.TimeoutException:
        raise UpstreamError(
            f"Parameter '{name}': {url} did not answer within {limits.timeout:g} s"
        ) from None
    except httpx.HTTPError as error:
        if watchdog.expired:
            raise _took_too_long(url, limits, name) from None
        raise FetchError(f"Parameter '{name}': cannot fetch {url}: {_reason(error)}") from None
    try:
        if response.status_code in _REDIRECTS and "location" in response.headers:
            return b"", response.headers["location"]
        if response.status_code >= 300:
            raise UpstreamError(
                f"Parameter '{name}': {url} answered HTTP "
                f"{response.status_code} {response.reason_phrase}".rstrip()
            )
        return _read_body(response, url, limits, watchdog, name), None
    finally:
        response.close()


def _request_to(client: httpx.Client, url: httpx.URL, address: str) -> httpx.Request:
    """A GET for ``url`` that connects to ``address``, keeping the host for Host and TLS."""
    host = _ascii_host(url)
    bracketed = f"[{host}]" if ":" in host else host
    host_header = bracketed if url.port is None else f"{bracketed}:{url.port}"
    extensions = {"sni_hostname": host} if url.scheme == "https" else {}
    return client.build_request(
        "GET",
        url.copy_with(host=address),
        headers={"Host": host_header, "User-Agent": USER_AGENT, "Accept": "image/*, */*;q=0.5"},
        extensions=extensions,
    )


def _read_body(
    response: httpx.Response, url: httpx.URL, limits: FetchLimits, watchdog: _Watchdog, name: str
) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise _too_large(url, limits, name)
    chunks: list[bytes] = []
    received = 0
    try:
        for chunk in response.iter_bytes():
            received += len(chunk)
            if received > limits.max_bytes:
                raise _too_large(url, limits, name)
            if watchdog.expired:
                raise _took_too_long(url, limits, name)
            chunks.append(chunk)
    except httpx.TimeoutException:
        raise UpstreamError(
            f"Parameter '{name}': {url} stalled for more than {limits.timeout:g} s"
        ) from None
    except httpx.HTTPError as error:
        if watchdog.expired:
            raise _took_too_long(url, limits, name) from None
        raise UpstreamError(f"Parameter '{name}': {url} broke off: {_reason(error)}") from None
    return b"".join(chunks)


def _took_too_long(url: httpx.URL, limits: FetchLimits, name: str) -> UpstreamError:
    return UpstreamError(
        f"Parameter '{name}': {url} took longer than {limits.timeout:g} s to download"
    )


def _too_large(url: httpx.URL, limits: FetchLimits, name: str) -> TooLarge:
    return TooLarge(
        f"Parameter '{name}': {url} is larger than {human_size(limits.max_bytes)} "
        "(MATCH_URL_MAX_BYTES)"
    )


def _ascii_host(url: httpx.URL) -> str:
    """The host as sent on the wire (IDNA-encoded, no IPv6 brackets)."""
    return url.raw_host.decode("ascii")


def _reason(error: Exception) -> str:
    return str(error) or type(error).__name__
