"""A client that sends its request body too slowly gets a 408 instead of holding the connection:
the app under a real uvicorn server in a thread, with a short body deadline, and a raw socket."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from match.http.app import create_app
from match.settings import Settings

BODY_TIMEOUT = 0.5


@pytest.fixture
def port(tmp_path: Path) -> Iterator[int]:
    settings = Settings.from_env({"MATCH_DATA_DIR": str(tmp_path / "data")})
    app = create_app(settings, body_timeout=BODY_TIMEOUT)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            pytest.fail("the server thread stopped before starting")
        time.sleep(0.05)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join()


def _response(sock: socket.socket) -> tuple[int, dict]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(body)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def test_a_body_that_does_not_arrive_in_time_is_408(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /add HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n"
            b"filepath=slow"
        )
        status, body = _response(sock)  # the rest of the body never comes
    assert status == 408
    assert body["method"] == "add" and body["status"] == "fail"
    assert f"within {BODY_TIMEOUT:g} s" in body["error"][0]


def test_a_body_in_time_is_served(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /list HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\n\r\n"
            b"limit=5"
        )
        status, body = _response(sock)
    assert (status, body["result"]) == (200, [])
