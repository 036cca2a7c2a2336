"""Soak: 16 clients adding, searching and deleting against `match serve` for N minutes, with a
worker killed, the engine restarted and the disk filled once each; then every acknowledged add
is checked.

    .venv/bin/python bench/soak.py --store embedded --minutes 10
    .venv/bin/python bench/soak.py --store es8 --minutes 10     # an engine node of its own

``--store embedded``: the data folder is a tmpfs of --disk-mb mounted for the run when root (so
filling the disk fills only it); the fault is a file written until ENOSPC, held for
--full-seconds, then removed. ``--store es8|os2|os3``: a node of that engine started with
scripts/engines.py on a free port under its own name (never the shared servers), stopped and
started again as the engine fault (its disk is not filled: the engine's own watermarks, not
Match, answer that). The worker kill is a SIGKILL of one worker; uvicorn's supervisor replaces
it.

Each client loops: add a photo under a new filepath (50%), search with one (35%), delete one of
its own acknowledged filepaths (15%). At the end every filepath whose add was acknowledged
(200) and not deleted after must be listed; an add or delete that failed is not counted either
way (its outcome is unknown to the client). Prints requests, errors by kind, acknowledged adds
lost, and the workers' resident memory after warm-up and at the end (a killed worker's
replacement is counted from its start). Exits 1 when an acknowledged add was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import load  # bench/load.py: the server, worker memory, the photos

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 16
load.STARTUP_SECONDS = 600.0  # a loaded machine imports OpenCV slowly; the engine starts first
WARMUP_SECONDS = 20.0
LIST_PAGE = 1000


@dataclass
class Soak:
    url: str
    images: list[bytes]
    requests: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    error_times: list[float] = field(default_factory=list)  # seconds since the start
    acknowledged: set[str] = field(default_factory=set)  # added (200) and not deleted since
    unknown: int = 0  # adds or deletes whose outcome the client could not know
    lost: list[str] = field(default_factory=list)  # acknowledged, not deleted, not stored
    events: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, message: str) -> None:
        line = f"[{time.monotonic() - self.started:6.1f} s] {message}"
        self.events.append(line)
        print(line, flush=True)


def _kind(response: httpx.Response | None, error: Exception | None) -> str:
    if error is not None:
        return type(error).__name__
    assert response is not None
    try:
        message = response.json()["error"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        message = response.text[:60]
    return f"{response.status_code} {' '.join(str(message).split()[:6])}"


async def client(soak: Soak, number: int, stop: float) -> None:
    rng = random.Random(number)
    mine: list[str] = []
    counter = 0
    async with httpx.AsyncClient(base_url=soak.url, timeout=60) as http:
        while time.monotonic() < stop:
            roll = rng.random()
            if roll < 0.5 or not mine:
                operation = "add"
                counter += 1
                filepath = f"soak/{number}/{counter}.jpg"
                request = http.post(
                    "/add",
                    data={"filepath": filepath},
                    files={"image": ("a.jpg", rng.choice(soak.images))},
                )
            elif roll < 0.85:
                operation = "search"
                request = http.post("/search", files={"image": ("q.jpg", rng.choice(soak.images))})
            else:
                operation = "delete"
                filepath = mine.pop(rng.randrange(len(mine)))
                request = http.delete("/delete", params={"filepath": filepath})
            response, error = None, None
            try:
                response = await request
            except httpx.HTTPError as caught:
                error = caught
            soak.requests[operation] += 1
            if error is None and response is not None and response.status_code == 200:
                if operation == "add":
                    mine.append(filepath)
                    soak.acknowledged.add(filepath)
                elif operation == "delete":
                    soak.acknowledged.discard(filepath)
                continue
            soak.errors[f"{operation}: {_kind(response, error)}"] += 1
            soak.error_times.append(time.monotonic() - soak.started)
            if operation == "delete":
                soak.acknowledged.discard(filepath)  # it may or may not be gone now
                soak.unknown += 1
            elif operation == "add":
                soak.unknown += 1
            await asyncio.sleep(0.2)  # a failing server is not hammered


# -- faults ------------------------------------------------------------------------------------
def kill_a_worker(server_pid: int, soak: Soak) -> None:
    workers = sorted(load.worker_rss(server_pid))
    os.kill(workers[0], signal.SIGKILL)
    soak.note(f"fault: SIGKILL worker {workers[0]}")


async def fill_the_disk(folder: Path, hold: float, soak: Soak) -> None:
    filler = folder / "filler.bin"
    written = 0
    with open(filler, "wb") as out:
        free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
        with contextlib.suppress(OSError):
            os.posix_fallocate(out.fileno(), 0, free)  # most of it at once
        written = out.seek(0, os.SEEK_END)
        block = b"\0" * (1 << 16)
        with contextlib.suppress(OSError):
            while True:  # then to the last block
                out.write(block)
                out.flush()
                written += len(block)
    soak.note(f"fault: disk full ({written >> 20} MiB written to fill it), held {hold:g} s")
    await asyncio.sleep(hold)
    filler.unlink()
    soak.note("fault over: the filler file removed")


async def restart_the_engine(engines, node, soak: Soak) -> None:
    soak.note(f"fault: stopping the engine node {node.name}")
    await asyncio.to_thread(engines.stop_node, node)
    soak.note("engine stopped; starting it again")
    await asyncio.to_thread(engines.start_node, node)
    soak.note("engine answering again")


# -- the run -----------------------------------------------------------------------------------
def listed(url: str) -> set[str]:
    found: set[str] = set()
    offset = 0
    with httpx.Client(base_url=url, timeout=120) as http:
        while True:
            page = http.get("/list", params={"offset": offset, "limit": LIST_PAGE}).json()["result"]
            found.update(page)
            if len(page) < LIST_PAGE:
                return found
            offset += len(page)


async def soak_run(args: argparse.Namespace, url: str, server, faults) -> Soak:
    images = load.load_images(40)
    soak = Soak(url, images)
    warm_stop = time.monotonic() + WARMUP_SECONDS
    await asyncio.gather(*(client(soak, 100 + n, warm_stop) for n in range(CLIENTS)))
    rss_start = load.worker_rss(server.pid)
    soak.note(f"warm: workers' RSS {_mib(rss_start)}; soaking for {args.minutes:g} min")
    soak.requests.clear()
    soak.errors.clear()
    soak.error_times.clear()
    total = args.minutes * 60.0
    stop = time.monotonic() + total
    clients = asyncio.gather(*(client(soak, n, stop) for n in range(CLIENTS)))
    for at, fault in faults:
        await asyncio.sleep(max(0.0, stop - total + at * total - time.monotonic()))
        await fault(soak)
    await clients
    rss_end = load.worker_rss(server.pid)
    soak.note(f"done: workers' RSS {_mib(rss_end)}")
    stored = await asyncio.to_thread(listed, url)
    soak.lost = sorted(soak.acknowledged - stored)
    report(args, soak, rss_start, rss_end, soak.lost, len(stored))
    return soak


def _mib(rss: dict[int, int]) -> str:
    return ", ".join(f"{pid}: {value / 2**20:.0f} MiB" for pid, value in sorted(rss.items()))


def report(args, soak: Soak, rss_start, rss_end, lost: list[str], stored: int) -> None:
    total = sum(soak.requests.values())
    print(f"\n== soak: {args.store}, {args.minutes:g} min, {CLIENTS} clients ==")
    print(f"requests: {total} ({dict(soak.requests)}); {total / (args.minutes * 60):.1f}/s")
    print(f"errors: {sum(soak.errors.values())}")
    for kind, count in soak.errors.most_common():
        print(f"  {count:6d}  {kind}")
    windows = Counter(int(at // 30) * 30 for at in soak.error_times)
    print(
        "errors by 30 s window: " + ", ".join(f"{at} s: {n}" for at, n in sorted(windows.items()))
    )
    print(f"acknowledged adds still expected: {len(soak.acknowledged)}; stored: {stored}")
    print(f"acknowledged adds lost: {len(lost)} {lost[:10]}")
    print(f"adds/deletes with an unknown outcome (failed): {soak.unknown}")
    start, end = sum(rss_start.values()), sum(rss_end.values())
    print(
        f"workers' RSS: {start / 2**20:.0f} MiB after warm-up -> {end / 2**20:.0f} MiB at the end"
        f" ({(end - start) / start * 100:+.1f}%); per worker {_mib(rss_start)} -> {_mib(rss_end)}"
    )
    survivors = set(rss_start) & set(rss_end)
    if survivors:
        a = sum(rss_start[pid] for pid in survivors)
        b = sum(rss_end[pid] for pid in survivors)
        print(f"workers that lived through the run: {(b - a) / a * 100:+.1f}%")
    print("events:\n  " + "\n  ".join(soak.events))


def _engines_module():
    spec = importlib.util.spec_from_file_location("engines", ROOT / "scripts" / "engines.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["engines"] = module
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="embedded", help="embedded, es8, os2 or os3")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--disk-mb", type=int, default=1024, help="the embedded store's tmpfs")
    parser.add_argument("--full-seconds", type=float, default=20.0)
    args = parser.parse_args()
    args.engine = None
    folder = Path(tempfile.mkdtemp(prefix=f"soak-{args.store}-", dir="/tmp"))
    mounted, node, engines = False, None, None
    try:
        if args.store == "embedded":
            (folder / "data").mkdir()
            if os.geteuid() == 0:
                subprocess.run(
                    [
                        "mount",
                        "-t",
                        "tmpfs",
                        "-o",
                        f"size={args.disk_mb}m",
                        "tmpfs",
                        folder / "data",
                    ],
                    check=True,
                )
                mounted = True
        else:
            engines = _engines_module()
            engine = engines.engine_named(args.store)
            http_port, transport_port = load.free_port(), load.free_port()
            node = engines.Node(engine, f"soak-{args.store}-{http_port}", http_port, transport_port)
            args.engine = engines.start_node(node)
            print(f"engine node {node.name} at {args.engine}")
        server, url = load.start_server(args, folder)
        faults = [(0.25, lambda soak: _sync(kill_a_worker, server.pid, soak))]
        if args.store == "embedded":
            if mounted:
                faults.append(
                    (0.5, lambda soak: fill_the_disk(folder / "data", args.full_seconds, soak))
                )
        else:
            faults.append((0.5, lambda soak: restart_the_engine(engines, node, soak)))
        try:
            soak = asyncio.run(soak_run(args, url, server, faults))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(120)
        summary = {"requests": dict(soak.requests), "errors": dict(soak.errors), "lost": soak.lost}
        (folder / "soak.json").write_text(json.dumps(summary, indent=1))
        print(f"server log and summary: {folder}")
        return 1 if soak.lost else 0
    finally:
        if node is not None:
            engines.stop_node(node)
        if mounted:
            subprocess.run(["umount", folder / "data"], check=False)


async def _sync(function, *args) -> None:
    function(*args)


if __name__ == "__main__":
    sys.exit(main())
