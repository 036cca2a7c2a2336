"""Keeping a per-process index (candidates.py, words.py) in step with the database.

At the start of every read that uses it, an index drops the ids deleted since it last looked (the
tombstones table) and appends the images added since (ids above its last one), in the read's own
snapshot. An index that never loaded, or fell so far behind that the tombstones it needs were
pruned, is reloaded instead.
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

    def refresh(self, conn: sqlite3.Connection) -> None:
        seq, dead = tables.deleted_since(conn, self._seq)
        if dead is None:
            self._reload(conn)
        else:
            self.index.kill(dead)
        self._seq = seq
        for chunk in self._added_after(conn, self.index.last_id):
            self.index.append(*chunk)
