"""Checks of what callers hand a store for partial matching (local features and query words):
each bad value becomes a BadParameter naming it, before anything touches the database or
engine. Shared by both stores."""

from __future__ import annotations

import numpy as np

from match.errors import BadParameter
from match.local import WORDS, LocalFeatures

_MAX_KEYPOINTS = 65535  # the count field of the packed form (match.local.codec) is a u16
_MAX_SIDE = 65535


def check_local(local: object, filepath: str) -> LocalFeatures | None:
    """A record's local features, consistent and packable, or None when it has none."""
    if local is None:
        return None
    if not isinstance(local, LocalFeatures):
        raise BadParameter(
            f"The local features of {filepath!r} must be LocalFeatures, got {type(local).__name__}"
        )
    points, words, bits = (np.asarray(a) for a in (local.points, local.words, local.bits))
    n = len(words) if words.ndim == 1 else -1
    if (
        n < 0
        or n > _MAX_KEYPOINTS
        or points.shape != (n, 2)
        or bits.shape != (n,)
        or words.dtype.kind not in "iu"
        or bits.dtype.kind not in "iu"
        or points.dtype.kind not in "iuf"
    ):
        raise BadParameter(
            f"The local features of {filepath!r} must hold n <= {_MAX_KEYPOINTS} (x, y) points, "
            f"words and bit sets, got shapes {points.shape}, {words.shape} and {bits.shape}"
        )
    if n and (words.min() < 0 or words.max() >= WORDS):
        raise BadParameter(f"The local features of {filepath!r} have words outside 0..{WORDS - 1}")
    if n and not np.isfinite(points).all():
        raise BadParameter(f"The local features of {filepath!r} have non-finite points")
    size = local.size
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(v, int | np.integer) and 0 < v <= _MAX_SIDE for v in size)
    ):
        raise BadParameter(
            f"The local features of {filepath!r} need a (width, height) size of positive "
            f"integers, got {size!r}"
        )
    return local


def check_words(words: object) -> np.ndarray:
    """A query's visual words as a 1-d int64 array of values in 0..WORDS-1 (may be empty)."""
    array = np.asarray(words)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise BadParameter(
            f"Query words must be a 1-d array of integers, got shape {array.shape} of {array.dtype}"
        )
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= WORDS):
        raise BadParameter(f"Query words must lie in 0..{WORDS - 1}")
    return array
