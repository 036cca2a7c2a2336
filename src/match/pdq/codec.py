"""PDQ hashes as 32 bytes, in the order of PDQ's hex form (64 hex digits, most significant
16-bit word first, as ThreatExchange's Hash256.toHexString writes them), and Hamming distances
between them."""

from __future__ import annotations

import re

import numpy as np

from match.errors import BadParameter

BITS = 256
BYTES = BITS // 8
HEX_DIGITS = BITS // 4
_HEX = re.compile(r"[0-9a-fA-F]{64}")


def from_hex(text: object, name: str = "pdq") -> bytes:
    """The 32 bytes of a hash in hex (either case); BadParameter naming ``name`` otherwise."""
    if not isinstance(text, str) or not _HEX.fullmatch(text.strip()):
        shown = repr(text)[:80]
        raise BadParameter(f"{name} must be a PDQ hash: {HEX_DIGITS} hex digits, not {shown}")
    return bytes.fromhex(text.strip())


def to_hex(packed: bytes) -> str:
    """The lower-case hex form of a 32-byte hash."""
    return packed.hex()


def as_words(packed: bytes | list[bytes] | np.ndarray) -> np.ndarray:
    """Hashes as (n, 4) uint64 rows, for XOR and popcount."""
    if isinstance(packed, bytes):
        packed = [packed]
    if isinstance(packed, np.ndarray):
        return np.ascontiguousarray(packed, dtype=np.uint8).view(np.uint64).reshape(-1, 4)
    return np.frombuffer(b"".join(packed), dtype=np.uint64).reshape(-1, 4)


def distances(queries: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """(q, n) Hamming distances between (q, 4) and (n, 4) uint64 hash rows."""
    if len(queries) == 0 or len(stored) == 0:
        return np.zeros((len(queries), len(stored)), dtype=np.int32)
    xor = queries[:, None, :] ^ stored[None, :, :]
    return np.bitwise_count(xor).sum(axis=2, dtype=np.int32)
