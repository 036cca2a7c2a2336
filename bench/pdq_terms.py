"""What each multi-index split of the embedded store costs at scale: PDQ lookups in memory on
synthetic hashes, for every split stores/sqlite/pdq_index.py knows (16 terms of 16 bits, the
engines' and a small segment's; 12 of 21-22 bits; 11 of 23-24 bits), each probed at the radius
that finds every hash within 31 bits.

    .venv/bin/python bench/pdq_terms.py --count 10000000

Each split's segment is built by pdq_index.build and looked up by PdqIndex.lookup_each, the
store's own code, without SQLite (the records' rows are not read). Printed for each split:
probes and candidates a lookup, the CPU time a lookup (one hash at a time), the segment's size
and build time, and recall against brute force on near copies at 24-31 bits spread over the
hash (the hardest case); the 16-bit split is the reference.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from match.pdq.codec import as_words
from match.stores.sqlite import pdq_index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(20)
    hashes = rng.integers(0, 256, (args.count, 32), dtype=np.uint8)
    words = np.ascontiguousarray(as_words(hashes))
    ids = np.arange(1, args.count + 1, dtype=np.int64)
    collections = np.ones(args.count, dtype=np.int32)
    randoms = as_words(rng.integers(0, 256, (args.queries, 32), dtype=np.uint8))
    near = []
    for n in range(100):  # copies of stored hashes at 24-31 bits, one bit in every 8
        bits = np.unpackbits(hashes[n])
        distance = int(rng.integers(24, 32))
        bits[np.sort(rng.choice(32, distance, replace=False)) * 8 + rng.integers(0, 8)] ^= 1
        near.append(np.packbits(bits))
    near_words = as_words(np.array(near))
    truth = [set(ids[np.flatnonzero(_distances(words, q) <= 31)].tolist()) for q in near_words]
    print(f"{args.count:,} random hashes; {args.queries} random queries, 100 near copies")
    for split in (pdq_index.NARROW, pdq_index.WIDE, pdq_index.WIDEST):
        pdq_index.SPLITS = ((0, split),)  # every segment in this split
        started = time.perf_counter()
        arrays = pdq_index.build(lambda: [(ids, collections, words)])
        built = time.perf_counter() - started
        assert arrays is not None
        size = sum(arrays[k].nbytes for k in ("hashes", "offsets", "rows")) / 2**20
        index = pdq_index.PdqIndex()
        index.set_segments([arrays], int(ids[-1]))
        probes = len(pdq_index.probes_each(randoms[:1], split, 1)[0])
        offsets, rows = arrays["offsets"], arrays["rows"]
        candidates = 0
        for query in randoms:
            probed = pdq_index.probes_each(query[None, :], split, 1)[0]
            candidates += int((offsets[probed + 1] - offsets[probed]).sum())
        for query in randoms[:20]:
            index.lookup_each(query[None, :], 31, 1, 1)
        cpu = time.process_time()
        for query in randoms:
            index.lookup_each(query[None, :], 31, 1, 1)
        cpu_ms = (time.process_time() - cpu) / len(randoms) * 1000
        batch = time.process_time()
        index.lookup_each(randoms, 31, 1, 1)
        batch_ms = (time.process_time() - batch) / len(randoms) * 1000
        asked, found_ids, _ = index.lookup_each(near_words, 31, 1, 1)
        got = [set(found_ids[asked == n].tolist()) for n in range(len(near_words))]
        pairs = sum(len(t) for t in truth)
        hit = sum(len(t & g) for t, g in zip(truth, got, strict=True))
        print(
            f"  {len(split)} terms of {min(split)}-{max(split)} bits, radius "
            f"{pdq_index.radius_of(split, 1)}: {probes:,} probes, "
            f"{candidates // len(randoms):,} candidates a lookup; CPU {cpu_ms:.3f} ms a lookup "
            f"({1000 / cpu_ms:,.0f}/s a core), {batch_ms:.3f} ms in one batch; recall "
            f"{hit}/{pairs}; segment {size:,.0f} MiB, built in {built:.0f} s",
            flush=True,
        )
        del index, arrays, offsets, rows


def _distances(words: np.ndarray, query: np.ndarray) -> np.ndarray:
    distances = np.zeros(len(words), dtype=np.int32)
    for word in range(4):
        distances += np.bitwise_count(words[:, word] ^ query[word])
    return distances


if __name__ == "__main__":
    main()
