"""Benchmark of PDQ lookups on hash-only records, on the embedded store or an engine.

    .venv/bin/python bench/pdq.py --count 1000000                       # embedded store
    .venv/bin/python bench/pdq.py --count 1000000 --url http://127.0.0.1:9281   # an engine
    .venv/bin/python bench/pdq.py --count 100000 --flips 0              # exact terms only

The population is synthetic, which PDQ's bits allow (each is a median threshold, so a hash is
close to uniformly random): ``count`` hash-only records, 90 % random 256-bit hashes and 10 %
perturbed copies of earlier ones (each bit flipped with a chance drawn up to 31/256). The
queries: half are perturbed copies of stored hashes at a uniform 0-31 random bit flips (real
matches), half random hashes (no match, the usual case of a moderation lookup).

Printed: load rate (add_hashes, batches of 20,000); lookups/s of ``--procs`` processes (2: the
machine's cores) each running its share of the queries one at a time through
``Store.pdq_search`` (distance 31, one query hash); p50/p99 latency; recall of every (query,
record) pair within 31 bits against a brute-force Hamming scan over all stored hashes; and,
beside them, HMA's published target of 4,000 lookups/s at 10M hashes (ThreatExchange
pdq/README.md: "proven up to 4000 images/sec"; hma/goals.md: 10M hashes on one box).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from match import pdq
from match.pdq.codec import as_words
from match.stores.base import HashRecord

HMA_LOOKUPS_PER_SECOND = 4000
BATCH = 20_000


def population(count: int, seed: int) -> np.ndarray:
    """(count, 32) uint8 hashes: random, and 10 % perturbed copies of earlier ones."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    copies = rng.choice(np.arange(count // 10, count), count // 10, replace=False)
    for start in range(0, len(copies), 100_000):
        chunk = copies[start : start + 100_000]
        sources = rng.integers(0, chunk.min() if chunk.min() > 0 else 1, len(chunk))
        rates = rng.uniform(0, 31 / 256, (len(chunk), 1))
        flips = rng.random((len(chunk), 256)) < rates
        bits = np.unpackbits(hashes[sources], axis=1) ^ flips.astype(np.uint8)
        hashes[chunk] = np.packbits(bits, axis=1)
    return hashes


def queries(stored: np.ndarray, count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed + 1)
    found = []
    for n in range(count):
        if n % 2:
            found.append(rng.integers(0, 256, 32, dtype=np.uint8).tobytes())
            continue
        bits = np.unpackbits(stored[rng.integers(0, len(stored))])
        bits[rng.choice(256, int(rng.integers(0, 32)), replace=False)] ^= 1
        found.append(np.packbits(bits).tobytes())
    return found


def open_store(args: argparse.Namespace):
    if args.url:
        from match.stores.elastic import ElasticStore, EngineClient

        client = EngineClient(args.url, timeout=120)
        return ElasticStore(client, args.index, bulk_refresh=True, pdq_flips=args.flips)
    from match.stores.sqlite import SQLiteStore

    return SQLiteStore(args.data, pdq_flips=args.flips)


def load(args: argparse.Namespace, stored: np.ndarray) -> float:
    store = open_store(args)
    started = time.perf_counter()
    for start in range(0, len(stored), BATCH):
        chunk = stored[start : start + BATCH]
        store.add_hashes(
            HashRecord(f"h{start + i}", row.tobytes(), 90) for i, row in enumerate(chunk)
        )
        if start // BATCH % 25 == 0:
            print(f"  loaded {start + len(chunk):,}", file=sys.stderr, flush=True)
    if args.url:
        store.client.request("POST", f"/{store._hashes.name}/_refresh")
    seconds = time.perf_counter() - started
    store.close()
    return seconds


def _worker(
    job: tuple[argparse.Namespace, list[bytes]],
) -> tuple[list[float], list[list[str]], float]:
    args, mine = job
    store = open_store(args)
    store.pdq_search(mine[:1], 31, 1000)  # warm: connection, caches
    latencies, found = [], []
    cpu = time.process_time()
    for query in mine:
        started = time.perf_counter()
        hits = store.pdq_search([query], 31, 1000)
        latencies.append(time.perf_counter() - started)
        found.append([hit.filepath for hit in hits])
    cpu = time.process_time() - cpu
    store.close()
    return latencies, found, cpu


def brute_force(
    stored: np.ndarray, asked: list[bytes], threads: int
) -> tuple[list[set[str]], float]:
    """Every stored hash within 31 bits of each query, by a NumPy XOR + popcount scan of all of
    them (one contiguous column per 64 bits), ``threads`` queries at a time: the ground truth,
    and the reference rate (lookups/s) of a linear scan on the same cores."""
    columns = np.ascontiguousarray(as_words(stored).T)
    chunk = 1 << 20  # rows at a time: the temporaries stay in cache

    def scan(query: bytes) -> set[str]:
        words = as_words(query)[0]
        found = []
        distance = np.empty(chunk, dtype=np.uint16)
        for start in range(0, columns.shape[1], chunk):
            part = columns[:, start : start + chunk]
            here = distance[: part.shape[1]]
            here.fill(0)
            for w in range(4):
                here += np.bitwise_count(part[w] ^ words[w])
            found.append(start + np.flatnonzero(here <= 31))
        return {f"h{i}" for i in np.concatenate(found)}

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        truth = list(pool.map(scan, asked))
    return truth, len(asked) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--flips", type=int, default=pdq.PROBE_FLIPS, choices=(0, 1))
    parser.add_argument("--url", help="an engine's URL (default: the embedded store)")
    parser.add_argument("--index", default=f"bench-pdq-{uuid.uuid4().hex[:8]}")
    parser.add_argument("--data", help="embedded store folder (default: a new temporary one)")
    parser.add_argument("--reuse", action="store_true", help="the store is loaded already")
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args()
    args.data = args.data or tempfile.mkdtemp(prefix="bench-pdq-")
    where = args.url or args.data
    print(f"store: {'engine ' + args.url + ' index ' + args.index if args.url else where}")
    stored = population(args.count, args.seed)
    if not args.reuse:
        seconds = load(args, stored)
        print(
            f"load: {args.count:,} hash-only records in {seconds:.0f} s "
            f"({args.count / seconds:,.0f} records/s)"
        )
    if not args.url:
        store = open_store(args)
        started = time.perf_counter()
        store.prepare()  # what a server does before its workers start
        print(
            f"index: built and mapped in {time.perf_counter() - started:.0f} s; "
            f"{store.shared_index_bytes() / 2**20:,.0f} MiB of shared segments, "
            f"{store.pdq_index_bytes() / 2**20:,.0f} MiB of this process's own"
        )
        store.close()
    asked = queries(stored, args.queries, args.seed)
    shares = [asked[p :: args.procs] for p in range(args.procs)]
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.procs) as pool:
        answers = pool.map(_worker, [(args, share) for share in shares])
    wall = time.perf_counter() - started
    lookup_load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    latencies = np.array([lat for lats, _, _ in answers for lat in lats]) * 1000
    cpu_ms = sum(cpu for _, _, cpu in answers) / len(asked) * 1000
    found: list[list[str]] = [[] for _ in asked]
    for p, (_, results, _) in enumerate(answers):
        for k, paths in enumerate(results):
            found[p + k * args.procs] = paths
    cached = (
        None
        if args.url
        else Path(args.data) / f"truth-{args.count}-{args.queries}-{args.seed}.json"
    )
    if cached is not None and cached.exists():  # the same population and queries: the same truth
        truth, brute_rate = [set(t) for t in json.loads(cached.read_text())], None
    else:
        truth, brute_rate = brute_force(stored, asked, args.procs)
        if cached is not None:
            cached.write_text(json.dumps([sorted(t) for t in truth]))
    pairs = sum(len(t) for t in truth)
    hit = sum(len(t & set(f)) for t, f in zip(truth, found, strict=True))
    false = sum(len(set(f) - t) for t, f in zip(truth, found, strict=True))
    # the pool's start-up is in ``wall``; the per-process rate excludes it
    busy = max(sum(lats) for lats, _, _ in answers)
    print(
        f"lookups: {len(asked)} queries, {args.procs} processes, probing radius {args.flips}\n"
        f"  throughput {len(asked) / busy:,.0f} lookups/s (wall incl. start-up "
        f"{len(asked) / wall:,.0f}/s)   HMA target: {HMA_LOOKUPS_PER_SECOND:,} lookups/s at 10M\n"
        f"  CPU time {cpu_ms:.2f} ms a lookup (the lookup processes' own; an engine's not "
        f"counted): at most {1000 / cpu_ms:,.0f} lookups/s a core were the cores free\n"
        f"  latency p50 {np.percentile(latencies, 50):.2f} ms, p99 "
        f"{np.percentile(latencies, 99):.2f} ms, max {latencies.max():.2f} ms\n"
        f"  recall at distance <= 31 vs brute force: {hit}/{pairs} = "
        f"{hit / max(pairs, 1):.4f} (records returned beyond 31: {false})\n"
        f"  load average at the end of the lookups {lookup_load}"
    )
    if brute_rate is None:
        print("  reference: brute force not run again (its answers were saved by an earlier run)")
    else:
        print(
            f"  reference: brute-force NumPy scan of all {args.count:,} hashes, {args.procs} "
            f"threads: {brute_rate:,.1f} lookups/s (index / scan: "
            f"{len(asked) / busy / brute_rate:,.1f}x)"
        )
    print(f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.url and not args.reuse:
        store = open_store(args)
        store.client.request("DELETE", f"/{args.index},{store._hashes.name}", allow=(404,))
    print(f"cpu count {os.cpu_count()}")


if __name__ == "__main__":
    main()
