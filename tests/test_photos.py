"""The repository's test data: every photo listed with its source and licence, the listed
properties true of the files, the whole set small, and the image-match fixtures complete."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from conftest import FIXTURES, PHOTOS, photo_records
from match import signature as sig

MAX_BYTES = 5_000_000  # the photos stay a few MB: the repository is cloned by every user
NOT_PHOTOS = {"photos.json", "README.md"}


def test_every_photo_is_listed_once_with_its_source_and_licence() -> None:
    records = photo_records()
    files = [record["file"] for record in records]
    assert len(files) == len(set(files))
    on_disk = {path.name for path in PHOTOS.iterdir()} - NOT_PHOTOS
    assert sorted(on_disk) == sorted(files)
    for record in records:
        for field in ("id", "source", "package", "version", "path", "licence", "licence_from"):
            assert record[field], (record["file"], field)
        assert record["made"], record["file"]
        with Image.open(PHOTOS / record["file"]) as image:
            assert list(image.size) == record["size"], record["file"]
    assert sum((PHOTOS / file).stat().st_size for file in files) < MAX_BYTES


def test_the_set_covers_sizes_and_shapes() -> None:
    sizes = [tuple(record["size"]) for record in photo_records()]
    assert sum(max(size) >= 1600 for size in sizes) >= 3  # large
    assert sum(max(size) <= 320 for size in sizes) >= 10  # small, ~320 x 240
    assert sum(h > w for w, h in sizes) >= 5  # portrait
    assert sum(w == h for w, h in sizes) >= 3  # square


def test_tagged_photos_are_what_their_tags_say(tagged_photos: dict[str, list[Path]]) -> None:
    assert len(tagged_photos["tineye"]) >= 17
    assert len(tagged_photos["white-beside-black"]) >= 3  # test_signature checks their levels
    [flat] = tagged_photos["flat"]
    with Image.open(flat) as image:
        assert np.asarray(image.convert("L")).std() < 10
    assert np.mean(sig.image_signature(flat) == 0) > 0.8
    [grey] = tagged_photos["grey"]
    with Image.open(grey) as image:
        assert (image.format, image.mode) == ("JPEG", "L")
    [wide], [tall] = tagged_photos["wide"], tagged_photos["tall"]
    with Image.open(wide) as w, Image.open(tall) as t:
        assert w.width >= 4 * w.height and t.height >= 4 * t.width


def test_exif_turned_photos_are_decoded_upright_and_found_as_their_original(
    photo_paths: list[Path],
) -> None:
    records = [record for record in photo_records() if "exif" in record["tags"]]
    assert len(records) >= 3
    first = photo_paths[:30]
    stored = np.stack([sig.image_signature(path) for path in first])
    for record in records:
        path = PHOTOS / record["file"]
        with Image.open(path) as image:
            assert image.getexif()[0x0112] == record["exif_orientation"] != 1
            shown = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        assert np.array_equal(sig.decode_image(path), shown)
        # upright, it is its original re-encoded: the nearest of the first 30, and near
        distances = sig.normalized_distances(sig.image_signature(path), stored)
        nearest = first[int(np.argmin(distances))]
        assert nearest.name == record["upright"]
        assert distances.min() < 0.1


def test_the_image_match_fixtures_are_complete() -> None:
    golden = json.loads((FIXTURES / "golden.json").read_text())
    readme = (FIXTURES / "README.md").read_text()
    assert len(golden["images"]) == 4
    for item in golden["images"].values():
        assert (FIXTURES / item["file"]).is_file()
        assert item["file"] in readme  # with its source and licence
    assert len(golden["distances"]) == 6
