"""How often a copy's keypoint keeps its term (match.local.terms): the Hamming bits of true
pairs between harness queries and their originals.

    .venv/bin/python bench/term_bits.py --harness /tmp/harness/view --per-family 12

For the first ``--per-family`` queries of each family, every pair of a query keypoint and an
original keypoint sharing a visual word is fitted with RANSAC (an affine map, 8 px, as
verification fits), without looking at the bits; the inliers of fits with at least 10 of them
are taken as true pairs. Prints, per family, the pairs and their Hamming distances (of 64), and
for the first b bits (a term's) the share of pairs whose b bits all agree, or differ in at most
one, with the share of a word's terms a query would then look up.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np

from match import local
from match.local.features import QUERY, STORED
from match.signature.decode import decode_image
from scale import FAMILIES as PARTIAL_FAMILIES

FAMILIES = (*PARTIAL_FAMILIES, "resize_50", "jpeg_50")  # and two whole-image families


def differing_bits(query: local.LocalFeatures, original: local.LocalFeatures) -> np.ndarray | None:
    """(pairs, 64) 0/1: which bits differ in each true pair, or None without a fit."""
    order = np.argsort(original.words, kind="stable")
    sorted_words = original.words[order]
    low = np.searchsorted(sorted_words, query.words, "left")
    high = np.searchsorted(sorted_words, query.words, "right")
    mine = np.repeat(np.arange(len(query.words)), high - low)
    if len(mine) < 6:
        return None
    theirs = order[np.concatenate([np.arange(a, b) for a, b in zip(low, high, strict=True)])]
    _, mask = cv2.estimateAffine2D(
        query.points[mine].astype(np.float32),
        original.points[theirs].astype(np.float32),
        ransacReprojThreshold=8.0,
        maxIters=5000,
    )
    if mask is None or mask.sum() < 10:
        return None
    inlier = mask.ravel().astype(bool)
    flipped = query.bits[mine[inlier]] ^ original.bits[theirs[inlier]]
    return np.unpackbits(flipped.view(np.uint8).reshape(-1, 8), axis=1, bitorder="little")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--harness", type=Path, default=Path("/tmp/harness/view"))
    parser.add_argument("--per-family", type=int, default=12)
    args = parser.parse_args()
    listed = json.loads((args.harness / "queries" / "queries.json").read_text())["queries"]
    chosen: dict[str, list[tuple[str, str]]] = {family: [] for family in FAMILIES}
    for name, query in sorted(listed.items()):
        family = chosen.get(query["family"])
        if family is not None and len(family) < args.per_family:
            family.append((name, query["original"]))
    originals: dict[str, local.LocalFeatures] = {}
    every = []
    for family, queries in chosen.items():
        found = []
        for name, original in queries:
            if original not in originals:
                data = (args.harness / "originals" / f"{original}.jpg").read_bytes()
                originals[original] = local.local_features(decode_image(data), STORED)
            data = (args.harness / "queries" / name).read_bytes()
            pairs = differing_bits(
                local.local_features(decode_image(data), QUERY), originals[original]
            )
            if pairs is not None:
                found.append(pairs)
        pairs = np.concatenate(found)
        every.append(pairs)
        distance = pairs.sum(axis=1)
        print(
            f"{family:18} {len(found):3} queries {len(pairs):6} pairs, Hamming p25 / p50 / p75 "
            f"{np.percentile(distance, 25):.0f} / {np.median(distance):.0f} / "
            f"{np.percentile(distance, 75):.0f}, a bit differs {pairs.mean():.3f}"
        )
    pairs = np.concatenate(every)
    print(f"\n{len(pairs)} pairs; the first b bits of a true pair:")
    for b in (4, 5, 6, 8, 10):
        differ = pairs[:, :b].sum(axis=1)
        print(
            f"  b = {b:2}: all agree {np.mean(differ == 0):.3f} (a query reads 1/{2**b} of a "
            f"word's postings), at most one differs {np.mean(differ <= 1):.3f} "
            f"({1 + b}/{2**b}), at most two {np.mean(differ <= 2):.3f} "
            f"({1 + b + math.comb(b, 2)}/{2**b})"
        )


if __name__ == "__main__":
    main()
