"""One score scale for both matching methods.

The global signature scores 100 * (1 - distance). A verified local match scores by its inlier
count on a curve placed so that both methods let through about the same share of unrelated
images at the same score: false local matches reach MIN_INLIERS..~10 inliers (mostly text
matching text), which sits where unrelated images' signature scores end (about 55); every
further inlier is strong evidence, and the score approaches 100 quickly.
"""

from __future__ import annotations

import math

MIN_INLIERS = 8
FLOOR = 50.0  # the score of a match with exactly MIN_INLIERS inliers
SCALE = 20.0  # inliers beyond MIN_INLIERS that close 63% of the rest of the way to 100


def local_score(inliers: int) -> float:
    """0 below MIN_INLIERS, otherwise FLOOR rising towards 100."""
    if inliers < MIN_INLIERS:
        return 0.0
    return FLOOR + (100.0 - FLOOR) * (1.0 - math.exp(-(inliers - MIN_INLIERS) / SCALE))
