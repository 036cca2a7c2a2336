#!/usr/bin/env python3
"""Write the test suite's photos (tests/photos/) and golden fixtures (tests/fixtures/image-match/)
from the accuracy set in ../shared, with each file's source and licence in tests/photos/photos.json.

    python scripts/test_photos.py              # reads ../shared (or MATCH_SHARED_DIR)

Run once to build the set; it is kept in the repository, so the tests never need ../shared.
The choice is fixed below, in the order the tests' ``photo_paths`` fixture keeps (tests index the
first 30 by position: do not reorder, only append):

- FIRST: the first 30 originals of the accuracy set by name, the same photos in the same order
  the tests used from ../shared/photos/originals before the set moved into the repository.
- TINEYE: 17 small photos that only tests/test_api_tineye.py stores (tag ``tineye``).
- Drawings with a white shape beside black (tag ``white-beside-black``), a nearly flat wallpaper
  (``flat``), and photos made from a licensed photo: a one-channel grey JPEG (``grey``), a very
  wide and a very tall band (``wide``, ``tall``), and three JPEGs stored turned with an EXIF
  orientation tag saying how to show them upright (``exif``).

A file of at most 64 KB is copied unchanged; a larger one is decoded and saved again at JPEG
quality 85 at the same pixel size (the shared files are quality 95), which keeps the set small.
Needs Pillow (the project's virtualenv has it).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MATCH_SHARED_DIR", ROOT.parent / "shared"))
PHOTOS_OUT = ROOT / "tests" / "photos"
FIXTURES_OUT = ROOT / "tests" / "fixtures" / "image-match"

FIRST = 30
TINEYE = (
    "cab6697c04",  # monument
    "d0ed46a345",  # solar panels
    "d431e8ffca",  # dam
    "e04f54a02b",  # screwdriver, portrait
    "e5a151f070",  # hammer
    "2e6989c9db",  # tower, portrait
    "39640286ca",  # geothermal plant
    "48dd67c46e",  # fish (drawing)
    "52b6f7d98c",  # igloo
    "528633445e",  # statue, portrait
    "6dc808dd18",  # reef fish
    "77ed952c5b",  # skyscraper, portrait
    "8c04d46b5b",  # gate
    "8cd2579f44",  # city skyline at dusk
    "a42fb5b0ca",  # volleyball, square
    "efdb497fd9",  # minaret
    "e89e1a3f28",  # butterfly, square
)
WHITE_BESIDE_BLACK = ("01143cb45e", "0dc1017283", "4d792606c8", "db76e5c3be")
FLAT = "0b4cf212d6"  # a nearly flat 1600 x 900 wallpaper
GREY = "918c9ea67b"  # scikit-image's camera, CC0
WIDE = "5877ad2fb5"  # a 1600 x 900 photo: a 4:1 band of it
TALL = "e7551ed03f"  # a 1068 x 1600 photo: a 1:4 band of it
# (source index in FIRST, EXIF orientation): 6 shows the stored pixels turned 90 degrees
# clockwise, 3 turned 180 degrees, 5 mirrored along the main diagonal (transposed)
EXIF = ((1, 6), (9, 3), (20, 5))
COPY_LIMIT = 64 * 1024
QUALITY = 85

# What Pillow's transpose undoes, per orientation: the stored pixels are the upright photo
# turned the other way, so that a viewer applying the tag shows it upright.
STORE_TURNED = {
    3: Image.Transpose.ROTATE_180,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # stored turned 90 degrees counter-clockwise
}


def encoded(image: Image.Image, quality: int = QUALITY, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=True, **options)
    return out.getvalue()


def shared_file(images: dict[str, dict[str, Any]], image_id: str) -> Path:
    folder = "distractors" if images[image_id]["role"] == "distractor" else "originals"
    return SHARED / "photos" / folder / f"{image_id}.jpg"


def record(images: dict[str, dict[str, Any]], image_id: str, file: str, made: str) -> dict:
    item = images[image_id]
    return {
        "file": file,
        "id": image_id,
        "source": item["source"],
        "package": item["package"],
        "version": item["version"],
        "path": item["path"],
        "licence": item["licence"],
        "licence_from": item["licence_from"],
        "copyright": item.get("copyright"),
        "made": made,
        "tags": [],
    }


def copy_or_reencode(images: dict, image_id: str) -> dict:
    source = shared_file(images, image_id)
    target = PHOTOS_OUT / source.name
    if source.stat().st_size <= COPY_LIMIT:
        shutil.copyfile(source, target)
        made = "the shared file (RGB JPEG q95 of the package's image), unchanged"
    else:
        with Image.open(source) as image:
            target.write_bytes(encoded(image.convert("RGB")))
        made = f"the shared file (RGB JPEG q95 of the package's image), saved again at q{QUALITY}"
    return record(images, image_id, source.name, made)


def derived(images: dict, image_id: str, suffix: str, made: str, data: bytes) -> dict:
    name = f"{image_id}-{suffix}.jpg"
    (PHOTOS_OUT / name).write_bytes(data)
    return record(images, image_id, name, made)


def band(image: Image.Image, wide: bool) -> Image.Image:
    """The middle band, 4:1 (wide) or 1:4 (tall), scaled to 1200 x 300 or 300 x 1200."""
    width, height = image.size
    if wide:
        side = width // 4
        top = (height - side) // 2
        return image.crop((0, top, width, top + side)).resize((1200, 300), Image.Resampling.LANCZOS)
    side = height // 4
    left = (width - side) // 2
    return image.crop((left, 0, left + side, height)).resize((300, 1200), Image.Resampling.LANCZOS)


def main() -> None:
    set_file = SHARED / "photos" / "set.json"
    if not set_file.is_file():
        sys.exit(f"test_photos: needs the accuracy set's {set_file} (set MATCH_SHARED_DIR)")
    images = json.loads(set_file.read_text())["images"]
    originals = sorted(p.stem for p in (SHARED / "photos" / "originals").glob("*.jpg"))
    if PHOTOS_OUT.exists():
        shutil.rmtree(PHOTOS_OUT)
    PHOTOS_OUT.mkdir(parents=True)

    photos = [copy_or_reencode(images, image_id) for image_id in originals[:FIRST]]
    for image_id in TINEYE:
        photos.append(copy_or_reencode(images, image_id))
        photos[-1]["tags"].append("tineye")
    for image_id in WHITE_BESIDE_BLACK:
        photos.append(copy_or_reencode(images, image_id))
        photos[-1]["tags"].append("white-beside-black")
    photos.append(copy_or_reencode(images, FLAT))
    photos[-1]["tags"].append("flat")

    with Image.open(shared_file(images, GREY)) as image:
        grey = encoded(image.convert("L"), quality=90)
    photos.append(derived(images, GREY, "grey", "made grey (one channel, mode L), JPEG q90", grey))
    photos[-1]["tags"].append("grey")
    for image_id, wide in ((WIDE, True), (TALL, False)):
        with Image.open(shared_file(images, image_id)) as image:
            data = encoded(band(image.convert("RGB"), wide), quality=90)
        shape = "4:1 band across the middle, 1200 x 300" if wide else "1:4 band, 300 x 1200"
        photos.append(derived(images, image_id, "wide" if wide else "tall", f"its {shape}", data))
        photos[-1]["tags"].append("wide" if wide else "tall")
    for index, orientation in EXIF:
        upright = photos[index]
        with Image.open(PHOTOS_OUT / upright["file"]) as image:
            stored = image.convert("RGB").transpose(STORE_TURNED[orientation])
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = encoded(stored, quality=95, exif=exif.tobytes())
        made = (
            f"{upright['file']} (above) stored turned, with EXIF orientation {orientation} "
            "to show it upright again; JPEG q95"
        )
        photos.append(derived(images, upright["id"], f"exif{orientation}", made, data))
        photos[-1] |= {"tags": ["exif"], "exif_orientation": orientation, "upright": upright["file"]}

    for item in photos:
        with Image.open(PHOTOS_OUT / item["file"]) as image:
            item["size"] = list(image.size)
    manifest = {
        "about": (
            "The test suite's photos, in the order of the tests' photo_paths fixture (only append "
            "to it). Each is, or is made from, an image of the accuracy set in ../shared/photos "
            "(id: its id in set.json), which comes from a Debian 12 package or from scikit-image; "
            "'made' says how the file was made from it (scripts/test_photos.py). The licence is "
            "the source package's: 'licence' as its copyright file states it, in the stanza "
            "'licence_from' names, 'copyright' the holders that stanza names."
        ),
        "photos": photos,
    }
    (PHOTOS_OUT / "photos.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False))

    FIXTURES_OUT.mkdir(parents=True, exist_ok=True)
    for source in sorted((SHARED / "fixtures" / "image-match").iterdir()):
        shutil.copyfile(source, FIXTURES_OUT / source.name)
    total = sum(path.stat().st_size for path in PHOTOS_OUT.iterdir())
    print(f"{len(photos)} photos, {total / 1e6:.2f} MB in {PHOTOS_OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
