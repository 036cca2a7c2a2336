"""Collections and metadata filters through the HTTP API, on every store: the parameters of
every route, GET/DELETE /collections, the TinEye routes, and API keys limited to collections."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from api_server import Api, MatchServer, StoreEnv

TENANT_KEY, READER_KEY, ADMIN_KEY = "key-of-shop-a", "reader-of-shop-b", "admin-key"


def jpeg(path: Path, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def add(api: Api, filepath: str, image: bytes, **fields: str) -> list:
    return api.ok(
        "POST", "/add", data={"filepath": filepath, **fields}, files={"image": ("a.jpg", image)}
    )


def test_the_same_filepath_in_two_collections_is_two_images(
    api: Api, photo_paths: list[Path]
) -> None:
    first, second = unique("coll"), unique("coll")
    a, b = jpeg(photo_paths[20]), jpeg(photo_paths[21])
    add(api, "shared/name.jpg", a, collection=first, metadata='{"n": 1}')
    add(api, "shared/name.jpg", b, collection=second, metadata='{"n": 2}')
    found = api.search(a, collection=first)
    assert [(r["filepath"], r["metadata"]) for r in found] == [("shared/name.jpg", {"n": 1})]
    assert api.search(a, collection=second)[:1] != found[:1]
    assert api.ok("GET", "/count", params={"collection": first}) == [1]
    assert api.ok("GET", "/list", params={"collection": second}) == ["shared/name.jpg"]
    by_filepath = api.ok(
        "POST", "/search", data={"filepath": "shared/name.jpg", "collection": second}
    )
    assert by_filepath[0]["metadata"] == {"n": 2}
    compared = api.ok(
        "POST",
        "/compare",
        data={"filepath1": "shared/name.jpg", "collection": first},
        files={"image2": ("b.jpg", b)},
    )
    assert compared[0]["score"] < 90  # photo 20 against photo 21, not 21 against itself
    listed = {item["collection"]: item["count"] for item in api.ok("GET", "/collections")}
    assert listed[first] == listed[second] == 1 and "default" in listed
    assert (
        api.ok("DELETE", "/delete", params={"filepath": "shared/name.jpg", "collection": first})
        == []
    )
    status, body = api.call(
        "DELETE", "/delete", params={"filepath": "shared/name.jpg", "collection": first}
    )
    assert status == 404 and first in body["error"][0]
    assert api.ok("DELETE", "/collections", params={"collection": second}) == [
        {"collection": second, "deleted": 1}
    ]
    status, body = api.call("DELETE", "/collections", params={"collection": second})
    assert status == 404 and body["error"] == [f"There is no collection {second!r}"]
    assert second not in {item["collection"] for item in api.ok("GET", "/collections")}


def test_filters_on_search_count_and_list(api: Api, photo_paths: list[Path]) -> None:
    collection = unique("shop")
    photo = photo_paths[22]
    for n, price in enumerate([5, 12, 15, 40]):
        meta = json.dumps({"price": price, "shop": n % 2, "kind": "photo"})
        add(api, f"p{n}.jpg", jpeg(photo, 90 - n), collection=collection, metadata=meta)
    query = jpeg(photo, 70)
    band = '{"price": {"gte": 10, "lt": 20}}'
    assert sorted(r["filepath"] for r in api.search(query, collection=collection, filter=band)) == [
        "p1.jpg",
        "p2.jpg",
    ]
    assert api.search(query, collection=collection, filter='{"colour": "red"}') == []
    assert api.ok("GET", "/count", params={"collection": collection, "filter": '{"shop": 1}'}) == [
        2
    ]
    assert api.ok(
        "GET", "/list", params={"collection": collection, "filter": '{"shop": {"in": [0]}}'}
    ) == ["p0.jpg", "p2.jpg"]
    # the best match in a filter survives a limit that the unfiltered best would fill
    top = api.search(query, collection=collection, filter='{"price": 40}', limit="1")
    assert [r["filepath"] for r in top] == ["p3.jpg"]
    for bad, words in [
        ('{"price": {"near": 3}}', "unknown operator 'near'"),
        ("[1]", "must be a JSON object"),
        ('{"price": {"gte": "x"}}', "'gte' needs a number"),
    ]:
        status, body = api.call(
            "POST", "/search", data={"filter": bad}, files={"image": ("q.jpg", query)}
        )
        assert status == 400 and "'filter'" in body["error"][0] and words in body["error"][0], body


def test_bad_collection_names_are_refused_on_every_route(api: Api) -> None:
    for method, path in [("GET", "/count"), ("GET", "/list"), ("DELETE", "/collections")]:
        status, body = api.call(method, path, params={"collection": "no spaces"})
        assert status == 400 and "'collection'" in body["error"][0], (path, body)
    status, body = api.call("GET", "/rest/count/", params={"collection": "a/b"})
    assert status == 200 and body["status"] == "fail" and "'collection'" in body["error"][0]


def test_tineye_routes_act_on_the_named_collection(api: Api, photo_paths: list[Path]) -> None:
    collection = unique("tineye")
    data = jpeg(photo_paths[23])
    added = api.client.post(
        "/rest/add/",
        data={"collection": collection, "filepaths[0]": "t.jpg"},
        files={"images[0]": ("t.jpg", data)},
    ).json()
    assert added["status"] == "ok", added
    found = api.client.post(
        "/rest/search/", data={"collection": collection}, files={"image": ("q.jpg", data)}
    ).json()
    assert [r["filepath"] for r in found["result"]] == ["t.jpg"]
    count = api.client.get("/rest/count/", params={"collection": collection}).json()
    assert count["result"] == [1]
    assert "t.jpg" not in api.client.get("/rest/list/", params={"limit": 10000}).json()["result"]


# -- API keys limited to collections --------------------------------------------------------------
@pytest.fixture(scope="module")
def keyed(store_env: StoreEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatchServer]:
    folder = tmp_path_factory.mktemp("keyed")
    env = store_env() | {
        "WORKER_COUNT": "1",
        "MATCH_API_KEYS": f"{TENANT_KEY}@shop-a, {READER_KEY}:ro@shop-b, {ADMIN_KEY}",
    }
    server = MatchServer(env, folder / "server.log").start()
    yield server
    server.stop()


def as_key(server: MatchServer, key: str) -> Api:
    client = Api(server.url)
    client.client.headers["Authorization"] = f"Bearer {key}"
    return client


def test_a_key_limited_to_a_collection_never_sees_or_changes_another(
    keyed: MatchServer, photo_paths: list[Path]
) -> None:
    tenant, reader, admin = (as_key(keyed, k) for k in (TENANT_KEY, READER_KEY, ADMIN_KEY))
    a, b = jpeg(photo_paths[24]), jpeg(photo_paths[25])
    add(admin, "b.jpg", b, collection="shop-b")
    add(admin, "d.jpg", a)  # the default collection
    add(tenant, "a.jpg", a)  # no collection named: the key's own
    assert admin.ok("GET", "/list", params={"collection": "shop-a"}) == ["a.jpg"]
    assert [r["filepath"] for r in tenant.search(a)] == ["a.jpg"]  # not d.jpg of default
    assert tenant.ok("GET", "/collections") == [{"collection": "shop-a", "count": 1}]
    for method, path, fields in [
        ("POST", "/search", {"collection": "shop-b"}),
        ("GET", "/count", {"collection": "default"}),
        ("DELETE", "/delete", {"collection": "shop-b", "filepath": "b.jpg"}),
        ("DELETE", "/collections", {"collection": "shop-b"}),
        ("POST", "/add", {"collection": "shop-b", "filepath": "x.jpg"}),
    ]:
        files = {"image": ("a.jpg", a)} if path in ("/search", "/add") else None
        kwargs = (
            {"params": fields} if method in ("GET", "DELETE") else {"data": fields, "files": files}
        )
        status, body = tenant.call(method, path, **kwargs)
        assert status == 403 and fields["collection"] in body["error"][0], (path, body)
    status, body = tenant.call("GET", "/rest/count/", params={"collection": "shop-b"})
    assert status == 200 and body["status"] == "fail" and "shop-b" in body["error"][0]
    # the read-only key of shop-b reads its collection and writes nothing
    assert reader.ok("GET", "/list") == ["b.jpg"]
    status, _ = reader.call("DELETE", "/delete", params={"filepath": "b.jpg"})
    assert status == 403
    status, _ = reader.call("DELETE", "/collections", params={"collection": "shop-b"})
    assert status == 403
    assert admin.ok("GET", "/count", params={"collection": "shop-b"}) == [1]
    for client in (tenant, reader, admin):
        client.close()
