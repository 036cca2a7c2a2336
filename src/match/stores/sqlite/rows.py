"""The bookkeeping both indexes share (candidates.py, words.py): images as rows, in the order of
the index's key, each alive or deleted, each in a collection.

Rows come in parts: first the shared segments (segments.py, mapped from disk, the same in every
process), then this process's tail of rows added since the last build. Row numbers run across
the parts. What is per process stays small (an id, a collection and an alive flag a row: 13
bytes); the bulk of an index (its codes or postings) lives in the parts. Deleted rows are marked
dead here and dropped from the segments by the next build.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Part:
    """A run of rows: ``ids`` in row order, and how to find an id among them quickly."""

    base: int  # its first row
    ids: np.ndarray
    sorted_ids: np.ndarray  # ascending (``ids`` itself when they are)
    order: np.ndarray | None  # the rows of ``sorted_ids``, or None when ``ids`` ascend

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Rows (of the whole index) of those ``ids`` this part holds."""
        positions = np.searchsorted(self.sorted_ids, ids)
        inside = positions < len(self.sorted_ids)
        positions = positions[inside]
        # the id itself, not merely one of ``ids``: an absent id lands on its successor, which
        # may be another of the ids (and be found twice)
        positions = positions[self.sorted_ids[positions] == ids[inside]]
        found = positions if self.order is None else self.order[positions]
        return self.base + np.asarray(found, dtype=np.int64)


class RowIndex:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._parts: list[Part] = []
        self._ids = np.zeros(0, dtype=np.int64)
        self._alive = np.zeros(0, dtype=bool)
        self._collections = np.zeros(0, dtype=np.int32)
        self._size = 0
        self._tail_start = 0  # the first row of the tail
        self._dead = 0
        self._clear_columns()

    @property
    def live_count(self) -> int:
        return self._size - self._dead

    @property
    def tail_rows(self) -> int:
        return self._size - self._tail_start

    def live_ids(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Ids of live rows (or of the rows a ``selection`` mask chose), in row order."""
        return self._ids[: self._size][self._alive[: self._size] if rows is None else rows]

    def selection(self, collection: int, ids: np.ndarray | None = None) -> np.ndarray:
        """A mask of the live rows in a collection, and among ``ids`` (ascending) if given."""
        size = self._size
        chosen = self._alive[:size] & (self._collections[:size] == collection)
        if ids is not None:
            among = np.zeros(size, dtype=bool)
            among[self._rows_of(ids)] = True
            chosen &= among
        return chosen

    def kill(self, ids: np.ndarray) -> None:
        """Mark ids as deleted; ids not in the index are ignored."""
        if len(ids) == 0 or self._size == 0:
            return
        rows = self._rows_of(ids)
        newly = rows[self._alive[rows]]
        self._alive[newly] = False
        self._dead += len(newly)

    def _set_parts(self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> None:
        """Replace every row by the segments' (ids, collections, order): all alive, no tail."""
        self.clear()
        base = 0
        ids, collections = [], []
        for part_ids, part_collections, order in parts:
            sorted_ids = part_ids if order is None else part_ids[order]
            self._parts.append(Part(base, part_ids, sorted_ids, order))
            ids.append(part_ids)
            collections.append(part_collections)
            base += len(part_ids)
        if base:
            self._reserve(base)
            self._ids[:base] = np.concatenate(ids)
            self._collections[:base] = np.concatenate(collections)
            self._alive[:base] = True
        self._size = self._tail_start = base

    def _append_rows(self, ids: np.ndarray, collections: np.ndarray) -> int:
        """Make room in the tail for rows with keys above the last, alive, in their
        collections; returns the first new row."""
        first = self._size
        self._reserve(first + len(ids))
        self._ids[first : first + len(ids)] = ids
        self._alive[first : first + len(ids)] = True
        self._collections[first : first + len(ids)] = collections
        self._size += len(ids)
        return first

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        found = [part.rows_of(ids) for part in self._parts]
        tail = np.flatnonzero(np.isin(self._ids[self._tail_start : self._size], ids))
        found.append(tail + self._tail_start)
        return np.concatenate(found)

    def _reserve(self, needed: int) -> None:
        capacity = len(self._ids)
        if needed <= capacity:
            return
        capacity = max(needed, capacity * 3 // 2, 1024)
        self._ids = grown(self._ids, self._size, capacity)
        self._alive = grown(self._alive, self._size, capacity)
        self._collections = grown(self._collections, self._size, capacity)
        self._grow_columns(capacity)

    # -- an index's own columns -------------------------------------------------------------------
    def _clear_columns(self) -> None:
        """Empty the index's own columns."""

    def _grow_columns(self, capacity: int) -> None:
        """Grow the index's own per-row columns to ``capacity`` rows, keeping the first
        ``_size``."""


def grown(array: np.ndarray, used: int, capacity: int) -> np.ndarray:
    """A copy of ``array``'s first ``used`` rows (first axis) with room for ``capacity``."""
    bigger = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    bigger[:used] = array[:used]
    return bigger
