"""The 8 orientations of an image (4 rotations x mirror, composed) and how they move pixels.

``orient`` defines them on arrays; everything else (which profile an oriented image's rows
come from, where a grid cell of a stored signature goes) is derived from ``orient`` itself by
applying it to small probe arrays, so the geometry cannot disagree with the definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

ORIENTATIONS = (
    "original",
    "rotate_90",
    "rotate_180",
    "rotate_270",
    "mirror",
    "mirror_rotate_90",
    "mirror_rotate_180",
    "mirror_rotate_270",
)
"""The 8 orientations, in the order orientation_signatures returns them. rotate_k turns the image
k degrees counter-clockwise; mirror_* first mirrors left-right, then rotates."""

GRID = 9
# (drow, dcol) of the 8 neighbours, in image-match's order: UL, U, UR, L, R, LL, D, LR
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def orient(array: np.ndarray, index: int) -> np.ndarray:
    """The orientation ORIENTATIONS[index] of an (H, W, ...) array, as a view."""
    mirrored, quarter_turns = divmod(index, 4)
    if mirrored:
        array = array[:, ::-1]
    return np.rot90(array, quarter_turns)


@dataclass(frozen=True)
class AxisMap:
    """How oriented[i, j] reads the source image.

    Not transposed: oriented[i, j] = source[r(i), c(j)]; transposed: oriented[i, j] =
    source[r(j), c(i)]. r flips rows (r(i) = H-1-i) when ``flip_rows``, c likewise columns.
    """

    transposed: bool
    flip_rows: bool
    flip_cols: bool


@cache
def axis_map(index: int) -> AxisMap:
    probe = np.arange(6).reshape(2, 3)
    oriented = orient(probe, index)
    row, col = divmod(int(oriented[0, 0]), 3)
    return AxisMap(oriented.shape != probe.shape, row == 1, col == 2)


@cache
def _signature_permutation(index: int) -> np.ndarray:
    """Indices p such that signature[p] is the signature of the oriented image, cell by cell."""
    cells = orient(np.arange(GRID * GRID).reshape(GRID, GRID), index)
    # where each neighbour direction of the oriented grid points in the source grid
    compass = orient(np.arange(9).reshape(3, 3), index)
    source_direction = []
    for drow, dcol in NEIGHBOURS:
        row, col = divmod(int(compass[1 + drow, 1 + dcol]), 3)
        source_direction.append(NEIGHBOURS.index((row - 1, col - 1)))
    direction = np.array(source_direction)
    return (cells[:, :, None] * 8 + direction[None, None, :]).ravel()


def signature_orientations(signature: np.ndarray) -> np.ndarray:
    """The 8 orientations of a stored (648,) signature, shape (8, 648), by permutation alone.

    Each grid cell and neighbour direction moves where the orientation moves it. This is what
    the signature of the rotated or mirrored image would be if the crop window and grid were
    symmetric; they are not quite (percentiles are taken from one end), so the result differs
    slightly from recomputing the signature from the oriented image (docs/signatures.md).
    """
    signature = np.asarray(signature)
    if signature.shape != (GRID * GRID * 8,):
        raise ValueError(f"a signature has shape ({GRID * GRID * 8},), not {signature.shape}")
    return np.stack([signature[_signature_permutation(k)] for k in range(len(ORIENTATIONS))])
