"""The inverted index over visual words: which stored images hold each word.

Images are rows in the order of their word row (the ``words`` table's ``seq``: features may be
stored after the image itself), kept as rows.py keeps them for both indexes; a row also keeps
its number of distinct words. Postings (rows local to their segment) are grouped by word in
segments, ascending within a word. A shared segment keeps only each row's low 16 bits (2 bytes a
posting, half of an int32: at 1M images the postings are most of the segments' bytes), grouped
by word and then by block of 65,536 rows, with one offset per (word, block); the in-memory
segments of the tail are plain CSR (per-word offsets into int32 rows).

The shared segments (segments.py) hold nearly everything, on disk for every process (the
postings read by ranges, the rest mapped); ``build`` makes one from the stored words. This
process's tail (rows added since the last build) goes first to a small unsorted run, which
becomes an in-memory segment when it fills, merged LSM-style with the one before it while that
one is not much bigger. A query scores every image sharing one of its words (``score``: binary
tf-idf) with a few vectorised passes over its words' postings, at most POSTINGS_BUDGET of them;
or, when it is limited to fewer images than those postings / GATHER_COST (a small collection, a
selective filter), it reads those images' own words from the file and scores only them, so a
collection of 1k costs about as much inside 1M images as alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from match.local import WORDS
from match.stores.ranking import rarest_within
from match.stores.sqlite.rows import RowIndex, Selection, grown
from match.stores.sqlite.segments import FileArray

TAIL_POSTINGS = 1 << 16
"""Postings of the tail kept unsorted before they become a segment (a query scans them all)."""
MERGE_RATIO = 4
"""A segment is merged into the previous one while that one is at most this many times bigger."""
SCORE_CHUNK = 1 << 20
"""Postings scored at once (``score``): 1M of them hold 16 MB of transient arrays. Chunks of
this size measured no slower than all 16 M int32 rows at once (bincount copies rows to intp
either way, a chunk stays in cache)."""
POSTINGS_BUDGET = 16_000_000
"""Most postings one query reads. Past it, the query's most frequent words (the lowest idf,
adding nearly the same to every image) are left out: a query reads about 3 M postings at 100k
images of photos' words, all of them, but about 30 M at 1M. At 1M (bench/scale.py, 80
partial-family queries, docs/partial-matching.md "The budget at 1M") 16 M keeps the shortlist
recall of no budget (71/80; 4 M: 53/80) for half its CPU and a fifth of its p99 (198 / 255
against 421 / 1,207 ms, both passes); a 4-worker server's PSS peaks at 1,388 MiB."""

GATHER_COST = 1_000
"""About how many postings a query scores in the time it reads one image's words from the file:
a query limited to fewer images than the postings it would read / GATHER_COST scores those
images from their stored words instead. bench/filters.py at 1M images (4M postings a query):
1k images 10 ms of CPU from their words against 56 ms from the postings, 10k images 125 ms
against 65 ms: they break even near 5k."""

BLOCK_BITS = 16
"""A shared segment's posting is its row's low BLOCK_BITS bits; the rest is its block's number."""

WordsOf = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""The stored words of images: given ids, those still stored as (ids, numbers of distinct
words, the words concatenated), in any order."""

Chunk = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Images in word-row order: word-row keys, ids, collections, their numbers of distinct words,
and those words concatenated."""


def score(
    rows: np.ndarray, blocks: np.ndarray, distinct: np.ndarray, df: np.ndarray, images: int
) -> tuple[np.ndarray, np.ndarray]:
    """Binary tf-idf of every row sharing a query word: (rows, scores), rows ascending.

    ``rows`` are the postings of the query's k distinct words, concatenated in blocks: row b of
    the (m, k) ``blocks`` gives how many postings of each query word come next. ``distinct`` is
    every row's number of distinct words, ``df`` each query word's live document frequency and
    ``images`` the number N of live images. A shared word w adds idf(w)^2 with Lucene's
    idf(w) = log(1 + (N - df(w) + 0.5) / (df(w) + 0.5)), which stays positive when a word is
    in every image (log((N + 1) / (df + 1)) is 0 then: a store of one image would find
    nothing); a row's total is divided by sqrt(its distinct words).
    """
    idf = np.log1p((images - df + 0.5) / (df + 0.5))
    run_weights = np.tile(idf * idf, len(blocks))
    run_ends = np.cumsum(blocks.ravel())
    run_starts = run_ends - blocks.ravel()
    totals = np.zeros(len(distinct), dtype=np.float64)
    # a chunk of postings at a time: its weights (and its rows as intp, which bincount makes)
    # are the only arrays as long as the postings, so the memory does not grow with them
    for start in range(0, len(rows), SCORE_CHUNK):
        stop = min(start + SCORE_CHUNK, len(rows))
        lengths = np.clip(run_ends, start, stop) - np.clip(run_starts, start, stop)
        weights = np.repeat(run_weights, lengths)
        totals += np.bincount(rows[start:stop], weights=weights, minlength=len(distinct))
    hit = np.flatnonzero(totals > 0)
    return hit, totals[hit] / np.sqrt(np.maximum(distinct[hit], 1))


def build(chunks: Callable[[], Iterable[Chunk]]) -> dict[str, np.ndarray] | None:
    """A shared segment's arrays from the images that ``chunks()`` yields, built at its final
    size: a first pass counts the postings of each (word, block of rows), a second (which must
    yield the same) puts every row's low bits in place, so a build needs no more memory than
    the segment plus a chunk. None when there are no images.

    ``offsets`` has one entry per (word, block), word-major, and a last one: word w's postings
    in block b are ``low[offsets[w * blocks + b]:offsets[w * blocks + b + 1]]``, each the low
    bits of a row ``b << BLOCK_BITS | low``."""
    keys, ids, collections, counts, per_block = [], [], [], [], []
    first = 0
    for chunk_keys, chunk_ids, chunk_collections, chunk_counts, words in chunks():
        keys.append(chunk_keys)
        ids.append(chunk_ids)
        collections.append(chunk_collections)
        counts.append(chunk_counts)
        block_of = _rows_of(first, chunk_counts) >> BLOCK_BITS
        per_block.append(np.bincount(block_of * WORDS + words, minlength=WORDS))
        first += len(chunk_ids)
    if not ids:
        return None
    blocks = ((first - 1) >> BLOCK_BITS) + 1
    postings = np.zeros(blocks * WORDS, dtype=np.int64)  # block-major while counting
    for counted in per_block:
        postings[: len(counted)] += counted
    offsets = np.zeros(WORDS * blocks + 1, dtype=np.int64)
    np.cumsum(postings.reshape(blocks, WORDS).T.ravel(), out=offsets[1:])
    low = np.empty(int(offsets[-1]), dtype=np.uint16)
    cursor = offsets[:-1].copy()  # where each (word, block)'s next row goes
    first = 0
    for _, chunk_ids, _, chunk_counts, words in chunks():
        rows = _rows_of(first, chunk_counts)
        # a stable sort by word keeps each word's rows, and so its blocks, ascending
        order = np.argsort(words.astype(np.uint16), kind="stable")
        key = words[order].astype(np.int64) * blocks + (rows[order] >> BLOCK_BITS)
        per_key = np.bincount(key, minlength=WORDS * blocks)
        rank = np.arange(len(key)) - (np.cumsum(per_key) - per_key)[key]
        low[cursor[key] + rank] = rows[order] & ((1 << BLOCK_BITS) - 1)
        cursor += per_key
        first += len(chunk_ids)
    if first != sum(len(i) for i in ids) or not np.array_equal(cursor, offsets[1:]):
        raise RuntimeError("the images changed between the two passes of a build")
    all_ids = np.concatenate(ids)
    return {
        "keys": np.concatenate(keys),
        "ids": all_ids,
        "order": np.argsort(all_ids, kind="stable"),
        "collections": np.concatenate(collections).astype(np.int32),
        "distinct": np.concatenate(counts).astype(np.uint16),
        "offsets": offsets,
        "low": low,
    }


def _rows_of(first: int, counts: np.ndarray) -> np.ndarray:
    """The row of each posting of images ``first``, ``first + 1``... with these counts."""
    return np.repeat(np.arange(first, first + len(counts), dtype=np.int64), counts)


class _BlockedSegment:
    """A shared segment's postings (``build``): low bits by (word, block), read from the file
    by ranges (a word's postings are one range)."""

    def __init__(self, offsets: np.ndarray, low: FileArray | np.ndarray) -> None:
        self.offsets = offsets
        self.low = low
        self.blocks = (len(offsets) - 1) // WORDS

    def counts(self, query: np.ndarray) -> np.ndarray:
        return self.offsets[(query + 1) * self.blocks] - self.offsets[query * self.blocks]

    def fill(self, query: np.ndarray, base: int, out: np.ndarray) -> None:
        """Write the postings of each query word, as rows of the whole index, into ``out``
        (int32 or intp, as long as they are: ``counts``), word after word."""
        blocks = self.blocks
        edges = self.offsets[query[:, None] * blocks + np.arange(blocks + 1)]
        starts, ends = edges[:, 0].tolist(), edges[:, -1].tolist()
        low = np.empty(len(out), dtype=np.uint16)
        if isinstance(self.low, FileArray):
            self.low.read(starts, ends, low)
        else:  # built in this process (tests)
            np.concatenate([self.low[s:e] for s, e in zip(starts, ends, strict=True)], out=low)
        # each posting's block (small integers repeated), shifted and joined to its low bits in
        # place: no temporary as long as ``out``
        block_type = np.uint8 if blocks <= 256 else np.int32
        out[:] = np.repeat(
            np.tile(np.arange(blocks, dtype=block_type), len(query)), np.diff(edges, axis=1).ravel()
        )
        out <<= BLOCK_BITS
        out |= low
        if base:
            out += base

    def nbytes(self) -> int:
        return self.offsets.nbytes + self.low.nbytes


@dataclass(frozen=True)
class _Segment:
    """Postings in CSR form: word w's rows are ``rows[offsets[w]:offsets[w + 1]]``, local to the
    segment (add its first row)."""

    offsets: np.ndarray  # (WORDS + 1,) int64
    rows: np.ndarray  # int32

    @classmethod
    def of_postings(cls, rows: np.ndarray, words: np.ndarray) -> _Segment:
        """From postings in row order; a stable sort by word keeps rows ascending per word."""
        order = np.argsort(words.astype(np.uint16), kind="stable")  # radix sort for 16 bits
        counts = np.bincount(words, minlength=WORDS)
        offsets = np.zeros(WORDS + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(offsets, rows[order].astype(np.int32))

    def fill(self, query: np.ndarray, base: int, out: np.ndarray) -> None:
        """As _BlockedSegment.fill."""
        starts, ends = self.offsets[query], self.offsets[query + 1]
        rows = self.rows
        pieces = [rows[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]
        np.concatenate(pieces, out=out)
        if base:
            out += base

    def merged(self, newer: _Segment) -> _Segment:
        """This segment and a newer one (all of whose rows are greater), word by word."""
        a, b = self.offsets.tolist(), newer.offsets.tolist()
        pieces = []
        for w in range(WORDS):
            pieces.append(self.rows[a[w] : a[w + 1]])
            pieces.append(newer.rows[b[w] : b[w + 1]])
        return _Segment(self.offsets + newer.offsets, np.concatenate(pieces))

    def counts(self, query: np.ndarray) -> np.ndarray:
        return self.offsets[query + 1] - self.offsets[query]

    @property
    def size(self) -> int:
        return len(self.rows)

    def nbytes(self) -> int:
        return self.offsets.nbytes + self.rows.nbytes


class WordIndex(RowIndex):
    """Which live images hold each visual word, and how many distinct words each has."""

    @property
    def last_key(self) -> int:
        """The last word row indexed (the index's key is the ``words`` table's ``seq``)."""
        return self._last_key

    def set_segments(self, segments: list[dict[str, np.ndarray]], through: int) -> None:
        """Rows of the shared segments (arrays of ``build``), no tail; every word row up to
        ``through`` is in them."""
        self._set_parts([(s["ids"], s["collections"], s["order"]) for s in segments])
        self._shared = [
            (_BlockedSegment(s["offsets"], s["low"]), p.base)
            for s, p in zip(segments, self._parts, strict=True)
        ]
        if self._size:
            self._distinct[: self._size] = np.concatenate([s["distinct"] for s in segments])
        self._last_key = through

    def append(
        self,
        keys: np.ndarray,
        ids: np.ndarray,
        collections: np.ndarray,
        counts: np.ndarray,
        words: np.ndarray,
    ) -> None:
        """Add images with keys above ``last_key``: image i has the ``counts[i]`` distinct words
        that follow in ``words`` (concatenated, each image's distinct)."""
        if len(ids) == 0:
            return
        first = self._append_rows(ids, collections)
        local = np.arange(first - self._tail_start, self._size - self._tail_start, dtype=np.int32)
        self._distinct[first : self._size] = counts
        self._tail_rows = np.concatenate([self._tail_rows, np.repeat(local, counts)])
        self._tail_words = np.concatenate([self._tail_words, words.astype(np.uint16)])
        self._last_key = int(keys[-1])
        if len(self._tail_rows) >= TAIL_POSTINGS:
            self._flush_tail()

    def top(
        self,
        query: np.ndarray,
        limit: int,
        chosen: Selection | None = None,
        words_of: WordsOf | None = None,
    ) -> np.ndarray:
        """Ids of the ``limit`` live images (among the ``chosen`` rows, see ``selection``)
        scoring highest for the query's words, best first, ties by row; images sharing no word
        are never returned. A word's rarity counts every live image. With
        ``words_of`` and few chosen rows, those rows are scored from their stored words (every
        query word counts then: the budget is for postings)."""
        query = np.unique(query)
        if limit == 0 or len(query) == 0 or self.live_count == 0:
            return np.zeros(0, dtype=np.int64)
        counts = self._counts(query)
        gather = chosen is not None and words_of is not None and not self._dead
        postings_read = min(int(counts.sum()), POSTINGS_BUDGET)
        if gather and len(chosen) * GATHER_COST < postings_read:  # few: read them
            return self._top_of_rows(query, counts, limit, chosen.rows(), words_of)
        postings, blocks = self._postings(rarest_within(query, counts, POSTINGS_BUDGET))
        df = blocks.sum(axis=0) if not self._dead else self._live_df(postings, blocks)
        hit, scores = score(postings, blocks, self._distinct[: self._size], df, self.live_count)
        keep = (self._alive if chosen is None else chosen.mask())[hit]
        hit, scores = hit[keep], scores[keep]
        return self._ids[hit[_best(scores, hit, limit)]]

    def _top_of_rows(
        self, query: np.ndarray, df: np.ndarray, limit: int, rows: np.ndarray, words_of: WordsOf
    ) -> np.ndarray:
        """``top`` among these ``rows`` (ascending, all live: ``df``, the query words'
        postings, is then their live document frequency), scored from their stored words."""
        ids = self._ids[rows]
        found, distinct, words = words_of(ids)
        if len(found) == 0:
            return np.zeros(0, dtype=np.int64)
        idf = np.log1p((self.live_count - df + 0.5) / (df + 0.5))
        weight = np.zeros(WORDS, dtype=np.float64)
        weight[query] = idf * idf
        # only the stored words that are query words, each given to its image by where it
        # lies: a byte per word looked up, where a weight and an owner per word cost 6x more
        wanted = np.zeros(WORDS, dtype=bool)
        wanted[query] = True
        shared = np.flatnonzero(wanted[words])
        owner = np.searchsorted(np.cumsum(distinct), shared, side="right")
        totals = np.bincount(owner, weights=weight[words[shared]], minlength=len(found))
        hit = np.flatnonzero(totals > 0)
        scores = totals[hit] / np.sqrt(np.maximum(distinct[hit], 1))
        # ties go to the earlier row, as with the postings: the row of each id found
        by_id = np.argsort(ids)
        found_rows = rows[by_id[np.searchsorted(ids, found[hit], sorter=by_id)]]
        return found[hit][_best(scores, found_rows, limit)]

    def nbytes(self) -> int:
        """Memory of this process's own part of the index (the shared segments are mapped)."""
        rows = self._ids.nbytes + self._alive.nbytes + self._distinct.nbytes
        tail = self._tail_rows.nbytes + self._tail_words.nbytes
        return rows + tail + sum(segment.nbytes() for segment in self._tail_segments)

    def _segments(self) -> list[tuple[_BlockedSegment | _Segment, int]]:
        """Every segment with its first row: the shared ones, then the tail's."""
        return self._shared + [(segment, self._tail_start) for segment in self._tail_segments]

    def _postings(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every posting of the query's words, as rows and blocks for ``score``: one block per
        segment and one for the unsorted tail, each grouped by query word. The rows are written
        straight into one array (at 1M images, tens of MB a query: no piece is copied twice)."""
        segments = self._segments()
        blocks = [segment.counts(query) for segment, _ in segments]
        tail_order, tail_counts = None, None
        if len(self._tail_words):
            index = np.full(WORDS, -1, dtype=np.int64)
            index[query] = np.arange(len(query))
            owner = index[self._tail_words]
            shared = np.flatnonzero(owner >= 0)
            tail_order = shared[np.argsort(owner[shared], kind="stable")]
            tail_counts = np.bincount(owner[tail_order], minlength=len(query))
            blocks.append(tail_counts)
        if not blocks:
            return np.zeros(0, np.intp), np.zeros((0, len(query)), np.int64)
        # int32 rows while they fit: half the memory of the longest array a query makes
        row_type = np.int32 if self._size < 1 << 31 else np.intp
        rows = np.empty(int(sum(int(b.sum()) for b in blocks)), dtype=row_type)
        at = 0
        for (segment, base), counts in zip(segments, blocks, strict=False):
            size = int(counts.sum())
            segment.fill(query, base, rows[at : at + size])
            at += size
        if tail_order is not None:
            rows[at:] = self._tail_rows[tail_order]
            rows[at:] += self._tail_start
        return rows, np.stack(blocks)

    def _counts(self, query: np.ndarray) -> np.ndarray:
        """Each query word's number of postings, dead ones included."""
        counts = np.zeros(len(query), dtype=np.int64)
        for segment, _ in self._segments():
            counts += segment.counts(query)
        return counts + np.bincount(self._tail_words, minlength=WORDS)[query]

    def _live_df(self, rows: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        """Each query word's number of live postings (one pass, whatever the dead share)."""
        lengths = blocks.ravel()
        starts = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        alive = np.zeros(len(rows) + 1, dtype=np.uint8)  # a last 0: every start is an index
        alive[:-1] = self._alive[rows]
        live = np.add.reduceat(alive, starts, dtype=np.int64)
        live[lengths == 0] = 0  # reduceat gives an empty block the element at its start
        return live.reshape(blocks.shape).sum(axis=0)

    def _flush_tail(self) -> None:
        segments = self._tail_segments
        segments.append(_Segment.of_postings(self._tail_rows, self._tail_words))
        self._tail_rows = np.zeros(0, dtype=np.int32)
        self._tail_words = np.zeros(0, dtype=np.uint16)
        while len(segments) > 1 and segments[-2].size <= MERGE_RATIO * segments[-1].size:
            newer = segments.pop()
            segments[-1] = segments[-1].merged(newer)

    def _clear_columns(self) -> None:
        self._distinct = np.zeros(0, dtype=np.uint16)
        self._shared: list[tuple[_BlockedSegment, int]] = []
        self._tail_segments: list[_Segment] = []
        self._tail_rows = np.zeros(0, dtype=np.int32)
        self._tail_words = np.zeros(0, dtype=np.uint16)
        self._last_key = 0

    def _grow_columns(self, capacity: int) -> None:
        self._distinct = grown(self._distinct, self._size, capacity)


def _best(scores: np.ndarray, rows: np.ndarray, limit: int) -> np.ndarray:
    """Positions of the ``limit`` highest scores, best first, ties by row."""
    if len(scores) > limit:
        # everything tying with the limit-th best, then an exact sort of those few
        threshold = np.partition(scores, len(scores) - limit)[len(scores) - limit]
        keep = np.flatnonzero(scores >= threshold)
        return keep[np.lexsort((rows[keep], -scores[keep]))[:limit]]
    return np.lexsort((rows, -scores))[:limit]
