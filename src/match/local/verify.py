"""Geometric verification: do two images' keypoints agree on one affine map?

Tentative matches are keypoints sharing a visual word whose Hamming-embedding bits are close;
each keypoint keeps only its closest partner. RANSAC then fits an affine map (which covers
scaling, crops, padding, small rotations and, approximately, mild perspective) and the inliers
are the evidence. The map also gives the overlap: how much of each image the other covers.

A fitted map never mirrors (its determinant must be positive). A mirror image is verified with
the query's mirrored features (mirror.py): ``verify_mirrored`` fits the map of the mirrored
query, then composes it with the mirror, so the match's map takes the query as it was given
into the target, and mirrors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from match.local.mirror import mirror_map

MAX_HAMMING = 22  # of 64 bits
REPROJECTION_PIXELS = 8.0  # in the FRAME-sized frame
MIN_MATCHES = 6
# A map that shrinks or grows lengths more than this is a degenerate fit (a screenshot tile can
# be 5x smaller than the stored image)
_MAX_SCALE = 10.0


@dataclass(frozen=True)
class LocalFeatures:
    """What is stored per image: point coordinates in a frame of ``size``, words, bits."""

    points: np.ndarray  # (n, 2) float32
    words: np.ndarray  # (n,) uint32
    bits: np.ndarray  # (n,) uint64
    size: tuple[int, int]  # (width, height), long side FRAME


@dataclass(frozen=True)
class Verified:
    inliers: int
    query_overlap: float  # percent of the query covered by the target
    target_overlap: float  # percent of the target covered by the query
    # (2, 3) affine map of the query's frame into the target's (pixel centres); its determinant
    # is negative when the query matched as a mirror image
    matrix: np.ndarray

    @property
    def mirrored(self) -> bool:
        """Whether the query matched as a mirror image."""
        return bool(np.linalg.det(self.matrix[:, :2]) < 0)

    @property
    def quarter_turns(self) -> int:
        """0-3: the counter-clockwise quarter turns that bring the query upright, after
        mirroring it left-right when ``mirrored`` (as signature.ORIENTATIONS composes them)."""
        linear = self.matrix[:, :2]
        return _quarter_turns(linear @ np.diag([-1.0, 1.0]) if self.mirrored else linear)


def tentative_matches(query: LocalFeatures, target: LocalFeatures) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (query, target) of one-to-one word matches with close bits."""
    order = np.argsort(target.words, kind="stable")
    sorted_words = target.words[order]
    starts = np.searchsorted(sorted_words, query.words, "left")
    counts = np.searchsorted(sorted_words, query.words, "right") - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    q = np.repeat(np.arange(len(query.words)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    t = order[np.repeat(starts, counts) + offsets]
    distance = np.bitwise_count(query.bits[q] ^ target.bits[t])
    close = distance <= MAX_HAMMING
    q, t, distance = q[close], t[close], distance[close]
    # closest first, then one partner per query keypoint and per target keypoint
    by_distance = np.argsort(distance, kind="stable")
    q, t = q[by_distance], t[by_distance]
    _, first_q = np.unique(q, return_index=True)
    q, t = q[np.sort(first_q)], t[np.sort(first_q)]
    _, first_t = np.unique(t, return_index=True)
    keep = np.sort(first_t)
    return q[keep], t[keep]


def verify(query: LocalFeatures, target: LocalFeatures) -> Verified | None:
    """The affine agreement between two images, or None when there is too little evidence."""
    q, t = tentative_matches(query, target)
    if len(q) < MIN_MATCHES:
        return None
    source = query.points[q].astype(np.float32)
    destination = target.points[t].astype(np.float32)
    matrix, mask = cv2.estimateAffine2D(
        source,
        destination,
        method=cv2.RANSAC,
        ransacReprojThreshold=REPROJECTION_PIXELS,
        maxIters=500,
        confidence=0.995,
        refineIters=5,
    )
    if matrix is None:
        return None
    area_scale = float(np.linalg.det(matrix[:, :2]))
    if not _MAX_SCALE**-2 < area_scale < _MAX_SCALE**2:
        return None
    inliers = int(mask.sum())
    if inliers < MIN_MATCHES:
        return None
    return Verified(
        inliers,
        _covered(matrix, query.size, target.size),
        _covered(cv2.invertAffineTransform(matrix), target.size, query.size),
        matrix,
    )


def verify_mirrored(
    query: LocalFeatures, target: LocalFeatures, *, mirror_of: str = "query"
) -> Verified | None:
    """The agreement of a query with a target as a mirror image. The features of one side
    (``mirror_of``: "query" or "target") are its mirror image's (mirror.py); the map is fitted
    as for any two images, then composed with that side's mirror, so the result maps the query
    as it was given into the target as it was stored, and mirrors. A mirror keeps every area:
    the overlaps are the fitted ones."""
    verified = verify(query, target)
    if verified is None:
        return None
    forward = np.vstack([verified.matrix, [0.0, 0.0, 1.0]])
    if mirror_of == "query":  # mirror the query first, then map it
        matrix = forward @ mirror_map(query.size[0])
    elif mirror_of == "target":  # map into the target's mirror image, then mirror it back
        matrix = mirror_map(target.size[0]) @ forward
    else:
        raise ValueError(f"mirror_of is 'query' or 'target', not {mirror_of!r}")
    return replace(verified, matrix=matrix[:2])


def _quarter_turns(linear: np.ndarray) -> int:
    """The nearest multiple of 90 degrees of a (2, 2) map's rotation, counter-clockwise as seen
    (image y points down, so a turn by a shows as [[cos a, sin a], [-sin a, cos a]])."""
    degrees = math.degrees(math.atan2(linear[0, 1], linear[0, 0]))
    return round(degrees / 90.0) % 4


def _covered(matrix: np.ndarray, size: tuple[int, int], other: tuple[int, int]) -> float:
    """Percent of an image of ``size`` whose map into ``other``'s frame lands inside it.

    ``matrix`` maps this image's frame into the other's; the part of this image that matches
    is the pull-back of the other's rectangle.
    """
    width, height = size
    inverse = cv2.invertAffineTransform(matrix)
    other_corners = _rectangle(*other)
    pulled = cv2.transform(other_corners[None], inverse)[0]
    area, _ = cv2.intersectConvexConvex(_rectangle(width, height), pulled.astype(np.float32))
    return float(np.clip(100.0 * area / (width * height), 0.0, 100.0))


def _rectangle(width: int, height: int) -> np.ndarray:
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
