"""Optional access control (match.http.auth) on a real server: with API keys set, every route but
/ping needs a key (Bearer or HTTP Basic password), a read-only key may read but not write, the
refusals are envelopes, and no key ever reaches the log."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from api_server import Api, MatchServer
from match.http.app import ENDPOINTS
from match.http.auth import OPEN_PATHS, load_keys, parse_keys
from match.settings import Settings, SettingsError

WRITE_KEY = "w-3f1c7a9e52b04d6e8a1b"
READ_KEY = "r-9b2e4d6f80a1c3e5f7a9"
FILE_KEY = "f-5d7e9a1b3c5d7e9f1a3b"
KEYS = (WRITE_KEY, READ_KEY, FILE_KEY)

# Every route and method the app serves besides the open probes (the API, TinEye's,
# description, metrics).
GUARDED = [
    (verb, endpoint.path)
    for endpoint in ENDPOINTS
    if endpoint.path not in OPEN_PATHS
    for verb in endpoint.methods
] + [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/metrics")]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(key: str, user: str = "anyone") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{key}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatchServer]:
    folder = tmp_path_factory.mktemp("auth")
    key_file = folder / "keys"
    key_file.write_text(f"# keys of the batch importer\n{FILE_KEY}\n")
    env = {
        "MATCH_DATA_DIR": str(folder / "data"),
        "WORKER_COUNT": "1",
        "MATCH_API_KEYS": f"{WRITE_KEY}, {READ_KEY}:ro",
        "MATCH_API_KEYS_FILE": str(key_file),
    }
    server = MatchServer(env, folder / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(server: MatchServer) -> Iterator[Api]:
    client = Api(server.url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def photo(photo_paths: list[Path]) -> bytes:
    return photo_paths[0].read_bytes()


def test_ping_needs_no_key(api: Api) -> None:
    assert api.ok("GET", "/ping") == []


def test_the_health_probes_need_no_key(api: Api) -> None:
    assert api.ok("GET", "/health/live") == []
    assert api.ok("GET", "/health/ready") == []


@pytest.mark.parametrize(("verb", "path"), GUARDED)
def test_every_other_route_needs_a_key(api: Api, verb: str, path: str) -> None:
    response = api.client.request(verb, path)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert "Basic" in challenge and "Bearer" in challenge
    body = response.json()
    assert body["status"] == "fail" and body["result"] == []
    assert "API key is required" in body["error"][0]


@pytest.mark.parametrize(
    "headers",
    [
        bearer("not-a-key"),
        bearer(WRITE_KEY[:-1]),
        bearer(WRITE_KEY + "x"),
        basic("not-a-key"),
        basic(""),
        {"Authorization": f"Basic {WRITE_KEY}"},  # not base64 of user:password
        {"Authorization": f"Token {WRITE_KEY}"},  # unknown scheme
        {"Authorization": base64.b64encode(f"u:{WRITE_KEY}".encode()).decode()},  # no scheme
        {"X-Api-Key": WRITE_KEY},
    ],
    ids=[
        "unknown",
        "prefix",
        "longer",
        "basic-unknown",
        "basic-empty",
        "basic-raw",
        "scheme",
        "no-scheme",
        "other-header",
    ],
)
def test_a_wrong_key_is_401(api: Api, headers: dict[str, str]) -> None:
    status, body = api.call("GET", "/count", headers=headers)
    assert status == 401 and body["method"] == "count"


@pytest.mark.parametrize(
    "headers",
    [bearer(WRITE_KEY), basic(WRITE_KEY), basic(WRITE_KEY, user=""), bearer(FILE_KEY)],
    ids=["bearer", "basic", "basic-no-user", "from-file"],
)
def test_a_read_write_key_may_add_search_and_delete(
    api: Api, photo: bytes, headers: dict[str, str]
) -> None:
    filepath = f"auth/{headers['Authorization'][:12]}.jpg"
    files = {"image": ("a.jpg", photo)}
    assert api.ok("POST", "/add", data={"filepath": filepath}, files=files, headers=headers) == []
    found = api.ok("POST", "/search", files=files, headers=headers)
    assert filepath in [match["filepath"] for match in found]
    assert api.ok("DELETE", "/delete", params={"filepath": filepath}, headers=headers) == []


def test_a_read_only_key_reads_but_cannot_write(api: Api, photo: bytes) -> None:
    writer, reader = bearer(WRITE_KEY), basic(READ_KEY)
    files = {"image": ("a.jpg", photo)}
    api.ok("POST", "/add", data={"filepath": "auth/kept.jpg"}, files=files, headers=writer)
    count = api.ok("GET", "/count", headers=reader)
    listed = api.ok("GET", "/list", headers=reader)

    # search, compare, count and list, on both APIs
    found = api.ok("POST", "/search", files=files, headers=reader)
    assert "auth/kept.jpg" in [match["filepath"] for match in found]
    both = {"image1": ("a.jpg", photo), "image2": ("b.jpg", photo)}
    assert api.ok("POST", "/compare", files=both, headers=reader)[0]["score"] > 99
    status, body = api.call("POST", "/rest/search/", files=files, headers=reader)
    assert (status, body["status"]) == (200, "ok")
    status, body = api.call("GET", "/rest/count/", headers=reader)
    assert (status, body["result"]) == (200, count)

    writes = [
        ("POST", "/add", {"data": {"filepath": "auth/new.jpg"}, "files": files}),
        ("DELETE", "/delete", {"params": {"filepath": "auth/kept.jpg"}}),
        ("POST", "/rest/add/", {"data": {"filepath": "auth/new2.jpg"}, "files": files}),
        ("POST", "/rest/delete/", {"data": {"filepath": "auth/kept.jpg"}}),
        (
            "POST",
            "/rest/update_metadata/",
            {"data": {"filepath": "auth/kept.jpg", "metadata": '{"a": 1}'}},
        ),
    ]
    for verb, path, kwargs in writes:
        status, body = api.call(verb, path, headers=reader, **kwargs)
        assert status == 403, (path, body)
        assert body["status"] == "fail" and "read-only" in body["error"][0]
    assert api.ok("GET", "/count", headers=reader) == count
    assert api.ok("GET", "/list", headers=reader) == listed
    found = api.ok("POST", "/search", files=files, headers=reader)
    kept = [match for match in found if match["filepath"] == "auth/kept.jpg"]
    assert kept and kept[0]["metadata"] is None


def test_keys_never_reach_the_log(api: Api, server: MatchServer, photo: bytes) -> None:
    for key in KEYS:
        for headers in (bearer(key), basic(key), bearer(key + "-wrong")):
            api.client.get("/count", headers=headers)
            api.client.post("/add", headers=headers, data={"filepath": "x"})
    log = server.log()
    assert "/count" in log  # the access log is there ...
    for key in KEYS:  # ... but no key, plain or inside a Basic credential
        assert key not in log
        assert base64.b64encode(f"anyone:{key}".encode()).decode() not in log


def test_key_parsing(tmp_path: Path) -> None:
    keys = parse_keys("a, b:ro,,\n# comment, c\n d # trailing comment\n")
    assert [key.read_only for key in keys] == [False, True, False]
    path = tmp_path / "keys"
    path.write_text("k1\nk2:ro\n")
    settings = Settings.from_env({"MATCH_API_KEYS_FILE": str(path), "MATCH_API_KEYS": "k0"})
    assert [key.read_only for key in load_keys(settings)] == [False, False, True]
    assert load_keys(Settings.from_env({})) == []


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MATCH_API_KEYS_FILE": "/nonexistent/keys"}, "cannot read"),
        ({"MATCH_API_KEYS_FILE": "EMPTY"}, "holds no key"),
        ({"MATCH_API_KEYS": " , :ro"}, "holds no key"),
    ],
)
def test_a_misconfigured_key_setting_is_an_error_not_an_open_server(
    tmp_path: Path, env: dict[str, str], words: str
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# no keys yet\n")
    env = {name: str(empty) if value == "EMPTY" else value for name, value in env.items()}
    with pytest.raises(SettingsError, match=words):
        load_keys(Settings.from_env(env))


def test_a_server_with_an_unreadable_key_file_does_not_start(tmp_path: Path) -> None:
    env = {"MATCH_DATA_DIR": str(tmp_path / "data"), "MATCH_API_KEYS_FILE": "/nonexistent/keys"}
    server = MatchServer(env, tmp_path / "server.log")
    with pytest.raises(RuntimeError, match="exited with 2"):
        server.start()
    assert "MATCH_API_KEYS_FILE /nonexistent/keys: cannot read it" in server.log()
    assert "Traceback" not in server.log()
