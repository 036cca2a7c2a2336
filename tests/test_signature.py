"""The signature engine: golden values, equality with the float64 reference, properties."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from match import signature as sig
from match.signature import _reference as reference
from match.signature.goldberg import pixels_signature
from match.signature.orientations import orient
from match.signature.words import WORD_COUNT

# 1 x 36, grey, four levels 3 apart: found by --hypothesis-seed=1
ONE_PIXEL_HIGH = [
    103,
    106,
    109,
    109,
    109,
    109,
    100,
    106,
    100,
    109,
    109,
    106,
    109,
    106,
    100,
    103,
    106,
    109,
]
ONE_PIXEL_HIGH += [
    109,
    103,
    106,
    100,
    103,
    100,
    100,
    109,
    103,
    100,
    106,
    100,
    100,
    100,
    100,
    103,
    109,
    100,
]


@pytest.fixture(scope="module")
def golden(fixtures_dir: Path) -> dict:
    return json.loads((fixtures_dir / "golden.json").read_text())


@pytest.fixture(scope="module")
def golden_signatures(golden: dict, fixtures_dir: Path) -> dict[str, np.ndarray]:
    return {
        key: sig.image_signature(fixtures_dir / item["file"])
        for key, item in golden["images"].items()
    }


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


# -- golden values ----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_signatures_equal_golden(golden: dict, fixtures_dir: Path, mode: str) -> None:
    # the fixtures are small JPEGs: fast mode decodes them at full size too
    for item in golden["images"].values():
        signature = sig.image_signature(fixtures_dir / item["file"], mode=mode)
        assert signature.dtype == np.int8
        assert signature.tolist() == item["signature"]


def test_words_equal_golden(golden: dict, golden_signatures: dict) -> None:
    for key, item in golden["images"].items():
        words = sig.words(golden_signatures[key])
        assert words.shape == (WORD_COUNT,)
        assert words.tolist() == item["words"]


def test_distances_equal_golden(golden: dict, golden_signatures: dict) -> None:
    for pair, expected in golden["distances"].items():
        first, second = pair.split("-")
        a, b = golden_signatures[first], golden_signatures[second]
        assert sig.normalized_distances(a, b[None])[0] == pytest.approx(expected, abs=1e-12)
        assert sig.normalized_distances(b, a[None])[0] == pytest.approx(expected, abs=1e-12)


def test_reference_implementation_equals_golden(golden: dict, fixtures_dir: Path) -> None:
    # the oracle the fast implementation is compared with below must itself be right
    for item in golden["images"].values():
        assert reference.image_signature(fixtures_dir / item["file"]).tolist() == item["signature"]


def test_words_of_many_signatures_are_the_rows(golden_signatures: dict) -> None:
    stacked = np.stack(list(golden_signatures.values()))
    assert np.array_equal(sig.words(stacked), np.stack([sig.words(s) for s in stacked]))


# -- equality with the float64 reference ------------------------------------------------------
# On the repository's photos (tests/photos: photos of every size and shape, drawings, a flat, a
# grey and EXIF-turned ones); bench/exactness.py checks every photo of the accuracy set.
def test_exact_equals_reference_on_every_photo(photo_paths: list[Path]) -> None:
    mismatched = []
    for path in photo_paths:
        pixels = sig.decode_image(path)
        if not np.array_equal(sig.image_signature(pixels), reference.image_signature(pixels)):
            mismatched.append(path.name)
    assert len(photo_paths) >= 50
    assert mismatched == []


def test_orientations_equal_reference_on_photos(photo_paths: list[Path]) -> None:
    for path in photo_paths[::4]:
        pixels = sig.decode_image(path)
        ours = sig.orientation_signatures(pixels)
        assert np.array_equal(ours, reference.orientation_signatures(pixels)), path.name


def test_exact_equals_image_match_itself(
    photo_paths: list[Path], tagged_photos: dict[str, list[Path]]
) -> None:
    # image-match 1.1.2 itself, which `make install` installs (--no-deps, with scikit-image)
    goldberg = pytest.importorskip("image_match.goldberg")
    signer = goldberg.ImageSignature()
    for path in photo_paths:
        pixels = sig.decode_image(path)
        theirs = np.asarray(signer.generate_signature(pixels), dtype=np.int8)
        assert np.array_equal(sig.image_signature(pixels), theirs), path.name
    # the drawings with a white shape beside black, where image-match's in-place level
    # assignment moves every value to level 2: the photos really show the quirk
    for path in tagged_photos["white-beside-black"]:
        assert set(np.unique(sig.image_signature(path))) == {-2, 0, 2}, path.name
    # small flat images, full of exact ties
    rng = np.random.default_rng(7)
    for _ in range(100):
        height, width = rng.integers(5, 80, size=2)
        pixels = (rng.integers(0, 4, size=(height, width, 3)) * 3 + 100).astype(np.uint8)
        theirs = np.asarray(signer.generate_signature(pixels), dtype=np.int8)
        assert np.array_equal(sig.image_signature(pixels), theirs)


@settings(deadline=None)
@given(
    height=st.integers(1, 80),
    width=st.integers(1, 80),
    seed=st.integers(0, 2**32 - 1),
    flat=st.booleans(),
    grey=st.booleans(),
)
def test_exact_equals_reference_on_odd_small_images(
    height: int, width: int, seed: int, flat: bool, grey: bool
) -> None:
    # tiny, thin, flat-bordered, low-contrast images: the corner cases of crop and levels
    rng = np.random.default_rng(seed)
    shape = (height, width) if grey else (height, width, 3)
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    if flat:
        pixels = (pixels // 64 * 3 + 100).astype(np.uint8)  # few levels, small steps
        pixels[: height // 3] = 7
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)
    # many of these have exact ties (differences of exactly 2/255, equal values at the median),
    # where float64 rounding decides: Match must decide them as image-match's float64 does
    expected = reference.grey_signature(reference.grey(rgb))
    assert np.array_equal(pixels_signature(pixels), expected)
    if seed % 8 == 0:
        # each orientation as image-match sees a turned file: turned first, then made grey
        assert np.array_equal(
            sig.orientation_signatures(pixels), reference.orientation_signatures(pixels)
        )


def test_a_one_pixel_high_flat_grey_image_turned_equals_the_reference() -> None:
    # the example --hypothesis-seed=1 found: turned 90 degrees it is 36 x 1, where the grey of
    # a pixel rounds differently than in the 1 x 36 original (numpy takes another matmul path);
    # image-match sees the turned file, so the reference must grey the turned pixels
    pixels = np.array([ONE_PIXEL_HIGH], dtype=np.uint8)
    rows = sig.orientation_signatures(pixels)
    assert np.array_equal(rows, reference.orientation_signatures(pixels))
    for k in range(len(sig.ORIENTATIONS)):
        turned = np.ascontiguousarray(orient(pixels, k))
        assert np.array_equal(rows[k], sig.image_signature(turned)), k


def test_white_beside_black_puts_every_value_at_level_two() -> None:
    # image-match's quirk, reproduced: a difference of exactly 1.0 (white minus black)
    pixels = np.tile(np.linspace(40, 200, 180).astype(np.uint8), (180, 1))
    pixels[60:120, 60:120] = 255
    pixels[60:120, 120:180] = 0
    signature = sig.image_signature(pixels)
    assert set(np.unique(signature)) == {-2, 0, 2}
    rgb = np.repeat(pixels[:, :, None], 3, axis=2)
    assert np.array_equal(signature, reference.grey_signature(reference.grey(rgb)))
    pixels[60:120, 60:120] = 254  # no longer white: the median splits again
    assert set(np.unique(sig.image_signature(pixels))) == {-2, -1, 0, 1, 2}


# -- orientations -----------------------------------------------------------------------------
def test_each_orientation_row_is_the_signature_of_the_oriented_image(
    photo_paths: list[Path],
) -> None:
    for n, path in enumerate(photo_paths[:12]):
        pixels = sig.decode_image(path)
        rows = sig.orientation_signatures(path)
        assert rows.shape == (len(sig.ORIENTATIONS), sig.SIGNATURE_LENGTH)
        for k in range(len(sig.ORIENTATIONS)):
            oriented = np.ascontiguousarray(orient(pixels, k))
            if n == 0:  # once as a file: every route agrees (test_signature_decode.py)
                oriented = _png(oriented)
            assert np.array_equal(rows[k], sig.image_signature(oriented)), (path.name, k)


def test_orientations_compose_rotation_and_mirror() -> None:
    probe = np.arange(6).reshape(2, 3)
    seen = {orient(probe, k).tobytes() + bytes(orient(probe, k).shape) for k in range(8)}
    assert len(seen) == 8  # all 8 distinct: mirrored rotations are included
    assert np.array_equal(orient(probe, 1), np.rot90(probe))
    assert np.array_equal(orient(probe, 6), np.rot90(probe[:, ::-1], 2))


def test_orientation_search_finds_every_orientation(photo_paths: list[Path]) -> None:
    stored_paths = photo_paths[:30]
    stored = np.stack([sig.image_signature(p) for p in stored_paths])
    for index in (0, 7, 19):
        pixels = sig.decode_image(stored_paths[index])
        for k in range(len(sig.ORIENTATIONS)):
            query = sig.orientation_signatures(_jpeg(orient(pixels, k), quality=85))
            distances = sig.normalized_distances(query, stored).min(axis=0)
            assert int(np.argmin(distances)) == index, (stored_paths[index].name, k)
            assert distances[index] < 0.2


def test_lossless_oriented_copy_is_found_at_distance_zero(photo_paths: list[Path]) -> None:
    pixels = sig.decode_image(photo_paths[3])
    stored = sig.image_signature(pixels)[None]
    for k in range(len(sig.ORIENTATIONS)):
        query = sig.orientation_signatures(_png(orient(pixels, k)))
        assert sig.normalized_distances(query, stored).min() == 0.0


def test_signature_orientations_permute_a_stored_signature(photo_paths: list[Path]) -> None:
    distances = []
    for path in photo_paths[:20]:
        pixels = sig.decode_image(path)
        stored = sig.image_signature(pixels)
        permuted = sig.signature_orientations(stored)
        assert permuted.shape == (8, sig.SIGNATURE_LENGTH)
        assert np.array_equal(permuted[0], stored)
        recomputed = sig.orientation_signatures(pixels)
        for k in range(8):
            distances.append(sig.normalized_distances(permuted[k], recomputed[k][None])[0])
            # values only move: the level histogram is unchanged
            assert sorted(permuted[k].tolist()) == sorted(stored.tolist())
    # not equal (the crop window is not symmetric) but as close as a re-encode
    assert np.median(distances) < 0.15
    assert max(distances) < 0.4


def test_signature_orientations_of_a_permutation_round_trip(golden_signatures: dict) -> None:
    stored = golden_signatures["A"]
    rotated = sig.signature_orientations(stored)[1]  # 90 degrees counter-clockwise
    back = sig.signature_orientations(rotated)[3]  # then 270 more
    assert np.array_equal(back, stored)
    mirrored = sig.signature_orientations(stored)[4]
    assert np.array_equal(sig.signature_orientations(mirrored)[4], stored)


def test_signature_orientations_refuse_a_wrong_shape() -> None:
    with pytest.raises(ValueError, match="648"):
        sig.signature_orientations(np.zeros(600, dtype=np.int8))


# -- properties -------------------------------------------------------------------------------
def test_resized_and_recompressed_copy_is_near_and_found(photo_paths: list[Path]) -> None:
    stored_paths = photo_paths[:30]
    stored = np.stack([sig.image_signature(p) for p in stored_paths])
    for index in range(0, 30, 3):
        with Image.open(stored_paths[index]) as image:
            small = image.convert("RGB").resize(
                (image.width // 2, image.height // 2), Image.Resampling.LANCZOS
            )
        query = sig.image_signature(_jpeg(np.asarray(small), quality=60))
        distances = sig.normalized_distances(query, stored)
        assert distances[index] < 0.4  # image-match's "very likely a match"
        assert int(np.argmin(distances)) == index


def test_unrelated_photos_are_far(photo_paths: list[Path]) -> None:
    stored = np.stack([sig.image_signature(p) for p in photo_paths[:30]])
    distances = sig.normalized_distances(stored, stored)
    off_diagonal = distances[~np.eye(len(stored), dtype=bool)]
    assert np.median(off_diagonal) > 0.5
    assert np.all(np.diag(distances) == 0.0)


# -- blank images and distances ---------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (1, 500), (300, 200), (64, 64, 3), (2000, 3, 3)])
def test_flat_images_are_blank(shape: tuple[int, ...]) -> None:
    pixels = np.full(shape, 137, dtype=np.uint8)
    signature = sig.image_signature(pixels)
    assert sig.is_blank(signature)
    assert sig.is_blank(sig.orientation_signatures(pixels)[5])


def test_a_faint_gradient_under_the_tolerance_is_blank() -> None:
    # one grey level (1/255) across the image: every difference is under 2/255
    pixels = np.zeros((90, 90), dtype=np.uint8)
    pixels[:, 45:] = 1
    assert sig.is_blank(sig.image_signature(pixels))
    pixels[:, 45:] = 3
    assert not sig.is_blank(sig.image_signature(pixels))


def test_blank_distances_are_one_never_nan() -> None:
    blank = np.zeros(sig.SIGNATURE_LENGTH, dtype=np.int8)
    other = np.ones(sig.SIGNATURE_LENGTH, dtype=np.int8)
    distances = sig.normalized_distances(np.stack([blank, other]), np.stack([blank, other]))
    assert distances.tolist() == [[1.0, 1.0], [1.0, 0.0]]


def test_distances_are_symmetric_and_in_range(golden_signatures: dict) -> None:
    stacked = np.stack(list(golden_signatures.values()))
    distances = sig.normalized_distances(stacked, stacked)
    assert np.array_equal(distances, distances.T)
    assert np.all((distances >= 0) & (distances <= 1))
    assert np.all(np.diag(distances) == 0.0)
    negated = sig.normalized_distances(stacked[0], -stacked[:1])
    assert negated[0] == 1.0  # a colour-inverted signature is as far as can be


# -- modes and the algorithm tag --------------------------------------------------------------
def test_algorithm_tag_names_and_versions_the_computation() -> None:
    assert sig.ALGORITHM == "goldberg-imagematch-1"
    assert sig.MODES == ("exact", "fast")


def test_unknown_mode_is_refused(golden: dict, fixtures_dir: Path) -> None:
    with pytest.raises(ValueError, match="mode"):
        sig.image_signature(fixtures_dir / "MonaLisa_Wikipedia.jpg", mode="quick")


def test_fast_mode_decodes_large_jpegs_smaller_and_stays_close(photo_paths: list[Path]) -> None:
    # a 2400 x 1800 JPEG: fast mode decodes it at 1/2 or 1/4 size
    with Image.open(photo_paths[0]) as image:
        large = image.convert("RGB").resize((2400, 1800), Image.Resampling.BICUBIC)
    data = _jpeg(np.asarray(large), quality=92)
    exact = sig.image_signature(data)
    fast = sig.image_signature(data, mode="fast")
    assert not np.array_equal(exact, fast)
    assert sig.normalized_distances(fast, exact[None])[0] < 0.15
    rows = sig.orientation_signatures(data, mode="fast")
    assert np.array_equal(rows[0], fast)
