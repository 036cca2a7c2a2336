"""Partial matching (issue 8) through the real HTTP API, on every store kind: crops, screenshots,
small rotations and captions of stored photos are found first, an unrelated photo is not, and
MATCH_PARTIAL_MATCHING=false gives back the global signature alone (image-match's scores).

Queries are real photos edited here with Pillow. Servers are module-scoped per store kind: ``on``
(partial matching, the default) holds STORED photos; ``off`` (partial matching off) a few of
them. Roles of the photos are fixed by ``Photos`` (textured photos, chosen deterministically).
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw, ImageFont
from threadpoolctl import threadpool_info, threadpool_limits

from api_server import GRACEFUL, Api, MatchServer, StoreEnv
from engines import delete_indexes
from match.local import features, local_features
from match.service.matcher import Matcher
from match.settings import Settings
from match.signature.decode import decode_pixels

# The score floor of a search: 100 * (1 - MATCH_DISTANCE_CUTOFF) with the default cutoff.
FLOOR = 100.0 * (1.0 - Settings.from_env({}).match_distance_cutoff)
MIN_KEYPOINTS = 300  # a photo with fewer has too little texture for these tests
MIN_SIDES = (600, 400)  # (long, short) side in pixels: crops must stay large enough
STORED = 9  # photos on the ``on`` server, plus one more kept out of every store
OVERLAP_TOLERANCE = 10.0  # percentage points
CROP = 0.6  # the centre crop keeps 60% of each side: 36% of the area


@cache
def keypoint_count(path: Path) -> int:
    return len(local_features(decode_pixels(path.read_bytes())).words)


def textured(photo_paths: list[Path], count: int) -> list[Path]:
    """The first ``count`` photos, by name, large enough and with MIN_KEYPOINTS keypoints."""
    chosen: list[Path] = []
    for path in photo_paths:
        with Image.open(path) as image:
            long_side, short_side = max(image.size), min(image.size)
        large = long_side >= MIN_SIDES[0] and short_side >= MIN_SIDES[1]
        if large and keypoint_count(path) >= MIN_KEYPOINTS:
            chosen.append(path)
        if len(chosen) == count:
            return chosen
    pytest.fail(f"fewer than {count} photos have {MIN_KEYPOINTS} keypoints")


@dataclass(frozen=True)
class Photos:
    """Roles: ``stored`` are on the ``on`` server (under ``filepath_of``); ``absent`` is never
    stored. The first stored photos are the originals of the edits."""

    stored: list[Path]
    absent: Path

    @property
    def crop(self) -> Path:
        return self.stored[0]

    @property
    def screenshot(self) -> Path:
        return self.stored[1]

    @property
    def rotated(self) -> Path:
        return self.stored[2]

    @property
    def caption(self) -> Path:
        return self.stored[3]

    @property
    def crop_partner(self) -> Path:
        return self.stored[4]

    @property
    def outlined(self) -> Path:
        """Cropped and searched for its outline; no other edit of it is stored."""
        return self.stored[5]

    @property
    def mirrored(self) -> Path:
        """Cropped and mirrored; no other edit of it is stored."""
        return self.stored[6]


def filepath_of(path: Path) -> str:
    return f"partial/{path.stem}.jpg"


@pytest.fixture(scope="module")
def photos(photo_paths: list[Path]) -> Photos:
    chosen = textured(photo_paths, STORED + 1)
    return Photos(chosen[:STORED], chosen[STORED])


# -- edits -------------------------------------------------------------------------------------
def opened(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def centre_crop(path: Path, keep: float = CROP) -> bytes:
    image = opened(path)
    width, height = image.size
    left, top = round(width * (1 - keep) / 2), round(height * (1 - keep) / 2)
    return jpeg(image.crop((left, top, left + round(width * keep), top + round(height * keep))))


def resized(path: Path) -> bytes:
    image = opened(path)
    return jpeg(image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS), 80)


def screenshot(path: Path) -> tuple[bytes, float]:
    """The photo pasted on a white canvas with a toolbar, buttons and text around it, as a
    screenshot of a web page; also the percent of the canvas the photo covers."""
    photo = opened(path)
    canvas = Image.new("RGB", (round(photo.width / 0.7), round(photo.height / 0.65)), "white")
    left, top = round(canvas.width * 0.05), round(canvas.height * 0.2)
    canvas.paste(photo, (left, top))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(12, canvas.height // 30))
    draw.rectangle((0, 0, canvas.width, canvas.height * 0.08), fill=(40, 60, 120))
    draw.text((20, canvas.height * 0.1), "Holiday photos - page 3 of 12", fill="black", font=font)
    right = left + photo.width + 20
    for row in range(5):
        y = top + row * canvas.height // 10
        draw.rectangle((right, y, canvas.width - 20, y + canvas.height // 25), outline="grey")
        draw.text((right + 6, y + 4), f"Related {row + 1}", fill=(30, 30, 30), font=font)
    share = 100.0 * photo.width * photo.height / (canvas.width * canvas.height)
    return jpeg(canvas), share


def rotated(path: Path, degrees: float = 15) -> bytes:
    return jpeg(opened(path).rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False))


CAPTION_BAND = 0.25  # of the photo's height
CAPTIONED_PHOTO_SHARE = 1 / (1 + CAPTION_BAND)  # of the meme's area


def captioned(path: Path) -> bytes:
    """A meme: a black band a quarter of the photo's height above it, with white text."""
    photo = opened(path)
    band = round(photo.height * CAPTION_BAND)
    meme = Image.new("RGB", (photo.width, photo.height + band), "black")
    meme.paste(photo, (0, band))
    font = ImageFont.load_default(size=band // 3)
    ImageDraw.Draw(meme).text((photo.width // 10, band // 3), "WHEN IT WORKS", "white", font)
    return jpeg(meme)


# -- servers -----------------------------------------------------------------------------------
def start(env: dict[str, str], log: Path) -> tuple[MatchServer, Api]:
    server = MatchServer(env | {"WORKER_COUNT": "1"}, log).start()
    return server, Api(server.url)


def stop(server: MatchServer, api: Api) -> None:
    api.close()
    assert server.stop() in GRACEFUL, server.log()[-3000:]


def forget(env: dict[str, str]) -> None:
    """Delete the engine index of a store environment (an embedded store is in tmp_path)."""
    if "ELASTICSEARCH_INDEX" in env:
        delete_indexes(env["ELASTICSEARCH_URL"], env["ELASTICSEARCH_INDEX"])


# explicit, so a MATCH_PARTIAL_MATCHING in the test run's environment does not leak in
ON = {"MATCH_PARTIAL_MATCHING": "true"}
OFF = {"MATCH_PARTIAL_MATCHING": "false"}


@pytest.fixture(scope="module")
def on(
    store_env: StoreEnv, photos: Photos, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    env = store_env() | ON
    server, api = start(env, tmp_path_factory.mktemp("on") / "server.log")
    for path in photos.stored:
        api.add(filepath_of(path), path.read_bytes())
    yield api
    stop(server, api)
    forget(env)


@pytest.fixture(scope="module")
def off(
    store_env: StoreEnv, photos: Photos, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    env = store_env() | OFF
    server, api = start(env, tmp_path_factory.mktemp("off") / "server.log")
    for path in photos.stored[:4]:
        api.add(filepath_of(path), path.read_bytes())
    yield api
    stop(server, api)
    forget(env)


def tineye_search(api: Api, image: bytes, flips: bool = False) -> list[dict[str, Any]]:
    """/rest/search/ as MatchEngine's client sends it: options in the query string."""
    params = {"min_score": "0", "offset": "0", "limit": "10", "check_horizontal_flip": str(flips)}
    response = api.client.post("/rest/search/", params=params, files={"image": ("q.jpg", image)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["error"]) == ("ok", []), body
    return body["result"]


def scores_of(results: list[dict[str, Any]], filepath: str) -> list[float]:
    return [result["score"] for result in results if result["filepath"] == filepath]


@pytest.fixture(scope="module")
def golden(fixtures_dir: Path) -> dict:
    return json.loads((fixtures_dir / "golden.json").read_text())


def compare_golden(api: Api, fixtures_dir: Path, golden: dict) -> float:
    a, b = (fixtures_dir / golden["images"][name]["file"] for name in ("A", "B"))
    files = {"image1": ("a.jpg", a.read_bytes()), "image2": ("b.jpg", b.read_bytes())}
    [result] = api.ok("POST", "/compare", files=files)
    return result["score"]


# -- partial matches are found first -------------------------------------------------------
def test_a_centre_crop_is_found_first_with_its_overlaps(on: Api, photos: Photos) -> None:
    query = centre_crop(photos.crop)
    best = on.search(query)[0]
    assert best["filepath"] == filepath_of(photos.crop)
    assert best["score"] > FLOOR

    first = tineye_search(on, query)[0]
    assert first["filepath"] == filepath_of(photos.crop)
    assert first["query_overlap_percent"] == pytest.approx(100.0, abs=OVERLAP_TOLERANCE)
    assert first["target_overlap_percent"] == pytest.approx(100.0 * CROP**2, abs=OVERLAP_TOLERANCE)


def test_a_screenshot_is_found_first_with_its_overlaps(on: Api, photos: Photos) -> None:
    query, share = screenshot(photos.screenshot)
    assert 40.0 < share < 50.0
    best = on.search(query)[0]
    assert best["filepath"] == filepath_of(photos.screenshot)
    assert best["score"] > FLOOR

    first = tineye_search(on, query)[0]
    assert first["filepath"] == filepath_of(photos.screenshot)
    assert first["query_overlap_percent"] == pytest.approx(share, abs=OVERLAP_TOLERANCE)
    assert first["target_overlap_percent"] == pytest.approx(100.0, abs=OVERLAP_TOLERANCE)


def test_a_photo_rotated_15_degrees_is_found_first(on: Api, photos: Photos) -> None:
    best = on.search(rotated(photos.rotated))[0]
    assert best["filepath"] == filepath_of(photos.rotated)
    assert best["score"] > FLOOR


def test_a_captioned_photo_is_found_first_with_its_overlaps(on: Api, photos: Photos) -> None:
    query = captioned(photos.caption)
    best = on.search(query)[0]
    assert best["filepath"] == filepath_of(photos.caption)
    assert best["score"] > FLOOR

    first = tineye_search(on, query)[0]
    assert first["filepath"] == filepath_of(photos.caption)
    photo_share = 100.0 * CAPTIONED_PHOTO_SHARE  # the rest of the query is the caption band
    assert first["query_overlap_percent"] == pytest.approx(photo_share, abs=OVERLAP_TOLERANCE)
    assert first["target_overlap_percent"] == pytest.approx(100.0, abs=OVERLAP_TOLERANCE)


def test_a_photo_that_is_not_stored_finds_nothing(on: Api, photos: Photos) -> None:
    query = photos.absent.read_bytes()
    assert on.search(query) == []
    assert tineye_search(on, query) == []
    # and no unrelated stored photo is found by a partial match of an edit of it either
    assert on.search(centre_crop(photos.absent)) == []


def test_search_by_the_filepath_of_a_stored_crop_finds_the_original(
    on: Api, photos: Photos
) -> None:
    crop = f"partial/crops/{photos.crop_partner.stem}-{uuid.uuid4().hex[:8]}.jpg"
    on.add(crop, centre_crop(photos.crop_partner))
    results = on.ok("POST", "/search", data={"filepath": crop})
    assert results[0]["filepath"] == crop
    [score] = scores_of(results, filepath_of(photos.crop_partner))
    assert score > FLOOR


# -- MATCH_PARTIAL_MATCHING=false ----------------------------------------------------------
def test_without_partial_matching_a_crop_is_not_found_but_a_resized_copy_is(
    on: Api, off: Api, photos: Photos
) -> None:
    original = filepath_of(photos.crop)
    query = centre_crop(photos.crop)
    [partial] = scores_of(on.search(query), original)
    assert all(score < partial for score in scores_of(off.search(query), original))
    best = off.search(resized(photos.crop))[0]
    assert best["filepath"] == original
    assert best["score"] > FLOOR


def test_compare_is_image_match_without_partial_matching_and_no_lower_with_it(
    on: Api, off: Api, fixtures_dir: Path, golden: dict
) -> None:
    signature_only = compare_golden(off, fixtures_dir, golden)
    assert signature_only == pytest.approx(100 * (1 - golden["distances"]["A-B"]), abs=1e-9)
    assert compare_golden(on, fixtures_dir, golden) >= signature_only


def test_images_stored_without_local_features_are_found_once_it_is_on(
    store_env: StoreEnv, photos: Photos, tmp_path: Path
) -> None:
    env = store_env()
    old, new = photos.stored[:3], photos.stored[3]
    try:
        server, api = start(env | OFF, tmp_path / "off.log")
        try:
            for path in old:
                api.add(filepath_of(path), path.read_bytes())
        finally:
            stop(server, api)

        server, api = start(env | ON, tmp_path / "on.log")
        try:
            # the global signature still finds them; queries with local features are answered
            best = api.search(resized(old[0]))[0]
            assert (best["filepath"], best["score"] > FLOOR) == (filepath_of(old[0]), True)
            by_filepath = api.ok("POST", "/search", data={"filepath": filepath_of(old[1])})
            assert by_filepath[0]["filepath"] == filepath_of(old[1])
            assert by_filepath[0]["score"] == pytest.approx(100.0, abs=1e-4)
            # they have no local features: a crop finds them by the signature or not at all
            # (a signature match covers the whole image)
            for result in tineye_search(api, centre_crop(old[2])):
                assert result["target_overlap_percent"] == 100.0, result
            # an image added now has local features beside the old ones
            api.add(filepath_of(new), new.read_bytes())
            first = tineye_search(api, centre_crop(new))[0]
            assert first["filepath"] == filepath_of(new)
            assert first["target_overlap_percent"] < 100.0 - OVERLAP_TOLERANCE
        finally:
            stop(server, api)
    finally:
        forget(env)


# -- what matched and where (issue 14) ------------------------------------------------------
OUTLINE_PIXELS = 6.0  # how far an outline's corner may be from where the image was cut or put


def assert_outline(
    outline: list[list[float]], box: tuple[float, float, float, float], mirrored: bool = False
) -> None:
    """The four corners of ``outline`` within OUTLINE_PIXELS of the box's (left, top, right,
    bottom), in the order top-left, top-right, bottom-right, bottom-left; or, ``mirrored``,
    top-right, top-left, bottom-left, bottom-right (the corners of a mirror image)."""
    left, top, right, bottom = box
    expected = [[left, top], [right, top], [right, bottom], [left, bottom]]
    if mirrored:
        expected = [expected[1], expected[0], expected[3], expected[2]]
    for (x, y), (ex, ey) in zip(outline, expected, strict=True):
        assert abs(x - ex) <= OUTLINE_PIXELS and abs(y - ey) <= OUTLINE_PIXELS, (outline, box)


def test_a_crop_says_where_it_was_cut_and_a_copy_covers_the_whole_image(
    on: Api, photos: Photos
) -> None:
    image = opened(photos.outlined)
    width, height = image.size
    box = (round(width * 0.35), round(height * 0.2), round(width * 0.95), round(height * 0.8))
    query = jpeg(image.crop(box))
    best = on.search(query)[0]
    assert best["filepath"] == filepath_of(photos.outlined)
    assert (best["method"], best["mirrored"], best["orientation"]) == ("local", False, "original")
    assert_outline(best["query_outline"], box)  # the crop's box in the stored image
    # the stored image's frame seen from the crop: it reaches past the crop on every side
    crop_w, crop_h = box[2] - box[0], box[3] - box[1]
    assert_outline(best["target_outline"], (-box[0], -box[1], width - box[0], height - box[1]))
    assert best["query_overlap_percent"] == pytest.approx(100.0, abs=OVERLAP_TOLERANCE)
    expected_share = 100.0 * crop_w * crop_h / (width * height)
    assert best["target_overlap_percent"] == pytest.approx(expected_share, abs=OVERLAP_TOLERANCE)
    # min_overlap keeps whole-image copies only: the crop is gone, a resized copy stays
    assert filepath_of(photos.outlined) not in [
        r["filepath"] for r in on.search(query, min_overlap="90")
    ]
    copy = on.search(resized(photos.outlined), min_overlap="90")[0]
    assert copy["filepath"] == filepath_of(photos.outlined)
    assert copy["target_overlap_percent"] > 90  # whichever method scored it higher
    assert_outline(copy["query_outline"], (0, 0, width, height))
    assert_outline(copy["target_outline"], (0, 0, width // 2, height // 2))


def test_a_screenshot_says_where_the_image_was_pasted(on: Api, photos: Photos) -> None:
    query, _ = screenshot(photos.screenshot)
    canvas = Image.open(io.BytesIO(query))
    photo = opened(photos.screenshot)
    left, top = round(canvas.width * 0.05), round(canvas.height * 0.2)
    best = on.search(query)[0]
    assert best["filepath"] == filepath_of(photos.screenshot) and best["method"] == "local"
    assert_outline(best["target_outline"], (left, top, left + photo.width, top + photo.height))
    # the screenshot's frame reaches past the photo: its corners lie outside the stored image
    (x0, y0), _, (x2, y2), _ = best["query_outline"]
    assert x0 < 0 and y0 < 0 and x2 > photo.width and y2 > photo.height


def test_compare_reports_the_same_outlines_as_search(on: Api, photos: Photos) -> None:
    query = centre_crop(photos.crop)
    found = on.search(query)[0]
    [compared] = on.ok(
        "POST",
        "/compare",
        data={"filepath2": filepath_of(photos.crop)},
        files={"image1": ("q.jpg", query)},
    )
    assert compared["method"] == "local"
    for key in ("query_outline", "target_outline"):
        for a, b in zip(compared[key], found[key], strict=True):
            assert a == pytest.approx(b, abs=OUTLINE_PIXELS), key


# -- mirror images (issue 14) ------------------------------------------------------------------
def mirrored_crop(path: Path) -> tuple[bytes, tuple[int, int, int, int]]:
    """An off-centre crop of the photo, mirrored left-right; and the crop's box."""
    image = opened(path)
    width, height = image.size
    box = (round(width * 0.1), round(height * 0.25), round(width * 0.75), round(height * 0.9))
    return jpeg(image.crop(box).transpose(Image.Transpose.FLIP_LEFT_RIGHT)), box


def test_a_mirrored_crop_is_found_as_a_mirror_image_with_its_outline(
    on: Api, photos: Photos
) -> None:
    query, box = mirrored_crop(photos.mirrored)
    width, height = opened(photos.mirrored).size
    best = on.search(query)[0]
    assert best["filepath"] == filepath_of(photos.mirrored) and best["score"] > FLOOR
    assert (best["method"], best["mirrored"], best["orientation"]) == ("local", True, "mirror")
    # the crop's box in the stored image, its corners mirrored: the query's top-left corner
    # lies at the box's top-right
    assert_outline(best["query_outline"], box, mirrored=True)
    # the stored image's frame in the query: mirrored, reaching past the crop on every side
    left, top, right, bottom = box
    assert_outline(best["target_outline"], (right - width, -top, right, height - top), True)
    crop_share = 100.0 * (right - left) * (bottom - top) / (width * height)
    assert best["target_overlap_percent"] == pytest.approx(crop_share, abs=OVERLAP_TOLERANCE)
    assert best["query_overlap_percent"] == pytest.approx(100.0, abs=OVERLAP_TOLERANCE)


def test_mirror_images_match_only_when_orientations_do(on: Api, photos: Photos) -> None:
    """all_orientations=false is upright and unmirrored only; TinEye's routes find mirror
    images when check_horizontal_flip asks for them."""
    query, _ = mirrored_crop(photos.mirrored)
    original = filepath_of(photos.mirrored)
    assert original not in [r["filepath"] for r in on.search(query, all_orientations="false")]
    assert original not in [r["filepath"] for r in tineye_search(on, query)]
    first = tineye_search(on, query, flips=True)[0]
    assert (first["filepath"], first["mirrored"], first["method"]) == (original, True, "local")


def test_compare_finds_a_mirrored_crop_either_way_round(on: Api, photos: Photos) -> None:
    """The query's mirror features, or the second image's when the first is a stored one."""
    query, _ = mirrored_crop(photos.mirrored)
    found = on.search(query)[0]
    stored = {"filepath2": filepath_of(photos.mirrored)}
    [compared] = on.ok("POST", "/compare", data=stored, files={"image1": ("q.jpg", query)})
    stored_first = {"filepath1": filepath_of(photos.mirrored)}
    [swapped] = on.ok("POST", "/compare", data=stored_first, files={"image2": ("q.jpg", query)})
    for result in (compared, swapped):
        assert (result["method"], result["mirrored"]) == ("local", True), result
        assert result["score"] == pytest.approx(found["score"], abs=5)
    for a, b in zip(compared["query_outline"], found["query_outline"], strict=True):
        assert a == pytest.approx(b, abs=OUTLINE_PIXELS)
    # the other way round, the stored image is the query: its frame lies in the crop
    for a, b in zip(swapped["query_outline"], found["target_outline"], strict=True):
        assert a == pytest.approx(b, abs=OUTLINE_PIXELS)


# -- two passes: cheap query features first, fine ones only when they find nothing (issue 13) --
TWO_PASS = {
    "STORED": features.SPLIT_STORED,
    "QUERY": features.CHEAP_QUERY,
    "FINE_QUERY": features.SPLIT_QUERY,
}


def tile(path: Path, share: float = 0.17) -> bytes:
    """The photo shrunk to ``share`` of a page's width, among a toolbar and lines of text: a
    tile too small for the cheap extraction (its detection frame is half the fine one's). At
    20% the cheap pass found this photo's tile (8 inliers) once adds stored 288 px at sigma 1.4
    (2026-12-07); at 17% it fits nothing, the fine pass 38 inliers."""
    photo = opened(path)
    page = Image.new("RGB", (1000, 750), "white")
    width = round(page.width * share)
    small = photo.resize(
        (width, round(photo.height * width / photo.width)), Image.Resampling.LANCZOS
    )
    page.paste(small, (100, 150))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, page.width, 60), fill=(40, 60, 120))
    for row in range(8):
        draw.text((600, 150 + row * 60), f"Related item {row + 1} - some text", fill="black")
    return jpeg(page, 85)


@pytest.fixture
def two_pass(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Matcher]:
    """An in-process Matcher on an embedded store, with the two-pass extractions whatever the
    defaults are."""
    for name, extraction in TWO_PASS.items():
        monkeypatch.setattr(features, name, extraction)
    matcher = Matcher(Settings.from_env({}).replace(match_data_dir=str(tmp_path)))
    yield matcher
    matcher.close()


@pytest.fixture(scope="module")
def tiled(photo_paths: list[Path], photos: Photos) -> list[Path]:
    """A photo whose small tile only the fine extraction finds (no fit for the cheap one, 38
    inliers for the fine one: ``tile``), then two textured photos stored beside it."""
    tile_photo = next(path for path in photo_paths if path.name == "0b4006456f.jpg")
    return [tile_photo, *[path for path in photos.stored if path != tile_photo][:2]]


def add_all(matcher: Matcher, paths: list[Path]) -> None:
    for path in paths:
        matcher.add(filepath_of(path), path.read_bytes())


def test_a_tile_the_cheap_pass_misses_is_found_by_the_fine_pass(
    two_pass: Matcher, tiled: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    add_all(two_pass, tiled)
    query = two_pass.query(tile(tiled[0]), True)
    assert query.finer is not None and not query.finer.extracted
    found = two_pass.search(query)
    assert query.finer.extracted  # the cheap pass verified nothing
    assert found[0].filepath == filepath_of(tiled[0])
    assert found[0].method == "local" and found[0].score > FLOOR
    # without the second pass, the same search finds no local match of it
    monkeypatch.setattr(features, "FINE_QUERY", None)
    cheap = two_pass.query(tile(tiled[0]), True)
    assert cheap.finer is None
    assert [m for m in two_pass.search(cheap) if m.method == "local"] == []


def test_a_copy_the_cheap_pass_finds_never_pays_the_fine_extraction(
    two_pass: Matcher, tiled: list[Path]
) -> None:
    add_all(two_pass, tiled)
    query = two_pass.query(centre_crop(tiled[1]), True)
    found = two_pass.search(query)
    assert (found[0].filepath, found[0].method) == (filepath_of(tiled[1]), "local")
    assert query.finer is not None and not query.finer.extracted


def test_a_query_whose_original_is_not_stored_makes_both_passes_and_finds_nothing(
    two_pass: Matcher, tiled: list[Path], photos: Photos
) -> None:
    add_all(two_pass, tiled)
    query = two_pass.query(centre_crop(photos.absent), True)
    assert two_pass.search(query) == []
    assert query.finer is not None and query.finer.extracted


def test_a_min_score_above_the_cheap_match_asks_for_the_second_pass(
    two_pass: Matcher, tiled: list[Path]
) -> None:
    add_all(two_pass, tiled)
    query = two_pass.query(centre_crop(tiled[1]), True)
    best = two_pass.search(query)[0].score
    assert query.finer is not None and not query.finer.extracted
    two_pass.search(query, min_score=min(best + 1, 100))
    assert query.finer.extracted


def test_compare_takes_the_fine_features_when_the_cheap_ones_find_nothing(
    two_pass: Matcher, tiled: list[Path]
) -> None:
    query = two_pass.query(tile(tiled[0]), True)
    stored = two_pass.query(tiled[0].read_bytes(), False)
    comparison = two_pass.compare(query, stored)
    assert comparison.method == "local" and comparison.score > FLOOR


def test_features_stored_with_the_legacy_extraction_are_found_by_both_passes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiled: list[Path]
) -> None:
    # a store filled before issue 13: legacy features, which queries of either pass find
    monkeypatch.setattr(features, "STORED", features.LEGACY)
    matcher = Matcher(Settings.from_env({}).replace(match_data_dir=str(tmp_path)))
    try:
        add_all(matcher, tiled)
        for name in ("QUERY", "FINE_QUERY"):
            monkeypatch.setattr(features, name, TWO_PASS[name])
        crop = matcher.query(centre_crop(tiled[1]), True)
        assert (matcher.search(crop)[0].filepath, crop.finer.extracted) == (
            filepath_of(tiled[1]),
            False,
        )
        small = matcher.query(tile(tiled[0]), True)
        assert matcher.search(small)[0].filepath == filepath_of(tiled[0])
    finally:
        matcher.close()


def test_a_matcher_keeps_blas_on_one_thread(tmp_path: Path) -> None:
    """A request runs on one thread and servers scale by processes: OpenBLAS's own threads
    would spin after every product (two thirds of a search's CPU when they did)."""
    threadpool_limits(limits=2, user_api="blas")
    matcher = Matcher(Settings.from_env({}).replace(match_data_dir=str(tmp_path)))
    try:
        blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
        assert blas and all(lib["num_threads"] == 1 for lib in blas)
    finally:
        matcher.close()
