"""The `match` command, run as a user would: a subprocess, real files, the real embedded store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from match.cli import _parser


def run(
    *args: str, data_dir: Path | None = None, partial: bool = True
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MATCH_PARTIAL_MATCHING=str(partial).lower())
    if data_dir is not None:
        env["MATCH_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "match", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def golden(fixtures_dir: Path) -> dict:
    return json.loads((fixtures_dir / "golden.json").read_text())


def test_signature_json_matches_image_match(fixtures_dir: Path, golden: dict) -> None:
    image = golden["images"]["B"]
    done = run("signature", str(fixtures_dir / image["file"]), "--json")
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)["result"]
    assert result["signature"] == image["signature"]
    assert result["words"] == image["words"]


def test_compare_prints_the_unrounded_score_in_the_api_envelope(
    fixtures_dir: Path, golden: dict
) -> None:
    # the global signature alone: image-match's own distance
    a, b = golden["images"]["A"]["file"], golden["images"]["B"]["file"]
    done = run("compare", str(fixtures_dir / a), str(fixtures_dir / b), "--json", partial=False)
    assert done.returncode == 0, done.stderr
    envelope = json.loads(done.stdout)
    assert envelope["status"] == "ok" and envelope["method"] == "compare"
    assert envelope["error"] == []
    score = envelope["result"][0]["score"]
    assert score == pytest.approx(100 * (1 - golden["distances"]["A-B"]), abs=1e-10)
    plain = run("compare", str(fixtures_dir / a), str(fixtures_dir / b), partial=False)
    assert float(plain.stdout) == score
    # B is A edited: with partial matching the local features agree more than the signature
    both = run("compare", str(fixtures_dir / a), str(fixtures_dir / b), "--json")
    assert json.loads(both.stdout)["result"][0]["score"] > score


def test_not_an_image_is_a_one_line_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(blank)
    for path in (text, blank, tmp_path / "missing.jpg"):
        done = run("signature", str(path))
        assert done.returncode == 1
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert str(path) in done.stderr
    assert "blank" in run("compare", str(blank), str(blank)).stderr


def test_add_search_list_count_delete_on_the_embedded_store(
    tmp_path: Path, photo_paths: list[Path]
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for photo in photo_paths[:12]:
        shutil.copy(photo, folder / photo.name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    data = tmp_path / "data"

    added = run(
        "add", str(folder), "--recursive", "--metadata", '{"batch": 1}', "--silent", data_dir=data
    )
    assert added.returncode == 1, "a failed file must show in the exit code"
    assert "broken.jpg" in added.stderr
    assert run("count", data_dir=data).stdout.strip() == "12"
    listed = run("list", "--limit", "100", data_dir=data).stdout.split()
    assert sorted(listed) == sorted(str(folder / p.name) for p in photo_paths[:12])

    query = str(folder / photo_paths[3].name)
    found = run("search", query, "--json", "--limit", "3", data_dir=data)
    assert found.returncode == 0, found.stderr
    best = json.loads(found.stdout)["result"][0]
    assert best["filepath"] == query and best["score"] == pytest.approx(100.0)
    assert best["metadata"] == {"batch": 1}

    assert run("delete", query, data_dir=data).returncode == 0
    assert run("count", data_dir=data).stdout.strip() == "11"
    missing = run("delete", query, data_dir=data)
    assert missing.returncode == 1 and query in missing.stderr


def test_every_command_has_help_with_an_example() -> None:
    parser = _parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(commands) >= {
        "serve",
        "add",
        "search",
        "compare",
        "delete",
        "list",
        "count",
        "signature",
    }
    for name, sub in commands.items():
        example = next(line for line in sub.format_help().splitlines() if "Example:" in line)
        assert f"match {name}" in example, name


def test_collections_and_filters_from_the_command_line(
    tmp_path: Path, photo_paths: list[Path]
) -> None:
    data = tmp_path / "data"
    photos = [str(p) for p in photo_paths[:2]]
    done = run(
        "add",
        *photos,
        "--collection",
        "shop-1",
        "--metadata",
        '{"shop": 1}',
        "--silent",
        data_dir=data,
        partial=False,
    )
    assert done.returncode == 0, done.stderr
    assert run("add", photos[0], "--silent", data_dir=data, partial=False).returncode == 0
    assert run("count", "--collection", "shop-1", data_dir=data).stdout.split() == ["2"]
    listed = run("list", "--collection", "shop-1", "--filter", '{"shop": 1}', data_dir=data)
    assert listed.stdout.split() == photos
    assert run("list", "--filter", '{"shop": 1}', data_dir=data).stdout == ""  # default: none
    found = run("search", photos[1], "--collection", "shop-1", "--json", data_dir=data)
    assert json.loads(found.stdout)["result"][0]["filepath"] == photos[1]
    assert run("collections", data_dir=data).stdout.split("\n")[:2] == ["1\tdefault", "2\tshop-1"]
    assert run("collections", "--drop", "shop-1", data_dir=data).returncode == 0
    assert run("count", "--collection", "shop-1", data_dir=data).stdout.split() == ["0"]
    bad = run("list", "--filter", '{"shop": {"near": 1}}', data_dir=data)
    assert bad.returncode == 1 and "unknown operator 'near'" in bad.stderr


def test_signature_prints_the_pdq_hash(photo_paths: list[Path]) -> None:
    from match import pdq
    from match.signature import decode_image

    done = run("signature", str(photo_paths[0]), "--json")
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)["result"]
    expected = pdq.pdq_hash(decode_image(photo_paths[0]))
    assert (result["pdq"], result["pdq_quality"]) == (pdq.to_hex(expected.hash), expected.quality)
    assert f"pdq {result['pdq']}" in run("signature", str(photo_paths[0])).stdout


def test_hash_lists_import_and_export_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    hashes = [bytes([n]) * 32 for n in (1, 2)]
    listed = tmp_path / "list.jsonl"
    listed.write_text(
        json.dumps({"pdq": hashes[0].hex(), "filepath": "a", "metadata": {"k": 1}})
        + "\n{broken\n"
        + json.dumps({"pdq": hashes[1].hex(), "filepath": "b", "quality": 60})
        + "\n"
    )
    done = run("hashes", "import", str(listed), "--collection", "lists", data_dir=data)
    assert done.returncode == 1  # one bad line, reported with its number
    assert "list.jsonl:2: not JSON" in done.stderr and "imported 2 hashes, 1 failed" in done.stderr
    exported = run("hashes", "export", "--collection", "lists", "--format", "csv", data_dir=data)
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines() == [
        "pdq,filepath,quality,metadata",
        f'{hashes[0].hex()},a,,"{{""k"": 1}}"',
        f"{hashes[1].hex()},b,60,",
    ]
    again = tmp_path / "again.csv"
    again.write_text(exported.stdout)
    assert run("hashes", "import", str(again), "--silent", data_dir=data).returncode == 0
    assert run("hashes", "export", data_dir=data).stdout.count("\n") == 2
    missing = run("hashes", "import", str(tmp_path / "nope.csv"), data_dir=data)
    assert missing.returncode == 1 and "nope.csv" in missing.stderr

    # a list of hashes looked up at once
    near = bytearray(hashes[0])
    near[0] ^= 0b111  # 3 bits away
    asked = tmp_path / "asked.txt"
    unknown = (b"\x55" * 32).hex()
    asked.write_text(f"{bytes(near).hex()}\n{unknown}\n")
    found = run("hashes", "search", str(asked), "--collection", "lists", data_dir=data)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [bytes(near).hex(), "3", "a"]
    as_json = run("hashes", "search", str(asked), "--collection", "lists", "--json", data_dir=data)
    result = json.loads(as_json.stdout)["result"]
    assert [(r["pdq"], [m["filepath"] for m in r["matches"]]) for r in result] == [
        (bytes(near).hex(), ["a"]),
        (unknown, []),
    ]
    none = run("hashes", "search", str(asked), "--max-distance", "2", data_dir=data)
    assert none.returncode == 4 and none.stdout == ""  # the default collection holds nothing
    asked.write_text("not-a-hash\n")
    bad = run("hashes", "search", str(asked), data_dir=data)
    assert bad.returncode != 0 and "line 1" in bad.stderr
