"""The embedded store: one SQLite database in WAL mode, shared by every worker process.

Every write is one ``BEGIN IMMEDIATE`` transaction committed with ``synchronous=FULL``: when add()
returns, the record is on disk and any process's next read sees it. Search scans a per-process
candidate index (random-hyperplane codes, see _codes and _candidates), brought up to date from
the database at the start of every read, then re-ranks the candidates exactly with
``normalized_distances`` on signatures read in the same snapshot. Partial matching
(local_candidates) ranks images by their visual words on a second per-process index (_words),
kept up to date the same way but only by the reads that use it. See docs/embedded-store.md.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from match.errors import BadParameter, IncompatibleRecord, MatchError, StoreUnavailable
from match.local import LocalFeatures, pack, unpack
from match.settings import Settings
from match.signature import ALGORITHM, normalized_distances
from match.stores._candidates import CandidateIndex
from match.stores._checks import (
    check_cutoff,
    check_filepath,
    check_queries,
    check_signature,
    metadata_json,
    metadata_of,
    non_negative,
    not_found,
    record_name,
)
from match.stores._codes import HyperplaneCoder, pack_signature, unpack_signatures
from match.stores._local_checks import check_local, check_words
from match.stores._sqlite_errors import translated
from match.stores._sqlite_schema import SCHEMA_VERSION, STATEMENTS, TOMBSTONES_KEPT, UPGRADABLE
from match.stores._words import Chunk, WordIndex
from match.stores.base import BulkResult, Hit, ImageRecord, LocalCandidate, Metadata

FILENAME = "match.sqlite3"
FILE_SUFFIXES = (".sqlite3", ".sqlite", ".db")
CODE_BITS = 1024
CODE_SEED = 20021  # any fixed value; kept in the database so every process agrees
MISS_RATE = 1e-4
"""Largest chance that the candidate index drops an image lying exactly at the cutoff."""
BATCH = 2000
"""Records per add_many transaction."""
_FETCH = 50_000
_WORD_FETCH = 10_000  # images' words per chunk of a word index load (~5 M postings)
_THREADPOOLS = ThreadpoolController()


def _one_blas_thread() -> Any:
    """Per-query products are small: BLAS threads only add wake-up latency, and they compete
    with the other workers for the cores."""
    return _THREADPOOLS.limit(limits=1, user_api="blas")


@dataclass(frozen=True)
class _Row:
    filepath: str
    algorithm: str
    signature: np.ndarray
    blob: bytes
    metadata: str | None
    local: bytes | None  # packed local features
    words: bytes | None  # their distinct words, sorted little-endian uint16


class SQLiteStore:
    """The Store protocol on an SQLite file. ``path`` is a folder (the file is
    ``<folder>/match.sqlite3``, created with its folder) or a file ending in .sqlite3/.sqlite/.db.
    Only records of ``algorithm`` are accepted; search refuses to run while the file holds
    records of another algorithm (IncompatibleRecord), rather than mix them."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        algorithm: str = ALGORITHM,
        busy_timeout: float = 15.0,
        miss_rate: float = MISS_RATE,
    ) -> None:
        self.path = _database_path(Path(path))
        self.algorithm = algorithm
        self.miss_rate = miss_rate
        self._busy = busy_timeout
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._closed = False
        try:
            with self._guard():
                bits, seed = self._open_schema(self._connection())
        except BaseException:
            self.close()
            raise
        self._coder = HyperplaneCoder(bits, seed)
        self._index = CandidateIndex(self._coder.words)
        self._loaded = False
        self._tombstone_seq = 0
        self._words = WordIndex()
        self._words_loaded = False
        self._words_seq = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> SQLiteStore:
        return cls(settings.match_data_dir)

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------------
    def add(self, record: ImageRecord) -> None:
        row = self._prepare(record)
        with _one_blas_thread():
            self._insert_batch([row])

    def add_many(self, records: Iterable[ImageRecord]) -> BulkResult:
        added, failed, batch = 0, [], []
        for record in records:
            try:
                batch.append(self._prepare(record))
            except MatchError as error:
                failed.append((record_name(record), error.message))
            if len(batch) >= BATCH:
                added += self._insert_batch(batch)
                batch = []
        added += self._insert_batch(batch)
        return BulkResult(added=added, failed=failed)

    def delete(self, filepath: str) -> None:
        filepath = check_filepath(filepath)
        with self._write() as conn:
            if conn.execute("DELETE FROM images WHERE filepath = ?", (filepath,)).rowcount == 0:
                raise not_found(filepath)

    def update_metadata(self, filepath: str, metadata: Metadata) -> None:
        filepath = check_filepath(filepath)
        text = metadata_json(metadata, filepath)
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE images SET metadata = ? WHERE filepath = ?", (text, filepath)
            )
            if cursor.rowcount == 0:
                raise not_found(filepath)

    # -- reads ------------------------------------------------------------------------------
    def get(self, filepath: str) -> ImageRecord:
        filepath = check_filepath(filepath)
        with self._read() as conn:
            row = conn.execute(
                "SELECT filepath, algorithm, signature, metadata, features FROM images "
                "LEFT JOIN local USING (id) WHERE filepath = ?",
                (filepath,),
            ).fetchone()
        if row is None:
            raise not_found(filepath)
        signature = unpack_signatures([row[2]])[0]
        return ImageRecord(row[0], signature, metadata_of(row[3]), row[1], _unpacked(row[4]))

    def count(self) -> int:
        with self._read() as conn:
            return int(
                conn.execute("SELECT coalesce(sum(records), 0) FROM algorithms").fetchone()[0]
            )

    def list(self, offset: int = 0, limit: int = 20) -> list[str]:
        offset, limit = non_negative(offset, "offset"), non_negative(limit, "limit")
        with self._read() as conn:
            self._refresh(conn)
            ids = self._index.live_ids()[offset : offset + limit]
            rows = _rows_by_id(conn, "filepath", ids)
        return [rows[int(i)][0] for i in ids]

    def search(
        self, signatures: np.ndarray, cutoff: float, limit: int, offset: int = 0
    ) -> Sequence[Hit]:
        queries = check_queries(signatures)
        cutoff = check_cutoff(cutoff)
        offset, limit = non_negative(offset, "offset"), non_negative(limit, "limit")
        stages = self._coder.stages(cutoff, self.miss_rate)
        with self._read() as conn, _one_blas_thread():
            self._check_algorithms(conn)
            self._refresh(conn)
            ids = self._index.candidates(self._coder.encode(queries), stages)
            rows = _rows_by_id(conn, "filepath, signature", ids).values()
            ranked = _rank(queries, rows, cutoff)[offset : offset + limit]
            return self._hits(conn, ranked)

    def local_candidates(self, words: np.ndarray, limit: int) -> list[LocalCandidate]:
        query = check_words(words)
        limit = non_negative(limit, "limit")
        with self._read() as conn:
            self._refresh_words(conn)
            ids = self._words.top(query, limit)
            listed = json.dumps(ids.tolist())
            rows = conn.execute(
                "SELECT id, filepath, features, metadata, signature "
                "FROM images JOIN local USING (id) WHERE id IN (SELECT value FROM json_each(?))",
                (listed,),
            ).fetchall()
        found = {row[0]: row[1:] for row in rows}
        candidates = []
        for image_id in ids.tolist():
            row = found.get(image_id)
            local = _unpacked(row[1]) if row else None
            if row and local is not None:  # a corrupt row is skipped, not an error for the query
                signature = unpack_signatures([row[3]])[0]
                candidates.append(LocalCandidate(row[0], local, metadata_of(row[2]), signature))
        return candidates

    def search_exhaustive(
        self, signatures: np.ndarray, cutoff: float, limit: int, offset: int = 0
    ) -> list[Hit]:
        """search() by comparing with every stored signature: the ground truth the candidate
        index is measured against (slow: for benchmarks and tests)."""
        queries = check_queries(signatures)
        cutoff = check_cutoff(cutoff)
        offset, limit = non_negative(offset, "offset"), non_negative(limit, "limit")
        with self._read() as conn:
            self._check_algorithms(conn)
            cursor = conn.execute("SELECT filepath, signature, id FROM images")
            ranked: list[tuple[float, str, int, int]] = []
            while chunk := cursor.fetchmany(_FETCH):
                ranked += _rank(queries, chunk, cutoff)
            ranked.sort()
            return self._hits(conn, ranked[offset : offset + limit])

    def ping(self) -> None:
        with self._read() as conn:
            conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            self._closed = True

    def index_bytes(self) -> int:
        """Memory held by this process's candidate index."""
        return self._index.nbytes()

    def words_index_bytes(self) -> int:
        """Memory held by this process's inverted index of visual words."""
        return self._words.nbytes()

    # -- connection and transactions --------------------------------------------------------
    @contextmanager
    def _guard(self) -> Iterator[None]:
        with self._lock, translated(str(self.path), self._busy):
            yield

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable(f"The embedded store at {self.path} is closed")
        if self._conn is None or self._pid != os.getpid():
            # a connection inherited through fork() must not be used: open our own
            self._conn = sqlite3.connect(
                self.path, timeout=self._busy, isolation_level=None, check_same_thread=False
            )
            self._pid = os.getpid()
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
        return self._conn

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._guard():
            conn = self._connection()
            conn.execute(begin)
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self) -> Any:
        return self._transaction("BEGIN")

    def _write(self) -> Any:
        return self._transaction("BEGIN IMMEDIATE")

    def _open_schema(self, conn: sqlite3.Connection) -> tuple[int, int]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(STATEMENTS[0])  # meta: its schema says whether the rest may be created
            found = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if found is not None and found[0] not in (SCHEMA_VERSION, *UPGRADABLE):
                raise StoreUnavailable(
                    f"The embedded store at {self.path} has schema "
                    f"{found[0]}, this Match reads schema {SCHEMA_VERSION}"
                )
            for statement in STATEMENTS:
                conn.execute(statement)
            if found is not None and found[0] in UPGRADABLE:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
            defaults = {
                "schema": SCHEMA_VERSION,
                "code_bits": str(CODE_BITS),
                "code_seed": str(CODE_SEED),
                "tombstones_pruned": "0",
            }
            conn.executemany(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", defaults.items()
            )
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return int(meta["code_bits"]), int(meta["code_seed"])

    # -- helpers ----------------------------------------------------------------------------
    def _prepare(self, record: ImageRecord) -> _Row:
        if not isinstance(record, ImageRecord):
            raise BadParameter(f"Expected an ImageRecord, got {type(record).__name__}")
        filepath = check_filepath(record.filepath)
        if record.algorithm != self.algorithm:
            raise IncompatibleRecord(
                f"The signature of {filepath!r} was made by {record.algorithm!r}; this store "
                f"holds {self.algorithm!r} signatures"
            )
        signature = check_signature(record.signature, filepath)
        metadata = metadata_json(record.metadata, filepath)
        local = check_local(record.local, filepath)
        packed = words = None
        if local is not None:
            packed = pack(local)
            words = np.unique(np.asarray(local.words)).astype("<u2").tobytes()
        return _Row(
            filepath, self.algorithm, signature, pack_signature(signature), metadata, packed, words
        )

    def _insert_batch(self, batch: list[_Row]) -> int:
        if not batch:
            return 0
        rows = _last_of_each_filepath(batch)
        codes = self._coder.encode(np.stack([row.signature for row in rows]))
        with self._write() as conn:
            _insert(conn, rows, codes)
            _prune_tombstones(conn)
        return len(batch)

    def _check_algorithms(self, conn: sqlite3.Connection) -> None:
        foreign = conn.execute(
            "SELECT name, records FROM algorithms WHERE records > 0 AND name != ?",
            (self.algorithm,),
        ).fetchall()
        if foreign:
            described = ", ".join(f"{count} by {name!r}" for name, count in foreign)
            raise IncompatibleRecord(
                f"The store holds signatures made by another algorithm ({described}); they "
                f"cannot be compared with {self.algorithm!r} signatures. Delete or re-add them."
            )

    def _refresh(self, conn: sqlite3.Connection) -> None:
        """Bring the candidate index up to the current snapshot: drop deleted ids, append new."""
        seq, dead = _deleted_since(conn, self._tombstone_seq if self._loaded else None)
        if dead is None:
            self._index.clear()
            self._loaded = True
        else:
            self._index.kill(dead)
        self._tombstone_seq = seq
        cursor = conn.execute(
            "SELECT id, code FROM codes WHERE id > ? ORDER BY id", (self._index.last_id,)
        )
        while chunk := cursor.fetchmany(_FETCH):
            ids = np.fromiter((row[0] for row in chunk), dtype=np.int64, count=len(chunk))
            codes = np.frombuffer(b"".join(row[1] for row in chunk), dtype=np.uint64)
            self._index.append(ids, codes.reshape(len(chunk), self._coder.words))

    def _refresh_words(self, conn: sqlite3.Connection) -> None:
        """Bring the word index up to the current snapshot, as _refresh does the other."""
        seq, dead = _deleted_since(conn, self._words_seq if self._words_loaded else None)
        if dead is None:  # in one piece: see WordIndex.load
            self._words.load(lambda: _word_chunks(conn, 0))
            self._words_loaded = True
        else:
            self._words.kill(dead)
        self._words_seq = seq
        for chunk in _word_chunks(conn, self._words.last_id):
            self._words.append(*chunk)

    def _hits(
        self, conn: sqlite3.Connection, ranked: list[tuple[float, str, int, int]]
    ) -> list[Hit]:
        metadata = _rows_by_id(conn, "metadata", [item[2] for item in ranked])
        return [
            Hit(filepath, distance, metadata_of(metadata[image_id][0]), orientation)
            for distance, filepath, image_id, orientation in ranked
        ]


def _database_path(path: Path) -> Path:
    """The database file for a folder or file path, its folder created if missing."""
    file = path if path.suffix in FILE_SUFFIXES else path / FILENAME
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreUnavailable(
            f"Cannot create the store folder {file.parent}: {error.strerror}"
        ) from None
    return file


def _deleted_since(conn: sqlite3.Connection, seq: int | None) -> tuple[int, np.ndarray | None]:
    """(newest tombstone, ids deleted after tombstone ``seq``) for an index that has seen the
    tombstones through ``seq``; ids are None when that index must be reloaded: it never was
    loaded (seq None), or tombstones it has not seen were pruned."""
    pruned = int(
        conn.execute("SELECT value FROM meta WHERE key = 'tombstones_pruned'").fetchone()[0]
    )
    if seq is None or seq < pruned:
        return conn.execute("SELECT coalesce(max(seq), 0) FROM tombstones").fetchone()[0], None
    dead = conn.execute(
        "SELECT seq, id FROM tombstones WHERE seq > ? ORDER BY seq", (seq,)
    ).fetchall()
    if not dead:
        return seq, np.zeros(0, dtype=np.int64)
    return dead[-1][0], np.array([row[1] for row in dead], dtype=np.int64)


def _word_chunks(conn: sqlite3.Connection, after: int) -> Iterator[Chunk]:
    """The stored words of the images with ids above ``after``, in id order, a chunk at a
    time (ids, numbers of distinct words, the words concatenated)."""
    cursor = conn.execute("SELECT id, words FROM words WHERE id > ? ORDER BY id", (after,))
    while rows := cursor.fetchmany(_WORD_FETCH):
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        counts = np.fromiter((len(row[1]) // 2 for row in rows), np.int64, len(rows))
        yield ids, counts, np.frombuffer(b"".join(row[1] for row in rows), dtype="<u2")


def _unpacked(features: bytes | None) -> LocalFeatures | None:
    """Stored local features, or None when there are none or they cannot be read."""
    if features is None:
        return None
    try:
        return unpack(features)
    except ValueError:
        return None


def _last_of_each_filepath(batch: list[_Row]) -> list[_Row]:
    """The batch with only the last record of each filepath, in the order of those last ones
    (a filepath added twice ends where it was added last)."""
    latest: dict[str, _Row] = {}
    for row in reversed(batch):
        latest.setdefault(row.filepath, row)
    return list(reversed(latest.values()))


def _insert(conn: sqlite3.Connection, rows: list[_Row], codes: np.ndarray) -> None:
    """Replace or insert rows (distinct filepaths) with their codes, in one write transaction.
    Writers are serialised, so the new ids are the next ones after the table's sequence."""
    filepaths = json.dumps([row.filepath for row in rows], ensure_ascii=False)
    conn.execute(
        "DELETE FROM images WHERE filepath IN (SELECT value FROM json_each(?))", (filepaths,)
    )
    found = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'images'").fetchone()
    first = (found[0] if found else 0) + 1
    ids = range(first, first + len(rows))
    conn.executemany(
        "INSERT INTO images (id, filepath, algorithm, signature, metadata) VALUES (?, ?, ?, ?, ?)",
        [(i, r.filepath, r.algorithm, r.blob, r.metadata) for i, r in zip(ids, rows, strict=True)],
    )
    conn.executemany(
        "INSERT INTO codes (id, code) VALUES (?, ?)",
        [(i, code.tobytes()) for i, code in zip(ids, codes, strict=True)],
    )
    local = [(i, r.local, r.words) for i, r in zip(ids, rows, strict=True) if r.local is not None]
    conn.executemany("INSERT INTO local (id, features) VALUES (?, ?)", [r[:2] for r in local])
    conn.executemany("INSERT INTO words (id, words) VALUES (?, ?)", [(r[0], r[2]) for r in local])


def _prune_tombstones(conn: sqlite3.Connection) -> None:
    newest = conn.execute("SELECT coalesce(max(seq), 0) FROM tombstones").fetchone()[0]
    pruned = int(
        conn.execute("SELECT value FROM meta WHERE key = 'tombstones_pruned'").fetchone()[0]
    )
    if newest - pruned > 2 * TOMBSTONES_KEPT:
        through = newest - TOMBSTONES_KEPT
        conn.execute("DELETE FROM tombstones WHERE seq <= ?", (through,))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'tombstones_pruned'", (str(through),))


def _rows_by_id(
    conn: sqlite3.Connection, columns: str, ids: Iterable[int]
) -> dict[int, tuple[Any, ...]]:
    """{id: (columns..., id)} for those of ``ids`` still stored."""
    listed = json.dumps([int(i) for i in ids])
    rows = conn.execute(
        f"SELECT {columns}, id FROM images WHERE id IN (SELECT value FROM json_each(?))", (listed,)
    )
    return {row[-1]: row for row in rows}


def _rank(
    queries: np.ndarray, rows: Iterable[tuple[Any, ...]], cutoff: float
) -> list[tuple[float, str, int, int]]:
    """(distance, filepath, id, orientation) of the rows (filepath, signature blob, id) under
    the cutoff, best first then by filepath."""
    rows = list(rows)
    if not rows:
        return []
    stored = unpack_signatures([row[1] for row in rows])
    distances = normalized_distances(queries, stored)  # (k, n)
    best_row = np.argmin(distances, axis=0)
    best = distances[best_row, np.arange(len(rows))]
    under = np.flatnonzero(best < cutoff)
    ranked = [(float(best[i]), rows[i][0], int(rows[i][2]), int(best_row[i])) for i in under]
    ranked.sort()
    return ranked
