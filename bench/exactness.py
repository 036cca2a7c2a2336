"""Exactness on every photo of the accuracy set: Match's signatures equal image-match's.

    .venv/bin/python bench/exactness.py                # needs ../shared/photos (MATCH_SHARED_DIR)
    .venv/bin/python bench/exactness.py --orientations-every 5

Needs the accuracy set's photos (originals and distractors, ~360 files in ../shared/photos),
which the repository does not hold: tests/test_signature.py checks the same on the repository's
photos (tests/photos/), this script on the whole set. For every photo it compares Match's exact
signature with the float64 reference (match.signature._reference) and, where installed
(`make install` does: image-match 1.1.2 with --no-deps, scikit-image), with image-match 1.1.2
itself on the same decoded RGB pixels; for every Nth photo also the 8 orientation signatures
with the reference's. Prints the counts and every photo that differs; exits 1 if any does.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from match import signature as sig
from match.signature import _reference as reference
from shared_photos import photos_dir


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orientations-every", type=int, default=25, metavar="N")
    args = parser.parse_args()
    photos = photos_dir("bench/exactness.py")
    paths = sorted((photos / "originals").glob("*.jpg")) + sorted(
        (photos / "distractors").glob("*.jpg")
    )
    try:
        from image_match.goldberg import ImageSignature

        signer = ImageSignature()
    except ImportError as error:
        print(f"image-match not compared ({error}): make install installs it")
        signer = None

    started = time.perf_counter()
    differ: dict[str, list[str]] = {"reference": [], "image-match": [], "orientations": []}
    every_value_at_two = 0  # image-match's quirk: white beside black moves every value to +-2
    for n, path in enumerate(paths):
        pixels = sig.decode_image(path)
        ours = sig.image_signature(pixels)
        if not np.array_equal(ours, reference.image_signature(pixels)):
            differ["reference"].append(path.name)
        if signer is not None:
            theirs = np.asarray(signer.generate_signature(pixels), dtype=np.int8)
            if not np.array_equal(ours, theirs):
                differ["image-match"].append(path.name)
        if not np.isin(ours, (-1, 1)).any() and np.isin(ours, (-2, 2)).any():
            every_value_at_two += 1
        if n % args.orientations_every == 0 and not np.array_equal(
            sig.orientation_signatures(pixels), reference.orientation_signatures(pixels)
        ):
            differ["orientations"].append(path.name)

    oriented = len(range(0, len(paths), args.orientations_every))
    print(f"{len(paths)} photos of {photos}, {time.perf_counter() - started:.0f} s")
    print(f"  equal to the float64 reference: {len(paths) - len(differ['reference'])}")
    if signer is not None:
        print(f"  equal to image-match 1.1.2: {len(paths) - len(differ['image-match'])}")
    print(f"  8 orientations equal to the reference: {oriented - len(differ['orientations'])}")
    print(f"  ({every_value_at_two} with every non-zero value at level 2: white beside black)")
    for kind, names in differ.items():
        if names:
            print(f"DIFFERENT from {kind}: {', '.join(names)}")
    return 1 if any(differ.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
