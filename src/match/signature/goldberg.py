"""The signature: crop window, 9x9 grid, mean grey squares, neighbour differences, levels.

Computes exactly what image-match 1.x computes (pinned by golden values, and equal to the
float64 transcription in _reference.py on every test photo), but in exact integer arithmetic
(see luma.py) and touching each pixel as few times as possible:

1. one pass over the image for the luma row/column profiles, which give the crop window;
2. the 81 P x P squares are summed from a small integral image of just the rows and columns
   they cover;
3. differences and levels are computed on integers, so a threshold or median decision never
   depends on rounding; where an exact tie remains, image-match's own float64 rounding decides,
   recomputed as image-match computes it (float_ties.py).

The 8 orientations reuse the one decode and the one profile pass: an oriented image's profiles
are the original's, permuted; its squares are rectangles of the original.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

import cv2
import numpy as np

from match.signature import float_ties
from match.signature import luma as lumas
from match.signature.decode import DEFAULT_MAX_PIXELS, ImageInput, decode_sized
from match.signature.orientations import GRID, NEIGHBOURS, ORIENTATIONS, axis_map

ALGORITHM = "goldberg-imagematch-1"
"""Name and version carried by every stored signature. Bump it if the computation changes."""

SIGNATURE_LENGTH = GRID * GRID * 8
MODES = ("exact", "fast")
FAST_MIN_SIDE = 512
"""Fast mode decodes JPEGs scaled by 1/2, 1/4 or 1/8 while the shorter side stays >= this."""

CROP_PERCENTILES = (5, 95)
# |difference| < 2/255 counts as identical; 2/255 of grey is 20000 luma units
_TOLERANCE = 2 * lumas.LUMA_SCALE // 255

Ranges = tuple[np.ndarray, np.ndarray]  # (lo, hi) of the 9 squares along one axis, half-open


def image_signature(
    source: ImageInput, *, max_pixels: int | None = None, mode: str = "exact"
) -> np.ndarray:
    """The 648-value int8 signature (values -2..2) of an image.

    ``mode="exact"`` reproduces image-match; ``"fast"`` decodes large JPEGs at reduced size
    (see FAST_MIN_SIDE), which moves the signature slightly (docs/signatures.md).
    """
    return _Signer(decode_for_signature(source, max_pixels=max_pixels, mode=mode)[0]).signatures(
        (0,)
    )[0]


def orientation_signatures(
    source: ImageInput, *, max_pixels: int | None = None, mode: str = "exact"
) -> np.ndarray:
    """Signatures of the 8 orientations (see ORIENTATIONS), shape (8, 648), decoding once.

    Row k equals image_signature of the image turned by orientation k.
    """
    return _Signer(decode_for_signature(source, max_pixels=max_pixels, mode=mode)[0]).signatures(
        range(len(ORIENTATIONS))
    )


def pixels_signature(pixels: np.ndarray) -> np.ndarray:
    """The signature of decoded (H, W, 3) RGB or (H, W) grey uint8 pixels (no checks)."""
    return _Signer(pixels).signatures((0,))[0]


def pixels_orientation_signatures(pixels: np.ndarray, orientations: Sequence[int]) -> np.ndarray:
    """Signatures of decoded pixels in the given orientations (indices into ORIENTATIONS)."""
    return _Signer(pixels).signatures(orientations)


def is_blank(signature: np.ndarray) -> bool:
    """True for a featureless image: every neighbour difference under the tolerance."""
    return not np.any(signature)


def decode_for_signature(
    source: ImageInput, *, max_pixels: int | None = None, mode: str = "exact"
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decoded pixels as the signature of ``mode`` reads them (fast mode: large JPEGs decoded
    at reduced size), for pixels_orientation_signatures and anything else that needs them; and
    the image's full (width, height) as viewed."""
    if mode not in MODES:
        raise ValueError(f"signature mode must be one of {MODES}, not {mode!r}")
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    min_side = FAST_MIN_SIDE if mode == "fast" else None
    return decode_sized(source, max_pixels=limit, min_side=min_side)


class _Signer:
    """Signatures of one decoded image in any of its orientations."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels = pixels
        self.height, self.width = pixels.shape[:2]
        self.side = max(2.0, int(0.5 + min(self.height, self.width) / 20.0))
        self.rows, self.cols = lumas.profiles(pixels)
        self._ranges_cache: dict[tuple[int, bool], Ranges] = {}

    def signatures(self, orientations: Sequence[int]) -> np.ndarray:
        # per orientation: the source row ranges and column ranges of its squares
        layouts = [self._layout(k) for k in orientations]
        sums = _SquareSums(self.pixels, [r for r, _, _ in layouts], [c for _, c, _ in layouts])
        out = np.empty((len(layouts), SIGNATURE_LENGTH), dtype=np.int8)
        for n, (row_ranges, col_ranges, transposed) in enumerate(layouts):
            totals, counts = sums.table(row_ranges, col_ranges)
            if transposed:
                totals, counts = totals.T, counts.T
            diffs, white = _differentials(totals, counts)
            if float_ties.is_ambiguous(diffs, _TOLERANCE * (white // lumas.LUMA_SCALE), white):
                out[n] = self._float_levels(orientations[n])
            else:
                out[n] = _levels(diffs, white)
        return out

    def _float_levels(self, orientation: int) -> np.ndarray:
        """image-match's float64 levels, where an exact tie leaves the decision to rounding."""
        axes = axis_map(orientation)
        # the squares in the oriented image's own coordinates
        if axes.transposed:
            rows = self._oriented(axis=1, reverse=axes.flip_cols)
            cols = self._oriented(axis=0, reverse=axes.flip_rows)
        else:
            rows = self._oriented(axis=0, reverse=axes.flip_rows)
            cols = self._oriented(axis=1, reverse=axes.flip_cols)
        return float_ties.levels(self.pixels, orientation, rows, cols)

    def _oriented(self, axis: int, reverse: bool) -> Ranges:
        lo, hi = self._ranges(axis, reverse)
        length = self.height if axis == 0 else self.width
        return (length - hi, length - lo) if reverse else (lo, hi)

    def _layout(self, orientation: int) -> tuple[Ranges, Ranges, bool]:
        axes = axis_map(orientation)
        row_ranges = self._ranges(axis=0, reverse=axes.flip_rows)
        col_ranges = self._ranges(axis=1, reverse=axes.flip_cols)
        return row_ranges, col_ranges, axes.transposed

    def _ranges(self, axis: int, reverse: bool) -> Ranges:
        key = (axis, reverse)
        if key not in self._ranges_cache:
            profile, length = (self.rows, self.height) if axis == 0 else (self.cols, self.width)
            self._ranges_cache[key] = _axis_ranges(profile, length, self.side, reverse)
        return self._ranges_cache[key]


def _axis_ranges(profile: np.ndarray, length: int, side: float, reverse: bool) -> Ranges:
    """Square ranges along one axis, in source coordinates, in the oriented image's order.

    ``reverse``: the oriented image reads this axis backwards, so its crop window and grid are
    computed on the reversed profile and mapped back.
    """
    if reverse:
        profile = profile[::-1]
    lo_crop, hi_crop = _crop(np.cumsum(profile), length)
    points = np.linspace(lo_crop, hi_crop, GRID + 2, dtype=int)[1:-1]
    lo = np.maximum(points - side / 2, 0).astype(np.int64)
    hi = np.minimum(lo + side, length).astype(np.int64)
    if reverse:
        return length - hi, length - lo
    return lo, hi


def _crop(cumulative: np.ndarray, length: int) -> tuple[int, int]:
    """image-match's crop limits: searchsorted of the 5th/95th percentile of the cumulative
    profile (linear interpolation), decided exactly on the integer profile."""
    lower_pct, upper_pct = CROP_PERCENTILES
    lower = _percentile_position(cumulative, lower_pct, "right")
    upper = _percentile_position(cumulative, upper_pct, "left")
    if lower > upper:  # featureless along this axis: image-match falls back to fixed margins
        lower, upper = int(lower_pct / 100.0 * length), int(upper_pct / 100.0 * length)
    return lower, upper


def _percentile_position(values: np.ndarray, percent: int, side: str) -> int:
    """np.searchsorted(values, np.percentile(values, percent), side), in exact arithmetic.

    The percentile lies at index (n - 1) * percent / 100: on values[i] when that is whole,
    else strictly between values[i] and values[i + 1] (or on them, if they are equal).
    """
    i, remainder = divmod(percent * (len(values) - 1), 100)
    at = values[i]
    if side == "right" or remainder == 0 or values[i + 1] == at:
        return int(np.searchsorted(values, at, side=side))
    return i + 1


class _SquareSums:
    """Sums of luma over rectangles whose rows and columns all lie in the given ranges.

    Only the covered rows and columns are gathered into a compact sub-image, whose integral
    image then answers every rectangle in four lookups.
    """

    def __init__(
        self, pixels: np.ndarray, row_ranges: list[Ranges], col_ranges: list[Ranges]
    ) -> None:
        self.row_runs = _runs(row_ranges)
        self.col_runs = _runs(col_ranges)
        # slicing runs and concatenating is ~6x faster than fancy indexing
        band = np.concatenate([pixels[lo:hi] for lo, hi in self.row_runs])
        compact = np.concatenate([band[:, lo:hi] for lo, hi in self.col_runs], axis=1)
        self.integral = cv2.integral(lumas.luma(compact), sdepth=cv2.CV_64F)

    def table(self, row_ranges: Ranges, col_ranges: Ranges) -> tuple[np.ndarray, np.ndarray]:
        """(9, 9) int64 sums and pixel counts of the squares rows[i] x cols[j]."""
        r0, r1 = (_compact(edge, self.row_runs)[:, None] for edge in row_ranges)
        c0, c1 = (_compact(edge, self.col_runs)[None, :] for edge in col_ranges)
        table = self.integral
        totals = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
        counts = (row_ranges[1] - row_ranges[0])[:, None] * (col_ranges[1] - col_ranges[0])
        return totals.astype(np.int64), counts


def _runs(ranges: list[Ranges]) -> list[tuple[int, int]]:
    """The union of the ranges as sorted, disjoint runs."""
    pairs = sorted(
        (int(lo), int(hi)) for los, his in ranges for lo, hi in zip(los, his, strict=True)
    )
    runs = [list(pairs[0])]
    for lo, hi in pairs[1:]:
        if lo <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], hi)
        else:
            runs.append([lo, hi])
    return [(lo, hi) for lo, hi in runs]


def _compact(positions: np.ndarray, runs: list[tuple[int, int]]) -> np.ndarray:
    """Each position's index in the concatenation of the runs (positions inside or at the end
    of a run): the number of covered positions before it."""
    lo, hi = np.array(runs).T
    return np.clip(positions[:, None] - lo[None, :], 0, (hi - lo)[None, :]).sum(axis=1)


@cache
def _neighbour_index() -> tuple[np.ndarray, np.ndarray]:
    """For each of the 648 values: its cell and its neighbour's cell in an 11 x 11 padded grid,
    and whether the neighbour lies on the grid."""
    size = GRID + 2
    own, other, valid = [], [], []
    for i in range(GRID):
        for j in range(GRID):
            for drow, dcol in NEIGHBOURS:
                own.append((i + 1) * size + j + 1)
                other.append((i + 1 + drow) * size + j + 1 + dcol)
                valid.append(0 <= i + drow < GRID and 0 <= j + dcol < GRID)
    own_index, other_index = np.array(own), np.array(other)
    return np.stack([own_index, other_index]), np.array(valid)


def _differentials(totals: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, int]:
    """Self minus neighbour mean for each of the 648 values (0 off the grid, and under the
    tolerance), as exact integers: means in luma units times common = lcm of the square sizes.
    Returns the differences and the value of a grey difference of 1 (white minus black)."""
    first = int(counts.flat[0])
    common = first if (counts == first).all() else math.lcm(*np.unique(counts).tolist())
    if lumas.LUMA_SCALE * common < 1 << 61:
        scaled = totals * (common // counts)
    else:  # astronomically many distinct square sizes: Python integers never overflow
        scaled = totals.astype(object) * (common // counts).astype(object)
    padded = np.zeros((GRID + 2) ** 2, dtype=scaled.dtype)
    padded.reshape(GRID + 2, GRID + 2)[1:-1, 1:-1] = scaled
    (own, other), valid = _neighbour_index()
    diffs = padded[own] - padded[other]
    diffs[~valid] = 0
    diffs[np.abs(diffs) < _TOLERANCE * common] = 0
    return diffs, lumas.LUMA_SCALE * common


def _levels(diffs: np.ndarray, white_minus_black: int) -> np.ndarray:
    """Positives split at their median into 1/2, negatives into -1/-2, exactly as
    image-match's percentile-and-compare does (median itself -> level 1)."""
    out = np.zeros(SIGNATURE_LENGTH, dtype=np.int8)
    for sign in (1, -1):
        magnitudes = diffs * sign
        chosen = magnitudes > 0
        values = magnitudes[chosen]
        if values.size == 0:
            continue
        if values.max() >= white_minus_black:
            # image-match assigns the levels in place, one interval after the other: the 1s it
            # has just written fall into the [median, 1.0] interval of level 2 when a square is
            # white beside a black one, so every value ends at level 2
            out[chosen] = 2 * sign
            continue
        # the median of n values is the ((n-1)//2)-th smallest, or halfway to the next one;
        # either way nothing lies strictly between, so "<= median" is "<= that value"
        lower_median = np.sort(values)[(values.size - 1) // 2]
        out[chosen] = np.where(values <= lower_median, sign, 2 * sign)
    return out
