"""Signature throughput, single process: decode alone, exact, 8 orientations, fast, image-match.

    .venv/bin/python bench/signatures.py                  # photos + large photos, 3 rounds
    .venv/bin/python bench/signatures.py --photos 100 --large 0 --rounds 5

Sets: the first N photos of ../shared/photos (originals then distractors, by name), and the
8+ megapixel wallpapers that bench/get_wallpapers.sh unpacks into bench/wallpapers (baseline
JPEG, progressive JPEG and PNG reported apart: fast mode only shrinks JPEGs). Every method
runs on the same encoded bytes held in memory, decode included. image-match 1.1.2 (the `bench`
extra, then pip install --no-deps image-match==1.1.2) gets RGB arrays decoded by Pillow, as
the accuracy harness does; its decode is timed with it.

Timing: the methods are interleaved image by image, each round; an image's time is its best
round, and images/s = images / sum of best times. Interleaving and best-of keep the ratios
honest on a shared, noisy machine. Also printed: fast mode's drift (normalized distance to the
exact signature), and how far signature_orientations (permuting a stored signature) is from
recomputing the oriented signatures.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from match import signature as sig
from shared_photos import photos_dir

ROOT = Path(__file__).resolve().parent.parent
WALLPAPERS = ROOT / "bench" / "wallpapers" / "files"
LARGE_PIXELS = 8_000_000

Method = Callable[[bytes], object]


def decode_rgb(data: bytes) -> np.ndarray:
    """The floor of exact mode: Pillow's full-size decode to an RGB array."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def methods(with_image_match: bool, image_match_orientations: bool) -> dict[str, Method]:
    table: dict[str, Method] = {
        "decode RGB (Pillow)": decode_rgb,
        "exact": lambda data: sig.image_signature(data),
        "exact, 8 orientations": lambda data: sig.orientation_signatures(data),
        "fast": lambda data: sig.image_signature(data, mode="fast"),
        "fast, 8 orientations": lambda data: sig.orientation_signatures(data, mode="fast"),
    }
    if with_image_match:
        from image_match.goldberg import ImageSignature

        signer = ImageSignature()
        table["image-match 1.1.2"] = lambda data: signer.generate_signature(decode_rgb(data))
        if image_match_orientations:
            table["image-match 1.1.2, 8 orientations"] = lambda data: [
                signer.generate_signature(np.ascontiguousarray(oriented))
                for oriented in _dihedral(decode_rgb(data))
            ]
    return table


def _dihedral(rgb: np.ndarray):
    for mirrored in (rgb, rgb[:, ::-1]):
        for k in range(4):
            yield np.rot90(mirrored, k)


def best_times(images: list[bytes], table: dict[str, Method], rounds: int) -> dict[str, float]:
    """Sum over images of each method's best time, interleaving methods image by image."""
    best = {name: np.full(len(images), np.inf) for name in table}
    for _ in range(rounds):
        for n, data in enumerate(images):
            for name, method in table.items():
                started = time.perf_counter()
                method(data)
                best[name][n] = min(best[name][n], time.perf_counter() - started)
    return {name: float(times.sum()) for name, times in best.items()}


def report(title: str, images: list[bytes], table: dict[str, Method], rounds: int) -> None:
    if not images:
        print(f"\n{title}: no images")
        return
    megapixels = np.mean([_pixels(data) for data in images]) / 1e6
    for data in images[:2]:  # warm-up: imports, caches
        for method in table.values():
            method(data)
    totals = best_times(images, table, rounds)
    decode = totals["decode RGB (Pillow)"]
    print(f"\n{title}: {len(images)} images, mean {megapixels:.2f} MP, best of {rounds} rounds")
    print(f"{'method':<36}{'images/s':>10}{'ms/image':>10}{'x decode':>10}{'vs image-match':>16}")
    reference = totals.get("image-match 1.1.2")
    for name, total in totals.items():
        speedup = ""
        if reference is not None and name != "decode RGB (Pillow)" and "image-match" not in name:
            oriented = totals.get("image-match 1.1.2, 8 orientations")
            base = oriented if "8 orient" in name else reference
            speedup = f"{base / total:.1f}x faster" if base else ""
        print(
            f"{name:<36}{len(images) / total:>10.1f}{1000 * total / len(images):>10.2f}"
            f"{total / decode:>10.2f}{speedup:>16}"
        )
    print(
        f"8 orientations / one signature: exact {_ratio(totals, 'exact')}, "
        f"fast {_ratio(totals, 'fast')}"
    )
    drift(images)


def _ratio(totals: dict[str, float], mode: str) -> str:
    return f"{totals[f'{mode}, 8 orientations'] / totals[mode]:.2f}"


def drift(images: list[bytes]) -> None:
    fast, permuted = [], []
    for data in images:
        exact = sig.image_signature(data)
        fast.append(sig.normalized_distances(sig.image_signature(data, mode="fast"), exact[None]))
        oriented = sig.orientation_signatures(data)
        by_permutation = sig.signature_orientations(exact)
        permuted.extend(
            sig.normalized_distances(by_permutation[k], oriented[k][None])[0] for k in range(1, 8)
        )
    fast_drift = np.concatenate(fast)
    print(
        f"fast-mode drift (distance to exact): median {np.median(fast_drift):.4f}, "
        f"p99 {np.percentile(fast_drift, 99):.4f}, max {fast_drift.max():.4f}, "
        f"unchanged {np.mean(fast_drift == 0):.0%}"
    )
    print(
        f"signature_orientations vs recomputed (7 non-trivial orientations): median "
        f"{np.median(permuted):.4f}, p99 {np.percentile(permuted, 99):.4f}, "
        f"max {np.max(permuted):.4f}, equal {np.mean(np.array(permuted) == 0):.0%}"
    )


def _pixels(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        return image.size[0] * image.size[1]


def photo_set(count: int) -> list[bytes]:
    photos = photos_dir("bench/signatures.py (--photos 0 measures the large photos only)")
    paths = sorted((photos / "originals").glob("*.jpg")) + sorted(
        (photos / "distractors").glob("*.jpg")
    )
    return [path.read_bytes() for path in paths[:count]]


def large_sets(count: int) -> dict[str, list[bytes]]:
    """8+ MP wallpapers by kind: baseline JPEG, progressive JPEG (DCT scaling saves little
    there: every scan must still be entropy-decoded), PNG (fast mode = exact)."""
    found: dict[str, list[bytes]] = {}
    for path in sorted(WALLPAPERS.rglob("*")):
        if path.suffix.lower() not in {".jpg", ".jpeg", ".png"} or not path.is_file():
            continue
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            if image.size[0] * image.size[1] < LARGE_PIXELS:
                continue
            kind = image.format + (" progressive" if image.info.get("progressive") else "")
        found.setdefault(kind, []).append(data)
    return {kind: _unique(found[kind])[:count] for kind in sorted(found)}


def _unique(items: list[bytes]) -> list[bytes]:
    return list({hash(data): data for data in items}.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100, help="photos from ../shared/photos")
    parser.add_argument("--large", type=int, default=40, help="8+ MP wallpapers per format")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-image-match", action="store_true")
    args = parser.parse_args()

    with_image_match = not args.no_image_match
    if with_image_match:
        try:
            import image_match.goldberg  # noqa: F401
        except ImportError as error:
            print(
                f"image-match not measured ({error}): pip install -e '.[bench]' and "
                "pip install --no-deps image-match==1.1.2"
            )
            with_image_match = False

    if args.photos:
        report("Photos", photo_set(args.photos), methods(with_image_match, True), args.rounds)
    if args.large:
        if not WALLPAPERS.is_dir():
            print(f"\nno large photos: run bench/get_wallpapers.sh (fills {WALLPAPERS})")
            return
        for kind, images in large_sets(args.large).items():
            # image-match over 8 orientations takes seconds per large image: left out
            table = methods(with_image_match, False)
            report(f"Large {kind} (8+ MP)", images, table, max(1, args.rounds - 1))


if __name__ == "__main__":
    main()
