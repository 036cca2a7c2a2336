"""The small picture of a stored image that the web page shows: made at add time from the pixels
the signature was computed on (decoded once: EXIF orientation applied, alpha over white), its
long side at most THUMBNAIL_SIDE pixels, as WebP. Stores keep it beside the record
(Store.thumbnail); MATCH_THUMBNAILS=false stores none."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

THUMBNAIL_SIDE = 256
"""Longest side of a thumbnail, in pixels: sharp in the page's grid (about 180 CSS px)."""
QUALITY = 70
MEDIA_TYPE = "image/webp"


def make_thumbnail(pixels: np.ndarray) -> bytes:
    """A WebP thumbnail of (H, W, 3) RGB or (H, W) grey uint8 pixels; never larger than the
    image itself."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    # reducing_gap: a fast box reduction first, then a good filter over the last factor of 2
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BICUBIC, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, "WEBP", quality=QUALITY, method=2)
    return out.getvalue()
