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
        # -2 x each cluster's leaves, transposed and contiguous: a leaf distance is then one
        # product and one sum (scaling by -2 is exact, so the distances are the same floats)
        self._minus_two_leaves_t = np.ascontiguousarray(-2.0 * self.leaves.transpose(0, 2, 1))

    def quantise(self, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n,) uint32 words and (n,) uint64 Hamming-embedding bits of (n, 128) descriptors."""
        if len(descriptors) == 0:
            return np.zeros(0, np.uint32), np.zeros(0, np.uint64)
        with _BLAS.limit(limits=1, user_api="blas"):  # small products: threads only contend
            return self._quantise(descriptors)

    def _quantise(self, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        top = np.argmin(self._top_norms - 2.0 * descriptors @ self.top.T, axis=1)
        # grouped by top cluster: one small product per cluster present, instead of gathering
        # a (n, 128, 128) block of leaves. The loop is most of the time: it does only that.
        order = np.argsort(top, kind="stable")
        grouped = descriptors[order]
        tops = top[order]
        clusters, starts = np.unique(tops, return_index=True)
        ends = np.append(starts[1:], len(order)).tolist()
        nearest = np.empty(len(order), np.intp)
        norms, leaves_t = self._leaf_norms, self._minus_two_leaves_t
        for cluster, start, end in zip(clusters.tolist(), starts.tolist(), ends, strict=True):
            distances = norms[cluster] + grouped[start:end] @ leaves_t[cluster]
            nearest[start:end] = np.argmin(distances, axis=1)
        leaves_per_top = self.leaves.shape[1]
        words = (tops * leaves_per_top + nearest).astype(np.uint32)
        residuals = grouped - self.leaves.reshape(-1, grouped.shape[1])[words]
        bits = _packed(residuals @ self.projection.T > 0)
        unsorted = np.empty_like(order)
        unsorted[order] = np.arange(len(order))
        return words[unsorted], bits[unsorted]

    def quantise_near(
        self, descriptors: np.ndarray, assignments: int, ratio: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Multiple assignment (Jégou et al., 2010): each descriptor's nearest word and up to
        ``assignments`` - 1 more among the leaves of its two nearest top clusters, those within
        ``ratio`` times the nearest leaf's distance. Returns words, Hamming bits (each from the
        residual to its own leaf, as a stored keypoint of that word has them) and the index of
        the descriptor each came from; each descriptor's first word is the one ``quantise``
        gives it. For queries: a stored keypoint whose descriptor fell just across a leaf
        boundary is still found."""
        if len(descriptors) == 0 or assignments <= 1:
            words, bits = self.quantise(descriptors)
            return words, bits, np.arange(len(words))
        with _BLAS.limit(limits=1, user_api="blas"):
            return self._quantise_near(descriptors, assignments, ratio)

    def _quantise_near(
        self, descriptors: np.ndarray, assignments: int, ratio: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, leaves_per_top = len(descriptors), self.leaves.shape[1]
        top_distances = self._top_norms - 2.0 * descriptors @ self.top.T
        nearest_tops = np.argsort(top_distances, axis=1)[:, :2]
        # squared distances to every leaf of the two nearest top clusters, and those leaves' words
        distances = np.empty((n, 2 * leaves_per_top), np.float32)
        for rank in range(2):
            tops = nearest_tops[:, rank]
            for cluster in np.unique(tops):
                members = np.flatnonzero(tops == cluster)
                block = descriptors[members] @ self.leaves[cluster].T
                span = slice(rank * leaves_per_top, (rank + 1) * leaves_per_top)
                distances[members, span] = self._leaf_norms[cluster] - 2.0 * block
        leaf = np.arange(leaves_per_top)
        words = (nearest_tops[:, :, None] * leaves_per_top + leaf).reshape(n, -1)
        distances += np.einsum("nd,nd->n", descriptors, descriptors)[:, None]
        # the word ``quantise`` gives (nearest leaf of the nearest top cluster) always comes first
        primary = np.argmin(distances[:, :leaves_per_top], axis=1)
        rows = np.arange(n)
        nearest = distances[rows, primary].copy()
        distances[rows, primary] = -np.inf
        closest = np.argsort(distances, axis=1)[:, :assignments]
        distances[rows, primary] = nearest
        chosen = np.take_along_axis(distances, closest, axis=1)
        keep = chosen <= (ratio * ratio) * np.maximum(chosen[:, :1], 1e-12)
        keep[:, 0] = True
        source = np.repeat(np.arange(n), keep.sum(axis=1))
        near_words = np.take_along_axis(words, closest, axis=1)[keep].astype(np.uint32)
        residuals = descriptors[source] - self.leaves.reshape(-1, descriptors.shape[1])[near_words]
        return near_words, _packed(residuals @ self.projection.T > 0), source


def _packed(signs: np.ndarray) -> np.ndarray:
    """(n,) uint64 of (n, 64) booleans, column i as bit i."""
    return np.packbits(signs, axis=1, bitorder="little").view("<u8").ravel().astype(np.uint64)


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
