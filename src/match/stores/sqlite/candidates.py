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

from match.stores.sqlite.rows import RowIndex, Selection

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
    """The code of every stored image, ``words`` uint64 columns of it, one row per image, in id
    order: the shared segments' codes (mapped), then the tail's (in memory)."""

    def __init__(self, words: int) -> None:
        self.words = words
        super().__init__()

    @property
    def last_key(self) -> int:
        """The last id indexed (the index's key is the image id)."""
        return self._last_key

    def set_segments(self, segments: list[dict[str, np.ndarray]], through: int) -> None:
        """Rows of the shared segments (arrays ``ids``, ``collections``, ``codes``), no tail;
        every id up to ``through`` is in them."""
        self._set_parts([(s["ids"], s["collections"], None) for s in segments])
        # plain arrays over the mapped memory: np.memmap's own indexing costs about a tenth
        # of a 1M scan (a view object per column and query)
        self._segment_codes = [s["codes"].view(np.ndarray) for s in segments]
        self._last_key = through

    def append(self, ids: np.ndarray, collections: np.ndarray, codes: np.ndarray) -> None:
        """Add rows with ids above ``last_key``; ``codes`` is (n, words) uint64."""
        if len(ids) == 0:
            return
        self._append_rows(ids, collections)
        used = self.tail_rows - len(ids)
        if used + len(ids) > self._tail_codes.shape[1]:
            room = max(used + len(ids), self._tail_codes.shape[1] * 3 // 2, 1024)
            bigger = np.zeros((self.words, room), dtype=np.uint64)
            bigger[:, :used] = self._tail_codes[:, :used]
            self._tail_codes = bigger
        self._tail_codes[:, used : used + len(ids)] = codes.T
        self._last_key = int(ids[-1])

    def candidates(
        self, queries: np.ndarray, stages: Sequence[tuple[int, int]], chosen: Selection
    ) -> np.ndarray:
        """Ids of the ``chosen`` rows (see ``selection``) within reach of any query code
        ((k, words) uint64), in row order.

        ``stages`` is a cascade of (words, threshold): a row must be within ``threshold`` bits
        of some query on its first ``words`` words at every stage. The first stage scans every
        row; the later (longer, more selective) ones only the survivors. A few chosen rows (a
        small collection, a selective filter) are gathered instead, every stage on them only,
        so their cost does not grow with the index. Blocks of rows are scanned in parallel
        threads (numpy releases the GIL in its loops)."""
        parts = [
            (codes, part.base) for part, codes in zip(self._parts, self._segment_codes, strict=True)
        ]
        parts.append((self._tail_codes, self._tail_start))
        if chosen.listed and len(chosen) < _SPARSE * self._size:
            blocks = _gathered(chosen.rows(), parts, self._size)
        else:
            blocks = _chunked(chosen.mask(), parts, self._size)

        def scan(block: Block) -> np.ndarray:
            codes, base, rows = block
            return self._ids[base + _passing(queries, stages, codes, rows)]

        if len(blocks) > 1 and SCAN_THREADS > 1:
            found = list(_scan_pool().map(scan, blocks))
        else:
            found = [scan(block) for block in blocks]
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def nbytes(self) -> int:
        """Memory of this process's own part of the index (the segments are shared)."""
        return self._tail_codes.nbytes + self._ids.nbytes + self._alive.nbytes

    def _clear_columns(self) -> None:
        self._segment_codes: list[np.ndarray] = []
        self._tail_codes = np.zeros((self.words, 0), dtype=np.uint64)
        self._last_key = 0


Block = tuple[np.ndarray, int, np.ndarray | tuple[int, np.ndarray]]
"""Rows of one part to scan: its code columns, its first row, and either the chosen rows'
numbers (local to the part) or (start, mask) for the chunk of rows from ``start``, the mask
telling which of them are chosen."""


def _chunked(mask: np.ndarray, parts: list[tuple[np.ndarray, int]], size: int) -> list[Block]:
    """Every part's rows in chunks of _CHUNK, with the mask's say on each."""
    blocks: list[Block] = []
    ends = [base for _, base in parts[1:]] + [size]
    for (codes, base), end in zip(parts, ends, strict=True):
        for start in range(base, end, _CHUNK):
            blocks.append((codes, base, (start - base, mask[start : min(start + _CHUNK, end)])))
    return blocks


def _gathered(rows: np.ndarray, parts: list[tuple[np.ndarray, int]], size: int) -> list[Block]:
    """The chosen ``rows`` (ascending) in blocks of at most _CHUNK, each within one part."""
    blocks: list[Block] = []
    ends = np.searchsorted(rows, [base for _, base in parts[1:]] + [size]).tolist()
    first = 0
    for (codes, base), last in zip(parts, ends, strict=True):
        for start in range(first, last, _CHUNK):
            blocks.append((codes, base, rows[start : min(start + _CHUNK, last)] - base))
        first = last
    return blocks


def _passing(
    queries: np.ndarray,
    stages: Sequence[tuple[int, int]],
    codes: np.ndarray,
    rows: np.ndarray | tuple[int, np.ndarray],
) -> np.ndarray:
    """Which of a block's chosen rows (see Block) pass every stage, local to its part."""
    remaining = stages
    if isinstance(rows, tuple):
        start, chosen = rows
        if chosen.mean() < _SPARSE:  # few chosen rows: gather them, every stage on them only
            rows = np.flatnonzero(chosen) + start
        else:  # most rows: the first stage scans the contiguous columns
            words, threshold = stages[0]
            near = _within(codes[:words, start : start + len(chosen)], queries, threshold)
            rows = np.flatnonzero(near & chosen) + start
            remaining = stages[1:]
    for words, threshold in remaining:
        rows = rows[_within(codes[:words, rows], queries, threshold)]
    return rows


def _within(columns: np.ndarray, queries: np.ndarray, threshold: int) -> np.ndarray:
    """Which rows of ``columns`` ((words, n) uint64) lie within ``threshold`` bits of a query.
    Word by word, every query at once: each column is read once, and a query's distances
    stay in a (queries, n) array."""
    words, n = columns.shape
    distance = np.zeros((len(queries), n), dtype=np.uint16)
    scratch = np.empty((len(queries), n), dtype=np.uint64)
    bits = np.empty((len(queries), n), dtype=np.uint8)
    for word in range(words):
        np.bitwise_xor(columns[word], queries[:, word : word + 1], out=scratch)
        np.bitwise_count(scratch, out=bits)
        np.add(distance, bits, out=distance)
    return (distance <= threshold).any(axis=0)
