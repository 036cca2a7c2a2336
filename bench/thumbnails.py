"""What the web page's thumbnails cost (docs/web.md), measured side by side in one run.

    nice .venv/bin/python bench/thumbnails.py             # every dev photo (a minute or two)
    nice .venv/bin/python bench/thumbnails.py --adds 20   # fewer adds timed

It prints, over the dev photos of ../shared/photos (originals and distractors; it needs them):

1. bytes per thumbnail (WebP, long side 256 px): mean, median, 95th percentile and largest, and
   the photos' own bytes beside them;
2. time to make one from the decoded pixels;
3. time per add (``Analyser.record``: decoding, signature, PDQ, local features) with thumbnails
   on and off, alternating on the same photos: the reference is the add without one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from match.service.analysis import Analyser
from match.service.thumbnails import make_thumbnail
from match.settings import Settings
from match.signature.decode import decode_pixels

SHARED = Path(os.environ.get("MATCH_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


def photos() -> list[Path]:
    folder = SHARED / "photos"
    found = sorted((folder / "originals").glob("*.jpg")) + sorted(
        (folder / "distractors").glob("*.jpg")
    )
    if not found:
        sys.exit(f"bench/thumbnails.py needs the dev photos under {folder} (MATCH_SHARED_DIR)")
    return found


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adds", type=int, default=60, help="photos whose add is timed")
    args = parser.parse_args()
    paths = photos()
    sizes, originals, made = [], [], []
    for path in paths:
        pixels = decode_pixels(path)
        started = time.perf_counter()
        sizes.append(len(make_thumbnail(pixels)))
        made.append(time.perf_counter() - started)
        originals.append(path.stat().st_size)
    print(f"{len(paths)} dev photos, {statistics.mean(originals) / 1024:.0f} KB each on average")
    print(
        f"thumbnail bytes: mean {statistics.mean(sizes):.0f}, median {statistics.median(sizes):.0f}"
        f", p95 {percentile(sizes, 0.95):.0f}, max {max(sizes)}"
    )
    print(
        f"making one from decoded pixels: median {1000 * statistics.median(made):.1f} ms, "
        f"p95 {1000 * percentile(made, 0.95):.1f} ms"
    )

    settings = Settings.from_env({})
    with_thumbnails = Analyser(settings.replace(match_thumbnails=True))
    without = Analyser(settings.replace(match_thumbnails=False))
    data = [path.read_bytes() for path in paths[: args.adds]]
    without.record("warm-up", data[0])  # loads the vocabulary
    timings: dict[str, list[float]] = {"on": [], "off": []}
    for n, image in enumerate(data):
        order = [("on", with_thumbnails), ("off", without)]
        for name, analyser in order if n % 2 else order[::-1]:
            started = time.perf_counter()
            analyser.record("x.jpg", image)
            timings[name].append(time.perf_counter() - started)
    on, off = statistics.mean(timings["on"]), statistics.mean(timings["off"])
    print(
        f"add ({len(data)} photos, partial matching on): {1000 * on:.0f} ms with thumbnails, "
        f"{1000 * off:.0f} ms without (reference): x{on / off:.3f}"
    )
    print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
