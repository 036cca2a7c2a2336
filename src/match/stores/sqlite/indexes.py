"""The embedded store's two indexes, one copy per machine: shared segments on disk plus each
process's short tail, kept in step with the SQLite file.

Each index (the signature codes, candidates.py; the visual words, words.py) keeps its bulk in
segments (segments.py) under ``<store file>.index/``, mapped by every process: the operating
system holds one copy, however many workers read it. At the start of every read that uses an
index, a process:

1. maps the segments of a newer manifest, if another process published one;
2. drops the ids deleted since each segment was built (the tombstones table);
3. appends to its tail the rows stored after the segments (keys above ``through``).

When a tail reaches BUILD_AFTER rows, its process builds a segment of them in a thread of its
own, on its own connection (one builder at a time on the machine, under the folder's lock):
it reads one snapshot, writes the new segment, merges it with the one before while that one is
not much bigger (LSM-style: adding never rebuilds everything, and a query visits O(log n)
segments), rebuilds a segment whose rows are mostly deleted or whose deletions were pruned
from the tombstones, and publishes the new manifest. ``prepare()`` does the same before a
server starts, so the workers find the index ready instead of building it on their first
search.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from match.stores.sqlite import pdq_index, tables, words
from match.stores.sqlite.candidates import CandidateIndex
from match.stores.sqlite.pdq_index import PdqIndex
from match.stores.sqlite.segments import Manifest, SegmentDirectory, SegmentInfo
from match.stores.sqlite.words import WordIndex

log = logging.getLogger(__name__)

BUILD_AFTER = 8192
"""Rows in a process's tail before it builds them into a shared segment."""
MERGE_RATIO = 4
"""A segment is merged with the one before it while that one has at most this many times its
rows."""
DEAD_SHARE = 0.25
"""A segment is rebuilt once this share of its rows is deleted."""


@dataclass(frozen=True)
class Family:
    """What one index reads from the SQLite file and how it makes a segment of it."""

    name: str  # its folder
    table: str  # the table whose ``key`` column orders its rows
    key: str
    chunks: Callable[[sqlite3.Connection, int, int | None], Iterator[tuple[np.ndarray, ...]]]
    build: Callable[[Callable[[], Iterable[tuple[np.ndarray, ...]]]], dict[str, np.ndarray] | None]
    tombstones: str = "tombstones"  # the table of its deleted keys ...
    pruned: str = "tombstones_pruned"  # ... and the meta key saying how far it was pruned
    indexed: str = ""  # which rows of ``table`` it holds (SQL), when not all of them
    read: tuple[str, ...] = ()  # arrays read by ranges (segments.FileArray), not mapped


def codes_family(words_per_code: int) -> Family:
    def chunks(conn: sqlite3.Connection, after: int, through: int | None) -> Iterator[Any]:
        return tables.code_chunks(conn, after, words_per_code, through)

    return Family("codes", "codes", "id", chunks, _build_codes)


# "-3": postings of terms (a word and Hamming bits, match.local.terms) since schema 6; before,
# "-2" held words as 16-bit low bits by (word, block) and "words" int32 rows by word. Each
# format has a folder of its own, so that no Match maps another's; the first build here makes
# them from the SQLite file, and older folders are left to older versions
WORDS_FAMILY = Family("words-3", "words", "seq", tables.word_chunks, words.build, read=("rows",))
# "-2": segments that record their split (pdq_index.SPLITS), in folders of their own, so that an
# older Match, which would read a wide segment's offsets as 16-bit ones, never maps them (and
# this one never maps the older 16-bit-only folders "pdq-images" and "pdq-hashes")
IMAGE_PDQ_FAMILY = Family(
    "pdq-images-2",
    "images",
    "id",
    tables.image_pdq_chunks,
    pdq_index.build,
    indexed="pdq NOT NULL",
)
HASH_PDQ_FAMILY = Family(
    "pdq-hashes-2",
    "hashes",
    "id",
    tables.hash_pdq_chunks,
    pdq_index.build,
    tombstones="hash_tombstones",
    pruned="hash_tombstones_pruned",
)


def _build_codes(chunks: Callable[[], Iterable[tuple[np.ndarray, ...]]]) -> dict | None:
    parts = list(chunks())
    if not parts:
        return None
    return {
        "ids": np.concatenate([ids for ids, _, _ in parts]),
        "collections": np.concatenate([c for _, c, _ in parts]).astype(np.int32),
        # word-major: one contiguous column per 64 bits, for the scan
        "codes": np.ascontiguousarray(np.concatenate([codes for _, _, codes in parts]).T),
    }


class SharedIndex:
    """One process's view of one shared index of one store file."""

    def __init__(
        self,
        folder: Path,
        family: Family,
        index: CandidateIndex | WordIndex | PdqIndex,
        store_id: str,
        connect: Callable[[], sqlite3.Connection],
    ) -> None:
        self.directory = SegmentDirectory(folder / family.name)
        self.family = family
        self.index = index
        self.store_id = store_id
        self._connect = connect  # a connection of its own, for builds in a thread
        self._generation = -1  # of the manifest mapped; -1: none yet
        self._seq = 0  # the newest tombstone applied to the mapped rows
        self._building: threading.Thread | None = None

    def refresh(self, conn: sqlite3.Connection) -> None:
        """Bring the index up to the read's snapshot (see the module docstring)."""
        manifest = self._manifest()
        mapped = manifest.generation == self._generation
        reach = max(manifest.through, self.index.last_key if mapped else 0)
        if self._top(conn) - reach > 4 * BUILD_AFTER:
            # far behind (a first start, a bulk import by another process): build now, rather
            # than hold the rows in this process's memory (and scan them there)
            self.build(wait=True)
            manifest = self._manifest()
            mapped = manifest.generation == self._generation
        if not mapped and not self._map(conn, manifest):
            # a segment needs pruned tombstones: rebuild it
            self.build(wait=True)
            if not self._map(conn, self._manifest()):
                raise RuntimeError(f"the {self.family.name} index could not be mapped")
        seq, dead = tables.deleted_since(
            conn, self._seq, self.family.tombstones, self.family.pruned
        )
        if dead is None:  # tombstones this process needs were pruned: map again
            self._generation = -1
            self.refresh(conn)
            return
        self.index.kill(dead)
        self._seq = seq
        for chunk in self.family.chunks(conn, self.index.last_key, None):
            self.index.append(*chunk)
        if self.index.tail_rows >= BUILD_AFTER:
            self._build_soon()

    def build(self, *, wait: bool = False) -> bool:
        """Build the rows past the segments into the shared index (see the module docstring);
        with ``wait``, wait for another process's build to end, then build what is left,
        instead of skipping. Whether this call held the lock."""
        with self.directory.building(blocking=wait) as mine:
            if not mine:
                return False
            conn = self._connect()
            try:
                conn.execute("BEGIN")  # one snapshot for the whole build
                self._build(conn)
                conn.execute("COMMIT")
            finally:
                conn.close()
            return True

    def _build(self, conn: sqlite3.Connection) -> None:
        manifest = self._manifest()
        newest = conn.execute(
            f"SELECT coalesce(max(seq), 0) FROM {self.family.tombstones}"
        ).fetchone()[0]
        pruned = tables.pruned_through(conn, self.family.pruned)
        top = self._top(conn)
        segments = list(manifest.segments)
        stale = [
            s for s in segments if s.tombstones < pruned or self._dead_share(conn, s) > DEAD_SHARE
        ]
        if top <= manifest.through and not stale:
            return
        for old in stale:  # rebuilt without its deleted rows, or dropped if none is left
            at = segments.index(old)
            rebuilt = self._segment(conn, old.first, old.last, newest)
            segments[at : at + 1] = [rebuilt] if rebuilt else []
        if top > manifest.through:
            new = self._segment(conn, manifest.through, top, newest)
            segments += [new] if new else []
        while len(segments) > 1 and segments[-2].rows <= MERGE_RATIO * segments[-1].rows:
            newer, older = segments.pop(), segments.pop()
            merged = self._segment(conn, older.first, newer.last, newest)
            segments += [merged] if merged else []
        through = max(top, manifest.through)
        self.directory.publish(
            Manifest(manifest.generation + 1, through, tuple(segments), self.store_id)
        )
        log.info(
            "index %s: %d segments, %d rows, through %d",
            self.family.name,
            len(segments),
            sum(s.rows for s in segments),
            through,
        )

    def _segment(
        self, conn: sqlite3.Connection, first: int, last: int, tombstones: int
    ) -> SegmentInfo | None:
        """A segment of the rows with keys in (first, last], written; None if there are none."""
        arrays = self.family.build(lambda: self.family.chunks(conn, first, last))
        if arrays is None:
            return None
        name = self.directory.write(arrays)
        return SegmentInfo(name, first, last, len(arrays["ids"]), tombstones)

    def _top(self, conn: sqlite3.Connection) -> int:
        key, table = self.family.key, self.family.table
        return conn.execute(f"SELECT coalesce(max({key}), 0) FROM {table}").fetchone()[0]

    def _dead_share(self, conn: sqlite3.Connection, segment: SegmentInfo) -> float:
        key, table = self.family.key, self.family.table
        indexed = f"AND {self.family.indexed}" if self.family.indexed else ""
        live = conn.execute(
            f"SELECT count(*) FROM {table} WHERE {key} > ? AND {key} <= ? {indexed}",
            (segment.first, segment.last),
        ).fetchone()[0]
        return 1.0 - live / segment.rows if segment.rows else 0.0

    def _map(self, conn: sqlite3.Connection, manifest: Manifest) -> bool:
        """Map the manifest's segments, every row alive but those deleted since each segment
        was built; False if a segment needs tombstones that were pruned (it must be rebuilt)."""
        oldest = min((s.tombstones for s in manifest.segments), default=0)
        if tables.pruned_through(conn, self.family.pruned) > oldest:
            return False
        try:
            arrays = [
                self.directory.load(segment, self.family.read) for segment in manifest.segments
            ]
        except FileNotFoundError:  # replaced by a newer build meanwhile: take that one
            self._generation = -1
            return self._map(conn, self._manifest())
        self.index.set_segments(arrays, manifest.through)
        self._generation = manifest.generation
        self._seq = oldest
        return True

    def _manifest(self) -> Manifest:
        manifest = self.directory.manifest()
        return manifest if manifest.store == self.store_id else Manifest()

    def _build_soon(self) -> None:
        """A build in a thread of this process, unless one is running."""
        if self._building is not None and self._building.is_alive():
            return

        def run() -> None:
            try:
                self.build()
            except Exception:  # the tail keeps serving; the next refresh tries again
                log.exception("building index %s failed", self.family.name)

        name = f"match-{self.family.name}-build"
        self._building = threading.Thread(target=run, name=name, daemon=True)
        self._building.start()

    def wait_for_build(self) -> None:
        """Wait for this process's build thread, if one is running (tests and shutdown)."""
        if self._building is not None:
            self._building.join()
