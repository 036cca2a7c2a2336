"""Local features: RootSIFT keypoints of an image seen at a fixed size.

Every image is resized so its long side is FRAME pixels (small images are enlarged, so a 60 px
thumbnail and its 1600 px original yield comparable keypoints), and keypoints are spread over a
grid so a caption band or a busy corner cannot take them all. Points are kept in that frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache

import cv2
import numpy as np

FRAME = 640
MAX_KEYPOINTS = 500
_GRID = 4

cv2.setNumThreads(1)


@dataclass(frozen=True)
class Extraction:
    """How keypoints are found: SIFT runs on a grey frame whose long side is ``detect_side``
    (OpenCV doubles it for its first octave), and points are scaled to the FRAME frame."""

    detect_side: int
    contrast_threshold: float = 0.04
    # keypoints of this octave of the detection frame and above count as coarse
    coarse_octave: int = 1
    octave_layers: int = 3
    # the blur of each octave's first layer (OpenCV's default 1.6): a smaller one means smaller
    # blur kernels and smaller descriptor windows, the same frame
    sigma: float = 1.6
    # the strongest keypoints SIFT describes, before the grid keeps MAX_KEYPOINTS of them
    detected: int = 3 * MAX_KEYPOINTS
    # words per keypoint (vocabulary.quantise_near): more than 1 only for queries, never stored
    assignments: int = 1
    assignment_ratio: float = 1.0


# SIFT on the FRAME frame itself, which OpenCV doubles to 1280 px before its first octave (about
# three quarters of the time goes into that octave). Any other extraction keeps the frame, the
# vocabulary and the stored form, so features stored with this one stay valid.
LEGACY = Extraction(detect_side=FRAME)
# SIFT on a 320 px frame (doubled to 640, so its first octave is the 640 px frame without
# doubling), a lower contrast threshold to keep the keypoint budget.
HALF_FRAME = Extraction(detect_side=FRAME // 2, contrast_threshold=0.01, coarse_octave=0)
# What an add stores: SIFT on a 288 px frame with sigma 1.4, its 500 strongest keypoints
# described (0.19x of LEGACY's CPU). Its finest blur, 1.4 px of the doubled 288 px frame, is
# 1.56 px of the 640 px one, as sigma 1.6 on the doubled 320 px frame is 1.6: the cheap query's
# scales, on 81% of the pixels, with smaller blur kernels and descriptor windows.
SPLIT_STORED = replace(HALF_FRAME, detect_side=288, sigma=1.4, detected=MAX_KEYPOINTS)
# An add's extractions before that (2026-12-07): the 320 px frame at sigma 1.6, 500 described
# (0.26x), and before it 800 described for the grid to choose 500 from (0.30x). Stores hold such
# features beside LEGACY's and SPLIT_STORED's; all are found alike.
STORED_500 = replace(HALF_FRAME, detected=MAX_KEYPOINTS)
STORED_800 = replace(HALF_FRAME, detected=800)
# A search's first pass: the 320 px frame, 1,500 keypoints described and up to 2
# words a keypoint (0.36x of LEGACY with the mirror image's words). It finds perspective and
# rotation better than the fine query, small screenshot tiles worse.
CHEAP_QUERY = replace(HALF_FRAME, assignments=2, assignment_ratio=1.15)
# A search's second pass, made only when the first verifies no match: the legacy 640 px frame
# (doubled), up to 2 words a keypoint. Its first octave sees what a small tile keeps.
SPLIT_QUERY = replace(LEGACY, assignments=2, assignment_ratio=1.15)
# What an add stores (its cost is the add's), what a query is extracted with first and, when
# that verifies no match, what its second pass is extracted with (None: no second pass). Points
# are in the FRAME frame whatever the extraction, so features stored with LEGACY (stores filled
# before issue 13) are found by both passes: docs/partial-matching.md, "Cheaper extraction".
STORED: Extraction = SPLIT_STORED
QUERY: Extraction = CHEAP_QUERY
FINE_QUERY: Extraction | None = SPLIT_QUERY
EXTRACTION = STORED


@cache
def _sift(extraction: Extraction) -> cv2.SIFT:
    return cv2.SIFT_create(
        nfeatures=extraction.detected,
        nOctaveLayers=extraction.octave_layers,
        contrastThreshold=extraction.contrast_threshold,
        sigma=extraction.sigma,
    )


@dataclass(frozen=True)
class Keypoints:
    """Keypoints of one image: (n, 2) float32 points in a frame of ``size`` (width, height)
    whose long side is FRAME, and their (n, 128) float32 RootSIFT descriptors."""

    points: np.ndarray
    descriptors: np.ndarray
    size: tuple[int, int]


def grey_frame(pixels: np.ndarray) -> np.ndarray:
    """The image as 8-bit grey with its long side resized to FRAME."""
    grey = pixels if pixels.ndim == 2 else _grey(pixels)
    return _resized(grey, _frame_size(grey.shape, FRAME))


def _frame_size(shape: tuple[int, ...], side: int) -> tuple[int, int]:
    """(width, height) of an image of ``shape`` (height, width) with its long side at ``side``."""
    height, width = shape[:2]
    scale = side / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resized(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = grey.shape
    interpolation = cv2.INTER_AREA if size[0] * size[1] < width * height else cv2.INTER_CUBIC
    return cv2.resize(grey, size, interpolation=interpolation)


def keypoints(pixels: np.ndarray, extraction: Extraction = EXTRACTION) -> Keypoints:
    """RootSIFT keypoints of decoded (H, W, 3) RGB or (H, W) grey uint8 pixels."""
    grey = pixels if pixels.ndim == 2 else _grey(pixels)
    width, height = _frame_size(grey.shape, FRAME)
    detect = _resized(grey, _frame_size(grey.shape, extraction.detect_side))
    found, descriptors = _sift(extraction).detectAndCompute(detect, None)
    if descriptors is None or not found:
        return Keypoints(
            np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), (width, height)
        )
    detect_height, detect_width = detect.shape
    points = cv2.KeyPoint_convert(found)
    # pixel centres: a detection-frame pixel x covers [x - 0.5, x + 0.5). OpenCV reports a
    # point 0.25 px further right and down (its first octave is the frame doubled by linear
    # interpolation, whose pixel i lies at i / 2 - 0.25): a point and its mirror image's then
    # sum to width - 1 exactly (local/mirror.py)
    points = (points + 0.25) * np.float32((width / detect_width, height / detect_height)) - 0.5
    points = np.clip(points, 0, np.float32((width - 1, height - 1)))
    responses = np.fromiter((k.response for k in found), np.float32, len(found))
    octaves = np.fromiter((k.octave for k in found), np.int32, len(found)) & 0xFF
    # the low byte is the octave, signed (-1 is the doubled image)
    coarse = np.where(octaves >= 128, octaves - 256, octaves) >= extraction.coarse_octave
    keep = _spread(points, responses, coarse, width, height)
    return Keypoints(points[keep], _root(descriptors[keep]), (width, height))


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _spread(
    points: np.ndarray, responses: np.ndarray, coarse: np.ndarray, width: int, height: int
) -> np.ndarray:
    """Indices of at most MAX_KEYPOINTS points: the coarse-scale ones first (up to half), then
    an equal share from each grid cell. Fine-scale points outnumber coarse ones ten to one, but
    only coarse ones survive when the image reappears small (a tile in a screenshot)."""
    if len(points) <= MAX_KEYPOINTS:
        return np.arange(len(points))
    coarse_first = np.flatnonzero(coarse)
    coarse_first = coarse_first[np.argsort(-responses[coarse_first], kind="stable")]
    chosen = coarse_first[: MAX_KEYPOINTS // 2]
    rest = np.setdiff1d(np.arange(len(points)), chosen)
    spread = rest[_grid_order(points[rest], responses[rest], width, height)]
    return np.sort(np.concatenate([chosen, spread[: MAX_KEYPOINTS - len(chosen)]]))


def _grid_order(points: np.ndarray, responses: np.ndarray, width: int, height: int) -> np.ndarray:
    """Points ordered so that every grid cell's best comes first, then every cell's second..."""
    cells = (
        np.minimum(points[:, 0] * _GRID // width, _GRID - 1) * _GRID
        + np.minimum(points[:, 1] * _GRID // height, _GRID - 1)
    ).astype(np.int64)
    # rank of each point inside its cell, by response: the best of every cell come first
    order = np.lexsort((-responses, cells))
    first = np.searchsorted(cells[order], np.arange(_GRID * _GRID))
    rank = np.empty(len(points), np.int64)
    rank[order] = np.arange(len(points)) - first[cells[order]]
    return np.lexsort((-responses, rank))


def _root(descriptors: np.ndarray) -> np.ndarray:
    """RootSIFT (Arandjelović and Zisserman, 2012): L1-normalise, then square root."""
    sums = descriptors.sum(axis=1, keepdims=True)
    return np.sqrt(descriptors / np.maximum(sums, 1e-7)).astype(np.float32)
