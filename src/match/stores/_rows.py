"""Rows of the per-process indexes (_candidates, _words): images in id order, ids only growing."""

from __future__ import annotations

import numpy as np


def positions_of(stored: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions in ``stored`` (ascending ids) of those ``ids`` it holds; others are ignored."""
    positions = np.searchsorted(stored, ids)
    positions = positions[positions < len(stored)]
    return positions[np.isin(stored[positions], ids)]
