"""The plain float64 reference implementation of the signature: the test oracle.

A line-by-line transcription of image-match 1.x's ImageSignature (grey image, crop window,
grid, mean squares, differentials, levels). Slow (about 10x the decode time); kept because
it is easy to check against the paper and image-match, and the fast exact implementation in
goldberg.py is tested to equal it. Not used by the service.
"""

from __future__ import annotations

import numpy as np

from match.signature.decode import ImageInput, decode_image

GRID = 9
SIGNATURE_LENGTH = GRID * GRID * 8
IDENTICAL_TOLERANCE = 2 / 255
GREY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])

# (drow, dcol) of the 8 neighbours, in image-match's order: UL, U, UR, L, R, LL, D, LR
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def grey(rgb: np.ndarray) -> np.ndarray:
    """0.2125 R + 0.7154 G + 0.0721 B on floats in [0, 1], as scikit-image's rgb2gray computes
    it, bit for bit (times 1/255, not divided by 255)."""
    return np.multiply(rgb, 1 / 255, dtype=np.float64) @ GREY_WEIGHTS


def image_signature(source: ImageInput, *, max_pixels: int | None = None) -> np.ndarray:
    """The 648-value int8 signature (values -2..2) of an image."""
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    return grey_signature(grey(decode_image(source, **kwargs)))


def orientation_signatures(source: ImageInput, *, max_pixels: int | None = None) -> np.ndarray:
    """Signatures of the 8 orientations (see ORIENTATIONS), shape (8, 648)."""
    kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
    rgb = decode_image(source, **kwargs)
    # each orientation as its own image, as if decoded from a rotated file: the pixels are turned
    # before the grey conversion, whose float64 rounding can depend on the array's shape (a
    # 1-pixel-wide image takes a different matmul path than a 1-pixel-high one)
    return np.stack([grey_signature(grey(np.ascontiguousarray(view))) for view in _dihedral(rgb)])


def _dihedral(image: np.ndarray):
    for mirrored in (image, image[:, ::-1]):
        for k in range(4):
            yield np.rot90(mirrored, k)


def grey_signature(image: np.ndarray) -> np.ndarray:
    """Signature of a 2-D grey image with values in [0, 1]."""
    rows, cols = _crop_window(image)
    x = np.linspace(rows[0], rows[1], GRID + 2, dtype=int)[1:-1]
    y = np.linspace(cols[0], cols[1], GRID + 2, dtype=int)[1:-1]
    means = _mean_levels(image, x, y)
    diffs = _differentials(means)
    return _quantise(diffs).ravel().astype(np.int8)


def _crop_window(image: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    height, width = image.shape
    rw = np.cumsum(np.sum(np.abs(np.diff(image, axis=1)), axis=1))
    cw = np.cumsum(np.sum(np.abs(np.diff(image, axis=0)), axis=0))
    top = int(np.searchsorted(rw, np.percentile(rw, 5), side="right"))
    bottom = int(np.searchsorted(rw, np.percentile(rw, 95), side="left"))
    left = int(np.searchsorted(cw, np.percentile(cw, 5), side="right"))
    right = int(np.searchsorted(cw, np.percentile(cw, 95), side="left"))
    if top > bottom:  # featureless along this axis: fall back to the plain percentiles
        top, bottom = int(0.05 * height), int(0.95 * height)
    if left > right:
        left, right = int(0.05 * width), int(0.95 * width)
    return (top, bottom), (left, right)


def _mean_levels(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    height, width = image.shape
    side = max(2.0, int(0.5 + min(height, width) / 20.0))
    means = np.empty((len(x), len(y)))
    for i, xi in enumerate(x):
        lo_r = int(max(xi - side / 2, 0))
        hi_r = int(min(lo_r + side, height))
        for j, yj in enumerate(y):
            lo_c = int(max(yj - side / 2, 0))
            hi_c = int(min(lo_c + side, width))
            means[i, j] = np.mean(image[lo_r:hi_r, lo_c:hi_c])
    return means


def _differentials(means: np.ndarray) -> np.ndarray:
    n = means.shape[0]
    padded = np.pad(means, 1, mode="constant", constant_values=np.nan)
    out = np.empty((n, n, 8))
    for k, (dr, dc) in enumerate(_NEIGHBOURS):
        neighbour = padded[1 + dr : 1 + dr + n, 1 + dc : 1 + dc + n]
        out[:, :, k] = means - neighbour
    out[np.isnan(out)] = 0.0
    return out


def _quantise(diffs: np.ndarray) -> np.ndarray:
    # image-match's normalize_and_threshold, including its in-place, interval-after-interval
    # assignment (a 1 just written is re-binned to 2 when the level-2 interval reaches 1.0)
    d = diffs.copy()
    d[np.abs(d) < IDENTICAL_TOLERANCE] = 0.0
    if not np.any(d):
        return d
    positive_cuts = np.percentile(d[d > 0], [0, 50, 100])
    negative_cuts = np.percentile(d[d < 0], [100, 50, 0])
    for level in range(2):
        low, high = positive_cuts[level], positive_cuts[level + 1]
        d[(d >= low) & (d <= high)] = level + 1
    for level in range(2):
        high, low = negative_cuts[level], negative_cuts[level + 1]
        d[(d <= high) & (d >= low)] = -(level + 1)
    return d
