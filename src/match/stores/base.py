"""The store interface: one protocol, one package per engine (sqlite/, elastic/), each with
a façade class over parts with one job each; checks.py holds the record checks they share.

A store keeps one record per unique filepath: its signature, the algorithm that made it,
optional JSON metadata and, for partial matching, the image's local features (match.local).
Stores translate their engine's errors into ``match.errors`` in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from match.local import LocalFeatures
from match.signature import ALGORITHM
from match.stores.filters import DEFAULT_COLLECTION, Filter

Metadata = dict[str, Any] | None


Size = tuple[int, int]  # (width, height) in pixels of the image as it was given


@dataclass(frozen=True)
class ImageRecord:
    """What is stored for one image, under its filepath in one collection."""

    filepath: str
    signature: np.ndarray  # int8, shape (648,)
    metadata: Metadata = None
    algorithm: str = ALGORITHM
    local: LocalFeatures | None = None  # None: found by the global signature only
    collection: str = DEFAULT_COLLECTION
    size: Size | None = None  # None: not known (records of image-match or of older versions)
    added: float | None = None  # when it was stored (Unix seconds), as the store reads it back
    pdq: bytes | None = None  # the image's PDQ hash (32 bytes, match.pdq); None: not computed
    pdq_quality: int | None = None  # its quality, 0-100
    # a small WebP of the image for the web page (service/thumbnails.py); None: none stored.
    # Written by add, read by Store.thumbnail (get does not read it back)
    thumbnail: bytes | None = None
    # its insertion sequence, as the store reads it back (the embedded store's row id, the
    # engines' seq: the writer's clock in nanoseconds); None: not known (image-match's records)
    seq: int | None = None


@dataclass(frozen=True)
class Thumbnail:
    """A stored image's thumbnail (WebP bytes) and the size of the image it shows, in pixels as
    the image was given (None: not known), to scale outlines onto it."""

    image: bytes
    size: Size | None = None


@dataclass(frozen=True)
class Since:
    """Records added after a point: at or after ``time`` (Unix seconds), and with an insertion
    sequence above ``seq`` (ImageRecord.seq); None: no bound of that kind."""

    time: float | None = None
    seq: int | None = None


@dataclass(frozen=True)
class HashRecord:
    """A hash-only record: a PDQ hash from a hash list, with no image, under its filepath in
    one collection (a key space of its own, apart from the images')."""

    filepath: str
    pdq: bytes  # 32 bytes, PDQ's hex order (match.pdq)
    quality: int | None = None  # None: the list did not say
    metadata: Metadata = None
    collection: str = DEFAULT_COLLECTION
    added: float | None = None


@dataclass(frozen=True)
class PdqHit:
    """A stored PDQ hash near a query's: an image's (``hash_only`` False) or a hash-only
    record's, its Hamming distance to the closest query hash and which one that is
    (orientation index)."""

    filepath: str
    distance: int
    quality: int | None
    metadata: Metadata = None
    hash_only: bool = False
    orientation: int = 0
    size: Size | None = None
    pdq: bytes = b""


@dataclass(frozen=True)
class Hit:
    """One search result: a stored image, its distance to the query, and which query
    signature (orientation index) matched it best."""

    filepath: str
    distance: float
    metadata: Metadata = None
    orientation: int = 0
    size: Size | None = None
    pdq: bytes | None = None  # the stored image's PDQ hash and quality, when it has one
    pdq_quality: int | None = None


@dataclass(frozen=True)
class LocalCandidate:
    """A stored image that shares visual words with a query: what verification needs, and its
    signature's distance to the query, read from the same version of the record, so both
    methods score one version of it (a search racing a replacement never mixes two)."""

    filepath: str
    local: LocalFeatures
    metadata: Metadata = None
    distance: float | None = None  # to the closest query signature; None: not asked, unreadable
    orientation: int = 0  # which query signature (orientation index) that is
    size: Size | None = None
    pdq: bytes | None = None
    pdq_quality: int | None = None


@dataclass(frozen=True)
class BulkResult:
    """Outcome of add_many: how many were stored, and each failed filepath with its reason."""

    added: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


PROGRESS = logging.getLogger("match.stores.progress")
"""Where a long store operation (a repair) says how far it has got, at INFO: the CLI shows it."""


@dataclass(frozen=True)
class Integrity:
    """What a store's full check found (a line per problem, empty when none) and, when asked
    to repair, what was done; ``damaged``: the store still refuses to answer; ``notes``: what
    the check found that is not damage (and what a repair would do about it)."""

    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)
    damaged: bool = False
    notes: list[str] = field(default_factory=list)


class Store(Protocol):
    """Every operation acts on one collection (``default`` unless named); ``where`` is a
    metadata filter (stores/filters.py), applied inside the engine's own search, never after
    a top-k cut."""

    def add(self, record: ImageRecord) -> None:
        """Store a record in its collection, atomically replacing any record with the same
        filepath there. Once this returns, the record is durable and found by the next search
        from any worker."""

    def add_many(self, records: Iterable[ImageRecord]) -> BulkResult:
        """Store many records efficiently; reports each failure, never drops one silently."""

    def get(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> ImageRecord:
        """The record stored under filepath; NotFound naming it otherwise."""

    def delete(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> None:
        """Delete exactly that filepath; NotFound naming it if it is not stored."""

    def update_metadata(
        self, filepath: str, metadata: Metadata, *, collection: str = DEFAULT_COLLECTION
    ) -> None:
        """Replace a record's metadata; NotFound if absent."""

    def thumbnail(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> Thumbnail | None:
        """The thumbnail stored with a record; None if it was stored without one; NotFound
        naming it if it is not stored."""

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
        """Stored images whose distance to any row of ``signatures`` ((k, 648) int8) is under
        ``cutoff``; each image once with its best row; best first, then filepath; paginated."""

    def local_candidates(
        self,
        words: np.ndarray,
        limit: int,
        *,
        bits: np.ndarray | None = None,
        signatures: np.ndarray | None = None,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
    ) -> Sequence[LocalCandidate]:
        """Up to ``limit`` stored images sharing the most visual words with ``words`` (a query's
        (n,) uint32 words), each shared word weighted by its rarity in the store (tf-idf or
        BM25), best first; with the query's ``signatures`` ((k, 648)), each candidate carries its
        distance to the closest of them. Images stored without local features are never
        candidates. A store may index terms (match.local.terms: a word and some of its
        keypoint's Hamming ``bits``, (n,) uint64, one for each word) and look up those near the
        query's; without ``bits`` it looks up every term of each word."""

    def count(self, *, collection: str = DEFAULT_COLLECTION, where: Filter | None = None) -> int:
        """Exact number of stored images."""

    def list(
        self,
        offset: int = 0,
        limit: int = 20,
        *,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
    ) -> list[str]:
        """Filepaths in insertion order (a replaced filepath moves to the end)."""

    def scan(
        self,
        *,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
        since: Since | None = None,
        batch: int = 200,
    ) -> Iterator[ImageRecord]:
        """Every record in scope, whole (signature, local features, size, metadata, added,
        seq), in insertion order, read ``batch`` at a time (each batch in one read: a long scan
        holds no snapshot open); with ``since``, only the records added after it."""

    def collections(self) -> list[tuple[str, int]]:
        """Every collection holding records, with its count, by name (``default`` always)."""

    def drop_collection(self, collection: str) -> int:
        """Delete every record of a collection; how many were deleted (NotFound if it holds
        none: a collection exists while it holds records; ``default`` always exists)."""

    def add_hashes(self, records: Iterable[HashRecord]) -> BulkResult:
        """Store hash-only records (replacing any under the same filepath and collection) in
        batches; reports each failure, never drops one silently."""

    def hashes(
        self, offset: int = 0, limit: int = 1000, *, collection: str = DEFAULT_COLLECTION
    ) -> list[HashRecord]:
        """Hash-only records in insertion order, paginated."""

    def delete_hash(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> None:
        """Delete a hash-only record; NotFound naming it if it is not stored."""

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
    ) -> Sequence[PdqHit]:
        """Stored PDQ hashes (of images, of hash-only records, or both) within
        ``max_distance`` bits of any of ``hashes`` (32 bytes each, in ORIENTATIONS order), each
        record once with its closest query hash, nearest first then filepath. Candidates are
        the records sharing a multi-index term with a query hash (match.pdq.terms), re-ranked
        exactly."""

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
        """``pdq_search`` of each of ``hashes`` on its own (a hash list checked at once): one
        list of hits per hash, in their order, each with orientation 0."""

    def prepare(self) -> None:
        """Make the store ready to serve: its indexes built and loaded (run at start)."""

    def ping(self) -> None:
        """Raise StoreUnavailable if the store cannot answer."""

    def readiness(self, min_free_bytes: int = 0) -> list[str]:
        """What keeps the store from serving reads and writes now (empty: ready): it cannot be
        reached, it is damaged, it refuses a write, its disk is (nearly) full."""

    def check(self, *, repair: bool = False) -> Integrity:
        """The full check of the store (slow: it reads everything); with ``repair``, rebuild
        what can be rebuilt from the records, and clear the damage flag once it is sound."""

    def close(self) -> None:
        """Release connections and files."""
