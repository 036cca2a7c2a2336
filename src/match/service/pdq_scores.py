"""PDQ's Hamming distances on Match's 0-100 score scale, and the rule for low-quality hashes.

A distance d of 256 bits scores ``100 - 45 * d / 32``: 0 scores 100, PDQ's threshold of 31
scores 56.4, and 32 scores 55.0, the search floor at the default MATCH_DISTANCE_CUTOFF (0.45),
which is strict, so at the default floor a PDQ match is exactly a distance of 31 or less. The
mapping is fixed (it does not follow the cutoff), so a score means the same distance on every
deployment; scores are clamped at 0 (d > 71).
"""

from __future__ import annotations

from match import pdq

SCORE_PER_BIT = 45.0 / (pdq.MATCH_DISTANCE + 1)


def score_of_distance(distance: int) -> float:
    """The 0-100 score of a PDQ Hamming distance."""
    return max(0.0, 100.0 - SCORE_PER_BIT * distance)


def is_low_quality(quality: int | None, min_quality: int) -> bool:
    """A hash of known quality below ``min_quality``; a hash list's hash of unknown quality is
    taken as its sender vouched for it."""
    return quality is not None and quality < min_quality
