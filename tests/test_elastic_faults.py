"""Faults: the engine down, slow, or back again; a bulk item the engine rejects.

The store talks to the real engine through a TCP forwarder on a loopback port that the test
opens and closes: closed, the engine is down for the store; open again, it is back.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from match.errors import BadParameter, StoreDamaged, StoreUnavailable
from match.signature import SIGNATURE_LENGTH
from match.stores.base import ImageRecord
from match.stores.elastic import ElasticStore, EngineClient

pytestmark = pytest.mark.engine


class Forwarder:
    """Forwards loopback connections on ``port`` to ``target``; start/stop at will."""

    def __init__(self, target: tuple[str, int], port: int) -> None:
        self.target = target
        self.port = port
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.tls: ssl.SSLContext | None = None  # set: clients speak TLS to the forwarder

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                if self.tls is not None:
                    client.settimeout(10)
                    client = self.tls.wrap_socket(client, server_side=True)
                    client.settimeout(None)
                upstream = socket.create_connection(self.target)
            except OSError:  # ssl.SSLError included: a client that refused the certificate
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def forwarder(engine_url: str):
    url = httpx.URL(engine_url)
    forwarder = Forwarder((url.host, url.port or 9200), free_port())
    yield forwarder
    forwarder.stop()


def some_records(count: int, prefix: str = "") -> list[ImageRecord]:
    rng = np.random.default_rng(count)
    signatures = rng.integers(-2, 3, size=(count, SIGNATURE_LENGTH), dtype=np.int8)
    return [ImageRecord(f"{prefix}{i}.jpg", sig) for i, sig in enumerate(signatures)]


def store_at(url: str, index: str, *, retries: int = 1, timeout: float = 10.0) -> ElasticStore:
    client = EngineClient(url, timeout=timeout, retries=retries)
    return ElasticStore(client, index, refresh_interval="200ms")


def test_engine_down_is_store_unavailable_without_credentials() -> None:
    url = f"http://elastic:s3cret-pw@127.0.0.1:{free_port()}"
    store = store_at(url, "images")
    operations = [
        store.ping,
        store.count,
        lambda: store.list(),
        lambda: store.get("a.jpg"),
        lambda: store.delete("a.jpg"),
        lambda: store.add(some_records(1)[0]),
        lambda: store.add_many(some_records(3)),
        lambda: store.search(some_records(1)[0].signature[None, :], 0.45, 10),
        lambda: store.local_candidates(np.array([1, 2, 3]), 30),
    ]
    for operation in operations:
        with pytest.raises(StoreUnavailable) as caught:
            operation()
        message = str(caught.value)
        assert "cannot be reached" in message
        assert "127.0.0.1" in message
        assert "s3cret-pw" not in message and "elastic:" not in message
        assert caught.value.status == 503
    store.close()


def test_slow_engine_times_out_as_store_unavailable() -> None:
    silent = socket.socket()  # accepts connections (backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    store = store_at(f"http://127.0.0.1:{silent.getsockname()[1]}", "images", timeout=0.3)
    try:
        with pytest.raises(StoreUnavailable, match="did not answer in time"):
            store.count()
    finally:
        store.close()
        silent.close()


def test_store_recovers_when_the_engine_is_back(forwarder: Forwarder, engine_index: str) -> None:
    store = store_at(f"http://127.0.0.1:{forwarder.port}", engine_index)
    with pytest.raises(StoreUnavailable):  # down before the first use
        store.count()
    forwarder.start()
    store.add_many(some_records(5))
    assert store.count() == 5
    forwarder.stop()  # down while in use: pooled connections are cut
    with pytest.raises(StoreUnavailable):
        store.count()
    with pytest.raises(StoreUnavailable):
        store.add(some_records(6)[5])
    forwarder.start()  # back: no restart of the store needed
    assert store.count() == 5
    store.add(some_records(6)[5])
    assert store.list()[-1] == "5.jpg"
    store.close()


def test_outage_shorter_than_the_retries_is_invisible(
    forwarder: Forwarder, engine_index: str
) -> None:
    store = store_at(f"http://127.0.0.1:{forwarder.port}", engine_index, retries=6)
    timer = threading.Timer(0.2, forwarder.start)  # backoff waits ~12 s in all, far longer
    timer.start()
    try:
        assert store.count() == 0
    finally:
        timer.join()
        store.close()


def test_index_deleted_behind_the_store_is_said_until_repaired(
    engine_url: str, engine_index: str
) -> None:
    """Not created again, empty, to answer as if nothing had been stored: StoreDamaged (503)
    naming it, reads and writes alike, until ``match check --repair`` creates it anew."""
    store = store_at(engine_url, engine_index)
    store.add_many(some_records(3))
    httpx.delete(f"{engine_url}/{engine_index}").raise_for_status()
    for operation in (
        lambda: store.local_candidates(np.array([1, 2, 3]), 30),
        store.count,
        lambda: store.add(some_records(1)[0]),
    ):
        with pytest.raises(StoreDamaged, match=f"{engine_index}' was deleted while in use"):
            operation()
    assert "was deleted" in store.readiness()[0]
    repaired = store.check(repair=True)
    assert not repaired.damaged and "created anew" in repaired.repaired[0]
    assert store.count() == 0
    store.add(some_records(1)[0])
    mapping = httpx.get(f"{engine_url}/{engine_index}/_mapping").json()
    assert next(iter(mapping.values()))["mappings"]["dynamic"] == "strict"
    assert store.list() == ["0.jpg"]
    store.close()


def test_failed_bulk_items_are_reported(engine_url: str, engine_index: str) -> None:
    store = store_at(engine_url, engine_index)
    records = some_records(6)
    too_long = "x" * 40_000  # over Lucene's 32766-byte term limit: the engine rejects it
    bad_signature = ImageRecord("short.jpg", np.zeros(10, dtype=np.int8))
    batch = [*records[:3], ImageRecord(too_long, records[3].signature), bad_signature, *records[4:]]
    result = store.add_many(batch)
    assert result.added == 5
    failed = dict(result.failed)
    assert set(failed) == {too_long, "short.jpg"}
    assert "path" in failed[too_long]  # the engine's reason names the field
    assert "648" in failed["short.jpg"]
    assert store.count() == 5
    assert store.list() == [r.filepath for r in records[:3] + records[4:]]
    with pytest.raises(BadParameter, match="cannot be stored"):
        store.add(ImageRecord(too_long, records[0].signature))
    store.close()


def test_configuration_errors_are_clear(tmp_path, engine_url: str) -> None:
    with pytest.raises(StoreUnavailable, match="ELASTICSEARCH_URL"):
        EngineClient("ftp://127.0.0.1:9200")
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(StoreUnavailable, match="ELASTICSEARCH_CA_BUNDLE"):
        EngineClient("https://127.0.0.1:9200", ca_bundle=str(missing))
    store = store_at(engine_url, "Not A Valid Index")
    with pytest.raises(StoreUnavailable, match="ELASTICSEARCH_INDEX"):
        store.count()
    store.close()


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no system trust store knows, and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_is_verified_against_the_ca_bundle(
    tmp_path: Path, forwarder: Forwarder, engine_index: str
) -> None:
    """The engine behind TLS with a self-signed certificate: refused without the CA bundle,
    used with it."""
    cert, key = self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    forwarder.tls = server_tls
    forwarder.start()
    url = f"https://127.0.0.1:{forwarder.port}"
    untrusting = store_at(url, engine_index)
    with pytest.raises(StoreUnavailable, match="cannot be reached") as caught:
        untrusting.count()
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    untrusting.close()
    client = EngineClient(url, ca_bundle=str(cert), retries=1)
    trusting = ElasticStore(client, engine_index, refresh_interval="200ms")
    trusting.add(some_records(1)[0])
    assert trusting.list() == ["0.jpg"]
    trusting.close()
