"""match.client against a real server on every store: each method, its result, and the server's
errors raised as match.errors' classes."""

from __future__ import annotations

import asyncio
import io
import uuid
from pathlib import Path

import pytest
from PIL import Image

from api_server import ImageServer, MatchServer, free_port, running_server
from match import errors
from match.client import AsyncClient, Client, MatchWarning


@pytest.fixture(scope="module")
def client(api_server: MatchServer):
    with Client(api_server.url) as client:
        yield client


@pytest.fixture
def collection(client: Client):
    name = f"client-{uuid.uuid4().hex[:8]}"
    yield name
    if any(item["collection"] == name for item in client.collections()):
        client.drop_collection(name)


def turned(path: Path) -> bytes:
    """The photo turned a quarter, re-encoded: a copy found only in all orientations."""
    out = io.BytesIO()
    Image.open(path).rotate(90, expand=True).save(out, "JPEG", quality=90)
    return out.getvalue()


def test_every_method_on_a_real_server(
    client: Client, collection: str, photo_paths: list[Path], images: ImageServer
) -> None:
    first, second, third = photo_paths[:3]
    assert client.ping() is None
    # an image as a path, as bytes, as a file object, and as a URL
    client.add("a.jpg", first, metadata={"n": 1}, collection=collection)
    client.add("b.jpg", second.read_bytes(), collection=collection)
    with third.open("rb") as file:
        client.add("c.jpg", file, collection=collection)
    client.add("d.jpg", url=images.url(first.name), metadata={"n": 4}, collection=collection)
    assert client.count(collection=collection) == 4
    assert client.count(collection=collection, filter={"n": 4}) == 1
    assert client.list(collection=collection) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    assert client.list(offset=1, limit=2, collection=collection) == ["b.jpg", "c.jpg"]

    found = client.search(turned(second), collection=collection)
    assert found[0]["filepath"] == "b.jpg" and found[0]["orientation"] != "original"
    assert set(found[0]) >= {"score", "filepath", "metadata", "orientation", "method"}
    by_url = client.search(url=images.url(first.name), collection=collection, min_score=90)
    assert {item["filepath"] for item in by_url} == {"a.jpg", "d.jpg"}
    assert by_url[0]["metadata"] in ({"n": 1}, {"n": 4})
    by_filepath = client.search(filepath="c.jpg", collection=collection, limit=1)
    assert [item["filepath"] for item in by_filepath] == ["c.jpg"]
    assert client.search(turned(second), collection=collection, all_orientations=False) == []
    # a list of PDQ hashes at once, as hex or as bytes: a.jpg and d.jpg are the same photo
    listed = client.search_hashes([by_url[0]["pdq"], bytes(32)], collection=collection)
    assert [(item["pdq"], sorted(m["filepath"] for m in item["matches"])) for item in listed] == [
        (by_url[0]["pdq"], ["a.jpg", "d.jpg"]),
        ("0" * 64, []),
    ]

    same = client.compare(first, url2=images.url(first.name))
    assert same["score"] == pytest.approx(100.0)
    stored = client.compare(filepath1="a.jpg", image2=first, collection=collection)
    assert stored["score"] == pytest.approx(100.0)
    assert client.compare(first, second)["score"] < 60

    [group] = client.duplicates(collection=collection)  # a.jpg and d.jpg: the same photo
    assert (group["keeper"], [m["filepath"] for m in group["members"]]) == ("a.jpg", ["d.jpg"])
    assert client.duplicates(collection=collection, filter={"n": 4}) == []
    assert client.duplicates(collection=collection, offset=1) == []

    assert client.collections() and {"collection": collection, "count": 4} in client.collections()
    thumbnail = Image.open(io.BytesIO(client.thumbnail("a.jpg", collection=collection)))
    assert thumbnail.format == "WEBP" and max(thumbnail.size) <= 256
    with pytest.raises(errors.NotFound, match="filepath 'gone"):
        client.thumbnail("gone.jpg", collection=collection)
    assert client.access() == {"keys": False, "read_only": False, "collections": None}
    client.delete("d.jpg", collection=collection)
    assert client.count(collection=collection) == 3
    assert client.drop_collection(collection) == {"collection": collection, "deleted": 3}


def test_the_servers_errors_are_raised_as_the_librarys_classes(
    client: Client, collection: str, photo_paths: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(errors.NotFound, match=r"missing\.jpg") as raised:
        client.delete("missing.jpg", collection=collection)
    assert raised.value.status == 404
    with pytest.raises(errors.BadParameter, match="give 'url' or 'image'"):
        client.add("x.jpg", collection=collection)
    with pytest.raises(errors.BadParameter, match="'limit' must be between 1 and 10000"):
        client.search(photo_paths[0], limit=0)
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not an image")
    with pytest.raises(errors.MatchError, match="'image'") as raised:
        client.add("x.jpg", not_an_image, collection=collection)
    assert raised.value.status == 400
    with pytest.raises(errors.BadParameter, match=r"no-such-file\.jpg"):
        client.search(tmp_path / "no-such-file.jpg")
    with pytest.raises(errors.ServiceUnreachable, match="No answer"):
        Client(f"http://127.0.0.1:{free_port()}", timeout=5).ping()


def test_an_unknown_parameter_is_a_warning_naming_it(
    client: Client, photo_paths: list[Path]
) -> None:
    with pytest.warns(MatchWarning, match="Unknown parameter 'limt' ignored.*did you mean 'limit'"):
        client.search(photo_paths[0], limt=5)


def test_filepaths_as_long_as_a_presigned_url_on_every_store(
    client: Client, collection: str, photo_paths: list[Path]
) -> None:
    # the shape of a real pre-signed object-store URL (SigV4 query string, a session token)
    token = "IQoJb3JpZ2luX2VjEJr" + "A" * 1180
    presigned = (
        "https://photos-archive.s3.eu-west-1.amazonaws.com/2024/06/shop-12/IMG_0413.jpg"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLE%2F20240601%2Feu-west-1"
        "%2Fs3%2Faws4_request&X-Amz-Date=20240601T120000Z&X-Amz-Expires=604800"
        f"&X-Amz-Security-Token={token}&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=" + "0f" * 32
    )
    assert len(presigned.encode()) > 1500
    client.add(presigned, photo_paths[0], collection=collection)
    longest = "k/" + "é" * 4095  # 8192 bytes of UTF-8: the default limit
    assert len(longest.encode()) == 8192
    client.add(longest, photo_paths[1], collection=collection)
    found = {item["filepath"] for item in client.search(photo_paths[0], collection=collection)}
    assert presigned in found
    assert client.search(filepath=longest, collection=collection)[0]["filepath"] == longest
    with pytest.raises(errors.BadParameter, match=r"8193 bytes.*8 KiB.*MATCH_MAX_FILEPATH_BYTES"):
        client.add(longest + "x", photo_paths[2], collection=collection)
    client.delete(presigned, collection=collection)
    assert client.list(collection=collection) == [longest]


def test_the_async_client(
    api_server: MatchServer, collection: str, photo_paths: list[Path]
) -> None:
    async def session() -> None:
        async with AsyncClient(api_server.url) as match:
            await match.ping()
            await match.add("a.jpg", photo_paths[0], metadata={"n": 1}, collection=collection)
            found = await match.search(photo_paths[0], collection=collection)
            assert [(item["filepath"], item["metadata"]) for item in found] == [("a.jpg", {"n": 1})]
            assert (await match.compare(photo_paths[0], photo_paths[0]))["score"] == 100.0
            [listed] = await match.search_hashes([found[0]["pdq"]], collection=collection)
            assert [m["filepath"] for m in listed["matches"]] == ["a.jpg"]
            assert await match.count(collection=collection) == 1
            assert await match.list(collection=collection) == ["a.jpg"]
            assert (await match.thumbnail("a.jpg", collection=collection))[:4] == b"RIFF"
            assert (await match.access())["read_only"] is False
            assert await match.duplicates(collection=collection, since="1d") == []
            with pytest.raises(errors.NotFound):
                await match.delete("b.jpg", collection=collection)
            await match.delete("a.jpg", collection=collection)

    asyncio.run(session())


def test_an_api_key_is_sent_and_a_missing_one_is_unauthorized(tmp_path: Path) -> None:
    env = {"MATCH_DATA_DIR": str(tmp_path / "data"), "MATCH_API_KEYS": "s3cret,viewer:ro"}
    with running_server(env, tmp_path / "server.log") as server:
        with pytest.raises(errors.Unauthorized, match="API key is required") as raised:
            Client(server.url).count()
        assert raised.value.status == 401
        assert Client(server.url, api_key="s3cret").count() == 0
        with pytest.raises(errors.Forbidden, match="read-only"):
            Client(server.url, api_key="viewer").delete("a.jpg")
        assert Client(server.url, api_key="viewer").access()["read_only"] is True
