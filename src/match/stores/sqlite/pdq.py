"""The embedded store's PDQ reads and writes (schema.py's ``hashes``, ``pdq_terms`` and
``hash_terms``): hash-only records in and out, and lookups by multi-index term with an exact
Hamming re-rank. The terms themselves are written and deleted by triggers."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

import numpy as np

from match import pdq
from match.pdq.codec import as_words
from match.stores.base import HashRecord, PdqHit
from match.stores.checks import metadata_json, metadata_of
from match.stores.filters import Filter
from match.stores.sqlite import tables


def insert_hashes(conn: sqlite3.Connection, records: list[HashRecord]) -> None:
    """Replace or insert checked hash-only records (the last of each filepath wins)."""
    latest: dict[tuple[str, str], HashRecord] = {}
    for record in records:
        latest.pop((record.collection, record.filepath), None)
        latest[(record.collection, record.filepath)] = record
    names = {r.collection for r in latest.values()}
    ids = {name: tables.collection_id(conn, name, create=True) for name in sorted(names)}
    keys = [[ids[r.collection], r.filepath] for r in latest.values()]
    conn.execute(
        "DELETE FROM hashes WHERE (collection, filepath) IN "
        "(SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))",
        (json.dumps(keys, ensure_ascii=False),),
    )
    now = time.time()
    conn.executemany(
        "INSERT INTO hashes (collection, filepath, pdq, quality, metadata, added) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                ids[r.collection],
                r.filepath,
                r.pdq,
                r.quality,
                metadata_json(r.metadata, r.filepath),
                now,
            )
            for r in latest.values()
        ],
    )


def hash_page(
    conn: sqlite3.Connection, collection: int, offset: int, limit: int, name: str
) -> list[HashRecord]:
    rows = conn.execute(
        "SELECT filepath, pdq, quality, metadata, added FROM hashes WHERE collection = ? "
        "ORDER BY id LIMIT ? OFFSET ?",
        (collection, limit, offset),
    ).fetchall()
    return [HashRecord(r[0], r[1], r[2], metadata_of(r[3]), name, r[4]) for r in rows]


def lookup(
    conn: sqlite3.Connection,
    queries: Sequence[bytes],
    max_distance: int,
    collection: int,
    where: Filter | None,
    *,
    images: bool,
    hash_only: bool,
    flips: int = pdq.PROBE_FLIPS,
) -> list[PdqHit]:
    """Every record in the collection (and filter) sharing a term with a query hash and within
    ``max_distance`` of one, nearest first then by filepath."""
    terms = json.dumps(pdq.candidate_terms(list(queries), flips))
    query_words = as_words(list(queries))
    hits: list[PdqHit] = []
    sources = []
    if images:
        sources.append(
            (
                False,
                # candidates first, by the terms' primary key; CROSS JOIN keeps that order
                "SELECT filepath, pdq, pdq_quality, metadata, width, height FROM "
                "(SELECT DISTINCT id FROM pdq_terms WHERE term IN "
                "(SELECT value FROM json_each(?))) AS found CROSS JOIN images USING (id) "
                "WHERE collection = ?",
            )
        )
    if hash_only:
        sources.append(
            (
                True,
                "SELECT filepath, pdq, quality, metadata, NULL, NULL FROM "
                "(SELECT DISTINCT id FROM hash_terms WHERE term IN "
                "(SELECT value FROM json_each(?))) AS found CROSS JOIN hashes USING (id) "
                "WHERE collection = ?",
            )
        )
    for is_hash, sql in sources:
        rows = conn.execute(sql, (terms, collection)).fetchall()
        if not rows:
            continue
        distances = pdq.distances(query_words, as_words([r[1] for r in rows]))
        best = distances.argmin(axis=0)
        nearest = distances[best, np.arange(len(rows))]
        for i in np.flatnonzero(nearest <= max_distance):
            row = rows[i]
            metadata = metadata_of(row[3])
            if where is not None and not where.matches(metadata):
                continue
            size = None if row[4] is None else (row[4], row[5])
            hits.append(
                PdqHit(
                    row[0],
                    int(nearest[i]),
                    row[2],
                    metadata,
                    is_hash,
                    int(best[i]),
                    size,
                    row[1],
                )
            )
    hits.sort(key=lambda hit: (hit.distance, hit.filepath, hit.hash_only))
    return hits
