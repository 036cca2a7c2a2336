"""Decode what a viewer shows: EXIF orientation applied, first frame, alpha over white, RGB uint8."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from match.errors import NotAnImage, TooLarge, UnsupportedFormat

ImageInput = bytes | str | Path | Image.Image | np.ndarray

DEFAULT_MAX_PIXELS = 100_000_000


def decode_image(source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return the image as an (H, W, 3) uint8 RGB array.

    ``source`` is encoded bytes, a file path, a PIL image, or an array (H x W grey, or
    H x W x 3/4 uint8). Raises NotAnImage, UnsupportedFormat or TooLarge.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        return _pil_to_rgb(source)
    if isinstance(source, str | Path):
        source = Path(source).read_bytes()
    if not isinstance(source, bytes | bytearray | memoryview):
        raise TypeError(f"cannot decode an image from {type(source).__name__}")
    with open_image(bytes(source), max_pixels=max_pixels) as image:
        return _pil_to_rgb(image)


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open encoded bytes with Pillow, refusing non-images and decompression bombs."""
    if not data:
        raise NotAnImage("The image is empty (0 bytes)")
    if _looks_like_svg(data):
        raise UnsupportedFormat("SVG is not supported: send a raster image (JPEG, PNG, ...)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise NotAnImage("The data is not an image Match can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLarge(f"The image has more than {max_pixels} pixels") from None
    except Exception as error:  # Pillow raises many kinds on corrupt headers
        raise NotAnImage(f"The image cannot be read: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise TooLarge(f"The image is {width}x{height} pixels; the limit is {max_pixels} pixels")
    return image


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    try:
        image.seek(0)  # first frame of GIF, MPO, animated WebP, multi-page TIFF
        image.load()
        image = ImageOps.exif_transpose(image)
        if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
            image = image.convert("RGBA")
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, image)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as error:
        raise NotAnImage(f"The image is corrupt or truncated: {error}") from None


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise NotAnImage(f"An image array must be H x W, H x W x 3 or H x W x 4, not {array.shape}")
    if array.dtype != np.uint8:
        raise NotAnImage(f"An image array must be uint8, not {array.dtype}")
    if array.shape[2] == 4:
        return _pil_to_rgb(Image.fromarray(array, "RGBA"))
    return np.ascontiguousarray(array)


def _looks_like_svg(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower())
