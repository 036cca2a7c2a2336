"""Index terms: a visual word refined by the first TERM_BITS of its keypoint's Hamming bits.

A word alone is too common to index at a million images: a photo's query words hold about
30 M postings there, and ranking them was the candidate step's whole cost. A term is 2^TERM_BITS
times rarer. Two copies of one keypoint keep their Hamming bits apart by about 0.1 a bit
(RANSAC inliers between dev photos and their edited copies, ten partial families), so the first
6 bits agree in about 57% of true pairs: a query that looks up only its own terms keeps more
than half its true matches and meets 1/64 of the chance ones. Measured at 1M images
(bench/term_index.py, docs/partial-matching.md "Terms"): the original was in the shortlist for
78 of 80 partial-family queries, against 71 with words, from 1.2 M postings read instead of
30 M or more; 8 bits kept the same 78, 4 bits 79 from 4.8 M. Probing the terms one bit away
too (multi-probe, PROBE_RADIUS 1) kept 79 at 8 bits, but each probe is one more range to read
(about 2 us each from the file): nine a keypoint cost more than the postings they save.
"""

from __future__ import annotations

import itertools

import numpy as np

from match.local.verify import LocalFeatures
from match.local.vocabulary import WORDS

TERM_BITS = 6
PROBE_RADIUS = 0
TERMS = WORDS << TERM_BITS
"""Terms are 0..TERMS-1: ``word << TERM_BITS | the low TERM_BITS of the bits``."""

_LOW = np.uint64((1 << TERM_BITS) - 1)
_FLIPS = np.array(
    [
        sum(1 << i for i in chosen)
        for k in range(PROBE_RADIUS + 1)
        for chosen in itertools.combinations(range(TERM_BITS), k)
    ],
    dtype=np.int64,
)
_EVERY = np.arange(1 << TERM_BITS, dtype=np.int64)


def terms(words: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """The term of each keypoint (int64), given its word and its 64 Hamming bits."""
    low = (np.asarray(bits, dtype=np.uint64) & _LOW).astype(np.int64)
    return (np.asarray(words, dtype=np.int64) << TERM_BITS) | low


def stored_terms(words: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """An image's distinct terms, sorted, as the index stores them."""
    return np.unique(terms(words, bits))


def terms_blob(features: LocalFeatures) -> bytes:
    """An image's distinct terms as the embedded store keeps them: sorted little-endian uint32."""
    return stored_terms(features.words, features.bits).astype("<u4").tobytes()


def probe_terms(words: np.ndarray, bits: np.ndarray | None) -> np.ndarray:
    """The distinct terms a query looks up, sorted: those within PROBE_RADIUS bits of each
    keypoint's term, or, without bits, every term of each word (all of the word's postings)."""
    words = np.asarray(words, dtype=np.int64)
    if bits is None:
        found = (np.unique(words)[:, None] << TERM_BITS) | _EVERY[None, :]
        return found.ravel()
    return np.unique(terms(words, bits)[:, None] ^ _FLIPS[None, :])
