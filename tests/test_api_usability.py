"""What a new user trips over, on a real server: JSON request bodies, unknown parameters reported,
trailing slashes, every answer in the envelope, and log lines that say why."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from api_server import Api, ImageServer, running_server

HARDENING_SUITE = True  # the HTTP layer: the embedded store and the first engine


def test_json_bodies_on_every_post_route(
    api: Api, images: ImageServer, photo_paths: list[Path]
) -> None:
    collection = f"json-{uuid.uuid4().hex[:8]}"
    url = images.url(photo_paths[0].name)
    body = {"filepath": "a.jpg", "url": url, "metadata": {"n": 1}, "collection": collection}
    assert api.ok("POST", "/add", json=body) == []
    found = api.ok("POST", "/search", json={"url": url, "collection": collection, "limit": 5})
    assert [(item["filepath"], item["metadata"]) for item in found] == [("a.jpg", {"n": 1})]
    by_filepath = api.ok("POST", "/search", json={"filepath": "a.jpg", "collection": collection})
    assert by_filepath[0]["filepath"] == "a.jpg"
    [compared] = api.ok(
        "POST", "/compare", json={"url1": url, "filepath2": "a.jpg", "collection": collection}
    )
    assert compared["score"] == pytest.approx(100.0)
    assert api.ok("POST", "/count", json={"collection": collection, "filter": {"n": 1}}) == [1]
    assert api.ok("POST", "/list", json={"collection": collection, "limit": 1}) == ["a.jpg"]
    assert api.ok("POST", "/ping", json={}) == []
    status, answer = api.call("POST", "/search", json={"url": url, "limit": 0})
    assert status == 400 and "'limit' must be between 1 and 10000" in answer["error"][0]
    status, answer = api.call("POST", "/search", content=b"[1, 2]", headers=_json)
    assert status == 400 and "must be an object" in answer["error"][0]
    status, answer = api.call("POST", "/search", content=b"{url: x}", headers=_json)
    assert status == 400 and "not valid JSON" in answer["error"][0]
    api.ok("DELETE", "/collections", params={"collection": collection})


_json = {"content-type": "application/json"}


def test_a_body_of_another_type_is_refused_not_ignored(api: Api) -> None:
    status, answer = api.call(
        "POST", "/search", content=b'{"url": "x"}', headers={"content-type": "text/plain"}
    )
    assert status == 415 and answer["method"] == "search"
    assert "application/json" in answer["error"][0] and "text/plain" in answer["error"][0]


def test_unknown_parameters_are_a_warning_and_dsys_answers_are_unchanged(
    api: Api, photo_paths: list[Path]
) -> None:
    status, answer = api.call("GET", "/list", params={"limt": "5", "offest": "1"})
    assert status == 200 and answer["status"] == "ok"
    assert len(answer["result"]) <= 20  # the defaults: limt is not limit
    first, second = answer["warning"]
    assert first.startswith("Unknown parameter 'limt' ignored") and "did you mean 'limit'" in first
    assert second.startswith("Unknown parameter 'offest'") and "'offset'" in second
    # an error answer carries the warning too: the misspelling may be the cause
    status, answer = api.call("POST", "/search", data={"imgae_url": "https://example.com/a.jpg"})
    assert status == 400 and "Unknown parameter 'imgae_url'" in answer["warning"][0]
    # what dsys/match's clients send: the four keys, no warning
    status, answer = api.call("GET", "/count")
    assert status == 200 and list(answer) == ["status", "error", "method", "result"]


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("GET", "/count/", "count"),
        ("POST", "/list/", "list"),
        ("GET", "/ping/", "ping"),
        ("GET", "/rest/count", "count"),
        ("GET", "/rest/count/", "count"),
        ("GET", "/collections/", "collections"),
    ],
)
def test_trailing_slashes_are_answered_like_the_route(
    api: Api, method: str, path: str, name: str
) -> None:
    status, answer = api.call(method, path)
    assert status == 200 and answer["method"] == name, answer


def test_a_post_with_a_trailing_slash_is_answered_not_redirected(
    api: Api, photo_paths: list[Path]
) -> None:
    response = api.client.post("/search/", files={"image": photo_paths[0].read_bytes()})
    assert response.status_code == 200 and response.json()["method"] == "search"


def test_every_answer_names_its_method(api: Api) -> None:
    status, answer = api.call("GET", "/")
    assert status == 200 and answer["method"] == "index"
    assert {"path": "/search", "methods": ["POST"]}.items() <= answer["result"][2].items()
    status, answer = api.call("POST", "/")
    assert status == 405 and answer["method"] == "index"
    status, answer = api.call("GET", "/no/such/route")
    assert status == 404 and answer["method"] == "no/such/route"


def test_log_lines_give_the_reason_and_the_route_in_text_format(tmp_path: Path) -> None:
    env = {
        "MATCH_DATA_DIR": str(tmp_path / "data"),
        "MATCH_API_KEYS": "s3cret",
        "MATCH_LOG_FORMAT": "text",
        "MATCH_LOG_LEVEL": "info",
    }
    with running_server(env, tmp_path / "server.log") as server:
        key = {"authorization": "Bearer s3cret"}
        assert httpx.post(f"{server.url}/add", headers=key).status_code == 400
        assert httpx.get(f"{server.url}/count").status_code == 401
        metrics = httpx.get(f"{server.url}/metrics", headers=key).text
    lines = server.log().splitlines()
    add = next(line for line in lines if "POST /add 400" in line)
    assert add.endswith("POST /add 400: Parameter 'filepath' is required")
    assert " info match.access [" in add and not add.startswith("{")
    assert any(
        line.endswith(
            "GET /count 401: An API key is required: send it as a Bearer "
            "token or as the HTTP Basic password"
        )
        for line in lines
    )
    assert 'match_http_errors_total{endpoint="/count",status="401"} 1.0' in metrics


def test_json_log_lines_carry_the_reason_as_a_field(tmp_path: Path) -> None:
    env = {"MATCH_DATA_DIR": str(tmp_path / "data")}  # the defaults: json, info
    with running_server(env, tmp_path / "server.log") as server:
        assert httpx.get(f"{server.url}/list", params={"limit": "0"}).status_code == 400
    entries = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    [refused] = [entry for entry in entries if entry.get("path") == "/list"]
    assert refused["status"] == 400 and refused["endpoint"] == "/list"
    assert refused["reason"] == "Parameter 'limit' must be between 1 and 10000, got 0"
    assert refused["message"] == f"GET /list 400: {refused['reason']}"
