"""A damaged store is noticed and said; readiness means the service can serve.

Real store files are damaged as a disk would damage them: random bytes written over one page
of a table's b-tree (found with SQLite's dbstat table). Then the store must refuse to answer
(StoreDamaged, 503 in the envelope, never a wrong 200 or a 500), flag itself for every process,
and come back with ``match check --repair`` when the damage is in what is derived from the
records. Readiness (``/health/ready``) must say not ready on a damaged store, a folder that
takes no files, a (nearly) full disk and an engine that cannot be reached.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from api_server import Api, MatchServer, free_port
from match.errors import StoreDamaged
from match.service import Matcher
from match.settings import Settings
from match.signature import SIGNATURE_LENGTH
from match.stores.base import ImageRecord
from match.stores.elastic import ElasticStore, EngineClient
from match.stores.sqlite import SQLiteStore, integrity
from match.stores.sqlite.integrity import flag_path

PHOTOS = 10
DERIVED = ("codes", "words", "fields")
RECORDS = ("images", "local")


@pytest.fixture(scope="module")
def stored(photo_paths: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store folder holding PHOTOS photos, with metadata, local features, PDQ hashes and
    thumbnails; copied by each test that damages it."""
    folder = tmp_path_factory.mktemp("integrity") / "data"
    matcher = Matcher(Settings.from_env().replace(match_data_dir=str(folder)))
    for path in photo_paths[:PHOTOS]:
        matcher.add(path.name, path.read_bytes(), {"name": path.stem, "n": 1})
    matcher.close()
    return folder


def damaged_copy(stored: Path, tmp_path: Path, table: str) -> Path:
    """A copy of the store with 1,500 random bytes written over the start of one page of
    ``table``'s b-tree (its header and cell pointers: damage SQLite can see)."""
    folder = tmp_path / f"damaged-{table}"
    shutil.copytree(stored, folder)
    file = folder / "match.sqlite3"
    with sqlite3.connect(file) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = [
            row[0]
            for row in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype IN ('leaf', 'internal') "
                "ORDER BY pageno",
                (table,),
            )
        ]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    assert pages, table
    noise = random.Random(table).randbytes(1500)
    with open(file, "r+b") as out:
        out.seek((pages[len(pages) // 2] - 1) * page_size)
        out.write(noise)
    return folder


@pytest.mark.parametrize("table", DERIVED + RECORDS + ("thumbnails",))
def test_damage_in_any_table_is_refused_then_repaired_when_derived(
    stored: Path, tmp_path: Path, table: str
) -> None:
    folder = damaged_copy(stored, tmp_path, table)
    store = SQLiteStore(folder)  # the quick check at open sees it
    assert flag_path(store.path).exists()
    for read in (store.count, lambda: store.list(limit=100), lambda: store.get("x.jpg")):
        with pytest.raises(StoreDamaged, match=f"damaged .*{table}"):
            read()
    other = SQLiteStore(folder, busy_timeout=5)  # another process: the flag holds there too
    with pytest.raises(StoreDamaged):
        other.count()
    assert store.readiness() and "damaged" in store.readiness()[0]
    found = store.check()
    assert found.damaged and any(problem.startswith(table) for problem in found.problems)
    repaired = store.check(repair=True)
    if table in RECORDS:  # what was added cannot be rebuilt: still refused
        assert repaired.damaged and flag_path(store.path).exists()
        with pytest.raises(StoreDamaged):
            store.count()
        return
    assert not repaired.damaged, repaired
    assert any(line.startswith(table) for line in repaired.repaired)
    assert not flag_path(store.path).exists()
    assert store.count() == PHOTOS and other.count() == PHOTOS
    assert not store.check().problems
    assert len(store.list(limit=100)) == PHOTOS


def test_a_quick_check_cut_at_its_budget_is_partial_not_damage(stored: Path) -> None:
    """On a large store the open's structural check stops at its time budget: that is not
    damage (bench/integrity.py found a million-record store flagged for it)."""
    store = SQLiteStore(stored)
    with store._db.maintenance() as conn:
        report = integrity.quick_check(conn, seconds=-1.0, every=1)  # cut at once
    assert not report.problems and not report.complete
    assert not flag_path(store.path).exists()
    store.close()


def test_a_row_hidden_from_a_lookup_is_damage_not_a_shorter_answer(
    stored: Path, tmp_path: Path
) -> None:
    """A damaged page can hide rows without an error: a row the codes index holds and images
    does not, in one snapshot, is damage (before: /list answered 500 KeyError, /search 200
    without the image)."""
    folder = tmp_path / "hidden"
    shutil.copytree(stored, folder)
    store = SQLiteStore(folder)
    assert len(store.list(limit=100)) == PHOTOS
    with sqlite3.connect(store.path) as conn:  # the row vanishes, its bookkeeping stays
        conn.execute("DROP TRIGGER image_deleted")
        conn.execute("DELETE FROM images WHERE id = 3")
    with pytest.raises(StoreDamaged, match="codes index holds image 3"):
        store.list(limit=100)
    with pytest.raises(StoreDamaged):  # flagged: writes are refused too
        store.delete("anything.jpg")
    assert flag_path(store.path).exists()
    assert any("no row in images" in p for p in store.check().problems)
    assert not store.check(repair=True).damaged  # codes rebuilt from the records left
    assert len(store.list(limit=100)) == PHOTOS - 1


def test_readiness_says_what_keeps_the_store_from_serving(stored: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ready"
    shutil.copytree(stored, folder)
    store = SQLiteStore(folder)
    assert store.readiness(min_free_bytes=1) == []
    free = shutil.disk_usage(folder).free
    (full,) = store.readiness(min_free_bytes=free + 2**40)  # a disk nearly full for this one
    assert "MB free" in full
    with read_only(folder) as how:
        problems = store.readiness()
        assert any("not writable" in p for p in problems), (how, problems)


class read_only:
    """The folder takes no new file: immutable (chattr +i) as root, whom permissions do not
    stop; mode 555 otherwise."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __enter__(self) -> str:
        if os.geteuid() == 0:
            if subprocess.run(["chattr", "+i", str(self.folder)], check=False).returncode:
                pytest.skip("chattr +i is not supported on this file system")
            return "immutable"
        self.folder.chmod(0o555)
        return "mode 555"

    def __exit__(self, *_: object) -> None:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(self.folder)], check=True)
        else:
            self.folder.chmod(0o755)


def test_every_route_on_a_damaged_store_then_repaired_while_serving(
    stored: Path, tmp_path: Path, photo_paths: list[Path]
) -> None:
    """The server opens a store whose codes table is damaged: every route that reads or writes
    the store answers 503 naming the damage (never 200, never 500), the probes say so; then
    ``match check --repair`` runs beside the server, and the same server serves again."""
    folder = damaged_copy(stored, tmp_path, "codes")
    photo = photo_paths[0].read_bytes()
    env = {"MATCH_DATA_DIR": str(folder), "WORKER_COUNT": "1"}
    with MatchServer(env, tmp_path / "server.log", ready_status=None) as server:
        api = Api(server.url)
        image = {"image": ("q.jpg", photo)}
        second = {"image2": ("q.jpg", photo)}
        calls = [
            ("POST", "/search", {"files": image}),
            ("GET", "/list", {}),
            ("GET", "/count", {}),
            ("POST", "/add", {"data": {"filepath": "new.jpg"}, "files": image}),
            ("DELETE", "/delete", {"params": {"filepath": photo_paths[1].name}}),
            ("POST", "/compare", {"data": {"filepath1": photo_paths[1].name}, "files": second}),
            ("GET", "/collections", {}),
            ("GET", "/ping", {}),
            ("GET", "/health/ready", {}),
        ]
        for method, path, kwargs in calls:
            status, body = api.call(method, path, **kwargs)
            assert status == 503 and "damaged" in body["error"][0], (path, status, body)
        assert api.call("GET", "/health/live")[0] == 200
        repair = subprocess.run(
            [sys.executable, "-m", "match.cli", "check", "--repair"],
            env=os.environ | env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert repair.returncode == 0, repair.stderr
        assert "codes: rebuilt" in repair.stdout
        assert api.call("GET", "/health/ready")[0] == 200
        found = api.search(photo)
        assert found[0]["filepath"] == photo_paths[0].name
        assert len(api.ok("GET", "/list", params={"limit": 100})) == PHOTOS
        api.add("new.jpg", photo)
        assert api.ok("GET", "/count")[0] == PHOTOS + 1
        api.close()


def test_the_cli_says_damage_and_refuses_to_repair_records(stored: Path, tmp_path: Path) -> None:
    folder = damaged_copy(stored, tmp_path, "images")
    env = os.environ | {"MATCH_DATA_DIR": str(folder)}

    def match(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "match.cli", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    count = match("count")
    assert count.returncode == 3 and "damaged" in count.stderr
    check = match("check")
    assert check.returncode == 1 and "damaged: images" in check.stdout
    repair = match("check", "--repair")
    assert repair.returncode == 1 and "damaged" in repair.stderr
    assert flag_path(folder / "match.sqlite3").exists()


@pytest.mark.engine
def test_a_wrongly_mapped_index_is_said_by_every_operation(
    engine_url: str, engine_index: str
) -> None:
    """An index that maps a field Match writes with another type (made by hand, or by a
    dynamic mapping): every operation is StoreDamaged (503) naming the field, and readiness
    says so."""
    fields = {"path": {"type": "keyword"}, "algorithm": {"type": "long"}}
    wrong = {"mappings": {"properties": fields}}
    httpx.put(f"{engine_url}/{engine_index}", json=wrong, timeout=30).raise_for_status()
    store = ElasticStore(EngineClient(engine_url, retries=1), engine_index)
    said = "maps 'algorithm' as long, Match needs keyword"
    signature = np.random.default_rng(1).integers(-2, 3, SIGNATURE_LENGTH, dtype=np.int8)
    record = ImageRecord("a.jpg", signature)
    for operation in (
        store.count,
        lambda: store.list(),
        lambda: store.add(record),
        lambda: store.search(record.signature[None, :], 0.45, 10),
        lambda: store.get("a.jpg"),
    ):
        with pytest.raises(StoreDamaged, match=said):
            operation()
    assert said in store.readiness()[0]
    assert store.check().damaged
    store.close()


def test_readiness_on_an_engine_that_cannot_be_reached(tmp_path: Path) -> None:
    env = {"ELASTICSEARCH_URL": f"http://127.0.0.1:{free_port()}", "WORKER_COUNT": "1"}
    with MatchServer(env, tmp_path / "server.log", ready_status=None) as server:
        live = httpx.get(server.url + "/health/live", timeout=30)
        ready = httpx.get(server.url + "/health/ready", timeout=60)
    assert live.status_code == 200 and live.json()["status"] == "ok"
    assert ready.status_code == 503
    assert ready.json()["status"] == "fail" and ready.json()["error"]
