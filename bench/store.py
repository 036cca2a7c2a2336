"""Benchmark of the embedded store (SQLiteStore) at 10k, 100k and 1M stored images.

    .venv/bin/python bench/store.py                      # 10k, 100k, 1M (about 5 minutes)
    .venv/bin/python bench/store.py --sizes 10000,100000 # quicker

The population: the signatures of the real photos (originals and distractors), near-duplicates
of 150 of them (perturbed copies at distances spread evenly up to the 0.45 cutoff, 8 each), and
synthetic Goldberg-like signatures (smooth random 9x9 grey grids put through the signature's
differences and quantisation) for scale. At each size it prints:

- bulk insert rate of add_many (signature generation excluded) and single add() latency;
- disk bytes per image (database after a WAL checkpoint);
- from a fresh worker process: index load time, p50/p99 search latency (wall clock and CPU
  time) for one orientation (real photo signatures) and for all 8 (the photos' orientation
  signatures), list() latency at any offset, resident memory (peak RSS of that process);
- recall of search() against an exhaustive scan over every stored signature, for all queries,
  overall and by distance band.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from match.signature import image_signature, normalized_distances, orientation_signatures
from match.stores.base import ImageRecord
from match.stores.sqlite import SQLiteStore
from match.stores.sqlite.codes import unpack_signatures
from shared_photos import PHOTOS, photos_dir

CUTOFF = 0.45
BASES = 150
COPIES = 8
ORIENTED_QUERIES = 30
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_HAS_NEIGHBOUR = np.stack(
    [np.pad(np.ones((9, 9)), 1)[1 + dr : 10 + dr, 1 + dc : 10 + dc] for dr, dc in _NEIGHBOURS],
    axis=2,
).astype(np.float32)


# -- population ---------------------------------------------------------------------------------
def real_signatures(photos: Path) -> tuple[list[str], np.ndarray]:
    paths = sorted((photos / "originals").glob("*.jpg"))
    paths += sorted((photos / "distractors").glob("*.jpg"))
    signatures = np.stack([image_signature(path) for path in paths])
    keep = np.any(signatures, axis=1)  # a blank signature matches nothing
    return [p.name for p, k in zip(paths, keep, strict=True) if k], signatures[keep]


def near_duplicates(bases: np.ndarray, copies: int, rng: np.random.Generator) -> np.ndarray:
    """``copies`` perturbed versions of each base, at target distances uniform in (0.01, 0.45):
    values at random positions replaced by random levels until the distance reaches the target."""
    out = []
    for base in bases:
        for target in rng.uniform(0.01, CUTOFF, copies):
            rank = rng.permutation(base.size)  # when each position gets replaced
            levels = rng.integers(-2, 3, base.size).astype(np.int8)
            replaced = rank[None, :] < np.arange(base.size + 1)[:, None]
            steps = np.where(replaced, levels, base)  # row n: n positions replaced
            distances = normalized_distances(base, steps)
            below = np.flatnonzero(distances < target)
            out.append(steps[below[-1]])
    return np.stack(out)


def synthetic(n: int, rng: np.random.Generator) -> np.ndarray:
    """Goldberg-like signatures of smooth random grey grids (their pairwise distances have the
    real photos' median, 0.71, and a slightly heavier near tail)."""
    u = np.linspace(0.0, np.pi, 9)
    freq = np.arange(4)
    rows = np.cos(freq[None, :, None] * u + rng.uniform(0, 2 * np.pi, (n, 4, 1)))
    cols = np.cos(freq[None, :, None] * u + rng.uniform(0, 2 * np.pi, (n, 4, 1)))
    amp = rng.normal(0, 1, (n, 4, 4)) / (1 + freq[:, None] + freq[None, :])
    grid = rows.transpose(0, 2, 1) @ amp @ cols  # sum of amp[a, b] * rows[a, i] * cols[b, j]
    grid *= 0.7 * 0.3 / (np.abs(grid).max(axis=(1, 2), keepdims=True) + 1e-9)
    grid += 0.3 * 0.3 * rng.uniform(0, 1, (n, 9, 9))
    grid = grid.astype(np.float32)
    padded = np.zeros((n, 11, 11), dtype=np.float32)
    padded[:, 1:10, 1:10] = grid
    diffs = np.empty((n, 9, 9, 8), dtype=np.float32)
    for k, (dr, dc) in enumerate(_NEIGHBOURS):
        np.subtract(grid, padded[:, 1 + dr : 10 + dr, 1 + dc : 10 + dc], out=diffs[..., k])
    diffs *= _HAS_NEIGHBOUR  # no neighbour outside the grid: difference 0
    diffs = diffs.reshape(n, -1)
    diffs[np.abs(diffs) < 2 / 255] = 0.0
    up, down = _medians(diffs)
    out = (diffs > 0).view(np.int8) + (diffs > up).view(np.int8)
    out -= (diffs < 0).view(np.int8) + (diffs < down).view(np.int8)
    return out


def _medians(diffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the median of the positive values and of the negative values (as
    np.percentile(..., 50) of each; 0 where there are none)."""
    ordered = np.sort(diffs, axis=1)
    width = diffs.shape[1]
    negatives = (diffs < 0).sum(axis=1)
    positives = (diffs > 0).sum(axis=1)

    def middle(first: np.ndarray, count: np.ndarray) -> np.ndarray:
        low = np.clip(first + (count - 1) // 2, 0, width - 1)
        high = np.clip(first + count // 2, 0, width - 1)
        pick = np.take_along_axis
        values = (pick(ordered, low[:, None], 1) + pick(ordered, high[:, None], 1)) / 2
        return np.where(count[:, None] > 0, values, 0.0)

    return middle(width - positives, positives), middle(np.zeros_like(negatives), negatives)


# -- measurements -------------------------------------------------------------------------------
def timed_insert(store: SQLiteStore, names: list[str], signatures: np.ndarray) -> np.ndarray:
    """Wall-clock and CPU seconds of add_many (records built beforehand)."""
    records = [ImageRecord(name, sig) for name, sig in zip(names, signatures, strict=True)]
    wall, cpu = time.perf_counter(), time.process_time()
    result = store.add_many(records)
    assert not result.failed, result.failed[:3]
    return np.array([time.perf_counter() - wall, time.process_time() - cpu])


def disk_bytes(store: SQLiteStore) -> int:
    with sqlite3.connect(store.path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return sum(p.stat().st_size for p in store.path.parent.glob(store.path.name + "*"))


def ground_truth(store: SQLiteStore, queries: list[np.ndarray]) -> list[dict[str, float]]:
    """{filepath: distance} under the cutoff for each query (k, 648), by scanning every stored
    row (the distance of a query with k rows is the minimum over them)."""
    rows = np.concatenate(queries)
    owner = np.repeat(np.arange(len(queries)), [len(q) for q in queries])
    truth: list[dict[str, float]] = [{} for _ in queries]
    conn = sqlite3.connect(store.path)
    cursor = conn.execute("SELECT filepath, signature FROM images")
    while chunk := cursor.fetchmany(20_000):
        distances = normalized_distances(rows, unpack_signatures([row[1] for row in chunk]))
        for query_row, stored in zip(*np.nonzero(distances < CUTOFF), strict=True):
            found, filepath = truth[owner[query_row]], chunk[stored][0]
            found[filepath] = min(found.get(filepath, 1.0), distances[query_row, stored])
    conn.close()
    return truth


def run_worker(data_dir: str, queries_file: str) -> dict:
    """Searches from a fresh process, as a server worker would run them."""
    output = subprocess.run(
        [sys.executable, __file__, "--worker", data_dir, queries_file],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(output.stdout)


def timed_search(store: SQLiteStore, query: np.ndarray) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one search (a busy machine inflates only the first)."""
    wall, cpu = time.perf_counter(), time.process_time()
    store.search(query, CUTOFF, 100)
    return time.perf_counter() - wall, time.process_time() - cpu


def timed_list(store: SQLiteStore, offset: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    assert len(store.list(offset, 20)) == 20
    return time.perf_counter() - wall, time.process_time() - cpu


def worker(data_dir: str, queries_file: str) -> None:
    queries = np.load(queries_file)
    single, oriented = queries["single"], queries["oriented"]
    store = SQLiteStore(data_dir)
    start = time.perf_counter()
    store.list(0, 1)  # loads the candidate index
    load = time.perf_counter() - start
    count = store.count()
    lists = [timed_list(store, offset) for offset in (0, count // 2, count - 20) * 10]
    one = [timed_search(store, query[None, :]) for query in single]
    eight = [timed_search(store, query) for query in oriented]
    found = [
        [hit.filepath for hit in store.search(query, CUTOFF, 1_000_000)]
        for query in [q[None, :] for q in single] + list(oriented)
    ]
    peak = next(
        line
        for line in Path("/proc/self/status").read_text().splitlines()
        if line.startswith("VmHWM")
    )
    json.dump(
        {
            "load": load,
            "list": lists,
            "one": one,
            "eight": eight,
            "found": found,
            "rss_mb": int(peak.split()[1]) / 1024,
            "index_mb": store.index_bytes() / 2**20,
        },
        sys.stdout,
    )


def ms(values: list[float], q: float) -> str:
    return f"{1000 * float(np.quantile(values, q)):.1f}"


def latency(timings: list[list[float]]) -> str:
    wall, cpu = [t[0] for t in timings], [t[1] for t in timings]
    return (
        f"p50 {ms(wall, 0.5)} ms, p99 {ms(wall, 0.99)} ms (CPU time p50 {ms(cpu, 0.5)} ms, "
        f"p99 {ms(cpu, 0.99)} ms; {len(wall)} calls)"
    )


def recall(truth: list[dict[str, float]], found: list[list[str]], low: float, high: float) -> str:
    expected = [{f for f, d in t.items() if low <= d < high} for t in truth]
    hits = sum(len(e & set(f)) for e, f in zip(expected, found, strict=True))
    total = sum(len(e) for e in expected)
    return f"{hits}/{total} = {100 * hits / max(total, 1):.2f}%"


def report(
    size: int,
    insert_rate: float,
    single_add: list[float],
    disk: int,
    result: dict,
    truth: list[dict[str, float]],
) -> None:
    print(f"\n== {size:,} images ==")
    print(
        f"bulk insert (add_many): {insert_rate[0]:,.0f} signatures/s (per CPU second: "
        f"{insert_rate[1]:,.0f}); single add(): p50 {ms(single_add, 0.5)} ms"
    )
    print(f"disk: {disk / size:,.0f} bytes per image ({disk / 2**20:,.0f} MiB)")
    print(
        f"worker: index load {result['load']:.2f} s, index {result['index_mb']:.0f} MiB, "
        f"peak RSS {result['rss_mb']:.0f} MiB"
    )
    print(f"search, 1 orientation:  {latency(result['one'])}")
    print(f"search, 8 orientations: {latency(result['eight'])}")
    print(f"list(offset, 20) at offsets 0, n/2, n-20: {latency(result['list'])}")
    print(f"recall vs exhaustive scan: {recall(truth, result['found'], 0.0, CUTOFF)}")
    for low, high in ((0.0, 0.3), (0.3, 0.4), (0.4, CUTOFF)):
        band = recall(truth, result["found"], low, high)
        print(f"  images at distance {low:.2f}-{high:.2f}: {band}")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--dir", help="data folder (default: a temporary one, removed after)")
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as data_dir:
        photos = photos_dir("bench/store.py", args.photos)
        bench(data_dir, [int(s) for s in args.sizes.split(",")], photos)


def bench(data_dir: str, sizes: list[int], photos: Path) -> None:
    started = time.perf_counter()
    rng = np.random.default_rng(2002)
    names, real = real_signatures(photos)
    bases = real[:BASES]
    copies = near_duplicates(bases, COPIES, rng)
    oriented = np.stack(
        [orientation_signatures(photos / "originals" / name) for name in names[:ORIENTED_QUERIES]]
    )
    single = np.concatenate([bases, real[-50:]])  # photos with near-duplicates, distractors
    queries_file = os.path.join(data_dir, "queries.npz")
    np.savez(queries_file, single=single, oriented=oriented)
    print(
        f"population: {len(real)} real photo signatures, {len(copies)} near-duplicates, "
        f"synthetic signatures for the rest; {len(single)} + {len(oriented)} queries"
    )

    store = SQLiteStore(data_dir)
    seconds = timed_insert(store, names, real)
    seconds += timed_insert(store, [f"near/{i}" for i in range(len(copies))], copies)
    stored = inserted = len(real) + len(copies)
    for size in sizes:
        while stored < size:
            n = min(100_000, size - stored)
            signatures = synthetic(n, rng)
            seconds += timed_insert(store, [f"syn/{stored + i}" for i in range(n)], signatures)
            stored += n
            inserted += n
        rate = inserted / seconds
        single_add = []
        for i, signature in enumerate(synthetic(20, rng)):
            start = time.perf_counter()
            store.add(ImageRecord(f"single/{size}/{i}", signature))
            single_add.append(time.perf_counter() - start)
        stored += 20
        seconds, inserted = np.zeros(2), 0
        disk = disk_bytes(store)
        result = run_worker(data_dir, queries_file)
        truth = ground_truth(store, [q[None, :] for q in single] + list(oriented))
        report(stored, rate, single_add, disk, result, truth)
    store.close()
    print(f"\nbenchmark run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
