"""The embedded store's shared indexes (stores/sqlite/indexes.py) on real processes: several
adding, deleting and searching at once build and publish segments that every one maps; a
restart maps them without rebuilding; a process killed in the middle of a build leaves a usable
index; the per-process memory stays a small part of what is shared."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from match.local import WORDS, LocalFeatures
from match.stores.base import ImageRecord
from match.stores.sqlite import SQLiteStore
from match.stores.sqlite.indexes import WORDS_FAMILY
from match.stores.sqlite.segments import FileArray, SegmentDirectory, SegmentInfo

BUILD_AFTER = 60  # small, so that the processes build and publish many times

# One process of many: adds its own records with local features, deletes some, searches each
# of its live ones by its words and checks it comes first; prints what it kept.
ACTOR = f"""
import json, sys
import numpy as np
import match.stores.sqlite.indexes as indexes
indexes.BUILD_AFTER = {BUILD_AFTER}
from match.local import LocalFeatures
from match.stores.base import ImageRecord
from match.stores.sqlite import SQLiteStore

folder, name, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(seed)
store = SQLiteStore(folder)
kept = {{}}
for round in range(6):
    batch = []
    for i in range(50):
        words = rng.choice({WORDS}, 60, replace=False).astype(np.uint32)
        local = LocalFeatures(rng.uniform(0, 600, (60, 2)).astype(np.float32), words,
                              rng.integers(0, 2**63, 60, dtype=np.uint64), (640, 480))
        signature = rng.integers(-2, 3, 648).astype(np.int8)
        filepath = f"{{name}}/{{round}}-{{i}}"
        batch.append(ImageRecord(filepath, signature, local=local))
        kept[filepath] = words.tolist()
    store.add_many(batch)
    for filepath in list(kept)[::9]:
        store.delete(filepath)
        del kept[filepath]
    for filepath, words in list(kept.items())[-20:]:
        found = store.local_candidates(np.array(words), 1)
        assert found and found[0].filepath == filepath, (filepath, found)
store.wait_for_builds()
print(json.dumps(kept), flush=True)
"""


def synthetic(seed: int) -> tuple[np.ndarray, LocalFeatures]:
    rng = np.random.default_rng(seed)
    words = rng.choice(WORDS, 60, replace=False).astype(np.uint32)
    points = rng.uniform(0, 600, (60, 2)).astype(np.float32)
    local = LocalFeatures(points, words, rng.integers(0, 2**63, 60, dtype=np.uint64), (640, 480))
    return rng.integers(-2, 3, 648).astype(np.int8), local


def test_processes_adding_deleting_and_searching_share_one_index(tmp_path: Path) -> None:
    SQLiteStore(tmp_path).close()
    actors = [
        subprocess.Popen(
            [sys.executable, "-c", ACTOR, str(tmp_path), f"p{n}", str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    kept: dict[str, list[int]] = {}
    for actor in actors:
        out, err = actor.communicate(timeout=600)
        assert actor.returncode == 0, err[-3000:]
        kept |= json.loads(out)
    manifest = json.loads(
        (tmp_path / "match.sqlite3.index" / WORDS_FAMILY.name / "manifest.json").read_text()
    )
    assert manifest["segments"] and manifest["generation"] > 3  # built and published, often
    with SQLiteStore(tmp_path) as fresh:
        assert fresh.count() == len(kept)
        for filepath, words in list(kept.items())[::10]:
            assert fresh.local_candidates(np.array(words), 1)[0].filepath == filepath
        # what the segments and the tail hold together is exactly what is stored
        fresh.search(np.zeros((1, 648), np.int8) + 1, 0.45, 1)
        assert fresh._words.live_count == fresh._codes.live_count == len(kept)
        assert sorted(fresh.list(0, 10_000)) == sorted(kept)


def test_a_restart_maps_the_segments_without_building_them_again(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path) as store:
        store.add_many(record(i) for i in range(300))
        store.prepare()
        folder = tmp_path / "match.sqlite3.index" / WORDS_FAMILY.name
        before = (folder / "manifest.json").stat().st_mtime_ns
        shared = store.shared_index_bytes()
        own = store.words_index_bytes()
    assert own < shared / 4  # the process holds ids and flags; the postings stay in the files
    with SQLiteStore(tmp_path) as again:
        again.prepare()
        assert (folder / "manifest.json").stat().st_mtime_ns == before  # nothing rebuilt
        words = synthetic(77)[1].words
        assert again.local_candidates(words, 1)[0].filepath == "77.jpg"
        assert again._words.tail_rows == 0


def test_a_build_killed_half_way_leaves_a_usable_index(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path) as store:
        store.add_many(record(i) for i in range(200))
        store.prepare()
        store.add_many(record(i) for i in range(200, 400))
    # a builder that stops for good half-way through writing its segment
    script = """
import sys, time
import match.stores.sqlite.segments as segments
import numpy as np
real_save = np.save
def slow_save(handle, array, **kwargs):
    real_save(handle, array, **kwargs)
    print("writing", flush=True)
    time.sleep(60)
segments.np.save = slow_save
from match.stores.sqlite import SQLiteStore
SQLiteStore(sys.argv[1]).prepare()
"""
    builder = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert builder.stdout is not None and builder.stdout.readline() == "writing\n"
    os.kill(builder.pid, signal.SIGKILL)
    builder.wait(timeout=30)
    folder = tmp_path / "match.sqlite3.index"
    assert any(entry.name.endswith(".tmp") for entry in folder.glob("*/*"))  # half-written
    with SQLiteStore(tmp_path) as after:
        for i in (5, 150, 250, 399):
            assert after.local_candidates(synthetic(i)[1].words, 1)[0].filepath == f"{i}.jpg"
        after.prepare()  # the next build replaces the leftovers
    assert not any(entry.name.endswith(".tmp") for entry in folder.glob("*/*"))
    with SQLiteStore(tmp_path) as reopened:
        assert reopened.count() == 400 and reopened._words.tail_rows == 0


def record(i: int) -> ImageRecord:
    signature, local = synthetic(i)
    return ImageRecord(f"{i}.jpg", signature, local=local)


def test_postings_read_by_ranges_equal_the_array_and_are_not_mapped(tmp_path: Path) -> None:
    directory = SegmentDirectory(tmp_path)
    low = np.random.default_rng(2).integers(0, 1 << 16, 300_000).astype(np.uint16)
    name = directory.write({"low": low, "offsets": np.arange(5)})
    info = SegmentInfo(name, 0, 4, 4, 0)
    arrays = directory.load(info, read=("low",))
    assert isinstance(arrays["low"], FileArray) and len(arrays["low"]) == len(low)
    assert isinstance(arrays["offsets"], np.ndarray)  # the others stay mapped
    starts, ends = [0, 5, 5, 299_000, 70_000], [3, 5, 9, 300_000, 200_000]
    out = np.empty(sum(e - s for s, e in zip(starts, ends, strict=True)), np.uint16)
    arrays["low"].read(starts, ends, out)
    expected = np.concatenate([low[s:e] for s, e in zip(starts, ends, strict=True)])
    assert np.array_equal(out, expected)
    mapped = Path(f"/proc/{os.getpid()}/maps").read_text()
    assert str(tmp_path / name / "low.npy") not in mapped
    assert str(tmp_path / name / "offsets.npy") in mapped
