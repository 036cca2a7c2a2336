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
from collections.abc import Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from match.errors import MatchError
from match.local.terms import probe_terms
from match.pdq import terms as pdq_terms
from match.pdq.codec import as_words
from match.settings import Settings
from match.signature import ALGORITHM
from match.stores import checks
from match.stores.base import (
    BulkResult,
    HashRecord,
    Hit,
    ImageRecord,
    Integrity,
    LocalCandidate,
    Metadata,
    PdqHit,
    Since,
    Thumbnail,
)
from match.stores.filters import DEFAULT_COLLECTION, Filter, check_collection
from match.stores.ranking import closest, with_distances
from match.stores.sqlite import health, integrity, pdq, tables
from match.stores.sqlite import repair as rebuild
from match.stores.sqlite.candidates import CandidateIndex
from match.stores.sqlite.codes import HyperplaneCoder, unpack_signatures
from match.stores.sqlite.database import Database
from match.stores.sqlite.fields import FieldIndex
from match.stores.sqlite.indexes import (
    HASH_PDQ_FAMILY,
    IMAGE_PDQ_FAMILY,
    WORDS_FAMILY,
    SharedIndex,
    codes_family,
)
from match.stores.sqlite.pdq_index import PdqIndex
from match.stores.sqlite.rows import Selection
from match.stores.sqlite.schema import DEFAULT_COLLECTION_ID
from match.stores.sqlite.sync import IndexSync
from match.stores.sqlite.words import WordIndex

MISS_RATE = 1e-4
"""Largest chance that the candidate index drops an image lying exactly at the cutoff."""
BATCH = 2000
"""Records per add_many transaction."""
HASH_BATCH = 20_000
"""Hash-only records per add_hashes transaction."""
RECORD_COLUMNS = (
    "filepath, algorithm, signature, metadata, features, width, height, added, pdq, pdq_quality"
)
"""The columns a whole record is read from (images LEFT JOIN local), then its id."""
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
        pdq_flips: int = pdq_terms.PROBE_FLIPS,
    ) -> None:
        self.algorithm = algorithm
        self.pdq_flips = pdq_flips  # PDQ probing radius (match.pdq.terms)
        self.miss_rate = miss_rate
        self._db = Database(path, busy_timeout)
        self.path = self._db.path
        meta = self._db.meta
        self._coder = HyperplaneCoder(int(meta["code_bits"]), int(meta["code_seed"]))
        shared = Path(f"{self.path}.index")
        self._codes = CandidateIndex(self._coder.words)
        self._codes_shared = SharedIndex(
            shared, codes_family(self._coder.words), self._codes, meta["store_id"], self._connect
        )
        self._words = WordIndex()
        self._words_shared = SharedIndex(
            shared, WORDS_FAMILY, self._words, meta["store_id"], self._connect
        )
        self._image_pdq = PdqIndex()
        self._image_pdq_shared = SharedIndex(
            shared, IMAGE_PDQ_FAMILY, self._image_pdq, meta["store_id"], self._connect
        )
        self._hash_pdq = PdqIndex()
        self._hash_pdq_shared = SharedIndex(
            shared, HASH_PDQ_FAMILY, self._hash_pdq, meta["store_id"], self._connect
        )
        fields = self._fields = FieldIndex()
        self._fields_sync = IndexSync(
            fields, reload=lambda conn: fields.clear(), added_after=tables.field_chunks
        )
        self._field_updates: int | None = None  # the newest field update applied

    @classmethod
    def from_settings(cls, settings: Settings) -> SQLiteStore:
        return cls(settings.match_data_dir, pdq_flips=settings.match_pdq_probe_radius)

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

    def delete(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> None:
        filepath, collection = _key(filepath, collection)
        with self._db.write() as conn:
            cursor = conn.execute(
                "DELETE FROM images WHERE filepath = ? AND collection = "
                "(SELECT id FROM collections WHERE name = ?)",
                (filepath, collection),
            )
            if cursor.rowcount == 0:
                raise checks.not_found(filepath, collection)

    def update_metadata(
        self, filepath: str, metadata: Metadata, *, collection: str = DEFAULT_COLLECTION
    ) -> None:
        filepath, collection = _key(filepath, collection)
        text = checks.metadata_json(metadata, filepath)
        with self._db.write() as conn:
            found = self._id_of(conn, filepath, collection)
            if found is None:
                raise checks.not_found(filepath, collection)
            tables.replace_metadata(conn, found, metadata, text)

    def drop_collection(self, collection: str) -> int:
        collection = check_collection(collection)
        with self._db.write() as conn:
            found = tables.collection_id(conn, collection)
            if found is None:
                raise checks.no_collection(collection)
            dropped = conn.execute("DELETE FROM images WHERE collection = ?", (found,)).rowcount
            dropped += conn.execute("DELETE FROM hashes WHERE collection = ?", (found,)).rowcount
            if found != DEFAULT_COLLECTION_ID:
                conn.execute("DELETE FROM collections WHERE id = ?", (found,))
            tables.prune_tombstones(conn)
        if dropped == 0 and collection != DEFAULT_COLLECTION:  # as on the engines: an empty
            raise checks.no_collection(collection)  # collection is no collection
        return dropped

    # -- reads ------------------------------------------------------------------------------
    def get(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> ImageRecord:
        filepath, collection = _key(filepath, collection)
        row = self._row_of(f"{RECORD_COLUMNS}, id", "local", filepath, collection)
        return _record(row, collection)

    def _row_of(self, columns: str, joined: str, filepath: str, collection: str) -> tuple[Any, ...]:
        """``columns`` of the image stored under ``filepath`` with its row of ``joined`` (a
        table keyed by the image's id; NULLs when it has none), or NotFound."""
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {columns} FROM images LEFT JOIN {joined} USING (id) "
                "WHERE filepath = ? AND collection = (SELECT id FROM collections WHERE name = ?)",
                (filepath, collection),
            ).fetchone()
        if row is None:
            raise checks.not_found(filepath, collection)
        return row

    def scan(
        self,
        *,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
        since: Since | None = None,
        batch: int = 200,
    ) -> Iterator[ImageRecord]:
        collection = check_collection(collection)
        batch = max(1, int(batch))
        with self._db.read() as conn:
            self._codes_shared.refresh(conn)
            rows = self._chosen(conn, self._codes, collection, where)
            if rows is None:
                return
            ids = self._codes.live_ids(rows)
            if since is not None:
                found = tables.collection_id(conn, collection)
                ids = ids[np.isin(ids, tables.added_since(conn, found, since.time, since.seq))]
        for start in range(0, len(ids), batch):
            chunk = ids[start : start + batch]
            with self._db.read() as conn:
                found_rows = tables.rows_by_id(
                    conn, RECORD_COLUMNS, chunk, join="LEFT JOIN local USING (id)"
                )
            for image_id in chunk.tolist():  # one deleted since the first read is skipped
                if image_id in found_rows:
                    yield _record(found_rows[image_id], collection)

    def thumbnail(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> Thumbnail | None:
        filepath, collection = _key(filepath, collection)
        row = self._row_of("image, width, height", "thumbnails", filepath, collection)
        return None if row[0] is None else Thumbnail(bytes(row[0]), _size(row[1], row[2]))

    def count(self, *, collection: str = DEFAULT_COLLECTION, where: Filter | None = None) -> int:
        collection = check_collection(collection)
        with self._db.read() as conn:
            if where is None:
                found = tables.collection_id(conn, collection)
                return 0 if found is None else tables.count(conn, found)
            self._codes_shared.refresh(conn)
            rows = self._chosen(conn, self._codes, collection, where)
            return 0 if rows is None else len(rows)

    def list(
        self,
        offset: int = 0,
        limit: int = 20,
        *,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
    ) -> list[str]:
        offset = checks.non_negative(offset, "offset")
        limit = checks.non_negative(limit, "limit")
        collection = check_collection(collection)
        with self._db.read() as conn:
            self._codes_shared.refresh(conn)
            rows = self._chosen(conn, self._codes, collection, where)
            if rows is None:
                return []
            ids = self._codes.live_ids(rows)[offset : offset + limit]
            found = tables.every_row(conn, "filepath", ids, "codes")
        return [found[int(i)][0] for i in ids]

    def collections(self) -> list[tuple[str, int]]:
        with self._db.read() as conn:
            return tables.collections(conn)

    def search(
        self,
        signatures: np.ndarray,
        cutoff: float,
        limit: int,
        offset: int = 0,
        *,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
    ) -> Sequence[Hit]:
        queries = checks.check_queries(signatures)
        cutoff = checks.check_cutoff(cutoff)
        offset = checks.non_negative(offset, "offset")
        limit = checks.non_negative(limit, "limit")
        collection = check_collection(collection)
        stages = self._coder.stages(cutoff, self.miss_rate)
        with self._db.read() as conn, _one_blas_thread():
            tables.check_algorithms(conn, self.algorithm)
            self._codes_shared.refresh(conn)
            rows = self._chosen(conn, self._codes, collection, where)
            if rows is None:
                return []
            ids = self._codes.candidates(self._coder.encode(queries), stages, rows)
            found = tables.every_row(conn, "filepath, signature", ids, "codes").values()
            return self._hits(conn, _rank(queries, found, cutoff)[offset : offset + limit])

    def local_candidates(
        self,
        words: np.ndarray,
        limit: int,
        *,
        bits: np.ndarray | None = None,
        signatures: np.ndarray | None = None,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
    ) -> list[LocalCandidate]:
        checks.check_words(words)
        query = probe_terms(np.asarray(words), checks.check_query_bits(words, bits))
        queries = None if signatures is None else checks.check_queries(signatures)
        limit = checks.non_negative(limit, "limit")
        collection = check_collection(collection)
        with self._db.read() as conn:
            self._words_shared.refresh(conn)
            rows = self._chosen(conn, self._words, collection, where)
            if rows is None:
                return []
            words_of = partial(tables.words_by_id, conn)  # in this snapshot
            ids = self._words.top(query, limit, rows, words_of).tolist()
            found = tables.every_row(
                conn,
                "filepath, features, metadata, signature, width, height, pdq, pdq_quality",
                ids,
                "words",
                join="JOIN local USING (id)",
            )
            ordered = [found[i] for i in ids]
            readable = [(r, tables.features_of(r[1], r[-1])) for r in ordered]
        candidates = [
            LocalCandidate(
                r[0],
                local,
                checks.metadata_of(r[2]),
                size=_size(r[4], r[5]),
                pdq=r[6],
                pdq_quality=r[7],
            )
            for r, local in readable
        ]
        if queries is None or not candidates:
            return candidates
        stored = unpack_signatures([r[3] for r, _ in readable])
        return with_distances(candidates, queries, stored)

    def search_exhaustive(
        self, signatures: np.ndarray, cutoff: float, limit: int, offset: int = 0
    ) -> list[Hit]:
        """search() by comparing with every stored signature, in every collection: the ground
        truth the candidate index is measured against (slow: for benchmarks and tests)."""
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

    # -- hash-only records and PDQ lookups (pdq.py) -----------------------------------------
    def add_hashes(self, records: Iterable[HashRecord]) -> BulkResult:
        added, failed, batch = 0, [], []
        for record in records:
            try:
                batch.append(checks.check_hash_record(record))
            except MatchError as error:
                failed.append((checks.record_name(record), error.message))
            if len(batch) >= HASH_BATCH:
                added += self._insert_hashes(batch)
                batch = []
        added += self._insert_hashes(batch)
        return BulkResult(added=added, failed=failed)

    def hashes(
        self, offset: int = 0, limit: int = 1000, *, collection: str = DEFAULT_COLLECTION
    ) -> list[HashRecord]:
        offset = checks.non_negative(offset, "offset")
        limit = checks.non_negative(limit, "limit")
        collection = check_collection(collection)
        with self._db.read() as conn:
            found = tables.collection_id(conn, collection)
            return [] if found is None else pdq.hash_page(conn, found, offset, limit, collection)

    def delete_hash(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> None:
        filepath, collection = _key(filepath, collection)
        with self._db.write() as conn:
            cursor = conn.execute(
                "DELETE FROM hashes WHERE filepath = ? AND collection = "
                "(SELECT id FROM collections WHERE name = ?)",
                (filepath, collection),
            )
            if cursor.rowcount == 0:
                raise checks.hash_not_found(filepath, collection)

    def pdq_search(
        self,
        hashes: Sequence[bytes],
        max_distance: int,
        limit: int,
        *,
        images: bool = True,
        hash_only: bool = True,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
    ) -> list[PdqHit]:
        asked = checks.check_pdq_lookup(hashes, max_distance, limit, collection, batch=False)
        words = as_words(asked.hashes)
        hits: list[PdqHit] = []
        with self._db.read() as conn:
            found = tables.collection_id(conn, asked.collection)
            if found is None:
                return []
            for wanted, shared, index, is_hash in (
                (images, self._image_pdq_shared, self._image_pdq, False),
                (hash_only, self._hash_pdq_shared, self._hash_pdq, True),
            ):
                if not wanted:
                    continue
                shared.refresh(conn)
                near = index.lookup(words, asked.max_distance, found, self.pdq_flips)
                hits += [hit for _, hit in pdq.hits(conn, near, where, hash_only=is_hash)]
        hits.sort(key=_pdq_order)
        return hits[: asked.limit]

    def pdq_search_batch(
        self,
        hashes: Sequence[bytes],
        max_distance: int,
        limit: int,
        *,
        images: bool = True,
        hash_only: bool = True,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
    ) -> list[list[PdqHit]]:
        asked = checks.check_pdq_lookup(hashes, max_distance, limit, collection, batch=True)
        each: list[list[PdqHit]] = [[] for _ in asked.hashes]
        if not asked.hashes:
            return each
        words = as_words(asked.hashes)
        with self._db.read() as conn:
            found = tables.collection_id(conn, asked.collection)
            if found is None:
                return each
            for wanted, shared, index, is_hash in (
                (images, self._image_pdq_shared, self._image_pdq, False),
                (hash_only, self._hash_pdq_shared, self._hash_pdq, True),
            ):
                if not wanted:
                    continue
                shared.refresh(conn)
                # every query's probes in one gather, every record found read once
                owners, ids, distances = index.lookup_each(
                    words, asked.max_distance, found, self.pdq_flips
                )
                near = (ids, distances, np.zeros(len(ids), dtype=np.int64))
                owners = owners.tolist()
                for n, hit in pdq.hits(conn, near, where, hash_only=is_hash):
                    each[owners[n]].append(hit)
        for hits in each:
            hits.sort(key=_pdq_order)
            del hits[asked.limit :]
        return each

    def ping(self) -> None:
        with self._db.read() as conn:
            conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()

    def readiness(self, min_free_bytes: int = 0) -> list[str]:
        return health.readiness(self._db, min_free_bytes)

    def check(self, *, repair: bool = False) -> Integrity:
        """integrity.full_check; what it finds is flagged (every process keeps off the store,
        also while it is repaired). A flag with nothing found (damage seen by a read) is
        cleared only by a repair, which then rebuilds the indexes all the same."""
        with self._db.maintenance() as conn:
            report = integrity.full_check(conn)
            if report.problems:
                self._db.flag_damage("; ".join(report.problems[:3]))
            flagged = self._db.damage()
            problems = report.problems or ([f"flagged: {flagged}"] if flagged else [])
            if not repair or not report.repairable:
                return Integrity(problems, damaged=flagged is not None)
            try:
                done = rebuild.repair(conn, self.path, report) if report.problems else []
            except sqlite3.DatabaseError as error:  # damage beyond what is rebuilt here
                stopped = f"the repair stopped: {error} (restore a backup)"
                return Integrity(problems, [stopped], damaged=True)
            after = integrity.full_check(conn)
            if after.problems:
                self._db.flag_damage("; ".join(after.problems[:3]))
                return Integrity(problems + after.problems, done, damaged=True)
        # every process reloads its indexes from the repaired file
        rebuild.reset_shared_indexes(self.path, self._db.meta["store_id"])
        self._db.clear_damage()
        return Integrity(problems, done, damaged=False)

    def close(self) -> None:
        self._db.close()

    def prepare(self) -> None:
        """Build the shared indexes up to what is stored and map them: run before a server's
        workers start (and by each at its start), so no search waits for it. A damaged store
        is refused (StoreDamaged), as any read of it is."""
        self._db.refuse_if_damaged()
        with self._db.guarded():  # the builds read on connections of their own
            for shared in self._shared():
                shared.build(wait=True)
        with self._db.read() as conn:
            for shared in self._shared():
                shared.refresh(conn)

    def wait_for_builds(self) -> None:
        """Wait for this process's index builds in progress (tests, shutdown)."""
        for shared in self._shared():
            shared.wait_for_build()

    def shared_index_bytes(self) -> int:
        """Bytes of the shared index segments on disk (mapped, one copy per machine)."""
        return sum(s.directory.nbytes() for s in self._shared())

    def index_bytes(self) -> int:
        """Memory held by this process's candidate index."""
        return self._codes.nbytes()

    def words_index_bytes(self) -> int:
        """Memory held by this process's inverted index of visual words."""
        return self._words.nbytes()

    def pdq_index_bytes(self) -> int:
        """Memory held by this process's own part of the PDQ indexes (the segments are
        shared)."""
        return self._image_pdq.nbytes() + self._hash_pdq.nbytes()

    # -- helpers ----------------------------------------------------------------------------
    def _shared(self) -> tuple[SharedIndex, ...]:
        return (
            self._codes_shared,
            self._words_shared,
            self._image_pdq_shared,
            self._hash_pdq_shared,
        )

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

    def _insert_hashes(self, batch: list[HashRecord]) -> int:
        if not batch:
            return 0
        with self._db.write() as conn:
            pdq.insert_hashes(conn, batch)
            tables.prune_tombstones(conn)
        return len(batch)

    def _hits(self, conn: sqlite3.Connection, ranked: list[Ranked]) -> list[Hit]:
        found = tables.every_row(
            conn, "metadata, width, height, pdq, pdq_quality", [item[2] for item in ranked], "codes"
        )
        hits = []
        for distance, filepath, image_id, orientation in ranked:
            metadata, width, height, packed, quality, _ = found[image_id]
            metadata = checks.metadata_of(metadata)
            size = _size(width, height)
            hits.append(Hit(filepath, distance, metadata, orientation, size, packed, quality))
        return hits

    def _chosen(
        self,
        conn: sqlite3.Connection,
        index: CandidateIndex | WordIndex,
        collection: str,
        where: Filter | None,
    ) -> Selection | None:
        """``index``'s rows in the collection and matching the filter (the index brought up to
        date by the caller), or None when the collection does not exist."""
        found = tables.collection_id(conn, collection)
        if found is None:
            return None
        if where is None:
            return index.selection(found)
        self._refresh_fields(conn)
        return index.selection(found, self._fields.matching_ids(where))

    def _refresh_fields(self, conn: sqlite3.Connection) -> None:
        """The field index brought up to date: new and deleted records (as the other indexes
        are), then the records whose metadata changed in place."""
        seq, changed = tables.updated_since(conn, self._field_updates)
        if changed is None:
            self._fields_sync.reset()  # never loaded, or fell behind the pruned updates
        before = self._fields.last_id
        self._fields_sync.refresh(conn)
        self._field_updates = seq
        if changed is not None and len(changed):
            # ids above ``before`` were just read with their current values
            known = np.unique(changed[changed <= before])
            self._fields.update(known, tables.fields_of(conn, known), seq)

    def _connect(self) -> sqlite3.Connection:
        """A connection of its own, for an index build in a thread."""
        conn = sqlite3.connect(self.path, timeout=self._db.busy_timeout, isolation_level=None)
        conn.execute("PRAGMA query_only = ON")
        return conn

    @staticmethod
    def _id_of(conn: sqlite3.Connection, filepath: str, collection: str) -> int | None:
        found = conn.execute(
            "SELECT id FROM images WHERE filepath = ? AND collection = "
            "(SELECT id FROM collections WHERE name = ?)",
            (filepath, collection),
        ).fetchone()
        return None if found is None else int(found[0])


def _key(filepath: str, collection: str) -> tuple[str, str]:
    return checks.check_filepath(filepath), check_collection(collection)


def _record(row: tuple[Any, ...], collection: str) -> ImageRecord:
    """A whole record from the RECORD_COLUMNS of its row, then its id."""
    return ImageRecord(
        row[0],
        unpack_signatures([row[2]])[0],
        checks.metadata_of(row[3]),
        row[1],
        tables.unpacked(row[4]),
        collection,
        _size(row[5], row[6]),
        row[7],
        row[8],
        row[9],
        seq=int(row[10]),
    )


def _size(width: int | None, height: int | None) -> tuple[int, int] | None:
    return None if width is None or height is None else (width, height)


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


def _pdq_order(hit: PdqHit) -> tuple[int, str, bool]:
    """PDQ hits nearest first, then by filepath, images before hash-only records."""
    return (hit.distance, hit.filepath, hit.hash_only)
