"""The CLI and the API agree: every command, run as a subprocess on the same embedded store as a
real server, against the matching route — the same results, defaults, validation and messages.
Also the bulk loads (add with keys, import) that a user runs twice, on the same store."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from api_server import Api, ImageServer, MatchServer


class Cli:
    def __init__(self, data: Path) -> None:
        self.env = dict(os.environ, MATCH_DATA_DIR=str(data), MATCH_ALLOW_PRIVATE_URLS="true")

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "match", *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
            timeout=300,
            check=False,
        )

    def json(self, *args: str) -> dict[str, Any]:
        done = self.run(*args, "--json")
        assert done.returncode in (0, 4), done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-api") / "data"


@pytest.fixture(scope="module")
def server(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    env = {"MATCH_DATA_DIR": str(store), "WORKER_COUNT": "1", "MATCH_ALLOW_PRIVATE_URLS": "1"}
    with MatchServer(env, tmp_path_factory.mktemp("cli-api") / "server.log") as process:
        api = Api(process.url)
        yield api
        api.close()


@pytest.fixture(scope="module")
def cli(store: Path) -> Cli:
    return Cli(store)


@pytest.fixture(scope="module")
def photos(photo_paths: list[Path], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    copies = []
    for photo in photo_paths[:6]:
        copies.append(folder / photo.name)
        shutil.copy(photo, copies[-1])
    turned = folder / "turned.jpg"
    image = Image.open(photo_paths[0]).rotate(90, expand=True)
    image.save(turned, quality=90)
    return [*copies, turned]


def upload(path: Path, name: str = "image") -> dict[str, tuple[str, bytes]]:
    return {name: (path.name, path.read_bytes())}


def test_every_command_against_its_route(
    cli: Cli, server: Api, photos: list[Path], images: ImageServer, photo_paths: list[Path]
) -> None:
    original, turned = photos[0], photos[-1]
    # add: the CLI's key and metadata are the route's
    done = cli.run("add", *map(str, photos[:3]), "--relative-to", str(original.parent),
                   "--prefix", "cli/", "--metadata", '{"via": "cli"}', "--silent")  # fmt: skip
    assert done.returncode == 0, done.stderr
    for photo in photos[3:5]:
        fields = {"filepath": f"api/{photo.name}", "metadata": '{"via": "api"}'}
        server.ok("POST", "/add", data=fields, files=upload(photo))

    # count and list
    assert cli.run("count").stdout.split() == [str(server.ok("GET", "/count")[0])] == ["5"]
    assert cli.run("list", "--offset", "1", "--limit", "3").stdout.split() == server.ok(
        "GET", "/list", params={"offset": 1, "limit": 3}
    )
    assert cli.run("collections").stdout.split() == ["5", "default"]
    assert server.ok("GET", "/collections") == [{"collection": "default", "count": 5}]

    # search by file, by URL, by stored filepath: the same envelope
    for cli_args, api_kwargs in [
        ((str(turned),), {"files": upload(turned)}),
        ((str(turned), "--no-all-orientations"),
         {"files": upload(turned), "data": {"all_orientations": "false"}}),
        ((images.url(photo_paths[1].name), "--min-score", "90"),
         {"data": {"url": images.url(photo_paths[1].name), "min_score": "90"}}),
        (("--filepath", "api/" + photos[3].name, "--limit", "2", "--offset", "0"),
         {"data": {"filepath": "api/" + photos[3].name, "limit": "2"}}),
    ]:  # fmt: skip
        from_cli = cli.json("search", *cli_args)
        assert from_cli == _envelope(server, "/search", api_kwargs), cli_args
    assert cli.json("search", str(turned))["result"][0]["filepath"] == "cli/" + original.name

    # compare: the same defaults (ALL_ORIENTATIONS), the same score
    for cli_args, api_kwargs in [
        ((str(original), str(turned)),
         {"files": upload(original, "image1") | upload(turned, "image2")}),
        (("--no-all-orientations", str(original), str(turned)),
         {"files": upload(original, "image1") | upload(turned, "image2"),
          "data": {"all_orientations": "false"}}),
        (("--filepath1", "cli/" + original.name, str(turned)),
         {"files": upload(turned, "image2"), "data": {"filepath1": "cli/" + original.name}}),
    ]:  # fmt: skip
        assert cli.json("compare", *cli_args) == _envelope(server, "/compare", api_kwargs)
    assert cli.json("compare", str(original), str(turned))["result"][0]["score"] > 90

    # the same validation, the same messages
    for cli_args, api_data in [
        (("search", str(turned), "--limit", "0"), {"limit": "0"}),
        (("search", str(turned), "--min-score", "200"), {"min_score": "200"}),
        (("list", "--limit", "0"), None),
    ]:
        done = cli.run(*cli_args)
        if api_data is None:
            status, answer = server.call("GET", "/list", params={"limit": "0"})
        else:
            status, answer = server.call("POST", "/search", data=api_data, files=upload(turned))
        assert status == 400 and done.returncode == 1
        assert done.stderr.strip() == f"match: {answer['error'][0]}"

    # nothing found: an empty result for both; the CLI exits 4 with a line on stderr
    unrelated = photos[5]
    assert server.ok("POST", "/search", files=upload(unrelated)) == []
    done = cli.run("search", str(unrelated))
    assert (done.returncode, done.stdout) == (4, "")
    assert done.stderr.strip() == f"match: nothing found for {unrelated}"

    # delete
    assert cli.run("delete", "api/" + photos[4].name).returncode == 0
    status, answer = server.call("DELETE", "/delete", params={"filepath": "api/" + photos[4].name})
    done = cli.run("delete", "api/" + photos[4].name)
    assert status == 404 and done.stderr.strip() == f"match: {answer['error'][0]}"
    assert server.ok("GET", "/count") == [4]


def _envelope(server: Api, path: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    status, answer = server.call("POST", path, **kwargs)
    assert status == 200, answer
    return answer


def test_a_file_that_is_not_an_image_is_named(cli: Cli, photos: list[Path], tmp_path: Path) -> None:
    text = tmp_path / "notimage.jpg"
    text.write_text("not an image")
    done = cli.run("compare", str(text), str(photos[0]))
    assert done.returncode == 1
    assert done.stderr.strip() == f"match: {text}: The data is not an image Match can read"
    done = cli.run("add", str(tmp_path / "missing.jpg"))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"{tmp_path / 'missing.jpg'}: No such file or directory",
        "added 0 images, 1 failed",
    ]


def test_add_twice_skips_what_is_stored(tmp_path: Path, photos: list[Path]) -> None:
    cli = Cli(tmp_path / "data")
    folder = photos[0].parent
    first = cli.run("add", str(folder), "-r", "--relative-to", str(folder), "--prefix", "set1/")
    assert first.returncode == 0, first.stderr
    assert first.stderr.strip() == f"added {len(photos)} images, 0 failed"  # no bar: not a tty
    again = cli.run("add", str(folder), "-r", "--relative-to", str(folder), "--prefix", "set1/")
    assert again.stderr.strip() == (
        f"added 0 images, 0 failed, {len(photos)} already stored "
        "(skipped; --replace adds them again)"
    )
    replaced = cli.run("add", str(photos[0]), "--relative-to", str(folder), "--prefix", "set1/",
                       "--replace")  # fmt: skip
    assert replaced.stderr.strip() == "added 1 image, 0 failed"
    assert sorted(cli.run("list").stdout.split()) == sorted(f"set1/{p.name}" for p in photos)


def test_import_a_list_twice_with_a_failures_file(
    tmp_path: Path, photos: list[Path], images: ImageServer, photo_paths: list[Path]
) -> None:
    cli = Cli(tmp_path / "data")
    rows = [
        {"url": images.url(photo_paths[0].name), "filepath": "web/0", "metadata": {"n": 0}},
        {"url": images.url(photo_paths[1].name), "metadata": {"n": 1}},  # key: the url
        {"url": str(photos[2]), "filepath": "local/2"},
        {"url": images.url("no-such.jpg"), "filepath": "web/missing"},
    ]
    listing = tmp_path / "images.jsonl"
    listing.write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = cli.run("import", str(listing), "--jobs", "2")
    assert done.returncode == 1
    assert "added 3 images, 1 failed" in done.stderr and "web/missing" in done.stderr
    failures = tmp_path / "images.failures.jsonl"
    [failed] = [json.loads(line) for line in failures.read_text().splitlines()]
    assert failed["filepath"] == "web/missing" and "404" in failed["error"]
    assert sorted(cli.run("list").stdout.split()) == sorted(
        ["web/0", images.url(photo_paths[1].name), "local/2"]
    )
    found = json.loads(cli.run("search", str(photo_paths[0]), "--json").stdout)["result"]
    assert (found[0]["filepath"], found[0]["metadata"]) == ("web/0", {"n": 0})
    # resumed: what is stored is skipped
    again = cli.run("import", str(listing))
    assert "added 0 images, 1 failed, 3 already stored" in again.stderr
    # the same rows as CSV, metadata as JSON text; a misspelled column is refused
    table = tmp_path / "images.csv"
    table.write_text(f'url,filepath,metadata\n{photos[3]},csv/3,"{{""n"": 3}}"\n')
    assert cli.run("import", str(table)).returncode == 0
    assert cli.run("count", "--filter", '{"n": 3}').stdout.split() == ["1"]
    typo = tmp_path / "typo.csv"
    typo.write_text(f"url,filpath\n{photos[4]},x\n")
    done = cli.run("import", str(typo))
    assert done.returncode == 1 and "unknown column 'filpath'" in done.stderr


def test_the_store_is_where_the_user_thinks_it_is(tmp_path: Path, photos: list[Path]) -> None:
    env = {key: value for key, value in os.environ.items() if key != "MATCH_DATA_DIR"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "match", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=elsewhere,
                              timeout=300, check=False)  # fmt: skip

    refused = run("add", str(photos[0]))
    assert refused.returncode == 1 and "--create" in refused.stderr
    assert not (elsewhere / "data").exists()
    created = run("add", str(photos[0]), "--create", "--verbose")
    assert created.returncode == 0, created.stderr
    store = (elsewhere / "data" / "match.sqlite3").resolve()
    assert created.stderr.splitlines()[0] == f"match: using the embedded store {store}"
    assert run("count").stdout.split() == ["1"]  # there now: no --create needed


def test_a_progress_bar_only_on_a_terminal(tmp_path: Path, photos: list[Path]) -> None:
    cli = Cli(tmp_path / "data")
    to_file = cli.run("add", str(photos[0]), str(photos[1]))
    assert "\r" not in to_file.stderr and "img/s" not in to_file.stderr
    main, terminal = pty.openpty()  # stderr a terminal of 100 columns: the bar is drawn
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    try:
        subprocess.run([sys.executable, "-m", "match", "add", *map(str, photos[2:4])],
                       stdout=subprocess.DEVNULL, stderr=terminal, env=cli.env, timeout=300,
                       check=True)  # fmt: skip
        os.close(terminal)
        drawn = b""
        while chunk := _read_pty(main):
            drawn += chunk
    finally:
        os.close(main)
    assert b"img/s" in drawn and b"\r" in drawn and b"added 2 images, 0 failed" in drawn


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the other end is closed
        return b""
