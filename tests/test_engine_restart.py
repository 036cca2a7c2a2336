"""An engine crash under load loses no acknowledged add.

The test starts its own OpenSearch 2 node (not the engines the other tests share: it kills it)
and a real Match server on it, then adds real photos over HTTP from several client threads. Mid-
ingest it SIGKILLs the engine's whole process group and keeps sending for a few seconds: the
server stays up and answers each add 503 in the envelope, never 500 and never a hang. It then
restarts the engine on the same data folder and lets the ingest go on until the server recovers
by itself (Match is not restarted). Then `count` and `list` are exactly the acknowledged adds and
every acknowledged photo is the top hit of a search with it.

The clients retry an add answered 503, as an ingest client should: the engine may have written
an add to its translog before dying even though no answer got back, so a 503 says "not
acknowledged", not "not stored", and adds are idempotent per filepath. Acknowledged adds must
survive the SIGKILL because the engines acknowledge an index request only once it is in the
translog (index.translog.durability "request", the default).

OpenSearch 2 because it starts in ~5 s against ~12 s for Elasticsearch 8 (start_node, twice
each, on the 2-core dev machine with the shared engines running); the whole test takes ~37 s.
It can fail: with the index switched to durability "async" it lost 21 of 45 acknowledged adds.
Needs Java and Maven (or the cached download in .engines/): skipped without them, failed under
MATCH_REQUIRE_SERVERS=1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from api_server import Api, MatchServer
from conftest import skip_or_fail
from engines import delete_indexes, load_script

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.alone]

ENGINE = "os2"
HTTP_PORT = 9681  # clear of the shared engines (92xx, 93xx) and bench/cluster.py's (94xx, 95xx)
CLIENTS = 3
BEFORE_KILL = 25  # acknowledged adds before the engine is killed
DOWN_SECONDS = 4.0  # the ingest keeps sending this long while the engine is dead
AFTER_RESTART = 15  # acknowledged adds after the restart that show the service recovered
RECOVER_SECONDS = 120.0
RETRY_PAUSE = 0.3  # a polite client's pause after a 503


@pytest.fixture
def own_engine() -> Iterator[tuple[ModuleType, Any]]:
    """A node of ENGINE on its own ports and data folder, stopped (or already killed) after."""
    script = load_script()
    engine = script.ENGINES[ENGINE]
    why = script.missing_prerequisites(engine)
    if why is not None:
        skip_or_fail(f"cannot start {ENGINE} for the engine restart test: {why}")
    port = HTTP_PORT + script.PORT_OFFSET
    node = script.Node(engine, f"{ENGINE}-restart", port, port + 100)
    try:
        script.start_node(node)
    except script.EngineError as exc:
        skip_or_fail(f"cannot start {ENGINE} for the engine restart test: {exc}")
    try:
        yield script, node
    finally:
        script.stop_node(node)


@dataclass
class Ingest:
    """Adds photos from several threads; retries a 503 until acknowledged or told to stop."""

    url: str
    photos: list[Path]
    acknowledged: list[str] = field(default_factory=list)  # filepaths, in acknowledgement order
    refused: list[str] = field(default_factory=list)  # the 503 messages
    unexpected: list[str] = field(default_factory=list)  # anything else: 500s, hangs, drops
    unresolved: list[str] = field(default_factory=list)  # refused, then stopped before an ack
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_photo: int = 0

    def take(self) -> tuple[str, Path] | None:
        with self.lock:
            if self.stop.is_set() or self.next_photo == len(self.photos):
                return None
            photo = self.photos[self.next_photo]
            self.next_photo += 1
            return f"restart/{self.next_photo:03d}-{photo.name}", photo

    def run(self, _client: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while (item := self.take()) is not None:
                if not self.add_until_acknowledged(http, *item):
                    return

    def add_until_acknowledged(self, http: httpx.Client, filepath: str, photo: Path) -> bool:
        """True once acknowledged; False on an unexpected answer, or when stopped first."""
        while True:
            outcome = self.add(http, filepath, photo.read_bytes())
            with self.lock:
                if outcome is None:
                    self.acknowledged.append(filepath)
                    return True
                if not outcome.startswith("503"):
                    self.unexpected.append(f"{filepath}: {outcome}")
                    return False
                self.refused.append(outcome)
                if self.stop.is_set():
                    self.unresolved.append(filepath)
                    return False
            time.sleep(RETRY_PAUSE)

    @staticmethod
    def add(http: httpx.Client, filepath: str, image: bytes) -> str | None:
        """None if acknowledged, else what happened ("503 <message>" when refused cleanly)."""
        try:
            response = http.post(
                "/add", data={"filepath": filepath}, files={"image": ("p.jpg", image)}
            )
        except httpx.HTTPError as exc:  # the server stays up: a dropped request is a failure
            return f"{type(exc).__name__}: {exc}"
        try:
            body = response.json()
        except ValueError:
            return f"HTTP {response.status_code}, not JSON: {response.text[:200]}"
        if response.status_code == 200 and body.get("status") == "ok":
            return None
        errors = body.get("error") if isinstance(body, dict) else None
        clean = body.get("status") == "fail" and errors and all(isinstance(e, str) for e in errors)
        if response.status_code == 503 and clean and errors[0].strip():
            return f"503 {errors[0]}"
        return f"HTTP {response.status_code}: {response.text[:300]}"

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


def wait_for(condition: Any, seconds: float, what: str, ingest: Ingest) -> None:
    give_up = time.monotonic() + seconds
    while not condition():
        assert not ingest.unexpected, ingest.unexpected[:5]
        assert time.monotonic() < give_up, f"{what} not within {seconds:.0f} s"
        time.sleep(0.1)


def test_engine_sigkill_and_restart_under_load_keeps_every_acknowledged_add(
    own_engine: tuple[ModuleType, Any], photo_paths: list[Path], tmp_path: Path
) -> None:
    script, node = own_engine
    index = f"match-restart-{time.time_ns()}"
    env = {"ELASTICSEARCH_URL": node.url, "ELASTICSEARCH_INDEX": index, "WORKER_COUNT": "2"}
    server = MatchServer(env, tmp_path / "server.log").start()
    ingest = Ingest(server.url, photo_paths)
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            clients = [pool.submit(ingest.run, n) for n in range(CLIENTS)]
            try:
                crash_and_recover(script, node, ingest)
            finally:
                ingest.stop.set()
                for client in clients:
                    client.result()
        assert server.process is not None and server.process.poll() is None, server.log()[-3000:]
        check_store(Api(server.url), ingest)
    finally:
        server.stop()
        if script.read_pid(node) is not None:
            delete_indexes(node.url, index)


def crash_and_recover(script: ModuleType, node: Any, ingest: Ingest) -> None:
    wait_for(lambda: ingest.count() >= BEFORE_KILL, 60, f"{BEFORE_KILL} adds", ingest)
    assert script.kill_node(node)
    refused_before = len(ingest.refused)
    time.sleep(DOWN_SECONDS)
    assert len(ingest.refused) > refused_before, "no add was answered 503 with the engine dead"
    script.start_node(node)
    recovered = ingest.count() + AFTER_RESTART
    wait_for(lambda: ingest.count() >= recovered, RECOVER_SECONDS, "recovery", ingest)


def check_store(api: Api, ingest: Ingest) -> None:
    assert not ingest.unexpected, ingest.unexpected[:5]
    assert not ingest.unresolved, f"refused adds never acknowledged: {ingest.unresolved}"
    acknowledged = ingest.acknowledged
    assert len(set(acknowledged)) == len(acknowledged)
    try:
        assert api.ok("GET", "/count") == [len(acknowledged)]
        assert sorted(api.ok("GET", "/list", params={"limit": 1000})) == sorted(acknowledged)
        with ThreadPoolExecutor(CLIENTS) as pool:
            tops = list(pool.map(lambda path: top_hit(api, path, ingest), acknowledged))
        assert tops == acknowledged
    finally:
        api.close()


def top_hit(api: Api, filepath: str, ingest: Ingest) -> str:
    photo = next(p for p in ingest.photos if filepath.endswith(f"-{p.name}"))
    return api.search(photo.read_bytes(), limit="1")[0]["filepath"]
