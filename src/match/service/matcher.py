"""Matcher: what the HTTP app (both API flavours) and the CLI call. It owns the settings and the
store; images become queries in analysis.py, the methods and their merge live in methods.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from match import pdq
from match.service import methods
from match.service.analysis import Analyser, Query
from match.service.results import SCORE_TOLERANCE, Comparison, Match, Metadata, is_match
from match.settings import Settings
from match.stores import BulkResult, HashRecord, ImageRecord, Store, Thumbnail, open_store
from match.stores.base import Integrity
from match.stores.checks import check_new_filepath
from match.stores.filters import DEFAULT_COLLECTION, Filter, check_collection


class Matcher:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        # one BLAS thread for the whole process: a request runs on one thread and a server
        # scales by worker processes. OpenBLAS's own threads spin for a while after every
        # product, and so took two thirds of a search's CPU (bench/stages.py, 300 photos).
        threadpool_limits(limits=1, user_api="blas")
        self.settings = settings
        self.analyser = Analyser(settings)
        self._store = store

    @property
    def store(self) -> Store:
        """The store, opened on first use (signature-only work never touches it)."""
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    # -- what is stored and searched with ----------------------------------------------------
    def record(
        self,
        filepath: str,
        image: bytes,
        metadata: Metadata = None,
        *,
        collection: str = DEFAULT_COLLECTION,
    ) -> ImageRecord:
        """The record to store for encoded image bytes: signature and, if on, local features."""
        filepath = check_new_filepath(filepath, self.settings.match_max_filepath_bytes)
        collection = check_collection(collection)
        return self.analyser.record(filepath, image, metadata, collection)

    def query(self, image: bytes, all_orientations: bool, *, name: str = "image") -> Query:
        """Search input for encoded image bytes, decoded once for both methods."""
        return self.analyser.query(image, all_orientations, name=name)

    def stored_query(
        self, filepath: str, all_orientations: bool, *, collection: str = DEFAULT_COLLECTION
    ) -> Query:
        """Search input from an already stored image."""
        record = self.store.get(filepath, collection=collection)
        return self.analyser.stored_query(record, all_orientations)

    def signature(self, image: bytes, *, name: str = "image") -> np.ndarray:
        """The upright signature of encoded image bytes; BlankImage if it is featureless."""
        return self.analyser.query(image, False, name=name, features=False).signatures[0]

    # -- operations -------------------------------------------------------------------------
    def add(
        self,
        filepath: str,
        image: bytes,
        metadata: Metadata = None,
        *,
        collection: str = DEFAULT_COLLECTION,
    ) -> ImageRecord:
        """Store the image's record; returns it (its PDQ hash included)."""
        record = self.record(filepath, image, metadata, collection=collection)
        self.store.add(record)
        return record

    def add_many(self, records: Iterable[ImageRecord]) -> BulkResult:
        return self.store.add_many(records)

    def search(
        self,
        query: Query,
        *,
        min_score: float = 0.0,
        limit: int = 100,
        offset: int = 0,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
        min_overlap: float = 0.0,
        pdq_rule: methods.PdqRule | None = None,
    ) -> list[Match]:
        """Every method's matches in one collection (and metadata filter), each stored record
        once with its best score, best first. A partial match counts only if the query covers
        at least ``min_overlap`` percent of the stored image (a whole-image match covers 100).
        With PDQ on, hash-only records match by the query's PDQ hashes (``pdq_rule``, the
        settings' by default)."""
        cutoff = self.settings.match_distance_cutoff
        # min_score is inclusive but the store's cutoff is strict: narrow it by a hair less, so
        # a score equal to min_score survives float rounding; is_match below is exact.
        store_cutoff = min(cutoff, 1.0 - min_score / 100.0 + 1e-9) if min_score > 0 else cutoff
        scope = methods.Scope(collection, where)
        found = methods.signature_matches(self.store, query, store_cutoff, offset + limit, scope)
        if self.settings.match_partial_matching:
            found += methods.local_matches(
                self.store, query, scope, min_overlap, cutoff=cutoff, min_score=min_score
            )
        if self.settings.match_pdq and query.pdq:
            rule = pdq_rule or self.pdq_rule()
            found += methods.pdq_matches(
                self.store, query.pdq, query.pdq_quality, offset + limit, rule, scope, images=False
            )
        ranked = [m for m in methods.merge(found, cutoff) if is_match(m.score, cutoff, min_score)]
        return ranked[offset : offset + limit]

    # -- PDQ hashes and hash-only records ---------------------------------------------------
    def pdq_rule(
        self, max_distance: int | None = None, allow_low_quality: bool = False
    ) -> methods.PdqRule:
        """The PDQ match rule of the settings, with a search's own distance and choice."""
        return methods.PdqRule(
            pdq.MATCH_DISTANCE if max_distance is None else max_distance,
            self.settings.match_pdq_min_quality,
            allow_low_quality,
        )

    def search_pdq(
        self,
        hashes: Sequence[bytes],
        *,
        rule: methods.PdqRule | None = None,
        min_score: float = 0.0,
        limit: int = 100,
        offset: int = 0,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
    ) -> list[Match]:
        """Every stored record (images and hash-only records) whose PDQ hash lies within the
        rule's distance of one of ``hashes``, nearest first. The rule's distance, not the
        score floor, decides (a distance above 31 scores under the default floor)."""
        rule = rule or self.pdq_rule()
        scope = methods.Scope(collection, where)
        found = methods.pdq_matches(self.store, hashes, None, offset + limit, rule, scope)
        kept = [m for m in found if m.score >= min_score - SCORE_TOLERANCE]
        return kept[offset : offset + limit]

    def search_pdq_batch(
        self,
        hashes: Sequence[bytes],
        *,
        rule: methods.PdqRule | None = None,
        min_score: float = 0.0,
        limit: int = 100,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
    ) -> list[list[Match]]:
        """``search_pdq`` of each of ``hashes`` on its own (a hash list checked at once): one
        list of matches per hash, in their order, at most ``limit`` each. The store looks them
        all up together, so a batch costs far less than as many searches."""
        rule = rule or self.pdq_rule()
        scope = methods.Scope(collection, where)
        found = methods.pdq_matches_each(self.store, hashes, limit, rule, scope)
        return [[m for m in each if m.score >= min_score - SCORE_TOLERANCE] for each in found]

    def add_hashes(self, records: Iterable[HashRecord]) -> BulkResult:
        return self.store.add_hashes(records)

    def hashes(
        self, offset: int = 0, limit: int = 1000, *, collection: str = DEFAULT_COLLECTION
    ) -> list[HashRecord]:
        return self.store.hashes(offset, limit, collection=collection)

    def delete_hash(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> None:
        self.store.delete_hash(filepath, collection=collection)

    def compare(self, first: Query, second: Query) -> Comparison:
        """How well ``second`` (its first signature) matches ``first`` by either method."""
        return methods.compare(first, second)

    def is_match(self, score: float, min_score: float = 0.0) -> bool:
        """Whether a score counts as a match (the rule search applies), at least min_score."""
        return is_match(score, self.settings.match_distance_cutoff, min_score)

    def delete(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> None:
        self.store.delete(filepath, collection=collection)

    def update_metadata(
        self, filepath: str, metadata: Metadata, *, collection: str = DEFAULT_COLLECTION
    ) -> None:
        self.store.update_metadata(filepath, metadata, collection=collection)

    def thumbnail(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> Thumbnail | None:
        """The thumbnail stored with an image (None: stored without one); NotFound if the
        filepath is not stored."""
        return self.store.thumbnail(filepath, collection=collection)

    def count(self, *, collection: str = DEFAULT_COLLECTION, where: Filter | None = None) -> int:
        return self.store.count(collection=collection, where=where)

    def list(
        self,
        offset: int = 0,
        limit: int = 20,
        *,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
    ) -> list[str]:
        return self.store.list(offset=offset, limit=limit, collection=collection, where=where)

    def collections(self) -> list[tuple[str, int]]:
        return self.store.collections()

    def drop_collection(self, collection: str) -> int:
        return self.store.drop_collection(collection)

    def ping(self) -> None:
        self.store.ping()

    def readiness(self) -> list[str]:
        """What keeps the service from serving now (empty: ready)."""
        return self.store.readiness(self.settings.match_min_free_mb * 1024 * 1024)

    def check(self, *, repair: bool = False) -> Integrity:
        return self.store.check(repair=repair)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
