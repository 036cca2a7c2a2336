"""The in-memory multi-index of PDQ hashes (match.pdq.terms), one per kind of record (images,
hash-only records), shared between processes as segments (indexes.py) like the other indexes.

A segment holds its records' hashes in one (n, 4) uint64 array, in key order, and one table per
**term** (a run of the hash's bits: a position) of term value -> rows in CSR form: the rows
holding value ``v`` at position ``k`` are ``rows[offsets[base_k + v]:offsets[base_k + v + 1]]``
(``base_k``: the sizes of the tables before). A segment's **split** says how its 256 bits are cut:
16 terms of 16 bits (NARROW, the engines' terms), or in a large segment 12 terms of 21-22 bits
(WIDE, from 2M records) or 11 of 23-24 (WIDEST, from 8M): fewer records share a wider term, so
a lookup reads fewer candidates (at 10M 3,200 instead of 41,500), for a table of offsets whose
size is fixed (SPLITS), so that only a large segment outweighs it.

A lookup probes each query hash's terms and every value within the radius that finds every
hash within 31 bits (pigeonhole: with k terms, some term lies within 31 // k bits; 15 // k with
the exact-terms setting): 272 probes a hash at NARROW (radius 1), 2,872 at WIDE (radius 2).
It reads the rows under them in one vectorised gather and re-ranks them by exact Hamming
distance; the tail (records added since the last build, in memory) is scanned whole. Rows,
ids, collections and deletions are kept as rows.py keeps them for every index.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from match.pdq.terms import TERM_BITS, TERMS
from match.stores.sqlite.rows import RowIndex, grown

CHUNK = 1 << 16
"""Candidates compared at a time by a batch of lookups: their hashes (2 MB) stay in the
cache; at 10M records that is one or a few queries at a time."""

NARROW = (TERM_BITS,) * TERMS
"""16 terms of 16 bits: match.pdq.terms' split, the engines'; 272 probes a lookup, and a
table of 1M offsets (8 MB) a segment."""
WIDE = (22,) * 4 + (21,) * 8
"""12 terms of 21-22 bits, probed at radius 2: 2,872 probes, and at 10M records 11,300
candidates a lookup instead of NARROW's 41,500, for a table of 33.5M offsets (134 MB)."""
WIDEST = (24,) * 3 + (23,) * 8
"""11 terms of 23-24 bits, probed at radius 2: 3,119 probes, and at 10M records 3,200
candidates a lookup, for a table of 117M offsets (470 MB) (bench/pdq_terms.py)."""
SPLITS = ((1 << 23, WIDEST), (1 << 21, WIDE))
"""The split of a segment of at least so many records (else NARROW): a wider split's table
has a fixed size, which only a large segment outweighs."""


Chunk = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Records in key order: ids, collections, (n, 4) uint64 hashes."""


def split_of(count: int) -> tuple[int, ...]:
    """The split of a segment of ``count`` records."""
    return next((split for least, split in SPLITS if count >= least), NARROW)


def radius_of(split: Sequence[int], flips: int) -> int:
    """The probing radius of a split that finds every hash within 31 bits (``flips`` 1), or
    within 15 (``flips`` 0, as exact 16-bit terms do)."""
    return (31 if flips else 15) // len(split)


def bases_of(split: Sequence[int]) -> np.ndarray:
    """Where each position's table starts among the offsets."""
    sizes = [1 << width for width in split]
    return np.concatenate([[0], np.cumsum(sizes[:-1])]).astype(np.int64)


def term_value(words: np.ndarray, start: int, width: int) -> np.ndarray:
    """The ``width`` bits from bit ``start`` of each hash, as int64; ``words``: (n, 4) uint64 of
    the hashes' bytes read big-endian (bit 0 is the top bit of the first byte, as PDQ's hex
    writes it and match.pdq.terms reads it)."""
    word, bit = divmod(start, 64)
    if bit + width <= 64:
        value = (words[:, word] >> np.uint64(64 - bit - width)) & np.uint64((1 << width) - 1)
    else:  # the term runs into the next word
        low = bit + width - 64
        high = (words[:, word] & np.uint64((1 << (64 - bit)) - 1)) << np.uint64(low)
        value = high | (words[:, word + 1] >> np.uint64(64 - low))
    return value.astype(np.int64)


def big_endian(hashes: np.ndarray) -> np.ndarray:
    """(n, 4) uint64 hashes (native words over PDQ's bytes) as big-endian words."""
    raw = np.ascontiguousarray(hashes).view(np.uint8).reshape(-1, 32)
    return raw.view(">u8").astype(np.uint64)


@functools.cache
def _plan(
    split: tuple[int, ...], flips: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """How a query's probes in a segment of this split are made, all positions at once: the
    (256, terms) weights that turn a hash's bits into its term values, and for each probe the
    position whose value it flips, the flip, and the offset of that position's table."""
    radius = radius_of(split, flips)
    weights = np.zeros((256, len(split)), dtype=np.int64)
    positions, masks, bases = [], [], []
    start = 0
    for position, (width, base) in enumerate(zip(split, bases_of(split), strict=True)):
        weights[start : start + width, position] = 1 << np.arange(width - 1, -1, -1)
        flipped = [0]
        for count in range(1, radius + 1):
            flipped += [sum(1 << b for b in c) for c in itertools.combinations(range(width), count)]
        positions += [position] * len(flipped)
        masks += flipped
        bases += [int(base)] * len(flipped)
        start += width
    return weights, np.array(positions), np.array(masks, dtype=np.int64), np.array(bases)


def probes_each(
    queries: np.ndarray, split: Sequence[int], flips: int
) -> tuple[np.ndarray, np.ndarray]:
    """The offsets' indexes (int64) a lookup probes for (q, 4) uint64 query hashes in a
    segment of this split, and the query each probe is for (one query's probes are distinct;
    several queries may share some)."""
    weights, positions, masks, bases = _plan(tuple(split), flips)
    bits = np.unpackbits(np.ascontiguousarray(queries).view(np.uint8).reshape(-1, 32), axis=1)
    values = bits @ weights  # (q, terms): the bits of each term, big-endian
    probes = (values[:, positions] ^ masks) + bases  # (q, probes a query)
    owners = np.repeat(np.arange(len(queries), dtype=np.int64), probes.shape[1])
    return probes.ravel(), owners


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
    split = split_of(count)
    words = big_endian(hashes)
    bases = bases_of(split)
    # int32 offsets halve a wide table, while they can count every row
    small = len(split) * count < 2**31
    offsets = np.zeros(int(bases[-1]) + (1 << split[-1]) + 1, np.int32 if small else np.int64)
    rows = np.empty(len(split) * count, dtype=np.int32)
    start = 0
    for position, width in enumerate(split):  # one at a time keeps the temporaries small
        column = term_value(words, start, width).astype(np.uint16 if width <= 16 else np.uint32)
        first = position * count
        rows[first : first + count] = np.argsort(column, kind="stable")  # radix at 16 bits
        counts = np.bincount(column, minlength=1 << width)
        at = int(bases[position])
        offsets[at + 1 : at + (1 << width) + 1] = first + np.cumsum(counts)
        start += width
    del words
    return {
        "ids": ids,
        "collections": collections,
        "hashes": hashes,
        "offsets": offsets,
        "rows": rows,
        "split": np.array(split, dtype=np.int64),
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
        # segments built before splits were recorded are NARROW
        self._splits = [tuple(int(w) for w in s.get("split", NARROW)) for s in segments]
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
        asked, ids, distances = self.lookup_each(queries, max_distance, collection, flips)
        if len(queries) > 1 and len(ids):
            # each record once, with its nearest query (the first of equals)
            order = np.lexsort((asked, distances, ids))
            ids, distances, asked = ids[order], distances[order], asked[order]
            first = np.ones(len(ids), dtype=bool)
            first[1:] = ids[1:] != ids[:-1]
            ids, distances, asked = ids[first], distances[first], asked[first]
        return ids, distances, asked

    def lookup_each(
        self, queries: np.ndarray, max_distance: int, collection: int, flips: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(queries, ids, distances): every (query, live record in ``collection``) pair within
        ``max_distance`` of each other among (q, 4) uint64 query hashes, found by probing at
        radius ``flips``, each pair once, in no particular order. The probes of many queries
        are gathered and compared at once (up to CHUNK candidates), so a batch pays the
        per-lookup overhead once."""
        if self._size == 0 or len(queries) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        queries = np.ascontiguousarray(queries, dtype=np.uint64)
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        probed: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        for part, (hashes, offsets, rows), split in zip(
            self._parts, self._segments, self._splits, strict=True
        ):
            if split not in probed:
                probed[split] = probes_each(queries, split, flips)
            probes, owners = probed[split]
            starts, ends = offsets[probes], offsets[probes + 1]
            per_query = len(probes) // len(queries)
            for chunk in _chunks(ends - starts, per_query):
                first = chunk.start // per_query  # the chunk's queries, from this one
                mine = queries[first : chunk.stop // per_query]
                local, asked = _gather(rows, starts[chunk], ends[chunk], owners[chunk] - first)
                near, distances = _within(mine, asked, hashes, local, max_distance)
                rows_near = part.base + local[near].astype(np.int64)
                found.append((rows_near, asked[near] + first, distances))
        if self.tail_rows:
            rows, asked, distances = _scan(
                queries, self._tail_hashes[: self.tail_rows], max_distance
            )
            found.append((rows + self._tail_start, asked, distances))
        if not found:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        rows_found = np.concatenate([f[0] for f in found])
        asked = np.concatenate([f[1] for f in found])
        distances = np.concatenate([f[2] for f in found]).astype(np.int64)
        # a record holding several of a query's probed terms is found once per term
        if len(rows_found) > 1:
            _, first = np.unique(asked * self._size + rows_found, return_index=True)
            rows_found, asked, distances = rows_found[first], asked[first], distances[first]
        chosen = self._alive[rows_found] & (self._collections[rows_found] == collection)
        return asked[chosen], self._ids[rows_found[chosen]], distances[chosen]

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
        self._splits: list[tuple[int, ...]] = []
        self._tail_hashes = np.zeros((0, 4), dtype=np.uint64)
        self._last_key = 0


def _chunks(lengths: np.ndarray, per_query: int) -> list[slice]:
    """Runs of whole queries' probes (``per_query`` each) holding about CHUNK candidates at
    most (at least one query each), so that a large batch's temporaries stay small."""
    if len(lengths) <= per_query:
        return [slice(0, len(lengths))]
    by_query = lengths.reshape(-1, per_query).sum(axis=1)
    ends = np.cumsum(by_query)
    cuts, start, done = [], 0, 0
    while start < len(by_query):
        stop = max(int(np.searchsorted(ends, done + CHUNK, side="right")), start + 1)
        cuts.append(slice(start * per_query, stop * per_query))
        done, start = int(ends[stop - 1]), stop
    return cuts


def _gather(
    rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, owners: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``rows[starts[i]:ends[i]]`` for every i, concatenated in one vectorised gather, and for
    each row gathered the ``owners[i]`` (its query) of its range."""
    lengths = ends - starts
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=rows.dtype), np.zeros(0, dtype=owners.dtype)
    before = np.cumsum(lengths) - lengths  # where each range lands in the output
    at = np.arange(total) + np.repeat(starts - before, lengths)
    return rows[at], np.repeat(owners, lengths)


def _within(
    queries: np.ndarray, asked: np.ndarray, hashes: np.ndarray, local: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Which of the candidate rows ``local`` lie within ``limit`` bits of their query
    (``queries[asked]``), and those distances."""
    if len(local) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32)
    # np.take: a fancy index of 2-D rows is several times slower on 40k rows. This random
    # read of 32 bytes a candidate is most of a lookup's cost.
    stored = np.take(hashes, local, axis=0)
    wanted = queries[:1] if len(queries) == 1 else np.take(queries, asked, axis=0)
    # The first 128 bits alone reject nearly every candidate (a random one differs in ~64 of
    # them); only the few left are compared on the other 128.
    head = np.bitwise_count(stored[:, 0] ^ wanted[:, 0])
    head += np.bitwise_count(stored[:, 1] ^ wanted[:, 1])  # uint8: at most 128
    near = np.flatnonzero(head <= limit)
    distances = head[near].astype(np.int32)
    wanted = wanted if len(wanted) == 1 else wanted[near]
    for word in (2, 3):
        distances += np.bitwise_count(stored[near, word] ^ wanted[:, word])
    keep = distances <= limit
    return near[keep], distances[keep]


def _scan(
    queries: np.ndarray, stored: np.ndarray, limit: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, queries, distances) of every pair of a query and a row of ``stored`` (the tail,
    scanned whole) within ``limit``, a few queries at a time."""
    per = max(1, CHUNK // max(len(stored), 1))
    found = []
    for start in range(0, len(queries), per):
        chunk = queries[start : start + per]
        distances = np.bitwise_count(chunk[:, None, :] ^ stored[None, :, :]).sum(
            axis=2, dtype=np.int32
        )
        asked, rows = np.nonzero(distances <= limit)
        found.append((rows.astype(np.int64), asked + start, distances[asked, rows]))
    rows, asked, distances = (np.concatenate(column) for column in zip(*found, strict=True))
    return rows, asked, distances
