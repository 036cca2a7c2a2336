"""CPU time of local features per image: the legacy extractor (an add's before issue 13, and a
search's with its mirror image's words) and the extractions of issue 13 (what an add stores, a
search's cheap first pass, its fine second pass), side by side.

    .venv/bin/python bench/features.py                # every dev photo (originals and distractors)
    .venv/bin/python bench/features.py --limit 60     # the first 60 originals, quick
    .venv/bin/python bench/features.py --threads 2    # OpenCV's own threads (default 1, as served)
    .venv/bin/python bench/features.py --only split_stored,stored_800   # those beside legacy

Each photo is decoded once (not timed), then each extractor runs on it in turn, alternating which
goes first, so all see the same load. Timed is ``match.local.local_features`` (for a query
extractor ``local_features_and_mirror``, as a search in 8 orientations makes it): grey conversion,
resizing, SIFT, the keypoint selection and the quantisation on the vocabulary. CPU time is the
thread's (``time.thread_time``); with ``--threads`` above 1 OpenCV works in threads of its own,
so the wall clock is printed too. The first call of each extractor (which loads the vocabulary)
is left out.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from match.local import features, local_features, local_features_and_mirror
from match.signature import decode_image
from shared_photos import PHOTOS, photos_dir

# name: (extraction, with the mirror image's words as a search makes them)
EXTRACTORS = {
    "legacy": (features.LEGACY, False),
    "legacy_query": (features.LEGACY, True),
    "split_stored": (features.SPLIT_STORED, False),
    "stored_500": (features.STORED_500, False),
    "stored_800": (features.STORED_800, False),
    # cheaper still (issue 13's 20 ms): a smaller frame; 2 layers an octave instead of 3
    "288_500": (replace(features.STORED_500, detect_side=288, detected=500), False),
    "256_500": (replace(features.STORED_500, detect_side=256, detected=500), False),
    "l2_500": (replace(features.STORED_500, octave_layers=2, detected=500), False),
    "l2_c02_500": (
        replace(features.STORED_500, contrast_threshold=0.02, octave_layers=2, detected=500),
        False,
    ),
    # issue 13's last tries: a smaller SIFT sigma (smaller blur kernels and descriptor windows),
    # 400 described, and the two with the 288 px frame (288 px, sigma 1.4, 500 described is
    # split_stored since 2026-12-07 evening)
    "400": (replace(features.STORED_500, detected=400), False),
    "s14_500": (replace(features.STORED_500, sigma=1.4), False),
    "s12_500": (replace(features.STORED_500, sigma=1.2), False),
    "s14_400": (replace(features.STORED_500, sigma=1.4, detected=400), False),
    "s12_400": (replace(features.STORED_500, sigma=1.2, detected=400), False),
    "288_400": (replace(features.STORED_500, detect_side=288, detected=400), False),
    "288_s14_400": (
        replace(features.STORED_500, detect_side=288, sigma=1.4, detected=400),
        False,
    ),
    "cheap_query": (features.CHEAP_QUERY, True),
    "fine_query": (features.SPLIT_QUERY, True),
}


def photo_files(photos: Path, limit: int | None) -> list[Path]:
    originals = sorted((photos / "originals").glob("*.jpg"))
    if limit:
        return originals[:limit]
    return originals + sorted((photos / "distractors").glob("*.jpg"))


def timed(
    pixels: np.ndarray, extraction: features.Extraction, mirror: bool
) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.thread_time()
    if mirror:
        found, _ = local_features_and_mirror(pixels, extraction)
    else:
        found = local_features(pixels, extraction)
    elapsed = time.thread_time() - cpu, time.perf_counter() - wall
    # keypoints, not words: a query's keypoints may have several words each
    count = len(found.words) if found.keypoints is None else len(np.unique(found.keypoints))
    return *elapsed, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS, help="default: ../shared/photos")
    parser.add_argument("--limit", type=int, help="only the first N originals")
    parser.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (default 1)")
    parser.add_argument(
        "--only", help="comma list of extractors besides legacy (default: all), for quick runs"
    )
    args = parser.parse_args()
    if args.only:
        kept = {"legacy", *args.only.split(",")}
        if not kept <= set(EXTRACTORS):
            parser.error(f"--only: unknown {sorted(kept - set(EXTRACTORS))}")
        for name in set(EXTRACTORS) - kept:
            del EXTRACTORS[name]
    cv2.setNumThreads(args.threads)
    files = photo_files(photos_dir("bench/features.py", args.photos), args.limit)
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in EXTRACTORS}
    names = list(EXTRACTORS)
    warm = decode_image(files[0])
    for extraction, _ in EXTRACTORS.values():
        local_features(warm, extraction)
    for index, path in enumerate(files):
        pixels = decode_image(path)
        order = names if index % 2 == 0 else names[::-1]
        for name in order:
            results[name].append(timed(pixels, *EXTRACTORS[name]))
    print(
        f"local_features per image, {len(files)} photos, cv2.setNumThreads({args.threads}), "
        f"load average {' '.join(f'{x:.1f}' for x in _load())}"
    )
    header = f"{'extractor':<12} {'detect side':>11} {'sigma':>5} {'described':>9} "
    header += f"{'CPU p50':>8} {'CPU p90':>8} "
    print(header + f"{'wall p50':>9} {'wall p90':>9} {'keypoints mean':>15}")
    for name, rows in results.items():
        cpu, wall, count = (np.array(column, float) for column in zip(*rows, strict=True))
        extraction = EXTRACTORS[name][0]
        print(
            f"{name:<12} {extraction.detect_side:>8} px {extraction.sigma:>5} "
            f"{extraction.detected:>9} {_ms(cpu, 0.5):>8} "
            f"{_ms(cpu, 0.9):>8} {_ms(wall, 0.5):>9} {_ms(wall, 0.9):>9} {count.mean():>15.0f}"
        )
    cpu = {name: np.array([r[0] for r in rows]) for name, rows in results.items()}
    for name in names[1:]:
        against = "legacy_query" if EXTRACTORS[name][1] and "legacy_query" in cpu else "legacy"
        ratio = np.median(cpu[name]) / np.median(cpu[against])
        print(f"{name} / {against}, CPU p50: {ratio:.2f}")
    if not {"cheap_query", "fine_query", "legacy_query"} <= set(cpu):
        return
    # a search that its first pass settles pays the cheap query; one that finds nothing (a
    # negative) pays both, on the same photo
    legacy_query = np.median(cpu["legacy_query"])
    both = cpu["cheap_query"] + cpu["fine_query"]
    print(
        f"cheap_query + fine_query (a search with a second pass): CPU p50 "
        f"{_ms(both, 0.5)}, / legacy_query {np.median(both) / legacy_query:.2f}"
    )


def _ms(values: np.ndarray, q: float) -> str:
    return f"{1000 * float(np.quantile(values, q)):.1f} ms"


def _load() -> tuple[float, ...]:
    try:
        import os

        return os.getloadavg()
    except OSError:
        return ()


if __name__ == "__main__":
    main()
