"""Hostile and odd input against a real server (tests/hostile_corpus.py builds the files): each
gets a clear 4xx in the envelope or a correct result, the server stays up, and nothing else in the
store changes. Runs on the embedded store and the first engine (HARDENING_STORE_KINDS)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

import hostile_corpus as corpus
from api_server import Api

HARDENING_SUITE = True  # deselected on engines past the first: api_server.HARDENING_STORE_KINDS

PREFIX = "hostile"
MAX_FILEPATH_BYTES = 8192  # the default of MATCH_MAX_FILEPATH_BYTES
HTML = b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="99999" height="99999"><rect/></svg>'


@dataclass(frozen=True)
class Photo:
    image: Image.Image  # a real photo at a quarter of its size (keeps the corpus quick)
    jpeg: bytes
    original: bytes  # the full-size JPEG file


@pytest.fixture(scope="module")
def photo(photo_paths: list[Path]) -> Photo:
    with Image.open(photo_paths[0]) as full:
        image = full.convert("RGB")
    small = image.resize((image.width // 4, image.height // 4))
    return Photo(small, corpus.encode(small, "JPEG", quality=90), photo_paths[0].read_bytes())


@pytest.fixture(scope="module")
def bystanders(api: Api, photo_paths: list[Path]) -> Iterator[dict[str, dict[str, Any]]]:
    """Records that must come through every hostile request unchanged."""
    stored = {}
    for n, path in enumerate(photo_paths[1:4]):
        filepath = f"{PREFIX}/bystander-{n}.jpg"
        metadata = {"n": n, "note": "must survive"}
        api.add(filepath, path.read_bytes(), json.dumps(metadata))
        stored[filepath] = metadata
    yield stored
    for filepath in stored:
        api.ok("DELETE", "/delete", params={"filepath": filepath})


# -- helpers -----------------------------------------------------------------------------------
def snapshot(api: Api) -> list[str]:
    listed = api.ok("GET", "/list", params={"limit": 10_000})
    assert api.ok("GET", "/count") == [len(listed)]
    return listed


def assert_clean_failure(status: int, body: dict[str, Any]) -> None:
    """A 4xx in the envelope with a message (no stack trace)."""
    assert 400 <= status < 500, body
    assert body["status"] == "fail" and body["result"] == []
    assert body["error"] and body["error"][0].strip()
    assert "Traceback" not in body["error"][0]


def assert_unchanged(api: Api, before: list[str], bystanders: dict[str, dict[str, Any]]) -> None:
    assert api.ok("GET", "/ping") == []  # the server stays up
    assert snapshot(api) == before
    for filepath, metadata in bystanders.items():
        found = api.ok("POST", "/search", data={"filepath": filepath, "limit": "1"})
        assert (found[0]["filepath"], found[0]["metadata"]) == (filepath, metadata)


def add(api: Api, filepath: str, data: bytes, **fields: str) -> tuple[int, dict[str, Any]]:
    return api.call(
        "POST", "/add", data={"filepath": filepath, **fields}, files={"image": ("up.jpg", data)}
    )


def top(api: Api, image: bytes, **fields: str) -> list[dict[str, Any]]:
    return api.search(image, **fields)


# -- files that are not (readable) images: refused ---------------------------------------------
def _refused(photo: Photo) -> dict[str, tuple[bytes, int, str]]:
    """id: (bytes, status, words in the message)."""
    png, gif = corpus.encode(photo.image, "PNG"), corpus.encode(photo.image, "GIF")
    webp = corpus.encode(photo.image, "WEBP")
    return {
        "zero-bytes": (b"", 400, "empty"),
        "jpeg-header-only": (photo.original[:300], 400, "cannot be read"),
        "jpeg-truncated": (corpus.truncated(photo.original, 0.6), 400, "truncated"),
        "png-truncated": (corpus.truncated(png, 0.5), 400, "truncated"),
        "png-corrupt": (corpus.corrupted(png), 400, "corrupt"),
        "gif-truncated": (corpus.truncated(gif, 0.5), 400, "truncated"),
        "gif-corrupt": (corpus.corrupted(gif), 400, "corrupt"),
        "webp-truncated": (corpus.truncated(webp, 0.5), 400, "cannot be read"),
        "text": (b"just some text, not an image\n" * 40, 400, "not an image"),
        "html": (HTML, 400, "not an image"),
        "svg": (SVG, 415, "SVG"),
        "svg-with-prolog": (b'<?xml version="1.0"?>\n' + SVG, 415, "SVG"),
        "png-bomb-50000x50000": (corpus.png_bomb(), 413, "pixels"),
        "gif-bomb": (corpus.gif_bomb(), 413, "pixels"),
        "jpeg-bomb": (corpus.jpeg_bomb(photo.original), 413, "pixels"),
        "1x1": (corpus.encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), 400, "blank"),
    }


REFUSED_IDS = [
    "zero-bytes",
    "jpeg-header-only",
    "jpeg-truncated",
    "png-truncated",
    "png-corrupt",
    "gif-truncated",
    "gif-corrupt",
    "webp-truncated",
    "text",
    "html",
    "svg",
    "svg-with-prolog",
    "png-bomb-50000x50000",
    "gif-bomb",
    "jpeg-bomb",
    "1x1",
]


@pytest.mark.parametrize("case", REFUSED_IDS)
def test_unreadable_files_are_refused_with_a_clear_4xx(
    api: Api, photo: Photo, bystanders: dict[str, dict[str, Any]], case: str
) -> None:
    data, status, words = _refused(photo)[case]
    before = snapshot(api)
    for path, fields in (
        ("/add", {"filepath": f"{PREFIX}/refused/{case}"}),
        ("/search", {}),
        ("/rest/search/", {}),  # TinEye's routes answer 200 with the failure inside
    ):
        got, body = api.call("POST", path, data=fields, files={"image": ("up.jpg", data)})
        if path.startswith("/rest/"):
            assert (got, body["status"]) == (200, "fail"), body
            assert words.lower() in " ".join(body["error"]).lower()
            continue
        assert_clean_failure(got, body)
        assert got == status and words.lower() in body["error"][0].lower(), body
        assert "image" in body["error"][0].lower(), body  # names what is wrong
    assert_unchanged(api, before, bystanders)


# -- unusual but valid images: stored and found ------------------------------------------------
def _unusual(photo: Photo) -> dict[str, bytes]:
    image, noise = photo.image, corpus.noise(*photo.image.size)
    return {
        "animated-gif": corpus.animated([image, image.rotate(90), noise], "GIF"),
        "animated-webp": corpus.animated([image, image.rotate(90), noise], "WEBP"),
        "cmyk-jpeg": corpus.encode(image.convert("CMYK"), "JPEG", quality=95),
        "16-bit-png": corpus.sixteen_bit(image),
        "palette-png": corpus.encode(image.convert("P"), "PNG"),
        "alpha-png": corpus.encode(image.convert("RGBA"), "PNG"),
        "exif-rotated-jpeg": corpus.exif_rotated(image),
        "huge-exif-jpeg": corpus.huge_exif(image),
    }


UNUSUAL_IDS = [
    "animated-gif",
    "animated-webp",
    "cmyk-jpeg",
    "16-bit-png",
    "palette-png",
    "alpha-png",
    "exif-rotated-jpeg",
    "huge-exif-jpeg",
]


@pytest.mark.parametrize("case", UNUSUAL_IDS)
def test_unusual_images_are_stored_and_found(
    api: Api, photo: Photo, bystanders: dict[str, dict[str, Any]], case: str
) -> None:
    data = _unusual(photo)[case]
    filepath = f"{PREFIX}/unusual/{case}"
    before = snapshot(api)
    api.add(filepath, data)
    # The same bytes find it first, as identical.
    first = top(api, data)[0]
    assert first["filepath"] == filepath and first["score"] == pytest.approx(100, abs=1e-3)
    # What a viewer shows is the photo (first frame, upright, over white): the photo finds it.
    found = {match["filepath"]: match for match in top(api, photo.jpeg, limit="200")}
    assert filepath in found
    assert found[filepath]["orientation"] == "original"
    api.ok("DELETE", "/delete", params={"filepath": filepath})
    assert_unchanged(api, before, bystanders)


@pytest.mark.parametrize("case", ["jpeg-large", "jpeg-small", "webp"])
def test_corrupt_image_data_is_refused_or_stored_consistently(
    api: Api, photo: Photo, bystanders: dict[str, dict[str, Any]], case: str
) -> None:
    # Bytes overwritten inside the compressed data: a decoder may stop (4xx) or show damaged
    # pixels (stored). Either way the answer is clean, and search agrees with add.
    source = {
        "jpeg-large": photo.original,
        "jpeg-small": photo.jpeg,
        "webp": corpus.encode(photo.image, "WEBP"),
    }[case]
    data, filepath = corpus.corrupted(source), f"{PREFIX}/corrupt/{case}"
    before = snapshot(api)
    status, body = add(api, filepath, data)
    if status == 200:
        first = top(api, data)[0]
        assert first["filepath"] == filepath and first["score"] == pytest.approx(100, abs=1e-3)
        api.ok("DELETE", "/delete", params={"filepath": filepath})
    else:
        assert_clean_failure(status, body)
        assert api.call("POST", "/search", files={"image": ("up.jpg", data)}) == (
            status,
            {**body, "method": "search"},
        )
    assert_unchanged(api, before, bystanders)


def test_a_10000_by_20_image_is_stored_and_found(
    api: Api, bystanders: dict[str, dict[str, Any]]
) -> None:
    data = corpus.encode(corpus.noise(10_000, 20), "PNG")
    before = snapshot(api)
    api.add(f"{PREFIX}/wide", data)
    assert top(api, data)[0]["filepath"] == f"{PREFIX}/wide"
    api.ok("DELETE", "/delete", params={"filepath": f"{PREFIX}/wide"})
    assert_unchanged(api, before, bystanders)


# -- filepaths ---------------------------------------------------------------------------------
FILEPATHS = {
    "unicode": "фото/写真/صورة/📷 ñ-é-ß.jpg",
    "combining-and-zero-width": "e\u0301\u200b\u200d\u202e.jpg",
    "max-length-multibyte": "€" * 341 + "a",  # 1024 bytes of UTF-8
    "slashes": "/a//b/../../c/./d/",
    "backslashes": "C:\\Users\\..\\..\\windows\\system32",
    "spaces": "  a  b  ",
    "percent": "%2F%00%25%%20%u0041%zz",
    "url-syntax": "?a=1&b=2#frag;x=y+z",
    "sql-quote": "'; DROP TABLE images; --",
    "sql-or": '" OR 1=1 OR "a"="a',
    "sql-like": "%_%",
    "sql-union": "x' UNION SELECT filepath, metadata FROM images --",
    "lucene-wildcard": "*",
    "lucene-match-all": "*:*",
    "lucene-query": 'path:* OR (a AND b) || c && !d +e -f "g h"~2 i^3 [j TO k] {l TO m} /re.*/',
    "lucene-escapes": '\\ + - && || ! ( ) { } [ ] ^ " ~ * ? : /',
    "json-like": '{"query": {"match_all": {}}}',
    "control-characters": "tab\there\nnew\rline\x01\x7f",
}


@pytest.mark.parametrize("case", list(FILEPATHS))
def test_odd_filepaths_round_trip_exactly(
    api: Api, photo: Photo, bystanders: dict[str, dict[str, Any]], case: str
) -> None:
    filepath = FILEPATHS[case]
    before = snapshot(api)
    api.add(filepath, photo.jpeg, json.dumps({"case": case}))
    assert snapshot(api) == [*before, filepath]
    hits = [match for match in top(api, photo.jpeg, limit="200") if match["filepath"] == filepath]
    assert hits and hits[0]["metadata"] == {"case": case}
    by_filepath = api.ok("POST", "/search", data={"filepath": filepath, "limit": "200"})
    assert filepath in [match["filepath"] for match in by_filepath]
    api.ok("DELETE", "/delete", params={"filepath": filepath})
    assert_unchanged(api, before, bystanders)
    status, body = api.call("DELETE", "/delete", params={"filepath": filepath})
    assert status == 404 and body["status"] == "fail"


def test_a_filepath_one_byte_too_long_is_refused(
    api: Api, photo: Photo, bystanders: dict[str, dict[str, Any]]
) -> None:
    before = snapshot(api)
    too_long = "€" * 2730 + "abc"  # 8193 bytes
    assert len(too_long.encode()) == MAX_FILEPATH_BYTES + 1
    status, body = add(api, too_long, photo.jpeg)
    assert_clean_failure(status, body)
    assert "filepath" in body["error"][0]
    assert_unchanged(api, before, bystanders)


def test_wildcard_like_deletes_and_searches_touch_nothing_else(
    api: Api, bystanders: dict[str, dict[str, Any]]
) -> None:
    before = snapshot(api)
    for filepath in ("*", "%", "_", "*:*", "hostile/*", "' OR '1'='1", "path:*"):
        status, body = api.call("DELETE", "/delete", params={"filepath": filepath})
        assert status == 404 and body["status"] == "fail", (filepath, body)
        status, body = api.call("POST", "/search", data={"filepath": filepath})
        assert status == 404, (filepath, body)
    assert_unchanged(api, before, bystanders)


# -- metadata ----------------------------------------------------------------------------------
METADATA_KEPT = {
    "sql-and-lucene-values": {
        "q": "'; DROP TABLE images; --",
        "lucene": "path:* OR *:* AND NOT x~ [a TO z]",
        "percent": "%_%",
    },
    "odd-keys": {"": 1, "a.b.c": 2, "_id": 3, "$where": 4, "__proto__": {"x": 5}, "path": "*"},
    "unicode": {"名前": "写真 📷", "rtl": "\u202eabc", "nul": "a\u0000b"},
    "types": {"n": None, "f": 1.5e300, "i": -(2**53), "b": False, "list": [1, "a", None, {}]},
    "huge": {"blob": "x" * 1_000_000, "items": list(range(20_000))},
    "nested-200": json.loads('{"a":' * 200 + "1" + "}" * 200),
}


@pytest.mark.parametrize("case", list(METADATA_KEPT))
def test_odd_metadata_round_trips_exactly(
    api: Api, photo: Photo, bystanders: dict[str, dict[str, Any]], case: str
) -> None:
    filepath = f"{PREFIX}/metadata/{case}"
    metadata = METADATA_KEPT[case]
    before = snapshot(api)
    api.add(filepath, photo.jpeg, json.dumps(metadata))
    found = api.ok("POST", "/search", data={"filepath": filepath, "limit": "200"})
    mine = [match for match in found if match["filepath"] == filepath]
    assert mine and mine[0]["metadata"] == metadata
    api.ok("DELETE", "/delete", params={"filepath": filepath})
    assert_unchanged(api, before, bystanders)


METADATA_REFUSED = {
    "null": "null",
    "number": "42",
    "string": '"a string"',
    "boolean": "true",
    "array": '[{"a": 1}]',
    "nan": '{"a": NaN}',
    "infinity": '{"a": 1e400}',
    "lone-surrogate": '{"a": "\\ud800"}',
    "nested-100000-arrays": "[" * 100_000 + "]" * 100_000,
    "nested-100000-objects": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "truncated": '{"a": [1, 2',
    "two-objects": '{"a": 1}{"b": 2}',
}


@pytest.mark.parametrize("case", list(METADATA_REFUSED))
@pytest.mark.parametrize("path", ["/add", "/rest/add/"])
def test_metadata_that_is_not_a_json_object_is_refused(
    api: Api, photo: Photo, bystanders: dict[str, dict[str, Any]], case: str, path: str
) -> None:
    before = snapshot(api)
    fields = {"filepath": f"{PREFIX}/bad-metadata/{case}", "metadata": METADATA_REFUSED[case]}
    status, body = api.call("POST", path, data=fields, files={"image": ("up.jpg", photo.jpeg)})
    if path.startswith("/rest/"):
        assert (status, body["status"]) == (200, "fail"), body
        assert "metadata" in " ".join(body["error"])
    else:
        assert_clean_failure(status, body)
        assert status == 400 and "metadata" in body["error"][0], body
    assert_unchanged(api, before, bystanders)
