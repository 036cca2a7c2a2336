"""SQLiteStore: the Store contract, plus what only the embedded store promises."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import match.stores.sqlite.candidates as candidates_module
import match.stores.sqlite.indexes as indexes_module
import match.stores.sqlite.schema as schema_module
import match.stores.sqlite.tables as tables_module
import match.stores.sqlite.words as words_module
from match.errors import BadParameter, IncompatibleRecord, StoreDamaged, StoreUnavailable
from match.local import WORDS, LocalFeatures
from match.local.terms import terms_blob
from match.settings import Settings
from match.signature import ALGORITHM, normalized_distances
from match.stores.base import HashRecord, ImageRecord
from match.stores.filters import parse_filter
from match.stores.sqlite import SQLiteStore
from match.stores.sqlite.candidates import CandidateIndex
from match.stores.sqlite.codes import HyperplaneCoder, pack_signature, unpack_signatures
from match.stores.sqlite.rows import Selection
from store_contract import PHOTO_COUNT, Photos, StoreContract, photo_signatures


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "data") as opened:
        yield opened


@pytest.fixture
def second_store(store: SQLiteStore) -> Iterator[SQLiteStore]:
    """Another store object on the same file, as another worker process opens it."""
    with SQLiteStore(store.path) as opened:
        yield opened


class TestSQLiteStore(StoreContract):
    pass


@pytest.fixture
def photos(photo_paths: list[Path]) -> Photos:
    return photo_signatures(tuple(photo_paths[:PHOTO_COUNT]))


def synthetic(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-2, 3, (count, 648)).astype(np.int8)


# -- where the store lives --------------------------------------------------------------------
def test_from_settings_creates_the_data_folder(tmp_path: Path, photos: Photos) -> None:
    folder = tmp_path / "nested" / "data"
    settings = Settings.from_env({}, match_data_dir=str(folder))
    with SQLiteStore.from_settings(settings) as store:
        store.add(ImageRecord("a.jpg", photos.originals[0]))
    assert (folder / "match.sqlite3").is_file()
    with SQLiteStore(folder) as reopened:
        assert reopened.list() == ["a.jpg"]
        assert np.array_equal(reopened.get("a.jpg").signature, photos.originals[0])


def test_a_file_path_is_used_as_the_database(tmp_path: Path, photos: Photos) -> None:
    with SQLiteStore(tmp_path / "images.db") as store:
        store.add(ImageRecord("a.jpg", photos.originals[0]))
    connection = sqlite3.connect(tmp_path / "images.db")
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert connection.execute("SELECT filepath FROM images").fetchall() == [("a.jpg",)]
    connection.close()


# -- exactness of search ----------------------------------------------------------------------
def test_distances_are_exactly_normalized_distances(store: SQLiteStore, photos: Photos) -> None:
    store.add_many(ImageRecord(n, s) for n, s in zip(photos.names, photos.originals, strict=True))
    query = photos.originals[:3]
    for hit in store.search(query, 1.0, 100):
        stored = photos.originals[photos.names.index(hit.filepath)]
        distances = normalized_distances(query, stored[None, :])[:, 0]
        assert hit.distance == distances.min()
        assert hit.orientation == int(np.argmin(distances))


def test_packed_signatures_unpack_exactly() -> None:
    rng = np.random.default_rng(7)
    signatures = rng.integers(-2, 3, (50, 648)).astype(np.int8)
    signatures[0] = 0  # blank
    assert np.array_equal(unpack_signatures([pack_signature(s) for s in signatures]), signatures)
    assert unpack_signatures([]).shape == (0, 648)


def test_the_cutoff_is_strict(store: SQLiteStore, photos: Photos) -> None:
    store.add(ImageRecord("a.jpg", photos.originals[0]))
    distance = float(normalized_distances(photos.originals[1], photos.originals[:1])[0])
    assert store.search(photos.originals[1:2], distance, 10) == []
    assert [h.filepath for h in store.search(photos.originals[1:2], distance + 1e-9, 10)] == [
        "a.jpg"
    ]


@pytest.mark.parametrize("cutoff", [0.1, 0.3, 0.45, 0.6, 0.8, 1.0])
def test_search_equals_the_exhaustive_scan(
    store: SQLiteStore, photos: Photos, cutoff: float
) -> None:
    stored = dict(zip(photos.names, photos.originals, strict=True)) | photos.edits
    near = [(f"near-{i}", _perturbed(photos.originals[i % 4], i)) for i in range(60)]
    store.add_many(ImageRecord(n, s) for n, s in [*stored.items(), *near])
    store.add_many(ImageRecord(f"noise-{i}", s) for i, s in enumerate(synthetic(300)))
    for query in [photos.originals[:1], photos.originals[2:3], photos.oriented]:
        assert store.search(query, cutoff, 1000) == store.search_exhaustive(query, cutoff, 1000)


def _perturbed(signature: np.ndarray, seed: int) -> np.ndarray:
    """A copy with a growing share of its values replaced at random (distances up to ~0.6)."""
    rng = np.random.default_rng(seed)
    copy = signature.copy()
    positions = rng.choice(648, size=int(648 * seed / 100), replace=False)
    copy[positions] = rng.integers(-2, 3, len(positions))
    return copy


# -- signature algorithms ---------------------------------------------------------------------
def test_a_record_of_another_algorithm_is_refused(store: SQLiteStore, photos: Photos) -> None:
    record = ImageRecord("old.jpg", photos.originals[0], algorithm="goldberg-v0")
    with pytest.raises(IncompatibleRecord, match="goldberg-v0"):
        store.add(record)
    result = store.add_many([record, ImageRecord("new.jpg", photos.originals[1])])
    assert result.added == 1
    assert result.failed[0][0] == "old.jpg" and "goldberg-v0" in result.failed[0][1]


def test_search_refuses_a_store_holding_another_algorithm(tmp_path: Path, photos: Photos) -> None:
    with SQLiteStore(tmp_path, algorithm="goldberg-v0") as old:
        old.add(ImageRecord("old.jpg", photos.originals[0], algorithm="goldberg-v0"))
    with SQLiteStore(tmp_path) as store:
        store.add(ImageRecord("new.jpg", photos.originals[1]))
        with pytest.raises(IncompatibleRecord, match=r"1 by 'goldberg-v0'"):
            store.search(photos.originals[:1], 0.45, 10)
        assert store.get("old.jpg").algorithm == "goldberg-v0"
        assert store.count() == 2
        store.delete("old.jpg")
        assert [hit.filepath for hit in store.search(photos.originals[1:2], 0.45, 10)] == [
            "new.jpg"
        ]


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (np.full(648, 3), "outside -2..2"),
        (np.zeros((2, 648), dtype=np.int8), "648 integers"),
        (np.full(648, 1.0), "648 integers"),
    ],
)
def test_bad_signatures_are_refused(
    store: SQLiteStore, signature: np.ndarray, message: str
) -> None:
    with pytest.raises(BadParameter, match=message):
        store.add(ImageRecord("x.jpg", signature))


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        (["not", "an", "object"], "JSON object"),
        ({"x": float("nan")}, "not valid JSON"),
        ({"x": object()}, "not valid JSON"),
        ({"x": "\udc80"}, "not valid JSON"),
    ],
)
def test_bad_metadata_is_refused(
    store: SQLiteStore, photos: Photos, metadata: object, message: str
) -> None:
    with pytest.raises(BadParameter, match=message):
        store.add(ImageRecord("x.jpg", photos.originals[0], metadata))  # type: ignore[arg-type]
    assert store.count() == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((np.zeros((1, 10), dtype=np.int8), 0.45, 10, 0), "shape"),
        ((np.zeros((1, 648)), 0.45, 10, 0), "integers"),
        ((np.zeros((1, 648), dtype=np.int8), "x", 10, 0), "cutoff"),
        ((np.zeros((1, 648), dtype=np.int8), 0.45, -1, 0), "limit"),
        ((np.zeros((1, 648), dtype=np.int8), 0.45, 10, -5), "offset"),
    ],
)
def test_bad_search_arguments_are_refused(
    store: SQLiteStore, arguments: tuple, message: str
) -> None:
    with pytest.raises(BadParameter, match=message):
        store.search(*arguments)


def test_bad_filepaths_are_refused(store: SQLiteStore, photos: Photos) -> None:
    with pytest.raises(BadParameter, match="non-empty"):
        store.add(ImageRecord("", photos.originals[0]))
    with pytest.raises(BadParameter, match="Unicode"):
        store.add(ImageRecord("\udcff.jpg", photos.originals[0]))
    with pytest.raises(BadParameter, match="non-empty"):
        store.get(None)  # type: ignore[arg-type]
    with pytest.raises(BadParameter, match="offset"):
        store.list(offset=-1)


# -- engine errors become StoreUnavailable ----------------------------------------------------
def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "match.sqlite3").write_bytes(b"this is not a database, just text " * 200)
    with pytest.raises(StoreUnavailable, match="corrupt or not a Match store"):
        SQLiteStore(tmp_path)


def test_a_folder_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("in the way")
    with pytest.raises(StoreUnavailable, match="Cannot create the store folder"):
        SQLiteStore(tmp_path / "file" / "data")


def test_a_store_locked_too_long_is_unavailable(tmp_path: Path, photos: Photos) -> None:
    with SQLiteStore(tmp_path, busy_timeout=0.2) as store:
        other = sqlite3.connect(tmp_path / "match.sqlite3", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(StoreUnavailable, match="busy"):
                store.add(ImageRecord("a.jpg", photos.originals[0]))
        finally:
            other.execute("ROLLBACK")
            other.close()
        store.add(ImageRecord("a.jpg", photos.originals[0]))
        assert store.count() == 1


def test_a_store_of_another_schema_is_refused(tmp_path: Path) -> None:
    SQLiteStore(tmp_path).close()
    connection = sqlite3.connect(tmp_path / "match.sqlite3")
    with connection:
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    connection.close()
    with pytest.raises(StoreUnavailable, match="schema 99"):
        SQLiteStore(tmp_path)


def test_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.count()
    with pytest.raises(StoreUnavailable, match="closed"):
        store.ping()


# -- several store objects on one file (as several workers) ----------------------------------
def test_changes_through_one_store_are_seen_by_another(tmp_path: Path, photos: Photos) -> None:
    with SQLiteStore(tmp_path) as writer, SQLiteStore(tmp_path) as reader:
        assert reader.search(photos.originals[:1], 0.45, 10) == []  # index loaded, empty
        writer.add(ImageRecord("a.jpg", photos.originals[0], {"v": 1}))
        assert [h.filepath for h in reader.search(photos.originals[:1], 0.45, 10)] == ["a.jpg"]
        writer.add(ImageRecord("b.jpg", photos.originals[1]))
        writer.add(ImageRecord("a.jpg", photos.originals[0], {"v": 2}))  # replaced
        hits = reader.search(photos.originals[:1], 0.45, 10)
        assert [(h.filepath, h.metadata) for h in hits] == [("a.jpg", {"v": 2})]
        assert reader.list() == ["b.jpg", "a.jpg"]
        writer.delete("a.jpg")
        assert reader.search(photos.originals[:1], 0.45, 10) == []
        assert reader.list() == ["b.jpg"]
        assert reader.count() == 1


def test_many_replacements_and_pruned_tombstones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables_module, "TOMBSTONES_KEPT", 50)
    signatures = synthetic(6000, seed=1)
    with SQLiteStore(tmp_path) as writer, SQLiteStore(tmp_path) as reader:
        writer.add_many(ImageRecord(f"s{i}", s) for i, s in enumerate(signatures))
        assert reader.count() == 6000 and len(reader.list(0, 10_000)) == 6000
        # 4500 replacements (new ids, tombstones for the old ones), then a few deletions
        writer.add_many(ImageRecord(f"s{i}", signatures[i]) for i in range(4500))
        for i in range(4500, 4520):
            writer.delete(f"s{i}")
        kept = [f"s{i}" for i in range(4520, 6000)] + [f"s{i}" for i in range(4500)]
        assert reader.list(0, 10_000) == kept
        assert reader.count() == len(kept)
        tombstones = sqlite3.connect(tmp_path / "match.sqlite3")
        assert tombstones.execute("SELECT count(*) FROM tombstones").fetchone()[0] <= 150
        tombstones.close()
        for i in (0, 10, 4400, 5999):
            hits = reader.search(signatures[i : i + 1], 0.2, 10)
            assert [h.filepath for h in hits] == [f"s{i}"]
        assert reader.search(signatures[4510:4511], 0.2, 10) == []
        assert reader.index_bytes() < 6000 * 150  # the dead entries were compacted away


def test_concurrent_adds_from_threads(store: SQLiteStore) -> None:
    signatures = synthetic(100, seed=2)

    def add(part: int) -> None:
        for i in range(part, 100, 4):
            store.add(ImageRecord(f"t{i}", signatures[i]))

    threads = [threading.Thread(target=add, args=(part,)) for part in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count() == 100
    assert sorted(store.list(0, 1000)) == sorted(f"t{i}" for i in range(100))


def test_images_just_under_the_cutoff_are_found(store: SQLiteStore, photos: Photos) -> None:
    """The candidate index's worst case: copies at distance 0.44-0.45 from their query."""
    rng = np.random.default_rng(11)
    copies = []
    for i in range(200):
        base = photos.originals[i % PHOTO_COUNT]
        rank = rng.permutation(648)  # step n replaces the values at the n first positions
        levels = rng.integers(-2, 3, 648).astype(np.int8)
        steps = np.where(rank[None, :] < np.arange(649)[:, None], levels, base)
        distances = normalized_distances(base, steps)
        inside = np.flatnonzero((distances >= 0.44) & (distances < 0.45))
        if len(inside):
            copies.append((i % PHOTO_COUNT, steps[inside[0]]))
    assert len(copies) > 150
    store.add_many(ImageRecord(f"copy-{n}", c) for n, (_, c) in enumerate(copies))
    store.add_many(ImageRecord(f"noise-{i}", s) for i, s in enumerate(synthetic(2000, seed=5)))
    for n, (photo, _) in enumerate(copies):
        hits = store.search(photos.originals[photo : photo + 1], 0.45, 1000)
        assert f"copy-{n}" in {hit.filepath for hit in hits}


def test_search_over_many_chunks_scanned_in_parallel(
    store: SQLiteStore, photos: Photos, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(candidates_module, "_CHUNK", 500)
    monkeypatch.setattr(candidates_module, "SCAN_THREADS", 3)
    near = [(f"near-{i}", _perturbed(photos.originals[i % 4], i)) for i in range(60)]
    store.add_many(ImageRecord(n, s) for n, s in near)
    store.add_many(ImageRecord(f"noise-{i}", s) for i, s in enumerate(synthetic(5000, seed=9)))
    store.add_many(ImageRecord(n, s) for n, s in zip(photos.names, photos.originals, strict=True))
    for query in [photos.originals[:1], photos.originals[3:4], photos.oriented]:
        hits = store.search(query, 0.45, 1000)
        assert hits == store.search_exhaustive(query, 0.45, 1000)
    hits = store.search(photos.oriented, 0.45, 1000)
    assert (hits[0].filepath, hits[0].orientation) == (photos.names[0], 0)


# -- partial matching: local features in the file ---------------------------------------------
SCHEMA_1 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE images (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        filepath TEXT NOT NULL UNIQUE,
        algorithm TEXT NOT NULL,
        signature BLOB NOT NULL,
        metadata TEXT
    )""",
    "CREATE TABLE codes (id INTEGER PRIMARY KEY, code BLOB NOT NULL)",
    """CREATE TABLE tombstones (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id INTEGER NOT NULL
    )""",
    "CREATE TABLE algorithms (name TEXT PRIMARY KEY, records INTEGER NOT NULL) WITHOUT ROWID",
    """CREATE TRIGGER image_added AFTER INSERT ON images BEGIN
        INSERT INTO algorithms (name, records) VALUES (new.algorithm, 1)
            ON CONFLICT (name) DO UPDATE SET records = records + 1;
    END""",
    """CREATE TRIGGER image_deleted AFTER DELETE ON images BEGIN
        DELETE FROM codes WHERE id = old.id;
        INSERT INTO tombstones (id) VALUES (old.id);
        UPDATE algorithms SET records = records - 1 WHERE name = old.algorithm;
    END""",
)
"""The embedded store's tables before partial matching (schema 1)."""


def synthetic_local(seed: int, keypoints: int = 300) -> LocalFeatures:
    rng = np.random.default_rng(seed)
    return LocalFeatures(
        (rng.random((keypoints, 2)) * [640, 480]).astype(np.float32),
        rng.integers(0, WORDS, keypoints).astype(np.uint32),
        rng.integers(0, 2**63, keypoints).astype(np.uint64),
        (640, 480),
    )


def write_schema_1_file(path: Path, signatures: dict[str, np.ndarray]) -> None:
    """A database as the store wrote it before schema 2, holding ``signatures``."""
    coder = HyperplaneCoder(schema_module.CODE_BITS, schema_module.CODE_SEED)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    for statement in SCHEMA_1:
        connection.execute(statement)
    meta = {"schema": "1", "code_bits": "1024", "code_seed": "20021", "tombstones_pruned": "0"}
    connection.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    for image_id, (name, signature) in enumerate(signatures.items(), start=1):
        connection.execute(
            "INSERT INTO images (id, filepath, algorithm, signature) VALUES (?, ?, ?, ?)",
            (image_id, name, ALGORITHM, pack_signature(signature)),
        )
        code = coder.encode(signature[None, :])[0].tobytes()
        connection.execute("INSERT INTO codes VALUES (?, ?)", (image_id, code))
    connection.close()


def test_a_schema_1_file_is_upgraded_in_place(tmp_path: Path, photos: Photos) -> None:
    path = tmp_path / "old.sqlite3"
    old = dict(zip(photos.names[:5], photos.originals[:5], strict=True))
    write_schema_1_file(path, old)
    with SQLiteStore(path) as store:
        assert store.list() == list(old)
        assert store.get(photos.names[1]).local is None
        hits = store.search(photos.originals[2:3], 0.45, 10)
        assert [hit.filepath for hit in hits] == [photos.names[2]]
        assert store.local_candidates(synthetic_local(1).words, 10) == []
        store.add(ImageRecord("new.jpg", photos.originals[6], local=synthetic_local(1)))
        store.add(ImageRecord(photos.names[3], photos.originals[3], local=synthetic_local(2)))
        store.delete(photos.names[0])
    with SQLiteStore(path) as reopened:
        names = photos.names
        assert reopened.list() == [names[1], names[2], names[4], "new.jpg", names[3]]
        found = reopened.local_candidates(synthetic_local(1).words, 10)
        assert [c.filepath for c in found][:1] == ["new.jpg"]
        assert np.array_equal(found[0].local.words, synthetic_local(1).words)
        assert reopened.get(photos.names[3]).local is not None
        assert reopened.count() == 5
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("6",)
    connection.close()


def test_a_schema_5_file_indexes_terms_once_upgraded(tmp_path: Path, photos: Photos) -> None:
    """Schema 5 kept each image's distinct words (uint16) where 6 keeps its terms: opening the
    file rewrites every row from the stored features, and the terms index finds them."""
    features = {f"l{i}": synthetic_local(i) for i in range(6)}
    with SQLiteStore(tmp_path) as store:
        for i, (name, local) in enumerate(features.items()):
            store.add(ImageRecord(name, photos.originals[i], local=local))
    connection = sqlite3.connect(tmp_path / "match.sqlite3")
    with connection:  # back to schema 5: the rows hold words
        for name, local in features.items():
            words = np.unique(local.words).astype("<u2").tobytes()
            connection.execute(
                "UPDATE words SET words = ? WHERE id = (SELECT id FROM images WHERE filepath = ?)",
                (words, name),
            )
        connection.execute("UPDATE meta SET value = '5' WHERE key = 'schema'")
        # one image's features damaged: the file still opens, that image has no terms
        connection.execute(
            "UPDATE local SET features = x'00' "
            "WHERE id = (SELECT id FROM images WHERE filepath = 'l5')"
        )
    connection.close()
    shutil.rmtree(tmp_path / "match.sqlite3.index" / indexes_module.WORDS_FAMILY.name)
    damaged = features.pop("l5")
    with SQLiteStore(tmp_path) as store:
        for name, local in features.items():
            found = store.local_candidates(local.words, 2, bits=local.bits)
            assert found[0].filepath == name
        found = store.local_candidates(damaged.words, 10, bits=damaged.bits)
        assert "l5" not in [c.filepath for c in found]
    connection = sqlite3.connect(tmp_path / "match.sqlite3")
    rows = dict(
        connection.execute("SELECT filepath, words FROM words JOIN images USING (id)").fetchall()
    )
    assert connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("6",)
    connection.close()
    for name, local in features.items():
        assert rows[name] == terms_blob(local)
    assert rows["l5"] == b""


def test_a_schema_1_file_keeps_its_id_sequence_and_gains_filters(
    tmp_path: Path, photos: Photos
) -> None:
    path = tmp_path / "old.sqlite3"
    write_schema_1_file(path, dict(zip(photos.names[:3], photos.originals[:3], strict=True)))
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("UPDATE images SET metadata = '{\"shop\": 7}' WHERE id = 2")
    connection.execute("DELETE FROM images WHERE id = 3")  # the last id: never to be reused
    connection.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('images', 3)")
    connection.close()
    with SQLiteStore(path) as store:
        assert store.count() == 2 and store.collections() == [("default", 2)]
        assert store.list(where=parse_filter({"shop": 7})) == [photos.names[1]]
        store.add(ImageRecord("new.jpg", photos.originals[5]))
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT id FROM images WHERE filepath = 'new.jpg'").fetchone() == (4,)
    connection.close()


def test_deleting_an_image_deletes_its_local_features(tmp_path: Path, photos: Photos) -> None:
    with SQLiteStore(tmp_path) as store:
        store.add(ImageRecord("a.jpg", photos.originals[0], local=synthetic_local(3)))
        store.add(ImageRecord("b.jpg", photos.originals[1], local=synthetic_local(4)))
        store.add(ImageRecord("a.jpg", photos.originals[0]))  # replaced without features
        store.delete("b.jpg")
    connection = sqlite3.connect(tmp_path / "match.sqlite3")
    for table in ("local", "words"):
        assert connection.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    connection.close()


def damaged_behind_its_back(tmp_path: Path, photos: Photos, damage: str) -> LocalFeatures:
    """A store of ``broken.jpg`` (id 1) and ``fine.jpg``, both with local features, then the
    ``damage`` SQL run on its file by another connection; broken.jpg's features."""
    local = synthetic_local(5)
    with SQLiteStore(tmp_path) as store:
        store.add(ImageRecord("broken.jpg", photos.originals[0], local=local))
        store.add(ImageRecord("fine.jpg", photos.originals[1], local=synthetic_local(5, 200)))
    connection = sqlite3.connect(tmp_path / "match.sqlite3")
    with connection:
        connection.execute(damage)
    connection.close()
    return local


def test_unreadable_local_features_are_damage_that_repair_drops(
    tmp_path: Path, photos: Photos
) -> None:
    """Features the writer packed but that do not unpack are damage SQLite cannot see: a
    search meeting them is refused (not answered without that image), and the repair drops
    them (the image stays, without partial matching)."""
    local = damaged_behind_its_back(
        tmp_path, photos, "UPDATE local SET features = x'0102' WHERE id = 1"
    )
    with SQLiteStore(tmp_path) as store:
        with pytest.raises(StoreDamaged, match="local features of image 1 cannot be read"):
            store.local_candidates(local.words, 10)
        assert "local features: those of 1 images" in store.check().problems[0]
        repaired = store.check(repair=True)
        assert not repaired.damaged and "local features" in repaired.repaired[0]
        found = store.local_candidates(local.words, 10)
        assert [c.filepath for c in found] == ["fine.jpg"]
        assert store.get("broken.jpg").local is None
        assert store.get("broken.jpg").filepath == "broken.jpg"


def test_a_small_collection_and_a_selective_filter_rank_from_their_stored_words(
    tmp_path: Path, photos: Photos, monkeypatch: pytest.MonkeyPatch
) -> None:
    features = [synthetic_local(400 + i, 150) for i in range(140)]
    signature = photos.originals[0]
    reads: list[int] = []
    words_by_id = tables_module.words_by_id

    def counted(conn: sqlite3.Connection, ids: np.ndarray) -> tuple[np.ndarray, ...]:
        reads.append(len(ids))
        return words_by_id(conn, ids)

    monkeypatch.setattr(tables_module, "words_by_id", counted)
    with SQLiteStore(tmp_path) as store:
        store.add_many(
            ImageRecord(f"d{i}", signature, {"shop": i % 10}, local=features[i]) for i in range(120)
        )
        store.add_many(
            ImageRecord(f"s{i}", signature, {"shop": 3}, local=features[i], collection="small")
            for i in range(100, 140)  # 100-119 as in default, too
        )
        query = np.concatenate([features[103].words[::2], features[13].words[::3]])
        scopes = [("small", None), ("default", {"shop": 3}), ("default", {"shop": {"in": [3, 4]}})]
        for collection, raw in scopes:
            where = parse_filter(raw)
            monkeypatch.setattr(words_module, "GATHER_COST", 10**9)  # the postings
            expected = store.local_candidates(
                query, 5, signatures=signature[None, :], collection=collection, where=where
            )
            assert reads == [] and expected[0].filepath in ("s103", "d103", "d13")
            monkeypatch.setattr(words_module, "GATHER_COST", 1)  # the stored words
            found = store.local_candidates(
                query, 5, signatures=signature[None, :], collection=collection, where=where
            )
            assert reads.pop() > 0
            assert [(c.filepath, c.metadata, c.distance) for c in found] == [
                (c.filepath, c.metadata, c.distance) for c in expected
            ]
        store.delete("s103", collection="small")  # a dead row: the postings path again
        found = store.local_candidates(query, 5, collection="small")
        assert reads == [] and "s103" not in [c.filepath for c in found] and found


def test_the_word_index_follows_many_replacements_and_pruned_tombstones(
    tmp_path: Path, photos: Photos, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tables_module, "TOMBSTONES_KEPT", 20)
    monkeypatch.setattr(words_module, "TAIL_POSTINGS", 3000)
    monkeypatch.setattr(indexes_module, "BUILD_AFTER", 40)  # many shared builds, in threads
    features = [synthetic_local(100 + i, 150) for i in range(300)]
    signature = photos.originals[0]
    with SQLiteStore(tmp_path) as writer, SQLiteStore(tmp_path) as reader:
        writer.add_many(ImageRecord(f"l{i}", signature, local=f) for i, f in enumerate(features))
        assert reader.local_candidates(features[7].words, 1)[0].filepath == "l7"
        # l0..l199 swap features (new ids, tombstones pruned past the reader), l200..l219 go
        writer.add_many(
            ImageRecord(f"l{i}", signature, local=features[199 - i]) for i in range(200)
        )
        for i in range(200, 220):
            writer.delete(f"l{i}")
        for i in (0, 7, 150, 199, 250, 299):
            expected = f"l{199 - i}" if i < 200 else f"l{i}"
            assert reader.local_candidates(features[i].words, 1)[0].filepath == expected
        found = {c.filepath for c in reader.local_candidates(features[210].words, 300)}
        assert "l210" not in found and len(found) > 200
        writer.add(ImageRecord("l5", signature, local=features[210]))  # one more, appended
        assert reader.local_candidates(features[210].words, 1)[0].filepath == "l5"
        for store in (writer, reader):
            store.wait_for_builds()


def test_a_small_collection_inside_a_big_store_searches_as_its_records_alone(
    tmp_path: Path, photos: Photos, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a collection of a few percent of the rows is searched from its own rows (rows.py lists
    # them), in shared segments and in the tail, read by another worker as it changes
    monkeypatch.setattr(indexes_module, "BUILD_AFTER", 400)  # several shared segments
    monkeypatch.setattr(candidates_module, "_CHUNK", 50)  # its rows in several blocks
    named = [*zip(photos.names, photos.originals, strict=True), *photos.edits.items()]
    named += [(f"near-{i}", _perturbed(photos.originals[i % 4], i)) for i in range(60)]
    records = [
        ImageRecord(n, s, {"shop": i % 3}, collection="small") for i, (n, s) in enumerate(named)
    ]
    early, late = records[::2], records[1::2]
    # the same photos in the big store's default collection, which a wrong scope would find
    others = [ImageRecord(r.filepath, r.signature, {"shop": 9}) for r in records]
    noise = [ImageRecord(f"noise-{i}", s) for i, s in enumerate(synthetic(3000, seed=17))]
    with (
        SQLiteStore(tmp_path / "big") as big,
        SQLiteStore(tmp_path / "big") as reader,
        SQLiteStore(tmp_path / "alone") as alone,
    ):
        for store in (big, alone):
            store.add_many(early)
        big.add_many(noise[:2000] + others)
        queries = [photos.originals[:1], photos.originals[2:3], photos.rotated[None, :]]
        queries.append(photos.oriented)
        filters = [None, parse_filter({"shop": 1}), parse_filter({"shop": {"in": [0, 2]}})]

        def same() -> None:
            found = 0
            for query in queries:
                for where in filters:
                    hits = reader.search(query, 0.45, 1000, collection="small", where=where)
                    expected = alone.search(query, 0.45, 1000, collection="small", where=where)
                    assert hits == expected
                    found += len(hits)
            assert found > 3 * len(queries) * len(filters)
            for where in filters:
                listed = reader.list(0, 1000, collection="small", where=where)
                assert listed == alone.list(0, 1000, collection="small", where=where)
                assert reader.count(collection="small", where=where) == len(listed)

        same()
        big.prepare()  # the early rows in shared segments, then the late ones in the tail
        for store in (big, alone):
            store.add_many(late)
        big.add_many(noise[2000:])
        same()
        for store in (big, alone):
            store.delete(photos.names[0], collection="small")
            store.add(ImageRecord("near-1", photos.originals[0], {"shop": 1}, collection="small"))
        same()
        small = tables_module.collection_id(sqlite3.connect(big.path), "small")
        assert small is not None and reader._codes.selection(small).listed  # the path meant
        big.wait_for_builds()
        reader.wait_for_builds()


def test_a_listed_collection_follows_appends_deletions_and_a_new_mapping(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the candidate index alone: a small collection's list of rows against the mask of every
    # row (what choosing a big one costs), through the tail's appends, deletions and a remap
    monkeypatch.setattr(candidates_module, "_CHUNK", 64)
    rng = np.random.default_rng(4)
    ids = np.arange(1, 2001)
    collections = rng.choice([1, 2, 3], size=2000, p=[0.9, 0.07, 0.03]).astype(np.int32)
    codes = rng.integers(0, 2**63, (2000, 4), dtype=np.uint64)
    index = CandidateIndex(4)
    mapped = np.zeros(0, dtype=np.int64)  # the images (positions in the arrays above) by row

    def set_segments(*parts: np.ndarray) -> None:
        nonlocal mapped
        segments = [
            {"ids": ids[p], "collections": collections[p], "codes": codes[p].T.copy()}
            for p in parts
        ]
        index.set_segments(segments, through=int(ids[parts[-1][-1]]))
        mapped = np.concatenate(parts)

    def append(images: np.ndarray) -> None:
        nonlocal mapped
        index.append(ids[images], collections[images], codes[images])
        mapped = np.concatenate([mapped, images])

    def check(among: np.ndarray | None = None) -> None:
        size = len(mapped)
        alive = index._alive[:size]
        for collection in (1, 2, 3):
            chosen = index.selection(collection, among)
            mask = alive & (collections[mapped] == collection)
            if among is not None:
                mask &= np.isin(ids[mapped], among)
            few = among is not None and np.isin(among, ids[mapped]).sum() <= size / 4
            assert chosen.listed == (collection != 1 or few)  # a list, or a mask of every row
            assert np.array_equal(chosen.rows(), np.flatnonzero(mask))
            assert np.array_equal(index.live_ids(chosen), ids[mapped][mask])
            whole = Selection(size, mask=mask)
            for query in (codes[images] for images in ([5], [7, 1500], [90, 91, 1999])):
                for stages in ([(1, 30), (4, 110)], [(2, 50)]):
                    found = index.candidates(query, stages, chosen)
                    assert np.array_equal(found, index.candidates(query, stages, whole))

    set_segments(np.arange(900), np.arange(900, 1500))
    check()
    append(np.arange(1500, 1800))
    dead = np.flatnonzero(collections[:1800] == 2)[::3]
    index.kill(ids[dead])
    check()
    check(ids[::5])
    append(np.arange(1800, 2000))
    check(ids[::3])
    set_segments(np.setdiff1d(np.arange(2000), dead))  # rebuilt without the dead rows
    check()


def test_filters_see_what_other_processes_change(tmp_path: Path, photos: Photos) -> None:
    # two store objects on one file, as two workers: metadata updates keep the record's id, so
    # the other's field index learns of them from the field_updates log
    with SQLiteStore(tmp_path) as first, SQLiteStore(tmp_path) as second:
        first.add_many(
            ImageRecord(f"{n}.jpg", photos.originals[n], {"shop": n % 2}) for n in range(6)
        )
        shop = {n: parse_filter({"shop": n}) for n in (0, 1, 7)}
        assert second.list(where=shop[1]) == ["1.jpg", "3.jpg", "5.jpg"]
        first.update_metadata("3.jpg", {"shop": 7})
        first.update_metadata("4.jpg", None)
        assert second.list(where=shop[1]) == ["1.jpg", "5.jpg"]
        assert second.list(where=shop[7]) == ["3.jpg"]
        assert second.list(where=shop[0]) == ["0.jpg", "2.jpg"]
        second.update_metadata("3.jpg", {"shop": 1})
        assert first.list(where=shop[1]) == ["1.jpg", "3.jpg", "5.jpg"]
        assert first.count(where=shop[7]) == 0
        assert first.list() == [f"{n}.jpg" for n in range(6)]  # updates keep insertion order


def test_a_schema_3_file_is_upgraded_in_place(tmp_path: Path, photos: Photos) -> None:
    """A file as schema 3 wrote it (no PDQ columns or tables) keeps its records, gains PDQ,
    and its new records are found by their hashes."""
    with SQLiteStore(tmp_path) as store:
        store.add(ImageRecord("old.jpg", photos.originals[0], {"n": 1}))
    connection = sqlite3.connect(tmp_path / "match.sqlite3")
    with connection:  # back to schema 3: what the PDQ upgrade added, removed
        connection.execute("DROP TRIGGER hash_tombstone")
        for table in ("hashes", "hash_tombstones"):
            connection.execute(f"DROP TABLE {table}")
        connection.execute("ALTER TABLE images DROP COLUMN pdq")
        connection.execute("ALTER TABLE images DROP COLUMN pdq_quality")
        connection.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    connection.close()
    packed = bytes(range(32))
    with SQLiteStore(tmp_path) as store:
        old = store.get("old.jpg")
        assert (old.metadata, old.pdq, old.pdq_quality) == ({"n": 1}, None, None)
        store.add(ImageRecord("new.jpg", photos.originals[1], pdq=packed, pdq_quality=88))
        store.add_hashes([HashRecord("listed", packed, 70)])
        found = store.pdq_search([packed], 31, 10)
        assert [(h.filepath, h.hash_only) for h in found] == [("listed", True), ("new.jpg", False)]
        assert [h.filepath for h in store.search(photos.originals[0][None, :], 0.45, 1)] == [
            "old.jpg"
        ]
    connection = sqlite3.connect(tmp_path / "match.sqlite3")
    assert connection.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("6",)
    connection.close()


def test_a_words_row_that_is_not_whole_terms_is_damage_that_repair_rebuilds(
    tmp_path: Path, photos: Photos
) -> None:
    """A row of terms cut short (damage SQLite cannot see) is refused when read, not misread
    with every later term shifted by a byte; the full check finds it and the repair rebuilds
    it from the stored features."""
    local = damaged_behind_its_back(
        tmp_path, photos, "UPDATE words SET words = substr(words, 2) WHERE id = 1"
    )
    with SQLiteStore(tmp_path) as store:
        with pytest.raises(StoreDamaged, match="terms of image 1 are cut: not whole 4-byte terms"):
            store.local_candidates(local.words, 10, bits=local.bits)
        assert "words: 1 rows are not a whole number of terms" in store.check().problems
        repaired = store.check(repair=True)
        assert not repaired.damaged
        found = store.local_candidates(local.words, 10, bits=local.bits)
        assert [c.filepath for c in found][:1] == ["broken.jpg"]
