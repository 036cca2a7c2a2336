"""Benchmark of PDQ lookups on hash-only records, on the embedded store or an engine.

    .venv/bin/python bench/pdq.py --count 1000000                       # embedded store
    .venv/bin/python bench/pdq.py --count 1000000 --url http://127.0.0.1:9281   # an engine
    .venv/bin/python bench/pdq.py --count 100000 --flips 0              # exact terms only
    .venv/bin/python bench/pdq.py --count 10000000 --data /tmp/pdq10m --reuse --http \\
        --reference /work/main/src --reference-data /tmp/pdq10m-main  # every mode side by side

The population is synthetic, which PDQ's bits allow (each is a median threshold, so a hash is
close to uniformly random): ``count`` hash-only records, 90 % random 256-bit hashes and 10 %
perturbed copies of earlier ones (each bit flipped with a chance drawn up to 31/256). The
queries: half are perturbed copies of stored hashes at a uniform 0-31 random bit flips (real
matches), half random hashes (no match, the usual case of a moderation lookup).

Printed: load rate (add_hashes, batches of 20,000); then, for each mode, lookups/s of
``--procs`` processes (2: the machine's cores) sharing the queries, the CPU time a lookup cost
(the lookup processes' own; through HTTP the server's), p50/p99 latency (of a request: one hash,
or a batch) and recall of every (query, record) pair within 31 bits against a brute-force
Hamming scan over all stored hashes. The modes: the library one hash at a time
(``Store.pdq_search``) and in batches of ``--batch`` (``Store.pdq_search_batch``); with
``--reference SRC``, the library one hash at a time as another checkout's code does it (e.g.
main's, to compare with today's code in the same run); with ``--http``, ``match serve`` (2
workers) asked one hash a request (``POST /search`` with ``pdq``) and a batch a request
(``POST /hashes/search``). Beside them: the brute-force scan's rate and HMA's published target
of 4,000 lookups/s at 10M hashes (ThreatExchange pdq/README.md: "proven up to 4000
images/sec"; hma/goals.md: 10M hashes on one box).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from match import pdq
from match.pdq.codec import as_words
from match.stores.base import HashRecord
from processes import tree_cpu

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


WARM = 200
"""Random hashes looked up before the figures: the connection, the caches, and the pages of
the mapped segments a lookup touches (a server's first lookups fault them in)."""


def warm_hashes() -> list[bytes]:
    rng = np.random.default_rng(12345)
    return [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(WARM)]


def _worker(
    job: tuple[argparse.Namespace, list[bytes]],
) -> tuple[list[float], list[list[str]], float]:
    args, mine = job
    store = open_store(args)
    for query in warm_hashes():
        store.pdq_search([query], 31, 1000)
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


def _batch_worker(
    job: tuple[argparse.Namespace, list[bytes]],
) -> tuple[list[float], list[list[str]], float]:
    """``_worker`` with the share looked up ``args.batch`` hashes at a time; a latency is a
    batch's."""
    args, mine = job
    store = open_store(args)
    store.pdq_search_batch(warm_hashes(), 31, 1000)
    latencies, found = [], []
    cpu = time.process_time()
    for start in range(0, len(mine), args.batch):
        started = time.perf_counter()
        each = store.pdq_search_batch(mine[start : start + args.batch], 31, 1000)
        latencies.append(time.perf_counter() - started)
        found += [[hit.filepath for hit in hits] for hits in each]
    cpu = time.process_time() - cpu
    store.close()
    return latencies, found, cpu


REFERENCE_WORKER = """
import json, sys, time
import numpy as np
from match.stores.sqlite import SQLiteStore
data, flips, asked, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
mine = [row.tobytes() for row in np.load(asked)]
store = SQLiteStore(data, pdq_flips=flips)
rng = np.random.default_rng(12345)
for _ in range(200):  # as warm_hashes()
    store.pdq_search([rng.integers(0, 256, 32, dtype=np.uint8).tobytes()], 31, 1000)
latencies, found = [], []
cpu = time.process_time()
for query in mine:
    started = time.perf_counter()
    hits = store.pdq_search([query], 31, 1000)
    latencies.append(time.perf_counter() - started)
    found.append([hit.filepath for hit in hits])
cpu = time.process_time() - cpu
json.dump([latencies, found, cpu], open(out, "w"))
"""


def reference(
    args: argparse.Namespace, shares: list[list[bytes]]
) -> list[tuple[list[float], list[list[str]], float]]:
    """``_worker``'s lookups run by the code under ``args.reference`` (a checkout's src), one
    process a share, at the same time."""
    folder = Path(tempfile.mkdtemp(prefix="bench-pdq-reference-"))
    env = dict(os.environ, PYTHONPATH=str(Path(args.reference).resolve()))
    running = []
    for n, share in enumerate(shares):
        np.save(folder / f"asked{n}.npy", np.frombuffer(b"".join(share), np.uint8).reshape(-1, 32))
        command = [
            sys.executable,
            "-c",
            REFERENCE_WORKER,
            args.reference_data or args.data,
            str(args.flips),
            str(folder / f"asked{n}.npy"),
            str(folder / f"out{n}.json"),
        ]
        running.append(subprocess.Popen(command, env=env))
    for process in running:
        if process.wait() != 0:
            sys.exit(f"the reference worker failed ({process.returncode})")
    answers = [json.loads((folder / f"out{n}.json").read_text()) for n in range(len(shares))]
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    return [(lat, found, cpu) for lat, found, cpu in answers]


# -- through HTTP -----------------------------------------------------------------------------
def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    """``match serve`` (this checkout's code, 2 workers) on the embedded store at args.data."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MATCH_", "ELASTICSEARCH_"))}
    env |= {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WORKER_COUNT": str(args.procs),
        "MATCH_DATA_DIR": args.data,
        "MATCH_PDQ_PROBE_RADIUS": str(args.flips),
        "MATCH_PDQ_BATCH_MAX": str(max(args.batch, WARM)),
    }
    log = open(Path(args.data) / "bench-server.log", "wb")  # noqa: SIM115 - the server's life
    process = subprocess.Popen(
        [sys.executable, "-m", "match", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    give_up = time.monotonic() + 600
    while time.monotonic() < give_up:
        if process.poll() is not None:
            sys.exit(f"match serve exited with {process.returncode}; see bench-server.log")
        try:
            if httpx.get(url + "/ping", timeout=5).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    sys.exit("match serve did not answer /ping in time")


def over_http(
    url: str, server: int, asked: list[bytes], clients: int, batch: int
) -> tuple[list[float], list[list[str]], float, float]:
    """(latencies, found, server CPU seconds, busy seconds) of the lookups through HTTP, by
    ``clients`` concurrent clients: one hash a request (``batch`` 0) or ``batch`` a request."""
    size = max(batch, 1)
    requests = [asked[i : i + size] for i in range(0, len(asked), size)]

    local = threading.local()  # a client (a kept-alive connection) a thread

    def send(job: tuple[int, list[bytes]]) -> tuple[int, float, list[list[str]]]:
        n, hashes = job
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=600)
            opened.append(local.client)
        started = time.perf_counter()
        if batch:
            body = {"pdq": [h.hex() for h in hashes], "limit": 1000}
            answer = local.client.post("/hashes/search", json=body)
        else:
            answer = local.client.post("/search", data={"pdq": hashes[0].hex(), "limit": 1000})
        took = time.perf_counter() - started
        answer.raise_for_status()
        result = answer.json()["result"]
        if batch:
            return n, took, [[m["filepath"] for m in item["matches"]] for item in result]
        return n, took, [[m["filepath"] for m in result]]

    # warm requests (connections, each worker's mapped pages) outside the figures
    warm = [h.hex() for h in warm_hashes()]

    def warm_up(_: int) -> None:
        httpx.post(url + "/hashes/search", json={"pdq": warm}, timeout=600).raise_for_status()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(warm_up, range(clients)))
    cpu = tree_cpu(server)
    started = time.perf_counter()
    opened: list[httpx.Client] = []
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(send, enumerate(requests)))
    busy = time.perf_counter() - started
    for client in opened:
        client.close()
    cpu = tree_cpu(server) - cpu
    answers.sort()
    found = [paths for _, _, each in answers for paths in each]
    return [took for _, took, _ in answers], found, cpu, busy


@dataclass
class Mode:
    name: str
    latencies: list[float]  # seconds, a request each
    found: list[list[str]]  # in the order asked
    cpu: float  # seconds, of the processes doing the lookups
    busy: float  # seconds the lookups took, start-up excluded
    engine_cpu: float | None = None  # seconds of the engine's process (--engine-pid), warm-up in


def from_pool(
    name: str, answers: list[tuple[list[float], list[list[str]], float]], count: int, procs: int
) -> Mode:
    """A mode whose processes each looked up ``asked[p::procs]``."""
    found: list[list[str]] = [[] for _ in range(count)]
    for p, (_, results, _) in enumerate(answers):
        for k, paths in enumerate(results):
            found[p + k * procs] = paths
    latencies = [lat for lats, _, _ in answers for lat in lats]
    busy = max(sum(lats) for lats, _, _ in answers)
    return Mode(name, latencies, found, sum(cpu for _, _, cpu in answers), busy)


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
    parser.add_argument(
        "--keep", action="store_true", help="keep the engine's index (for later --reuse runs)"
    )
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000, help="hashes a batch (0: none)")
    parser.add_argument("--http", action="store_true", help="also through match serve")
    parser.add_argument(
        "--engine-pid",
        type=int,
        help="the engine's process (scripts/engines.py status): its CPU time a lookup too",
    )
    parser.add_argument("--reference", help="another checkout's src: its one-hash lookups too")
    parser.add_argument(
        "--reference-data",
        help="the same store for --reference, if its segments are another format (a copy)",
    )
    args = parser.parse_args()
    if not args.url:  # an engine run keeps nothing on disk but, with --data, the truth
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
    modes = []
    engine = args.engine_pid if args.url else None
    with multiprocessing.get_context("spawn").Pool(args.procs) as pool:
        for name, worker in [("library, one hash a lookup", _worker)] + (
            [(f"library, batches of {args.batch}", _batch_worker)] if args.batch else []
        ):
            before = tree_cpu(engine) if engine else 0.0
            answers = pool.map(worker, [(args, share) for share in shares])
            modes.append(from_pool(name, answers, len(asked), args.procs))
            if engine:
                modes[-1].engine_cpu = tree_cpu(engine) - before
    if args.reference:
        commit = subprocess.run(
            ["git", "-C", args.reference, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        answers = reference(args, shares)
        name = f"library, one hash a lookup, {commit or args.reference}'s code"
        modes.append(from_pool(name, answers, len(asked), args.procs))
    if args.http and not args.url:
        server, url = start_server(args)
        try:
            for batch in (0, args.batch) if args.batch else (0,):
                clients = 2 * args.procs
                latencies, found, cpu, busy = over_http(url, server.pid, asked, clients, batch)
                name = f"HTTP, {'batches of ' + str(batch) if batch else 'one hash'} a request"
                modes.append(Mode(name + f" ({clients} clients)", latencies, found, cpu, busy))
        finally:
            server.terminate()
            server.wait(60)
    lookup_load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    # the truth depends on the population and the queries only: an engine run keeps it too
    # when given --data
    cached = (
        Path(args.data) / f"truth-{args.count}-{args.queries}-{args.seed}.json"
        if args.data
        else None
    )
    if cached is not None and cached.exists():  # the same population and queries: the same truth
        truth, brute_rate = [set(t) for t in json.loads(cached.read_text())], None
    else:
        truth, brute_rate = brute_force(stored, asked, args.procs)
        if cached is not None:
            cached.write_text(json.dumps([sorted(t) for t in truth]))
    pairs = sum(len(t) for t in truth)
    print(
        f"lookups: {len(asked)} queries, {args.procs} processes, probing radius {args.flips}; "
        f"HMA target: {HMA_LOOKUPS_PER_SECOND:,} lookups/s at 10M"
    )
    for mode in modes:
        hit = sum(len(t & set(f)) for t, f in zip(truth, mode.found, strict=True))
        false = sum(len(set(f) - t) for t, f in zip(truth, mode.found, strict=True))
        latencies = np.array(mode.latencies) * 1000
        cpu_ms = mode.cpu / len(asked) * 1000
        print(
            f"  {mode.name}:\n"
            f"    {len(asked) / mode.busy:,.0f} lookups/s; CPU {cpu_ms:.3f} ms a lookup (at most "
            f"{1000 / cpu_ms:,.0f} lookups/s a core were the cores free)"
        )
        if mode.engine_cpu is not None:  # the warm-up's lookups are in it too
            engine_ms = mode.engine_cpu / (len(asked) + args.procs * WARM) * 1000
            print(f"    the engine's own CPU {engine_ms:.3f} ms a lookup (warm-up included)")
        print(
            f"    latency of a request p50 {np.percentile(latencies, 50):.2f} ms, p99 "
            f"{np.percentile(latencies, 99):.2f} ms; recall at <= 31 vs brute force "
            f"{hit}/{pairs} = {hit / max(pairs, 1):.4f} (returned beyond 31: {false})"
        )
    print(f"  load average at the end of the lookups {lookup_load}")
    if brute_rate is None:
        print("  reference: brute force not run again (its answers were saved by an earlier run)")
    else:
        print(
            f"  reference: brute-force NumPy scan of all {args.count:,} hashes, {args.procs} "
            f"threads: {brute_rate:,.1f} lookups/s (the first mode / scan: "
            f"{len(asked) / modes[0].busy / brute_rate:,.1f}x)"
        )
    print(f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.url and not args.reuse and not args.keep:
        store = open_store(args)
        store.client.request("DELETE", f"/{args.index},{store._hashes.name}", allow=(404,))
    print(f"cpu count {os.cpu_count()}")


if __name__ == "__main__":
    main()
