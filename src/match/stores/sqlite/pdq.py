"""The embedded store's PDQ reads and writes (schema.py's ``hashes``): hash-only records in and
out, and the records a lookup in the shared PDQ indexes (pdq_index.py) found, read by id."""

from __future__ import annotations

import json
import sqlite3
import time

import numpy as np

from match.stores.base import HashRecord, PdqHit
from match.stores.checks import metadata_json, metadata_of
from match.stores.filters import Filter
from match.stores.sqlite import tables


def insert_hashes(conn: sqlite3.Connection, records: list[HashRecord]) -> None:
    """Replace or insert checked hash-only records (the last of each filepath wins, where it
    came last)."""
    latest = {(r.collection, r.filepath): r for r in records}
    if len(latest) < len(records):  # a filepath twice: it goes where it came last
        latest = {}
        for record in records:
            latest.pop((record.collection, record.filepath), None)
            latest[(record.collection, record.filepath)] = record
    names = {r.collection for r in latest.values()}
    ids = {name: tables.collection_id(conn, name, create=True) for name in sorted(names)}
    now = time.time()
    rows = [
        (
            ids[r.collection],
            r.filepath,
            r.pdq,
            r.quality,
            metadata_json(r.metadata, r.filepath),
            now,
        )
        for r in latest.values()
    ]
    insert = (
        "INSERT {} INTO hashes (collection, filepath, pdq, quality, metadata, added) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )
    # a bulk import's batch is mostly new filepaths: insert them without looking for old ones
    # first, and only when some were there already, undo that and replace them
    conn.execute("SAVEPOINT new_hashes")
    before = conn.total_changes
    conn.executemany(insert.format("OR IGNORE"), rows)
    if conn.total_changes - before == len(rows):
        conn.execute("RELEASE new_hashes")
        return
    conn.execute("ROLLBACK TO new_hashes")
    conn.execute("RELEASE new_hashes")
    conn.execute(
        "DELETE FROM hashes WHERE (collection, filepath) IN "
        "(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
        (json.dumps([row[:2] for row in rows], ensure_ascii=False),),
    )
    conn.executemany(insert.format(""), rows)


def hash_page(
    conn: sqlite3.Connection, collection: int, offset: int, limit: int, name: str
) -> list[HashRecord]:
    rows = conn.execute(
        "SELECT filepath, pdq, quality, metadata, added FROM hashes WHERE collection = ? "
        "ORDER BY id LIMIT ? OFFSET ?",
        (collection, limit, offset),
    ).fetchall()
    return [HashRecord(r[0], r[1], r[2], metadata_of(r[3]), name, r[4]) for r in rows]


def hits(
    conn: sqlite3.Connection,
    found: tuple[np.ndarray, np.ndarray, np.ndarray],
    where: Filter | None,
    *,
    hash_only: bool,
) -> list[tuple[int, PdqHit]]:
    """The records an index lookup found (ids, distances, orientations), read in the caller's
    snapshot, those matching the filter, each with its position in ``found`` (an id found
    several times, by several queries of a batch, is read once)."""
    ids, distances, orientations = found
    if len(ids) == 0:
        return []
    if hash_only:
        sql = "SELECT id, filepath, pdq, quality, metadata, NULL, NULL FROM hashes"
    else:
        sql = "SELECT id, filepath, pdq, pdq_quality, metadata, width, height FROM images"
    wanted = np.unique(ids)
    rows = {
        row[0]: row
        for row in conn.execute(
            f"{sql} WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(wanted.tolist()),),
        )
    }
    metadata: dict[int, object] = {}
    found_hits = []
    for n, (image_id, distance, orientation) in enumerate(
        zip(ids.tolist(), distances.tolist(), orientations.tolist(), strict=True)
    ):
        row = rows.get(image_id)
        if row is None:  # the index is in step with the snapshot: only a defensive skip
            continue
        if image_id not in metadata:
            metadata[image_id] = metadata_of(row[4])
        record_metadata = metadata[image_id]
        if where is not None and not where.matches(record_metadata):
            continue
        size = None if row[5] is None else (row[5], row[6])
        hit = PdqHit(
            row[1], distance, row[3], record_metadata, hash_only, orientation, size, row[2]
        )
        found_hits.append((n, hit))
    return found_hits
