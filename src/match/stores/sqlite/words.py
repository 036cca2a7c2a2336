"""The inverted index over terms (match.local.terms: a visual word refined by Hamming bits):
which stored images hold each term.

Images are rows in the order of their word row (the ``words`` table's ``seq``: features may be
stored after the image itself), kept as rows.py keeps them for both indexes; a row also keeps
its number of distinct terms. A segment holds its postings (int32 rows local to the segment)
grouped by term, ascending within a term, and the terms present in it, sorted, each with the
offset of its postings: a term's postings are one range, found by a binary search.

The shared segments (segments.py) hold nearly everything, on disk for every process (the
postings read by ranges, the rest mapped); ``build`` makes one from the stored terms. This
process's tail (rows added since the last build) goes first to a small unsorted run, which
becomes an in-memory segment when it fills, merged LSM-style with the one before it while that
one is not much bigger. A query scores every image sharing one of its probe terms (``score``:
binary tf-idf) with a few vectorised passes over their postings, at most POSTINGS_BUDGET of
them; or, when it is limited to fewer images than its terms' postings / GATHER_COST (a small
collection, a selective filter), it reads those images' own terms from the file and scores only
them, so a collection of 1k costs about as much inside 1M images as alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from match.local.terms import TERMS
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
POSTINGS_BUDGET = 250_000
"""Most postings one query reads. Past it, the query's most frequent terms (the lowest idf,
adding nearly the same to every image) are left out. At 1M images a photo query's terms hold
about 0.64 M postings (p50). bench/scale.py, 80 partial-family queries (72 past 250k), the
original in the shortlist (either pass) with every term / 250k / 150k / 100k / 50k: 78 / 79 /
80 / 79 / 76 of 80, the candidate step 43 / 30 / 26 / 26 / 22 ms of CPU p50
(docs/partial-matching.md, "The budget with terms"). 250k keeps a margin over where recall
starts to fall. A query without bits (every term of its words: about 30 M postings at 1M) keeps
only its rarest words' terms."""

GATHER_COST = 1_000
"""About how many postings a query scores in the time it reads one image's terms from the file:
a query limited to fewer images than the postings it would read / GATHER_COST scores those
images from their stored terms instead. bench/filters.py at 1M images (4M postings a query):
1k images 10 ms of CPU from their words against 56 ms from the postings, 10k images 125 ms
against 65 ms: they break even near 5k."""

WordsOf = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""The stored terms of images: given ids, those still stored as (ids, numbers of distinct
terms, the terms concatenated), in any order."""

Chunk = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Images in word-row order: word-row keys, ids, collections, their numbers of distinct terms,
and those terms concatenated."""


def score(
    rows: np.ndarray, blocks: np.ndarray, distinct: np.ndarray, df: np.ndarray, images: int
) -> tuple[np.ndarray, np.ndarray]:
    """Binary tf-idf of every row sharing a query term: (rows, scores), rows ascending.

    ``rows`` are the postings of the query's k distinct terms, concatenated in blocks: row b of
    the (m, k) ``blocks`` gives how many postings of each query term come next. ``distinct`` is
    every row's number of distinct terms, ``df`` each query term's live document frequency and
    ``images`` the number N of live images. A shared term t adds idf(t)^2 with Lucene's
    idf(t) = log(1 + (N - df(t) + 0.5) / (df(t) + 0.5)), which stays positive when a term is
    in every image (log((N + 1) / (df + 1)) is 0 then: a store of one image would find
    nothing); a row's total is divided by sqrt(its distinct terms).
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
    size: a first pass counts the postings of each term, a second (which must yield the same)
    puts every row in place, so a build needs no more memory than the segment, a count per
    possible term and a chunk. None when there are no images.

    ``terms`` lists the terms present, ascending; term ``terms[i]``'s rows are
    ``rows[offsets[i]:offsets[i + 1]]``, ascending."""
    keys, ids, collections, counts = [], [], [], []
    per_term = np.zeros(TERMS, dtype=np.int64)
    for chunk_keys, chunk_ids, chunk_collections, chunk_counts, terms in chunks():
        keys.append(chunk_keys)
        ids.append(chunk_ids)
        collections.append(chunk_collections)
        counts.append(chunk_counts)
        per_term += np.bincount(terms, minlength=TERMS)
    if not ids:
        return None
    present = np.flatnonzero(per_term)
    offsets = np.zeros(len(present) + 1, dtype=np.int64)
    np.cumsum(per_term[present], out=offsets[1:])
    del per_term
    slot_of = np.zeros(TERMS, dtype=np.int32)  # each present term's place in ``present``
    slot_of[present] = np.arange(len(present), dtype=np.int32)
    rows = np.empty(int(offsets[-1]), dtype=np.int32)
    cursor = offsets[:-1].copy()  # where each present term's next row goes
    first = 0
    for _, chunk_ids, _, chunk_counts, terms in chunks():
        chunk_rows = _rows_of(first, chunk_counts)
        order = _by_term(terms)
        slot = slot_of[terms[order]]
        # each posting's rank among its term's in this chunk: runs of equal slots
        starts = np.flatnonzero(np.r_[True, slot[1:] != slot[:-1]])
        lengths = np.diff(np.r_[starts, len(slot)])
        rank = np.arange(len(slot)) - np.repeat(starts, lengths)
        rows[cursor[slot] + rank] = chunk_rows[order]
        cursor[slot[starts]] += lengths
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
        "terms": present.astype(np.uint32),
        "offsets": offsets,
        "rows": rows,
    }


assert TERMS <= 1 << 24, "_by_term sorts terms of at most 24 bits"


def _by_term(terms: np.ndarray) -> np.ndarray:
    """A stable order of postings by term: two radix sorts (numpy's stable sort of 16-bit and
    8-bit keys), on the low 16 bits, then on the rest (terms are under 2^24)."""
    order = np.argsort((terms & 0xFFFF).astype(np.uint16), kind="stable")
    high = (terms[order] >> 16).astype(np.uint8)
    return order[np.argsort(high, kind="stable")]


def _rows_of(first: int, counts: np.ndarray) -> np.ndarray:
    """The row of each posting of images ``first``, ``first + 1``... with these counts."""
    return np.repeat(np.arange(first, first + len(counts), dtype=np.int32), counts)


@dataclass(frozen=True)
class _Segment:
    """Postings grouped by term: the rows of ``terms[i]`` (sorted, distinct) are
    ``rows[offsets[i]:offsets[i + 1]]``, ascending and local to the segment (add its first
    row). A shared segment's rows stay in their file and are read by ranges."""

    terms: np.ndarray  # (t,) uint32
    offsets: np.ndarray  # (t + 1,) int64
    rows: np.ndarray | FileArray  # int32

    @classmethod
    def of_postings(cls, rows: np.ndarray, terms: np.ndarray) -> _Segment:
        """From postings whose rows ascend within each term after a stable sort by term."""
        order = _by_term(terms)
        present, counts = np.unique(terms[order], return_counts=True)
        offsets = np.zeros(len(present) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return cls(present.astype(np.uint32), offsets, rows[order].astype(np.int32))

    def ranges(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each query term's postings start and end (an empty range if absent)."""
        starts = self.offsets[np.searchsorted(self.terms, query, side="left")]
        ends = self.offsets[np.searchsorted(self.terms, query, side="right")]
        return starts, ends

    def counts(self, query: np.ndarray) -> np.ndarray:
        starts, ends = self.ranges(query)
        return ends - starts

    def fill(self, query: np.ndarray, base: int, out: np.ndarray) -> None:
        """Write the postings of each query term (ascending terms), as rows of the whole index,
        into the int32 ``out`` (as long as they are: ``counts``), term after term."""
        starts, ends = self.ranges(query)
        if isinstance(self.rows, FileArray):
            # consecutive terms' postings are one range of the file: one read each
            keep = ends > starts
            starts, ends = starts[keep], ends[keep]
            joined = np.flatnonzero(starts[1:] != ends[:-1]) + 1
            self.rows.read(
                starts[np.r_[0, joined]].tolist() if len(starts) else [],
                ends[np.r_[joined - 1, len(ends) - 1]].tolist() if len(ends) else [],
                out,
            )
        else:
            lengths = ends - starts
            before = np.cumsum(lengths) - lengths
            out[:] = self.rows[np.repeat(starts - before, lengths) + np.arange(len(out))]
        if base:
            out += base

    def merged(self, newer: _Segment) -> _Segment:
        """This segment and a newer one (all of whose rows are greater), term by term."""
        assert isinstance(self.rows, np.ndarray) and isinstance(newer.rows, np.ndarray)
        terms = np.concatenate(
            [
                np.repeat(self.terms, np.diff(self.offsets)),
                np.repeat(newer.terms, np.diff(newer.offsets)),
            ]
        )
        return _Segment.of_postings(np.concatenate([self.rows, newer.rows]), terms)

    @property
    def size(self) -> int:
        return len(self.rows)

    def nbytes(self) -> int:
        return self.terms.nbytes + self.offsets.nbytes + self.rows.nbytes


class WordIndex(RowIndex):
    """Which live images hold each term, and how many distinct terms each has."""

    @property
    def last_key(self) -> int:
        """The last word row indexed (the index's key is the ``words`` table's ``seq``)."""
        return self._last_key

    def set_segments(self, segments: list[dict[str, np.ndarray]], through: int) -> None:
        """Rows of the shared segments (arrays of ``build``), no tail; every word row up to
        ``through`` is in them."""
        self._set_parts([(s["ids"], s["collections"], s["order"]) for s in segments])
        self._shared = [
            (_Segment(s["terms"], s["offsets"], s["rows"]), p.base)
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
        terms: np.ndarray,
    ) -> None:
        """Add images with keys above ``last_key``: image i has the ``counts[i]`` distinct terms
        that follow in ``terms`` (concatenated, each image's distinct)."""
        if len(ids) == 0:
            return
        first = self._append_rows(ids, collections)
        local = np.arange(first - self._tail_start, self._size - self._tail_start, dtype=np.int32)
        self._distinct[first : self._size] = counts
        self._tail_rows = np.concatenate([self._tail_rows, np.repeat(local, counts)])
        self._tail_terms = np.concatenate([self._tail_terms, terms.astype(np.uint32)])
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
        scoring highest for the query's terms, best first, ties by row; images sharing no term
        are never returned. A term's rarity counts every live image. With ``words_of`` and few
        chosen rows, those rows are scored from their stored terms (every query term counts
        then: the budget is for postings)."""
        query = np.unique(query)
        if limit == 0 or len(query) == 0 or self.live_count == 0:
            return np.zeros(0, dtype=np.int64)
        counts = self._counts(query)
        gather = chosen is not None and words_of is not None and not self._dead
        # against every posting of the terms, not the budget's share: reading postings has a
        # floor (a range per term) that the budget does not lower
        if gather and len(chosen) * GATHER_COST < int(counts.sum()):  # few: read them
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
        """``top`` among these ``rows`` (ascending, all live: ``df``, the query terms'
        postings, is then their live document frequency), scored from their stored terms."""
        ids = self._ids[rows]
        found, distinct, terms = words_of(ids)
        if len(found) == 0:
            return np.zeros(0, dtype=np.int64)
        idf = np.log1p((self.live_count - df + 0.5) / (df + 0.5))
        # only the stored terms that are query terms, each given to its image by where it lies
        slot = np.minimum(np.searchsorted(query, terms), len(query) - 1)
        shared = np.flatnonzero(query[slot] == terms)
        owner = np.searchsorted(np.cumsum(distinct), shared, side="right")
        weight = (idf * idf)[slot[shared]]
        totals = np.bincount(owner, weights=weight, minlength=len(found))
        hit = np.flatnonzero(totals > 0)
        scores = totals[hit] / np.sqrt(np.maximum(distinct[hit], 1))
        # ties go to the earlier row, as with the postings: the row of each id found
        by_id = np.argsort(ids)
        found_rows = rows[by_id[np.searchsorted(ids, found[hit], sorter=by_id)]]
        return found[hit][_best(scores, found_rows, limit)]

    def nbytes(self) -> int:
        """Memory of this process's own part of the index (the shared segments are mapped)."""
        rows = self._ids.nbytes + self._alive.nbytes + self._distinct.nbytes
        tail = self._tail_rows.nbytes + self._tail_terms.nbytes
        return rows + tail + sum(segment.nbytes() for segment in self._tail_segments)

    def _segments(self) -> list[tuple[_Segment, int]]:
        """Every segment with its first row: the shared ones, then the tail's."""
        return self._shared + [(segment, self._tail_start) for segment in self._tail_segments]

    def _tail_slots(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The unsorted tail's postings of query terms: (their positions, each one's query
        term's index)."""
        slot = np.minimum(np.searchsorted(query, self._tail_terms), len(query) - 1)
        shared = np.flatnonzero(query[slot] == self._tail_terms)
        return shared, slot[shared]

    def _postings(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every posting of the query's terms, as rows and blocks for ``score``: one block per
        segment and one for the unsorted tail, each grouped by query term. The rows are written
        straight into one array (no piece is copied twice)."""
        segments = self._segments()
        blocks = [segment.counts(query) for segment, _ in segments]
        tail_order = None
        if len(self._tail_terms):
            shared, owner = self._tail_slots(query)
            by_term = np.argsort(owner, kind="stable")
            tail_order = shared[by_term]
            blocks.append(np.bincount(owner, minlength=len(query)))
        if not blocks:
            return np.zeros(0, np.int32), np.zeros((0, len(query)), np.int64)
        rows = np.empty(int(sum(int(b.sum()) for b in blocks)), dtype=np.int32)
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
        """Each query term's number of postings, dead ones included."""
        counts = np.zeros(len(query), dtype=np.int64)
        for segment, _ in self._segments():
            counts += segment.counts(query)
        if len(self._tail_terms):
            counts += np.bincount(self._tail_slots(query)[1], minlength=len(query))
        return counts

    def _live_df(self, rows: np.ndarray, blocks: np.ndarray) -> np.ndarray:
        """Each query term's number of live postings (one pass, whatever the dead share)."""
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
        segments.append(_Segment.of_postings(self._tail_rows, self._tail_terms))
        self._tail_rows = np.zeros(0, dtype=np.int32)
        self._tail_terms = np.zeros(0, dtype=np.uint32)
        while len(segments) > 1 and segments[-2].size <= MERGE_RATIO * segments[-1].size:
            newer = segments.pop()
            segments[-1] = segments[-1].merged(newer)

    def _clear_columns(self) -> None:
        self._distinct = np.zeros(0, dtype=np.uint16)
        self._shared: list[tuple[_Segment, int]] = []
        self._tail_segments: list[_Segment] = []
        self._tail_rows = np.zeros(0, dtype=np.int32)
        self._tail_terms = np.zeros(0, dtype=np.uint32)
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
