"""Load benchmark: mixed add/search traffic against `match serve` on loopback.

    .venv/bin/python bench/load.py                       # 16 clients, 60 s, embedded store
    .venv/bin/python bench/load.py --seconds 20 --workers 2 --engine http://127.0.0.1:9200

Starts `match serve` itself (a fresh embedded store in a temporary folder, or a fresh index on
--engine), warms it up, then runs --concurrency asyncio clients (httpx) for --seconds: each
request is an add of a photo under a new filepath (--add-share of them) or a search with one.
Images are the real photos (resized to 640 px, re-encoded as JPEG) or synthetic ones without them.

Prints, per endpoint: requests, errors, p50/p99 latency; overall requests/s; and the resident
memory (RSS, from /proc) of every worker after warm-up and at the end. Exits 1 when a request
failed or worker memory grew by --max-growth (10%) or more after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

import shared_photos

PHOTOS = shared_photos.PHOTOS
STARTUP_SECONDS = 120.0
RSS_INTERVAL = 5.0
CONNECT_STAGGER_SECONDS = 0.3


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    warmup: int = 0  # requests before measuring

    def record(self, endpoint: str, seconds: float, error: str | None) -> None:
        self.latencies[endpoint].append(seconds)
        if error:
            self.errors[endpoint].append(error)


# -- the server ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(args: argparse.Namespace, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MATCH_", "ELASTICSEARCH_"))
    }
    env |= {"HOST": "127.0.0.1", "PORT": str(port), "WORKER_COUNT": str(args.workers)}
    if args.engine:
        env |= {"ELASTICSEARCH_URL": args.engine, "ELASTICSEARCH_INDEX": f"load-{uuid.uuid4().hex}"}
    else:
        env["MATCH_DATA_DIR"] = str(folder / "data")
    command = [str(Path(sys.executable).parent / "match"), "serve"]
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - open for the server's lifetime
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    give_up = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < give_up:
        if process.poll() is not None:
            sys.exit(f"match serve exited with {process.returncode}; see {folder}/server.log")
        try:
            if httpx.get(url + "/ping", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    sys.exit("match serve did not answer /ping in time")


def worker_rss(server_pid: int) -> dict[int, int]:
    """Resident memory in bytes of each worker process (the server's children)."""
    rss = {}
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            if b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue  # multiprocessing's helper, not a worker
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss[int(pid)] = int(line.split()[1]) * 1024
    return rss


# -- the images ---------------------------------------------------------------------------------
def load_images(count: int) -> list[bytes]:
    paths = sorted((PHOTOS / "originals").glob("*.jpg")) + sorted(
        (PHOTOS / "distractors").glob("*.jpg")
    )
    if len(paths) < count:
        print(
            f"load: {len(paths)} photos in {PHOTOS} (../shared/photos, MATCH_SHARED_DIR), "
            f"{count - len(paths)} synthetic images instead of the missing ones"
        )
    images = []
    for path in paths[:count]:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((640, 640))
            images.append(_jpeg(image))
    rng = np.random.default_rng(3)
    while len(images) < count:  # no photos: random colour blocks
        blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        images.append(_jpeg(Image.fromarray(blocks).resize((256, 256), Image.Resampling.NEAREST)))
    return images


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


# -- the clients --------------------------------------------------------------------------------
async def request(
    client: httpx.AsyncClient, images: list[bytes], rng: random.Random, add_share: float
) -> tuple[str, str | None]:
    image = rng.choice(images)
    if rng.random() < add_share:
        endpoint = "add"
        data = {"filepath": f"load/{uuid.uuid4().hex}.jpg", "metadata": '{"bench": true}'}
    else:
        endpoint, data = "search", {"limit": "10"}
    try:
        response = await client.post(f"/{endpoint}", data=data, files={"image": ("i.jpg", image)})
    except httpx.HTTPError as error:
        return endpoint, f"{type(error).__name__}: {error}"
    if response.status_code != 200:
        return endpoint, f"HTTP {response.status_code}: {response.text[:200]}"
    return endpoint, None


async def client_loop(
    url: str, images: list[bytes], seed: int, phases: Phases, add_share: float, stats: Stats
) -> None:
    """One client on one keep-alive connection through warm-up and measurement (the same
    connections, so each worker's share of the load does not change between the two)."""
    rng = random.Random(seed)
    # Connect one after another: connections opened all at once are all accepted by whichever
    # worker wakes first, and the other workers would sit idle for the whole run.
    await asyncio.sleep(seed * CONNECT_STAGGER_SECONDS)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        while time.monotonic() < phases.end:
            measured = time.monotonic() >= phases.measure_from
            started = time.perf_counter()
            endpoint, error = await request(client, images, rng, add_share)
            if measured:
                stats.record(endpoint, time.perf_counter() - started, error)
            else:
                stats.warmup += 1
                if error:
                    stats.errors[endpoint].append(f"during warm-up: {error}")


async def sample_rss(server_pid: int, phases: Phases, samples: list[dict[int, int]]) -> None:
    """Worker RSS at the end of warm-up, then every RSS_INTERVAL seconds until the end."""
    await asyncio.sleep(max(phases.measure_from - time.monotonic(), 0))
    while True:
        samples.append(worker_rss(server_pid))
        left = phases.end - time.monotonic()
        if left <= 0:
            return
        await asyncio.sleep(min(RSS_INTERVAL, left))


@dataclass(frozen=True)
class Phases:
    measure_from: float  # monotonic time when warm-up ends
    end: float


async def drive(
    url: str, server_pid: int, images: list[bytes], args: argparse.Namespace
) -> tuple[Stats, float, list[dict[int, int]]]:
    """Warm up, then measure; the stats of the measured part, its length and RSS samples."""
    stats, samples = Stats(), []
    now = time.monotonic()
    phases = Phases(measure_from=now + args.warmup, end=now + args.warmup + args.seconds)
    await asyncio.gather(
        sample_rss(server_pid, phases, samples),
        *(
            client_loop(url, images, n, phases, args.add_share, stats)
            for n in range(args.concurrency)
        ),
    )
    return stats, time.monotonic() - phases.measure_from, samples


# -- report -------------------------------------------------------------------------------------
def report(
    stats: Stats, elapsed: float, before: dict[int, int], after: dict[int, int]
) -> tuple[float, int]:
    """Print the figures; (worst worker RSS growth, errors)."""
    total = sum(len(values) for values in stats.latencies.values())
    print(f"{'endpoint':<10}{'requests':>10}{'errors':>8}{'p50 ms':>10}{'p99 ms':>10}")
    for endpoint, values in sorted(stats.latencies.items()):
        p50, p99 = np.percentile(np.array(values) * 1000, [50, 99])
        errors = len(stats.errors[endpoint])
        print(f"{endpoint:<10}{len(values):>10}{errors:>8}{p50:>10.1f}{p99:>10.1f}")
    print(f"total: {total} requests in {elapsed:.1f} s = {total / elapsed:.1f} requests/s")
    worst = 0.0
    for pid in sorted(before):
        grown = (after.get(pid, 0) - before[pid]) / before[pid]
        worst = max(worst, grown)
        print(
            f"worker {pid}: RSS {before[pid] / 2**20:.1f} MiB after warm-up, "
            f"{after.get(pid, 0) / 2**20:.1f} MiB at the end ({grown:+.1%})"
        )
    for endpoint, errors in stats.errors.items():
        for error in errors[:5]:
            print(f"error on {endpoint}: {error}")
    return worst, sum(len(errors) for errors in stats.errors.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds before measuring")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--add-share", type=float, default=0.3, help="share of adds")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--max-growth", type=float, default=0.10)
    parser.add_argument("--engine", help="Elasticsearch/OpenSearch URL (default: embedded)")
    args = parser.parse_args()

    images = load_images(args.images)
    with tempfile.TemporaryDirectory(prefix="match-load-") as tmp:
        process, url = start_server(args, Path(tmp))
        try:
            print(f"match serve: {args.workers} workers on {url}; {len(images)} images")
            stats, elapsed, samples = asyncio.run(drive(url, process.pid, images, args))
            if process.poll() is not None:
                log = (Path(tmp) / "server.log").read_text(errors="replace").splitlines()
                print(f"match serve exited with {process.returncode} during the run:")
                print("\n".join(log[-40:]))
                return 1
            before, after = samples[0], samples[-1]
            for pid in sorted(before):
                series = " ".join(f"{sample.get(pid, 0) / 2**20:.0f}" for sample in samples)
                print(f"worker {pid} RSS MiB every {RSS_INTERVAL:g} s: {series}")
            count = httpx.get(url + "/count", timeout=30).json()["result"][0]
            print(
                f"warm-up: {stats.warmup} requests in {args.warmup:g} s; stored at the end {count}"
            )
            growth, errors = report(stats, elapsed, before, after)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    ok = errors == 0 and growth < args.max_growth
    print(f"{'PASS' if ok else 'FAIL'}: {errors} errors, worst worker RSS growth {growth:+.1%}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
