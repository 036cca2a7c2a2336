"""The accuracy set's photos, which the benchmarks measure on and the repository does not hold.

They live in ``../shared/photos`` beside the checkout (``originals/``, ``distractors/``,
``set.json``: /work/shared/photos/README.md), or wherever MATCH_SHARED_DIR points. The test
suite never reads them: its photos are in tests/photos/. A benchmark that needs them calls
``photos_dir`` first, which stops with a message saying so when they are not there.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MATCH_SHARED_DIR", ROOT.parent / "shared"))
PHOTOS = SHARED / "photos"


def photos_dir(script: str, photos: Path = PHOTOS) -> Path:
    """``photos`` (by default ../shared/photos), or exit naming what ``script`` needs."""
    if not any((photos / "originals").glob("*.jpg")):
        sys.exit(
            f"{script}: needs the accuracy set's photos in {photos}/originals, which are not "
            "part of the repository: put the shared folder beside the checkout (../shared) or "
            "set MATCH_SHARED_DIR (the tests use tests/photos/ and do not need it)"
        )
    return photos


def recompressed(data: bytes, quality: int = 50) -> bytes:
    """A photo's bytes as a JPEG of this quality: the copy a search is timed with."""
    with Image.open(io.BytesIO(data)) as image:
        out = io.BytesIO()
        image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()
