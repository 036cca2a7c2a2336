"""Cost of partial matching (issue 8), each figure measured with it on and off in the same run.

    .venv/bin/python bench/partial.py                  # 100k stored images (a few minutes)
    .venv/bin/python bench/partial.py --images 5000    # quick, for development

It prints:

1. time per add: ``Matcher.record`` on every dev photo (originals and distractors), partial
   matching on and off (the first call, which loads the vocabulary, is left out);
2. time per search: building the query (``Matcher.query(..., True)``) on and off, and the local
   part of a search alone (``store.local_candidates`` of the shortlist, 200 images, then
   ``local.verify_all`` of them, 30 fitted; the same for the mirror image's pass), at the size
   below;
3. bytes per image: packed local features, SQLite file with and without them (the same photos),
   and the in-memory word index;
4. search latency in the embedded store at ``--images`` images: end to end (``Matcher.query`` +
   ``Matcher.search`` from encoded bytes) and ``Matcher.search`` alone, on and off on the same
   store, and how often the query's original is the top result;
5. what the mirror image's pass costs (issue 14): the same, partial matching on with and
   without it (a query built without its mirror features makes no mirrored pass), side by side.

The store holds the real photos (real signatures and local features) and synthetic records:
signatures as bench/store.py makes them, local features of a real photo whose words are
replaced by words drawn from the photos' word frequencies (points and bits kept), so posting
lists have realistic lengths. Queries are the harness's edited copies of the originals (crops,
screenshot, meme, padding, and mirrored crops when the folder has them: bench/harness_families.py)
when ../harness/queries (or --harness) exists, else 70% centre crops.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from match.errors import BlankImage
from match.local import WORDS, LocalFeatures, pack, verify_all
from match.service import LOCAL_CANDIDATES, LOCAL_SHORTLIST, Matcher
from match.service.analysis import Query
from match.settings import Settings
from match.stores.base import ImageRecord
from match.stores.sqlite import SQLiteStore
from shared_photos import PHOTOS, photos_dir
from store import disk_bytes, latency, ms, synthetic

HARNESS_QUERIES = Path(__file__).resolve().parent.parent.parent / "harness" / "queries"
FAMILIES = (
    "crop_center_70",
    "crop_side_20",
    "screenshot_60",
    "augly_meme",
    "pad_10",
    "mirror_crop_center_70",  # only in a folder of bench/harness_families.py
)
LIMIT = 100  # results per search, the search API's default
BATCH = 5_000  # synthetic records built and added at a time

Timing = list[float]  # [wall seconds, CPU seconds]


@dataclasses.dataclass(frozen=True)
class QueryImage:
    family: str
    original: str  # filepath of the stored original
    data: bytes


def timed(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, Timing]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, [time.perf_counter() - wall, time.process_time() - cpu]


def matchers(store: SQLiteStore | None = None) -> tuple[Matcher, Matcher]:
    """Partial matching on, off; on one store when given."""
    on = Settings.from_env(match_partial_matching=True)
    return Matcher(on, store), Matcher(on.replace(match_partial_matching=False), store)


# -- 1. time per add ----------------------------------------------------------------------------
def photo_files(photos: Path) -> list[Path]:
    files = sorted((photos / "originals").glob("*.jpg")) + sorted(
        (photos / "distractors").glob("*.jpg")
    )
    if not files:
        raise SystemExit(f"no photos under {photos}")
    return files


def real_records(files: list[Path]) -> tuple[list[ImageRecord], list[Timing], list[Timing]]:
    """Records with local features of every photo (blank ones skipped), and the time of each
    Matcher.record with partial matching on and off."""
    on, off = matchers()
    on.record("warm-up", files[0].read_bytes())  # loads the vocabulary
    records, timings_on, timings_off = [], [], []
    for path in files:
        data = path.read_bytes()
        try:
            record, timing = timed(on.record, path.name, data)
        except BlankImage:
            continue
        records.append(record)
        timings_on.append(timing)
        timings_off.append(timed(off.record, path.name, data)[1])
    return records, timings_on, timings_off


def report_add(timings_on: list[Timing], timings_off: list[Timing]) -> None:
    print(f"\n== 1. time per add: Matcher.record, {len(timings_on)} photos, one process ==")
    for name, timings in (("partial on ", timings_on), ("partial off", timings_off)):
        print(f"{name}: {per_image(np.array(timings))}")
    print(f"extra:       {per_image(np.array(timings_on) - np.array(timings_off))}")


def per_image(timings: np.ndarray) -> str:
    wall, cpu = timings[:, 0], timings[:, 1]
    return (
        f"p50 {ms(wall, 0.5)} ms, mean {1000 * wall.mean():.1f} ms per image "
        f"(CPU time p50 {ms(cpu, 0.5)} ms, mean {1000 * cpu.mean():.1f} ms)"
    )


# -- 3. bytes per image -------------------------------------------------------------------------
def stored_bytes(records: list[ImageRecord], data_dir: Path) -> tuple[int, int]:
    """(SQLite file bytes, word index bytes) for these records in a fresh store."""
    data_dir.mkdir()
    store = SQLiteStore(data_dir)
    store.add_many(records)
    store.local_candidates(np.zeros(1, np.int64), 1)  # builds the word index
    sizes = disk_bytes(store), store.words_index_bytes()
    store.close()
    return sizes


def report_bytes(records: list[ImageRecord], work: Path) -> None:
    packed = [len(pack(r.local)) for r in records if r.local is not None]
    keypoints = [len(r.local.words) for r in records if r.local is not None]
    plain = [dataclasses.replace(r, local=None) for r in records]
    disk_on, words_on = stored_bytes(records, work / "bytes-on")
    disk_off, _ = stored_bytes(plain, work / "bytes-off")
    n = len(records)
    print(f"\n== 3. bytes per image, the same {n} photos ==")
    print(
        f"packed local features: mean {np.mean(packed):,.0f} B, p50 {np.median(packed):,.0f} B "
        f"({np.mean(keypoints):.0f} keypoints on average, 14 B each)"
    )
    print(
        f"SQLite file: {disk_on / n:,.0f} B with local features, {disk_off / n:,.0f} B without "
        f"(extra {(disk_on - disk_off) / n:,.0f} B)"
    )
    print(f"word index in memory: {words_on / n:,.0f} B")


# -- the big store ------------------------------------------------------------------------------
def word_cdf(records: list[ImageRecord]) -> np.ndarray:
    """Cumulative empirical frequency of every visual word over the photos' keypoints."""
    words = np.concatenate([r.local.words for r in records if r.local is not None])
    counts = np.bincount(words, minlength=WORDS).astype(np.float64)
    return np.cumsum(counts) / counts.sum()


def synthetic_records(
    first: int, n: int, bases: list[LocalFeatures], cdf: np.ndarray, rng: np.random.Generator
) -> list[ImageRecord]:
    """n records: Goldberg-like signatures; a real photo's local features with new words."""
    signatures = synthetic(n, rng)
    records = []
    for i, signature in enumerate(signatures):
        base = bases[(first + i) % len(bases)]
        words = np.searchsorted(cdf, rng.random(len(base.words)), "right").astype(np.uint32)
        local = dataclasses.replace(base, words=np.minimum(words, WORDS - 1))
        records.append(ImageRecord(f"syn/{first + i}", signature, local=local))
    return records


def fill(
    store: SQLiteStore, real: list[ImageRecord], images: int, seed: int
) -> tuple[float, float]:
    """Stores the real records, then synthetic ones up to ``images``: (seconds building records,
    seconds in add_many)."""
    rng = np.random.default_rng(seed)
    bases = [r.local for r in real if r.local is not None]
    cdf = word_cdf(real)
    assert not store.add_many(real).failed
    building = adding = 0.0
    stored = len(real)
    while stored < images:
        n = min(BATCH, images - stored)
        batch, spent = timed(synthetic_records, stored, n, bases, cdf, rng)
        building += spent[0]
        result, spent = timed(store.add_many, batch)
        assert not result.failed, result.failed[:3]
        adding += spent[0]
        stored += n
    return building, adding


# -- queries ------------------------------------------------------------------------------------
def harness_queries(folder: Path, count: int, rng: np.random.Generator) -> list[QueryImage]:
    """``count`` edited copies spread evenly over FAMILIES, originals chosen at random."""
    listed = json.loads((folder / "queries.json").read_text())["queries"]
    present = {q["family"] for q in listed.values()}
    families = [family for family in FAMILIES if family in present]
    queries = []
    for k, family in enumerate(families):
        names = sorted(name for name, q in listed.items() if q["family"] == family)
        wanted = count // len(families) + (k < count % len(families))
        for name in rng.choice(names, min(wanted, len(names)), replace=False):
            original = listed[name]["original"] + ".jpg"
            queries.append(QueryImage(family, original, (folder / name).read_bytes()))
    return queries


def centre_crops(photos: Path, count: int) -> list[QueryImage]:
    """70% centre crops of the first ``count`` originals, as JPEG."""
    queries = []
    for path in sorted((photos / "originals").glob("*.jpg"))[:count]:
        with Image.open(path) as image:
            w, h = image.size
            box = (round(0.15 * w), round(0.15 * h), round(0.85 * w), round(0.85 * h))
            out = io.BytesIO()
            image.convert("RGB").crop(box).save(out, "JPEG", quality=90)
        queries.append(QueryImage("crop_center_70 (made here)", path.name, out.getvalue()))
    return queries


# -- 2. and 4. searches -------------------------------------------------------------------------
def local_part(
    store: SQLiteStore, features: LocalFeatures, mirrored: bool = False
) -> tuple[Timing, Timing]:
    """Times of the local search's two steps: candidates, then verification of each (of the
    query's mirror image, ``mirrored``, when ``features`` are its)."""
    candidates, retrieval = timed(
        store.local_candidates, features.words, LOCAL_SHORTLIST, bits=features.bits
    )
    targets = [candidate.local for candidate in candidates]
    mirror_of = "query" if mirrored else None
    _, verification = timed(
        verify_all, features, targets, mirror_of=mirror_of, fits=LOCAL_CANDIDATES
    )
    return retrieval, verification


def run_queries(store: SQLiteStore, queries: list[QueryImage]) -> dict[str, Any]:
    """Every query on, on without the mirror image's pass, and off, back to back, in rotating
    order (so machine load and warm caches favour none): the time of each step, and whether the
    original came first. The local part alone is timed in a second pass, not right after the
    same query's search."""
    on, off = matchers(store)
    variants: dict[str, tuple[Matcher, Callable[[bytes], Query]]] = {
        "on": (on, lambda data: on.query(data, True)),
        # a query without its mirror features makes no mirrored pass: the search before it
        "unmirrored": (on, lambda data: on.analyser.query(data, True, mirror=False)),
        "off": (off, lambda data: off.query(data, True)),
    }
    names = list(variants)
    times: dict[str, list[Timing]] = {}
    top: dict[str, list[tuple[str, bool]]] = {name: [] for name in names}
    features = []
    for k, query in enumerate(queries):
        for name in names[k % 3 :] + names[: k % 3]:
            matcher, build = variants[name]
            built, build_time = timed(build, query.data)
            found, search_time = timed(matcher.search, built, limit=LIMIT)
            add_time(times, f"query {name}", build_time)
            add_time(times, f"search {name}", search_time)
            add_time(times, f"end to end {name}", build_time, search_time)
            first = found[0].filepath if found else None
            top[name].append((query.family, first == query.original))
            if name == "on" and built.local is not None:
                features.append((built.local, built.mirrored_local))
    for local, mirrored in features:
        retrieval, verification = local_part(store, local)
        add_time(times, "local candidates", retrieval)
        add_time(times, "local verification", verification)
        add_time(times, "local part", retrieval, verification)
        if mirrored is not None:
            retrieval, verification = local_part(store, mirrored, mirrored=True)
            add_time(times, "mirror candidates", retrieval)
            add_time(times, "mirror verification", verification)
            add_time(times, "mirror part", retrieval, verification)
    return {"times": times, "top": top}


def add_time(times: dict[str, list[Timing]], name: str, *parts: Timing) -> None:
    """Appends the sum of ``parts`` to ``times[name]``."""
    times.setdefault(name, []).append(np.sum(parts, axis=0).tolist())


def warm_up(store: SQLiteStore, query: QueryImage) -> tuple[Timing, Timing]:
    """The first search of a fresh store object loads both per-process indexes: their times."""
    on, _ = matchers(store)
    built = on.query(query.data, True)
    _, signature_index = timed(store.search, built.signatures, 0.45, 1)
    _, word_index = timed(store.local_candidates, built.local.words, 1)
    return signature_index, word_index


def report_search(result: dict[str, Any]) -> None:
    times = result["times"]
    print("\n== 2. time per search: the parts partial matching adds ==")
    for name in ("query on", "query off", "local candidates", "local verification", "local part"):
        print(f"{name + ':':20} {latency(times[name])}")
    extra = np.array(times["query on"])[:, 0] - np.array(times["query off"])[:, 0]
    print(f"{'query extra:':20} p50 {ms(extra, 0.5)} ms, mean {1000 * extra.mean():.1f} ms")
    print(f"\n== 4. search latency (8 orientations, limit {LIMIT}) ==")
    for name in ("end to end on", "end to end off", "search on", "search off"):
        print(f"{name + ':':20} {latency(times[name])}")
    for name, found in result["top"].items():
        by_family: dict[str, list[bool]] = {}
        for family, hit in found:
            by_family.setdefault(family, []).append(hit)
        shown = ", ".join(f"{f} {sum(h)}/{len(h)}" for f, h in by_family.items())
        print(f"original ranked first, partial {name}: {sum(h for _, h in found)}/{len(found)}")
        print(f"  {shown}")


def report_mirror(times: dict[str, list[Timing]]) -> None:
    """Partial matching on, with and without the mirror image's pass, side by side."""
    print("\n== 5. the mirror image's pass: partial matching on, with / without it ==")
    for step in ("query", "search", "end to end"):
        with_it, without = np.array(times[f"{step} on"]), np.array(times[f"{step} unmirrored"])
        for column, clock in ((0, "wall"), (1, "CPU")):
            a, b = with_it[:, column], without[:, column]
            print(
                f"{step + ', ' + clock + ':':20} p50 {ms(a, 0.5)} / {ms(b, 0.5)} ms "
                f"({np.median(a) / np.median(b):.2f}x), mean {1000 * a.mean():.1f} / "
                f"{1000 * b.mean():.1f} ms ({a.mean() / b.mean():.2f}x)"
            )
    for name in ("local part", "mirror candidates", "mirror verification", "mirror part"):
        if name in times:
            print(f"{name + ':':20} {latency(times[name])}")


def report_store(
    images: int, fill_times: tuple[float, float], disk: int, store: SQLiteStore, loads: list
) -> None:
    building, adding = fill_times
    print(f"\n== the store: {images:,} images ==")
    print(
        f"filled in {building + adding:.0f} s: building synthetic records {building:.0f} s, "
        f"add_many {adding:.0f} s ({(images / max(adding, 1e-9)):,.0f} records/s)"
    )
    print(f"SQLite file: {disk / images:,.0f} B per image ({disk / 2**20:,.0f} MiB)")
    print(
        f"in memory: word index {store.words_index_bytes() / images:,.0f} B per image "
        f"({store.words_index_bytes() / 2**20:,.0f} MiB), signature index "
        f"{store.index_bytes() / images:,.0f} B per image"
    )
    print(
        f"first search of a fresh store object loads the indexes: signature index "
        f"{loads[0][0]:.2f} s (CPU {loads[0][1]:.2f} s), word index {loads[1][0]:.2f} s "
        f"(CPU {loads[1][1]:.2f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100_000, help="stored images (default 100k)")
    parser.add_argument("--queries", type=int, default=100, help="edited query images")
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--harness", type=Path, default=HARNESS_QUERIES)
    parser.add_argument("--dir", help="work folder (default: a temporary one, removed after)")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        bench(Path(work), args)
    print(f"\nbenchmark run time: {time.perf_counter() - started:.0f} s")


def bench(work: Path, args: argparse.Namespace) -> None:
    photos_dir("bench/partial.py", args.photos)
    records, timings_on, timings_off = real_records(photo_files(args.photos))
    report_add(timings_on, timings_off)
    report_bytes(records, work)

    rng = np.random.default_rng(2008)
    if (args.harness / "queries.json").exists():
        queries = harness_queries(args.harness, args.queries, rng)
    else:
        queries = centre_crops(args.photos, args.queries)
    store = SQLiteStore(work / "big")
    fill_times = fill(store, records, args.images, seed=2009)
    images = store.count()
    disk = disk_bytes(store)
    store.close()

    store = SQLiteStore(work / "big")  # as a fresh server worker: indexes not loaded yet
    loads = list(warm_up(store, queries[0]))
    result = run_queries(store, queries)
    report_store(images, fill_times, disk, store, loads)
    report_search(result)
    report_mirror(result["times"])
    store.close()


if __name__ == "__main__":
    main()
