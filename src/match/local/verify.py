"""Geometric verification: do two images' keypoints agree on one affine map?

Tentative matches are keypoints sharing a visual word whose Hamming-embedding bits are close;
each keypoint keeps only its closest partner. RANSAC then fits an affine map (which covers
scaling, crops, padding, small rotations and, approximately, mild perspective) and the inliers
are the evidence. The map also gives the overlap: how much of each image the other covers.

A fitted map never mirrors (its determinant must be positive). A mirror image is verified with
the query's mirrored features (mirror.py): ``verify(..., mirror_of="query")`` fits the map of
the mirrored query, then composes it with the mirror, so the match's map takes the query as it
was given into the target, and mirrors.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
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
    # a query's entries with several words each (multiple assignment, vocabulary.quantise_near):
    # the keypoint each entry is, so one keypoint still matches at most once. None: one entry
    # per keypoint, as stored
    keypoints: np.ndarray | None = None


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
    return tentative_matches_all(query, [target])[0]


def tentative_matches_all(
    query: LocalFeatures, targets: Sequence[LocalFeatures]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``tentative_matches`` of the query with each target, in one vectorised pass over all of
    them: most candidates of a search share few words with the query, and numpy's per-call cost
    would be most of the work one target at a time.

    Pairs share a word and differ in at most MAX_HAMMING bits; then closest first (ties: lower
    query index, then lower target index), each query keypoint (all its entries, when it has
    several words) keeps its closest partner and
    each target keypoint the closest of those. Each target's pairs come in that order."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if not targets:
        return []
    lengths = np.array([len(target.words) for target in targets])
    words = np.concatenate([target.words for target in targets]).astype(np.int64)
    # the query's keypoints by word: word w's are order[starts[w]:starts[w] + per_word[w]]
    order = np.argsort(query.words, kind="stable")
    top = int(max(query.words.max(initial=0), words.max(initial=0)))
    per_word = np.bincount(query.words.astype(np.int64), minlength=top + 1)
    starts, counts = (np.cumsum(per_word) - per_word)[words], per_word[words]
    total = int(counts.sum())
    if total == 0:
        return [empty] * len(targets)
    # every (target keypoint g, query keypoint q) sharing a word; g numbers all targets' keypoints
    g = np.repeat(np.arange(len(words)), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    q = order[np.repeat(starts, counts) + offsets]
    bits = np.concatenate([target.bits for target in targets])
    distance = np.bitwise_count(query.bits[q] ^ bits[g])
    close = distance <= MAX_HAMMING
    q, g, distance = q[close], g[close], distance[close]
    owner = np.repeat(np.arange(len(targets)), lengths)[g]
    # by target, then closest first; one partner per query keypoint, then per target keypoint
    ranked = np.lexsort((g, q, distance, owner))
    q, g, owner = q[ranked], g[ranked], owner[ranked]
    keypoint = q if query.keypoints is None else query.keypoints[q]
    _, first_q = np.unique(owner * len(query.words) + keypoint, return_index=True)
    kept = np.sort(first_q)
    q, g, owner = q[kept], g[kept], owner[kept]
    _, first_g = np.unique(g, return_index=True)
    kept = np.sort(first_g)
    q, g, owner = q[kept], g[kept], owner[kept]
    first_keypoint = np.cumsum(lengths) - lengths
    bounds = np.searchsorted(owner, np.arange(len(targets) + 1))
    return [
        (q[a:b], g[a:b] - first_keypoint[n])
        for n, (a, b) in enumerate(itertools.pairwise(bounds.tolist()))
    ]


def verify(
    query: LocalFeatures, target: LocalFeatures, *, mirror_of: str | None = None
) -> Verified | None:
    """The affine agreement between two images, or None when there is too little evidence.

    With ``mirror_of`` ("query" or "target"), that side's features are its mirror image's
    (mirror.py): the map is fitted as for any two images, then composed with that side's
    mirror, so the result maps the query as it was given into the target as it was stored,
    and mirrors. A mirror keeps every area: the overlaps are the fitted ones."""
    return verify_all(query, [target], mirror_of=mirror_of)[0]


def verify_all(
    query: LocalFeatures,
    targets: Sequence[LocalFeatures],
    *,
    mirror_of: str | None = None,
    fits: int | None = None,
) -> list[Verified | None]:
    """``verify`` of the query with each target (their tentative matches in one pass).

    With ``fits``, RANSAC runs on at most twice that many targets: the first ``fits`` (the
    store's best by shared words) and the ``fits`` with the most tentative matches (ties: the
    earlier target); the others are None. Counting tentative matches is cheap, a fit is not,
    and a target with few tentative matches cannot have many inliers; but a repetitive texture
    can have many tentative matches and no geometry, so the store's own best are kept too."""
    if mirror_of not in (None, "query", "target"):
        raise ValueError(f"mirror_of is None, 'query' or 'target', not {mirror_of!r}")
    tentative = tentative_matches_all(query, targets)
    fitted = set(range(len(targets)))
    if fits is not None:
        fitted = set(range(min(fits, len(targets)))) | most_matched(tentative, fits)
    return [
        _mirrored(_fit(query, target, q, t), query, target, mirror_of) if n in fitted else None
        for n, (target, (q, t)) in enumerate(zip(targets, tentative, strict=True))
    ]


def most_matched(tentative: Sequence[tuple[np.ndarray, np.ndarray]], count: int) -> set[int]:
    """Indices of the ``count`` targets with the most tentative matches (ties: the earlier),
    leaving out those with too few to be fitted."""
    matched = np.array([len(q) for q, _ in tentative], dtype=np.int64)
    order = np.lexsort((np.arange(len(matched)), -matched))[:count]
    return {int(n) for n in order if matched[n] >= MIN_MATCHES}


def _fit(
    query: LocalFeatures, target: LocalFeatures, q: np.ndarray, t: np.ndarray
) -> Verified | None:
    """The affine map of the tentative matches (q, t) that RANSAC finds, if it is evidence."""
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


def _mirrored(
    verified: Verified | None, query: LocalFeatures, target: LocalFeatures, mirror_of: str | None
) -> Verified | None:
    """A fitted match as the match of the images as given, when one side's features were its
    mirror image's."""
    if verified is None or mirror_of is None:
        return verified
    forward = np.vstack([verified.matrix, [0.0, 0.0, 1.0]])
    if mirror_of == "query":  # mirror the query first, then map it
        matrix = forward @ mirror_map(query.size[0])
    else:  # map into the target's mirror image, then mirror that back
        matrix = mirror_map(target.size[0]) @ forward
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
