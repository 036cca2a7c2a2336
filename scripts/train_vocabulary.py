#!/usr/bin/env python3
"""Build src/match/local/vocabulary.npz, the visual-word vocabulary of partial matching.

Training images: the photographs of two Debian packages that the accuracy photos
(../shared/photos) do not come from, so the vocabulary has never seen an image it is judged on:
tuxpaint-stamps-default (animals, food, plants, vehicles, objects; the symbol and alphabet
stamps are left out) and visp-images-data (every sixth frame of its video sequences).

    python scripts/train_vocabulary.py            # apt-get download, unpack, train, write
    python scripts/train_vocabulary.py out.npz    # write elsewhere

Steps: RootSIFT keypoints of every image exactly as match.local.features extracts them
(about 240,000 descriptors), k-means into 128 top clusters, then k-means of each cluster into
128 leaves (16,384 words); plus a fixed random 64 x 128 orthonormal projection for the Hamming
embedding. k-means++ seeding with fixed seeds; about a minute on two cores.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from match.local.features import keypoints  # noqa: E402
from match.local.vocabulary import VOCABULARY_FILE, save  # noqa: E402
from match.signature.decode import decode_pixels  # noqa: E402

PACKAGES = ("tuxpaint-stamps-default", "visp-images-data")
TOP = LEAVES = 128
HAMMING_BITS = 64
SEED = 20081012  # any fixed value


def training_images(folder: Path) -> list[Path]:
    stamps = sorted(folder.glob("usr/share/tuxpaint/stamps/**/*.png"))
    stamps = [path for path in stamps if "/symbols/" not in str(path)]
    sequences = sorted(folder.glob("usr/share/visp-images-data/**/*.p[gn][mg]"))
    return stamps + sequences[::6]


def unpack_packages(folder: Path) -> None:
    for package in PACKAGES:
        subprocess.run(["apt-get", "download", package], cwd=folder, check=True)
    for deb in sorted(folder.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(folder)], check=True)


def descriptors(images: list[Path]) -> np.ndarray:
    found = []
    for path in images:
        try:
            found.append(keypoints(decode_pixels(path)).descriptors)
        except Exception as error:  # a training image that does not decode is skipped
            print(f"skipped {path}: {error}", file=sys.stderr)
    return np.concatenate(found).astype(np.float32)


def kmeans(points: np.ndarray, clusters: int) -> tuple[np.ndarray, np.ndarray]:
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 25, 1e-4)
    _, labels, centres = cv2.kmeans(points, clusters, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return labels.ravel(), centres


def train(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels, top = kmeans(points, TOP)
    leaves = np.empty((TOP, LEAVES, points.shape[1]), np.float32)
    for cluster in range(TOP):
        members = points[labels == cluster]
        count = min(LEAVES, len(members))
        leaves[cluster, :count] = kmeans(members, count)[1]
        # a thin cluster repeats its last leaf: duplicates are never the unique nearest
        leaves[cluster, count:] = leaves[cluster, count - 1]
    return top, leaves


def main() -> None:
    cv2.setRNGSeed(SEED)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        unpack_packages(folder)
        images = training_images(folder)
        points = descriptors(images)
    print(f"{len(images)} images, {len(points)} descriptors", file=sys.stderr)
    top, leaves = train(points)
    rng = np.random.default_rng(SEED)
    projection = np.linalg.qr(rng.standard_normal((128, 128)))[0][:HAMMING_BITS]
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else VOCABULARY_FILE
    save(out, top, leaves, projection)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
