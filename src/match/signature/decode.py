"""Decode what a viewer shows: first frame, EXIF orientation applied, alpha over white, 8 bits.

Every route (encoded bytes, a path, a PIL image, an array) ends in the same RGB (or grey) pixels,
so every route gives the same signature.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from match.errors import NotAnImage, TooLarge, UnsupportedFormat

ImageInput = bytes | bytearray | memoryview | str | Path | Image.Image | np.ndarray

DEFAULT_MAX_PIXELS = 100_000_000

_EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_GREY_MODES = {"L", "1"}


def decode_image(source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return the image as an (H, W, 3) uint8 RGB array.

    ``source`` is encoded bytes, a file path, a PIL image, or an array (H x W grey, or
    H x W x 3/4 uint8). Raises NotAnImage, UnsupportedFormat or TooLarge.
    """
    pixels = decode_pixels(source, max_pixels=max_pixels)
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    return pixels


def decode_pixels(
    source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> np.ndarray:
    """(H, W, 3) RGB or (H, W) grey uint8 pixels; grey only where RGB would have R = G = B.

    ``min_side``: a JPEG may be decoded scaled down by 1/2, 1/4 or 1/8 (libjpeg DCT scaling) as
    long as its shorter side stays at least this long. Other formats decode at full size.
    """
    return decode_sized(source, max_pixels=max_pixels, min_side=min_side)[0]


def decode_sized(
    source: ImageInput, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """decode_pixels, and the image's (width, height) as it is viewed (EXIF orientation
    applied), at full size even when ``min_side`` let a JPEG decode smaller."""
    if isinstance(source, np.ndarray):
        pixels = _array_pixels(source, max_pixels)
        return pixels, (pixels.shape[1], pixels.shape[0])
    if isinstance(source, Image.Image):
        _check_size(source.size, max_pixels)
        return _viewable_pixels(source, min_side)
    if isinstance(source, str | Path):
        source = _read_file(Path(source))
    if not isinstance(source, bytes | bytearray | memoryview):
        raise TypeError(f"cannot decode an image from {type(source).__name__}")
    with open_image(bytes(source), max_pixels=max_pixels) as image:
        return _viewable_pixels(image, min_side)


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open encoded bytes with Pillow (header only), refusing non-images and oversized images.

    The pixel count comes from the header, so a decompression bomb is refused before decoding.
    """
    if not data:
        raise NotAnImage("The image is empty (0 bytes)")
    if _looks_like_svg(data):
        raise UnsupportedFormat("SVG is not supported: send a raster image (JPEG, PNG, ...)")
    try:
        with warnings.catch_warnings():
            # our own limit below replaces Pillow's global one
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise NotAnImage("The data is not an image Match can read") from None
    except Image.DecompressionBombError:
        raise TooLarge(f"The image has more than {max_pixels} pixels") from None
    except Exception as error:  # Pillow raises many kinds on corrupt headers
        raise NotAnImage(f"The image cannot be read: {error}") from None
    try:
        _check_size(image.size, max_pixels)
    except TooLarge:
        image.close()
        raise
    return image


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotAnImage(f"No such file: {path}") from None
    except IsADirectoryError:
        raise NotAnImage(f"{path} is a directory, not an image") from None


def _check_size(size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise NotAnImage(f"The image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise TooLarge(f"The image is {width}x{height} pixels; the limit is {max_pixels} pixels")


def _viewable_pixels(
    image: Image.Image, min_side: int | None
) -> tuple[np.ndarray, tuple[int, int]]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt EXIF, truncated metadata: still an image
            image.seek(0)  # first frame of GIF, MPO, animated WebP, multi-page TIFF
            width, height = image.size
            if min_side is not None:
                _draft(image, min_side)
            image.load()
            turned = image.getexif().get(_EXIF_ORIENTATION, 1) in _TRANSPOSING
            image = _apply_exif_orientation(image)
            return _eight_bit_pixels(image), (height, width) if turned else (width, height)
    except (OSError, SyntaxError, EOFError, Image.DecompressionBombError) as error:
        raise NotAnImage(f"The image is corrupt or truncated: {error}") from None
    except ValueError as error:
        raise UnsupportedFormat(f"The image's pixel format is not supported: {error}") from None


_TRANSPOSING = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def _draft(image: Image.Image, min_side: int) -> None:
    width, height = image.size
    shorter = min(width, height)
    if shorter <= 2 * min_side or image.format != "JPEG":
        return
    scale = min_side / shorter
    image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    # exif_transpose copies the whole image even when there is nothing to do: ask first
    if image.getexif().get(_EXIF_ORIENTATION, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def _eight_bit_pixels(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        # 16-bit grey: keep the high byte, as Pillow does for 16-bit RGB
        wide = np.asarray(image, dtype=np.int64)
        return np.clip(wide >> 8, 0, 255).astype(np.uint8)
    if mode == "RGBA":
        rgba = np.asarray(image)
        if rgba[:, :, 3].min() == 255:  # opaque after all: compositing would change nothing
            return rgba[:, :, :3]
        return _over_white(image)
    if "A" in mode or "a" in mode or "transparency" in image.info:
        return _over_white(image.convert("RGBA"))
    if mode in _GREY_MODES:
        return np.asarray(image.convert("L") if mode != "L" else image, dtype=np.uint8)
    if mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def _over_white(rgba: Image.Image) -> np.ndarray:
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)


def _array_pixels(array: np.ndarray, max_pixels: int) -> np.ndarray:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise NotAnImage(f"An image array must be H x W, H x W x 3 or H x W x 4, not {array.shape}")
    if array.dtype != np.uint8:
        raise NotAnImage(f"An image array must be uint8, not {array.dtype}")
    _check_size((array.shape[1], array.shape[0]), max_pixels)
    if array.ndim == 3 and array.shape[2] == 4:
        if array[:, :, 3].min() == 255:
            return array[:, :, :3]
        return _over_white(Image.fromarray(np.ascontiguousarray(array), "RGBA"))
    return array


def _looks_like_svg(data: bytes) -> bool:
    head = data[:512].lstrip().lower()
    xml_svg = head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()
    return head.startswith(b"<svg") or xml_svg
