"""Several processes on one embedded store, as the server's workers share it: what one adds,
replaces or deletes is seen by the very next search of another; concurrent writers neither
lose nor duplicate records."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from match.stores.base import ImageRecord
from match.stores.sqlite import SQLiteStore
from store_contract import PHOTO_COUNT, Photos, photo_signatures

# A long-lived worker: loads its index once, then answers one JSON command per line.
WORKER = """
import json, sys
import numpy as np
from match.stores.sqlite import SQLiteStore

store = SQLiteStore(sys.argv[1])
store.count()
print("ready", flush=True)
for line in sys.stdin:
    command = json.loads(line)
    query = np.array(command["query"], dtype=np.int8)[None, :]
    hits = store.search(query, 0.45, 100)
    print(json.dumps([[hit.filepath, hit.metadata] for hit in hits]), flush=True)
"""

# A writer: add_many of its own records and of records shared with the other writers, then
# single adds, replacing the shared ones again.
WRITER = """
import sys
import numpy as np
from match.stores.base import ImageRecord
from match.stores.sqlite import SQLiteStore

folder, name, signatures = sys.argv[1], sys.argv[2], np.load(sys.argv[3])
store = SQLiteStore(folder)
own = [ImageRecord(f"{name}/{i}", signatures[i], {"by": name}) for i in range(150)]
shared = [ImageRecord(f"shared/{i}", signatures[200 + i], {"by": name}) for i in range(40)]
for start in range(0, 150, 30):
    result = store.add_many(own[start:start + 30] + shared[start // 30 * 8:start // 30 * 8 + 8])
    assert result.added == 38 and not result.failed
for record in shared[::4]:
    store.add(record)
print("done", flush=True)
"""


@pytest.fixture
def photos(photo_paths: list[Path]) -> Photos:
    return photo_signatures(tuple(photo_paths[:PHOTO_COUNT]))


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    SQLiteStore(tmp_path).close()  # created before the worker opens it
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    yield process
    assert process.stdin is not None
    process.stdin.close()
    process.wait(timeout=30)


def ask(worker: subprocess.Popen[str], query: np.ndarray) -> list[list]:
    assert worker.stdin is not None and worker.stdout is not None
    worker.stdin.write(json.dumps({"query": query.tolist()}) + "\n")
    worker.stdin.flush()
    return json.loads(worker.stdout.readline())


def test_what_one_process_writes_the_next_search_of_another_sees(
    tmp_path: Path, photos: Photos, worker: subprocess.Popen[str]
) -> None:
    query = photos.originals[0]
    assert ask(worker, query) == []
    with SQLiteStore(tmp_path) as store:
        store.add(ImageRecord("a.jpg", query, {"v": 1}))
        assert ask(worker, query) == [["a.jpg", {"v": 1}]]
        store.add(ImageRecord("a.jpg", query, {"v": 2}))
        assert ask(worker, query) == [["a.jpg", {"v": 2}]]
        store.add_many([ImageRecord("b.jpg", query), ImageRecord("c.jpg", photos.originals[1])])
        assert [hit[0] for hit in ask(worker, query)] == ["a.jpg", "b.jpg"]
        store.delete("a.jpg")
        assert ask(worker, query) == [["b.jpg", None]]
        store.update_metadata("b.jpg", {"tag": "ü"})
        assert ask(worker, query) == [["b.jpg", {"tag": "ü"}]]


def test_an_add_by_a_process_that_exits_is_found_by_a_running_one(
    tmp_path: Path, photos: Photos
) -> None:
    with SQLiteStore(tmp_path) as store:
        assert store.search(photos.originals[:1], 0.45, 10) == []  # index loaded
        add = (
            "import sys, numpy as np\n"
            "from match.stores.base import ImageRecord\n"
            "from match.stores.sqlite import SQLiteStore\n"
            "SQLiteStore(sys.argv[1]).add(ImageRecord('x.jpg', np.load(sys.argv[2])))\n"
        )
        np.save(tmp_path / "query.npy", photos.originals[0])
        subprocess.run(
            [sys.executable, "-c", add, str(tmp_path), str(tmp_path / "query.npy")], check=True
        )
        hits = store.search(photos.originals[:1], 0.45, 10)
        assert [hit.filepath for hit in hits] == ["x.jpg"]


def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path: Path, photos: Photos) -> None:
    rng = np.random.default_rng(3)
    signatures = np.repeat(photos.originals, 240 // PHOTO_COUNT + 1, axis=0)[:240].copy()
    for signature in signatures:
        positions = rng.choice(648, size=40, replace=False)
        signature[positions] = rng.integers(-2, 3, 40)
    np.save(tmp_path / "signatures.npy", signatures)
    folder = tmp_path / "data"
    SQLiteStore(folder).close()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(folder), f"w{n}", str(tmp_path / "signatures.npy")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for writer in writers:
        output, errors = writer.communicate(timeout=300)
        assert (writer.returncode, output) == (0, "done\n"), errors

    with SQLiteStore(folder) as store:
        listed = store.list(0, 10_000)
        expected = {f"w{n}/{i}" for n in range(3) for i in range(150)}
        expected |= {f"shared/{i}" for i in range(40)}
        assert len(listed) == len(set(listed)) == store.count() == len(expected)
        assert set(listed) == expected
        for i in range(40):
            record = store.get(f"shared/{i}")
            assert np.array_equal(record.signature, signatures[200 + i])
            hits = store.search(signatures[200 + i][None, :], 1e-6, 10)
            assert [hit.filepath for hit in hits] == [f"shared/{i}"]
        hits = store.search(signatures[:1], 1e-6, 10)
        assert sorted(hit.filepath for hit in hits) == ["w0/0", "w1/0", "w2/0"]
        assert [store.get(f"w{n}/7").metadata for n in range(3)] == [
            {"by": f"w{n}"} for n in range(3)
        ]
