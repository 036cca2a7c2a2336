"""The bookkeeping both per-process indexes share (candidates.py, words.py): images as rows in id
order, each alive or deleted, each in a collection.

Ids only grow (SQLite AUTOINCREMENT, writers serialised), so new rows are appended and the id
column stays sorted. A deleted id is marked dead, and dead rows are dropped once they pile up.
An index keeps its own per-row columns beside the ids and grows and compacts them through the
three hooks.
"""

from __future__ import annotations

import numpy as np

COMPACT_AFTER = 4096
"""Dead rows kept before a compaction (which also needs them to be a quarter of all rows)."""


class RowIndex:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._ids = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._collections = np.zeros(0, dtype=np.int32)
        self._size = 0
        self._dead = 0
        self._clear_columns()

    @property
    def last_id(self) -> int:
        return int(self._ids[self._size - 1]) if self._size else 0

    @property
    def live_count(self) -> int:
        return self._size - self._dead

    @property
    def stale(self) -> bool:
        """Whether a reload would serve better than catching up (never, here: dead rows are
        compacted away as they pile up)."""
        return False

    def live_ids(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Ids of live rows (or of the rows a ``selection`` mask chose), ascending (= insertion
        order)."""
        return self._ids[: self._size][self._alive[: self._size] if rows is None else rows]

    def selection(self, collection: int, ids: np.ndarray | None = None) -> np.ndarray:
        """A mask of the live rows in a collection, and among ``ids`` (ascending) if given."""
        size = self._size
        chosen = self._alive[:size] & (self._collections[:size] == collection)
        if ids is not None:
            among = np.zeros(size, dtype=bool)
            among[positions_of(self._ids[:size], ids)] = True
            chosen &= among
        return chosen

    def kill(self, ids: np.ndarray) -> None:
        """Mark ids as deleted; ids not in the index are ignored."""
        if len(ids) == 0 or self._size == 0:
            return
        positions = positions_of(self._ids[: self._size], ids)
        newly = positions[self._alive[positions]]
        self._alive[newly] = False
        self._dead += len(newly)
        if self._dead > COMPACT_AFTER and self._dead * 4 > self._size:
            self._compact()

    def _append_rows(self, ids: np.ndarray, collections: np.ndarray) -> int:
        """Make room for rows with ids above ``last_id``, alive, in their collections; returns
        the first new row."""
        first = self._size
        self._reserve(first + len(ids))
        self._ids[first : first + len(ids)] = ids
        self._alive[first : first + len(ids)] = True
        self._collections[first : first + len(ids)] = collections
        self._size += len(ids)
        return first

    def _reserve(self, needed: int) -> None:
        capacity = len(self._ids)
        if needed <= capacity:
            return
        capacity = max(needed, capacity * 3 // 2, 1024)
        self._ids = grown(self._ids, self._size, capacity)
        self._alive = grown(self._alive, self._size, capacity)
        self._collections = grown(self._collections, self._size, capacity)
        self._grow_columns(capacity)

    def _compact(self) -> None:
        keep = self._alive[: self._size]
        self._compact_columns(keep)
        self._ids = self._ids[: self._size][keep]
        self._collections = self._collections[: self._size][keep]
        self._size = len(self._ids)
        self._alive = np.ones(self._size, dtype=bool)
        self._dead = 0

    # -- an index's own columns -------------------------------------------------------------------
    def _clear_columns(self) -> None:
        """Empty the index's own columns."""

    def _grow_columns(self, capacity: int) -> None:
        """Grow the index's own columns to ``capacity`` rows, keeping the first ``_size``."""

    def _compact_columns(self, keep: np.ndarray) -> None:
        """Keep only the rows where ``keep`` (of the first ``_size``) is true."""


def positions_of(stored: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Positions in ``stored`` (ascending ids) of those ``ids`` it holds; others are ignored."""
    positions = np.searchsorted(stored, ids)
    positions = positions[positions < len(stored)]
    return positions[np.isin(stored[positions], ids)]


def grown(array: np.ndarray, used: int, capacity: int) -> np.ndarray:
    """A copy of ``array``'s first ``used`` rows (first axis) with room for ``capacity``."""
    bigger = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    bigger[:used] = array[:used]
    return bigger
