"""Mirror images without a second extraction: a mirrored image's keypoints, from the original's.

SIFT is not mirror-invariant, but it is mirror-covariant. Mirroring an image left-right moves a
keypoint at x to width - 1 - x (features.py keeps pixel centres exactly), turns its orientation
from a to 180 - a, and reflects its own frame across the keypoint's orientation axis: the rows
of the descriptor's 4 x 4 spatial grid come in reverse order (the grid's columns follow the
orientation, its rows the perpendicular, which the mirror reverses), and a gradient at angle b
from the orientation lies at -b, so the 8 orientation bins (b = 0, 45, ..., 315 degrees) go
o -> (8 - o) mod 8. OpenCV lays a descriptor out as (row * 4 + column) * 8 + bin. Measured on
dev photos and their flipped copies: with this permutation, a keypoint's descriptor and its
mirror image's differ by 0.1% of their length (median; any other reflection of the grid or bins
leaves them 73-120% apart). RootSIFT (an L1 normalisation and a square root per component)
commutes with any permutation, so it applies to RootSIFT descriptors as they are.

A query quantises these permuted descriptors too: its mirror image's words and Hamming bits come
at the cost of a second quantisation, and nothing more is stored per image.
"""

from __future__ import annotations

import numpy as np

_ROWS = _COLUMNS = 4
_BINS = 8


def _permutation() -> np.ndarray:
    row, column, angle = np.meshgrid(
        np.arange(_ROWS), np.arange(_COLUMNS), np.arange(_BINS), indexing="ij"
    )
    mirrored = ((_ROWS - 1 - row) * _COLUMNS + column) * _BINS + (_BINS - angle) % _BINS
    return mirrored.ravel()


MIRROR_PERMUTATION = _permutation()
"""Component i of a mirrored keypoint's descriptor is component MIRROR_PERMUTATION[i] of the
original keypoint's (the permutation is its own inverse)."""


def mirrored_descriptors(descriptors: np.ndarray) -> np.ndarray:
    """(n, 128) SIFT or RootSIFT descriptors as the image mirrored left-right would have them."""
    return descriptors[:, MIRROR_PERMUTATION]


def mirrored_points(points: np.ndarray, width: int) -> np.ndarray:
    """(n, 2) pixel-centre points as they lie in the image mirrored left-right."""
    mirrored = points.copy()
    mirrored[:, 0] = (width - 1) - mirrored[:, 0]
    return mirrored


def mirror_map(width: int) -> np.ndarray:
    """The affine map of a frame ``width`` pixels wide onto its mirror image (pixel centres), as
    a (3, 3) homogeneous matrix; it is its own inverse."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
