"""Helpers for tests against a real server: a Match server process on a loopback port, a small
JSON client for it, and a port-0 HTTP server that serves images (and misbehaves on request) for
URL ingestion.

The ``store_env`` fixture chooses the store the servers run on: it returns a factory giving the
environment of a fresh, empty store on each call. Its params are STORE_KINDS: "embedded" (the
SQLite store in a tmp folder) and "engine:<name>" for every engine the session tests (a fresh index
on that engine, from the engine fixtures in tests/engines.py; skipped, or failed under
MATCH_REQUIRE_SERVERS=1, when it is not there), so the same API suite runs on every store.
Test modules import the fixtures they use from here.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from engines import engine_names
from match.settings import Settings
from match.signature import SIGNATURE_LENGTH
from match.stores import ImageRecord, open_store

STARTUP_SECONDS = 90.0  # importing numpy/OpenCV on a busy 2-core machine can be slow
STOP_SECONDS = 60.0
GRACEFUL = (0, -signal.SIGTERM)  # exit codes of a server stopped gracefully by SIGTERM
STALL_SECONDS = 3.0  # how long /stall keeps a response hanging


StoreEnv = Callable[[], dict[str, str]]
# "embedded", then "engine:<name>" for every engine the session tests (es8, os2, ...).
STORE_KINDS = ("embedded", *(f"engine:{name}" for name in engine_names()))
# The hardening suites (modules with HARDENING_SUITE = True: hostile input, error paths, fuzzing,
# network safety, concurrency) test the HTTP layer over the store: they run on the embedded store
# and the first engine only, which keeps `make test` near 13 minutes. Every engine runs the API,
# TinEye and partial matching suites and the store contract.
HARDENING_STORE_KINDS = STORE_KINDS[:2]


def beyond_hardening_stores(item: pytest.Item) -> bool:
    """True for a hardening-suite test on a store kind outside HARDENING_STORE_KINDS."""
    callspec = getattr(item, "callspec", None)
    kind = callspec.params.get("store_env") if callspec else None
    hardening = getattr(getattr(item, "module", None), "HARDENING_SUITE", False)
    return hardening and kind is not None and kind not in HARDENING_STORE_KINDS


@pytest.fixture(scope="session", params=STORE_KINDS)
def store_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StoreEnv]:
    """A factory of environments, each naming a fresh empty store of the kind under test; an
    engine's indexes are deleted when the session ends, so that repeated runs leave none."""
    if request.param == "embedded":
        yield lambda: {"MATCH_DATA_DIR": str(tmp_path_factory.mktemp("store") / "data")}
        return
    engine_url = request.getfixturevalue("engine_session").url(request.param.split(":", 1)[1])
    named: list[str] = []

    def environment() -> dict[str, str]:
        named.append(f"match-api-{uuid.uuid4().hex[:12]}")
        return {
            "ELASTICSEARCH_URL": engine_url,
            "ELASTICSEARCH_INDEX": named[-1],
            # deletes and metadata updates wait for the next refresh: a short interval keeps
            # the suite fast (adds refresh the index themselves)
            "ELASTICSEARCH_REFRESH_INTERVAL": "200ms",
        }

    yield environment
    for name in named:  # by name: Elasticsearch 8 refuses wildcard deletes by default
        with contextlib.suppress(httpx.HTTPError):  # an engine gone leaves nothing to tidy
            httpx.delete(
                f"{engine_url}/{name},{name}-hashes",
                params={"ignore_unavailable": "true"},
                timeout=60,
            )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MatchServer:
    """``python -m match.http.server`` in a subprocess, on a free loopback port."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        ready_status: int | None = 200,
        command: Sequence[str] = (sys.executable, "-m", "match.http.server"),
        inherit_environment: bool = True,
    ) -> None:
        self.env = dict(env)
        self.command = list(command)
        # /ping's status once up (503: store unavailable; None: any answer)
        self.ready_status = ready_status
        self.inherit_environment = inherit_environment  # False: exactly ``env``, HOST and PORT
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MatchServer:
        inherited = os.environ if self.inherit_environment else {}
        env = {**inherited, "HOST": "127.0.0.1", "PORT": str(self.port), **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_up()
        return self

    def _wait_until_up(self) -> None:
        assert self.process is not None
        give_up = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                status = httpx.get(self.url + "/ping", timeout=5).status_code
                if self.ready_status in (None, status):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer /ping within {STARTUP_SECONDS} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the server with ``sig``; its exit code. A graceful stop exits 0, or by the same
        signal (uvicorn re-raises it after shutting down, as a single process does)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> MatchServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_server(env: Mapping[str, str], log_path: Path) -> Iterator[MatchServer]:
    server = MatchServer(env, log_path).start()
    try:
        yield server
    finally:
        server.stop()


class Api:
    """A JSON client for the Match API: ``call`` returns (HTTP status, envelope)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.client = httpx.Client(base_url=base_url, timeout=120)

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        response = self.client.request(method, path, **kwargs)
        assert response.headers["content-type"] == "application/json", response.text[:200]
        return response.status_code, response.json()

    def ok(self, method: str, path: str, **kwargs: Any) -> list[Any]:
        """The result of a call that must succeed."""
        status, body = self.call(method, path, **kwargs)
        assert (status, body["status"], body["error"]) == (200, "ok", []), body
        return body["result"]

    def add(
        self, filepath: str, image: bytes, metadata: str | None = None, filename: str = "image.jpg"
    ) -> list[Any]:
        data = {"filepath": filepath} | ({"metadata": metadata} if metadata else {})
        return self.ok("POST", "/add", data=data, files={"image": (filename, image)})

    def search(self, image: bytes, filename: str = "query.jpg", **fields: Any) -> list[dict]:
        return self.ok("POST", "/search", data=fields, files={"image": (filename, image)})

    def close(self) -> None:
        self.client.close()


# -- a local HTTP server for URL ingestion ---------------------------------------------------------
class _ImageHandler(BaseHTTPRequestHandler):
    """GET /files/<name>: a file of the served folder. Misbehaviours, for the error paths:
    /redirect/<n>/<name> (n redirects, then the file), /status/<code>, /declared-big (a large
    Content-Length), /endless (chunked, never ends), /stall (stops mid-body),
    /redirect-to?url=<url>."""

    folder: Path
    seen_hosts: list[str]

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.seen_hosts.append(self.headers.get("Host", ""))
        parts = [part for part in self.path.split("?")[0].split("/") if part]
        if parts[:1] == ["files"] and len(parts) == 2:
            self._file(parts[1])
        elif parts[:1] == ["redirect"] and len(parts) == 3:
            hops = int(parts[1])
            target = f"/redirect/{hops - 1}/{parts[2]}" if hops > 1 else f"/files/{parts[2]}"
            self._redirect(target)
        elif parts[:1] == ["redirect-to"]:
            self._redirect(self.path.split("url=", 1)[1])
        elif parts[:1] == ["status"]:
            self._send(int(parts[1]), b"no image here", "text/plain")
        elif parts == ["declared-big"]:
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            self.wfile.write(b"\xff" * 1024)
        elif parts == ["endless"]:
            self._endless()
        elif parts == ["stall"]:
            self._stall()
        else:
            self._send(404, b"unknown", "text/plain")

    def _file(self, name: str) -> None:
        path = self.folder / name
        if not path.is_file():
            self._send(404, b"missing", "text/plain")
        else:
            self._send(200, path.read_bytes(), "image/jpeg")

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"\x00" * 65536
        try:
            while True:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _stall(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"\xff" * 10)
        self.wfile.flush()
        time.sleep(STALL_SECONDS)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ImageServer:
    """Serves ``folder`` on 127.0.0.1 at a port the OS picks; ``url(name)`` addresses a file."""

    def __init__(self, folder: Path) -> None:
        handler = type("Handler", (_ImageHandler,), {"folder": folder, "seen_hosts": []})
        self.handler = handler
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def seen_hosts(self) -> list[str]:
        return self.handler.seen_hosts

    def url(self, name: str) -> str:
        return f"{self.base}/files/{name}"

    def __enter__(self) -> ImageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


class Connection:
    """One keep-alive connection (http.client), so a test knows which worker serves it."""

    def __init__(self, server: MatchServer) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        self.conn.connect()
        assert self.conn.sock is not None
        self.client_port: int = self.conn.sock.getsockname()[1]

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        """Like Api.call; kwargs as for httpx (data=, files=, params=)."""
        request = httpx.Request(method, f"http://127.0.0.1{path}", **kwargs)
        headers = {key: value for key, value in request.headers.items() if key != "host"}
        self.conn.request(
            method, request.url.raw_path.decode(), body=request.read(), headers=headers
        )
        response = self.conn.getresponse()
        return response.status, json.loads(response.read())

    def close(self) -> None:
        self.conn.close()


# -- which worker process serves a connection (Linux /proc) ---------------------------------------
def worker_pids(server_pid: int) -> set[int]:
    """The child processes of the server's supervisor process."""
    children: set[int] = set()
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        text = (task / "children").read_text()
        children.update(int(pid) for pid in text.split())
    return children


def _socket_inode(local_port: int, remote_port: int) -> int | None:
    """The inode of the server-side socket of the loopback connection remote_port → local_port."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, inode = fields[1], fields[2], int(fields[9])
            if (
                int(local.rsplit(":", 1)[1], 16) == local_port
                and int(remote.rsplit(":", 1)[1], 16) == remote_port
                and inode
            ):
                return inode
    return None


def serving_worker(server: MatchServer, client_port: int) -> int | None:
    """The pid of the worker holding the accepted socket of the connection from client_port."""
    assert server.process is not None
    inode = _socket_inode(server.port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in worker_pids(server.process.pid):
        try:
            if any(os.readlink(fd) == target for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return pid
        except (FileNotFoundError, PermissionError):
            continue
    return None


# -- the servers the API tests share (session-scoped: one pair per store kind) ----------------
LIST_FILLED = 12_000
STRICT_UPLOAD_BYTES = 300_000
STRICT_PIXELS = 250_000
STRICT_PDQ_BATCH = 5  # hashes one /hashes/search may look up on the strict server
URL_MAX_BYTES = 5_000_000


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def images(photo_paths: list[Path]) -> Iterator[ImageServer]:
    with ImageServer(photo_paths[0].parent) as server:
        yield server


@pytest.fixture(scope="session")
def api_server(
    store_env: StoreEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MatchServer]:
    env = store_env() | {
        "WORKER_COUNT": "2",
        "MATCH_ALLOW_PRIVATE_URLS": "1",
        "MATCH_URL_MAX_BYTES": str(URL_MAX_BYTES),
        "MATCH_URL_MAX_REDIRECTS": "2",
    }
    server = MatchServer(env, tmp_path_factory.mktemp("api") / "server.log").start()
    yield server
    assert server.stop() in GRACEFUL, server.log()[-3000:]


@pytest.fixture(scope="session")
def api(api_server: MatchServer) -> Iterator[Api]:
    client = Api(api_server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def strict(store_env: StoreEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    env = store_env() | {
        "WORKER_COUNT": "1",
        "MATCH_MAX_UPLOAD_BYTES": str(STRICT_UPLOAD_BYTES),
        "MATCH_MAX_IMAGE_PIXELS": str(STRICT_PIXELS),
        "MATCH_PDQ_BATCH_MAX": str(STRICT_PDQ_BATCH),
    }
    _fill(env, LIST_FILLED)
    server = MatchServer(env, tmp_path_factory.mktemp("strict") / "server.log").start()
    client = Api(server.url)
    yield client
    client.close()
    assert server.stop() in GRACEFUL, server.log()[-3000:]


def _fill(env: dict[str, str], count: int) -> None:
    """Store ``count`` records with random signatures through the library, before serving."""
    rng = np.random.default_rng(7)
    signatures = rng.integers(-2, 3, size=(count, SIGNATURE_LENGTH), dtype=np.int8)
    store = open_store(Settings.from_env(env))
    try:
        result = store.add_many(
            ImageRecord(f"synthetic/{i:05d}", signatures[i]) for i in range(count)
        )
    finally:
        store.close()
    assert (result.added, result.failed) == (count, [])
