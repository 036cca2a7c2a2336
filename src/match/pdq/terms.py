"""Multi-index hashing for PDQ (Norouzi et al.; ThreatExchange's README-MIH chose the same
split): a hash's 256 bits as 16 terms of 16 bits. A store keeps each hash under its 16 terms,
takes as candidates the records holding one of the query's probe terms, and re-ranks them by
exact Hamming distance. A term is ``position * 65536 + value``, so one integer column (or
keyword) holds all 16 positions.

Probing radius (pigeonhole): two hashes within distance d have some term within
floor(d / 16) bits of each other. Probing each query term and its 16 one-bit neighbours
(``flips=1``, 272 probes) therefore finds every stored hash within 31 bits, PDQ's threshold,
as faiss' IndexBinaryMultiHash does for HMA (nflip = 31 // 16); exact terms only (``flips=0``,
16 probes) guarantee d <= 15 and find most pairs up to 31, about 17 times fewer candidates."""

from __future__ import annotations

import numpy as np

TERMS = 16
TERM_BITS = 16


def terms_of(packed: bytes) -> list[int]:
    """The 16 terms of a 32-byte hash."""
    values = np.frombuffer(packed, dtype=">u2").astype(np.int64)
    return (np.arange(TERMS, dtype=np.int64) << TERM_BITS | values).tolist()


PROBE_FLIPS = 1
"""The default probing radius: every hash within PDQ's threshold of 31 is a candidate."""


def candidate_terms(hashes: list[bytes], flips: int = PROBE_FLIPS) -> list[int]:
    """The distinct probe terms of the query hashes: their terms and, with ``flips`` 1, every
    term one bit away (a record holding any is a candidate)."""
    probes = set()
    for packed in hashes:
        for term in terms_of(packed):
            probes.add(term)
            if flips:
                probes.update(term ^ (1 << bit) for bit in range(TERM_BITS))
    return sorted(probes)
