"""/openapi.json and /docs stay true to the routes: the same paths and methods as the app, and
every parameter they list is one the server really reads, with the type and requiredness listed
(checked by sending a bad value for each and seeing the server name it)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route

from api_server import Api
from match.http.app import create_app
from match.settings import Settings

# Routes that are not part of the API description.
UNDESCRIBED = {"/openapi.json", "/docs", "/metrics", "/"}  # / lists the routes
VERBS = ("GET", "POST", "PUT", "PATCH", "DELETE")

# A bad value of each declared type, and the words the server's error must contain.
BAD_VALUES = {
    "integer": ("ten", "must be an integer"),
    "number": ("lots", "must be a number"),
    "boolean": ("perhaps", "must be true/false"),
    "json": ("{not json", "not valid JSON"),
}


@pytest.fixture(scope="module")
def spec(api: Api) -> dict[str, Any]:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    return response.json()


@pytest.fixture(scope="module")
def photo(photo_paths: list[Path]) -> bytes:
    return photo_paths[20].read_bytes()


def operations(
    spec: dict[str, Any], *, dsys_only: bool = False
) -> list[tuple[str, str, dict[str, Any]]]:
    """(path, verb, operation) of every route; ``dsys_only``: not the TinEye-style /rest/ routes
    (which answer 200 with the failure inside; tests/test_api_tineye.py covers them)."""
    return [
        (path, verb.upper(), operation)
        for path, item in spec["paths"].items()
        if not (dsys_only and path.startswith("/rest/"))
        for verb, operation in item.items()
    ]


def parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> {"type", "required"} over the query parameters and the form body."""
    found = {
        param["name"]: {"type": _kind(param["schema"]), "required": param["required"]}
        for param in operation["parameters"]
    }
    for media in operation.get("requestBody", {}).get("content", {}).values():
        schema = media["schema"]
        for name, field in schema["properties"].items():
            described = {"type": _kind(field), "required": name in schema.get("required", [])}
            assert found.setdefault(name, described) == described
    return found


def _kind(schema: dict[str, Any]) -> str:
    if schema.get("format") == "binary":
        return "file"
    if schema.get("contentMediaType") == "application/json":
        return "json"
    return schema["type"]


def test_paths_and_methods_are_the_apps_routes(spec: dict[str, Any]) -> None:
    app = create_app(Settings.from_env({}))
    routes = {
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route) and route.path not in UNDESCRIBED
        for method in (route.methods or ()) - {"HEAD"}
    }
    assert routes == {(path, verb) for path, verb, _ in operations(spec)}
    assert {"/add", "/delete", "/search", "/compare", "/count", "/list", "/ping"} <= {
        path for path, _ in routes
    }


def test_every_described_operation_answers_and_others_are_405(
    api: Api, spec: dict[str, Any], photo: bytes
) -> None:
    for path, item in spec["paths"].items():
        if path.startswith("/rest/"):
            continue  # TinEye-style routes: tests/test_api_tineye.py
        if path == "/hashes":
            continue  # its GET answers a file, not JSON: tests/test_api_pdq.py
        if path == "/thumbnail":
            continue  # it answers an image, not JSON: tests/test_api.py, tests/test_web.py
        described = {verb.upper() for verb in item}
        for verb in VERBS:
            if (path, verb) == ("/collections", "DELETE"):  # a collection to delete
                added = {"filepath": "docs/dropped.jpg", "collection": "docs-dropped"}
                api.call("POST", "/add", data=added, files={"image": ("a.jpg", photo)})
            status, body = api.call(verb, path, **_valid_request(path, photo))
            if verb in described:
                assert status == 200, (verb, path, body)
            else:
                assert status == 405, (verb, path, body)


def _valid_request(path: str, photo: bytes) -> dict[str, Any]:
    """A request each route accepts (for /delete: a filepath added just before)."""
    if path == "/add":
        return {"data": {"filepath": "docs/added.jpg"}, "files": {"image": ("a.jpg", photo)}}
    if path == "/delete":
        return {"data": {"filepath": "docs/added.jpg"}}
    if path == "/search":
        return {"files": {"image": ("a.jpg", photo)}}
    if path == "/compare":
        return {"files": {"image1": ("a.jpg", photo), "image2": ("b.jpg", photo)}}
    if path == "/collections":
        return {"params": {"collection": "docs-dropped"}}
    if path == "/hashes/search":
        return {"data": {"pdq": "0" * 64}}
    return {}


def test_every_described_parameter_is_read_with_its_type(
    api: Api, spec: dict[str, Any], photo: bytes
) -> None:
    checked = 0
    for path, verb, operation in operations(spec, dsys_only=True):
        for name, described in parameters(operation).items():
            request = _valid_request(path, photo)
            data, files = dict(request.get("data", {})), dict(request.get("files", {}))
            kind = described["type"]
            if described["required"]:
                data.pop(name, None)
                status, body = _send(api, verb, path, data, files)
                assert (status, body["error"]) == (400, [f"Parameter '{name}' is required"])
            if kind in BAD_VALUES:
                value, words = BAD_VALUES[kind]
            elif kind == "file":
                value, words = "text, not a file", "must be an uploaded file"
                files.pop(name, None)
            elif name.startswith("url"):
                value, words = "ftp://example.com/a.jpg", "http:// or https://"
                files.pop(name.replace("url", "image"), None)
            else:
                continue  # filepath strings: any text is valid
            data[name] = value
            status, body = _send(api, verb, path, data, files)
            assert status == 400, (verb, path, name, body)
            assert f"'{name}'" in body["error"][0] and words in body["error"][0]
            checked += 1
    assert checked >= 15


def _send(
    api: Api, verb: str, path: str, data: dict[str, Any], files: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    if verb == "GET":  # a GET carries its parameters in the query string
        return api.call(verb, path, params=data)
    return api.call(verb, path, data=data, files=files or None)


def test_docs_page_lists_every_route_and_parameter_without_external_assets(
    api: Api, spec: dict[str, Any]
) -> None:
    response = api.client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = html.unescape(response.text)
    for path, verb, operation in operations(spec):
        assert path in page and verb in page and operation["summary"] in page
        for name in parameters(operation):
            assert f"<code>{name}</code>" in page
    assert "<script" not in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page


def test_the_api_reference_documents_every_route_and_parameter() -> None:
    reference = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    spec = create_app(Settings.from_env({})).state.openapi
    for path, verb, operation in operations(spec, dsys_only=True):
        assert re.search(rf"`(\S*\|)?{verb}(\|\S*)? {re.escape(path)}`", reference), (verb, path)
        for name in parameters(operation):
            assert f"`{name}`" in reference, (path, name)
