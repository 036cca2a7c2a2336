"""Finding the duplicates inside a collection (issue 18, service/duplicates.py): what a scan
costs at 10k and 100k stored images, and how well its groups agree with the dev photos.

    .venv/bin/python bench/duplicates.py scale --images 10000                  # embedded store
    .venv/bin/python bench/duplicates.py scale --images 10000 --engine http://127.0.0.1:9281
    .venv/bin/python bench/duplicates.py scale --images 30000 --sample 1000 \
        --engine http://127.0.0.1:9281 --beside-embedded             # both, one run
    .venv/bin/python bench/duplicates.py scale --images 100000 --sample 5000
    .venv/bin/python bench/duplicates.py accuracy --data DIR --queries DIR

**scale** fills a fresh store (embedded, or a new index on ``--engine``, deleted after) with the
real photos (originals and distractors, their real signatures and local features), the
harness's edited copies of three families when ``--queries`` is given (real groups), and
synthetic records up to ``--images`` (signatures as bench/store.py makes them, local features of
a real photo with words drawn from the photos' word frequencies, as bench/partial.py does). It
then runs the scan on every core and prints, side by side in the same run:

- the scan: wall and CPU time (workers included), images searched per second, peak memory of
  the main process and of the largest worker, groups found; with ``--sample K`` only the first
  K images are searched (in the whole collection's scope) and the whole scan is extrapolated;
- the reference: the same per-image search in one process (``Matcher.search`` by stored record,
  a sample of images), and all pairs compared instead (``methods.compare`` of random pairs,
  timed, times N(N-1)/2);
- the estimate for 1M images from the per-image cost at this size.

With ``--engine URL --beside-embedded`` the same records and the same sample are scanned on the
embedded store and then on the engine, each in its own process (so that each peak memory is its
own), and the engine's figures are printed as ratios to the embedded store's. On an engine it
also prints the index's size and the node's JVM heap (the engine's memory; a shared node's heap
holds other indexes too).

**accuracy** runs the scan on a store holding every original, every distractor and every query
copy of the harness (``match add`` of the three folders, keys ``originals/<id>.jpg``,
``distractors/<id>.jpg``, ``queries/<family>/<id>.jpg``), once, then groups its links at several
``min_score`` values by each keeper rule (``--keepers``) and compares the groups with the ground
truth (each original with its copies): precision and recall of pairs per family (pairs with an
image of that family), how often the keeper is the original, and the groups holding images of
two originals (or of a distractor and an original); each with the flat-image rule
(service/duplicates.flat_link) and without it, side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from match.service import Matcher, duplicates
from match.service.duplicates import KeeperRule, Task, _Links, _search_all, group
from match.service.methods import compare
from match.settings import Settings
from match.stores import ImageRecord, open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from partial import synthetic_records, word_cdf
from store import PHOTOS

SCALE_FAMILIES = ("resize_50", "crop_center_70", "hflip")
BATCH = 2000
MIN_SCORES = (0.0, 55.0, 60.0, 65.0, 70.0, 80.0)


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def cpu_seconds() -> float:
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# -- records ------------------------------------------------------------------------------------
def _record(job: tuple[str, str, Settings]) -> ImageRecord | None:
    path, key, settings = job
    try:
        return Matcher(settings).record(key, Path(path).read_bytes())
    except Exception:
        return None


def real_records(
    settings: Settings, queries: Path | None, jobs: int, cache: Path | None
) -> list[ImageRecord]:
    """The photos (and three families of their edited copies), computed on every core, or read
    from ``cache`` (a pickle this function wrote) when it exists."""
    if cache is not None and cache.exists():
        with cache.open("rb") as read:
            return pickle.load(read)  # a file this benchmark wrote
    files = [
        (str(p), f"{p.parent.name}/{p.name}")
        for folder in ("originals", "distractors")
        for p in sorted((PHOTOS / folder).glob("*.jpg"))
    ]
    if queries is not None:
        files += [
            (str(p), f"queries/{family}/{p.name}")
            for family in SCALE_FAMILIES
            for p in sorted((queries / family).glob("*.jpg"))
        ]
    with ProcessPoolExecutor(jobs) as pool:
        found = pool.map(_record, [(path, key, settings) for path, key in files], chunksize=8)
        records = [record for record in found if record is not None]
    if cache is not None:
        with cache.open("wb") as write:
            pickle.dump(records, write)
    return records


def fill(store: Any, real: list[ImageRecord], images: int, seed: int) -> float:
    """The real records, then synthetic ones up to ``images``; seconds spent adding."""
    rng = np.random.default_rng(seed)
    bases = [r.local for r in real if r.local is not None]
    cdf = word_cdf(real)
    started = time.perf_counter()
    assert not store.add_many(real).failed
    stored = len(real)
    while stored < images:
        n = min(BATCH, images - stored)
        result = store.add_many(synthetic_records(stored, n, bases, cdf, rng))
        assert not result.failed, result.failed[:3]
        stored += n
    return time.perf_counter() - started


# -- scale --------------------------------------------------------------------------------------
def scale(args: argparse.Namespace) -> None:
    if args.beside_embedded and args.engine:
        beside(args)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        env = {"MATCH_DATA_DIR": str(Path(work) / "data")}
        if args.engine:
            env = {
                "ELASTICSEARCH_URL": args.engine,
                "ELASTICSEARCH_INDEX": f"bench-duplicates-{uuid.uuid4().hex[:8]}",
                "ELASTICSEARCH_BULK_REFRESH": "true",
            }
        settings = Settings.from_env(env)
        try:
            figures = run_scale(settings, args)
        finally:
            if args.engine:
                store = open_store(settings)
                store.client.request("DELETE", f"/{settings.elasticsearch_index}", allow=(404,))  # type: ignore[attr-defined]
                store.close()
    if args.figures is not None:
        args.figures.write_text(json.dumps(figures))


def beside(args: argparse.Namespace) -> None:
    """The embedded store, then the engine, each in a process of its own, and the ratios."""
    figures = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        for name in ("embedded", "engine"):
            command = [sys.executable, __file__, "scale", "--images", str(args.images)]
            command += ["--jobs", str(args.jobs), "--figures", f"{work}/{name}.json"]
            for option in ("sample", "queries", "cache", "dir"):
                if getattr(args, option) is not None:
                    command += [f"--{option}", str(getattr(args, option))]
            if name == "engine":
                command += ["--engine", args.engine]
            subprocess.run(command, check=True)
            figures[name] = json.loads(Path(f"{work}/{name}.json").read_text())
    embedded, engine = figures["embedded"], figures["engine"]
    print(f"\n== engine / embedded store, {args.images:,} images, same run ==")
    for key, text in (
        ("wall_ms", "wall per image searched"),
        ("cpu_ms", "client CPU per image (engine's own CPU not counted)"),
        ("main_mib", "peak memory, main process"),
        ("worker_mib", "peak memory, largest worker"),
        ("fill_s", "filling the store"),
    ):
        ratio = engine[key] / embedded[key] if embedded[key] else float("nan")
        print(f"{text:52} {engine[key]:10.1f} / {embedded[key]:10.1f} = {ratio:.2f}x")


def run_scale(settings: Settings, args: argparse.Namespace) -> dict[str, float]:
    jobs = args.jobs
    where = f"engine {args.engine}" if args.engine else "embedded store"
    print(f"== duplicates scan, {args.images:,} images, {where}, {jobs} jobs; load {load()} ==")
    started = time.perf_counter()
    real = real_records(settings, args.queries, jobs, args.cache)
    print(f"real records: {len(real)} in {time.perf_counter() - started:.0f} s")
    store = open_store(settings)
    adding = fill(store, real, args.images, seed=18)
    if args.engine:
        store.client.request("POST", f"/{settings.elasticsearch_index}/_refresh")  # type: ignore[attr-defined]
    else:
        store.prepare()  # the shared indexes built once, as `match serve` does at start
    count = store.count()
    print(f"filled: {count:,} images in {adding:.0f} s; load {load()}")
    if args.engine:
        engine_memory(store, settings.elasticsearch_index, count)
    matcher = Matcher(settings, store)
    task = Task()
    sample = min(args.sample or count, count)

    # the scan, on every core
    cpu, wall = cpu_seconds(), time.perf_counter()
    links = _Links()
    records = itertools.islice(store.scan(batch=duplicates.READ_BATCH), sample)
    for image, matches in _search_all(matcher, records, task, jobs):
        links.add(image, matches)
    searching = time.perf_counter() - wall
    grouping_started = time.perf_counter()
    groups = group(links, KeeperRule(), settings.match_distance_cutoff, 0.0)
    grouping = time.perf_counter() - grouping_started
    scan_cpu = cpu = cpu_seconds() - cpu
    per_image = searching / sample
    whole = per_image * count
    print(
        f"scan: {sample:,} images searched in {searching:.1f} s wall ({sample / searching:.1f} "
        f"images/s, {1000 * per_image:.1f} ms/image on {jobs} cores; CPU {1000 * cpu / sample:.1f}"
        f" ms/image, workers included), grouping {grouping:.2f} s; {len(groups)} groups, "
        f"{sum(len(g.members) for g in groups)} members; load {load()}"
    )
    if sample < count:
        print(f"  whole collection, extrapolated: {whole / 60:.1f} min")
    print(
        f"  peak memory: main process {peak_mib(resource.RUSAGE_SELF):.0f} MiB, largest worker "
        f"{peak_mib(resource.RUSAGE_CHILDREN):.0f} MiB"
    )

    # the reference: one process, and all pairs
    chosen = list(itertools.islice(store.scan(batch=50), 0, count, max(1, count // 200)))[
        : min(200, sample)
    ]
    wall, cpu = time.perf_counter(), time.process_time()
    for record in chosen:
        duplicates.matches_of(matcher, record, task)
    single = (time.perf_counter() - wall) / len(chosen)
    single_cpu = (time.process_time() - cpu) / len(chosen)
    queries = [matcher.analyser.stored_query(r, True) for r in chosen]
    rng = np.random.default_rng(1)
    pairs = [tuple(rng.choice(len(queries), 2, replace=False)) for _ in range(300)]
    wall, cpu = time.perf_counter(), time.process_time()
    for a, b in pairs:
        compare(queries[a], dataclasses.replace(queries[b], signatures=queries[b].signatures[:1]))
    per_pair = (time.perf_counter() - wall) / len(pairs)
    pair_cpu = (time.process_time() - cpu) / len(pairs)
    all_pairs = count * (count - 1) / 2 * per_pair / jobs
    print(
        f"reference, one process: {1000 * single:.1f} ms per image searched, CPU "
        f"{1000 * single_cpu:.1f} ms (scan on {jobs} cores: {1000 * per_image:.1f} ms, "
        f"{single / per_image:.2f}x)"
    )
    print(
        f"reference, all pairs compared: {1000 * per_pair:.2f} ms per pair (CPU "
        f"{1000 * pair_cpu:.2f} ms) x "
        f"{count * (count - 1) // 2:,} pairs / {jobs} cores = {all_pairs / 3600:.1f} h "
        f"(the scan: {whole / 60:.1f} min, {all_pairs / whole:.0f}x less)"
    )
    print(
        f"1M estimate at this size's cost per image: {1e6 * per_image / 3600:.1f} h on {jobs} "
        f"cores, {1e6 * per_image * jobs / 32 / 3600:.1f} h on 32 (per-image search cost "
        "grows with the store: see docs/duplicates.md)"
    )
    store.close()
    return {
        "wall_ms": 1000 * per_image,
        "cpu_ms": 1000 * scan_cpu / sample,
        "main_mib": peak_mib(resource.RUSAGE_SELF),
        "worker_mib": peak_mib(resource.RUSAGE_CHILDREN),
        "fill_s": adding,
    }


def engine_memory(store: Any, index: str, count: int) -> None:
    """The index's size and the node's JVM heap: the engine's side of memory."""
    _, stats = store.client.request("GET", f"/{index}/_stats/store")
    size = stats["_all"]["primaries"]["store"]["size_in_bytes"]
    _, nodes = store.client.request("GET", "/_nodes/stats/jvm")
    heaps = [n["jvm"]["mem"] for n in nodes["nodes"].values()]
    used = sum(h["heap_used_in_bytes"] for h in heaps) / 2**20
    most = sum(h["heap_max_in_bytes"] for h in heaps) / 2**20
    print(
        f"engine: index {size / 2**20:.0f} MiB on disk ({size / count / 1024:.1f} KiB per image);"
        f" node heap {used:.0f} of {most:.0f} MiB used (a shared node: other indexes included)"
    )


# -- accuracy -----------------------------------------------------------------------------------
def truth_of(path: str, listed: dict[str, Any]) -> tuple[str, str]:
    """(original id, family) of a stored key; a distractor is its own original."""
    kind, _, rest = path.partition("/")
    if kind == "queries":
        entry = listed[rest]
        return entry["original"], entry["family"]
    return Path(rest).stem if kind == "originals" else f"distractor:{rest}", kind.rstrip("s")


def accuracy(args: argparse.Namespace) -> None:
    settings = Settings.from_env({"MATCH_DATA_DIR": str(args.data)})
    matcher = Matcher(settings)
    listed = json.loads((args.queries / "queries.json").read_text())["queries"]
    count = matcher.count()
    print(f"== duplicates on the dev photos: {count} images, {args.jobs} jobs; load {load()} ==")
    wall = time.perf_counter()
    if args.links is not None and args.links.exists():
        with args.links.open("rb") as read:
            links = pickle.load(read)  # the links an earlier run of this benchmark saved
        print(f"links read from {args.links}")
    else:
        links = _Links()
        for image, matches in _search_all(
            matcher, matcher.store.scan(), Task(min_score=0.0), args.jobs
        ):
            links.add(image, matches)
        print(f"scan: {time.perf_counter() - wall:.0f} s ({count} images); load {load()}")
        if args.links is not None:
            with args.links.open("wb") as write:
                pickle.dump(links, write)
    truth = {path: truth_of(path, listed) for path in links.images}
    families: dict[str, list[str]] = defaultdict(list)
    for path, (original, _family) in truth.items():
        families[original].append(path)
    true_pairs = Counter()  # per family: pairs with an image of that family
    for paths in families.values():
        for a, b in itertools.combinations(paths, 2):
            for family in {truth[a][1], truth[b][1]}:
                true_pairs[family] += 1
    # with the flat-image rule (service/duplicates.flat_link) and without it, side by side
    for low_quality in (settings.match_pdq_min_quality, None):
        for keeper in args.keepers:
            for min_score in args.min_scores:
                rule = KeeperRule.parse(keeper)
                cutoff = settings.match_distance_cutoff
                report(links, truth, true_pairs, cutoff, min_score, rule, low_quality)


def report(
    links: _Links,
    truth: dict[str, tuple[str, str]],
    true_pairs: Counter[str],
    cutoff: float,
    min_score: float,
    rule: KeeperRule,
    low_quality: int | None,
) -> None:
    groups = group(links, rule, cutoff, min_score, low_quality=low_quality)
    grouped, right = Counter(), Counter()
    impure = []
    keeper_is_original = 0
    for found in groups:
        paths = [found.keeper, *(m.filepath for m in found.members)]
        originals = {truth[p][0] for p in paths}
        if len(originals) > 1:
            impure.append(found)
        keeper_is_original += truth[found.keeper][1] == "original"
        for a, b in itertools.combinations(paths, 2):
            same = truth[a][0] == truth[b][0]
            for family in {truth[a][1], truth[b][1]}:
                grouped[family] += 1
                right[family] += same
    flat = "off" if low_quality is None else f"PDQ quality < {low_quality}"
    print(
        f"\n-- min_score {min_score:g}, keeper {rule}, flat-image rule {flat}: {len(groups)} groups"
    )
    print(f"{'family':22} {'precision':>9} {'recall':>7}  pairs grouped / true")
    order = ["original", *sorted(f for f in true_pairs if f not in ("original", "distractor"))]
    for family in order:
        precision = right[family] / grouped[family] if grouped[family] else float("nan")
        recall = right[family] / true_pairs[family] if true_pairs[family] else float("nan")
        print(
            f"{family:22} {precision:9.3f} {recall:7.3f}  {grouped[family]} / {true_pairs[family]}"
        )
    total_right = sum(1 for g in groups for _ in _true_pairs_of(g, truth))
    total_grouped = sum(len(g.members) * (len(g.members) + 1) // 2 for g in groups)
    total_true = sum(n * (n - 1) // 2 for n in Counter(o for o, _ in truth.values()).values())
    print(
        f"{'ALL':22} {total_right / max(total_grouped, 1):9.3f} "
        f"{total_right / max(total_true, 1):7.3f}  {total_grouped} / {total_true}"
    )
    with_distractor = sum(any(truth[p][1] == "distractor" for p in _paths(g)) for g in groups)
    causes = Counter(_cause(g, truth) for g in impure)
    print(
        "impure groups by the families of their images of other originals: "
        + ", ".join(f"{cause}: {n}" for cause, n in causes.most_common())
    )
    print(
        f"groups holding images of two originals (or a distractor and another image): "
        f"{len(impure)}; groups with a distractor: {with_distractor}; keeper is the original "
        f"in {keeper_is_original} of {len(groups)} groups"
    )
    for found in [g for g in impure if _cause(g, truth) != "shared overlays only"][:12]:
        print(
            f"  {found.keeper}: "
            + ", ".join(
                f"{m.filepath} {m.score:.1f} {m.method}"
                for m in found.members
                if truth[m.filepath][0] != truth[found.keeper][0]
            )
        )


SHARED_OVERLAYS = frozenset({"augly_screenshot", "screenshot_60", "augly_meme", "augly_noise"})
"""Families whose copies of different originals share most of their pixels: the same page
template (both screenshots), the same caption band (meme), the same noise pattern (seed 42)."""


def _cause(found: duplicates.Group, truth: dict[str, tuple[str, str]]) -> str:
    """Which images put two originals in one group: every image of the group not of the
    keeper's original, with the keeper, and the families they belong to."""
    keeper = truth[found.keeper]
    strays = [truth[m.filepath] for m in found.members if truth[m.filepath][0] != keeper[0]]
    families = {keeper[1], *(family for _, family in strays)}
    if families & {"distractor"}:
        return "a distractor"
    if all(f in SHARED_OVERLAYS for _, f in strays) and (
        keeper[1] in SHARED_OVERLAYS or len(strays) == 0
    ):
        return "shared overlays only"
    return "other: " + "+".join(sorted(families))


def _paths(found: duplicates.Group) -> list[str]:
    return [found.keeper, *(m.filepath for m in found.members)]


def _true_pairs_of(found: duplicates.Group, truth: dict[str, tuple[str, str]]) -> list[tuple]:
    return [
        (a, b) for a, b in itertools.combinations(_paths(found), 2) if truth[a][0] == truth[b][0]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    scaling = commands.add_parser("scale")
    scaling.add_argument("--images", type=int, default=10_000)
    scaling.add_argument("--sample", type=int, help="search only the first K images")
    scaling.add_argument("--engine", help="an Elasticsearch/OpenSearch URL (default: embedded)")
    scaling.add_argument("--queries", type=Path, help="the harness's queries folder")
    scaling.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    scaling.add_argument("--dir", help="work folder (default: a temporary one)")
    scaling.add_argument(
        "--beside-embedded",
        action="store_true",
        help="with --engine: the embedded store first, same records, and the ratios",
    )
    scaling.add_argument("--figures", type=Path, help=argparse.SUPPRESS)
    scaling.add_argument(
        "--cache", type=Path, help="keep the real photos' records in this file between runs"
    )
    accurate = commands.add_parser("accuracy")
    accurate.add_argument("--data", type=Path, required=True, help="the filled embedded store")
    accurate.add_argument("--queries", type=Path, required=True)
    accurate.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    accurate.add_argument(
        "--links", type=Path, help="keep the scan's links in this file (read it if it exists)"
    )
    accurate.add_argument("--keepers", type=lambda t: t.split(","), default=["earliest", "largest"])
    accurate.add_argument(
        "--min-scores", type=lambda t: [float(x) for x in t.split(",")], default=MIN_SCORES
    )
    args = parser.parse_args()
    started = time.perf_counter()
    (scale if args.command == "scale" else accuracy)(args)
    print(f"\nbenchmark run time: {time.perf_counter() - started:.0f} s; load {load()}")


if __name__ == "__main__":
    main()
