"""Partial matching's library (match.local) on real photos: keypoints, words, the stored form,
verification and its overlaps, and the score scale."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from match.local import FRAME, WORDS, LocalFeatures, local_features, pack, unpack, verify
from match.local.features import MAX_KEYPOINTS
from match.local.score import MIN_INLIERS, local_score
from match.signature.decode import decode_pixels


@cache
def features_of(path: Path) -> LocalFeatures:
    return local_features(decode_pixels(path))


def edited(path: Path, edit: Callable[[Image.Image], Image.Image]) -> LocalFeatures:
    image = edit(Image.open(path).convert("RGB"))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return local_features(decode_pixels(out.getvalue()))


def centre_crop(share: float) -> Callable[[Image.Image], Image.Image]:
    def crop(image: Image.Image) -> Image.Image:
        width, height = image.size
        w, h = round(width * share), round(height * share)
        left, top = (width - w) // 2, (height - h) // 2
        return image.crop((left, top, left + w, top + h))

    return crop


@pytest.fixture(scope="module")
def photo(photo_paths: list[Path]) -> Path:
    """The first photo with plenty of keypoints."""
    return next(p for p in photo_paths if len(features_of(p).words) == MAX_KEYPOINTS)


def test_features_have_consistent_shapes_inside_the_frame(photo: Path) -> None:
    features = features_of(photo)
    n = len(features.words)
    assert n == MAX_KEYPOINTS
    assert features.points.shape == (n, 2) and features.bits.shape == (n,)
    assert max(features.size) == FRAME
    assert np.all(features.points >= 0)
    assert np.all(features.points[:, 0] <= features.size[0])
    assert np.all(features.points[:, 1] <= features.size[1])
    assert features.words.max() < WORDS
    assert len(np.unique(features.words)) > n // 2  # words discriminate, not a handful


def test_a_flat_image_has_no_features() -> None:
    flat = np.full((300, 400, 3), 128, np.uint8)
    features = local_features(flat)
    assert len(features.words) == 0 and features.points.shape == (0, 2)


def test_a_tiny_image_is_enlarged_to_the_frame() -> None:
    rng = np.random.default_rng(3)
    tiny = (rng.random((12, 20)) * 255).astype(np.uint8)
    features = local_features(tiny)
    assert features.size == (FRAME, round(12 * FRAME / 20))


def test_the_stored_form_round_trips(photo: Path) -> None:
    features = features_of(photo)
    data = pack(features)
    assert len(data) == 7 + 14 * len(features.words)
    back = unpack(data)
    assert back.size == features.size
    assert np.array_equal(back.words, features.words)
    assert np.array_equal(back.bits, features.bits)
    assert np.abs(back.points - features.points).max() <= 1 / 32 + 1e-6


@pytest.mark.parametrize(
    "data", [b"", b"\x01\x00", b"\x02" + bytes(6), b"\x01" + bytes(5) + b"\x05"]
)
def test_unreadable_stored_forms_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        unpack(data)


def test_a_crop_verifies_with_its_overlaps(photo: Path) -> None:
    query = edited(photo, centre_crop(0.6))
    verified = verify(query, features_of(photo))
    assert verified is not None and verified.inliers >= 20
    assert verified.query_overlap == pytest.approx(100, abs=5)
    assert verified.target_overlap == pytest.approx(36, abs=5)


def test_an_image_pasted_small_on_a_page_verifies(photo: Path) -> None:
    def paste(image: Image.Image) -> Image.Image:
        page = Image.new("RGB", (image.width * 2, image.height * 2), "white")
        page.paste(image.resize((image.width // 2, image.height // 2)), (40, 60))
        return page

    verified = verify(edited(photo, paste), features_of(photo))
    assert verified is not None and verified.inliers >= MIN_INLIERS
    assert verified.query_overlap == pytest.approx(100 / 16, abs=3)
    assert verified.target_overlap == pytest.approx(100, abs=5)


def test_unrelated_photos_do_not_verify(photo_paths: list[Path], photo: Path) -> None:
    others = [p for p in photo_paths[:12] if p != photo]
    scores = [
        local_score(v.inliers) for p in others if (v := verify(features_of(p), features_of(photo)))
    ]
    assert all(score == 0 for score in scores)


def test_the_score_starts_above_the_cutoff_and_stays_under_100() -> None:
    assert local_score(MIN_INLIERS - 1) == 0
    scores = [local_score(n) for n in range(MIN_INLIERS, 300)]
    assert 55 < scores[0] < 60
    assert all(a < b for a, b in itertools.pairwise(scores) if b < 99)
    assert scores[-1] == pytest.approx(99, abs=1e-6)


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_a_turned_crop_reports_the_quarter_turns_that_bring_it_upright(
    photo: Path, turns: int
) -> None:
    def turned_crop(image: Image.Image) -> Image.Image:
        return centre_crop(0.7)(image).rotate(90 * turns, expand=True)

    verified = verify(edited(photo, turned_crop), features_of(photo))
    assert verified is not None
    # turning the query by (4 - turns) more quarter turns brings it back upright
    assert verified.quarter_turns == (4 - turns) % 4
