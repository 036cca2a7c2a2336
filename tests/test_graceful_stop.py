"""SIGTERM stops `match serve` (2 workers, embedded store) without resetting anyone: the
listener closes first, so a new connection is refused (ECONNREFUSED) rather than queued and
reset after its request was sent, and the request in flight finishes and is stored.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from api_server import GRACEFUL
from match.settings import Settings
from match.stores import open_store
from server_process import ServerProcess, environment

# signal latencies and a handshake window in fractions of a second: run alone
pytestmark = pytest.mark.alone

BOUNDARY = "graceful-stop"
PROBE_SECONDS = 3.0
# Until the supervisor's signal handler runs, the workers still accept and serve.
SIGNAL_LATENCY = 0.5
# A connection whose handshake the kernel completed but no worker had accepted yet when the
# listener closed is reset by the kernel (it resets what is queued on a closing listener): a
# window of the few milliseconds a worker takes to accept, which the probes leave out.
HANDSHAKE_WINDOW = 0.1


def _add_request(filepath: str, image: bytes) -> tuple[bytes, bytes]:
    """The head and the body of a multipart add."""
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="filepath"\r\n\r\n{filepath}\r\n'
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; "
            'name="image"; filename="a.jpg"\r\n\r\n'
        ).encode()
        + image
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    head = (
        f"POST /add HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    ).encode()
    return head, body


def _probe(port: int) -> str:
    """A new connection with a whole request: "refused", "answered", or what went wrong."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    with sock:
        try:
            sock.sendall(b"GET /count HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            return "no answer"  # queued where nobody accepts it any more
    return "answered" if answer.startswith(b"HTTP/1.1 200 ") else f"cut: {answer[:60]!r}"


def _wait_for_both_workers(server: ServerProcess) -> None:
    """Until both workers have answered a request (one still starting would serve nothing)."""
    give_up = time.monotonic() + 120
    while len(_ping_pids(server)) < 2:
        assert time.monotonic() < give_up, server.log()[-3000:]
        httpx.get(server.url + "/ping", headers={"Connection": "close"}, timeout=30)


def _ping_pids(server: ServerProcess) -> set[int]:
    lines = (json.loads(line) for line in server.log().splitlines() if line.startswith("{"))
    return {line["pid"] for line in lines if line.get("message") == "GET /ping 200"}


def test_sigterm_refuses_new_connections_and_finishes_the_request_in_flight(
    tmp_path: Path, photo_paths: list[Path]
) -> None:
    data = tmp_path / "data"
    env = environment(MATCH_DATA_DIR=str(data), WORKER_COUNT="2")
    server = ServerProcess(["match", "serve"], env, tmp_path / "server.log").start()
    assert server.process is not None
    head, body = _add_request("graceful/in-flight.jpg", photo_paths[0].read_bytes())
    try:
        _wait_for_both_workers(server)
        in_flight = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        in_flight.sendall(head + body[: len(body) // 2])
        time.sleep(1.0)  # its headers are read: a request in progress
        server.process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        time.sleep(HANDSHAKE_WINDOW)
        probes: list[tuple[float, str]] = []
        while (elapsed := time.monotonic() - stopped_at) < PROBE_SECONDS:
            probes.append((elapsed, _probe(server.port)))
            time.sleep(0.05)
        answer = b""
        with in_flight:
            try:
                in_flight.sendall(body[len(body) // 2 :])
                while chunk := in_flight.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                answer = b"reset"
        code = server.process.wait(60)
    finally:
        server.stop()
    outcomes = [outcome for _, outcome in probes]
    assert set(outcomes) <= {"refused", "answered"}, probes
    first_refused = outcomes.index("refused")
    assert probes[first_refused][0] < SIGNAL_LATENCY, probes
    assert set(outcomes[first_refused:]) == {"refused"}, probes  # never listening again
    assert answer.startswith(b"HTTP/1.1 200 "), (answer[:300], server.log()[-5000:])
    assert code in GRACEFUL, server.log()[-3000:]
    store = open_store(Settings.from_env({"MATCH_DATA_DIR": str(data)}))
    try:
        assert store.count() == 1
    finally:
        store.close()
