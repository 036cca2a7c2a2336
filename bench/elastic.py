"""Benchmark of the Elasticsearch/OpenSearch store against image-match's query shape.

For each index size: builds an index of synthetic signatures with realistic near-duplicates,
then compares, on the same server and index, for the same queries (8 orientations each):

- match: ElasticStore.search (one _msearch of 8 word queries, exact re-ranking);
- image-match: 8 sequential _search requests, each a bool of 63 should-term clauses, size 100,
  ``_source`` without the words, distances computed client-side (SignatureES.search_single_record).

It prints p50/p99 latency per query, recall against exhaustive search (every stored signature,
distance < 0.45), bulk ingest rates (precomputed signatures, and image files through signature
computation), and bytes per document on disk after a flush and force-merge to one segment.

Data: real signatures of the shared photos (originals and distractors). Each query photo gets
3 near-duplicates: copies of one of its 8 orientations with values moved by +-1/2 until the
distance reaches a target spread uniformly over 0.05-0.45. The remaining documents are
synthetic: grid cells mixed from two random real signatures, plus noise.

    .venv/bin/python bench/elastic.py --url http://127.0.0.1:9281               # 10k and 100k
    .venv/bin/python bench/elastic.py --url http://127.0.0.1:9281 --sizes 2000  # quick run
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from match.signature import (
    SIGNATURE_LENGTH,
    image_signature,
    normalized_distances,
    orientation_signatures,
    words,
)
from match.stores.base import ImageRecord
from match.stores.elastic import ElasticStore, EngineClient
from shared_photos import photos_dir

ROOT = Path(__file__).resolve().parent.parent
CUTOFF = 0.45
COPIES_PER_QUERY = 3
WARMUP = 10
IMAGE_MATCH = "image-match (8 x _search)"


# -- data -------------------------------------------------------------------------------------
def photo_files() -> tuple[list[Path], list[Path]]:
    photos = photos_dir("bench/elastic.py")
    originals = sorted((photos / "originals").glob("*.jpg"))
    distractors = sorted((photos / "distractors").glob("*.jpg"))
    return originals, distractors


def perturbed(signature: np.ndarray, target: float, rng: np.random.Generator) -> np.ndarray:
    """A copy moved value by value (+-1 or +-2, clipped) until its distance reaches target."""
    order = rng.permutation(SIGNATURE_LENGTH)
    deltas = rng.choice([-2, -1, 1, 2], size=SIGNATURE_LENGTH, p=[0.15, 0.35, 0.35, 0.15])

    def moved(count: int) -> np.ndarray:
        copy = signature.astype(np.int16)
        copy[order[:count]] += deltas[order[:count]]
        return np.clip(copy, -2, 2).astype(np.int8)

    low, high = 0, SIGNATURE_LENGTH
    while low < high:  # the fewest moves that reach the target distance
        middle = (low + high) // 2
        if normalized_distances(signature, moved(middle)[None, :])[0] < target:
            low = middle + 1
        else:
            high = middle
    return moved(low)


def synthetic(count: int, bank: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Signatures with real local structure: each of the 81 grid cells (8 values) taken from
    one of two random real signatures, then 10% of the values moved by one level."""
    first = bank[rng.integers(len(bank), size=count)].reshape(count, 81, 8)
    second = bank[rng.integers(len(bank), size=count)].reshape(count, 81, 8)
    pick = rng.random((count, 81, 1)) < 0.5
    mixed = np.where(pick, first, second).reshape(count, SIGNATURE_LENGTH).astype(np.int16)
    noise = (rng.random(mixed.shape) < 0.1) * rng.choice([-1, 1], size=mixed.shape)
    return np.clip(mixed + noise, -2, 2).astype(np.int8)


class Dataset:
    def __init__(self, queries: int, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        originals, distractors = photo_files()
        print(f"signatures of {len(originals) + len(distractors)} photos ...", flush=True)
        with ProcessPoolExecutor(max_workers=2) as pool:
            orientations = list(pool.map(orientation_signatures, originals + distractors))
        self.queries = orientations[:queries]  # (8, 648) each
        # synthetic documents are made from the photos that are not queried
        self.bank = np.concatenate(orientations[queries:])
        self.real = [
            (path.name, o[0])
            for path, o in zip(
                originals[queries:] + distractors, orientations[queries:], strict=True
            )
        ]
        self.copies: list[tuple[str, np.ndarray]] = []
        for q, query in enumerate(self.queries):
            for c in range(COPIES_PER_QUERY):
                target = rng.uniform(0.05, CUTOFF)
                copy = perturbed(query[rng.integers(8)], target, rng)
                self.copies.append((f"copy-{q:03d}-{c}.jpg", copy))
        self.rng = rng

    def records(self, size: int) -> tuple[list[str], np.ndarray]:
        """Names and signatures of an index of ``size`` documents, shuffled."""
        fixed = self.copies + self.real
        filler = synthetic(max(0, size - len(fixed)), self.bank, self.rng)
        names = [name for name, _ in fixed] + [f"synthetic-{i:07d}.jpg" for i in range(len(filler))]
        signatures = np.concatenate([np.stack([s for _, s in fixed]), filler])[:size]
        order = self.rng.permutation(len(signatures))
        return [names[i] for i in order], signatures[order]


def truth(queries: list[np.ndarray], signatures: np.ndarray, names: list[str]) -> list[set[str]]:
    """Exhaustive search: every stored signature under the cutoff, per query."""
    stored = signatures.astype(np.float32)
    found = []
    for query in queries:
        distances = normalized_distances(query, stored).min(axis=0)
        found.append({names[i] for i in np.flatnonzero(distances < CUTOFF)})
    return found


# -- the two query shapes ---------------------------------------------------------------------
def image_match_search(http: httpx.Client, index: str, query: np.ndarray) -> set[str]:
    """image-match 1.x: one request per orientation, sequential; dedupe; cutoff."""
    found: set[str] = set()
    for row in query:
        should = [{"term": {f"simple_word_{i}": int(w)}} for i, w in enumerate(words(row))]
        body = {"query": {"bool": {"should": should}}, "_source": {"excludes": ["simple_word_*"]}}
        answer = http.post(f"/{index}/_search", params={"size": 100, "timeout": "10s"}, json=body)
        hits = answer.json()["hits"]["hits"]
        if not hits:
            continue
        stored = np.asarray([hit["_source"]["signature"] for hit in hits], dtype=np.int8)
        distances = normalized_distances(row, stored)
        found |= {
            hit["_source"]["path"] for hit, d in zip(hits, distances, strict=True) if d < CUTOFF
        }
    return found


def match_search(store: ElasticStore, query: np.ndarray) -> set[str]:
    return {hit.filepath for hit in store.search(query, cutoff=CUTOFF, limit=100)}


def measure(
    methods: dict[str, Any], queries: list[np.ndarray], expected: list[set[str]]
) -> dict[str, tuple[list[float], float]]:
    """Latencies and recall per method; the methods take turns query by query (alternating
    which goes first) so that load from elsewhere on the machine hits both alike."""
    for query in queries[:WARMUP]:
        for search in methods.values():
            search(query)
    latencies: dict[str, list[float]] = {label: [] for label in methods}
    found = dict.fromkeys(methods, 0)
    wanted = sum(len(t) for t in expected)
    order = list(methods)
    for query, truth_set in zip(queries, expected, strict=True):
        order.reverse()
        for label in order:
            start = time.perf_counter()
            result = methods[label](query)
            latencies[label].append(time.perf_counter() - start)
            found[label] += len(result & truth_set)
    return {label: (latencies[label], found[label] / max(wanted, 1)) for label in methods}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000.0


# -- ingest -----------------------------------------------------------------------------------
def bulk_load(store: ElasticStore, names: list[str], signatures: np.ndarray) -> float:
    start = time.perf_counter()
    result = store.add_many(ImageRecord(n, s) for n, s in zip(names, signatures, strict=True))
    elapsed = time.perf_counter() - start
    if result.failed:
        sys.exit(f"bulk load failed for {len(result.failed)} records: {result.failed[:3]}")
    return len(names) / elapsed


def _signature_of(path: Path) -> tuple[str, np.ndarray]:
    return str(path), image_signature(path)


def file_ingest(url: str, index: str, files: list[Path]) -> tuple[float, float]:
    """(signatures/s alone, files/s through signatures and the store), 2 worker processes."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        start = time.perf_counter()
        list(pool.map(_signature_of, files, chunksize=8))
        signature_rate = len(files) / (time.perf_counter() - start)
        store = ElasticStore(EngineClient(url), index, bulk_refresh=True)
        store.count()  # create the index outside the timing
        start = time.perf_counter()

        def records() -> Iterator[ImageRecord]:
            for path, signature in pool.map(_signature_of, files, chunksize=8):
                yield ImageRecord(path, signature)

        result = store.add_many(records())
        rate = result.added / (time.perf_counter() - start)
        store.close()
    return signature_rate, rate


def bytes_per_document(http: httpx.Client, index: str) -> tuple[float, int]:
    http.post(f"/{index}/_flush").raise_for_status()
    http.post(f"/{index}/_forcemerge", params={"max_num_segments": 1}).raise_for_status()
    stats = http.get(f"/{index}/_stats/store,docs").json()["_all"]["primaries"]
    count = stats["docs"]["count"]
    return stats["store"]["size_in_bytes"] / max(count, 1), count


# -- main -------------------------------------------------------------------------------------
def run_size(
    url: str,
    data: Dataset,
    size: int,
    keep: bool,
    variants: list[tuple[int, int]],
    codec: str,
) -> None:
    index = f"bench-elastic-{size}"
    http = httpx.Client(base_url=url, timeout=600)
    http.delete(f"/{index}")
    names, signatures = data.records(size)
    store = ElasticStore(EngineClient(url, timeout=60), index, bulk_refresh=True, codec=codec)
    store.count()  # create the index outside the timing
    rate = bulk_load(store, names, signatures)
    per_doc, count = bytes_per_document(http, index)
    print(f"\n== {count} documents ({index}, codec {codec}) ==")
    print(f"bulk ingest, precomputed signatures: {rate:,.0f} docs/s")
    print(f"on disk after force-merge: {per_doc:,.0f} bytes/document (primaries)")

    expected = truth(data.queries, signatures, names)
    true_total = sum(len(t) for t in expected)
    print(
        f"queries: {len(data.queries)} x 8 orientations; true matches (exhaustive, "
        f"d < {CUTOFF}): {true_total}"
    )
    methods: dict[str, Any] = {
        IMAGE_MATCH: lambda q: image_match_search(http, index, q),
    }
    stores = [store]
    for min_words, candidates in variants:
        variant = ElasticStore(
            EngineClient(url, timeout=60), index, candidates=candidates, min_words=min_words
        )
        stores.append(variant)
        label = f"match (candidates {candidates}, min_words {min_words})"
        methods[label] = partial(match_search, variant)
    results = {}
    for label, (latencies, recall) in measure(methods, data.queries, expected).items():
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        results[label] = (p50, p99, recall)
        print(
            f"{label:40s} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  recall {recall:.3f}  "
            f"({len(latencies) / sum(latencies):.1f} queries/s sequential)"
        )
    old = results.pop(IMAGE_MATCH)
    for label, new in results.items():
        print(
            f"{label}: latency x{old[0] / new[0]:.2f} lower at p50, x{old[1] / new[1]:.2f} "
            f"at p99; recall {new[2]:.3f} vs {old[2]:.3f}"
        )
    for opened in stores:
        opened.close()
    if not keep:
        http.delete(f"/{index}")
    http.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("ELASTICSEARCH_URL"),
        help="engine URL (default: $ELASTICSEARCH_URL)",
    )
    parser.add_argument("--sizes", default="10000,100000", help="index sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=100, help="query photos (max 186)")
    parser.add_argument(
        "--min-words",
        default="1",
        help="words a candidate must share with a query (store option); several, "
        "comma-separated, are compared",
    )
    parser.add_argument(
        "--candidates",
        default="100",
        help="candidates per query orientation (store option); several, comma-separated, "
        "are compared",
    )
    parser.add_argument(
        "--codec",
        default="best_compression",
        help="index codec (the store's default: best_compression; Elasticsearch's: default)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench indices")
    parser.add_argument("--skip-files", action="store_true", help="skip the file ingest run")
    args = parser.parse_args()
    if not args.url:
        parser.error(
            "give --url or set ELASTICSEARCH_URL (e.g. `python scripts/engines.py start es8`)"
        )
    engine = EngineClient(args.url).engine()
    print(f"engine: {engine} at {args.url}")
    data = Dataset(args.queries)
    for size in (int(s) for s in args.sizes.split(",")):
        variants = [
            (int(m), int(c)) for m in args.min_words.split(",") for c in args.candidates.split(",")
        ]
        run_size(args.url, data, size, args.keep, variants, args.codec)
    if not args.skip_files:
        originals, distractors = photo_files()
        files = originals + distractors
        index = "bench-elastic-files"
        httpx.delete(f"{args.url}/{index}")
        signature_rate, rate = file_ingest(args.url, index, files)
        httpx.delete(f"{args.url}/{index}")
        print(f"\n== ingest from {len(files)} image files (2 processes) ==")
        print(
            f"signatures alone: {signature_rate:,.0f} files/s; "
            f"signatures + bulk store: {rate:,.0f} files/s"
        )


if __name__ == "__main__":
    main()
