"""Helpers for tests against a real server: a Match server process on a loopback port, a small
JSON client for it, and a port-0 HTTP server that serves images (and misbehaves on request) for
URL ingestion.

Fixtures built on these live in the test modules; ``store_env`` chooses the store a server runs
on (the embedded store by default; parametrize it to run the same tests on another engine).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

STARTUP_SECONDS = 90.0  # importing numpy/OpenCV on a busy 2-core machine can be slow
STOP_SECONDS = 60.0
STALL_SECONDS = 3.0  # how long /stall keeps a response hanging


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MatchServer:
    """``python -m match.server`` in a subprocess, on a free loopback port."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MatchServer:
        env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "match.server"],
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
                if httpx.get(self.url + "/ping", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer /ping within {STARTUP_SECONDS} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the server with ``sig``; its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def access_pids(self, request_line: str) -> list[int]:
        """Worker pids that logged an access line containing ``request_line``, in order."""
        pattern = re.compile(r"\[(\d+)\] INFO: .*\"" + re.escape(request_line))
        return [int(found.group(1)) for found in pattern.finditer(self.log())]


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
