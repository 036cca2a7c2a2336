"""A generated corpus of bad and unusual image files, for tests/test_hostile_input.py.

Every file is built here from a real photograph or from scratch, so nothing binary is checked in:
truncated and corrupt encodings, non-images posing as images, decompression bombs that declare
huge sizes in a few bytes, and valid but unusual images (animated, CMYK, 16-bit, palette, alpha,
extreme shapes, EXIF-rotated).
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
from PIL import Image

BOMB_SIDE = 50_000  # a PNG declaring 50,000 x 50,000 pixels: 2.5 gigapixels


def encode(image: Image.Image, format: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=format, **options)
    return out.getvalue()


def truncated(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def corrupted(data: bytes, seed: int = 5) -> bytes:
    """``data`` with 64 random bytes overwritten past its first kilobyte (headers intact)."""
    rng = np.random.default_rng(seed)
    array = bytearray(data)
    for position in rng.integers(1024, len(array), 64):
        array[position] = int(rng.integers(0, 256))
    return bytes(array)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_bomb(side: int = BOMB_SIDE) -> bytes:
    """A valid PNG header declaring side x side 8-bit grey pixels, with a few rows of zeros: a
    few hundred bytes that would decode to gigabytes."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side + 1) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", rows)
        + _png_chunk(b"IEND", b"")
    )


def gif_bomb(side: int = 65_535) -> bytes:
    """A GIF whose screen and one frame declare side x side pixels, with almost no data."""
    screen = b"GIF89a" + struct.pack("<HHBBB", side, side, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, side, side, 0) + b"\x02\x02\x4c\x01\x00"
    return screen + frame + b";"


def jpeg_bomb(photo: bytes, side: int = 65_000) -> bytes:
    """A real JPEG whose frame header (SOF0/SOF2) is rewritten to declare side x side pixels."""
    data = bytearray(photo)
    position = 2
    while position < len(data) - 9:
        marker = data[position + 1]
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[position + 5 : position + 9] = struct.pack(">HH", side, side)
            return bytes(data)
        position += 2 + length
    raise ValueError("no frame header found")


def animated(frames: list[Image.Image], format: str) -> bytes:
    return encode(frames[0], format, save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated(photo: Image.Image) -> bytes:
    """A JPEG whose pixels are stored turned 90° clockwise, with EXIF orientation 8 telling a
    viewer to turn them back: it shows ``photo`` upright."""
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90° counter-clockwise to display
    return encode(photo.rotate(-90, expand=True), "JPEG", quality=95, exif=exif)


def huge_exif(photo: Image.Image) -> bytes:
    """A JPEG carrying ~60 KB of EXIF text (an APP1 segment near its 64 KB limit)."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 60_000  # ImageDescription
    return encode(photo, "JPEG", quality=90, exif=exif)


def sixteen_bit(photo: Image.Image) -> bytes:
    grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")


def noise(width: int, height: int, seed: int = 11) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
