"""Visual words: RootSIFT descriptors quantised on a two-level k-means vocabulary.

A word is one of WORDS = 128 x 128 leaves (nearest top centroid, then nearest of its 128
leaves), so candidate retrieval is an inverted index lookup. Each keypoint also keeps 64 bits of
Hamming embedding (Jégou, Douze and Schmid, ECCV 2008): the signs of a fixed random projection of
its offset from the leaf centroid, which tells true matches from the many keypoints that merely
share a word. The vocabulary file is built by scripts/train_vocabulary.py.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

VOCABULARY_FILE = Path(__file__).with_name("vocabulary.npz")
WORDS = 128 * 128
_BLAS = ThreadpoolController()


class Vocabulary:
    def __init__(self, top: np.ndarray, leaves: np.ndarray, projection: np.ndarray) -> None:
        self.top = top.astype(np.float32)
        self.leaves = leaves.astype(np.float32)
        self.projection = projection.astype(np.float32)
        self._top_norms = np.einsum("kd,kd->k", self.top, self.top)
        self._leaf_norms = np.einsum("tkd,tkd->tk", self.leaves, self.leaves)
        self._bit_weights = (1 << np.arange(64, dtype=np.uint64)).astype(np.uint64)

    def quantise(self, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n,) uint32 words and (n,) uint64 Hamming-embedding bits of (n, 128) descriptors."""
        if len(descriptors) == 0:
            return np.zeros(0, np.uint32), np.zeros(0, np.uint64)
        with _BLAS.limit(limits=1, user_api="blas"):  # small products: threads only contend
            return self._quantise(descriptors)

    def _quantise(self, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = np.argmin(self._top_norms - 2.0 * descriptors @ self.top.T, axis=1)
        # grouped by top cluster: one small product per cluster present, instead of gathering
        # a (n, 128, 128) block of leaves
        order = np.argsort(top, kind="stable")
        grouped = descriptors[order]
        clusters, starts = np.unique(top[order], return_index=True)
        ends = np.append(starts[1:], len(order))
        words = np.empty(len(order), np.uint32)
        residuals = np.empty_like(grouped)
        for cluster, start, end in zip(clusters, starts, ends, strict=True):
            block, leaves = grouped[start:end], self.leaves[cluster]
            nearest = np.argmin(self._leaf_norms[cluster] - 2.0 * block @ leaves.T, axis=1)
            words[start:end] = cluster * len(leaves) + nearest
            residuals[start:end] = block - leaves[nearest]
        signs = (residuals @ self.projection.T) > 0
        bits = (signs.astype(np.uint64) * self._bit_weights).sum(axis=1, dtype=np.uint64)
        unsorted = np.empty_like(order)
        unsorted[order] = np.arange(len(order))
        words, bits = words[unsorted], bits[unsorted]
        return words, bits


# RootSIFT components lie in [0, 1]: centroids are stored in 1/255 steps (2 MB instead of 8),
# far finer than the distances between them.
_LEVELS = 255


@cache
def vocabulary() -> Vocabulary:
    with np.load(VOCABULARY_FILE) as stored:
        return Vocabulary(
            stored["top"] / np.float32(_LEVELS),
            stored["leaves"] / np.float32(_LEVELS),
            stored["projection"].astype(np.float32),
        )


def save(path: Path, top: np.ndarray, leaves: np.ndarray, projection: np.ndarray) -> None:
    """Write a vocabulary file (scripts/train_vocabulary.py builds it)."""

    def levels(values: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(values * _LEVELS), 0, _LEVELS).astype(np.uint8)

    np.savez_compressed(
        path, top=levels(top), leaves=levels(leaves), projection=projection.astype(np.float16)
    )
