"""The per-process candidate index: the binary code of every stored image, in id order.

Codes are kept word by word (one contiguous uint64 column per 64 bits), which makes the Hamming
scan a handful of vectorised XOR + popcount passes over the columns. Rows, ids and deletions are
kept as rows.py keeps them for both indexes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from match.stores.sqlite.rows import RowIndex

_CHUNK = 1 << 16  # rows scanned at a time: keeps the temporaries in cache
_SPARSE = 0.25
"""Below this share of chosen rows (a small collection, a selective filter) a chunk's chosen
rows are gathered rather than all of them scanned."""
SCAN_THREADS = min(2, os.cpu_count() or 1)
"""Threads that scan one query's chunks (on an idle machine, latency falls with the cores)."""

_pools: dict[int, ThreadPoolExecutor] = {}  # by process id: a pool does not survive fork()
_pools_lock = threading.Lock()


def _scan_pool() -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(os.getpid())
        if pool is None:
            pool = ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="match-scan")
            _pools.clear()
            _pools[os.getpid()] = pool
        return pool


class CandidateIndex(RowIndex):
    """The code of every stored image, ``words`` uint64 columns of it, one row per image."""

    def __init__(self, words: int) -> None:
        self.words = words
        super().__init__()

    def append(self, ids: np.ndarray, collections: np.ndarray, codes: np.ndarray) -> None:
        """Add rows with ids above ``last_id``; ``codes`` is (n, words) uint64."""
        if len(ids) == 0:
            return
        first = self._append_rows(ids, collections)
        self._codes[:, first : self._size] = codes.T

    def candidates(
        self, queries: np.ndarray, stages: Sequence[tuple[int, int]], rows: np.ndarray
    ) -> np.ndarray:
        """Ids of the chosen ``rows`` (a mask, see ``selection``) within reach of any query code
        ((k, words) uint64), ascending.

        ``stages`` is a cascade of (words, threshold): a row must be within ``threshold`` bits
        of some query on its first ``words`` words at every stage. The first stage scans every
        row; the later (longer, more selective) ones only the survivors. Chunks of rows are
        scanned in parallel threads (numpy releases the GIL in its loops)."""
        starts = range(0, self._size, _CHUNK)
        if len(starts) > 1 and SCAN_THREADS > 1:
            found = list(
                _scan_pool().map(lambda start: self._scan(queries, stages, rows, start), starts)
            )
        else:
            found = [self._scan(queries, stages, rows, start) for start in starts]
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def _scan(
        self, queries: np.ndarray, stages: Sequence[tuple[int, int]], rows: np.ndarray, start: int
    ) -> np.ndarray:
        stop = min(start + _CHUNK, self._size)
        chosen = rows[start:stop]
        if chosen.mean() < _SPARSE:  # few chosen rows: gather them, every stage on them only
            found = np.flatnonzero(chosen) + start
            remaining = stages
        else:  # most rows: the first stage scans the contiguous columns
            words, threshold = stages[0]
            near = _within(self._codes[:words, start:stop], queries, threshold)
            found = np.flatnonzero(near & chosen) + start
            remaining = stages[1:]
        for words, threshold in remaining:
            found = found[_within(self._codes[:words, found], queries, threshold)]
        return self._ids[found]

    def nbytes(self) -> int:
        return self._codes.nbytes + self._ids.nbytes + self._alive.nbytes

    def _clear_columns(self) -> None:
        self._codes = np.zeros((self.words, 0), dtype=np.uint64)

    def _grow_columns(self, capacity: int) -> None:
        # word-major: one contiguous column per 64 bits, for the scan
        codes = np.zeros((self.words, capacity), dtype=np.uint64)
        codes[:, : self._size] = self._codes[:, : self._size]
        self._codes = codes

    def _compact_columns(self, keep: np.ndarray) -> None:
        self._codes = np.ascontiguousarray(self._codes[:, : self._size][:, keep])


def _within(columns: np.ndarray, queries: np.ndarray, threshold: int) -> np.ndarray:
    """Which rows of ``columns`` ((words, n) uint64) lie within ``threshold`` bits of a query."""
    words, n = columns.shape
    near = np.zeros(n, dtype=bool)
    scratch = np.empty(n, dtype=np.uint64)
    bits = np.empty(n, dtype=np.uint8)
    distance = np.empty(n, dtype=np.uint16)
    for query in queries:
        distance.fill(0)
        for word in range(words):
            np.bitwise_xor(columns[word], query[word], out=scratch)
            np.bitwise_count(scratch, out=bits)
            np.add(distance, bits, out=distance)
        near |= distance <= threshold
    return near
