"""Where an add's and a search's time goes (issue 13): each stage's CPU and wall time, per image,
in one process, then the same requests through `match serve` (1 worker) to show what HTTP and
multipart add on top.

    nice .venv/bin/python bench/stages.py                                  # embedded store
    nice .venv/bin/python bench/stages.py --engine http://127.0.0.1:9281   # and an engine

Photos: the first --photos (40) of ../shared/photos/originals as they are on disk, added to a
fresh store; the queries are their JPEG q50 recompressions (bench/endtoend.py's shape). Stages
run one after the other on one thread (CPU is the process's, so OpenCV's or BLAS's own threads
count): an add is decode, upright signature, PDQ hash, thumbnail, local features (as stored),
the store's write (embedded: one transaction with its fsync; engine: the bulk request and the
refresh that makes it searchable, shared by concurrent adds); a search is decode, 8 signatures,
8 PDQ hashes, local features with the mirror image's, and the store's three lookups (signature
candidates ranked exactly, partial matching's candidates verified, PDQ). Medians and means per
image (photos of many sizes make a stage's mean larger than its median).

Then `match serve` with one worker on the same store kind gets as many /ping requests, then the
same adds and searches, one at a time: the server's CPU per request (its processes' utime +
stime from /proc) beside the sum of the stages, and the client's wall p50. The machine is
shared: CPU figures are the ones to compare, wall times only say where waiting happens.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

import shared_photos
from match import local, pdq
from match import signature as sig
from match.service import Matcher, methods
from match.service.thumbnails import make_thumbnail
from match.settings import Settings
from match.stores import ImageRecord
from processes import tree_cpu

Timings = dict[str, list[tuple[float, float]]]  # stage: [(cpu s, wall s)] per image


@contextmanager
def stage(timings: Timings, name: str) -> Iterator[None]:
    cpu, wall = time.process_time(), time.perf_counter()
    yield
    timings[name].append((time.process_time() - cpu, time.perf_counter() - wall))


def photos(count: int) -> list[tuple[str, bytes, bytes]]:
    """(filepath, bytes as on disk, a JPEG q50 recompression) of the first ``count`` photos."""
    paths = sorted((shared_photos.PHOTOS / "originals").glob("*.jpg"))[:count]
    chosen = []
    for path in paths:
        data = path.read_bytes()
        chosen.append((f"stages/{path.name}", data, shared_photos.recompressed(data)))
    return chosen


def adds(matcher: Matcher, images: list[tuple[str, bytes, bytes]]) -> Timings:
    """Each add's stages, the way Analyser.record and Store.add run them."""
    timings: Timings = defaultdict(list)
    settings = matcher.settings
    for filepath, data, _ in images:
        with stage(timings, "decode"):
            pixels, size = sig.decode_for_signature(
                data, max_pixels=settings.match_max_image_pixels, mode=settings.match_signature_mode
            )
        with stage(timings, "signature (1)"):
            signatures = sig.pixels_orientation_signatures(pixels, range(1))
        with stage(timings, "PDQ hash (1)"):
            found = pdq.pdq_hash(pixels)
        with stage(timings, "thumbnail"):
            thumbnail = make_thumbnail(pixels)
        with stage(timings, "local features"):
            features = local.local_features(pixels, local.STORED)
        record = ImageRecord(
            filepath,
            signatures[0],
            local=features,
            size=size,
            pdq=found.hash,
            pdq_quality=found.quality,
            thumbnail=thumbnail,
        )
        with stage(timings, "store write"):
            matcher.store.add(record)
    return timings


def searches(matcher: Matcher, images: list[tuple[str, bytes, bytes]]) -> Timings:
    """Each search's stages, the way Analyser.query and Matcher.search run them."""
    timings: Timings = defaultdict(list)
    settings = matcher.settings
    store = matcher.store
    cutoff = settings.match_distance_cutoff
    for _, _, copy in images:
        with stage(timings, "decode"):
            pixels, size = sig.decode_for_signature(
                copy, max_pixels=settings.match_max_image_pixels, mode=settings.match_signature_mode
            )
        with stage(timings, "signatures (8)"):
            signatures = sig.pixels_orientation_signatures(pixels, range(8))
        with stage(timings, "PDQ hashes (8)"):
            hashes, quality = pdq.dihedral_hashes(pixels)
        with stage(timings, "local features + mirror"):
            found, mirrored = local.local_features_and_mirror(pixels, local.QUERY)
        query = methods.Query(
            signatures, found, size, tuple(hashes), quality, mirrored_local=mirrored
        )
        with stage(timings, "store: signature search"):
            methods.signature_matches(store, query, cutoff, 100)
        with stage(timings, "store: local candidates"):
            for features in (found, mirrored):
                store.local_candidates(
                    features.words,
                    methods.LOCAL_SHORTLIST,
                    bits=features.bits,
                    signatures=signatures,
                )
        with stage(timings, "local: candidates + verify"):
            methods.local_matches(store, query, cutoff=cutoff)
        with stage(timings, "store: PDQ search"):
            methods.pdq_matches(store, query.pdq, quality, 100, images=False)
    return timings


# -- the server -------------------------------------------------------------------------------


def served(
    env: dict[str, str], images: list[tuple[str, bytes, bytes]], folder: Path
) -> dict[str, tuple[float, float]]:
    """(server CPU s per request, client wall p50 s) of add and search through `match serve`."""
    port = 20000 + os.getpid() % 20000
    env = {k: v for k, v in os.environ.items() if not k.startswith("MATCH_")} | env
    env |= {"HOST": "127.0.0.1", "PORT": str(port), "WORKER_COUNT": "1"}
    log = open(folder / "serve.log", "wb")  # noqa: SIM115 - for the server's lifetime
    server = subprocess.Popen([str(Path(sys.executable).parent / "match"), "serve"], env=env,
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=120) as client:
            for _ in range(600):
                try:
                    if client.get(f"{url}/ping").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            figures = {}
            before = tree_cpu(server.pid)
            for _ in range(len(images)):
                client.get(f"{url}/ping").raise_for_status()
            figures["ping"] = ((tree_cpu(server.pid) - before) / len(images), 0.0)
            for name in ("add", "search"):
                walls = []
                before = tree_cpu(server.pid)
                for filepath, data, copy in images:
                    form = {"filepath": filepath} if name == "add" else {}
                    image = data if name == "add" else copy
                    started = time.perf_counter()
                    answer = client.post(
                        f"{url}/{name}", data=form, files={"image": ("i.jpg", image)}
                    )
                    walls.append(time.perf_counter() - started)
                    answer.raise_for_status()
                cpu = (tree_cpu(server.pid) - before) / len(images)
                figures[name] = (cpu, statistics.median(walls))
            return figures
    finally:
        server.terminate()
        server.wait(timeout=30)


# -- the report -------------------------------------------------------------------------------
NESTED = {"store: local candidates"}
"""Stages timed inside another ("local: candidates + verify"): printed, not summed."""


def table(title: str, timings: Timings) -> float:
    """Print each stage's median and mean CPU and median wall ms; returns the sum of the mean
    CPUs (s), which compares with the server's CPU per request (a mean too: photos of many
    sizes make a stage's mean larger than its median)."""
    print(f"\n{title:<34} {'CPU p50':>8} {'CPU mean':>9} {'wall p50':>9} {'share':>6}")
    figures = {
        name: (
            statistics.median(c for c, _ in runs),
            statistics.fmean(c for c, _ in runs),
            statistics.median(w for _, w in runs),
        )
        for name, runs in timings.items()
    }
    total = sum(mean for name, (_, mean, _) in figures.items() if name not in NESTED)
    for name, (cpu, mean, wall) in figures.items():
        print(
            f"  {name:<32} {cpu * 1000:>8.1f} {mean * 1000:>9.1f} {wall * 1000:>9.1f}"
            f" {mean / total:>6.0%}"
        )
    print(f"  {'sum of stages (means)':<32} {'':>8} {total * 1000:>9.1f}")
    return total


def run(label: str, settings: Settings, images: Any) -> tuple[float, float]:
    """Print the add and search stages on a fresh store; their CPU sums (s)."""
    matcher = Matcher(settings)
    try:
        added = adds(matcher, images)
        searched = searches(matcher, images)
    finally:
        matcher.close()
    return table(f"add, {label}", added), table(f"search, {label}", searched)


def run_http(
    label: str, env: dict[str, str], images: Any, folder: Path, stages: tuple[float, float]
) -> None:
    http = served(env, images, folder)
    print(f"\nthrough `match serve` (1 worker), {label}, one request at a time:")
    print(
        f"  {'request':<8} {'server CPU ms':>14} {'stages ms':>10} {'HTTP etc.':>10} {'p50 ms':>7}"
    )
    ping = http["ping"][0]
    print(f"  {'/ping':<8} {ping * 1000:>14.1f}   (HTTP's own cost per request, no image)")
    for name, stages_cpu in zip(("add", "search"), stages, strict=True):
        cpu, wall = http[name]
        print(
            f"  {name:<8} {cpu * 1000:>14.1f} {stages_cpu * 1000:>10.1f} "
            f"{(cpu - stages_cpu) * 1000:>10.1f} {wall * 1000:>7.0f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--engine", help="also measure on this Elasticsearch/OpenSearch URL")
    parser.add_argument("--no-http", action="store_true", help="skip the `match serve` part")
    args = parser.parse_args()
    shared_photos.photos_dir("bench/stages.py")
    images = photos(args.photos)
    with tempfile.TemporaryDirectory(prefix="match-stages-") as folder:
        base = Path(folder)
        data = base / "data"
        stages = run("embedded", Settings.from_env({"MATCH_DATA_DIR": str(data)}), images)
        if not args.no_http:
            run_http("embedded", {"MATCH_DATA_DIR": str(base / "served")}, images, base, stages)
        if args.engine:
            index = f"stages-{uuid.uuid4().hex}"
            engine = {"ELASTICSEARCH_URL": args.engine, "ELASTICSEARCH_INDEX": index}
            try:
                stages = run("engine", Settings.from_env(engine), images)
                if not args.no_http:
                    served_index = {**engine, "ELASTICSEARCH_INDEX": f"{index}-served"}
                    run_http("engine", served_index, images, base, stages)
            finally:
                for name in (index, f"{index}-served"):
                    httpx.delete(f"{args.engine}/{name}")
                    httpx.delete(f"{args.engine}/{name}-hashes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
