"""A client that sends its request body too slowly gets a 408 instead of holding the connection:
the app under a real uvicorn server in a thread, with a short body deadline, and a raw socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from match.http.app import create_app
from match.settings import Settings
from raw_http import read_answer, server_in_thread

BODY_TIMEOUT = 0.5


@pytest.fixture
def port(tmp_path: Path) -> Iterator[int]:
    settings = Settings.from_env({"MATCH_DATA_DIR": str(tmp_path / "data")})
    app = create_app(settings, body_timeout=BODY_TIMEOUT)
    with server_in_thread(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")) as p:
        yield p


def _response(sock: socket.socket) -> tuple[int, dict]:
    status, _, body = read_answer(sock)
    return status, body


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
