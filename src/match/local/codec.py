"""Stored form of local features: 14 bytes a keypoint, little-endian, versioned.

Layout: version (u8), frame width and height (u16 each), keypoint count n (u16), then n points
as u16 pairs in 1/16 pixel, n words as u16, n Hamming-embedding bit sets as u64.
"""

from __future__ import annotations

import struct

import numpy as np

from match.local.verify import LocalFeatures

VERSION = 1
_HEADER = struct.Struct("<BHHH")
_SUBPIXEL = 16


def pack(features: LocalFeatures) -> bytes:
    n = len(features.words)
    points = np.rint(features.points * _SUBPIXEL).clip(0, 65535).astype("<u2")
    return b"".join(
        (
            _HEADER.pack(VERSION, *features.size, n),
            points.tobytes(),
            features.words.astype("<u2").tobytes(),
            features.bits.astype("<u8").tobytes(),
        )
    )


def unpack(data: bytes) -> LocalFeatures:
    if len(data) < _HEADER.size:
        raise ValueError("stored local features are truncated")
    version, width, height, n = _HEADER.unpack_from(data)
    if version != VERSION or len(data) != _HEADER.size + 12 * n + 2 * n:
        raise ValueError(f"stored local features have version {version} or a wrong length")
    offset = _HEADER.size
    points = np.frombuffer(data, "<u2", 2 * n, offset).reshape(n, 2)
    offset += 4 * n
    words = np.frombuffer(data, "<u2", n, offset)
    offset += 2 * n
    bits = np.frombuffer(data, "<u8", n, offset)
    return LocalFeatures(
        (points.astype(np.float32) / _SUBPIXEL),
        words.astype(np.uint32),
        bits.astype(np.uint64),
        (width, height),
    )
