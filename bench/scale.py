"""Partial matching at 1M images (issue 13): searches, candidate recall, POSTINGS_BUDGET, bytes,
memory, each at 1M beside the same at 1k in the same run.

    # the embedded store: a COPY of a store filled by bench/filters.py (--keep DIR; 1M records
    # with local features), into which the dev photos are added; beside it a 1k store. SQLite's
    # backup copies a consistent snapshot (about a minute for 9 GB); --rebuild then builds the
    # shared index of the copy from scratch and times it
    sqlite3 'file:/tmp/store1m/big/match.sqlite3?mode=ro' '.backup /tmp/i13-1m/big/match.sqlite3'
    .venv/bin/python -u bench/scale.py sqlite --big /tmp/i13-1m/big --small /tmp/i13-1m/small \
        --rebuild
    .venv/bin/python bench/scale.py memory --big /tmp/i13-1m/big --workers 4
    .venv/bin/python bench/scale.py engine --url http://127.0.0.1:9281 --images 100000
    .venv/bin/python bench/scale.py engine --url http://127.0.0.1:9281 --images 1000000 \
        --keep-indexes --segments 1     # the same index again, merged into one segment

``sqlite`` prints, for the 1M store and the 1k store side by side:

1. what it took to build: adding the dev photos (and the shared index segment of them), and,
   with ``--rebuild``, the whole shared index built from scratch (the folder removed first);
2. bytes per image: the SQLite file and the shared index segments;
3. search end to end for a photo query: ``Matcher.query`` (decoding and feature extraction) then
   ``Matcher.search`` (8 orientations, limit 100), wall and CPU time, the two stores in
   alternating order per query, and how often the original comes first;
4. the candidate step's recall of the true original: is it among the shortlist of
   ``LOCAL_SHORTLIST`` images ``local_candidates`` returns for the query's words (either pass:
   the query or its mirror image), and among the first ``LOCAL_CANDIDATES``; at 1M with
   words.POSTINGS_BUDGET as shipped (and at each of ``--budgets``) and without it (the same
   queries), at 1k;
5. the local part's candidate step time with and without the budget.

Queries are the harness's edited copies of the dev originals (``--harness``, a folder of
``make_queries.py``: ``<family>/<original id>.jpg``) in the partial families (crops,
screenshots, meme, padding, perspective, 15° rotation), ``--per-family`` of each.

``memory`` starts ``match serve --workers N`` on the store, searches with the harness queries
(concurrency N) to warm every worker, and prints each process's RSS and PSS
(/proc/PID/smaps_rollup: PSS counts a page shared by k processes as 1/k in each, so their sum
is the memory the server holds), then stops it.

``engine`` fills an Elasticsearch/OpenSearch index with ``--images`` records (synthetic ones as
bench/partial.py makes them, plus the dev photos), and an index of 1k the same way, then times
``local_candidates`` (the shortlist) and the search end to end for the same queries on both,
and the engine's own time (``took``) and the shortlist's recall of the candidate query the store
sends: at the large size with search.TERMS_BUDGET as shipped, each of ``--budgets`` and none.
``--segments N`` force-merges both indexes to at most N segments before (an index no longer
written to; a live one keeps tens). The indexes (``i13-scale-<n>``) are deleted after unless
``--keep-indexes``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

import match.stores.sqlite.words as words_module
from match.errors import BlankImage, NotFound
from match.local import WORDS
from match.local.terms import probe_terms
from match.service import LOCAL_CANDIDATES, LOCAL_SHORTLIST, Matcher
from match.service.analysis import Query
from match.settings import Settings
from match.stores.base import ImageRecord, Store
from match.stores.elastic import ElasticStore, EngineClient, bodies
from match.stores.elastic import search as search_module
from match.stores.filters import DEFAULT_COLLECTION
from match.stores.sqlite import SQLiteStore
from partial import QueryImage, Timing, timed
from processes import tree_cpu
from shared_photos import PHOTOS, photos_dir
from store import disk_bytes, ms, synthetic

HARNESS = Path("/tmp/harness/queries")
FAMILIES = (
    "crop_center_70",
    "crop_side_20",
    "screenshot_60",
    "augly_screenshot",
    "augly_perspective",
    "augly_rotate_15",
    "augly_meme",
    "pad_10",
)
SMALL = 1_000
LIMIT = 100  # the search API's default
BASE_PHOTOS = 40  # as bench/filters.py: the synthetic records reuse these photos' features
BATCH = 5_000


def latency(timings: list[Timing]) -> str:
    wall, cpu = [t[0] for t in timings], [t[1] for t in timings]
    return (
        f"p50 {ms(wall, 0.5)} / p99 {ms(wall, 0.99)} ms wall, "
        f"CPU p50 {ms(cpu, 0.5)} / p99 {ms(cpu, 0.99)} ms ({len(wall)})"
    )


def on_settings() -> Settings:
    return Settings.from_env(match_partial_matching=True)


# -- records and queries -------------------------------------------------------------------------
def real_records(photos: Path, cache: Path | None) -> list[ImageRecord]:
    """Records of every dev photo (originals and distractors; blank ones skipped), as an add
    computes them, named by their file name; cached in ``cache`` when given (pickle)."""
    if cache is not None and cache.exists():
        with open(cache, "rb") as handle:
            return pickle.load(handle)  # our own cache file
    matcher = Matcher(on_settings())
    files = sorted((photos / "originals").glob("*.jpg")) + sorted(
        (photos / "distractors").glob("*.jpg")
    )
    records = []
    for path in files:
        try:
            records.append(matcher.record(path.name, path.read_bytes()))
        except BlankImage:
            continue
    if cache is not None:
        with open(cache, "wb") as handle:
            pickle.dump(records, handle)
    return records


def fillers(
    first: int, n: int, real: list[ImageRecord], rng: np.random.Generator
) -> list[ImageRecord]:
    """Synthetic records as bench/filters.py makes them: Goldberg-like signatures, a real
    photo's local features (one of the first BASE_PHOTOS) with words drawn from those photos'
    word frequencies."""
    bases = [r.local for r in real[:BASE_PHOTOS] if r.local is not None]
    counts = np.bincount(np.concatenate([b.words for b in bases]), minlength=WORDS)
    cdf = np.cumsum(counts.astype(np.float64)) / counts.sum()
    records = []
    for i, signature in enumerate(synthetic(n, rng)):
        base = bases[(first + i) % len(bases)]
        drawn = np.searchsorted(cdf, rng.random(len(base.words)), "right")
        words = np.minimum(drawn, WORDS - 1).astype(np.uint32)
        local = dataclasses.replace(base, words=words)
        records.append(ImageRecord(f"scale/{first + i}", signature, local=local))
    return records


def harness_queries(folder: Path, per_family: int, stored: set[str]) -> list[QueryImage]:
    """The first ``per_family`` queries (by name) of each partial family whose original is
    stored, families interleaved."""
    by_family = []
    for family in FAMILIES:
        files = sorted((folder / family).glob("*.jpg"))
        chosen = [f for f in files if f.name in stored][:per_family]
        by_family.append([QueryImage(family, f.name, f.read_bytes()) for f in chosen])
    if not any(by_family):
        raise SystemExit(f"no queries of {FAMILIES} in {folder}")
    return [q for group in zip(*by_family, strict=False) for q in group]


# -- the embedded store ----------------------------------------------------------------------------
def add_real(store: SQLiteStore, real: list[ImageRecord]) -> Timing | None:
    """Adds the dev photos unless they are stored already: the time of add_many (None if they
    were)."""
    if store.count() and _stored(store, real[0].filepath):
        return None
    result, timing = timed(store.add_many, real)
    assert not result.failed, result.failed[:3]
    return timing


def _stored(store: SQLiteStore, filepath: str) -> bool:
    try:
        store.get(filepath)
    except NotFound:
        return False
    return True


def small_store(folder: Path, real: list[ImageRecord]) -> SQLiteStore:
    store = SQLiteStore(folder)
    if store.count() == 0:
        store.add_many(real)
        n = SMALL - len(real)
        store.add_many(fillers(0, n, real, np.random.default_rng(1313)))
    store.prepare()
    return store


def index_bytes(store: SQLiteStore) -> tuple[int, int, int]:
    """(images, SQLite file bytes, shared index bytes)."""
    return store.count(), disk_bytes(store), store.shared_index_bytes()


def candidate_ranks(store: Store, built: Query, original: str) -> tuple[int | None, Timing]:
    """The original's best rank in the shortlist of either pass, and the passes' total time."""
    best, total = None, [0.0, 0.0]
    for features in (built.local, built.mirrored_local):
        if features is None:
            continue
        found, timing = timed(
            store.local_candidates, features.words, LOCAL_SHORTLIST, bits=features.bits
        )
        total = [total[0] + timing[0], total[1] + timing[1]]
        paths = [c.filepath for c in found]
        if original in paths:
            rank = paths.index(original)
            best = rank if best is None else min(best, rank)
    return best, total


def sqlite_bench(args: argparse.Namespace) -> None:
    photos_dir("bench/scale.py", args.photos)
    real, timing = timed(real_records, args.photos, args.cache)
    print(f"dev photos' records: {len(real)} ({timing[0]:.0f} s)")
    if args.rebuild:  # the whole shared index is built by the prepare below
        shutil.rmtree(Path(args.big) / "match.sqlite3.index", ignore_errors=True)
    big = SQLiteStore(args.big)
    print(f"\n== 1. building ({big.count():,} images in {args.big} before) ==")
    added = add_real(big, real)
    if added is not None:
        print(f"dev photos added: {len(real)} in {added[0]:.1f} s (CPU {added[1]:.1f} s)")
    _, timing = timed(big.prepare)
    what = "built from scratch" if args.rebuild else "brought up to date"
    print(f"shared index {what} (prepare): {timing[0]:.1f} s (CPU {timing[1]:.1f} s)")
    small, timing = timed(small_store, args.small, real)
    print(f"1k store: {small.count():,} images, built in {timing[0]:.1f} s")

    print("\n== 2. bytes per image ==")
    for name, store in (("1M", big), ("1k", small)):
        n, disk, shared = index_bytes(store)
        print(
            f"{name}: {n:,} images, SQLite file {disk / n:,.0f} B, shared index segments "
            f"{shared / n:,.0f} B ({shared / 2**20:,.0f} MiB), in all {(disk + shared) / n:,.0f} B"
        )
    big.close()
    small.close()

    stored = {r.filepath for r in real}
    queries = harness_queries(args.harness, args.per_family, stored)
    stores = {"1M": SQLiteStore(args.big), "1k": SQLiteStore(args.small)}  # as a fresh worker
    print(f"\nlabels: 1M is the store of {stores['1M'].count():,} images, 1k of {SMALL:,}")
    matchers = {name: Matcher(on_settings(), store) for name, store in stores.items()}
    for name, matcher in matchers.items():
        _, timing = timed(matcher.search, matcher.query(queries[0].data, True), limit=LIMIT)
        print(f"{name}: the first search of a fresh store object: {timing[0] * 1000:.0f} ms")
    for query in queries[1:4]:  # warm caches of both, untimed
        for matcher in matchers.values():
            matcher.search(matcher.query(query.data, True), limit=LIMIT)

    times: dict[str, list[Timing]] = {}
    firsts: dict[str, list[tuple[str, bool]]] = {name: [] for name in stores}
    built_queries: list[Query] = []
    names = list(stores)
    for k, query in enumerate(queries):
        for name in names[k % 2 :] + names[: k % 2]:
            matcher = matchers[name]
            built, build_time = timed(matcher.query, query.data, True)
            found, search_time = timed(matcher.search, built, limit=LIMIT)
            both = [build_time[0] + search_time[0], build_time[1] + search_time[1]]
            times.setdefault(f"end to end {name}", []).append(both)
            times.setdefault(f"query {name}", []).append(build_time)
            times.setdefault(f"search {name}", []).append(search_time)
            firsts[name].append((query.family, bool(found) and found[0].filepath == query.original))
            if name == "1M":
                built_queries.append(built)
    print(f"\n== 3. search end to end, {len(queries)} queries, 8 orientations, limit {LIMIT} ==")
    for name in names:
        for part in ("end to end", "query", "search"):
            print(f"{name} {part + ':':12} {latency(times[f'{part} {name}'])}")
    for name in names:
        print(f"{name} original first: {_by_family(firsts[name])}")

    print(
        f"\n== 4. candidate step: the original in the shortlist ({LOCAL_SHORTLIST}) / in the "
        f"first {LOCAL_CANDIDATES} by words, either pass =="
    )
    budget = words_module.POSTINGS_BUDGET
    ranks: dict[str, list[tuple[str, int | None]]] = {}
    step: dict[str, list[Timing]] = {}
    over = 0
    variants = (
        ("1M, budget", "1M", budget),
        *((f"1M, budget {other:,}", "1M", other) for other in args.budgets),
        ("1M, no budget", "1M", 1 << 62),
        ("1k", "1k", budget),
    )
    for k, (query, built) in enumerate(zip(queries, built_queries, strict=True)):
        if built.local is not None:
            # bench only: how many postings the query's terms have (the budget's trigger)
            terms = np.unique(probe_terms(built.local.words, built.local.bits))
            postings = stores["1M"]._words._counts(terms).sum()
            over += int(postings > budget)
        order = variants[k % len(variants) :] + variants[: k % len(variants)]
        for label, name, limit in order:
            words_module.POSTINGS_BUDGET = limit
            try:
                rank, timing = candidate_ranks(stores[name], built, query.original)
            finally:
                words_module.POSTINGS_BUDGET = budget
            ranks.setdefault(label, []).append((query.family, rank))
            step.setdefault(label, []).append(timing)
    print(f"queries whose terms have more than {budget:,} postings at 1M: {over}/{len(queries)}")
    for label, _, _ in variants:
        shortlisted = [(f, r is not None) for f, r in ranks[label]]
        fitted = [(f, r is not None and r < LOCAL_CANDIDATES) for f, r in ranks[label]]
        print(f"{label}: shortlist {_by_family(shortlisted)}")
        print(f"{' ' * len(label)}  first {LOCAL_CANDIDATES}: {_by_family(fitted)}")
    changed = [
        (q.family, a, b)
        for q, (_, a), (_, b) in zip(
            queries, ranks["1M, budget"], ranks["1M, no budget"], strict=True
        )
        if a != b
    ]
    print(f"queries whose original's rank the budget changes: {len(changed)}: {changed[:12]}")

    print("\n== 5. candidate step time (local_candidates, both passes) ==")
    for label, _, _ in variants:
        print(f"{label + ':':15} {latency(step[label])}")
    words_module.POSTINGS_BUDGET = 1 << 62
    try:
        off = [
            timed(matchers["1M"].search, b, limit=LIMIT) for b in built_queries
        ]  # after the rest: warm
    finally:
        words_module.POSTINGS_BUDGET = budget
    first_off = [
        (q.family, bool(f) and f[0].filepath == q.original)
        for q, (f, _) in zip(queries, off, strict=True)
    ]
    print(f"1M search without the budget: {latency([t for _, t in off])}")
    print(f"1M original first without the budget: {_by_family(first_off)}")
    for store in stores.values():
        store.close()


def _by_family(hits: list[tuple[str, bool]]) -> str:
    by: dict[str, list[bool]] = {}
    for family, hit in hits:
        by.setdefault(family, []).append(hit)
    parts = ", ".join(f"{f} {sum(h)}/{len(h)}" for f, h in by.items())
    total = sum(h for _, h in hits)
    return f"{total}/{len(hits)} = {total / max(len(hits), 1):.3f} ({parts})"


# -- a server's memory -----------------------------------------------------------------------------
def memory_bench(args: argparse.Namespace) -> None:
    stored = {p.name for p in (args.photos / "originals").glob("*.jpg")}
    queries = harness_queries(args.harness, args.per_family, stored)
    env = dict(os.environ, MATCH_DATA_DIR=str(args.big), MATCH_PARTIAL_MATCHING="true")
    command = [sys.executable, "-m", "match", "serve", "--workers", str(args.workers)]
    command += ["--port", str(args.port), "--host", "127.0.0.1"]
    started = time.perf_counter()
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{args.port}"
    try:
        while True:
            try:
                if httpx.get(f"{url}/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise SystemExit(f"the server stopped: {server.returncode}")
            time.sleep(0.5)
        print(f"server ready in {time.perf_counter() - started:.1f} s ({args.workers} workers)")
        print(f"before any search: {_memory(server.pid)}")

        def search(query: QueryImage) -> float:
            began = time.perf_counter()
            answer = httpx.post(f"{url}/search", files={"image": query.data}, timeout=120)
            answer.raise_for_status()
            return time.perf_counter() - began

        cpu = tree_cpu(server.pid)
        peak = _PeakPss(server.pid)
        with ThreadPoolExecutor(args.workers) as pool:
            took = list(pool.map(search, queries))
        cpu = tree_cpu(server.pid) - cpu
        print(
            f"{len(queries)} searches at concurrency {args.workers}: p50 {ms(took, 0.5)} ms, "
            f"p99 {ms(took, 0.99)} ms; the server's CPU {cpu / len(queries) * 1000:.0f} ms a search"
        )
        print(f"PSS while they ran, sampled every 50 ms: peak {peak.stop() / 1024:,.0f} MiB")
        print(f"after them: {_memory(server.pid)}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)


class _PeakPss:
    """The highest PSS (KiB) of a process and its descendants, sampled on a thread until stop():
    a search's transient arrays are freed (and given back) before the searches end."""

    def __init__(self, pid: int) -> None:
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, args=(pid,), daemon=True)
        self._thread.start()

    def _sample(self, pid: int) -> None:
        while not self._done.wait(0.05):
            with contextlib.suppress(OSError):
                pss = sum(_rollup(p)["Pss"] for p in [pid, *_descendants(pid)])
                self.peak = max(self.peak, pss)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.peak


def _memory(pid: int) -> str:
    pids = [pid, *_descendants(pid)]
    fields = [_rollup(p) for p in pids]
    rss = sum(f["Rss"] for f in fields)
    pss = sum(f["Pss"] for f in fields)
    each = ", ".join(f"{f['Rss'] / 1024:.0f}/{f['Pss'] / 1024:.0f}" for f in fields)
    anon = sum(f.get("Pss_Anon", 0) for f in fields)
    file = sum(f.get("Pss_File", 0) for f in fields)
    files = ", ".join(f"{name} {kib / 1024:,.0f}" for name, kib in _file_pss(pids).items())
    return (
        f"{len(pids)} processes, RSS {rss / 1024:,.0f} MiB, PSS {pss / 1024:,.0f} MiB "
        f"(anonymous {anon / 1024:,.0f}, file-backed {file / 1024:,.0f}: {files}); "
        f"RSS/PSS MiB each: {each}"
    )


def _file_pss(pids: list[int]) -> dict[str, int]:
    """File-backed PSS (KiB) of these processes by file: each index segment array by index and
    name (``words/rows``: the postings), everything else (libraries, the interpreter) as one."""
    totals: dict[str, int] = {}
    for pid in pids:
        name = "other files"
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            head = line.split()
            if not line[:1].isupper() or ":" not in head[0]:  # a mapping's first line
                path = Path(head[5]) if len(head) > 5 and head[5].startswith("/") else None
                name = _segment_file(path) if path else ""
            elif head[0] == "Pss:" and name:
                totals[name] = totals.get(name, 0) + int(head[1])
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def _segment_file(path: Path) -> str:
    """``index/array`` for a segment's array (``<store>.index/<index>/<segment>/<array>.npy``)."""
    if path.suffix == ".npy" and len(path.parts) >= 3 and path.parts[-4].endswith(".index"):
        return f"{path.parts[-3]}/{path.stem}"
    return "other files"


def _descendants(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found += [child, *_descendants(child)]
    return found


def _rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup's fields, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return fields


# -- the engine ----------------------------------------------------------------------------------
def engine_bench(args: argparse.Namespace) -> None:
    photos_dir("bench/scale.py", args.photos)
    real = real_records(args.photos, args.cache)
    stores = {}
    for label, size in ((f"{args.images // 1000}k", args.images), ("1k", SMALL)):
        index = f"i13-scale-{size}"
        store = ElasticStore(EngineClient(args.url, timeout=300), index, bulk_refresh=True)
        stored = store.count()
        if stored < size:
            began = time.perf_counter()
            if stored == 0:
                store.add_many(real)
                stored = len(real)
            rng = np.random.default_rng([1313, stored])
            for first in range(stored, size, BATCH):
                result = store.add_many(fillers(first, min(BATCH, size - first), real, rng))
                assert not result.failed, result.failed[:3]
                if (first // BATCH) % 10 == 9:
                    print(f"  {index}: {min(first + BATCH, size):,} added", flush=True)
            seconds = time.perf_counter() - began
            print(f"filled {index}: {size - stored:,} in {seconds:.0f} s")
        httpx.post(f"{args.url}/{index}/_refresh", timeout=600).raise_for_status()
        if args.segments:
            began = time.perf_counter()
            merge = f"{args.url}/{index}/_forcemerge?max_num_segments={args.segments}"
            httpx.post(merge, timeout=7200).raise_for_status()
            print(f"force-merged {index}: {time.perf_counter() - began:.0f} s")
        stats = httpx.get(f"{args.url}/{index}/_stats/store,docs,segments", timeout=60).json()
        primaries = stats["_all"]["primaries"]
        docs = primaries["docs"]["count"]
        print(
            f"{index}: {docs:,} documents, {primaries['store']['size_in_bytes'] / docs:,.0f} B "
            f"per document (primaries), {primaries['segments']['count']} segments"
        )
        stores[label] = store
    stored = {r.filepath for r in real}
    queries = harness_queries(args.harness, args.per_family, stored)
    matcher = Matcher(on_settings())
    built = [matcher.query(q.data, True) for q in queries]
    matchers = {label: Matcher(on_settings(), store) for label, store in stores.items()}
    for store in stores.values():  # warm-up, untimed
        for b in built[:3]:
            store.local_candidates(b.local.words, LOCAL_SHORTLIST, bits=b.local.bits)
    times: dict[str, list[Timing]] = {}
    ranks: dict[str, list[tuple[str, bool]]] = {}
    labels = list(stores)
    shipped = search_module.TERMS_BUDGET
    budgets = [shipped, *args.budgets, 1 << 62]
    for k, (query, b) in enumerate(zip(queries, built, strict=True)):
        for label in labels[k % 2 :] + labels[: k % 2]:
            store = stores[label]
            words, bits = b.local.words, b.local.bits
            _, timing = timed(store.local_candidates, words, LOCAL_SHORTLIST, bits=bits)
            times.setdefault(f"candidates {label}", []).append(timing)
            _, timing = timed(store.local_candidates, words, LOCAL_CANDIDATES, bits=bits)
            times.setdefault(f"candidates30 {label}", []).append(timing)
            _, timing = timed(matchers[label].search, b, limit=LIMIT)
            times.setdefault(f"search {label}", []).append(timing)
            # the budgets in turn, rotated per query; at 1k only the one shipped
            variants = budgets if label != "1k" else [shipped]
            for budget in variants[k % len(variants) :] + variants[: k % len(variants)]:
                search_module.TERMS_BUDGET = budget
                try:
                    rank, _ = candidate_ranks(store, b, query.original)
                    tokens = store._searcher._tokens(words, probe_terms(words, bits))
                finally:
                    search_module.TERMS_BUDGET = shipped
                key = f"{label} {_budget_label(budget)}"
                ranks.setdefault(key, []).append((query.family, rank is not None))
                for source in (True, False):
                    took = engine_took(args.url, store.index, tokens, source)
                    times.setdefault(f"took {source} {key}", []).append([took, took])
                times.setdefault(f"tokens {key}", []).append([len(next(iter(tokens.values())))] * 2)
    engine = EngineClient(args.url).engine()
    print(f"\n== {engine}: {len(queries)} queries ==")
    for label in labels:
        print(
            f"{label} local_candidates, {LOCAL_SHORTLIST}: {latency(times[f'candidates {label}'])}"
        )
        print(
            f"{label} local_candidates, {LOCAL_CANDIDATES}: "
            f"{latency(times[f'candidates30 {label}'])}"
        )
        print(f"{label} Matcher.search (built query): {latency(times[f'search {label}'])}")
        for budget in budgets if label != "1k" else [shipped]:
            key = f"{label} {_budget_label(budget)}"
            tokens = [t[0] for t in times[f"tokens {key}"]]
            print(f"{key}: terms looked up p50 {np.median(tokens):.0f}")
            for source, what in ((True, "with the records"), (False, "ids only, no _source")):
                took = [t[0] for t in times[f"took {source} {key}"]]
                print(
                    f"  the engine's own time (took) of the {LOCAL_SHORTLIST} candidates, "
                    f"{what}: p50 {ms(took, 0.5)} / p99 {ms(took, 0.99)} ms"
                )
            print(f"  original in the shortlist, either pass: {_by_family(ranks[key])}")
    if not args.keep_indexes:
        for size in (args.images, SMALL):
            httpx.delete(f"{args.url}/i13-scale-{size}", timeout=600)


def _budget_label(budget: float) -> str:
    return "no budget" if budget >= 1 << 62 else f"budget {budget:,.0f}"


def engine_took(url: str, index: str, tokens: dict[str, np.ndarray], source: bool) -> float:
    """Seconds the engine reports (``took``) for the store's candidate query of these tokens (as
    the store chose them: ``Searcher._tokens``); without ``source``, the same ranking returning
    no fields."""
    clauses = bodies.scope(DEFAULT_COLLECTION, None)
    body = bodies.local_query(tokens, LOCAL_SHORTLIST, clauses, "path")
    if not source:
        body.pop("docvalue_fields")
    answer = httpx.post(f"{url}/{index}/_search", json=body, timeout=120)
    answer.raise_for_status()
    return answer.json()["took"] / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sqlite = commands.add_parser("sqlite", help="the embedded store at 1M against 1k")
    sqlite.add_argument("--big", type=Path, required=True, help="a copy of a filled store")
    sqlite.add_argument("--small", type=Path, required=True, help="the 1k store (made if new)")
    sqlite.add_argument("--rebuild", action="store_true", help="time the index from scratch")
    sqlite.add_argument(
        "--budgets",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[],
        help="other POSTINGS_BUDGETs to measure in sections 4 and 5, e.g. 8000000,16000000",
    )
    memory = commands.add_parser("memory", help="a server's memory on the big store")
    memory.add_argument("--big", type=Path, required=True)
    memory.add_argument("--workers", type=int, default=4)
    memory.add_argument("--port", type=int, default=8913)
    engine = commands.add_parser("engine", help="Elasticsearch/OpenSearch")
    engine.add_argument("--url", required=True)
    engine.add_argument("--images", type=int, default=100_000)
    engine.add_argument("--keep-indexes", action="store_true")
    engine.add_argument(
        "--budgets",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[],
        help="other TERMS_BUDGETs to measure at the large size (besides none), e.g. 100000",
    )
    engine.add_argument(
        "--segments", type=int, help="force-merge each index to at most this many segments first"
    )
    for command in (sqlite, memory, engine):
        command.add_argument("--photos", type=Path, default=PHOTOS)
        command.add_argument("--harness", type=Path, default=HARNESS)
        command.add_argument("--per-family", type=int, default=20)
        command.add_argument("--cache", type=Path, help="the dev photos' records (pickle)")
    args = parser.parse_args()
    started = time.perf_counter()
    {"sqlite": sqlite_bench, "memory": memory_bench, "engine": engine_bench}[args.command](args)
    print(f"\nbenchmark run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
