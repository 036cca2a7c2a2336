"""The HTTP layer under ElasticStore: one httpx connection pool, retries, and error translation.

Every httpx and engine error becomes a ``match.errors`` exception here and nowhere else.
Credentials (URL userinfo, API key) never appear in a message or a log line: messages name the
engine by ``display_url``, which has the userinfo stripped.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from match.errors import MatchError, StoreUnavailable

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRIES = 3
BACKOFF_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 2.0

SUPPORTED = {"elasticsearch": (8, 9), "opensearch": (2, 3)}
NAMES = {"elasticsearch": "Elasticsearch", "opensearch": "OpenSearch"}


class IndexMissing(MatchError):
    """The index does not exist (deleted behind our back): the store re-creates it."""

    status = 503


class EngineError(StoreUnavailable):
    """The engine answered a request with an error; ``status`` is the engine's HTTP status
    and ``kind`` its error type (e.g. ``version_conflict_engine_exception``)."""

    def __init__(self, message: str, engine_status: int, kind: str) -> None:
        super().__init__(message)
        self.engine_status = engine_status
        self.kind = kind


@dataclass(frozen=True)
class Engine:
    """Which engine answered and its version, from ``GET /``."""

    distribution: str  # "elasticsearch" or "opensearch"
    version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def __str__(self) -> str:
        return f"{NAMES.get(self.distribution, self.distribution)} {self.version}"


def _split_url(url: str) -> tuple[httpx.URL, tuple[str, str] | None]:
    """The base URL without userinfo, and the (user, password) it carried."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise StoreUnavailable("ELASTICSEARCH_URL is not a valid URL") from None
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise StoreUnavailable("ELASTICSEARCH_URL must be an http:// or https:// URL with a host")
    auth = None
    if parsed.username or parsed.password:
        auth = (parsed.username, parsed.password)
    base = parsed.copy_with(username=None, password=None, query=None, fragment=None)
    return base, auth


def _tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Verification always on; a CA bundle replaces the system trust store."""
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError) as error:
        raise StoreUnavailable(
            f"ELASTICSEARCH_CA_BUNDLE {ca_bundle!r} cannot be used: {error.strerror or error}"
        ) from None


class EngineClient:
    """A small REST client for Elasticsearch/OpenSearch: JSON and NDJSON bodies, retries with
    exponential backoff on connection errors and 429/502/503/504, errors translated."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        ca_bundle: str | None = None,
        timeout: float = 10.0,
        retries: int = RETRIES,
    ) -> None:
        base, auth = _split_url(url)
        self.display_url = str(base).rstrip("/")
        self._secrets = [s for s in (api_key, auth and auth[1]) if s]
        # no gzip: answers are mostly base64 of packed features and signatures, which it
        # shrinks by about a quarter for the engine's CPU and ours (a fifth of a loopback
        # search's client CPU went to decompressing them)
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        if api_key:
            headers["Authorization"] = f"ApiKey {api_key}"
        self.retries = retries
        self._http = httpx.Client(
            base_url=base,
            auth=httpx.BasicAuth(*auth) if auth else None,
            headers=headers,
            timeout=timeout,
            verify=_tls_context(ca_bundle) if base.scheme == "https" else True,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        self._engine: Engine | None = None

    # -- public -------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        lines: Iterable[Any] | None = None,
        params: Mapping[str, Any] | None = None,
        allow: Iterable[int] = (),
    ) -> tuple[int, Any]:
        """Send a request and return (status, decoded JSON body).

        ``body`` is sent as JSON, ``lines`` as NDJSON (one JSON document per line). Statuses in
        ``allow`` are returned as they are; other errors raise a ``match.errors`` exception.
        """
        content, content_type = _encode(body, lines)
        headers = {"Content-Type": content_type} if content is not None else None
        allowed = set(allow)
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(
                    method, path, content=content, headers=headers, params=params
                )
            except httpx.TimeoutException as error:
                # a slow answer is not retried: that would multiply the wait; a slow connect is
                if last or not isinstance(error, httpx.ConnectTimeout):
                    raise StoreUnavailable(
                        f"The search engine at {self.display_url} did not answer in time "
                        f"(timeout {self._http.timeout.read} s)"
                    ) from None
            except httpx.TransportError as error:
                if last:
                    raise StoreUnavailable(
                        f"The search engine at {self.display_url} cannot be reached: "
                        f"{self._scrub(_reason(error))}"
                    ) from None
            else:
                if response.status_code not in RETRY_STATUSES or last:
                    return self._answer(response, allowed)
            delay = min(BACKOFF_CAP_SECONDS, BACKOFF_SECONDS * 2**attempt)
            log.warning(
                "search engine at %s: transient failure, retry %d in %.1f s",
                self.display_url,
                attempt + 1,
                delay,
            )
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def engine(self) -> Engine:
        """The engine and its version (cached once known); refused clearly if unsupported."""
        if self._engine is None:
            engine = self._detect()
            majors = SUPPORTED.get(engine.distribution, ())
            if engine.major not in majors:
                raise StoreUnavailable(
                    f"{engine} at {self.display_url} is not supported: Match needs "
                    "Elasticsearch 8 or 9, or OpenSearch 2 or 3"
                )
            self._engine = engine
        return self._engine

    def close(self) -> None:
        self._http.close()

    # -- private ------------------------------------------------------------------------------
    def _detect(self) -> Engine:
        status, info = self.request("GET", "/", allow=(404, 405))
        if status == 200 and isinstance(info, dict) and isinstance(info.get("version"), dict):
            version = info["version"]
            return Engine(
                str(version.get("distribution", "elasticsearch")).lower(),
                str(version.get("number", "0")),
            )
        # Elasticsearch test distributions ship without the root endpoint: ask the nodes.
        _, nodes = self.request("GET", "/_nodes/_local", params={"filter_path": "nodes.*.version"})
        versions = [n.get("version") for n in (nodes or {}).get("nodes", {}).values()]
        if not versions or not versions[0]:
            raise StoreUnavailable(
                f"The server at {self.display_url} does not look like Elasticsearch or OpenSearch"
            )
        return Engine("elasticsearch", str(versions[0]))

    def _answer(self, response: httpx.Response, allowed: set[int]) -> tuple[int, Any]:
        status = response.status_code
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        if status < 300 or status in allowed:
            return status, data
        kind, reason = _error_of(data, response)
        if kind == "index_not_found_exception":
            raise IndexMissing(f"index missing: {reason}")
        if status in {401, 403}:
            raise StoreUnavailable(
                f"The search engine at {self.display_url} refused access (HTTP {status}): "
                "check the credentials in ELASTICSEARCH_URL or ELASTICSEARCH_API_KEY"
            )
        if status in RETRY_STATUSES:
            raise StoreUnavailable(
                f"The search engine at {self.display_url} is overloaded or unavailable "
                f"(HTTP {status}: {self._scrub(kind)})"
            )
        raise EngineError(
            f"The search engine at {self.display_url} refused a request "
            f"(HTTP {status}, {self._scrub(kind)}: {self._scrub(reason)})",
            status,
            kind,
        )

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def _encode(body: Any, lines: Iterable[Any] | None) -> tuple[bytes | None, str]:
    if lines is not None:
        text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        return text.encode(), "application/x-ndjson"
    if body is None:
        return None, "application/json"
    return json.dumps(body, separators=(",", ":")).encode(), "application/json"


def _error_of(data: Any, response: httpx.Response) -> tuple[str, str]:
    """(type, reason) of an engine error body, whatever its shape."""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        causes = error.get("root_cause") or [error]
        cause = causes[0] if isinstance(causes[0], dict) else error
        return str(cause.get("type", "error")), str(cause.get("reason", ""))[:300]
    if isinstance(error, str):
        return "error", error[:300]
    return "error", response.reason_phrase or "no reason given"


def _reason(error: httpx.TransportError) -> str:
    text = str(error).strip()
    return text[:200] if text else type(error).__name__
