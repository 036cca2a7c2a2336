"""image-match's own float64 level decisions, for the rare image where an exact tie lets
rounding decide.

Two differences of exactly 2/255, or equal differences on both sides of the median, are ties
in exact arithmetic; image-match breaks them by the rounding noise of its float64 greys and
means. Flat graphics and tiny images have such ties (about 1 photo in 10 in a way that could
matter; none of them changed a signature on the test photos). There Match redoes the float64
computation exactly as image-match (scikit-image's rgb2gray, np.mean over views of the oriented
image, percentiles, in-place level assignment), so exact mode stays bit-for-bit image-match.
"""

from __future__ import annotations

import numpy as np

from match.signature.orientations import GRID, NEIGHBOURS, orient

GREY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])
IDENTICAL_TOLERANCE = 2 / 255


def is_ambiguous(diffs: np.ndarray, tolerance: int, white_minus_black: int) -> bool:
    """Whether exact differences contain a tie whose float64 rounding could change a level."""
    if np.any(np.abs(diffs) == tolerance):
        return True
    for values in (diffs[diffs > 0], -diffs[diffs < 0]):
        if values.size == 0 or values.max() >= white_minus_black:
            continue  # no values, or all at level 2: no median decision
        ordered = np.sort(values)
        middle = (values.size - 1) // 2
        if values.size % 2:  # the median is one of the values: its equals may round above it
            if np.count_nonzero(ordered == ordered[middle]) > 1:
                return True
        elif ordered[middle + 1] == ordered[middle]:  # halfway between two equal values
            return True
    return False


def levels(
    pixels: np.ndarray,
    orientation: int,
    rows: tuple[np.ndarray, np.ndarray],
    cols: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """The int8 signature of one orientation, from squares given in the oriented image's
    coordinates, computed as image-match computes it on that image (a contiguous array)."""
    oriented = orient(pixels, orientation)
    width = oriented.shape[1]
    means = np.empty((GRID, GRID))
    for i in range(GRID):
        for j in range(GRID):
            square = oriented[rows[0][i] : rows[1][i], cols[0][j] : cols[1][j]]
            means[i, j] = _mean_grey(square, width, int(cols[0][j]))
    return _quantise(_differentials(means)).ravel().astype(np.int8)


def _mean_grey(square: np.ndarray, width: int, left: int) -> float:
    """np.mean of the square's greys as a view into a (., width) float64 image, as image-match
    takes it: the same shape and strides give the same summation order, hence the same bits.
    Only the square's own greys are computed (scikit-image's rgb2gray, pixel by pixel)."""
    rgb = np.ascontiguousarray(square)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    rows, cols = rgb.shape[:2]
    band = np.empty((rows, width))
    band[:, left : left + cols] = np.multiply(rgb, 1 / 255, dtype=np.float64) @ GREY_WEIGHTS
    return float(np.mean(band[:, left : left + cols]))


def _differentials(means: np.ndarray) -> np.ndarray:
    padded = np.pad(means, 1, mode="constant", constant_values=np.nan)
    out = np.empty((GRID, GRID, 8))
    for k, (drow, dcol) in enumerate(NEIGHBOURS):
        out[:, :, k] = means - padded[1 + drow : 1 + drow + GRID, 1 + dcol : 1 + dcol + GRID]
    out[np.isnan(out)] = 0.0
    return out


def _quantise(d: np.ndarray) -> np.ndarray:
    d[np.abs(d) < IDENTICAL_TOLERANCE] = 0.0
    if not np.any(d):
        return d
    positive_cuts = np.percentile(d[d > 0], [0, 50, 100])
    negative_cuts = np.percentile(d[d < 0], [100, 50, 0])
    for level in range(2):  # in place, interval after interval, as image-match does
        d[(d >= positive_cuts[level]) & (d <= positive_cuts[level + 1])] = level + 1
    for level in range(2):
        d[(d <= negative_cuts[level]) & (d >= negative_cuts[level + 1])] = -(level + 1)
    return d
