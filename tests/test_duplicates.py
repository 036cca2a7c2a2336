"""Duplicates inside a collection (GET /duplicates, `match duplicates`), on every store: real
photos and real edited copies grouped around a keeper, no chaining, since, paging, collection
scoping by API key, the size bound, and the CLI agreeing with the route (JSON and CSV)."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from api_server import Api, MatchServer, StoreEnv
from match.settings import Settings
from match.signature import SIGNATURE_LENGTH
from match.stores import ImageRecord, open_store

# The route and the CLI over the store's scan and search, which the store contract tests on every
# engine: the embedded store and the first engine only (api_server.HARDENING_STORE_KINDS).
HARDENING_SUITE = True
ADMIN, TENANT = "dup-admin-key", "dup-tenant-key"
MAX_IMAGES = 6  # the server's MATCH_DUPLICATES_MAX_IMAGES
CROWDED = "crowded"  # a collection with more images than that


def jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


def copies(path: Path) -> dict[str, bytes]:
    """The photo and four real edits of it: half size, centre crop, turned 90°, mirrored."""
    image = Image.open(path)
    width, height = image.size
    return {
        "original": path.read_bytes(),
        "half": jpeg(image.resize((width // 2, height // 2))),
        "crop": jpeg(image.crop((width // 10, height // 10, width * 9 // 10, height * 9 // 10))),
        "turned": jpeg(image.rotate(90, expand=True)),
        "mirrored": jpeg(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    }


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Keyed(Api):
    def __init__(self, url: str, key: str) -> None:
        super().__init__(url)
        self.client.headers["Authorization"] = f"Bearer {key}"

    def put(self, filepath: str, image: bytes, collection: str, **fields: str) -> None:
        self.ok(
            "POST",
            "/add",
            data={"filepath": filepath, "collection": collection, **fields},
            files={"image": ("i.jpg", image)},
        )

    def duplicates(self, **params: Any) -> dict[str, Any]:
        status, body = self.call("GET", "/duplicates", params=params)
        assert (status, body["status"]) == (200, "ok"), body
        return body


@pytest.fixture(scope="module")
def env(store_env: StoreEnv) -> dict[str, str]:
    env = store_env() | {
        "WORKER_COUNT": "1",
        "MATCH_API_KEYS": f"{ADMIN}, {TENANT}@shop-a",
        "MATCH_DUPLICATES_MAX_IMAGES": str(MAX_IMAGES),
    }
    rng = np.random.default_rng(18)  # records without images, to crowd one collection
    signatures = rng.integers(-2, 3, size=(MAX_IMAGES + 1, SIGNATURE_LENGTH), dtype=np.int8)
    store = open_store(Settings.from_env(env))
    try:
        store.add_many(
            ImageRecord(f"s{i}", s, collection=CROWDED) for i, s in enumerate(signatures)
        )
    finally:
        store.close()
    return env


@pytest.fixture(scope="module")
def server(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatchServer]:
    with MatchServer(env, tmp_path_factory.mktemp("duplicates") / "server.log") as process:
        yield process


@pytest.fixture(scope="module")
def admin(server: MatchServer) -> Iterator[Keyed]:
    client = Keyed(server.url, ADMIN)
    yield client
    client.close()


@pytest.fixture(scope="module")
def family(admin: Keyed, photo_paths: list[Path]) -> str:
    """A collection: photo 0 and its four edits, and photo 1, unrelated."""
    collection = unique("family")
    for name, data in copies(photo_paths[0]).items():
        admin.put(f"{name}.jpg", data, collection)
    admin.put("unrelated.jpg", photo_paths[1].read_bytes(), collection)
    return collection


def test_a_photo_and_its_edits_are_one_group_around_the_original(admin: Keyed, family: str) -> None:
    body = admin.duplicates(collection=family)
    assert body["total"] == 1 and body["searched"] == 6
    assert body["next_since"].startswith("seq:")
    [group] = body["result"]
    assert set(group) == {"keeper", "reason", "members"}
    # the default keeper: the earliest added
    assert group["keeper"] == "original.jpg"
    assert group["reason"].startswith("earliest added (") and group["reason"].endswith(" UTC)")
    # the largest: the rotated copy has as many pixels, so the earliest of the two wins
    [largest] = admin.duplicates(collection=family, keeper="largest")["result"]
    assert largest["keeper"] == "original.jpg"
    assert (
        largest["reason"].startswith("largest (") and "earliest added of the 3" in largest["reason"]
    )
    members = {m["filepath"]: m for m in group["members"]}
    assert set(members) == {"half.jpg", "crop.jpg", "turned.jpg", "mirrored.jpg"}
    scores = [m["score"] for m in group["members"]]
    assert scores == sorted(scores, reverse=True) and min(scores) > 55
    # each member is a search result: the keeper's search by filepath answers the same link
    searched = {
        r["filepath"]: r
        for r in admin.ok(
            "POST", "/search", data={"filepath": "original.jpg", "collection": family}
        )
    }
    for name, member in members.items():
        assert set(member) == set(searched[name]), name
        assert member["method"] == searched[name]["method"]
        assert member["score"] == pytest.approx(searched[name]["score"], abs=1.0)
    assert members["turned.jpg"]["orientation"] in ("rotate_90", "rotate_270")
    assert members["mirrored.jpg"]["mirrored"] is True
    assert members["crop.jpg"]["method"] == "local"
    assert members["crop.jpg"]["query_overlap_percent"] < 90  # the keeper, partly in the crop
    # paging over groups
    assert admin.duplicates(collection=family, offset=1)["result"] == []
    assert admin.duplicates(collection=family, limit=1)["result"] == [group]
    # a higher bar leaves out what scores under it
    strict = admin.duplicates(collection=family, min_score=min(scores) + 0.01)["result"]
    assert {m["filepath"] for m in strict[0]["members"]} == set(members) - {
        m["filepath"] for m in group["members"] if m["score"] == min(scores)
    }


def test_a_padded_copy_is_not_the_default_keeper(admin: Keyed, photo_paths: list[Path]) -> None:
    """A black border adds pixels and no picture: the earliest added (the photo) is kept, where
    `largest` would keep the padded copy added after it."""
    collection = unique("padded")
    image = Image.open(photo_paths[5]).convert("RGB")
    width, height = image.size
    padded = Image.new("RGB", (width * 6 // 5, height * 6 // 5))
    padded.paste(image, (width // 10, height // 10))
    admin.put("photo.jpg", photo_paths[5].read_bytes(), collection)
    admin.put("padded.jpg", jpeg(padded), collection)
    [group] = admin.duplicates(collection=collection)["result"]
    assert (group["keeper"], [m["filepath"] for m in group["members"]]) == (
        "photo.jpg",
        ["padded.jpg"],
    )
    assert group["reason"].startswith("earliest added (")
    [largest] = admin.duplicates(collection=collection, keeper="largest")["result"]
    assert largest["keeper"] == "padded.jpg" and largest["reason"].startswith("largest (")


def test_a_chain_of_partial_matches_is_not_one_group(admin: Keyed, photo_paths: list[Path]) -> None:
    """left ~ whole ~ right, where left and right (halves that do not overlap) do not match:
    chaining would make one group of the three; the keeper rule makes left the keeper (its
    metadata), whole its member, and right, whose only match is taken, no group."""
    collection = unique("chain")
    image = Image.open(photo_paths[2])
    width, height = image.size
    parts = {
        "left.jpg": (jpeg(image.crop((0, 0, width * 55 // 100, height))), 3),
        "whole.jpg": (photo_paths[2].read_bytes(), 1),
        "right.jpg": (jpeg(image.crop((width * 55 // 100, 0, width, height))), 2),
    }
    for name, (data, rank) in parts.items():
        admin.put(name, data, collection, metadata=json.dumps({"rank": rank}))

    def found_by(name: str) -> set[str]:
        results = admin.ok("POST", "/search", data={"filepath": name, "collection": collection})
        return {r["filepath"] for r in results} - {name}

    assert found_by("right.jpg") == {"whole.jpg"} and found_by("left.jpg") == {"whole.jpg"}
    body = admin.duplicates(collection=collection, keeper="metadata:rank")
    assert [(g["keeper"], [m["filepath"] for m in g["members"]]) for g in body["result"]] == [
        ("left.jpg", ["whole.jpg"])
    ]
    assert body["result"][0]["reason"] == "highest metadata 'rank' (3)"
    # the lowest rank keeps the whole image, which matches both halves directly
    [group] = admin.duplicates(collection=collection, keeper="metadata:rank:asc")["result"]
    assert group["keeper"] == "whole.jpg" and group["reason"] == "lowest metadata 'rank' (1)"
    assert {m["filepath"] for m in group["members"]} == {"left.jpg", "right.jpg"}


def gradient(curve: Any) -> Image.Image:
    """A flat, featureless picture: a brown ramp from left to right along ``curve`` (0 to 1)."""
    x = np.linspace(0.0, 1.0, 320)[None, :].repeat(240, axis=0)
    value = 100 + 60 * curve(x)
    return Image.fromarray(np.stack([value, value * 0.9, value * 0.8], -1).astype(np.uint8))


def test_a_signature_link_between_flat_images_needs_a_higher_score(admin: Keyed) -> None:
    """Two different smooth gradients (PDQ quality near 0) match by signature in the 60s, as
    unrelated flat wallpapers do: the search answers it, the duplicates do not group it; a
    half-size copy of one, scoring above FLAT_MIN_SCORE (70), is still its duplicate."""
    collection = unique("flat")
    ramp = gradient(lambda x: x)
    admin.put("ramp.jpg", jpeg(ramp), collection)
    admin.put("ramp-small.jpg", jpeg(ramp.resize((160, 120))), collection)
    step = gradient(lambda x: 1 / (1 + np.exp(-(x - 0.3) * 8)))  # a soft step, not a ramp
    admin.put("step.jpg", jpeg(step), collection)
    results = admin.ok("POST", "/search", data={"filepath": "ramp.jpg", "collection": collection})
    found = {r["filepath"]: r for r in results}
    assert found["step.jpg"]["method"] == "signature" and found["step.jpg"]["pdq_quality"] < 50
    assert 60 <= found["step.jpg"]["score"] < 70 <= found["ramp-small.jpg"]["score"] < 80
    body = admin.duplicates(collection=collection)
    assert [(g["keeper"], [m["filepath"] for m in g["members"]]) for g in body["result"]] == [
        ("ramp.jpg", ["ramp-small.jpg"])
    ]


def test_since_answers_only_the_groups_of_new_images(admin: Keyed, photo_paths: list[Path]) -> None:
    collection = unique("since")
    first = copies(photo_paths[3])
    admin.put("a.jpg", first["original"], collection)
    admin.put("a-half.jpg", first["half"], collection)
    admin.put("b.jpg", photo_paths[4].read_bytes(), collection)
    before = admin.duplicates(collection=collection)
    assert [g["keeper"] for g in before["result"]] == ["a.jpg"]
    later = copies(photo_paths[4])
    admin.put("b-mirrored.jpg", later["mirrored"], collection)
    body = admin.duplicates(collection=collection, since=before["next_since"])
    assert [(g["keeper"], [m["filepath"] for m in g["members"]]) for g in body["result"]] == [
        ("b.jpg", ["b-mirrored.jpg"])
    ]
    assert body["searched"] == 2  # the new image, then what it matched
    assert body["next_since"] != before["next_since"]
    assert admin.duplicates(collection=collection, since=body["next_since"])["result"] == []
    # a time works too: an hour ago covers everything, tomorrow nothing
    assert admin.duplicates(collection=collection, since="1h")["total"] == 2
    tomorrow = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400))
    assert admin.duplicates(collection=collection, since=tomorrow)["result"] == []


def test_a_key_limited_to_a_collection_sees_only_its_own(
    server: MatchServer, admin: Keyed, family: str, photo_paths: list[Path]
) -> None:
    tenant = Keyed(server.url, TENANT)
    try:
        tenant.put("mine.jpg", photo_paths[5].read_bytes(), "shop-a")
        tenant.put("mine-too.jpg", copies(photo_paths[5])["half"], "shop-a")
        [group] = tenant.duplicates()["result"]  # no collection named: the key's own
        assert group["keeper"] == "mine.jpg"
        status, body = tenant.call("GET", "/duplicates", params={"collection": family})
        assert status == 403 and family in body["error"][0] and body["method"] == "duplicates"
        assert admin.duplicates()["result"] == []  # the default collection holds none of it
    finally:
        tenant.close()


def test_bad_parameters_and_a_scan_over_the_bound_are_refused(admin: Keyed, family: str) -> None:
    for params, named in [
        ({"since": "last tuesday"}, "since"),
        ({"keeper": "prettiest"}, "keeper"),
        ({"min_score": "101"}, "min_score"),
        ({"limit": "0"}, "limit"),
        ({"filter": "[1]"}, "filter"),
    ]:
        status, body = admin.call("GET", "/duplicates", params={"collection": family, **params})
        assert status == 400 and named in body["error"][0], (params, body)
    status, body = admin.call("GET", "/duplicates", params={"collection": CROWDED})
    assert status == 413 and body["method"] == "duplicates"
    message = body["error"][0]
    assert f"at most {MAX_IMAGES}" in message and "match duplicates" in message
    # narrowed by a filter, the same collection is scanned
    narrowed = admin.duplicates(collection=CROWDED, filter='{"none": 1}')
    assert (narrowed["searched"], narrowed["result"]) == (0, [])


def run_cli(env: dict[str, str], *args: str, stderr: Any = subprocess.PIPE) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "match", "duplicates", *args],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=dict(os.environ, **env),
        timeout=300,
        check=False,
    )


def test_the_cli_answers_what_the_route_answers(
    env: dict[str, str], admin: Keyed, family: str
) -> None:
    route = admin.duplicates(collection=family, limit=100)
    done = run_cli(env, "--collection", family, "--jobs", "2")  # worker processes
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["result"] == route["result"] and printed["total"] == route["total"]
    assert "1 group (4 duplicates besides their keepers), 6 images searched" in done.stderr
    assert "\r" not in done.stderr  # no progress bar when stderr is not a terminal
    main, terminal = pty.openpty()  # stderr a terminal of 100 columns: the bar is drawn
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    try:
        done = run_cli(
            env, "--collection", family, "--format", "csv", "--jobs", "1", stderr=terminal
        )
        os.close(terminal)
        drawn = b""
        while chunk := _read_pty(main):
            drawn += chunk
    finally:
        os.close(main)
    assert done.returncode == 0 and b"\r" in drawn and b"6/6" in drawn and b"img/s" in drawn
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["group"], r["keeper"], r["filepath"]) for r in rows] == [
        ("1", "original.jpg", m["filepath"]) for m in route["result"][0]["members"]
    ]
    assert {r["mirrored"] for r in rows} == {"true", "false"}


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the other end is closed
        return b""
