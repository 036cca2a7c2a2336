"""PDQ hashes of decoded pixels, with the maintained binding ``pdqhash`` (Meta's C++ code):
the upright hash and quality, and the 8 dihedral hashes PDQ computes in one pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pdqhash

DIHEDRAL = (0, 1, 2, 3, 5, 6, 4, 7)
"""For each of match.signature.ORIENTATIONS (original, rotate_90, ..., mirror_rotate_270), the
index of its hash in pdqhash.compute_dihedral's list (original, rotate 90, 180, 270, flip
vertical, flip horizontal, transpose, anti-transpose); tests/test_pdq.py checks it against the
hashes of the oriented images."""


@dataclass(frozen=True)
class PdqHash:
    """One image's hash (32 bytes, PDQ's hex order) and quality (0-100)."""

    hash: bytes
    quality: int


def _rgb(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3], dtype=np.uint8)


def _packed(bits: np.ndarray) -> bytes:
    # pdqhash lists bit 255 first, so packing most-significant-bit first gives PDQ's hex order
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


def pdq_hash(pixels: np.ndarray) -> PdqHash:
    """The upright PDQ hash of (H, W, 3) or (H, W) uint8 pixels."""
    bits, quality = pdqhash.compute(_rgb(pixels))
    return PdqHash(_packed(bits), int(quality))


def dihedral_hashes(pixels: np.ndarray) -> tuple[list[bytes], int]:
    """The PDQ hashes of the pixels in the 8 orientations, in ORIENTATIONS order, and the
    quality."""
    hashes, quality = pdqhash.compute_dihedral(_rgb(pixels))
    return [_packed(hashes[DIHEDRAL[k]]) for k in range(8)], int(quality)
