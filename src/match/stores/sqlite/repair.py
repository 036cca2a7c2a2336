"""``match check --repair`` on the embedded store: the derived tables rebuilt from the records.

A damaged derived table is dropped (or, when its pages are too damaged for SQLite to free
them, unlinked from the schema, its pages reclaimed by the VACUUM that ends the repair),
created again and filled from the records: the signature codes from ``images``, the words
from ``local``, the filter fields from the metadata, the
per-algorithm and per-collection counts from ``images``. A damaged index is rebuilt with
REINDEX; a damaged thumbnails table is emptied (the web page shows no preview for those
images). The shared index segments are then dropped, so every process rebuilds its indexes
from the repaired file, and the damage flag is removed once a full check finds nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from match.local import unpack
from match.local.terms import terms_blob
from match.stores.sqlite import integrity
from match.stores.sqlite.codes import HyperplaneCoder, unpack_signatures
from match.stores.sqlite.indexes import HASH_PDQ_FAMILY, IMAGE_PDQ_FAMILY, WORDS_FAMILY
from match.stores.sqlite.schema import field_rows, open_schema
from match.stores.sqlite.segments import Manifest, SegmentDirectory

BATCH = 5000


def repair(conn: sqlite3.Connection, path: Path, report: integrity.Report) -> list[str]:
    """Repair what ``report`` (a full check) found, on a connection of its own outside any
    transaction; the lines saying what was done."""
    done = []
    for table in sorted(report.tables & set(integrity.DERIVED + integrity.EXPENDABLE)):
        _drop(conn, table)
    for index in sorted(report.indexes):
        try:
            conn.execute(f"REINDEX {index}")
            done.append(f"{index}: rebuilt")
        except sqlite3.DatabaseError as error:  # its pages cannot even be freed
            done.append(f"{index}: cannot be rebuilt in place ({error})")
    meta = open_schema(conn, str(path))  # creates the dropped tables again, empty
    conn.execute("BEGIN IMMEDIATE")
    try:
        if report.unreadable:
            listed = json.dumps(report.unreadable)
            for table in ("local", "words"):
                conn.execute(
                    f"DELETE FROM {table} WHERE id IN (SELECT value FROM json_each(?))", (listed,)
                )
            done.append(
                f"{integrity.FEATURES}: dropped the unreadable ones of "
                f"{len(report.unreadable)} images (add them again for partial matching)"
            )
        for table in sorted(report.tables & set(integrity.DERIVED)):
            rows = FILL[table](conn, meta)
            done.append(f"{table}: rebuilt from the records ({rows} rows)")
        # the counts kept by triggers, recounted: a row lost from images leaves them high
        conn.execute(
            "UPDATE collections SET records = "
            "(SELECT count(*) FROM images WHERE images.collection = collections.id)"
        )
        if "algorithms" not in report.tables:
            conn.execute("DELETE FROM algorithms")
            _fill_algorithms(conn, meta)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    for table in sorted(report.tables & set(integrity.EXPENDABLE)):
        done.append(f"{table}: emptied (the web page shows no preview of the images stored)")
    conn.execute("VACUUM")  # reclaims the pages of tables unlinked from the schema
    return done


def reset_shared_indexes(path: Path, store_id: str) -> None:
    """Publish empty manifests: every process maps them at its next read and reloads its
    indexes from the file (the word rows were renumbered)."""
    folder = Path(f"{path}.index")
    for name in ("codes", WORDS_FAMILY.name, IMAGE_PDQ_FAMILY.name, HASH_PDQ_FAMILY.name):
        directory = SegmentDirectory(folder / name)
        with directory.building(blocking=True):
            generation = directory.manifest().generation
            directory.publish(Manifest(generation + 1, 0, (), store_id))


def _drop(conn: sqlite3.Connection, table: str) -> None:
    try:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    except sqlite3.DatabaseError:  # its pages cannot be walked: unlink it from the schema
        with integrity.writable_schema(conn):
            conn.execute(
                "DELETE FROM sqlite_master WHERE tbl_name = ? AND type IN ('table', 'index')",
                (table,),
            )
        # the connection must read the schema again before the table is created anew
        conn.execute("PRAGMA schema_version = " + str(_schema_version(conn) + 1))


def _schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA schema_version").fetchone()[0])


def _fill_codes(conn: sqlite3.Connection, meta: dict[str, str]) -> int:
    coder = HyperplaneCoder(int(meta["code_bits"]), int(meta["code_seed"]))
    total = 0
    for rows in _batches(conn, "SELECT id, signature FROM images ORDER BY id"):
        codes = coder.encode(unpack_signatures([row[1] for row in rows]))
        conn.executemany(
            "INSERT INTO codes (id, code) VALUES (?, ?)",
            [(row[0], code.tobytes()) for row, code in zip(rows, codes, strict=True)],
        )
        total += len(rows)
    return total


def _fill_words(conn: sqlite3.Connection, meta: dict[str, str]) -> int:
    total = 0
    for rows in _batches(conn, "SELECT id, features FROM local ORDER BY id"):
        words = []
        for image_id, features in rows:
            words.append((image_id, terms_blob(unpack(features))))
        conn.executemany("INSERT INTO words (id, words) VALUES (?, ?)", words)
        total += len(rows)
    return total


def _fill_fields(conn: sqlite3.Connection, meta: dict[str, str]) -> int:
    total = 0
    query = "SELECT id, metadata FROM images WHERE metadata IS NOT NULL ORDER BY id"
    for rows in _batches(conn, query):
        fields = [f for image_id, text in rows for f in field_rows(image_id, json.loads(text))]
        conn.executemany("INSERT INTO fields (id, key, kind, value) VALUES (?, ?, ?, ?)", fields)
        total += len(fields)
    return total


def _fill_algorithms(conn: sqlite3.Connection, meta: dict[str, str]) -> int:
    conn.execute(
        "INSERT INTO algorithms (name, records) SELECT algorithm, count(*) FROM images "
        "GROUP BY algorithm"
    )
    return int(conn.execute("SELECT count(*) FROM algorithms").fetchone()[0])


def _batches(conn: sqlite3.Connection, query: str) -> Iterator[list[tuple]]:
    cursor = conn.execute(query)
    while rows := cursor.fetchmany(BATCH):
        yield rows


FILL: dict[str, Callable[[sqlite3.Connection, dict[str, str]], int]] = {
    "codes": _fill_codes,
    "words": _fill_words,
    "fields": _fill_fields,
    "algorithms": _fill_algorithms,
}
