"""The embedded store's shared PDQ indexes (stores/sqlite/pdq_index.py) on real stores and
processes: lookups find exactly what a brute-force scan finds within 31 bits, in the segments
and in the tail, through deletions, replacements and collections; another process's adds and
deletes are seen; a restart maps the segments without building them again; a schema 4 file
(term tables written by triggers) is upgraded in place."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import match.stores.sqlite.indexes as indexes
from match import pdq
from match.pdq.codec import as_words
from match.stores.base import HashRecord, ImageRecord
from match.stores.sqlite import SQLiteStore, pdq_index
from pdq_contract import flipped, random_hash, spread

SMALL_BUILD = 60  # rows in a tail before a build: small, so the tests cross it


@pytest.fixture
def small_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexes, "BUILD_AFTER", SMALL_BUILD)


def brute_force(stored: dict[str, bytes], queries: list[bytes]) -> dict[str, tuple[int, int]]:
    """{filepath: (distance, orientation)} of every stored hash within 31 bits of a query."""
    if not stored:
        return {}
    names = list(stored)
    distances = pdq.distances(as_words(queries), as_words([stored[n] for n in names]))
    best = distances.argmin(axis=0)
    nearest = distances[best, np.arange(len(names))]
    return {n: (int(nearest[i]), int(best[i])) for i, n in enumerate(names) if nearest[i] <= 31}


def found(store: SQLiteStore, queries: list[bytes], **scope: object) -> dict[str, tuple[int, int]]:
    hits = store.pdq_search(queries, 31, 100_000, images=False, **scope)
    assert all(hit.hash_only for hit in hits)
    return {hit.filepath: (hit.distance, hit.orientation) for hit in hits}


def near_copies(stored: dict[str, bytes], rng: np.random.Generator, count: int) -> list[bytes]:
    """Copies of stored hashes at 24-33 bits, spread over the terms (at 31 some term keeps one
    flipped bit only: found by radius-1 probes alone), and random hashes."""
    names = list(stored)
    queries = []
    for n in range(count):
        if n % 3 == 2:
            queries.append(random_hash(rng))
            continue
        source = stored[names[int(rng.integers(len(names)))]]
        queries.append(flipped(source, spread(int(rng.integers(24, 34)), rng)))
    return queries


@pytest.mark.parametrize("split", ["narrow", "wide"])
def test_lookups_find_exactly_what_brute_force_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split: str
) -> None:
    if split == "wide":
        # a large segment's split of fewer, wider terms (probed at radius 2), at a size
        # whose tables stay small: 15 terms of 17-18 bits, from 1,000 records
        monkeypatch.setattr(pdq_index, "SPLITS", ((1000, (18,) + (17,) * 14),))
    rng = np.random.default_rng(20)
    stored: dict[str, bytes] = {}  # the default collection's live hashes
    with SQLiteStore(tmp_path) as store:
        first = {f"a/{i}": random_hash(rng) for i in range(1500)}
        # close relatives, so that queries have several matches at many distances
        names = list(first)
        for i in range(500):
            source = first[names[int(rng.integers(len(names)))]]
            first[f"b/{i}"] = flipped(source, spread(int(rng.integers(0, 34)), rng))
        store.add_hashes(HashRecord(name, packed, 90) for name, packed in first.items())
        stored |= first
        other = {f"o/{i}": stored[f"a/{i}"] for i in range(100)}  # the same hashes elsewhere
        store.add_hashes(HashRecord(n, p, 90, collection="other") for n, p in other.items())
        store.prepare()  # a shared segment
        assert store._hash_pdq.tail_rows == 0
        assert len(store._hash_pdq._splits[0]) == (15 if split == "wide" else 16)
        # then a tail, deletions and replacements
        tail = {f"t/{i}": flipped(stored[f"a/{i}"], spread(30, rng)) for i in range(40)}
        store.add_hashes(HashRecord(n, p, 90) for n, p in tail.items())
        stored |= tail
        for name in [f"a/{i}" for i in range(0, 1500, 7)] + ["t/3"]:
            store.delete_hash(name)
            del stored[name]
        replaced = {f"b/{i}": random_hash(rng) for i in range(0, 500, 5)}
        store.add_hashes(HashRecord(n, p, 90) for n, p in replaced.items())
        stored |= replaced

        queries = near_copies(stored, rng, 150) + near_copies(first, rng, 30)
        matched = 0
        for query in queries:
            expected = brute_force(stored, [query])
            assert found(store, [query]) == expected
            matched += len(expected)
        assert matched > 80  # the queries did find records, many at the far end
        assert store._hash_pdq.tail_rows > 100  # looked up beside the segment
        # several query hashes at once (8 orientations): the nearest one, and which
        for start in range(0, 40, 8):
            batch = queries[start : start + 8]
            assert found(store, batch) == brute_force(stored, batch)
        assert found(store, queries[:1], collection="other") == brute_force(other, queries[:1])
        # a batch: each hash on its own, compared a few queries at a time (small chunks here)
        monkeypatch.setattr(pdq_index, "CHUNK", 20)
        batch = store.pdq_search_batch(queries, 31, 100_000, images=False)
        assert [{h.filepath: h.distance for h in hits} for hits in batch] == [
            {name: distance for name, (distance, _) in brute_force(stored, [q]).items()}
            for q in queries
        ]


def test_images_hashes_are_looked_up_too(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    packed = random_hash(rng)

    def image(name: str, **pdq: object) -> ImageRecord:
        signature = rng.integers(-2, 3, 648).astype(np.int8)
        return ImageRecord(name, signature, size=(64, 48), **pdq)  # type: ignore[arg-type]

    with SQLiteStore(tmp_path) as store:
        store.add(image("kept.jpg", pdq=packed, pdq_quality=80))
        store.add(image("gone.jpg", pdq=packed, pdq_quality=80))
        store.add(image("none.jpg"))
        store.prepare()
        store.delete("gone.jpg")
        store.add(image("late.jpg", pdq=flipped(packed, [0, 9])))
        hits = store.pdq_search([packed], 31, 10, hash_only=False)
        assert [(h.filepath, h.distance, h.hash_only) for h in hits] == [
            ("kept.jpg", 0, False),
            ("late.jpg", 2, False),
        ]
        assert hits[0].size is not None and hits[0].quality == 80


# Another process: adds, deletes and replaces hash-only records; prints nothing.
WRITER = """
import sys
import numpy as np
from match.stores.base import HashRecord
from match.stores.sqlite import SQLiteStore, pdq_index
folder, start, count, delete = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(start)
with SQLiteStore(folder) as store:
    store.add_hashes(
        HashRecord(f"h/{i}", rng.integers(0, 256, 32, dtype=np.uint8).tobytes(), 90)
        for i in range(start, start + count)
    )
    for name in delete.split(",") if delete else []:
        store.delete_hash(name)
"""


def written_by(start: int, count: int) -> dict[str, bytes]:
    rng = np.random.default_rng(start)
    return {
        f"h/{i}": rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
        for i in range(start, start + count)
    }


def write_in_another_process(folder: Path, start: int, count: int, delete: list[str]) -> None:
    subprocess.run(
        [sys.executable, "-c", WRITER, str(folder), str(start), str(count), ",".join(delete)],
        check=True,
        timeout=120,
    )


@pytest.mark.usefixtures("small_builds")
def test_adds_and_deletes_by_another_process_are_seen(tmp_path: Path) -> None:
    stored = written_by(0, 200)
    with SQLiteStore(tmp_path) as store:
        store.add_hashes(HashRecord(n, p, 90) for n, p in stored.items())
        store.prepare()
        some = stored["h/5"]
        assert found(store, [some]) == {"h/5": (0, 0)}
        # many records (past 4 builds' worth: this process builds them before it looks up),
        # then a few (they go to its tail), each time with deletions and a replacement
        for start, count, delete in ((200, 5 * SMALL_BUILD, ["h/5", "h/201"]), (600, 7, ["h/6"])):
            write_in_another_process(tmp_path, start, count, delete)
            stored |= written_by(start, count)
            for name in delete:
                del stored[name]
            probes = [stored[n] for n in list(stored)[-3:]] + [some, written_by(0, 7)["h/6"]]
            for query in probes:
                assert found(store, [query]) == brute_force(stored, [query])
        write_in_another_process(tmp_path, 0, 1, [])  # h/0 replaced by the same hash, new id
        assert found(store, [stored["h/0"]]) == {"h/0": (0, 0)}
        assert store._hash_pdq.live_count == len(stored)


@pytest.mark.usefixtures("small_builds")
def test_a_restart_maps_the_pdq_segments_without_building_them_again(tmp_path: Path) -> None:
    stored = written_by(0, 1000)
    with SQLiteStore(tmp_path) as store:
        store.add_hashes(HashRecord(n, p, 90) for n, p in stored.items())
        store.prepare()
        manifest = tmp_path / "match.sqlite3.index" / "pdq-hashes-2" / "manifest.json"
        before = manifest.stat().st_mtime_ns
        own = store.pdq_index_bytes()
        assert own < store.shared_index_bytes() / 4  # ids and flags; hashes and terms mapped
    with SQLiteStore(tmp_path) as again:
        again.prepare()
        assert manifest.stat().st_mtime_ns == before  # nothing rebuilt
        assert found(again, [stored["h/777"]]) == {"h/777": (0, 0)}
        assert again._hash_pdq.tail_rows == 0 and again._hash_pdq.live_count == 1000


def test_a_schema_4_file_loses_its_term_tables_and_keeps_its_hashes(tmp_path: Path) -> None:
    stored = written_by(0, 100)
    with SQLiteStore(tmp_path) as store:
        store.add_hashes(HashRecord(n, p, 90) for n, p in stored.items())
    connection = sqlite3.connect(tmp_path / "match.sqlite3")
    with connection:  # as schema 4 left it: term tables kept by triggers, no hash tombstones
        connection.execute("DROP TRIGGER hash_tombstone")
        connection.execute("DROP TABLE hash_tombstones")
        connection.execute("DELETE FROM meta WHERE key = 'hash_tombstones_pruned'")
        for table in ("pdq_terms", "hash_terms"):
            connection.execute(
                f"CREATE TABLE {table} (term INTEGER NOT NULL, id INTEGER NOT NULL, "
                "PRIMARY KEY (term, id)) WITHOUT ROWID"
            )
        connection.execute(
            "CREATE TRIGGER hash_added AFTER INSERT ON hashes BEGIN "
            "INSERT INTO hash_terms (term, id) VALUES (new.id, new.id); END"
        )
        connection.execute(
            "CREATE TRIGGER hash_deleted AFTER DELETE ON hashes BEGIN "
            "DELETE FROM hash_terms WHERE id = old.id; END"
        )
        connection.execute("INSERT INTO hash_terms SELECT id, id FROM hashes")
        connection.execute("UPDATE meta SET value = '4' WHERE key = 'schema'")
    connection.close()
    with SQLiteStore(tmp_path) as store:
        assert found(store, [stored["h/3"]]) == {"h/3": (0, 0)}
        store.delete_hash("h/3")
        assert found(store, [stored["h/3"]]) == {}
    connection = sqlite3.connect(tmp_path / "match.sqlite3")
    names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    schema = connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    connection.close()
    assert not names & {"pdq_terms", "hash_terms", "hash_added", "hash_deleted"}
    assert {"hash_tombstones", "hash_tombstone"} <= names and schema == ("6",)


def test_segments_of_both_splits_are_looked_up_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_builds: None
) -> None:
    monkeypatch.setattr(pdq_index, "SPLITS", ((1000, (18,) + (17,) * 14),))
    rng = np.random.default_rng(21)
    stored = {f"w/{i}": random_hash(rng) for i in range(1200)}
    with SQLiteStore(tmp_path) as store:
        store.add_hashes(HashRecord(n, p, 90) for n, p in stored.items())
        store.prepare()  # one wide segment
        names = list(stored)
        late = {f"n/{i}": flipped(stored[names[i]], spread(31, rng)) for i in range(200)}
        store.add_hashes(HashRecord(n, p, 90) for n, p in late.items())
        stored |= late
        store.prepare()  # and narrow ones of the later records
        splits = {len(split) for split in store._hash_pdq._splits}
        assert splits == {15, 16} and store._hash_pdq.tail_rows == 0
        queries = near_copies(stored, rng, 60)
        batch = store.pdq_search_batch(queries, 31, 100_000, images=False)
        assert [{h.filepath: h.distance for h in hits} for hits in batch] == [
            {name: distance for name, (distance, _) in brute_force(stored, [q]).items()}
            for q in queries
        ]


@pytest.mark.parametrize("split", ["narrow", "wide"])
def test_exact_terms_probing_finds_every_hash_within_15_bits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split: str
) -> None:
    if split == "wide":  # radius 15 // 15 = 1 there, 15 // 16 = 0 in 16-bit terms
        monkeypatch.setattr(pdq_index, "SPLITS", ((1000, (18,) + (17,) * 14),))
    rng = np.random.default_rng(22)
    stored = {f"h/{i}": random_hash(rng) for i in range(1200)}
    with SQLiteStore(tmp_path, pdq_flips=0) as store:
        store.add_hashes(HashRecord(n, p, 90) for n, p in stored.items())
        store.prepare()
        names = list(stored)
        queries = [flipped(stored[names[i]], spread(i % 16, rng)) for i in range(80)]
        batch = store.pdq_search_batch(queries, 31, 100_000, images=False)
        for query, hits in zip(queries, batch, strict=True):
            truth = brute_force(stored, [query])
            found = {h.filepath: h.distance for h in hits}
            assert all(truth[name][0] == distance for name, distance in found.items())
            assert {n for n, (d, _) in truth.items() if d <= 15} <= set(found)
