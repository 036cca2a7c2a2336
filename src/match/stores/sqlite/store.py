"""SQLiteStore: the Store protocol on one SQLite file, shared by every worker process.

The parts, each in its module: the file, its connection and transactions (database.py) and its
tables (schema.py, tables.py); the per-process candidate index of signature codes (codes.py,
candidates.py) and inverted index of visual words (words.py), both kept in step with the file
at the start of every read that uses them (sync.py). Search scans the candidate index, then ranks
the candidates exactly on signatures read in the same snapshot. See docs/embedded-store.md.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from match.errors import MatchError
from match.settings import Settings
from match.signature import ALGORITHM
from match.stores import checks
from match.stores.base import BulkResult, Hit, ImageRecord, LocalCandidate, Metadata
from match.stores.ranking import closest, with_distances
from match.stores.sqlite import tables
from match.stores.sqlite.candidates import CandidateIndex
from match.stores.sqlite.codes import HyperplaneCoder, unpack_signatures
from match.stores.sqlite.database import Database
from match.stores.sqlite.sync import IndexSync
from match.stores.sqlite.words import WordIndex

MISS_RATE = 1e-4
"""Largest chance that the candidate index drops an image lying exactly at the cutoff."""
BATCH = 2000
"""Records per add_many transaction."""
_THREADPOOLS = ThreadpoolController()

Ranked = tuple[float, str, int, int]  # (distance, filepath, id, orientation)


def _one_blas_thread() -> Any:
    """Per-query products are small: BLAS threads only add wake-up latency, and they compete
    with the other workers for the cores."""
    return _THREADPOOLS.limit(limits=1, user_api="blas")


class SQLiteStore:
    """``path`` is a folder (the file is ``<folder>/match.sqlite3``, created with its folder)
    or a file ending in .sqlite3/.sqlite/.db. Only records of ``algorithm`` are accepted; search
    refuses to run while the file holds records of another algorithm (IncompatibleRecord),
    rather than mix them."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        algorithm: str = ALGORITHM,
        busy_timeout: float = 15.0,
        miss_rate: float = MISS_RATE,
    ) -> None:
        self.algorithm = algorithm
        self.miss_rate = miss_rate
        self._db = Database(path, busy_timeout)
        self.path = self._db.path
        meta = self._db.meta
        self._coder = HyperplaneCoder(int(meta["code_bits"]), int(meta["code_seed"]))
        codes = self._codes = CandidateIndex(self._coder.words)
        self._codes_sync = IndexSync(
            codes,
            reload=lambda conn: codes.clear(),
            added_after=lambda conn, after: tables.code_chunks(conn, after, codes.words),
        )
        words = self._words = WordIndex()
        self._words_sync = IndexSync(
            words,
            reload=lambda conn: words.load(lambda: tables.word_chunks(conn, 0)),
            added_after=tables.word_chunks,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SQLiteStore:
        return cls(settings.match_data_dir)

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writes -----------------------------------------------------------------------------
    def add(self, record: ImageRecord) -> None:
        row = self._row(record)
        with _one_blas_thread():
            self._insert([row])

    def add_many(self, records: Iterable[ImageRecord]) -> BulkResult:
        added, failed, batch = 0, [], []
        for record in records:
            try:
                batch.append(self._row(record))
            except MatchError as error:
                failed.append((checks.record_name(record), error.message))
            if len(batch) >= BATCH:
                added += self._insert(batch)
                batch = []
        added += self._insert(batch)
        return BulkResult(added=added, failed=failed)

    def delete(self, filepath: str) -> None:
        filepath = checks.check_filepath(filepath)
        with self._db.write() as conn:
            if conn.execute("DELETE FROM images WHERE filepath = ?", (filepath,)).rowcount == 0:
                raise checks.not_found(filepath)

    def update_metadata(self, filepath: str, metadata: Metadata) -> None:
        filepath = checks.check_filepath(filepath)
        text = checks.metadata_json(metadata, filepath)
        with self._db.write() as conn:
            cursor = conn.execute(
                "UPDATE images SET metadata = ? WHERE filepath = ?", (text, filepath)
            )
            if cursor.rowcount == 0:
                raise checks.not_found(filepath)

    # -- reads ------------------------------------------------------------------------------
    def get(self, filepath: str) -> ImageRecord:
        filepath = checks.check_filepath(filepath)
        with self._db.read() as conn:
            row = conn.execute(
                "SELECT filepath, algorithm, signature, metadata, features FROM images "
                "LEFT JOIN local USING (id) WHERE filepath = ?",
                (filepath,),
            ).fetchone()
        if row is None:
            raise checks.not_found(filepath)
        signature = unpack_signatures([row[2]])[0]
        metadata = checks.metadata_of(row[3])
        return ImageRecord(row[0], signature, metadata, row[1], tables.unpacked(row[4]))

    def count(self) -> int:
        with self._db.read() as conn:
            return tables.count(conn)

    def list(self, offset: int = 0, limit: int = 20) -> list[str]:
        offset = checks.non_negative(offset, "offset")
        limit = checks.non_negative(limit, "limit")
        with self._db.read() as conn:
            self._codes_sync.refresh(conn)
            ids = self._codes.live_ids()[offset : offset + limit]
            rows = tables.rows_by_id(conn, "filepath", ids)
        return [rows[int(i)][0] for i in ids]

    def search(
        self, signatures: np.ndarray, cutoff: float, limit: int, offset: int = 0
    ) -> Sequence[Hit]:
        queries = checks.check_queries(signatures)
        cutoff = checks.check_cutoff(cutoff)
        offset = checks.non_negative(offset, "offset")
        limit = checks.non_negative(limit, "limit")
        stages = self._coder.stages(cutoff, self.miss_rate)
        with self._db.read() as conn, _one_blas_thread():
            tables.check_algorithms(conn, self.algorithm)
            self._codes_sync.refresh(conn)
            ids = self._codes.candidates(self._coder.encode(queries), stages)
            rows = tables.rows_by_id(conn, "filepath, signature", ids).values()
            return self._hits(conn, _rank(queries, rows, cutoff)[offset : offset + limit])

    def local_candidates(
        self, words: np.ndarray, limit: int, *, signatures: np.ndarray | None = None
    ) -> list[LocalCandidate]:
        query = checks.check_words(words)
        queries = None if signatures is None else checks.check_queries(signatures)
        limit = checks.non_negative(limit, "limit")
        with self._db.read() as conn:
            self._words_sync.refresh(conn)
            ids = self._words.top(query, limit).tolist()
            found = tables.rows_by_id(
                conn, "filepath, features, metadata, signature", ids, join="JOIN local USING (id)"
            )
        rows = [found[i] for i in ids if i in found]
        # a row whose features cannot be read is skipped, not an error for the query
        readable = [(row, local) for row in rows if (local := tables.unpacked(row[1])) is not None]
        candidates = [
            LocalCandidate(row[0], local, checks.metadata_of(row[2])) for row, local in readable
        ]
        if queries is None or not candidates:
            return candidates
        stored = unpack_signatures([row[3] for row, _ in readable])
        return with_distances(candidates, queries, stored)

    def search_exhaustive(
        self, signatures: np.ndarray, cutoff: float, limit: int, offset: int = 0
    ) -> list[Hit]:
        """search() by comparing with every stored signature: the ground truth the candidate
        index is measured against (slow: for benchmarks and tests)."""
        queries = checks.check_queries(signatures)
        cutoff = checks.check_cutoff(cutoff)
        offset = checks.non_negative(offset, "offset")
        limit = checks.non_negative(limit, "limit")
        with self._db.read() as conn:
            tables.check_algorithms(conn, self.algorithm)
            cursor = conn.execute("SELECT filepath, signature, id FROM images")
            ranked: list[Ranked] = []
            while chunk := cursor.fetchmany(tables.FETCH):
                ranked += _rank(queries, chunk, cutoff)
            ranked.sort()
            return self._hits(conn, ranked[offset : offset + limit])

    def ping(self) -> None:
        with self._db.read() as conn:
            conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()

    def close(self) -> None:
        self._db.close()

    def index_bytes(self) -> int:
        """Memory held by this process's candidate index."""
        return self._codes.nbytes()

    def words_index_bytes(self) -> int:
        """Memory held by this process's inverted index of visual words."""
        return self._words.nbytes()

    # -- helpers ----------------------------------------------------------------------------
    def _row(self, record: ImageRecord) -> tables.Row:
        return tables.Row.of(checks.check_record(record, self.algorithm))

    def _insert(self, batch: list[tables.Row]) -> int:
        if not batch:
            return 0
        rows = tables.last_of_each_filepath(batch)
        codes = self._coder.encode(np.stack([row.record.signature for row in rows]))
        with self._db.write() as conn:
            tables.insert(conn, rows, codes)
            tables.prune_tombstones(conn)
        return len(batch)

    def _hits(self, conn: sqlite3.Connection, ranked: list[Ranked]) -> list[Hit]:
        metadata = tables.rows_by_id(conn, "metadata", [item[2] for item in ranked])
        return [
            Hit(filepath, distance, checks.metadata_of(metadata[image_id][0]), orientation)
            for distance, filepath, image_id, orientation in ranked
        ]


def _rank(queries: np.ndarray, rows: Iterable[tuple[Any, ...]], cutoff: float) -> list[Ranked]:
    """The rows (filepath, signature blob, id) under the cutoff, best first then by filepath."""
    rows = list(rows)
    distances, orientations = closest(queries, unpack_signatures([row[1] for row in rows]))
    under = np.flatnonzero(distances < cutoff)
    ranked = [
        (float(distances[i]), rows[i][0], int(rows[i][2]), int(orientations[i])) for i in under
    ]
    ranked.sort()
    return ranked
