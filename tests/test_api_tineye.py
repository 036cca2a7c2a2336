"""The TinEye MatchEngine-compatible API (/rest/<method>/) against a real server process, real
photos and a real store, driven by requests shaped exactly as MatchEngine's clients send them.

``MatchEngine`` below re-implements the wire format of TinEye's Python client (tineyeservices
1.6.5, matchengine_request.py and tineye_service_request.py; not installable from a registry):
parameters in the query string, files in a multipart body, a GET when there is no file, values
stringified by Python (booleans as ``True``/``False``), numbered batch parameters, and an
exception on any HTTP status but 200. The servers are the shared ``api`` fixtures of
tests/api_server.py, so the suite runs on every store kind.
"""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from api_server import Api, ImageServer
from match import pdq
from match.signature import decode_image

IDENTICAL = pytest.approx(100.0, abs=0.01)
MISSING = "This file does not exist in the image collection"


class MatchEngine:
    """Requests as TinEye's Python client sends them; returns the envelope of a 200 answer."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def request(
        self, method: str, params: dict[str, Any], files: dict[str, tuple[str, bytes]] | None = None
    ) -> dict[str, Any]:
        url = f"/rest/{method}/"
        query = {key: str(value) for key, value in params.items() if value is not None}
        if files is None:
            response = self.http.get(url, params=query)
        else:
            response = self.http.post(url, params=query, files=files)
        assert response.status_code == 200, response.text  # the client raises on anything else
        assert response.headers["content-type"] == "application/json"
        return response.json()

    # -- the client's calls ---------------------------------------------------------------------
    def add_image(self, images: list[tuple[str, bytes]]) -> dict[str, Any]:
        """(filepath, data) pairs: dummy upload names, the filepaths in the query string."""
        stamp = time.time()
        files = {f"images[{i}]": (f"{stamp}.{i}", data) for i, (_, data) in enumerate(images)}
        params = {f"filepaths[{i}]": filepath for i, (filepath, _) in enumerate(images)}
        return self.request("add", params, files)

    def add_url(self, images: list[tuple[str, str]]) -> dict[str, Any]:
        """(filepath, url) pairs, all in the query string of a GET."""
        params: dict[str, Any] = {}
        for i, (filepath, url) in enumerate(images):
            params[f"urls[{i}]"] = url
            params[f"filepaths[{i}]"] = filepath
        return self.request("add", params)

    def delete(self, filepaths: list[str]) -> dict[str, Any]:
        return self.request("delete", {f"filepaths[{i}]": fp for i, fp in enumerate(filepaths)})

    def count(self) -> dict[str, Any]:
        return self.request("count", {})

    def list(self, offset: int = 0, limit: int = 20) -> dict[str, Any]:
        return self.request("list", {"offset": offset, "limit": limit})

    def ping(self) -> dict[str, Any]:
        return self.request("ping", {})

    def search_image(
        self, data: bytes, filename: str = "query.jpg", **options: Any
    ) -> dict[str, Any]:
        return self.request("search", _search_options(options), {"image": (filename, data)})

    def search_url(self, url: str, **options: Any) -> dict[str, Any]:
        return self.request("search", {"url": url, **_search_options(options)})

    def search_filepath(self, filepath: str, **options: Any) -> dict[str, Any]:
        return self.request("search", {"filepath": filepath, **_search_options(options)})

    def compare_image(
        self, first: bytes, second: bytes, min_score: float = 0, check_horizontal_flip: bool = False
    ) -> dict[str, Any]:
        params = {"min_score": min_score, "check_horizontal_flip": check_horizontal_flip}
        files = {"image1": ("first.jpg", first), "image2": ("second.jpg", second)}
        return self.request("compare", params, files)

    def compare_url(
        self, first: str, second: str, min_score: float = 0, check_horizontal_flip: bool = False
    ) -> dict[str, Any]:
        params = {"url1": first, "url2": second, "min_score": min_score}
        return self.request("compare", params | {"check_horizontal_flip": check_horizontal_flip})

    def update_metadata(self, filepaths: list[str], image_ids: list[str]) -> dict[str, Any]:
        params = {f"filepaths[{i}]": fp for i, fp in enumerate(filepaths)}
        params |= {f"image_ids[{i}]": image_id for i, image_id in enumerate(image_ids)}
        return self.request("update_metadata", params)


def _search_options(options: dict[str, Any]) -> dict[str, Any]:
    defaults = {"min_score": 0, "offset": 0, "limit": 10, "check_horizontal_flip": False}
    return defaults | options


# -- fixtures and helpers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def me(api: Api) -> MatchEngine:
    return MatchEngine(api.client)


@pytest.fixture(scope="module")
def mine(tagged_photos: dict[str, list[Path]]) -> list[Path]:
    """Photos no other test stores (tag ``tineye`` in tests/photos/photos.json), so that a
    search finds only what this module added; each test uses its own."""
    return tagged_photos["tineye"]


def unique(prefix: str) -> str:
    return f"tineye/{prefix}/{uuid.uuid4().hex[:8]}.jpg"


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def mirrored(path: Path) -> bytes:
    return jpeg(Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT))


def rotated(path: Path) -> bytes:
    return jpeg(Image.open(path).rotate(90, expand=True))


def blank_png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def filepaths(envelope: dict[str, Any]) -> list[str]:
    return [match["filepath"] for match in envelope["result"]]


def assert_ok(envelope: dict[str, Any], method: str) -> None:
    assert (envelope["method"], envelope["status"], envelope["error"]) == (method, "ok", []), (
        envelope
    )


# -- the envelope --------------------------------------------------------------------------------
def test_ping_envelope_with_timings(me: MatchEngine, api: Api) -> None:
    body = me.ping()
    assert list(body) == ["method", "status", "error", "result", "stats"]
    assert_ok(body, "ping")
    assert body["result"] == []
    assert set(body["stats"]) == {"time_ping", "time_total"}
    assert 0 <= body["stats"]["time_ping"] <= body["stats"]["time_total"]
    assert api.client.post("/rest/ping/").json()["status"] == "ok"


# -- add, list, count, search ------------------------------------------------------------------
def test_add_images_then_list_count_and_search_them(me: MatchEngine, mine: list[Path]) -> None:
    before = me.count()["result"][0]
    added = [(unique("add"), mine[k].read_bytes()) for k in (5, 0, 6)]
    body = me.add_image(added)
    assert body["method"] == "add" and body["status"] == "ok"
    assert (body["error"], body["result"]) == ([], [])
    assert set(body["stats"]) == {"time_add", "time_total"}

    assert me.count()["result"] == [before + 3]
    assert me.list(offset=before)["result"] == [filepath for filepath, _ in added]
    for filepath, data in added:
        found = me.search_image(data, filename="my-query.jpg")
        assert_ok(found, "search")
        assert found["query_image"] == {"filepath": "my-query.jpg"}
        width, height = Image.open(io.BytesIO(data)).size
        frame = [[0.0, 0.0], [float(width), 0.0], [float(width), float(height)], [0, height]]
        stored_pdq = pdq.pdq_hash(decode_image(data))
        assert {
            "filepath": filepath,
            "score": IDENTICAL,
            "match_percent": IDENTICAL,
            "query_overlap_percent": 100.0,
            "target_overlap_percent": 100.0,
            "metadata": None,
            "orientation": "original",  # Match's own fields, beside MatchEngine's
            "mirrored": False,
            "method": "signature",
            "query_outline": frame,
            "target_outline": frame,
            # the stored image's PDQ hash (docs/pdq.md), that of its own pixels
            "pdq": pdq.to_hex(stored_pdq.hash),
            "pdq_quality": stored_pdq.quality,
            "pdq_distance": None,
            "pdq_low_quality": False,
            "hash_only": False,
        } in found["result"]
        assert set(found["stats"]) == {"time_search", "time_total"}


def test_an_upload_without_filepath_is_stored_under_its_file_name(
    me: MatchEngine, mine: list[Path]
) -> None:
    # tineyeservices before 1.6 sent the collection filepath as the upload's file name.
    name = unique("named")
    data = mine[1].read_bytes()
    assert_ok(me.request("add", {}, {"images[0]": (name, data)}), "add")
    assert name in filepaths(me.search_filepath(name))


def test_a_failed_item_is_reported_without_losing_the_others(
    me: MatchEngine, mine: list[Path]
) -> None:
    before = me.count()["result"][0]
    good = [unique("good"), unique("good")]
    bad_data, blank = unique("not-an-image"), unique("blank")
    body = me.add_image(
        [
            (good[0], mine[7].read_bytes()),
            (bad_data, b"this is not an image"),
            (blank, blank_png()),
            (good[1], mine[8].read_bytes()),
        ]
    )
    assert (body["method"], body["status"], body["result"]) == ("add", "warn", [])
    assert len(body["error"]) == 2
    assert body["error"][0].startswith(f"{bad_data}: Parameter 'images[1]'")
    assert body["error"][1].startswith(f"{blank}: ") and "blank" in body["error"][1]
    assert me.count()["result"] == [before + 2]
    assert me.list(offset=before)["result"] == good

    everything_failed = me.add_image([(unique("bad"), b"GIF89a broken")])
    assert everything_failed["status"] == "fail" and len(everything_failed["error"]) == 1
    assert me.count()["result"] == [before + 2]


def test_add_and_search_by_url(me: MatchEngine, images: ImageServer, mine: list[Path]) -> None:
    path = mine[10]
    stored, broken = unique("url"), unique("url-broken")
    body = me.add_url([(stored, images.url(path.name)), (broken, f"{images.base}/status/404")])
    assert (body["status"], len(body["error"])) == ("warn", 1)
    assert body["error"][0].startswith(f"{broken}: ") and "HTTP 404" in body["error"][0]

    found = me.search_url(images.url(path.name))
    assert_ok(found, "search")
    assert found["query_image"] == {"filepath": images.url(path.name)}
    assert found["result"][0]["filepath"] == stored
    assert found["result"][0]["score"] == IDENTICAL
    assert stored in filepaths(me.search_filepath(stored))

    failed = me.search_url(f"{images.base}/status/503")
    assert failed["status"] == "fail" and "HTTP 503" in failed["error"][0]


def test_more_than_ten_items_is_an_error_and_adds_nothing(
    me: MatchEngine, images: ImageServer, mine: list[Path]
) -> None:
    before = me.count()["result"][0]
    url = images.url(mine[2].name)
    body = me.add_url([(unique("eleven"), url) for _ in range(11)])
    assert (body["status"], body["result"]) == ("fail", [])
    assert body["error"] == [
        "At most 10 images or URLs per request, got 11: send them in several requests"
    ]
    data = mine[2].read_bytes()
    uploads = me.add_image([(unique("eleven"), data) for _ in range(11)])
    assert uploads["status"] == "fail" and "At most 10" in uploads["error"][0]
    deletes = me.delete([unique("eleven") for _ in range(11)])
    assert deletes["status"] == "fail" and "At most 10 filepaths" in deletes["error"][0]
    assert me.count()["result"] == [before]


# -- search controls -----------------------------------------------------------------------------
def test_limit_defaults_to_ten_and_offset_pages(me: MatchEngine, mine: list[Path]) -> None:
    data = mine[9].read_bytes()
    copies = sorted(unique("copies") for _ in range(12))
    assert_ok(me.add_image([(filepath, data) for filepath in copies[:10]]), "add")
    assert_ok(me.add_image([(filepath, data) for filepath in copies[10:]]), "add")

    first = me.search_image(data, min_score=99)  # only the identical copies
    assert filepaths(first) == copies[:10]  # equal scores: by filepath
    rest = me.search_image(data, min_score=99, offset=10)
    assert filepaths(rest) == copies[10:]
    assert filepaths(me.search_image(data, min_score=99, offset=3, limit=2)) == copies[3:5]


def test_min_score_filters_weaker_matches(me: MatchEngine, mine: list[Path]) -> None:
    path = mine[13]
    original, degraded = unique("original"), unique("degraded")
    small = Image.open(path).convert("RGB")
    small = small.resize((small.width // 3, small.height // 3))
    assert_ok(me.add_image([(original, path.read_bytes()), (degraded, jpeg(small, 15))]), "add")

    results = {match["filepath"]: match for match in me.search_image(path.read_bytes())["result"]}
    weaker = results[degraded]["score"]
    assert results[original]["score"] == IDENTICAL and 55.0 < weaker <= 99.0
    assert results[degraded]["match_percent"] == weaker
    above = me.search_image(path.read_bytes(), min_score=weaker + 0.5)
    assert original in filepaths(above) and degraded not in filepaths(above)
    at = me.search_image(path.read_bytes(), min_score=weaker - 0.01)
    assert degraded in filepaths(at)


def test_rotations_are_always_found_mirror_images_only_with_the_flip_check(
    me: MatchEngine, mine: list[Path]
) -> None:
    path = mine[12]
    filepath = unique("orientations")
    assert_ok(me.add_image([(filepath, path.read_bytes())]), "add")

    assert filepath in filepaths(me.search_image(rotated(path)))
    assert filepath not in filepaths(me.search_image(mirrored(path)))
    for flag in (True, "True", "TRUE", "true", "1"):
        found = me.search_image(mirrored(path), check_horizontal_flip=flag)
        assert filepath in filepaths(found), flag
    for flag in ("False", "false", "0"):
        missed = me.search_image(mirrored(path), check_horizontal_flip=flag)
        assert filepath not in filepaths(missed), flag
    wrong = me.search_image(mirrored(path), check_horizontal_flip="maybe")
    assert wrong["status"] == "fail" and "check_horizontal_flip" in wrong["error"][0]


# -- compare -------------------------------------------------------------------------------------
def test_compare_like_tineyes_own_client_tests(
    me: MatchEngine, images: ImageServer, mine: list[Path]
) -> None:
    path = mine[15]
    flipped = mirrored(path)
    off = me.compare_image(path.read_bytes(), flipped, check_horizontal_flip=False)
    assert_ok(off, "compare")
    assert off["result"] == []
    on = me.compare_image(path.read_bytes(), flipped, check_horizontal_flip=True)
    assert_ok(on, "compare")
    [match] = on["result"]
    assert 55.0 < match["score"] < 100.0
    # the signature matches the mirrored copy, and so do its local features as a mirror image
    # (scored up to 99, above the recompressed copy's signature): compare answers the better
    assert match == {
        "score": match["score"],
        "match_percent": match["score"],
        "query_overlap_percent": pytest.approx(100.0, abs=0.5),
        "target_overlap_percent": pytest.approx(100.0, abs=0.5),
        "orientation": "mirror",  # Match's own fields, beside MatchEngine's
        "mirrored": True,
        "method": "local",
        "query_outline": match["query_outline"],
        "target_outline": match["target_outline"],
    }
    width, height = Image.open(path).size  # both whole images: the flipped copy is as large
    # each image's frame in the other, its corners mirrored: the top-left lies at the top-right
    mirrored_frame = [[width, 0], [0, 0], [0, height], [width, height]]
    for outline in (match["query_outline"], match["target_outline"]):
        assert outline == [pytest.approx(corner, abs=2.0) for corner in mirrored_frame]
    strict = me.compare_image(path.read_bytes(), flipped, min_score=100, check_horizontal_flip=True)
    assert strict["result"] == []
    same = me.compare_url(images.url(path.name), images.url(path.name), min_score=100)
    assert_ok(same, "compare")
    assert [match["score"] for match in same["result"]] == [IDENTICAL]
    assert set(same["stats"]) == {"time_compare", "time_total"}


def test_compare_with_a_stored_filepath(me: MatchEngine, mine: list[Path]) -> None:
    path = mine[3]
    filepath = unique("compare")
    assert_ok(me.add_image([(filepath, path.read_bytes())]), "add")
    body = me.request("compare", {"filepath1": filepath}, {"image2": ("x.jpg", rotated(path))})
    assert [match["score"] for match in body["result"]] == [pytest.approx(100.0, abs=10.0)]
    missing = me.request("compare", {"filepath1": "tineye/nowhere.jpg", "filepath2": filepath})
    assert missing["status"] == "fail"
    assert missing["error"] == [f"tineye/nowhere.jpg: {MISSING}"]


# -- update_metadata -----------------------------------------------------------------------------
def test_update_metadata_replaces_what_search_returns(
    me: MatchEngine, api: Api, mine: list[Path]
) -> None:
    path = mine[11]
    filepath = unique("metadata")
    added = me.request(
        "add",
        {"filepaths[0]": filepath, "image_ids[0]": "first-id"},
        {"images[0]": ("1700000000.0.0", path.read_bytes())},
    )
    assert_ok(added, "add")
    assert _stored(me, path, filepath)["image_id"] == "first-id"

    updated = me.update_metadata([filepath], ["second-id"])
    assert_ok(updated, "update_metadata")
    assert set(updated["stats"]) == {"time_update", "time_total"}
    match = _stored(me, path, filepath)
    assert (match["image_id"], match["metadata"]) == ("second-id", {"image_id": "second-id"})

    # As curl -F does it in MatchEngine's docs: a form body, here with a JSON metadata object.
    form = {"filepath": filepath, "metadata": '{"tenant": "a", "tags": ["x"]}'}
    assert api.client.post("/rest/update_metadata/", data=form).json()["status"] == "ok"
    match = _stored(me, path, filepath)
    assert match["metadata"] == {"tenant": "a", "tags": ["x"]} and "image_id" not in match

    cleared = me.update_metadata([filepath], ["{}"])  # MatchEngine's way to clear
    assert_ok(cleared, "update_metadata")
    assert _stored(me, path, filepath)["metadata"] is None
    assert me.count()["status"] == "ok"


def _stored(me: MatchEngine, path: Path, filepath: str) -> dict[str, Any]:
    found = me.search_image(path.read_bytes(), min_score=99)
    return next(match for match in found["result"] if match["filepath"] == filepath)


def test_update_metadata_of_missing_files(me: MatchEngine, mine: list[Path]) -> None:
    filepath, missing = unique("meta-partial"), unique("meta-missing")
    assert_ok(me.add_image([(filepath, mine[16].read_bytes())]), "add")
    partly = me.update_metadata([filepath, missing], ["kept", "lost"])
    assert (partly["status"], partly["error"]) == ("warn", [f"{missing}: {MISSING}"])
    only_missing = me.update_metadata([missing], ["lost"])
    assert (only_missing["status"], only_missing["error"]) == ("fail", [f"{missing}: {MISSING}"])
    too_long = me.update_metadata([filepath], ["x" * 256])
    assert too_long["status"] == "fail" and "255 characters" in too_long["error"][0]


# -- delete --------------------------------------------------------------------------------------
def test_delete_by_get_delete_and_post(me: MatchEngine, api: Api, mine: list[Path]) -> None:
    data = mine[4].read_bytes()
    stored = [unique("delete") for _ in range(4)]
    assert_ok(me.add_image([(filepath, data) for filepath in stored]), "add")
    before = me.count()["result"][0]

    assert_ok(me.delete(stored[:2]), "delete")  # the Python client: GET ?filepaths[N]=
    by_delete = api.client.delete("/rest/delete/", params={"filepath": stored[2]})  # Node, curl
    assert by_delete.status_code == 200 and by_delete.json()["status"] == "ok"
    by_form = api.client.post("/rest/delete/", data={"filepaths[0]": stored[3]})  # curl -d
    assert by_form.status_code == 200 and by_form.json()["status"] == "ok"
    assert me.count()["result"] == [before - 4]
    assert not set(stored) & set(filepaths(me.search_image(data, min_score=99)))


def test_deleting_a_missing_file_names_it(me: MatchEngine, mine: list[Path]) -> None:
    missing = unique("never-added")
    body = me.delete([missing])
    assert (body["method"], body["status"], body["result"]) == ("delete", "fail", [])
    assert body["error"] == [f"{missing}: {MISSING}"]

    present = unique("present")
    assert_ok(me.add_image([(present, mine[14].read_bytes())]), "add")
    partly = me.delete([present, missing])
    assert (partly["status"], partly["error"]) == ("warn", [f"{missing}: {MISSING}"])
    assert present not in me.list(limit=10_000)["result"]


# -- every failure is a 200 with the failure in the envelope -------------------------------------
@pytest.mark.parametrize(
    ("method", "params", "files", "words"),
    [
        ("search", {}, None, "give 'url' or 'image' or 'filepath'"),
        ("search", {"filepath": "tineye/nowhere.jpg"}, None, f"tineye/nowhere.jpg: {MISSING}"),
        ("search", {"filepath": "a", "limit": "many"}, None, "'limit' must be an integer"),
        ("search", {"filepath": "a", "min_score": "200"}, None, "'min_score' must be between"),
        ("search", {"filepath": "a", "format": "xml"}, None, "only json"),
        ("search", {"filepath": "a", "callback": "f"}, None, "JSONP"),
        ("search", {}, {"image": ("q.jpg", b"not an image")}, "not an image"),
        ("compare", {"url1": "ftp://example.com/a.jpg"}, None, "'url2'"),
        ("add", {}, None, "give 'image' or 'url'"),
        ("add", {"filepath": "a", "urls[0]": "http://x/a.jpg"}, None, "not both"),
        ("add", {"urls[x]": "http://x/a.jpg"}, None, "'urls[x]': the index must be a number"),
        ("delete", {}, None, "give 'filepath' or 'filepaths[N]'"),
        ("update_metadata", {"image_id": "x"}, None, "'filepath' is required"),
        ("list", {"limit": "0"}, None, "'limit' must be between"),
    ],
)
def test_failures_answer_200_with_status_fail(
    me: MatchEngine,
    method: str,
    params: dict[str, str],
    files: dict[str, tuple[str, bytes]] | None,
    words: str,
) -> None:
    before = me.count()["result"][0]
    body = me.request(method, params, files)  # asserts the HTTP status is 200
    assert list(body)[:3] == ["method", "status", "error"]
    assert (body["method"], body["status"], body["result"]) == (method, "fail", [])
    assert len(body["error"]) == 1 and words.lower() in body["error"][0].lower(), body
    assert "Traceback" not in body["error"][0]
    assert "time_total" in body["stats"]
    assert me.count()["result"] == [before]


# -- the description -----------------------------------------------------------------------------
def test_openapi_describes_the_rest_routes(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    rest = {path for path in spec["paths"] if path.startswith("/rest/")}
    methods = ("add", "delete", "search", "compare", "count", "list", "ping", "update_metadata")
    assert rest == {f"/rest/{method}/" for method in methods}
    assert set(spec["paths"]["/rest/delete/"]) == {"get", "post", "delete"}
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    search = spec["paths"]["/rest/search/"]["get"]["parameters"]
    limit = next(param for param in search if param["name"] == "limit")
    assert limit["schema"]["default"] == 10
    assert "/rest/update_metadata/" in api.client.get("/docs").text
