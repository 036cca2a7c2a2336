"""End to end, side by side: Match on its defaults against a stand-in of the seed's service.

    .venv/bin/python bench/endtoend.py --engine http://127.0.0.1:9281            # Match embedded
    .venv/bin/python bench/endtoend.py --engine http://127.0.0.1:9281 --match-on-engine

The stand-in (bench/seed_service.py) is dsys/match's design: Flask behind gunicorn (sync
workers) calling image-match 1.1.2 with 8 orientations on search, on Elasticsearch. Its venv
(Flask, gunicorn, scikit-image, image-match --no-deps) is made in bench/.seed-venv on the first
run. It always needs an engine (--engine); Match runs on a fresh embedded store in a temporary
folder, or with --match-on-engine on a fresh index of the same engine.

One run, both servers, same shape (the issue's): --workers each (2), an empty store, --photos
(300) photos added at --concurrency (4), then the same number of JPEG-recompressed copies
(quality 50) searched at the same concurrency. The photos are ../shared/photos (originals then
distractors, by name) as they are on disk (JPEG q95, long side <= 1600 px). The servers run one
after the other, never at once, so they do not share the 2 cores.

Prints per server and phase: requests/s, p50/p99 latency, errors, the server's CPU per request
(its processes' utime + stime from /proc; the engine's is not counted) and for search how often
the original came first; then Match's ratios against the stand-in and the issue's targets (add
>= 2x, search >= 5x, p99 of both under the stand-in's p50), and the stand-in's CPU per request
over Match's: on a shared machine the throughput ratio follows who got the cores, the CPU
ratio what throughput each would reach on cores of its own (if the engine is not the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

import shared_photos
from processes import tree_cpu

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = shared_photos.PHOTOS
SEED_VENV = ROOT / "bench" / ".seed-venv"
SEED_PACKAGES = ["flask>=3", "gunicorn>=22", "scikit-image>=0.22", "numpy", "pillow", "httpx"]
STARTUP_SECONDS = 120.0


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    firsts: int = 0
    cpu: float = 0.0  # the server's processes' CPU seconds over the phase (not the engine's)

    @property
    def cpu_per_request(self) -> float:
        done = len(self.latencies) + len(self.errors)
        return self.cpu / done if done else 0.0

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, share: float) -> float:
        return float(np.percentile(self.latencies, share)) * 1000 if self.latencies else 0.0


# -- the servers --------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def seed_venv() -> Path:
    python = SEED_VENV / "bin" / "python"
    if not (SEED_VENV / ".installed").exists():
        print("endtoend: making the stand-in's venv in bench/.seed-venv", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(SEED_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, *SEED_PACKAGES], check=True)
        subprocess.run([*pip, "--no-deps", "image-match==1.1.2"], check=True)
        (SEED_VENV / ".installed").touch()
    return SEED_VENV / "bin"


def clean_env() -> dict[str, str]:
    prefixes = ("MATCH_", "ELASTICSEARCH_", "SEED_")
    return {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}


def start_seed(args: argparse.Namespace, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = clean_env() | {"SEED_ES_URL": args.engine, "SEED_ES_INDEX": args.seed_index}
    command = [  # gunicorn by module: a venv's console scripts name the folder it was made in
        *(str(seed_venv() / "python"), "-m", "gunicorn"),
        *("-w", str(args.workers), "-b", f"127.0.0.1:{port}", "-t", "60"),
        *("--chdir", str(ROOT / "bench"), "seed_service:app"),
    ]
    return _started(command, env, folder / "seed.log", f"http://127.0.0.1:{port}")


def start_match(args: argparse.Namespace, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = clean_env() | {"HOST": "127.0.0.1", "PORT": str(port), "WORKER_COUNT": str(args.workers)}
    if args.match_on_engine:
        env |= {"ELASTICSEARCH_URL": args.engine, "ELASTICSEARCH_INDEX": args.match_index}
    else:
        env["MATCH_DATA_DIR"] = str(folder / "data")
    command = [str(Path(sys.executable).parent / "match"), "serve"]
    return _started(command, env, folder / "match.log", f"http://127.0.0.1:{port}")


def _started(
    command: list[str], env: dict[str, str], log_path: Path, url: str
) -> tuple[subprocess.Popen[bytes], str]:
    log = open(log_path, "wb")  # noqa: SIM115 - open for the server's lifetime
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    give_up = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < give_up:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            sys.exit(f"{command[0]} exited with {process.returncode}:\n{tail}")
        try:
            if httpx.get(url + "/ping", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.kill()
    sys.exit(f"{command[0]} did not answer /ping in time; see {log_path}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


# -- the images ---------------------------------------------------------------------------------
def photos(count: int) -> list[tuple[str, bytes, bytes]]:
    """(filepath, the photo's bytes, a JPEG q50 recompression of it) for the first ``count``."""
    paths = sorted((PHOTOS / "originals").glob("*.jpg")) + sorted(
        (PHOTOS / "distractors").glob("*.jpg")
    )
    if len(paths) < count:
        sys.exit(f"endtoend: needs {count} photos in {PHOTOS}, found {len(paths)}")
    chosen = []
    for path in paths[:count]:
        data = path.read_bytes()
        chosen.append((f"e2e/{path.name}", data, shared_photos.recompressed(data)))
    return chosen


# -- the clients --------------------------------------------------------------------------------
def error_of(answer: httpx.Response) -> str:
    """The envelope's error, short; nothing if the body is not Match's envelope."""
    try:
        return "; ".join(answer.json()["error"])[:120]
    except (ValueError, KeyError, TypeError):
        return ""


async def run_phase(url: str, name: str, jobs: list[tuple[str, bytes]], concurrency: int) -> Phase:
    phase = Phase(name)
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            filepath, image = queue.get_nowait()
            files = {"image": ("image.jpg", image, "image/jpeg")}
            data = {"filepath": filepath} if name == "add" else {}
            started = time.perf_counter()
            try:
                answer = await client.post(f"{url}/{name}", data=data, files=files)
                elapsed = time.perf_counter() - started
                if answer.status_code != 200:
                    phase.errors.append(f"{answer.status_code} {error_of(answer)}".strip())
                    continue
                phase.latencies.append(elapsed)
                result = answer.json()["result"]
                if name == "search" and result and result[0]["filepath"] == filepath:
                    phase.firsts += 1
            except httpx.HTTPError as error:
                phase.errors.append(type(error).__name__)

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        phase.seconds = time.perf_counter() - started
    return phase


def measure(
    start, args: argparse.Namespace, images: list[tuple[str, bytes, bytes]], folder: Path
) -> dict[str, Phase]:
    process, url = start(args, folder)
    try:
        before = tree_cpu(process.pid)
        added = asyncio.run(
            run_phase(url, "add", [(f, data) for f, data, _ in images], args.concurrency)
        )
        added.cpu, before = tree_cpu(process.pid) - before, tree_cpu(process.pid)
        time.sleep(args.settle)  # an engine's refresh, a deferred index: both servers alike
        before = tree_cpu(process.pid)
        searched = asyncio.run(
            run_phase(url, "search", [(f, copy) for f, _, copy in images], args.concurrency)
        )
        searched.cpu = tree_cpu(process.pid) - before
    finally:
        stop(process)
    return {"add": added, "search": searched}


# -- the report ---------------------------------------------------------------------------------
def report(match: dict[str, Phase], seed: dict[str, Phase], match_store: str) -> int:
    heads = f"{'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'CPU ms/req':>10}"
    print(f"\n{'server':<34} {'phase':<7} {heads}")
    for label, phases in (
        (f"Match ({match_store})", match),
        ("stand-in (Flask+image-match)", seed),
    ):
        for phase in phases.values():
            print(
                f"{label:<34} {phase.name:<7} {phase.per_second:>7.1f} "
                f"{phase.percentile(50):>8.0f} {phase.percentile(99):>8.0f} {len(phase.errors):>6} "
                f"{phase.cpu_per_request * 1000:>10.1f}"
            )
    for label, phases in (("Match", match), ("stand-in", seed)):
        search = phases["search"]
        print(f"{label}: original first for {search.firsts}/{len(search.latencies)} searches")
        for phase in phases.values():
            if phase.errors:  # what failed, so that an error count is not a mystery
                kinds = Counter(phase.errors).most_common()
                print(f"{label}: {phase.name} errors: " + ", ".join(f"{k} x{n}" for k, n in kinds))
    targets = {"add": 2.0, "search": 5.0}
    print(
        f"\n{'ratio (Match / stand-in)':<26} {'throughput':>10} {'target':>7} {'p99<seed p50':>13}"
        f" {'CPU/req':>8}"
    )
    met = True
    for name, target in targets.items():
        ratio = match[name].per_second / seed[name].per_second if seed[name].per_second else 0.0
        under = match[name].percentile(99) < seed[name].percentile(50)
        met = met and ratio >= target and under
        cpu = seed[name].cpu_per_request / match[name].cpu_per_request if match[name].cpu else 0.0
        print(
            f"{name:<26} {ratio:>9.2f}x {target:>6.1f}x {'yes' if under else 'no':>15} {cpu:>7.2f}x"
        )
    print(f"targets {'met' if met else 'NOT met'}")
    return 0 if met else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", required=True, help="Elasticsearch/OpenSearch URL (stand-in)")
    parser.add_argument("--match-on-engine", action="store_true", help="Match on --engine too")
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds between add and search")
    args = parser.parse_args()
    shared_photos.photos_dir("bench/endtoend.py")
    images = photos(args.photos)
    store = "engine" if args.match_on_engine else "embedded"
    args.seed_index, args.match_index = f"seed-{uuid.uuid4().hex}", f"e2e-{uuid.uuid4().hex}"
    try:
        with tempfile.TemporaryDirectory(prefix="match-e2e-") as folder:
            seed = measure(start_seed, args, images, Path(folder))
            match = measure(start_match, args, images, Path(folder))
    finally:  # the engine is shared: leave nothing behind
        for index in (args.seed_index, args.match_index, f"{args.match_index}-hashes"):
            httpx.delete(f"{args.engine}/{index}", timeout=60)
    return report(match, seed, store)


if __name__ == "__main__":
    sys.exit(main())
