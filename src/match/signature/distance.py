"""The normalized distance |a - b| / (|a| + |b|) between signatures, vectorised."""

from __future__ import annotations

import numpy as np

BLANK_DISTANCE = 1.0
"""Distance involving an all-zero (blank) signature: 0/0 is defined as 1.0, 'unrelated'.

image-match returned NaN for blank-vs-blank; a blank image matches nothing, itself included.
"""


def normalized_distances(queries: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Distances of each query signature to each stored one.

    ``queries``: (648,) or (q, 648); ``stored``: (n, 648). Returns (n,) or (q, n) float64, each in
    [0, 1], never NaN.
    """
    # Signatures are small integers: in float32 every product, squared norm and dot product
    # below is an exact integer (at most 648 * 4 < 2**24), so |a - b|**2 is exact too and
    # identical signatures are exactly 0 apart. float32 halves the memory of a float64 copy.
    q = np.atleast_2d(queries).astype(np.float32)
    s = np.atleast_2d(stored).astype(np.float32)
    q_squared = np.einsum("ij,ij->i", q, q).astype(np.float64)
    s_squared = np.einsum("ij,ij->i", s, s).astype(np.float64)
    squared = q_squared[:, None] + s_squared[None, :] - 2.0 * (q @ s.T).astype(np.float64)
    diff_norm = np.sqrt(np.maximum(squared, 0.0))
    q_norm, s_norm = np.sqrt(q_squared), np.sqrt(s_squared)
    denominator = q_norm[:, None] + s_norm[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(denominator > 0, diff_norm / denominator, BLANK_DISTANCE)
    # a blank signature is unrelated to everything, even to a blank one
    result[:, s_norm == 0] = BLANK_DISTANCE
    result[q_norm == 0, :] = BLANK_DISTANCE
    return result[0] if np.ndim(queries) == 1 else result
