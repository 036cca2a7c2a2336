"""Reads and writes of the embedded store's tables (schema.py), each on a connection inside a
transaction the caller holds. Records go in as CheckedRecords and come out as rows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from match.errors import IncompatibleRecord
from match.local import LocalFeatures, pack, unpack
from match.stores.checks import CheckedRecord
from match.stores.sqlite.codes import pack_signature
from match.stores.sqlite.schema import TOMBSTONES_KEPT

FETCH = 50_000
"""Rows read at a time by a scan."""
WORD_FETCH = 10_000
"""Images' words per chunk of a word index load (~5 M postings)."""

Chunk = tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Row:
    """A checked record in the columns it is stored in."""

    record: CheckedRecord
    blob: bytes  # the packed signature
    local: bytes | None  # packed local features
    words: bytes | None  # their distinct words, sorted little-endian uint16

    @classmethod
    def of(cls, record: CheckedRecord) -> Row:
        packed = words = None
        if record.local is not None:
            packed = pack(record.local)
            words = np.unique(np.asarray(record.local.words)).astype("<u2").tobytes()
        return cls(record, pack_signature(record.signature), packed, words)


# -- writes ----------------------------------------------------------------------------------------
def insert(conn: sqlite3.Connection, rows: list[Row], codes: np.ndarray) -> None:
    """Replace or insert rows (distinct filepaths) with their codes, in one write transaction.
    Writers are serialised, so the new ids are the next ones after the table's sequence."""
    filepaths = json.dumps([row.record.filepath for row in rows], ensure_ascii=False)
    conn.execute(
        "DELETE FROM images WHERE filepath IN (SELECT value FROM json_each(?))", (filepaths,)
    )
    found = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'images'").fetchone()
    first = (found[0] if found else 0) + 1
    numbered = list(zip(range(first, first + len(rows)), rows, strict=True))
    conn.executemany(
        "INSERT INTO images (id, filepath, algorithm, signature, metadata) VALUES (?, ?, ?, ?, ?)",
        [
            (i, r.record.filepath, r.record.algorithm, r.blob, r.record.metadata_json)
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


def last_of_each_filepath(batch: list[Row]) -> list[Row]:
    """The batch with only the last row of each filepath, in the order of those last ones
    (a filepath added twice ends where it was added last)."""
    latest: dict[str, Row] = {}
    for row in reversed(batch):
        latest.setdefault(row.record.filepath, row)
    return list(reversed(latest.values()))


def prune_tombstones(conn: sqlite3.Connection) -> None:
    newest = conn.execute("SELECT coalesce(max(seq), 0) FROM tombstones").fetchone()[0]
    pruned = _pruned_through(conn)
    if newest - pruned > 2 * TOMBSTONES_KEPT:
        through = newest - TOMBSTONES_KEPT
        conn.execute("DELETE FROM tombstones WHERE seq <= ?", (through,))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'tombstones_pruned'", (str(through),))


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


def count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(sum(records), 0) FROM algorithms").fetchone()[0])


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


def deleted_since(conn: sqlite3.Connection, seq: int | None) -> tuple[int, np.ndarray | None]:
    """(newest tombstone, ids deleted after tombstone ``seq``) for an index that has seen the
    tombstones through ``seq``; ids are None when that index must be reloaded: it never was
    loaded (seq None), or tombstones it has not seen were pruned."""
    if seq is None or seq < _pruned_through(conn):
        return conn.execute("SELECT coalesce(max(seq), 0) FROM tombstones").fetchone()[0], None
    dead = conn.execute(
        "SELECT seq, id FROM tombstones WHERE seq > ? ORDER BY seq", (seq,)
    ).fetchall()
    if not dead:
        return seq, np.zeros(0, dtype=np.int64)
    return dead[-1][0], np.array([row[1] for row in dead], dtype=np.int64)


def code_chunks(conn: sqlite3.Connection, after: int, words: int) -> Iterator[Chunk]:
    """(ids, (n, words) uint64 codes) of the images with ids above ``after``, in id order."""
    cursor = conn.execute("SELECT id, code FROM codes WHERE id > ? ORDER BY id", (after,))
    while rows := cursor.fetchmany(FETCH):
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        codes = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.uint64)
        yield ids, codes.reshape(len(rows), words)


def word_chunks(conn: sqlite3.Connection, after: int) -> Iterator[Chunk]:
    """The stored words of the images with ids above ``after``, in id order, a chunk at a
    time (ids, numbers of distinct words, the words concatenated)."""
    cursor = conn.execute("SELECT id, words FROM words WHERE id > ? ORDER BY id", (after,))
    while rows := cursor.fetchmany(WORD_FETCH):
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        counts = np.fromiter((len(row[1]) // 2 for row in rows), np.int64, len(rows))
        yield ids, counts, np.frombuffer(b"".join(row[1] for row in rows), dtype="<u2")


def unpacked(features: bytes | None) -> LocalFeatures | None:
    """Stored local features, or None when there are none or they cannot be read."""
    if features is None:
        return None
    try:
        return unpack(features)
    except ValueError:
        return None


def _pruned_through(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM meta WHERE key = 'tombstones_pruned'").fetchone()[0])
