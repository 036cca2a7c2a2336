"""One score scale for both matching methods.

The global signature scores 100 * (1 - distance), and search returns scores above 55 (the
default distance cutoff 0.45). On the dev photos, 99% of queries whose original was never added
have a best signature score below about 57, and a best verified local match of at most 6-7
inliers (mostly text matching text). So a local match scores 55 at NEUTRAL inliers, the level
that unrelated images reach, and every further inlier closes part of the way to 99:

    score = 99 - 44 * exp(-(inliers - NEUTRAL) / SCALE)

8 inliers score 59, 10 score 66, 20 score 87, 40 score 97. Fewer than MIN_INLIERS is no match.
A local match never reaches 100: agreeing keypoints show the same scene, not the same picture,
so 100 stays the signature's "identical".
docs/partial-matching.md shows the measurement.
"""

from __future__ import annotations

import math

NEUTRAL = 7
SCALE = 10.0
MIN_INLIERS = 8


def local_score(inliers: int) -> float:
    """0 below MIN_INLIERS, otherwise above 55 and rising towards 99."""
    if inliers < MIN_INLIERS:
        return 0.0
    return 99.0 - 44.0 * math.exp(-(inliers - NEUTRAL) / SCALE)
