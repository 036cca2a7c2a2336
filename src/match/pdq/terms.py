"""Multi-index hashing for PDQ (Norouzi et al.; ThreatExchange's README-MIH chose the same
split): a hash's 256 bits as 16 terms of 16 bits. Two hashes within distance d share at least
one term exactly when d < 16 (pigeonhole), and most pairs at PDQ's threshold of 31 still do; a
store keeps each hash under its 16 terms, takes the records sharing a term with the query as
candidates, and re-ranks them by exact Hamming distance. A term is ``position * 65536 + value``
so one integer column (or keyword) holds all 16 positions."""

from __future__ import annotations

import numpy as np

TERMS = 16
TERM_BITS = 16


def terms_of(packed: bytes) -> list[int]:
    """The 16 terms of a 32-byte hash."""
    values = np.frombuffer(packed, dtype=">u2").astype(np.int64)
    return (np.arange(TERMS, dtype=np.int64) << TERM_BITS | values).tolist()


def candidate_terms(hashes: list[bytes]) -> list[int]:
    """The distinct terms of the query hashes (a record sharing any is a candidate)."""
    return sorted({term for packed in hashes for term in terms_of(packed)})
