"""Bulk ingest with partial matching on (issue 13): does it use every core? One process against
two, side by side in one run, on the embedded store and on an engine.

    nice .venv/bin/python bench/bulk.py                                  # embedded store
    nice .venv/bin/python bench/bulk.py --engine http://127.0.0.1:9281   # and an engine

Two ways in, each with 1 then 2 processes doing the image work, on a fresh store every time:
- the CLI: `match add FOLDER --jobs N` (--photos of ../shared/photos/originals, as on disk);
- the API: batches of 10 images through POST /rest/add/ to `match serve` with N workers, sent by
  N clients at once (one batch is one request, worked in one worker).
Prints images/s, the CPU ms per image of every process involved (the command and its workers;
the server's processes), the cores kept busy (CPU / wall), for the CLI the serial part (its
main process's CPU per image: reading the list, the store's writes), and the speedup of 2 over
1. On an idle 2-core machine the best is 2x, less the serial part (Amdahl: the workers' share
of the CPU per image bounds the speedup at total / serial). On a shared, loaded machine the
wall-time speedup says little (the cores are not ours to take): CPU per image that does not grow
with processes, a small serial part, and the cores kept busy are the figures to read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

import shared_photos
from stages import tree_cpu

BATCH = 10  # TinEye's batch limit


@dataclass
class Run:
    seconds: float
    cpu: float
    images: int
    serial: float | None = None  # CPU s of the part that does not run in parallel

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def clean_env(store: dict[str, str]) -> dict[str, str]:
    prefixes = ("MATCH_", "ELASTICSEARCH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    return env | {"MATCH_PARTIAL_MATCHING": "true"} | store


def own_cpu(pid: int) -> float | None:
    """utime + stime (s) of one process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cli_run(folder: Path, count: int, jobs: int, store: dict[str, str]) -> Run:
    command = [str(Path(sys.executable).parent / "match"), "add", str(folder), "--recursive"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen([*command, "--jobs", str(jobs), "--silent"], env=clean_env(store))
    main_cpu = 0.0  # the command's own process: what does not run in parallel
    while process.poll() is None:
        main_cpu = own_cpu(process.pid) or main_cpu
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"bulk: match add exited with {process.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Run(seconds, cpu, count, main_cpu)


async def send_batches(url: str, paths: list[Path], clients: int) -> None:
    batches = [paths[i : i + BATCH] for i in range(0, len(paths), BATCH)]
    queue: asyncio.Queue[list[Path]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            files = [
                (f"images[{n}]", (p.name, p.read_bytes(), "image/jpeg"))
                for n, p in enumerate(batch)
            ]
            data = {f"filepaths[{n}]": f"bulk/{p.name}" for n, p in enumerate(batch)}
            answer = await client.post(f"{url}/rest/add/", data=data, files=files)
            body = answer.json()
            if answer.status_code != 200 or body["status"] != "ok":
                raise SystemExit(f"bulk: a batch failed: {answer.status_code} {body}")

    async with httpx.AsyncClient(timeout=300) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))


def api_run(paths: list[Path], workers: int, store: dict[str, str], log: Path) -> Run:
    port = 20000 + (os.getpid() + workers) % 20000
    env = clean_env(store) | {"HOST": "127.0.0.1", "PORT": str(port), "WORKER_COUNT": str(workers)}
    url = f"http://127.0.0.1:{port}"
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "match"), "serve"], env=env, stdout=out, stderr=out
        )
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/ping", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        before = tree_cpu(server.pid)
        started = time.perf_counter()
        asyncio.run(send_batches(url, paths, workers))
        seconds = time.perf_counter() - started
        return Run(seconds, tree_cpu(server.pid) - before, len(paths))
    finally:
        server.terminate()
        server.wait(timeout=30)


def report(label: str, one: Run, two: Run) -> None:
    for processes, run in ((1, one), (2, two)):
        serial = "" if run.serial is None else f"{run.serial / run.images * 1000:>11.1f}"
        print(
            f"{label:<28} {processes:>9} {run.rate:>9.2f} {run.seconds:>8.1f} "
            f"{run.cpu / run.images * 1000:>11.0f} {run.cpu / run.seconds:>8.2f} {serial}"
        )
    print(f"{label:<28} {'2 vs 1':>9} {two.rate / one.rate:>8.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--engine", help="also measure on this Elasticsearch/OpenSearch URL")
    args = parser.parse_args()
    shared_photos.photos_dir("bench/bulk.py")
    paths = sorted((shared_photos.PHOTOS / "originals").glob("*.jpg"))[: args.photos]
    stores: list[tuple[str, str | None]] = [("embedded", None)]
    if args.engine:
        stores.append(("engine", args.engine))
    print(f"{len(paths)} photos, partial matching on, {os.cpu_count()} cores")
    heads = f"{'images/s':>9} {'wall s':>8} {'CPU ms/img':>11} {'cores':>8} {'serial ms':>11}"
    print(f"\n{'store, way in':<28} {'processes':>9} {heads}")
    created: list[str] = []
    with tempfile.TemporaryDirectory(prefix="match-bulk-") as folder:
        base = Path(folder)
        photos = base / "photos"
        photos.mkdir()
        for path in paths:
            (photos / path.name).symlink_to(path)

        def fresh(engine: str | None) -> dict[str, str]:
            if engine is None:
                return {"MATCH_DATA_DIR": str(base / uuid.uuid4().hex)}
            created.append(f"bulk-{uuid.uuid4().hex}")
            return {"ELASTICSEARCH_URL": engine, "ELASTICSEARCH_INDEX": created[-1]}

        try:
            for label, engine in stores:
                one = cli_run(photos, len(paths), 1, fresh(engine))
                two = cli_run(photos, len(paths), 2, fresh(engine))
                report(f"{label}, match add", one, two)
                one = api_run(paths, 1, fresh(engine), base / "serve.log")
                two = api_run(paths, 2, fresh(engine), base / "serve.log")
                report(f"{label}, /rest/add/ x{BATCH}", one, two)
        finally:
            for index in created:
                for name in (index, f"{index}-hashes"):
                    httpx.delete(f"{args.engine}/{name}", timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
