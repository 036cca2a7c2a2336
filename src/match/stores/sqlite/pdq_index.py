"""The in-memory multi-index of PDQ hashes (match.pdq.terms), one per kind of record (images,
hash-only records), shared between processes as segments (indexes.py) like the other indexes.

A segment holds its records' hashes in one (n, 4) uint64 array, in key order, and 16 tables of
term -> rows in CSR form: the rows holding term ``t`` (``position * 65536 + value``) are
``rows[offsets[t]:offsets[t + 1]]``, ascending. A lookup probes each query hash's 16 terms and,
at radius 1, their 16 one-bit neighbours (272 probes a hash), reads the rows under them in one
vectorised gather, and re-ranks them by exact Hamming distance; the tail (records added since
the last build, in memory) is scanned whole. Rows, ids, collections and deletions are kept as
rows.py keeps them for every index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from match.pdq.terms import TERM_BITS, TERMS
from match.stores.sqlite.rows import RowIndex, grown

TERM_VALUES = 1 << TERM_BITS
TABLE = TERMS * TERM_VALUES
"""Offsets in a segment's CSR: one per term of every position."""

Chunk = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Records in key order: ids, collections, (n, 4) uint64 hashes."""


_FLIPS = (
    np.zeros(1, dtype=np.int64),
    np.array([0] + [1 << bit for bit in range(TERM_BITS)], dtype=np.int64),
)
"""What a term is XORed with to probe it and its neighbours, by probing radius."""
_POSITIONS = (np.arange(TERMS, dtype=np.int64) << TERM_BITS)[None, :, None]


def probe_terms(queries: np.ndarray, flips: int) -> np.ndarray:
    """The distinct terms (int64) a lookup probes for (q, 4) uint64 query hashes: their 16
    terms and, with ``flips`` 1, every term one bit away from one."""
    values = term_values(queries).astype(np.int64)[:, :, None]  # (q, 16, 1)
    probes = (_POSITIONS | (values ^ _FLIPS[flips][None, None, :])).ravel()
    # one hash's probes are distinct; several hashes' (the 8 orientations) may share some
    return probes if len(queries) == 1 else np.unique(probes)


def term_values(hashes: np.ndarray) -> np.ndarray:
    """(n, 16) uint16: the 16-bit value of each term of (n, 4) uint64 hashes (the hashes' bytes
    in PDQ's order, each term big-endian, as match.pdq.terms reads them)."""
    raw = np.ascontiguousarray(hashes).view(np.uint8).reshape(-1, 32)
    return raw.view(">u2").reshape(-1, TERMS)


def build(chunks: Callable[[], Iterable[Chunk]]) -> dict[str, np.ndarray] | None:
    """A shared segment's arrays from the records ``chunks()`` yields: ids, collections,
    hashes, and the CSR (offsets, rows) of every position's terms. None when there are none."""
    parts = list(chunks())
    if not parts:
        return None
    ids = np.concatenate([p[0] for p in parts])
    collections = np.concatenate([p[1] for p in parts]).astype(np.int32)
    hashes = np.ascontiguousarray(np.concatenate([p[2] for p in parts]))
    del parts
    count = len(ids)
    values = term_values(hashes)
    offsets = np.zeros(TABLE + 1, dtype=np.int64)
    rows = np.empty(TERMS * count, dtype=np.int32)
    for position in range(TERMS):  # one position at a time keeps the temporaries small
        column = values[:, position].astype(np.uint16)
        start = position * count
        rows[start : start + count] = np.argsort(column, kind="stable")  # radix: 16 bits
        counts = np.bincount(column, minlength=TERM_VALUES)
        at = position * TERM_VALUES
        offsets[at + 1 : at + TERM_VALUES + 1] = start + np.cumsum(counts)
    return {
        "ids": ids,
        "collections": collections,
        "hashes": hashes,
        "offsets": offsets,
        "rows": rows,
    }


class PdqIndex(RowIndex):
    """The PDQ hash of every record of one kind, one row per record in key (id) order: the
    shared segments' (mapped), then the tail's (in memory, scanned whole)."""

    @property
    def last_key(self) -> int:
        return self._last_key

    def set_segments(self, segments: list[dict[str, np.ndarray]], through: int) -> None:
        """Rows of the shared segments (``build``'s arrays), no tail; every key up to
        ``through`` is in them."""
        self._set_parts([(s["ids"], s["collections"], None) for s in segments])
        # plain arrays over the mapped memory: np.memmap's own indexing is slower
        self._segments = [
            (np.asarray(s["hashes"]), np.asarray(s["offsets"]), np.asarray(s["rows"]))
            for s in segments
        ]
        self._last_key = through

    def append(self, ids: np.ndarray, collections: np.ndarray, hashes: np.ndarray) -> None:
        """Add records with keys above ``last_key``."""
        if len(ids) == 0:
            return
        self._append_rows(ids, collections)
        used = self.tail_rows - len(ids)
        if used + len(ids) > len(self._tail_hashes):
            room = max(used + len(ids), len(self._tail_hashes) * 3 // 2, 1024)
            self._tail_hashes = grown(self._tail_hashes, used, room)
        self._tail_hashes[used : used + len(ids)] = hashes
        self._last_key = int(ids[-1])

    def lookup(
        self, queries: np.ndarray, max_distance: int, collection: int, flips: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, distances, orientations) of the live records in ``collection`` within
        ``max_distance`` of a (q, 4) uint64 query hash and found by probing at radius
        ``flips``: the distance to the nearest query, and which query that was."""
        if self._size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        probes = probe_terms(queries, flips)
        found_rows, found_distances, found_queries = [], [], []
        for part, (hashes, offsets, rows) in zip(self._parts, self._segments, strict=True):
            local = _gather(rows, offsets[probes], offsets[probes + 1])
            # np.take: a fancy index of 2-D rows is several times slower on 40k rows
            distances, nearest = _nearest(queries, np.take(hashes, local, axis=0))
            near = distances <= max_distance
            found_rows.append(part.base + local[near].astype(np.int64))
            found_distances.append(distances[near])
            found_queries.append(nearest[near])
        if self.tail_rows:
            distances, nearest = _nearest(queries, self._tail_hashes[: self.tail_rows])
            near = np.flatnonzero(distances <= max_distance)
            found_rows.append(self._tail_start + near)
            found_distances.append(distances[near])
            found_queries.append(nearest[near])
        if not found_rows:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        rows_found = np.concatenate(found_rows)
        # a record holding several probed terms is found once per term
        rows_found, first = np.unique(rows_found, return_index=True)
        chosen = self._alive[rows_found] & (self._collections[rows_found] == collection)
        return (
            self._ids[rows_found[chosen]],
            np.concatenate(found_distances)[first][chosen],
            np.concatenate(found_queries)[first][chosen],
        )

    def nbytes(self) -> int:
        """Memory of this process's own part of the index (the segments are shared)."""
        return (
            self._tail_hashes.nbytes
            + self._ids.nbytes
            + self._alive.nbytes
            + self._collections.nbytes
        )

    def _clear_columns(self) -> None:
        self._segments: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._tail_hashes = np.zeros((0, 4), dtype=np.uint64)
        self._last_key = 0


def _gather(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """``rows[starts[i]:ends[i]]`` for every i, concatenated, in one vectorised gather."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=rows.dtype)
    before = np.cumsum(lengths) - lengths  # where each range lands in the output
    return rows[np.arange(total) + np.repeat(starts - before, lengths)]


def _nearest(queries: np.ndarray, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each stored hash's distance to its nearest query, and that query's index. Column by
    column: a reduction over the rows' 4 words costs 5 times more."""
    if len(stored) == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
    columns = [np.ascontiguousarray(stored[:, word]) for word in range(4)]
    distances = np.empty((len(queries), len(stored)), dtype=np.int32)
    for row, query in zip(distances, queries, strict=True):
        row[:] = np.bitwise_count(columns[0] ^ query[0])
        for word in range(1, 4):
            row += np.bitwise_count(columns[word] ^ query[word])
    if len(queries) == 1:
        return distances[0], np.zeros(len(stored), dtype=np.int64)
    nearest = distances.argmin(axis=0)
    return distances[nearest, np.arange(len(stored))], nearest
