"""Partial matching's library (match.local) on real photos: keypoints, words, the stored form,
verification and its overlaps, and the score scale."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from dataclasses import replace
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from match.local import (
    FRAME,
    STORED,
    WORDS,
    LocalFeatures,
    local_features,
    local_features_and_mirror,
    pack,
    unpack,
    verify,
    verify_all,
    vocabulary,
)
from match.local.features import (
    CHEAP_QUERY,
    LEGACY,
    MAX_KEYPOINTS,
    SPLIT_QUERY,
    STORED_500,
    STORED_800,
    Extraction,
    keypoints,
)
from match.local.mirror import mirrored_descriptors
from match.local.score import MIN_INLIERS, local_score
from match.local.verify import tentative_matches
from match.signature import ORIENTATIONS, normalized_distances, orientation_signatures
from match.signature.decode import decode_pixels


@cache
def features_of(path: Path) -> LocalFeatures:
    return local_features(decode_pixels(path))


def jpeg(path: Path, edit: Callable[[Image.Image], Image.Image]) -> bytes:
    image = edit(Image.open(path).convert("RGB"))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def edited(path: Path, edit: Callable[[Image.Image], Image.Image]) -> LocalFeatures:
    return local_features(decode_pixels(jpeg(path, edit)))


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


# -- mirror images (issue 14) -----------------------------------------------------------------
def opencv_sift(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's own SIFT keypoints of a grey image: points, angles, descriptors."""
    found, descriptors = cv2.SIFT_create(nfeatures=1000).detectAndCompute(grey, None)
    points = np.array([k.pt for k in found])
    return points, np.array([k.angle for k in found]), descriptors


def relative_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


def test_a_mirror_images_sift_descriptors_are_the_permuted_descriptors(photo: Path) -> None:
    grey = cv2.cvtColor(decode_pixels(photo), cv2.COLOR_RGB2GRAY)
    points, angles, descriptors = opencv_sift(grey)
    flipped_points, flipped_angles, flipped = opencv_sift(np.ascontiguousarray(grey[:, ::-1]))
    # pairs: a keypoint of the mirror image where the mirror puts one of the photo's (OpenCV's
    # points lie 0.25 px right of pixel centres, so x goes to width - 0.5 - x), turned from a
    # to 180 - a degrees (not every keypoint has its twin: the pyramid's halvings keep every
    # other pixel, which is not symmetric on an even width)
    expected = points * [-1, 1] + [grey.shape[1] - 0.5, 0]
    near = np.linalg.norm(expected[:, None] - flipped_points[None], axis=2) < 0.5
    turned = np.abs((angles[:, None] + flipped_angles[None]) % 360 - 180) < 5
    i, j = np.nonzero(near & turned)
    assert len(np.unique(i)) > 0.6 * len(points)
    original, mirror = descriptors[i], flipped[j]
    assert np.median(relative_distances(mirrored_descriptors(original), mirror)) < 0.01
    assert np.median(relative_distances(original, mirror)) > 0.3
    # any other reflection of the grid's rows, columns or orientation bins is far off
    grid = np.arange(128).reshape(4, 4, 8)
    reflected_bins = np.concatenate([grid[..., :1], grid[..., :0:-1]], axis=2)  # o -> -o
    for other in (grid[:, ::-1], grid[::-1, ::-1], grid[::-1], reflected_bins):
        assert np.median(relative_distances(original[:, other.ravel()], mirror)) > 0.3


def test_the_mirror_features_are_those_of_the_mirror_image(photo: Path) -> None:
    pixels = decode_pixels(photo)
    features, mirror = local_features_and_mirror(pixels)
    assert np.array_equal(features.words, features_of(photo).words)
    assert np.array_equal(features.bits, features_of(photo).bits)
    flipped = local_features(np.ascontiguousarray(pixels[:, ::-1]))
    # the mirror's keypoints lie where the mirror image's are (up to the choice of 500) and
    # mostly share their words: a keypoint may have partners at one place (several angles)
    near = np.linalg.norm(mirror.points[:, None] - flipped.points[None], axis=2) < 0.1
    placed = near.any(axis=1)
    assert placed.mean() > 0.7
    same_word = (near & (mirror.words[:, None] == flipped.words[None])).any(axis=1)
    assert same_word[placed].mean() > 0.9


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_a_mirrored_crop_verifies_as_the_signature_names_its_orientation(
    photo: Path, turns: int
) -> None:
    def mirrored_turned(image: Image.Image) -> Image.Image:
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(90 * turns, expand=True)

    stored = features_of(photo)
    query, mirror = local_features_and_mirror(
        decode_pixels(jpeg(photo, lambda image: centre_crop(0.7)(mirrored_turned(image))))
    )
    unmirrored = verify(query, stored)  # SIFT is not mirror-invariant
    assert unmirrored is None or local_score(unmirrored.inliers) == 0
    verified = verify(mirror, stored, mirror_of="query")
    assert verified is not None and verified.inliers >= 20 and verified.mirrored
    assert verified.target_overlap == pytest.approx(49, abs=5)
    # the orientation the signature finds for the whole mirrored, turned photo
    whole = orientation_signatures(jpeg(photo, mirrored_turned))
    upright = orientation_signatures(photo)[:1]
    best = int(np.argmin(normalized_distances(whole, upright)[:, 0]))
    assert ORIENTATIONS[best].startswith("mirror")
    assert 4 * verified.mirrored + verified.quarter_turns == best


def test_verifying_many_targets_at_once_is_verifying_each(
    photo_paths: list[Path], photo: Path
) -> None:
    def mirrored_crop(image: Image.Image) -> Image.Image:
        return centre_crop(0.6)(image).transpose(Image.Transpose.FLIP_LEFT_RIGHT)

    query = edited(photo, centre_crop(0.6))
    _, mirror = local_features_and_mirror(decode_pixels(jpeg(photo, mirrored_crop)))
    nothing = LocalFeatures(
        np.zeros((0, 2), np.float32), np.zeros(0, np.uint32), np.zeros(0, np.uint64), (640, 480)
    )
    targets = [features_of(p) for p in photo_paths[:12] if p != photo]
    targets += [features_of(photo), nothing]
    for features, mirror_of in ((query, None), (mirror, "query")):
        together = verify_all(features, targets, mirror_of=mirror_of)
        alone = [verify(features, target, mirror_of=mirror_of) for target in targets]
        assert together[-2] is not None and together[-1] is None  # the photo; no keypoints
        for a, b in zip(together, alone, strict=True):
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                assert a.inliers == b.inliers and np.array_equal(a.matrix, b.matrix)


def _plain_quantise(descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Words and bits as they were computed before quantise was made faster: the nearest top
    centroid, then the nearest of its leaves; the signs of the projected residual, summed."""
    vocab = vocabulary()
    top_norms = np.einsum("kd,kd->k", vocab.top, vocab.top)
    top = np.argmin(top_norms - 2.0 * descriptors @ vocab.top.T, axis=1)
    words = np.empty(len(descriptors), np.uint32)
    for cluster in np.unique(top):
        members = np.flatnonzero(top == cluster)
        leaves = vocab.leaves[cluster]
        norms = np.einsum("kd,kd->k", leaves, leaves)
        block = descriptors[members]
        nearest = np.argmin(norms - 2.0 * block @ leaves.T, axis=1)
        words[members] = cluster * len(leaves) + nearest
    residuals = descriptors - vocab.leaves.reshape(-1, descriptors.shape[1])[words]
    signs = (residuals @ vocab.projection.T > 0).astype(np.uint64)
    bits = (signs * (np.uint64(1) << np.arange(64, dtype=np.uint64))).sum(axis=1, dtype=np.uint64)
    return words, bits


def test_quantise_gives_the_words_and_bits_of_the_plain_computation(
    photo_paths: list[Path],
) -> None:
    # stored words and bits must not change with the code that computes them: features stored
    # before must still match the same image's features extracted now
    for path in photo_paths[:6]:
        descriptors = keypoints(decode_pixels(path)).descriptors
        words, bits = vocabulary().quantise(descriptors)
        plain_words, plain_bits = _plain_quantise(descriptors)
        assert words.dtype == np.uint32 and bits.dtype == np.uint64
        assert np.array_equal(words, plain_words) and np.array_equal(bits, plain_bits)
        near_words, near_bits, source = vocabulary().quantise_near(descriptors, 2, 1.15)
        first = np.searchsorted(source, np.arange(len(descriptors)))
        assert np.array_equal(near_words[first], plain_words)
        assert np.array_equal(near_bits[first], plain_bits)


def test_multiple_assignment_keeps_the_nearest_word_first(photo: Path) -> None:
    descriptors = keypoints(decode_pixels(photo)).descriptors
    words, bits = vocabulary().quantise(descriptors)
    near_words, near_bits, source = vocabulary().quantise_near(descriptors, 3, 1.2)
    assert np.array_equal(np.unique(source), np.arange(len(descriptors)))
    assert np.all(np.diff(source) >= 0)  # each descriptor's words together, in order
    first = np.searchsorted(source, np.arange(len(descriptors)))
    assert np.array_equal(near_words[first], words) and np.array_equal(near_bits[first], bits)
    per_keypoint = np.bincount(source)
    assert per_keypoint.max() <= 3 and per_keypoint.mean() > 1.05  # some, not all, get more
    # every word of a descriptor is a distinct leaf
    assert len(np.unique(source.astype(np.int64) * WORDS + near_words)) == len(near_words)


def test_a_query_with_several_words_per_keypoint_matches_each_keypoint_once(
    photo: Path,
) -> None:
    several = replace(STORED, assignments=3, assignment_ratio=1.3)
    query = local_features(decode_pixels(jpeg(photo, centre_crop(0.6))), several)
    assert query.keypoints is not None and len(query.words) > len(np.unique(query.keypoints))
    q, _ = tentative_matches(query, features_of(photo))
    assert len(np.unique(query.keypoints[q])) == len(q)
    single = local_features(decode_pixels(jpeg(photo, centre_crop(0.6))), STORED)
    verified, alone = verify(query, features_of(photo)), verify(single, features_of(photo))
    assert verified is not None and alone is not None and verified.inliers >= alone.inliers


@pytest.mark.parametrize(
    "stored", [LEGACY, STORED_800, STORED_500], ids=["legacy", "800", "320px_500"]
)
@pytest.mark.parametrize("extraction", [SPLIT_QUERY, CHEAP_QUERY], ids=["fine", "cheap"])
def test_a_query_extracted_otherwise_finds_features_stored_with_an_earlier_extraction(
    photo: Path, extraction: Extraction, stored: Extraction
) -> None:
    # stores filled before issue 13 hold legacy features, those filled on 2026-12-07 features
    # with 800 then 500 described on the 320 px frame: both passes of a search find them
    stored_before = local_features(decode_pixels(photo), stored)
    query = local_features(decode_pixels(jpeg(photo, centre_crop(0.6))), extraction)
    verified = verify(query, stored_before)
    assert verified is not None and verified.inliers >= 20
    assert verified.target_overlap == pytest.approx(36, abs=5)


def test_fitting_only_the_most_matched_targets_keeps_the_true_one(
    photo_paths: list[Path], photo: Path
) -> None:
    # a 60% crop among other photos, its photo last: counting tentative matches singles it out
    # and it is fitted exactly as without the limit; besides it only the first target (the
    # store's best) may be fitted, the others are not fitted at all
    query = edited(photo, centre_crop(0.6))
    targets = [features_of(p) for p in photo_paths[:12] if p != photo]
    truth = len(targets)
    targets.append(features_of(photo))
    everything = verify_all(query, targets)
    one = verify_all(query, targets, fits=1)
    assert {n for n, v in enumerate(one) if v is not None} - {0} == {truth}
    assert one[truth] is not None and everything[truth] is not None
    assert one[truth].inliers == everything[truth].inliers
    assert np.array_equal(one[truth].matrix, everything[truth].matrix)
    assert verify_all(query, targets, fits=0) == [None] * len(targets)
    fitted = [n for n, v in enumerate(verify_all(query, targets, fits=3)) if v is not None]
    assert truth in fitted and len(fitted) <= 6
