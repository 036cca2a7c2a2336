"""The bookkeeping both indexes share (candidates.py, words.py): images as rows, in the order of
the index's key, each alive or deleted, each in a collection.

Rows come in parts: first the shared segments (segments.py, mapped from disk, the same in every
process), then this process's tail of rows added since the last build. Row numbers run across
the parts. What is per process stays small (an id, a collection and an alive flag a row: 13
bytes); the bulk of an index (its codes or postings) lives in the parts. Deleted rows are marked
dead here and dropped from the segments by the next build.

A read chooses rows (a collection, a filter) as a ``Selection``. A small collection's rows are
listed once per mapping of the segments (one pass over the collection column), then extended by
the tail's rows as they come and read through the alive flags, so choosing it costs its own rows,
not the whole index's: a collection of 1k inside 1M images is chosen as fast as a store of 1k.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LISTED_SHARE = 0.25
"""A collection holding at most this share of an index's rows has its rows listed (see the
module docstring); a bigger one is chosen by a mask over every row, which costs about as much."""
_NO_ROWS = np.zeros(0, dtype=np.int64)


class Selection:
    """Chosen rows of an index, as ascending row numbers or as a mask over its ``size`` rows;
    each form is made from the other when asked for (and kept)."""

    def __init__(
        self, size: int, *, rows: np.ndarray | None = None, mask: np.ndarray | None = None
    ) -> None:
        if (rows is None) == (mask is None):
            raise ValueError("a selection is rows or a mask")
        self.size = size
        self._rows = rows
        self._mask = mask
        self._count = None if rows is None else len(rows)

    @property
    def listed(self) -> bool:
        """Whether the rows were chosen as a list (few of them, as a rule)."""
        return self._rows is not None

    def __len__(self) -> int:
        if self._count is None:
            self._count = int(np.count_nonzero(self._mask))
        return self._count

    def rows(self) -> np.ndarray:
        """The chosen rows, ascending."""
        if self._rows is None:
            self._rows = np.flatnonzero(self._mask)
        return self._rows

    def mask(self) -> np.ndarray:
        """A mask of the chosen rows over every row."""
        if self._mask is None:
            self._mask = np.zeros(self.size, dtype=bool)
            self._mask[self._rows] = True
        return self._mask


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
        # by collection: (rows looked at, the collection's rows among them, or None if many)
        self._collection_rows: dict[int, tuple[int, np.ndarray | None]] = {}
        self._clear_columns()

    @property
    def live_count(self) -> int:
        return self._size - self._dead

    @property
    def tail_rows(self) -> int:
        return self._size - self._tail_start

    def live_ids(self, chosen: Selection | None = None) -> np.ndarray:
        """Ids of live rows (or of the rows a ``selection`` chose), in row order."""
        if chosen is None:
            return self._ids[: self._size][self._alive[: self._size]]
        return self._ids[chosen.rows()]

    def selection(self, collection: int, ids: np.ndarray | None = None) -> Selection:
        """The live rows in a collection, and among ``ids`` (ascending, distinct) if given."""
        size = self._size
        listed = self._listed(collection)
        if listed is not None:  # a small collection: only its own rows are read
            rows = listed[self._alive[listed]]
            if ids is not None:
                rows = rows[_among(self._ids[rows], ids)]
            return Selection(size, rows=rows)
        if ids is None:
            return Selection(
                size, mask=self._alive[:size] & (self._collections[:size] == collection)
            )
        rows = self._rows_of(ids)
        if len(rows) > LISTED_SHARE * size:  # many: a mask (sorting them would cost more)
            among = np.zeros(size, dtype=bool)
            among[rows] = True
            among &= self._alive[:size] & (self._collections[:size] == collection)
            return Selection(size, mask=among)
        rows = np.sort(rows)
        rows = rows[np.concatenate(([True], rows[1:] != rows[:-1]))] if len(rows) else rows
        rows = rows[self._alive[rows] & (self._collections[rows] == collection)]
        return Selection(size, rows=rows)

    def _listed(self, collection: int) -> np.ndarray | None:
        """The rows (ascending, dead ones included) of a collection holding at most
        LISTED_SHARE of the rows, brought up to the tail's last row; None for a bigger one."""
        seen, rows = self._collection_rows.get(collection, (0, _NO_ROWS))
        if rows is None or seen == self._size:
            return rows
        more = np.flatnonzero(self._collections[seen : self._size] == collection) + seen
        if len(more):
            rows = np.concatenate((rows, more))
        if len(rows) > LISTED_SHARE * self._size:
            rows = None  # until the segments are mapped again
        self._collection_rows[collection] = (self._size, rows)
        return rows

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


def _among(values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Which ``values`` are among ``ids`` (ascending): a binary search each, so a few values
    cost little however many ids a filter matched."""
    if len(ids) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(ids, values), len(ids) - 1)
    return ids[at] == values


def grown(array: np.ndarray, used: int, capacity: int) -> np.ndarray:
    """A copy of ``array``'s first ``used`` rows (first axis) with room for ``capacity``."""
    bigger = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
    bigger[:used] = array[:used]
    return bigger
