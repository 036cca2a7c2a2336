"""The docs say which routes need an API key; a real server with keys set agrees, route by route."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from starlette.routing import Route

from api_server import running_server
from match.http.app import create_app
from match.http.auth import OPEN_PATHS
from match.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def routes() -> list[tuple[str, str]]:
    app = create_app(Settings.from_env({}))
    return sorted(
        (route.path, method)
        for route in app.routes
        if isinstance(route, Route)
        for method in (route.methods or ()) - {"HEAD"}
    )


def test_every_route_needs_a_key_but_the_open_ones(tmp_path: Path) -> None:
    env = {"MATCH_DATA_DIR": str(tmp_path / "data"), "MATCH_API_KEYS": "s3cret"}
    with running_server(env, tmp_path / "server.log") as server:
        for path, method in routes():
            for variant in {path, path.rstrip("/") or "/", path.rstrip("/") + "/"}:
                status = httpx.request(method, server.url + variant, timeout=30).status_code
                if path in OPEN_PATHS:
                    assert status != 401, (method, variant)
                else:
                    assert status == 401, (method, variant, status)


def test_the_docs_name_only_the_open_routes_as_open() -> None:
    assert {"/ping", "/health/live", "/health/ready"} == OPEN_PATHS
    security = (ROOT / "docs" / "security.md").read_text()
    assert "every route except `/ping`, `/health/live` and `/health/ready`" in " ".join(
        security.split()
    )
    for doc in DOCS:
        text = " ".join(doc.read_text().split())
        for claim in re.finditer(r"`(/[^`]*)`[^.]{0,40}(needs|need) no (credentials|key)", text):
            assert claim.group(1) in OPEN_PATHS, f"{doc.name}: {claim.group(0)}"
