"""PDQ through the HTTP API, on every store: /add answers the hash, /search by hash and image
searches against hash-only records, /hashes in and out, low quality, bad input. Each test works
in a collection of its own, as the servers are shared."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from api_server import Api
from match import pdq
from match.signature import decode_image


def collection() -> str:
    return f"pdq-{uuid.uuid4().hex[:10]}"


def flipped(text: str, bits: list[int]) -> str:
    array = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))
    array[bits] ^= 1
    return np.packbits(array).tobytes().hex()


def upload(api: Api, lines: str, name: str, **data: str) -> dict:
    files = {"file": (name, lines.encode())}
    return api.ok("POST", "/hashes", data=data, files=files)[0]


def test_add_answers_the_pdq_hash_and_search_by_it_finds_the_image(
    api: Api, photo_paths: list[Path]
) -> None:
    scope = collection()
    image = photo_paths[2].read_bytes()
    status, body = api.call(
        "POST",
        "/add",
        data={"filepath": "a.jpg", "collection": scope},
        files={"image": ("a.jpg", image)},
    )
    expected = pdq.pdq_hash(decode_image(image))
    assert (status, body["result"]) == (200, [])
    assert (body["pdq"], body["pdq_quality"]) == (pdq.to_hex(expected.hash), expected.quality)
    near = flipped(body["pdq"], [0, 50, 100, 150, 200])
    found = api.ok("POST", "/search", data={"pdq": near, "collection": scope})
    assert [(r["filepath"], r["method"], r["pdq_distance"], r["hash_only"]) for r in found] == [
        ("a.jpg", "pdq", 5, False)
    ]
    assert found[0]["score"] == 100 - 45 * 5 / 32
    assert (
        api.ok("POST", "/search", data={"pdq": near, "collection": scope, "max_distance": 4}) == []
    )


def test_an_image_search_finds_hash_only_records_in_any_orientation(
    api: Api, photo_paths: list[Path]
) -> None:
    scope = collection()
    photo = photo_paths[3]
    listed = pdq.to_hex(pdq.pdq_hash(decode_image(photo)).hash)
    lines = json.dumps({"pdq": listed, "filepath": "ncmec/1", "metadata": {"case": 7}})
    assert upload(api, lines + "\n", "list.jsonl", collection=scope)["added"] == 1
    turned = Image.open(photo).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    out = io.BytesIO()
    turned.save(out, "JPEG", quality=80)
    found = api.search(out.getvalue(), collection=scope)
    assert [(r["filepath"], r["method"], r["hash_only"], r["metadata"]) for r in found] == [
        ("ncmec/1", "pdq", True, {"case": 7})
    ]
    # the query is the listed image turned 90° counter-clockwise: turned 270° more, it matches
    assert found[0]["orientation"] == "rotate_270" and found[0]["pdq_distance"] <= 31
    upright = api.search(out.getvalue(), collection=scope, all_orientations="false")
    assert upright == []


def test_hash_lists_import_and_export_in_csv_and_json_lines(api: Api) -> None:
    scope = collection()
    rng = np.random.default_rng(7)
    hashes = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(3)]
    csv_text = (
        "pdq,filepath,quality,metadata\n"
        f'{hashes[0]},gifct/1,90,"{{""list"": ""gifct""}}"\n'
        "not-a-hash,gifct/2,,\n"
        f"{hashes[1]},gifct/3,,\n"
    )
    answer = upload(api, csv_text, "list.csv", collection=scope)
    assert (answer["added"], answer["failed"]) == (2, 1)
    assert answer["errors"][0]["line"] == 3 and "64 hex digits" in answer["errors"][0]["error"]
    upload(
        api,
        json.dumps({"pdq": hashes[2], "filepath": "tx/1", "quality": 12}),
        "x.jsonl",
        collection=scope,
    )
    response = api.client.get("/hashes", params={"collection": scope})
    assert response.headers["content-type"].startswith("application/x-ndjson")
    exported = [json.loads(line) for line in response.text.splitlines()]
    assert exported == [
        {"pdq": hashes[0], "filepath": "gifct/1", "quality": 90, "metadata": {"list": "gifct"}},
        {"pdq": hashes[1], "filepath": "gifct/3", "quality": None, "metadata": None},
        {"pdq": hashes[2], "filepath": "tx/1", "quality": 12, "metadata": None},
    ]
    as_csv = api.client.get("/hashes", params={"collection": scope, "format": "csv"}).text
    again = collection()
    assert upload(api, as_csv, "again.csv", collection=again)["added"] == 3
    assert api.client.get("/hashes", params={"collection": again}).text == response.text
    api.ok("DELETE", "/hashes", data={"filepath": "tx/1", "collection": scope})
    status, body = api.call("DELETE", "/hashes", data={"filepath": "tx/1", "collection": scope})
    assert status == 404 and "No hash is stored" in body["error"][0]


def test_low_quality_hashes_match_only_when_asked_and_are_flagged(api: Api) -> None:
    scope = collection()
    packed = np.random.default_rng(8).integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
    upload(
        api,
        json.dumps({"pdq": packed, "filepath": "weak", "quality": 30}),
        "w.jsonl",
        collection=scope,
    )
    assert api.ok("POST", "/search", data={"pdq": packed, "collection": scope}) == []
    asked = api.ok(
        "POST", "/search", data={"pdq": packed, "collection": scope, "pdq_low_quality": "true"}
    )
    assert [(r["filepath"], r["pdq_low_quality"], r["pdq_quality"]) for r in asked] == [
        ("weak", True, 30)
    ]


def test_bad_pdq_input_is_a_400_naming_it(api: Api, photo_paths: list[Path]) -> None:
    status, body = api.call("POST", "/search", data={"pdq": "abc"})
    assert status == 400 and "pdq" in body["error"][0] and "64 hex digits" in body["error"][0]
    status, body = api.call("POST", "/search", data={"pdq": "0" * 64, "max_distance": "300"})
    assert status == 400 and "max_distance" in body["error"][0]
    status, body = api.call(
        "POST", "/search", data={"pdq": "0" * 64}, files={"image": ("a.jpg", b"x")}
    )
    assert status == 400 and "not both" in body["error"][0]
    status, body = api.call("POST", "/hashes", data={"collection": collection()})
    assert status == 400 and "file" in body["error"][0]
    status, body = api.call("POST", "/hashes", files={"file": ("x.csv", b"filepath,other\na,b\n")})
    assert status == 200 and body["result"][0]["added"] == 0
    assert "pdq and filepath" in body["result"][0]["errors"][0]["error"]
    status, body = api.call("GET", "/hashes", params={"format": "xml"})
    assert status == 400 and "format" in body["error"][0]
    status, body = api.call("PUT", "/hashes")
    assert status == 405 and body["method"] == "hashes"


def test_a_list_of_hashes_is_searched_at_once(api: Api) -> None:
    scope = collection()
    rng = np.random.default_rng(11)
    stored = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(3)]
    lines = [json.dumps({"pdq": h, "filepath": f"list/{i}"}) for i, h in enumerate(stored)]
    lines.append(json.dumps({"pdq": flipped(stored[0], [3, 90, 200]), "filepath": "copy"}))
    upload(api, "\n".join(lines) + "\n", "list.jsonl", collection=scope)
    unknown = rng.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
    asked = [flipped(stored[0], [7]), unknown, stored[2].upper()]

    def searched(**request: object) -> list[tuple[str, list[tuple[str, int]]]]:
        found = api.ok("POST", "/hashes/search", **request)
        return [(item["pdq"], [(m["filepath"], m["pdq_distance"]) for m in item["matches"]])
                for item in found]  # fmt: skip

    expected = [
        (asked[0], [("list/0", 1), ("copy", 4)]),
        (unknown, []),
        (stored[2], [("list/2", 0)]),
    ]
    # the same answer however the list is sent: repeated fields, a JSON array, a file of lines
    assert searched(data={"pdq": asked, "collection": scope}) == expected
    assert searched(json={"pdq": asked, "collection": scope}) == expected
    text = f"{asked[0]}\n\n{asked[1]}, {asked[2]}\n"
    assert searched(data={"collection": scope}, files={"file": ("list.txt", text.encode())}) == (
        expected
    )
    as_csv = "filepath,pdq\n" + "".join(f"q{i},{h}\n" for i, h in enumerate(asked))
    files = {"file": ("list.csv", as_csv.encode())}
    assert searched(data={"collection": scope}, files=files) == expected
    # each hash's matches are what /search by that hash answers, limit and distance included
    each = api.ok("POST", "/hashes/search", data={"pdq": asked, "collection": scope})
    for item in each:
        alone = api.ok("POST", "/search", data={"pdq": item["pdq"], "collection": scope})
        assert item["matches"] == alone
    near = {"pdq": asked, "collection": scope, "limit": 1, "max_distance": 2}
    assert searched(data=near) == [(asked[0], [("list/0", 1)]), (unknown, []), expected[2]]


def test_a_bad_or_too_long_list_of_hashes_is_refused(api: Api, strict: Api) -> None:
    status, body = api.call("POST", "/hashes/search", data={"pdq": ["0" * 64, "abc"]})
    assert status == 400 and "'pdq'" in body["error"][0] and "64 hex digits" in body["error"][0]
    files = {"file": ("list.txt", b"0" * 64 + b"\n" + b"1" * 63 + b"\n")}
    status, body = api.call("POST", "/hashes/search", files=files)
    assert status == 400 and "'file', line 2" in body["error"][0]
    status, body = api.call("POST", "/hashes/search", data={"collection": collection()})
    assert status == 400 and "'pdq'" in body["error"][0] and "'file'" in body["error"][0]
    many = [f"{n:064x}" for n in range(6)]
    status, body = strict.call("POST", "/hashes/search", data={"pdq": many})
    assert status == 413 and "MATCH_PDQ_BATCH_MAX (5)" in body["error"][0]
    assert len(strict.ok("POST", "/hashes/search", data={"pdq": many[:5]})) == 5
