"""Optional access control: API keys, checked by an ASGI middleware before anything else runs.

Off unless MATCH_API_KEYS or MATCH_API_KEYS_FILE gives at least one key. Then every request but
the probes (``/ping``, ``/health/live``, ``/health/ready``: match.http.health) and the web
page's own files (``match.http.page``: code and no data, so that the page can ask for the key)
must carry a key,
either as the password of HTTP Basic (any user name) or as a Bearer token. A key written with
the suffix ``:ro`` is read-only: it may search, compare, count and list, but a request to a
method that writes (add, delete, update_metadata, on dsys/match's and TinEye's routes alike) is
refused 403. A key written ``key@name`` (or ``key:ro@name``) acts on the collection ``name``
only: it names that collection by default, any other is refused 403, and ``/collections`` lists
only its own (an entry per collection gives a key several). A missing or unknown key is 401 with
``WWW-Authenticate``; every answer is the API envelope.

Keys are compared in constant time (``hmac.compare_digest`` of SHA-256 digests, against every
key, so neither the position nor the length of a key leaks through timing). A key is never
logged: the access log records the path, status and user agent only, and errors here never
echo what the client sent.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from match.errors import BadParameter
from match.http.envelope import fail, method_name
from match.http.page import is_page_request
from match.settings import Settings, SettingsError
from match.stores.filters import check_collection

READ_ONLY_SUFFIX = ":ro"
COLLECTION_SEPARATOR = "@"
# Envelope method names of the requests that change the store (method_name of the path); a
# DELETE of /collections drops one.
WRITE_METHODS = frozenset({"add", "delete", "update_metadata"})
STATE_KEY = "match_collections"
"""Where the middleware leaves the collections a request's key may act on (None: any)."""
READ_ONLY_KEY = "match_read_only"
"""Where it leaves whether the request's key is read-only (absent: no keys are set)."""
OPEN_PATHS = frozenset({"/ping", "/health/live", "/health/ready"})
CHALLENGE = 'Basic realm="match", charset="UTF-8", Bearer realm="match"'


@dataclass(frozen=True)
class ApiKey:
    digest: bytes  # SHA-256 of the key: only digests are kept and compared
    read_only: bool
    collections: frozenset[str] | None = None  # None: every collection


def parse_keys(text: str) -> list[ApiKey]:
    """Keys from comma- or newline-separated text; blank entries and ``#`` comments ignored.
    Entries of one key are merged: its collections joined (any unrestricted entry: all), and
    read-only only if every entry is."""
    entries: dict[bytes, list[tuple[bool, str | None]]] = {}
    for line in text.splitlines():
        for entry in line.split("#", 1)[0].split(","):
            secret, _, collection = entry.strip().partition(COLLECTION_SEPARATOR)
            read_only = secret.endswith(READ_ONLY_SUFFIX)
            if read_only:
                secret = secret[: -len(READ_ONLY_SUFFIX)]
            if not secret:
                continue
            if collection:
                try:
                    check_collection(collection)
                except BadParameter:
                    raise SettingsError(
                        f"MATCH_API_KEYS: {collection!r} is not a collection name"
                    ) from None
            entries.setdefault(_digest(secret), []).append((read_only, collection or None))
    keys = []
    for digest, uses in entries.items():
        named = [collection for _, collection in uses]
        collections = None if None in named else frozenset(c for c in named if c)
        keys.append(ApiKey(digest, all(ro for ro, _ in uses), collections))
    return keys


def load_keys(settings: Settings) -> list[ApiKey]:
    """The keys the settings name; empty: access control is off. A key file that cannot be
    read or holds no key is a SettingsError, so a misconfigured server does not start open."""
    keys = parse_keys(settings.match_api_keys or "")
    if settings.match_api_keys_file:
        path = Path(settings.match_api_keys_file)
        try:
            from_file = parse_keys(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeError) as error:
            raise SettingsError(f"MATCH_API_KEYS_FILE {path}: cannot read it: {error}") from None
        if not from_file:
            raise SettingsError(f"MATCH_API_KEYS_FILE {path} holds no key")
        keys += from_file
    elif settings.match_api_keys and not keys:
        raise SettingsError("MATCH_API_KEYS is set but holds no key")
    return keys


def access_control(settings: Settings) -> list[Middleware]:
    """The middleware for ``create_app``: AccessControl when keys are set, else none."""
    keys = load_keys(settings)
    return [Middleware(AccessControl, keys=keys)] if keys else []


class AccessControl:
    """ASGI middleware: lets a request through only with a valid key (see the module doc)."""

    def __init__(self, app: ASGIApp, *, keys: list[ApiKey]) -> None:
        self.app = app
        self.keys = tuple(keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or is_page_request(scope):
            await self.app(scope, receive, send)
            return
        method = method_name(scope["path"])
        key = self._find(_credential(scope))
        if key is None:
            response = fail(
                method,
                401,
                "An API key is required: send it as a Bearer token or as the HTTP Basic password",
                headers={"WWW-Authenticate": CHALLENGE},
            )
        elif key.read_only and _writes(method, scope):
            response = fail(method, 403, f"This API key is read-only: it may not {method}")
        else:
            state = scope.setdefault("state", {})
            state[STATE_KEY], state[READ_ONLY_KEY] = key.collections, key.read_only
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)

    def _find(self, presented: str | None) -> ApiKey | None:
        if presented is None:
            return None
        digest = _digest(presented)
        found = None
        for key in self.keys:  # no early exit: every key is compared
            if hmac.compare_digest(digest, key.digest) and found is None:
                found = key
        return found


def _writes(method: str, scope: Scope) -> bool:
    if method == "hashes":  # http/hashes.py: GET exports, POST imports, DELETE deletes
        return scope["method"] != "GET"
    return method in WRITE_METHODS or (method == "collections" and scope["method"] == "DELETE")


def allowed_collections(scope: Scope) -> frozenset[str] | None:
    """The collections the request's key may act on; None: any (or no keys are set)."""
    return scope.get("state", {}).get(STATE_KEY)


def key_is_read_only(scope: Scope) -> bool | None:
    """Whether the request's key is read-only; None when no keys are set."""
    return scope.get("state", {}).get(READ_ONLY_KEY)


def _credential(scope: Scope) -> str | None:
    """The key in the Authorization header: a Bearer token or a Basic password."""
    header = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            header = value.decode("latin-1")
            break
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer":
        return token or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        _user, colon, password = decoded.partition(":")
        return password if colon and password else None
    return None


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()
