"""Would an index of rarer terms than single words keep the candidate step's recall at 1M for a
fraction of its postings? A simulation on a real store (issue 13).

    .venv/bin/python -u bench/term_index.py --store /tmp/i13-1m/big \
        --harness /tmp/harness/view/queries --per-family 10 --variants 8:1,8:2,6:1,4:1

Today a query reads every posting of its visual words (up to words.POSTINGS_BUDGET): at 1M
images a photo's ~3,000 distinct query words (the query's and its mirror image's) hold about
30 M postings, and scoring them is the candidate step's cost. A term here is a word and the
first ``b`` of its keypoint's 64 Hamming-embedding bits (``word << b | bits``): 2^b times rarer
than the word. Two copies of one keypoint keep their bits apart by about 0.1 a bit (RANSAC
inliers of dev photos and their edited copies), so a query probes every term within ``r`` bits
of each of its keypoints' (multi-probe): with b = 8 and r = 1 that is 9 of the 256 terms of a
word (3.5% of its postings), and both bits agree or differ by one in about 82% of true pairs.

The script reads every stored keypoint's word and bits from the store's ``local`` table (the
features as an add stored them), builds that term index in memory, and for the harness's
partial-family queries (``bench/scale.py``'s queries, built by ``Matcher.query`` with 8
orientations: the query and its mirror image are two passes) ranks the stored images by binary
tf-idf over the probed terms, as the word index ranks them over words. It prints, per variant,
the postings read, the CPU of probing and scoring (numpy, in memory: a lower bound of what an
implementation reading a file would cost), and whether the true original is in the shortlist of
LOCAL_SHORTLIST (either pass); beside them, in the same run, the store's own candidate step
(``local_candidates``, the word index as shipped, POSTINGS_BUDGET included) for the same
queries, and the same words scored by this simulation with every posting read (``word``).
Nothing here is what a search runs: it is the measurement behind a design.
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from match.local.features import MAX_KEYPOINTS
from match.local.verify import LocalFeatures
from match.service import LOCAL_SHORTLIST, Matcher
from match.stores.sqlite import SQLiteStore
from scale import FAMILIES, HARNESS, harness_queries, on_settings

_HEADER = struct.Struct("<BHHH")  # match.local.codec's header


@dataclass
class TermIndex:
    """Postings sorted by (word, first ``bits`` bits): term t's rows are
    ``rows[offsets[t]:offsets[t + 1]]``; a term is ``word << bits | low bits``."""

    bits: int
    offsets: np.ndarray
    rows: np.ndarray
    distinct: np.ndarray  # keypoints of each row (image)


def stored_keypoints(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every stored image's id, keypoint count, words (uint16) and bits (uint64), in id order."""
    conn = sqlite3.connect(f"file:{path / 'match.sqlite3'}?mode=ro", uri=True)
    total = conn.execute("SELECT count(*) FROM local JOIN images USING (id)").fetchone()[0]
    ids = np.empty(total, np.int64)
    counts = np.empty(total, np.int32)
    words = np.empty(total * MAX_KEYPOINTS, np.uint16)
    bits = np.empty(total * MAX_KEYPOINTS, np.uint64)
    at = 0
    cursor = conn.execute("SELECT id, features FROM local JOIN images USING (id) ORDER BY id")
    for i, (image, blob) in enumerate(cursor):
        n = _HEADER.unpack_from(blob)[3]
        offset = _HEADER.size + 4 * n
        ids[i], counts[i] = image, n
        words[at : at + n] = np.frombuffer(blob, "<u2", n, offset)
        bits[at : at + n] = np.frombuffer(blob, "<u8", n, offset + 2 * n)
        at += n
        if i % 200_000 == 0:
            print(f"  read {i:,} of {total:,}", flush=True)
    conn.close()
    return ids, counts, words[:at], bits[:at]


def term_index(counts: np.ndarray, words: np.ndarray, bits: np.ndarray, b: int) -> TermIndex:
    """The postings sorted by term, with two stable radix sorts (low bits, then word)."""
    rows = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    if b == 0:
        order = np.argsort(words, kind="stable")
        terms = words.astype(np.int64)
    else:
        low = (bits & np.uint64((1 << b) - 1)).astype(np.uint16)
        by_low = np.argsort(low, kind="stable")
        order = by_low[np.argsort(words[by_low], kind="stable")]
        terms = (words.astype(np.int64) << b) | low
    offsets = np.zeros((1 << (16 + b)) + 1, np.int64)
    np.cumsum(np.bincount(terms, minlength=1 << (16 + b)), out=offsets[1:])
    return TermIndex(b, offsets, rows[order], counts)


def probes(features: LocalFeatures, b: int, r: int) -> np.ndarray:
    """The distinct terms within ``r`` bits of each query entry's."""
    words = features.words.astype(np.int64)
    if b == 0:
        return np.unique(words)
    low = (features.bits & np.uint64((1 << b) - 1)).astype(np.int64)
    flips = [0] + [
        sum(1 << i for i in chosen)
        for k in range(1, r + 1)
        for chosen in itertools.combinations(range(b), k)
    ]
    terms = (words[:, None] << b) | (low[:, None] ^ np.array(flips, np.int64)[None, :])
    return np.unique(terms)


def shortlist(index: TermIndex, terms: np.ndarray, limit: int) -> tuple[np.ndarray, int]:
    """The ``limit`` rows scoring highest (binary tf-idf over the terms, as words.score ranks
    words), and the postings read."""
    starts, ends = index.offsets[terms], index.offsets[terms + 1]
    lengths = ends - starts
    keep = lengths > 0
    starts, lengths = starts[keep], lengths[keep]
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64), 0
    # every posting's position: its term's start plus its rank in the term
    first = np.cumsum(lengths) - lengths
    positions = np.repeat(starts - first, lengths) + np.arange(total)
    images = len(index.distinct)
    idf = np.log1p((images - lengths + 0.5) / (lengths + 0.5))
    totals = np.bincount(
        index.rows[positions], weights=np.repeat(idf * idf, lengths), minlength=images
    )
    totals /= np.sqrt(np.maximum(index.distinct, 1))
    best = np.argpartition(-totals, min(limit, images - 1))[:limit]
    best = best[totals[best] > 0]
    return best[np.argsort(-totals[best], kind="stable")], total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--harness", type=Path, default=HARNESS)
    parser.add_argument("--per-family", type=int, default=10)
    parser.add_argument(
        "--variants", default="8:1,8:2,6:1,4:1", help="bits:radius pairs, comma-separated"
    )
    args = parser.parse_args()
    variants = [tuple(int(x) for x in v.split(":")) for v in args.variants.split(",")]

    store = SQLiteStore(args.store)
    stored = {
        path: image
        for image, path in sqlite3.connect(f"file:{args.store / 'match.sqlite3'}?mode=ro", uri=True)
        .execute("SELECT id, filepath FROM images WHERE filepath LIKE '%.jpg'")
        .fetchall()
    }
    queries = harness_queries(args.harness, args.per_family, set(stored))
    print(f"{len(queries)} queries of {len(FAMILIES)} families; {store.count():,} images")
    started = time.process_time()
    ids, counts, words, bits = stored_keypoints(args.store)
    print(
        f"read {len(words):,} keypoints of {len(ids):,} images in "
        f"{time.process_time() - started:.0f} s of CPU"
    )
    real = set(stored.values())
    row_of = {image: row for row, image in enumerate(ids.tolist()) if image in real}

    matcher = Matcher(on_settings(), store)
    built = [matcher.query(q.data, True) for q in queries]
    originals = [row_of[stored[q.original]] for q in queries]

    # the store as shipped: its shortlist of each pass
    results: dict[str, list[tuple[bool, int, float]]] = {}
    for query, original in zip(built, originals, strict=True):
        found, spent = False, 0.0
        for features in (query.local, query.mirrored_local):
            if features is None:
                continue
            began = time.process_time()
            candidates = store.local_candidates(features.words, LOCAL_SHORTLIST, bits=features.bits)
            spent += time.process_time() - began
            rows = {row_of.get(stored.get(c.filepath, -1), -1) for c in candidates}
            found |= original in rows
        results.setdefault("store as shipped", []).append((found, 0, spent))

    for b, r in [(0, 0), *variants]:
        began = time.process_time()
        index = term_index(counts, words, bits, b)
        name = "word (every posting)" if b == 0 else f"{b} bits, radius {r}"
        print(f"{name}: index built in {time.process_time() - began:.0f} s of CPU", flush=True)
        for query, original in zip(built, originals, strict=True):
            found, read, spent = False, 0, 0.0
            for features in (query.local, query.mirrored_local):
                if features is None:
                    continue
                began = time.process_time()
                best, postings = shortlist(index, probes(features, b, r), LOCAL_SHORTLIST)
                spent += time.process_time() - began
                read += postings
                found |= original in best.tolist()
            results.setdefault(name, []).append((found, read, spent))
        del index

    print(
        f"\n{'variant':24} {'in the shortlist':>18} {'postings p50 / p99':>22} "
        f"{'CPU p50 / p99 (both passes)':>30}"
    )
    families = [q.family for q in queries]
    for name, rows in results.items():
        hits = sum(found for found, _, _ in rows)
        read = np.array([r for _, r, _ in rows], float)
        spent = np.array([s for _, _, s in rows]) * 1000
        print(
            f"{name:24} {hits:>8}/{len(rows)} = {hits / len(rows):.3f} "
            f"{np.median(read) / 1e6:>9.2f} M / {np.percentile(read, 99) / 1e6:.2f} M "
            f"{np.median(spent):>14.0f} / {np.percentile(spent, 99):.0f} ms"
        )
        per_family = {f: 0 for f in FAMILIES}
        for family, (found, _, _) in zip(families, rows, strict=True):
            per_family[family] += found
        print("    " + ", ".join(f"{f} {n}" for f, n in per_family.items()))


if __name__ == "__main__":
    main()
