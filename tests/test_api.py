"""The HTTP API against real server processes on loopback ports, real photos, a real store.

Two servers per store kind: ``api`` (2 workers, private URLs allowed so the local image server
can be used) and ``strict`` (1 worker, default URL policy, small upload and pixel caps, and a
store pre-filled with LIST_FILLED synthetic records for listing far past 10,000).
"""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from api_server import (
    GRACEFUL,
    LIST_FILLED,
    STRICT_UPLOAD_BYTES,
    Api,
    Connection,
    ImageServer,
    MatchServer,
    StoreEnv,
    serving_worker,
    worker_pids,
)
from match import pdq
from match.signature import ORIENTATIONS, decode_image

# -- images ------------------------------------------------------------------------------------
# An image against itself: distance 0, up to float rounding in the store.
IDENTICAL = pytest.approx(100.0, abs=1e-4)


def whole_image(image: bytes | Path, *, stored: bool = True) -> dict[str, Any]:
    """What a whole-image (signature) match of an image with itself says besides its score
    and filepath: both outlines are its own frame; a search result also carries the stored
    image's PDQ hash (docs/pdq.md), that of the image's own pixels."""
    width, height = Image.open(image if isinstance(image, Path) else io.BytesIO(image)).size
    outline = [[0.0, 0.0], [float(width), 0.0], [float(width), float(height)], [0.0, float(height)]]
    found = pdq.pdq_hash(decode_image(image))
    stored_pdq = {
        "pdq": pdq.to_hex(found.hash),
        "pdq_quality": found.quality,
        "pdq_distance": None,
        "pdq_low_quality": False,
        "hash_only": False,
    }
    return {
        **(stored_pdq if stored else {}),
        "orientation": "original",
        "mirrored": False,
        "method": "signature",
        "query_overlap_percent": 100.0,
        "target_overlap_percent": 100.0,
        "query_outline": outline,
        "target_outline": outline,
    }


def jpeg(path: Path) -> bytes:
    return path.read_bytes()


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def encoded(image: Image.Image, **options: Any) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", **options)
    return out.getvalue()


def oriented(image: Image.Image, orientation: str) -> Image.Image:
    """``image`` in one of match.signature.ORIENTATIONS: mirror (left-right) first, then rotate
    counter-clockwise."""
    if orientation.startswith("mirror"):
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    degrees = int(orientation.rsplit("_", 1)[1]) if "rotate" in orientation else 0
    return image.rotate(degrees, expand=True) if degrees else image


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:8]}.jpg"


# -- the routes --------------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ["GET", "POST"])
def test_ping(api: Api, verb: str) -> None:
    status, body = api.call(verb, "/ping")
    assert (status, body) == (200, {"status": "ok", "error": [], "method": "ping", "result": []})


def test_add_then_search_finds_it_first_with_its_metadata(
    api: Api, photo_paths: list[Path]
) -> None:
    filepath = unique("search")
    assert api.add(filepath, jpeg(photo_paths[1]), '{"tenant": "a", "n": [1, 2]}') == []
    results = api.search(jpeg(photo_paths[1]))
    assert results[0] == {
        "score": IDENTICAL,
        "filepath": filepath,
        "metadata": {"tenant": "a", "n": [1, 2]},
        **whole_image(photo_paths[1]),
    }
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True)
    assert all(55.0 < score <= 100.0 for score in scores)  # only matches under the 0.45 cutoff


def test_an_unrelated_photo_is_not_found(api: Api, photo_paths: list[Path]) -> None:
    filepath = unique("unrelated")
    api.add(filepath, jpeg(photo_paths[2]))
    results = api.search(jpeg(photo_paths[3]))
    assert filepath not in [result["filepath"] for result in results]


def test_count_and_list_follow_adds_and_deletes(api: Api, photo_paths: list[Path]) -> None:
    before = api.ok("GET", "/count")[0]
    added = [unique("counted") for _ in range(3)]
    for filepath, photo in zip(added, photo_paths[4:7], strict=True):
        api.add(filepath, jpeg(photo))
    assert api.ok("GET", "/count") == [before + 3]
    assert api.ok("POST", "/count") == [before + 3]
    assert api.ok("GET", "/list", params={"offset": before, "limit": 10}) == added
    assert api.ok("POST", "/list", data={"offset": before + 1, "limit": 1}) == added[1:2]

    assert api.ok("DELETE", "/delete", data={"filepath": added[1]}) == []
    assert api.ok("GET", "/count") == [before + 2]
    assert api.ok("GET", "/list", params={"offset": before, "limit": 10}) == [added[0], added[2]]
    found = [result["filepath"] for result in api.search(jpeg(photo_paths[5]))]
    assert added[1] not in found


def test_delete_by_query_string(api: Api, photo_paths: list[Path]) -> None:
    filepath = unique("query-delete")
    api.add(filepath, jpeg(photo_paths[7]))
    assert api.ok("DELETE", "/delete", params={"filepath": filepath}) == []
    status, body = api.call("DELETE", "/delete", params={"filepath": filepath})
    assert status == 404 and filepath in body["error"][0]


def test_add_replaces_the_image_and_metadata_under_a_filepath(
    api: Api, photo_paths: list[Path]
) -> None:
    filepath = unique("replaced")
    first, second = jpeg(photo_paths[8]), jpeg(photo_paths[9])
    api.add(filepath, first, '{"version": 1}')
    before = api.ok("GET", "/count")[0]
    api.add(filepath, second, '{"version": 2}')
    assert api.ok("GET", "/count") == [before]
    assert filepath not in [result["filepath"] for result in api.search(first)]
    best = api.search(second)[0]
    assert (best["filepath"], best["metadata"], best["score"]) == (
        filepath,
        {"version": 2},
        IDENTICAL,
    )
    assert api.ok("GET", "/list", params={"offset": before - 1, "limit": 5}) == [filepath]


def test_search_by_stored_filepath(api: Api, photo_paths: list[Path]) -> None:
    filepath = unique("by-filepath")
    api.add(filepath, jpeg(photo_paths[10]))
    by_filepath = api.ok("POST", "/search", data={"filepath": filepath})
    by_upload = api.search(jpeg(photo_paths[10]))
    assert by_filepath[0]["filepath"] == filepath
    assert by_filepath[0]["score"] == IDENTICAL
    assert by_filepath == by_upload


def test_a_thumbnail_is_stored_with_each_add_and_goes_with_a_delete(
    api: Api, photo_paths: list[Path]
) -> None:
    filepath = unique("thumbnail")
    api.add(filepath, photo_paths[6].read_bytes())  # EXIF and all: as a viewer shows it
    answer = api.client.get("/thumbnail", params={"filepath": filepath})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/webp"
    width, height = decode_image(photo_paths[6].read_bytes()).shape[1::-1]
    sent = (int(answer.headers["x-image-width"]), int(answer.headers["x-image-height"]))
    assert sent == (width, height)
    thumbnail = Image.open(io.BytesIO(answer.content))
    assert max(thumbnail.size) == min(256, max(width, height)) and len(answer.content) < 30_000
    api.ok("DELETE", "/delete", data={"filepath": filepath})
    status, body = api.call("GET", "/thumbnail", params={"filepath": filepath})
    assert status == 404 and "No image is stored under the filepath" in body["error"][0]


@pytest.mark.parametrize(
    ("orientation", "photo"), [("mirror_rotate_90", 11), ("rotate_270", 18), ("mirror", 19)]
)
def test_rotated_and_mirrored_copy_is_found_with_its_orientation(
    api: Api, photo_paths: list[Path], orientation: str, photo: int
) -> None:
    original = Image.open(photo_paths[photo]).convert("RGB")
    filepath = unique("oriented")
    api.add(filepath, png(original), filename="original.png")
    # The query is the original seen in some orientation; the answer names the orientation that
    # turns the query back into the original.
    query = oriented(original, orientation)
    best = api.search(png(query), filename="query.png")[0]
    assert best["filepath"] == filepath
    assert best["score"] > 95.0
    back = oriented(query, best["orientation"])
    assert np.array_equal(np.asarray(back), np.asarray(original))

    plain = api.search(png(query), filename="query.png", all_orientations="false")
    assert all(
        result["score"] < best["score"] for result in plain if result["filepath"] == filepath
    )


def test_orientation_names_are_the_signature_orientations(
    api: Api, photo_paths: list[Path]
) -> None:
    api.add(unique("names"), jpeg(photo_paths[12]))
    results = api.search(jpeg(photo_paths[12]), all_orientations="TRUE")
    assert {result["orientation"] for result in results} <= set(ORIENTATIONS)


def test_min_score_limit_and_offset(api: Api, photo_paths: list[Path]) -> None:
    photo = Image.open(photo_paths[13]).convert("RGB")
    variants = {
        "same": encoded(photo, quality=95),
        "q30": encoded(photo, quality=30),
        "small": encoded(photo.resize((photo.width // 3, photo.height // 3)), quality=70),
        "blurred": encoded(photo.resize((photo.width // 8, photo.height // 8)).resize(photo.size)),
    }
    prefix = unique("paged")
    for name, data in variants.items():
        api.add(f"{prefix}/{name}", data)
    full = api.search(jpeg(photo_paths[13]), all_orientations="0")
    ours = [result for result in full if result["filepath"].startswith(prefix)]
    assert len(ours) >= 3
    first = api.search(jpeg(photo_paths[13]), all_orientations="0", limit="2")
    second = api.search(jpeg(photo_paths[13]), all_orientations="0", limit="2", offset="2")
    assert first + second == full[:4]
    threshold = full[1]["score"]
    above = api.search(jpeg(photo_paths[13]), all_orientations="0", min_score=str(threshold))
    assert above == [result for result in full if result["score"] >= threshold]
    strictest = api.search(jpeg(photo_paths[13]), all_orientations="0", min_score="100")
    assert strictest == [result for result in full if result["score"] >= 100.0]


def test_compare(api: Api, photo_paths: list[Path]) -> None:
    a, b = jpeg(photo_paths[14]), jpeg(photo_paths[15])
    same = api.ok("POST", "/compare", files={"image1": ("a.jpg", a), "image2": ("b.jpg", a)})
    assert same == [{"score": IDENTICAL, **whole_image(a, stored=False)}]
    different = api.ok("POST", "/compare", files={"image1": ("a.jpg", a), "image2": ("b.jpg", b)})
    assert different[0]["score"] < 70.0

    photo = Image.open(photo_paths[14]).convert("RGB")
    turned = png(oriented(photo, "rotate_90"))
    files = {"image1": ("t.png", turned), "image2": ("a.png", png(photo))}
    upright = api.ok("POST", "/compare", files=files, data={"all_orientations": "true"})
    fixed = api.ok("POST", "/compare", files=files, data={"all_orientations": "false"})
    assert upright[0]["score"] > 95.0 > fixed[0]["score"]

    filepath = unique("compared")
    api.add(filepath, a)
    stored = api.ok(
        "POST", "/compare", data={"filepath1": filepath}, files={"image2": ("a.jpg", a)}
    )
    assert stored == [{"score": IDENTICAL, **whole_image(a, stored=False)}]


def test_list_defaults_and_bounds(api: Api) -> None:
    count = api.ok("GET", "/count")[0]
    listed = api.ok("GET", "/list")
    assert len(listed) == min(count, 20)
    assert api.ok("GET", "/list", params={"offset": count}) == []


# -- URL ingestion -----------------------------------------------------------------------------
def test_add_search_and_compare_by_url(
    api: Api, images: ImageServer, photo_paths: list[Path]
) -> None:
    photo = photo_paths[16]
    filepath = unique("by-url")
    assert api.ok("POST", "/add", data={"filepath": filepath, "url": images.url(photo.name)}) == []
    results = api.ok("POST", "/search", data={"url": images.url(photo.name)})
    assert results[0]["filepath"] == filepath and results[0]["score"] == IDENTICAL
    redirected = f"{images.base}/redirect/2/{photo.name}"
    assert api.ok("POST", "/search", params={"url": redirected})[0]["filepath"] == filepath
    compared = api.ok(
        "POST", "/compare", data={"url1": images.url(photo.name), "filepath2": filepath}
    )
    assert compared == [{"score": IDENTICAL, **whole_image(photo, stored=False)}]


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/status/404", 502, "HTTP 404"),
        ("/status/503", 502, "HTTP 503"),
        ("/declared-big", 413, "MATCH_URL_MAX_BYTES"),
        ("/endless", 413, "MATCH_URL_MAX_BYTES"),
        ("/redirect/3/x.jpg", 400, "redirects more than 2 times"),
        ("/files/missing.jpg", 502, "HTTP 404"),
    ],
)
def test_url_errors(api: Api, images: ImageServer, path: str, status: int, words: str) -> None:
    got, body = api.call("POST", "/search", data={"url": images.base + path})
    assert got == status
    assert words in body["error"][0] and "'url'" in body["error"][0]


def test_private_urls_are_refused_by_default(
    strict: Api, images: ImageServer, photo_paths: list[Path]
) -> None:
    for url in (
        images.url(photo_paths[0].name),
        f"http://localhost:{images.port}/files/{photo_paths[0].name}",
    ):
        status, body = strict.call("POST", "/add", data={"filepath": "x", "url": url})
        assert status == 400
        assert "loopback" in body["error"][0] and "MATCH_ALLOW_PRIVATE_URLS" in body["error"][0]
    assert strict.ok("GET", "/count") == [LIST_FILLED]


# -- limits and listing on the strict server ---------------------------------------------------
def test_list_far_past_ten_thousand(strict: Api) -> None:
    assert strict.ok("GET", "/count") == [LIST_FILLED]
    tail = strict.ok("GET", "/list", params={"offset": LIST_FILLED - 10, "limit": 20})
    assert tail == [f"synthetic/{i:05d}" for i in range(LIST_FILLED - 10, LIST_FILLED)]
    middle = strict.ok("POST", "/list", data={"offset": 10_500, "limit": 3})
    assert middle == ["synthetic/10500", "synthetic/10501", "synthetic/10502"]
    assert strict.ok("GET", "/list", params={"offset": LIST_FILLED}) == []


def test_upload_over_the_cap_is_413_naming_the_parameter(strict: Api) -> None:
    big = np.random.default_rng(1).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    data = png(Image.fromarray(big))
    assert len(data) > STRICT_UPLOAD_BYTES
    status, body = strict.call("POST", "/search", files={"image": ("big.png", data)})
    assert status == 413 and "'image'" in body["error"][0]


def test_image_over_the_pixel_cap_is_413(strict: Api, photo_paths: list[Path]) -> None:
    photo = Image.open(photo_paths[0])
    large = photo.convert("RGB").resize((600, 600))
    data = encoded(large, quality=50)
    assert len(data) < STRICT_UPLOAD_BYTES
    status, body = strict.call("POST", "/search", files={"image": ("large.jpg", data)})
    assert status == 413 and "pixels" in body["error"][0] and "'image'" in body["error"][0]


def test_body_over_the_cap_is_413_before_reading_it(strict: Api) -> None:
    body = b"x" * (STRICT_UPLOAD_BYTES + 2 * 1024 * 1024)
    status, envelope = strict.call(
        "POST", "/add", content=body, headers={"content-type": "application/octet-stream"}
    )
    assert status == 413 and envelope["method"] == "add"


# -- several workers -----------------------------------------------------------------------------
def test_an_add_through_one_worker_is_found_through_the_others(
    api_server: MatchServer, photo_paths: list[Path]
) -> None:
    workers = worker_pids(api_server.process.pid)  # type: ignore[union-attr]
    assert len(workers) >= 2
    adder = Connection(api_server)
    filepath = unique("workers")
    photo = {"image": ("p.jpg", jpeg(photo_paths[17]))}
    status, _ = adder.call("POST", "/add", data={"filepath": filepath}, files=photo)
    assert status == 200
    added_by = serving_worker(api_server, adder.client_port)
    assert added_by in workers

    elsewhere = 0
    for _ in range(300):  # new connections until several searches reached another worker
        connection = Connection(api_server)
        status, body = connection.call("POST", "/search", files=photo)
        worker = serving_worker(api_server, connection.client_port)
        connection.close()
        assert status == 200 and body["result"][0]["filepath"] == filepath
        assert worker in workers
        elsewhere += worker != added_by
        if elsewhere == 3:
            break
    adder.close()
    assert elsewhere == 3


def test_sigterm_stops_the_server_gracefully(store_env: StoreEnv, tmp_path: Path) -> None:
    for workers in ("1", "2"):
        log = tmp_path / f"server-{workers}.log"
        server = MatchServer(store_env() | {"WORKER_COUNT": workers}, log).start()
        # the server answers once one worker is up: the other may still be importing, and a
        # worker stopped before it started has no application to shut down
        deadline = time.monotonic() + 60
        while server.log().count("Application startup complete") < int(workers):
            assert time.monotonic() < deadline, "the workers did not all start in 60 s"
            time.sleep(0.05)
        assert server.stop() in GRACEFUL
        assert server.log().count("Application shutdown complete") == int(workers)
