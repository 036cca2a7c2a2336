"""Filtered search at 1M images (issue 17): filters and collections against unfiltered search.

    .venv/bin/python bench/filters.py --jobs 4 --keep /tmp/filters  # embedded store, 1M images
    .venv/bin/python bench/filters.py --images 50000            # quick, for development
    .venv/bin/python bench/filters.py --engine http://127.0.0.1:9281 --images 20000

``--keep`` keeps the stores in that folder and reuses them (a fill that was stopped resumes);
filling 1M records with local features takes about 10 GB and, on a busy 2-core machine, an hour
(``--jobs`` processes fill at once). ``--engine`` measures Elasticsearch or OpenSearch instead,
in the indexes ``i17-filters-<images>`` and ``i17-filters-1k`` (deleted after, unless
``--keep-indexes``).

One store of ``--images`` records, every one with a signature, local features and metadata
``{"shop": i % 100, "half": i % 2}``, plus a collection ``c1k`` of 1,000 records inside it; and,
beside it, a store of those same 1,000 records alone. In one run, queries rotating over the
variants (so machine load favours none), it prints p50/p99 (wall and CPU time) of:

- ``search`` with one orientation and with all 8, and ``local_candidates`` (partial matching's
  candidate step, top 30), each
- unfiltered; filtered on a key matching 1% of the records (``{"shop": 7}``) and on one
  matching 50% (``{"half": 0}``); in the collection of 1k; in the store of 1k;
- and each variant's ratio to the unfiltered search (and the collection's to the 1k store's).

Synthetic records as bench/store.py and bench/partial.py make them: Goldberg-like signatures,
and a real photo's local features with words drawn from the photos' word frequencies.

**Pushed down, never after the top-k cut**: each query has a true original that matches the
filters (shop 7, half 0; a copy in ``c1k``), at signature distance 0.30, sharing 60% of the
query's words, and decoys outside them (shop != 7, half 1) that are closer: 15 at distance
0.05-0.20 (the search's limit here is 10) and 35 holding every query word (partial matching keeps
30 candidates). So the unfiltered top-k never holds the true original (checked and printed), and
a filter applied after the cut would lose it; the recall of the true original is printed per
variant.

On the embedded store it also times partial matching's candidates in small scopes (the
collection of 1k, filters matching 1% and 2%) both ways the word index can rank them: from the
postings of the query's words, and from the scope's stored words (words.GATHER_COST picks one).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import match.stores.sqlite.words as words_module
from match.local import WORDS, LocalFeatures
from match.service import LOCAL_CANDIDATES, Matcher
from match.settings import Settings
from match.signature import normalized_distances
from match.stores.base import ImageRecord, Store
from match.stores.elastic import ElasticStore, EngineClient
from match.stores.filters import DEFAULT_COLLECTION, Filter, parse_filter
from match.stores.sqlite import SQLiteStore
from shared_photos import PHOTOS, photos_dir
from store import ms, synthetic

CUTOFF = 0.45
LIMIT = 10  # results per signature search: the true original must be outside the unfiltered top
SHOPS = 100
SMALL = 1_000  # records of the collection c1k, and of the 1k store
SMALL_COLLECTION = "c1k"
SIGNATURE_DECOYS = LIMIT + 5
WORD_DECOYS = LOCAL_CANDIDATES + 5
BATCH = 5_000
BASE_PHOTOS = 40  # photos whose local features the synthetic records reuse

FILTERS: dict[str, Filter | None] = {
    "unfiltered": None,
    "1% (shop 7)": parse_filter({"shop": 7}),
    "50% (half 0)": parse_filter({"half": 0}),
}
GATHER_SCOPES: dict[str, tuple[str, Filter | None]] = {  # the word index's two paths
    f"collection {SMALL_COLLECTION} (1k)": (SMALL_COLLECTION, None),
    "1% (shop 7)": (DEFAULT_COLLECTION, parse_filter({"shop": 7})),
    "2% (shop in 7, 8)": (DEFAULT_COLLECTION, parse_filter({"shop": {"in": [7, 8]}})),
}
Timing = list[float]  # [wall seconds, CPU seconds]


@dataclasses.dataclass(frozen=True)
class Query:
    """A query's signature rows (its first row is the one near its records) and words."""

    signatures: np.ndarray  # (8, 648)
    words: np.ndarray


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    store: Store
    collection: str = DEFAULT_COLLECTION
    where: Filter | None = None
    expects_true: bool = True  # the true original is in this variant's scope


# -- the population -----------------------------------------------------------------------------
class Population:
    """Deterministic records: the same seed gives the same store, so a kept store is reused."""

    def __init__(self, bases: list[LocalFeatures], seed: int, queries: int) -> None:
        self.bases = bases
        words = np.concatenate([b.words for b in bases])
        counts = np.bincount(words, minlength=WORDS).astype(np.float64)
        self.cdf = np.cumsum(counts) / counts.sum()
        rng = np.random.default_rng(seed)
        self.query_bases = synthetic(queries, rng)
        self.queries: list[Query] = []
        self.trues: list[ImageRecord] = []
        self.decoys: list[ImageRecord] = []
        for q, base in enumerate(self.query_bases):
            features = bases[q % len(bases)]
            true_words = self.draw_words(len(features.words), rng)
            shared = rng.choice(true_words, int(0.6 * len(true_words)), replace=False)
            # a crop: 60% of the original's keypoints, and 30% new ones
            extra = self.draw_words(int(0.3 * len(true_words)), rng)
            query_words = np.concatenate([shared, extra])
            others = synthetic(7, rng)  # the other orientations: unrelated rows
            self.queries.append(Query(np.vstack([base[None, :], others]), query_words))
            true = ImageRecord(
                f"true/{q}",
                perturbed(base, 0.30, rng),
                {"shop": 7, "half": 0},
                local=dataclasses.replace(features, words=true_words),
            )
            self.trues.append(true)
            for j in range(max(SIGNATURE_DECOYS, WORD_DECOYS)):
                distance = rng.uniform(0.05, 0.20) if j < SIGNATURE_DECOYS else 0.6
                signature = (
                    perturbed(base, distance, rng) if distance < CUTOFF else synthetic(1, rng)[0]
                )
                # every word of the query, and others: more shared words than the true one
                fill_up = self.draw_words(len(features.words) - len(query_words), rng)
                decoy_words = np.concatenate([query_words, fill_up])
                self.decoys.append(
                    ImageRecord(
                        f"decoy/{q}/{j}",
                        signature,
                        {"shop": 8 + j % 90, "half": 1},
                        local=dataclasses.replace(features, words=decoy_words),
                    )
                )

    def draw_words(self, n: int, rng: np.random.Generator) -> np.ndarray:
        words = np.searchsorted(self.cdf, rng.random(n), "right")
        return np.minimum(words, WORDS - 1).astype(np.uint32)

    def fillers(
        self, first: int, n: int, rng: np.random.Generator, collection: str, prefix: str = "syn"
    ) -> list:
        signatures = synthetic(n, rng)
        records = []
        for i, signature in enumerate(signatures):
            k = first + i
            base = self.bases[k % len(self.bases)]
            local = dataclasses.replace(base, words=self.draw_words(len(base.words), rng))
            metadata = {"shop": k % SHOPS, "half": k % 2}
            records.append(
                ImageRecord(
                    f"{prefix}/{k}", signature, metadata, local=local, collection=collection
                )
            )
        return records

    def small(self, rng: np.random.Generator, collection: str) -> list[ImageRecord]:
        """The 1k records: every query's true original and fillers."""
        trues = [dataclasses.replace(t, collection=collection) for t in self.trues]
        return trues + self.fillers(10**9, SMALL - len(trues), rng, collection)


def perturbed(base: np.ndarray, target: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``base`` just under ``target`` away: values at random positions replaced by
    random levels until the distance reaches it (as bench/store.py's near-duplicates)."""
    rank = rng.permutation(base.size)
    levels = rng.integers(-2, 3, base.size).astype(np.int8)
    replaced = rank[None, :] < np.arange(base.size + 1)[:, None]
    steps = np.where(replaced, levels, base)
    below = np.flatnonzero(normalized_distances(base, steps) < target)
    return steps[below[-1]]


def base_features(photos: Path) -> list[LocalFeatures]:
    matcher = Matcher(Settings.from_env(match_partial_matching=True))
    files = sorted((photos / "originals").glob("*.jpg"))[:BASE_PHOTOS]
    return [f for path in files if (f := matcher.record(path.name, path.read_bytes()).local)]


def fill(store: Store, population: Population, images: int, seed: int, jobs: int = 1) -> float:
    """Stores the trues, the decoys and the c1k collection when ``store`` is empty, then fillers
    up to ``images`` records (``jobs`` processes adding batches at once, on the embedded store);
    returns the wall seconds spent adding."""
    started = time.perf_counter()
    stored = sum(count for _, count in store.collections())
    if stored == 0:
        _add(store, population.trues + population.decoys)
        _add(store, population.small(np.random.default_rng(seed + 1), SMALL_COLLECTION))
        stored = len(population.trues) + len(population.decoys) + SMALL
    batches = [(first, min(BATCH, images - first)) for first in range(stored, images, BATCH)]
    # filepaths of their own: batches of an interrupted fill end out of order
    prefix = f"syn-{stored}"
    if jobs > 1 and isinstance(store, SQLiteStore):
        global _FILLING  # the workers, forked, read it
        _FILLING = (population, store.path.parent, seed, prefix)
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for done, _ in enumerate(pool.imap_unordered(_fill_batch, batches), 1):
                _progress(done, batches, started)
    else:
        for done, (first, n) in enumerate(batches, 1):
            rng = np.random.default_rng([seed, first])
            _add(store, population.fillers(first, n, rng, DEFAULT_COLLECTION, prefix))
            _progress(done, batches, started)
    return time.perf_counter() - started


_FILLING: tuple[Population, Path, int, str] | None = None


def _fill_batch(batch: tuple[int, int]) -> None:
    """One batch of fillers, added by a worker process to the embedded store."""
    assert _FILLING is not None
    population, folder, seed, prefix = _FILLING
    first, n = batch
    store = SQLiteStore(folder, busy_timeout=600)  # writers queue for the file's one lock
    rng = np.random.default_rng([seed, first])
    _add(store, population.fillers(first, n, rng, DEFAULT_COLLECTION, prefix))
    store.close()


def _add(store: Store, records: list[ImageRecord]) -> None:
    result = store.add_many(records)
    assert not result.failed, result.failed[:3]


def _progress(done: int, batches: list[tuple[int, int]], started: float) -> None:
    if done % 20 == 0 or done == len(batches):
        added = sum(n for _, n in batches[:done])
        rate = added / (time.perf_counter() - started)
        print(f"  {added:,} of {sum(n for _, n in batches):,} added, {rate:,.0f}/s", flush=True)


# -- measurements -------------------------------------------------------------------------------
def timed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, Timing]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, [time.perf_counter() - wall, time.process_time() - cpu]


OPERATIONS: dict[str, Callable[[Variant, Query], list[str]]] = {
    "search, 1 orientation": lambda v, q: [
        h.filepath
        for h in v.store.search(
            q.signatures[:1], CUTOFF, LIMIT, collection=v.collection, where=v.where
        )
    ],
    "search, 8 orientations": lambda v, q: [
        h.filepath
        for h in v.store.search(q.signatures, CUTOFF, LIMIT, collection=v.collection, where=v.where)
    ],
    "local candidates (top 30)": lambda v, q: [
        c.filepath
        for c in v.store.local_candidates(
            q.words,
            LOCAL_CANDIDATES,
            signatures=q.signatures,
            collection=v.collection,
            where=v.where,
        )
    ],
}


def measure(variants: list[Variant], queries: list[Query], rounds: int) -> dict[str, Any]:
    """Every operation of every query on every variant, variants in rotating order; times and
    the rank of the true original (None: not found)."""
    times: dict[tuple[str, str], list[Timing]] = {}
    ranks: dict[tuple[str, str], list[int | None]] = {}
    for variant in variants:  # the first call loads a fresh store's indexes: not timed
        for operation in OPERATIONS.values():
            operation(variant, queries[0])
    for k in range(rounds * len(queries)):
        q = k % len(queries)
        order = variants[k % len(variants) :] + variants[: k % len(variants)]
        for variant in order:
            for op_name, operation in OPERATIONS.items():
                found, timing = timed(operation, variant, queries[q])
                times.setdefault((variant.name, op_name), []).append(timing)
                if k < len(queries):
                    true = f"true/{q}"
                    ranks.setdefault((variant.name, op_name), []).append(
                        found.index(true) if true in found else None
                    )
    return {"times": times, "ranks": ranks}


def report(variants: list[Variant], result: dict[str, Any]) -> None:
    times, ranks = result["times"], result["ranks"]
    for op_name in OPERATIONS:
        print(f"\n-- {op_name} --")
        print(
            f"{'variant':24} {'p50 ms':>8} {'p99 ms':>8} {'CPU p50':>8} {'CPU p99':>8} "
            f"{'p50 ratio':>10} {'p99 ratio':>10}  true original found (first)"
        )
        reference = np.array(times[("unfiltered", op_name)])
        for variant in variants:
            timings = np.array(times[(variant.name, op_name)])
            wall, cpu = timings[:, 0], timings[:, 1]
            against = (
                np.array(times[("store of 1k", op_name)])
                if variant.name == f"collection {SMALL_COLLECTION}"
                else reference
            )
            ratio50 = np.median(wall) / np.median(against[:, 0])
            ratio99 = np.quantile(wall, 0.99) / np.quantile(against[:, 0], 0.99)
            found = ranks[(variant.name, op_name)]
            hits = sum(r is not None for r in found)
            first = sum(r == 0 for r in found)
            expected = "" if variant.expects_true else "(outside the top-k by design: 0 expected)"
            print(
                f"{variant.name:24} {ms(wall, 0.5):>8} {ms(wall, 0.99):>8} {ms(cpu, 0.5):>8} "
                f"{ms(cpu, 0.99):>8} {ratio50:>9.2f}x {ratio99:>9.2f}x  "
                f"{hits}/{len(found)} ({first}) {expected}"
            )
    print(
        "\n(ratios: to the unfiltered search of the big store; the collection's to the store of 1k)"
    )


def variants_of(big: Store, small: Store) -> list[Variant]:
    variants = [
        Variant(name, big, where=where, expects_true=where is not None)
        for name, where in FILTERS.items()
    ]
    variants.append(Variant(f"collection {SMALL_COLLECTION}", big, collection=SMALL_COLLECTION))
    variants.append(Variant("store of 1k", small, collection=SMALL_COLLECTION))
    return variants


def word_paths(store: SQLiteStore, queries: list[Query]) -> None:
    """The embedded store's partial-matching candidates in small scopes, each query both ways:
    from the postings of its words (a mask of the scope applied before the top-k) and from the
    scope's stored words (words.GATHER_COST picks one of them)."""
    print(
        f"\n-- the word index's two paths, local candidates (GATHER_COST "
        f"{words_module.GATHER_COST}: stored words below postings / {words_module.GATHER_COST} "
        f"images) --"
    )
    saved = words_module.GATHER_COST
    for name, (collection, where) in GATHER_SCOPES.items():
        chosen = store.count(collection=collection, where=where)
        times: dict[str, list[Timing]] = {"postings": [], "stored words": []}
        same = 0
        for k, query in enumerate(queries):
            found = {}
            ways = list(times) if k % 2 else list(times)[::-1]
            for way in ways:
                words_module.GATHER_COST = 10**12 if way == "postings" else 0
                candidates, timing = timed(
                    store.local_candidates,
                    query.words,
                    LOCAL_CANDIDATES,
                    collection=collection,
                    where=where,
                )
                times[way].append(timing)
                found[way] = [c.filepath for c in candidates]
            same += found["postings"][:1] == found["stored words"][:1]
        words_module.GATHER_COST = saved
        postings, words = (np.array(times[w]) for w in times)
        print(
            f"{name:22} {chosen:>7,} images: postings p50 {ms(postings[:, 0], 0.5)} / p99 "
            f"{ms(postings[:, 0], 0.99)} ms (CPU p50 {ms(postings[:, 1], 0.5)}), stored words "
            f"p50 {ms(words[:, 0], 0.5)} / p99 {ms(words[:, 0], 0.99)} ms (CPU p50 "
            f"{ms(words[:, 1], 0.5)}); CPU ratio "
            f"{np.median(words[:, 1]) / np.median(postings[:, 1]):.2f}x; same first candidate "
            f"{same}/{len(postings)}"
        )


# -- the stores ---------------------------------------------------------------------------------
def sqlite_stores(
    work: Path, population: Population, images: int, jobs: int
) -> tuple[Store, Store]:
    """The big store (reused when ``work`` holds one of this size) and the 1k store, reopened
    as a fresh server worker would open them."""
    big_dir, small_dir = work / "big", work / "small"
    store = SQLiteStore(big_dir)
    total = sum(count for _, count in store.collections())
    if total < images:
        seconds = fill(store, population, images, seed=1717, jobs=jobs)
        added = sum(count for _, count in store.collections()) - total
        print(f"filled {big_dir}: {added:,} records added, {added / seconds:,.0f}/s")
    else:
        print(f"reusing the store in {big_dir}: {total:,} records")
    store.prepare()
    store.close()
    small = SQLiteStore(small_dir)
    if small.count(collection=SMALL_COLLECTION) == 0:
        small.add_many(population.small(np.random.default_rng(1718), SMALL_COLLECTION))
    small.prepare()
    small.close()
    return SQLiteStore(big_dir), SQLiteStore(small_dir)


def engine_stores(url: str, population: Population, images: int) -> tuple[Store, Store]:
    """The big index (reused when it holds records) and the 1k index, on the engine at ``url``;
    refreshed, not force-merged (as a live index is)."""
    stores = []
    for index, size in ((f"i17-filters-{images}", images), ("i17-filters-1k", 0)):
        store = ElasticStore(EngineClient(url, timeout=120), index, bulk_refresh=True)
        total = sum(count for _, count in store.collections())
        if total < size:
            seconds = fill(store, population, size, seed=1717)
            added = sum(count for _, count in store.collections()) - total
            print(f"filled {index}: {added:,} records added, {added / seconds:,.0f}/s")
        elif total == 0:
            store.add_many(population.small(np.random.default_rng(1718), SMALL_COLLECTION))
        else:
            print(f"reusing the index {index}: {total:,} records")
        httpx.post(f"{url}/{index}/_refresh", timeout=600).raise_for_status()
        stores.append(store)
    return stores[0], stores[1]


def drop_engine_indexes(url: str, images: int) -> None:
    for index in (f"i17-filters-{images}", "i17-filters-1k"):
        httpx.delete(f"{url}/{index}", timeout=600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2, help="timed passes over the queries")
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--keep", type=Path, help="folder of the stores, kept and reused")
    parser.add_argument("--jobs", type=int, default=1, help="processes filling the store")
    parser.add_argument("--engine", help="an Elasticsearch/OpenSearch URL: measure it instead")
    parser.add_argument("--keep-indexes", action="store_true", help="with --engine")
    args = parser.parse_args()
    started = time.perf_counter()
    photos = photos_dir("bench/filters.py", args.photos)
    population = Population(base_features(photos), seed=1716, queries=args.queries)
    if args.engine:
        engine(args.engine, population, args)
    elif args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        bench(args.keep, population, args)
    else:
        with tempfile.TemporaryDirectory(dir="/tmp") as work:
            bench(Path(work), population, args)
    print(f"\nbenchmark run time: {time.perf_counter() - started:.0f} s")


def engine(url: str, population: Population, args: argparse.Namespace) -> None:
    big, small = engine_stores(url, population, args.images)
    name = EngineClient(url).engine()
    print(
        f"\n== {name}: {big.count():,} images in default, {SMALL:,} in {SMALL_COLLECTION}; "
        f"{len(population.queries)} queries x {args.rounds} rounds =="
    )
    variants = variants_of(big, small)
    report(variants, measure(variants, population.queries, args.rounds))
    big.close()
    small.close()
    if not args.keep_indexes:
        drop_engine_indexes(url, args.images)


def bench(work: Path, population: Population, args: argparse.Namespace) -> None:
    big, small = sqlite_stores(work, population, args.images, args.jobs)
    print(
        f"\n== embedded store: {big.count():,} images in default, {SMALL:,} in "
        f"{SMALL_COLLECTION}; {len(population.queries)} queries x {args.rounds} rounds =="
    )
    result = measure(variants_of(big, small), population.queries, args.rounds)
    report(variants_of(big, small), result)
    assert isinstance(big, SQLiteStore)
    word_paths(big, population.queries)
    big.close()
    small.close()


if __name__ == "__main__":
    main()
