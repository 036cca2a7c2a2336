"""Raw HTTP for the tests that send what a well-behaved client would not (bodies cut short,
trickled headers, idle sockets): the app under a real uvicorn server in a thread, and reading
one answer off a socket."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn


@contextmanager
def server_in_thread(config: uvicorn.Config) -> Iterator[int]:
    """Run ``config`` (port 0) in a thread until the block ends; yields the port it bound."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            pytest.fail("the server thread stopped before starting")
        time.sleep(0.05)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)


def read_answer(sock: socket.socket) -> tuple[int, bytes, dict]:
    """Read one answer whole (up to its Content-Length, or until the server closes): its
    status, its head and its JSON body."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "the server closed the connection without answering"
    return int(head.split()[1]), head, json.loads(body)


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0
