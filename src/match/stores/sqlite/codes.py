"""Compact forms of a signature: the packed blob kept on disk, and the binary code the candidate
index scans.

The blob packs three signature values (each -2..2, five levels) into one byte (5**3 = 125 < 256):
648 values become 216 bytes, losslessly.

The code is a random-hyperplane hash (Charikar's SimHash): bit i is set when the signature lies on
the positive side of hyperplane i. For two signatures at angle theta, each bit differs with
probability theta / pi, so the Hamming distance between codes is Binomial(bits, theta / pi). The
normalized distance d = |a - b| / (|a| + |b|) bounds the angle: d >= sin(theta / 2), equality when
|a| = |b|. So every stored image under a distance cutoff c has theta <= 2 asin(c), and a Hamming
threshold at the far tail of Binomial(bits, 2 asin(c) / pi) keeps it with probability >= 1 - miss.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from match.signature import SIGNATURE_LENGTH

LEVELS = 5

# LEVELS**3 rows: the three values (-2..2) that each packed byte stands for
_UNPACK = (
    np.stack(np.unravel_index(np.arange(LEVELS**3), (LEVELS,) * 3), axis=1).astype(np.int8) - 2
)
# the same three values and a 0 as one uint32 per byte value: one take() unpacks a blob four
# bytes at a time, then the zeros are dropped (indexing rows of three bytes is 1.7x slower:
# 48 against 28 ms for the 20k candidates of a search at 1M)
_UNPACK_PADDED = np.zeros((256, 4), dtype=np.int8)
_UNPACK_PADDED[: LEVELS**3, :3] = _UNPACK
_UNPACK_WORDS = _UNPACK_PADDED.view(np.uint32).ravel()


def pack_signature(signature: np.ndarray) -> bytes:
    """216 bytes for a (648,) signature with values in -2..2 (checked by the caller)."""
    triples = (signature.astype(np.uint8) + 2).reshape(-1, 3)
    return (triples[:, 0] * 25 + triples[:, 1] * 5 + triples[:, 2]).astype(np.uint8).tobytes()


def unpack_signatures(blobs: list[bytes]) -> np.ndarray:
    """(n, 648) int8 signatures from packed blobs."""
    if not blobs:
        return np.zeros((0, SIGNATURE_LENGTH), dtype=np.int8)
    packed = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    fours = np.take(_UNPACK_WORDS, packed).view(np.int8).reshape(len(blobs), -1, 4)
    return np.ascontiguousarray(fours[:, :, :3]).reshape(len(blobs), SIGNATURE_LENGTH)


class HyperplaneCoder:
    """Maps signatures to ``bits``-bit codes, as ``words`` uint64 per signature. The hyperplanes
    come from ``seed``, which the store keeps, so every process computes the same codes."""

    def __init__(self, bits: int, seed: int) -> None:
        if bits % 128:
            raise ValueError("bits must be a multiple of 128")
        self.bits = bits
        self.words = bits // 64
        generator = np.random.default_rng(seed)
        # Gaussian hyperplanes scaled and rounded to integers: every projection is then an
        # exact integer in float64 (|sum| << 2**53), so a signature gets the same code whatever
        # the batch size or BLAS kernel that computed it.
        planes = generator.standard_normal((SIGNATURE_LENGTH, bits)) * 1000.0
        self._planes = np.round(planes)

    def encode(self, signatures: np.ndarray) -> np.ndarray:
        """(n, words) uint64 codes of (n, 648) signatures."""
        projected = np.atleast_2d(signatures).astype(np.float64) @ self._planes
        packed = np.packbits(projected > 0, axis=1)
        return packed.view(np.uint64).reshape(-1, self.words)

    def stages(self, cutoff: float, miss: float) -> list[tuple[int, int]]:
        """The candidate cascade for ``cutoff``: (words, Hamming threshold) on the first half of
        the code, then on all of it; each stage drops an image under the cutoff with
        probability <= miss / 2."""
        half = self.words // 2
        return [
            (half, hamming_threshold(half * 64, cutoff, miss / 2)),
            (self.words, hamming_threshold(self.bits, cutoff, miss / 2)),
        ]


@lru_cache(maxsize=256)
def hamming_threshold(bits: int, cutoff: float, miss: float) -> int:
    """Smallest t with P(Binomial(bits, p) > t) <= miss, p the bit-flip probability at the
    widest angle a pair under ``cutoff`` can have."""
    if cutoff >= 1.0:
        return bits
    p = 2.0 * math.asin(max(cutoff, 0.0)) / math.pi
    if p <= 0.0:
        return 0
    tail = 0.0
    for t in range(bits - 1, -1, -1):
        tail += _binomial_pmf(bits, t + 1, p)  # now tail = P(X > t)
        if tail > miss:
            return t + 1
    return 0


def _binomial_pmf(n: int, k: int, p: float) -> float:
    log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
    return math.exp(log + k * math.log(p) + (n - k) * math.log1p(-p))
