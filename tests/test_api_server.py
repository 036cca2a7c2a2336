"""match.http.server: the settings ``serve`` is given reach every worker process, also those that
differ from the environment (as a CLI option would make them)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from api_server import Api, MatchServer, free_port, worker_pids
from match.http.server import WORKER_MALLOC_ARENAS, export_settings
from match.settings import SETTINGS, Settings


def test_exported_settings_read_back_the_same(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for setting in SETTINGS:
        # set first, so that the undo also removes what export_settings writes into a variable
        # that was not set (a bare delenv of an absent one records nothing, and the exported
        # ALL_ORIENTATIONS=false then reached every later test's server and CLI process)
        monkeypatch.setenv(setting.name, "")
        monkeypatch.delenv(setting.name)
    settings = Settings.from_env({}).replace(
        port=9999,
        worker_count=3,
        match_data_dir=str(tmp_path),
        all_orientations=False,
        elasticsearch_url=None,
        match_distance_cutoff=0.3,
        match_allow_private_urls=True,
        match_url_timeout=2.5,
    )
    export_settings(settings)
    assert Settings.from_env() == settings


def test_serve_gives_its_settings_to_every_worker(tmp_path: Path, photo_paths: list[Path]) -> None:
    data_dir = tmp_path / "given-by-serve"
    port = free_port()
    # The environment names another folder; serve() is told this one, with 2 workers.
    program = (
        "from match.http.server import serve; from match.settings import Settings; "
        f"serve(Settings.from_env().replace(match_data_dir={str(data_dir)!r}, port={port}, "
        "host='127.0.0.1', worker_count=2))"
    )
    env = {"MATCH_DATA_DIR": str(tmp_path / "from-environment"), "WORKER_COUNT": "1"}
    server = MatchServer(env, tmp_path / "server.log", command=(sys.executable, "-c", program))
    server.port, server.url = port, f"http://127.0.0.1:{port}"
    server.start()
    api = Api(server.url)
    try:
        api.add("served.jpg", photo_paths[0].read_bytes())
        for _ in range(10):  # whichever worker answers uses the same store
            assert api.ok("GET", "/count") == [1]
        # and every worker starts with glibc's arenas limited (an operator's value wins)
        arenas = os.environ.get("MALLOC_ARENA_MAX", WORKER_MALLOC_ARENAS)
        assert server.process is not None
        children = worker_pids(server.process.pid)  # the workers, and multiprocessing's tracker
        assert len(children) >= 2
        for pid in children:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert f"MALLOC_ARENA_MAX={arenas}".encode() in environ
    finally:
        api.close()
        server.stop()
    assert data_dir.is_dir() and any(data_dir.iterdir())
    assert not (tmp_path / "from-environment").exists()
    assert server.log().count("Application startup complete") == 2
