"""Reads and writes of the embedded store's tables (schema.py), each on a connection inside a
transaction the caller holds. Records go in as CheckedRecords and come out as rows."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from match.errors import IncompatibleRecord, StoreDamaged
from match.local import LocalFeatures, pack, unpack
from match.local.terms import terms_blob
from match.stores.base import Metadata
from match.stores.checks import CheckedRecord
from match.stores.sqlite.codes import pack_signature
from match.stores.sqlite.schema import DEFAULT_COLLECTION_ID, TOMBSTONES_KEPT, field_rows

FETCH = 50_000
"""Rows read at a time by a scan."""
WORD_FETCH = 10_000
"""Images' words per chunk of a word index load (~5 M postings)."""

Chunk = tuple[np.ndarray, ...]
_NO_END = 2**63 - 1


@dataclass(frozen=True)
class Row:
    """A checked record in the columns it is stored in."""

    record: CheckedRecord
    blob: bytes  # the packed signature
    local: bytes | None  # packed local features
    words: bytes | None  # their distinct terms (match.local.terms), sorted little-endian uint32

    @classmethod
    def of(cls, record: CheckedRecord) -> Row:
        packed = words = None
        if record.local is not None:
            packed = pack(record.local)
            words = terms_blob(record.local)
        return cls(record, pack_signature(record.signature), packed, words)


# -- writes ----------------------------------------------------------------------------------------
def insert(conn: sqlite3.Connection, rows: list[Row], codes: np.ndarray) -> None:
    """Replace or insert rows (distinct collection and filepath pairs) with their codes, in one
    write transaction. Writers are serialised, so the new ids are the next ones after the
    table's sequence."""
    collections = {name: collection_id(conn, name, create=True) for name in _names(rows)}
    keys = [[collections[row.record.collection], row.record.filepath] for row in rows]
    conn.execute(
        "DELETE FROM images WHERE (collection, filepath) IN "
        "(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
        (json.dumps(keys, ensure_ascii=False),),
    )
    found = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'images'").fetchone()
    first = (found[0] if found else 0) + 1
    numbered = list(zip(range(first, first + len(rows)), rows, strict=True))
    now = time.time()
    conn.executemany(
        "INSERT INTO images (id, collection, filepath, algorithm, signature, metadata, width, "
        "height, added, pdq, pdq_quality) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                i,
                collections[r.record.collection],
                r.record.filepath,
                r.record.algorithm,
                r.blob,
                r.record.metadata_json,
                *(r.record.size or (None, None)),
                now,
                r.record.pdq,
                r.record.pdq_quality,
            )
            for i, r in numbered
        ],
    )
    conn.executemany(
        "INSERT INTO codes (id, code) VALUES (?, ?)",
        [(i, code.tobytes()) for (i, _), code in zip(numbered, codes, strict=True)],
    )
    local = [(i, r) for i, r in numbered if r.local is not None]
    conn.executemany(
        "INSERT INTO local (id, features) VALUES (?, ?)", [(i, r.local) for i, r in local]
    )
    conn.executemany(
        "INSERT INTO words (id, words) VALUES (?, ?)", [(i, r.words) for i, r in local]
    )
    conn.executemany(
        "INSERT INTO thumbnails (id, image) VALUES (?, ?)",
        [(i, r.record.thumbnail) for i, r in numbered if r.record.thumbnail is not None],
    )
    fields = [f for i, r in numbered for f in field_rows(i, r.record.metadata)]
    conn.executemany("INSERT INTO fields (id, key, kind, value) VALUES (?, ?, ?, ?)", fields)


def replace_metadata(
    conn: sqlite3.Connection, image_id: int, metadata: Metadata, text: str | None
) -> None:
    """A record's new metadata, and the values filters match in it."""
    conn.execute("UPDATE images SET metadata = ? WHERE id = ?", (text, image_id))
    conn.execute("DELETE FROM fields WHERE id = ?", (image_id,))
    conn.execute("INSERT INTO field_updates (id) VALUES (?)", (image_id,))
    conn.executemany(
        "INSERT INTO fields (id, key, kind, value) VALUES (?, ?, ?, ?)",
        field_rows(image_id, metadata),
    )


def last_of_each_filepath(batch: list[Row]) -> list[Row]:
    """The batch with only the last row of each filepath in a collection, in the order of those
    last ones (a filepath added twice ends where it was added last)."""
    latest: dict[tuple[str, str], Row] = {}
    for row in reversed(batch):
        latest.setdefault((row.record.collection, row.record.filepath), row)
    return list(reversed(latest.values()))


def collection_id(conn: sqlite3.Connection, name: str, *, create: bool = False) -> int | None:
    """The id of a collection by name (created if asked), or None if there is none."""
    if create:
        conn.execute("INSERT OR IGNORE INTO collections (name) VALUES (?)", (name,))
    found = conn.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()
    return None if found is None else int(found[0])


def _names(rows: list[Row]) -> list[str]:
    return sorted({row.record.collection for row in rows})


def prune_tombstones(conn: sqlite3.Connection) -> None:
    """Keep the last TOMBSTONES_KEPT tombstones (of images and of hash-only records) and field
    updates (a worker further behind reloads its indexes)."""
    for table, key in (
        ("tombstones", "tombstones_pruned"),
        ("hash_tombstones", "hash_tombstones_pruned"),
        ("field_updates", "updates_pruned"),
    ):
        newest = conn.execute(f"SELECT coalesce(max(seq), 0) FROM {table}").fetchone()[0]
        pruned = pruned_through(conn, key)
        if newest - pruned > 2 * TOMBSTONES_KEPT:
            through = newest - TOMBSTONES_KEPT
            conn.execute(f"DELETE FROM {table} WHERE seq <= ?", (through,))
            conn.execute("UPDATE meta SET value = ? WHERE key = ?", (str(through), key))


# -- reads -----------------------------------------------------------------------------------------
def rows_by_id(
    conn: sqlite3.Connection, columns: str, ids: Iterable[int], join: str = ""
) -> dict[int, tuple[Any, ...]]:
    """{id: (columns..., id)} for those of ``ids`` still stored (and in the ``join``ed table)."""
    listed = json.dumps([int(i) for i in ids])
    rows = conn.execute(
        f"SELECT {columns}, id FROM images {join} WHERE id IN (SELECT value FROM json_each(?))",
        (listed,),
    )
    return {row[-1]: row for row in rows}


def words_by_id(
    conn: sqlite3.Connection, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored terms of those ``ids`` that have some: (ids, numbers of distinct terms, the
    terms concatenated), in no particular order (words.WordsOf)."""
    rows = conn.execute(
        "SELECT id, words FROM words WHERE id IN (SELECT value FROM json_each(?))",
        (json.dumps(ids.tolist()),),
    ).fetchall()
    found = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    counts, terms = _terms_of(rows, 1)
    return found, counts, terms


def _terms_of(rows: list[Any], column: int) -> tuple[np.ndarray, np.ndarray]:
    """The numbers of terms in the rows' ``column`` (uint32 blobs) and the terms concatenated.
    A blob that is not a whole number of terms is damage SQLite cannot see: read on, it would
    shift every term after it."""
    lengths = np.fromiter((len(row[column]) for row in rows), np.int64, len(rows))
    if (lengths % 4).any():
        broken = rows[int(np.flatnonzero(lengths % 4)[0])]
        raise StoreDamaged(f"the stored terms of image {broken[0]} are cut: not whole 4-byte terms")
    return lengths // 4, np.frombuffer(b"".join(row[column] for row in rows), "<u4")


def every_row(
    conn: sqlite3.Connection, columns: str, ids: Iterable[int], index: str, join: str = ""
) -> dict[int, tuple[Any, ...]]:
    """rows_by_id for ids that an ``index`` read in the same snapshot holds: each must be
    found, or the file is damaged (a page that hides rows from lookups raises no error)."""
    ids = [int(i) for i in ids]
    found = rows_by_id(conn, columns, ids, join)
    if len(found) < len(set(ids)):
        missing = next(i for i in ids if i not in found)
        where = "images" + (f" {join}" if join else "")
        raise StoreDamaged(f"the {index} index holds image {missing}, not found in {where}")
    return found


def count(conn: sqlite3.Connection, collection: int) -> int:
    found = conn.execute("SELECT records FROM collections WHERE id = ?", (collection,)).fetchone()
    return int(found[0]) if found else 0


def collections(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    """Every collection with records (and ``default``), with its count, by name."""
    return conn.execute(
        "SELECT name, records FROM collections WHERE records > 0 OR id = ? ORDER BY name",
        (DEFAULT_COLLECTION_ID,),
    ).fetchall()


def added_since(
    conn: sqlite3.Connection, collection: int | None, time: float | None, seq: int | None
) -> np.ndarray:
    """Ids (ascending) of the collection's images added at or after ``time`` (Unix seconds) and
    with ids above ``seq``; either bound may be None."""
    if collection is None:
        return np.zeros(0, dtype=np.int64)
    found = conn.execute(
        "SELECT id FROM images WHERE collection = ? AND id > ? AND added >= ? ORDER BY id",
        (collection, -1 if seq is None else seq, -1.0 if time is None else time),
    ).fetchall()
    return np.array([row[0] for row in found], dtype=np.int64)


def check_algorithms(conn: sqlite3.Connection, algorithm: str) -> None:
    """IncompatibleRecord if records of another signature algorithm are stored."""
    foreign = conn.execute(
        "SELECT name, records FROM algorithms WHERE records > 0 AND name != ?", (algorithm,)
    ).fetchall()
    if foreign:
        described = ", ".join(f"{count} by {name!r}" for name, count in foreign)
        raise IncompatibleRecord(
            f"The store holds signatures made by another algorithm ({described}); they "
            f"cannot be compared with {algorithm!r} signatures. Delete or re-add them."
        )


def deleted_since(
    conn: sqlite3.Connection,
    seq: int | None,
    table: str = "tombstones",
    pruned: str = "tombstones_pruned",
) -> tuple[int, np.ndarray | None]:
    """(newest tombstone, ids deleted after tombstone ``seq``) for an index that has seen the
    tombstones through ``seq``; ids are None when that index must be reloaded: it never was
    loaded (seq None), or tombstones it has not seen were pruned. ``table`` holds the
    tombstones (``hash_tombstones`` for hash-only records), ``pruned`` names how far."""
    if seq is None or seq < pruned_through(conn, pruned):
        return conn.execute(f"SELECT coalesce(max(seq), 0) FROM {table}").fetchone()[0], None
    dead = conn.execute(
        f"SELECT seq, id FROM {table} WHERE seq > ? ORDER BY seq", (seq,)
    ).fetchall()
    if not dead:
        return seq, np.zeros(0, dtype=np.int64)
    return dead[-1][0], np.array([row[1] for row in dead], dtype=np.int64)


def code_chunks(
    conn: sqlite3.Connection, after: int, words: int, through: int | None = None
) -> Iterator[Chunk]:
    """(ids, collections, (n, words) uint64 codes) of the images with ids above ``after`` (and
    up to ``through``), in id order."""
    cursor = conn.execute(
        "SELECT id, collection, code FROM codes JOIN images USING (id) "
        "WHERE id > ? AND id <= ? ORDER BY id",
        (after, _NO_END if through is None else through),
    )
    while rows := cursor.fetchmany(FETCH):
        ids, collections = _ids_and_collections(rows)
        codes = np.frombuffer(b"".join(row[2] for row in rows), dtype=np.uint64)
        yield ids, collections, codes.reshape(len(rows), words)


def word_chunks(
    conn: sqlite3.Connection, after: int, through: int | None = None
) -> Iterator[Chunk]:
    """The stored terms of the images with word rows (``seq``) above ``after`` (and up to
    ``through``), in that order, a chunk at a time (word rows, ids, collections, numbers of
    distinct terms, the terms concatenated)."""
    cursor = conn.execute(
        "SELECT id, collection, words, seq FROM words JOIN images USING (id) "
        "WHERE seq > ? AND seq <= ? ORDER BY seq",
        (after, _NO_END if through is None else through),
    )
    while rows := cursor.fetchmany(WORD_FETCH):
        ids, collections = _ids_and_collections(rows)
        keys = np.fromiter((row[3] for row in rows), dtype=np.int64, count=len(rows))
        counts, terms = _terms_of(rows, 2)
        yield keys, ids, collections, counts, terms


def image_pdq_chunks(
    conn: sqlite3.Connection, after: int, through: int | None = None
) -> Iterator[Chunk]:
    """(ids, collections, (n, 4) uint64 PDQ hashes) of the images with a hash and ids above
    ``after`` (and up to ``through``), in id order."""
    return _pdq_chunks(conn, "images", "AND pdq NOT NULL", after, through)


def hash_pdq_chunks(
    conn: sqlite3.Connection, after: int, through: int | None = None
) -> Iterator[Chunk]:
    """The same of the hash-only records."""
    return _pdq_chunks(conn, "hashes", "", after, through)


def _pdq_chunks(
    conn: sqlite3.Connection, table: str, having: str, after: int, through: int | None
) -> Iterator[Chunk]:
    cursor = conn.execute(
        f"SELECT id, collection, pdq FROM {table} WHERE id > ? AND id <= ? {having} ORDER BY id",
        (after, _NO_END if through is None else through),
    )
    while rows := cursor.fetchmany(FETCH):
        ids, collections = _ids_and_collections(rows)
        hashes = np.frombuffer(b"".join(row[2] for row in rows), dtype=np.uint64)
        yield ids, collections, hashes.reshape(len(rows), 4)


def field_chunks(conn: sqlite3.Connection, after: int) -> Iterator[tuple[list[tuple]]]:
    """The ``fields`` rows (id, key, kind, value) of the images with ids above ``after``, a
    chunk at a time."""
    cursor = conn.execute(
        "SELECT id, key, kind, value FROM fields WHERE id > ? ORDER BY id", (after,)
    )
    while rows := cursor.fetchmany(FETCH):
        yield (rows,)


def _ids_and_collections(rows: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    collections = np.fromiter((row[1] for row in rows), dtype=np.int32, count=len(rows))
    return ids, collections


def unpacked(features: bytes | None) -> LocalFeatures | None:
    """Stored local features, or None when there are none or they cannot be read."""
    if features is None:
        return None
    try:
        return unpack(features)
    except ValueError:
        return None


def features_of(features: bytes, image_id: int) -> LocalFeatures:
    """Stored local features that must be readable: the writer packed them, so bytes that do
    not unpack are damage."""
    local = unpacked(features)
    if local is None:
        raise StoreDamaged(f"the local features of image {image_id} cannot be read")
    return local


def updated_since(conn: sqlite3.Connection, seq: int | None) -> tuple[int, np.ndarray | None]:
    """(newest field update, ids whose metadata changed after update ``seq``), as
    deleted_since does for tombstones: None when the caller must reload instead."""
    if seq is None or seq < pruned_through(conn, "updates_pruned"):
        return conn.execute("SELECT coalesce(max(seq), 0) FROM field_updates").fetchone()[0], None
    changed = conn.execute(
        "SELECT seq, id FROM field_updates WHERE seq > ? ORDER BY seq", (seq,)
    ).fetchall()
    if not changed:
        return seq, np.zeros(0, dtype=np.int64)
    return changed[-1][0], np.array([row[1] for row in changed], dtype=np.int64)


def fields_of(conn: sqlite3.Connection, ids: np.ndarray) -> list[tuple]:
    """The ``fields`` rows of these ids, in id order."""
    listed = json.dumps([int(i) for i in ids])
    return conn.execute(
        "SELECT id, key, kind, value FROM fields WHERE id IN (SELECT value FROM json_each(?)) "
        "ORDER BY id",
        (listed,),
    ).fetchall()


def pruned_through(conn: sqlite3.Connection, key: str = "tombstones_pruned") -> int:
    found = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return int(found[0]) if found else 0
