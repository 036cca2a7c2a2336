"""PDQ, Meta's 256-bit perceptual hash, as hash lists exchange it: hashing (hashing.py), the hex
codec and Hamming distance (codec.py), and the multi-index terms both stores look hashes up by
(terms.py)."""

from match.pdq.codec import (
    BITS,
    BYTES,
    HEX_DIGITS,
    distances,
    from_hex,
    to_hex,
)
from match.pdq.hashing import DIHEDRAL, PdqHash, dihedral_hashes, pdq_hash
from match.pdq.terms import PROBE_FLIPS, TERM_BITS, TERMS, candidate_terms, terms_of

MATCH_DISTANCE = 31
"""PDQ's recommended match threshold: Hamming distance at most 31 of 256 bits."""
QUALITY_THRESHOLD = 50
"""Hashes of quality below this are unreliable (PDQ's README: discard quality <= 49)."""

__all__ = [
    "BITS",
    "BYTES",
    "DIHEDRAL",
    "HEX_DIGITS",
    "MATCH_DISTANCE",
    "PROBE_FLIPS",
    "QUALITY_THRESHOLD",
    "TERMS",
    "TERM_BITS",
    "PdqHash",
    "candidate_terms",
    "dihedral_hashes",
    "distances",
    "from_hex",
    "pdq_hash",
    "terms_of",
    "to_hex",
]
