"""Keeping a per-process index (candidates.py, words.py) in step with the database.

At the start of every read that uses it, an index drops the ids deleted since it last looked (the
tombstones table) and appends the images added since (ids above its last one), in the read's own
snapshot. An index that never loaded, fell so far behind that the tombstones it needs were
pruned, or holds more deleted rows than it can drop (``stale``), is reloaded instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from match.stores.sqlite import tables


class SyncedIndex(Protocol):
    @property
    def last_id(self) -> int: ...

    @property
    def stale(self) -> bool: ...

    def kill(self, ids: np.ndarray) -> None: ...

    def append(self, *chunk: Any) -> None: ...


class IndexSync:
    """``reload(conn)`` rebuilds the index from scratch; ``added_after(conn, id)`` yields the
    chunks of rows above an id that ``index.append`` takes."""

    def __init__(
        self,
        index: SyncedIndex,
        reload: Callable[[sqlite3.Connection], None],
        added_after: Callable[[sqlite3.Connection, int], Iterable[tables.Chunk]],
    ) -> None:
        self.index = index
        self._reload = reload
        self._added_after = added_after
        self._seq: int | None = None  # the newest tombstone seen; None: never loaded

    def reset(self) -> None:
        """Reload at the next refresh."""
        self._seq = None

    def refresh(self, conn: sqlite3.Connection) -> None:
        seq, dead = tables.deleted_since(conn, self._seq)
        if dead is not None:
            self.index.kill(dead)
        if dead is None or self.index.stale:
            self._reload(conn)
        self._seq = seq
        for chunk in self._added_after(conn, self.index.last_id):
            self.index.append(*chunk)
