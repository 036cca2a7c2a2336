"""Local features: RootSIFT keypoints of an image seen at a fixed size.

Every image is resized so its long side is FRAME pixels (small images are enlarged, so a 60 px
thumbnail and its 1600 px original yield comparable keypoints), and keypoints are spread over a
grid so a caption band or a busy corner cannot take them all. Points are kept in that frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FRAME = 640
MAX_KEYPOINTS = 500
# candidates from the detector before the grid keeps the strongest of each cell
_DETECTED = 3 * MAX_KEYPOINTS
_GRID = 4

cv2.setNumThreads(1)
_sift = cv2.SIFT_create(nfeatures=_DETECTED)


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
    height, width = grey.shape
    scale = FRAME / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(grey, size, interpolation=interpolation)


def keypoints(pixels: np.ndarray) -> Keypoints:
    """RootSIFT keypoints of decoded (H, W, 3) RGB or (H, W) grey uint8 pixels."""
    frame = grey_frame(pixels)
    height, width = frame.shape
    found, descriptors = _sift.detectAndCompute(frame, None)
    if descriptors is None or not found:
        return Keypoints(
            np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32), (width, height)
        )
    points = np.array([k.pt for k in found], np.float32)
    responses = np.array([k.response for k in found], np.float32)
    coarse = np.array([_octave(k.octave) >= 1 for k in found])
    keep = _spread(points, responses, coarse, width, height)
    return Keypoints(points[keep], _root(descriptors[keep]), (width, height))


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _octave(packed: int) -> int:
    """The pyramid octave of an OpenCV SIFT keypoint (-1 is the doubled image)."""
    octave = packed & 0xFF
    return octave - 256 if octave >= 128 else octave


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
