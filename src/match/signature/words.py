"""image-match's 63 search words: overlapping 16-value runs of a signature, squashed to ternary."""

from __future__ import annotations

import numpy as np

WORD_LENGTH = 16
WORD_COUNT = 63


def _word_starts(length: int) -> np.ndarray:
    return np.linspace(0, length, WORD_COUNT, endpoint=False).astype(np.int64)


_POWERS = 3 ** np.arange(WORD_LENGTH, dtype=np.int64)


def words(signatures: np.ndarray) -> np.ndarray:
    """Words of one signature (shape (63,)) or of many (shape (n, 63)), as int64.

    Word i is the 16 values from floor(i * 648 / 63), zero-padded past the end, squashed to
    -1/0/1 and encoded as sum((w_j + 1) * 3**j) (first value least significant).
    """
    sigs = np.atleast_2d(signatures)
    length = sigs.shape[1]
    padded = np.zeros((sigs.shape[0], length + WORD_LENGTH), dtype=np.int64)
    padded[:, :length] = np.sign(sigs)
    index = _word_starts(length)[:, None] + np.arange(WORD_LENGTH)[None, :]
    result = (padded[:, index] + 1) @ _POWERS
    return result[0] if np.ndim(signatures) == 1 else result
