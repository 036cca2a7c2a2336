"""ElasticStore: the Store protocol on Elasticsearch 8/9 and OpenSearch 2/3, over their REST API.

The parts, each in its module: the HTTP client and its error translation (client.py); the one
index, its lifecycle and mapping (index.py, documents.py); writes (writes.py); documents found by
filepath, image-match's included (lookup.py); search and partial-matching candidates (search.py,
bodies.py); listing (listing.py). An index written by image-match or dsys/match stays usable.

Freshness: adds, deletes and metadata updates return once the change is searchable. An add
(and ``add_many``, once at its end) is written without a refresh, then refreshes the index
itself, sharing that refresh with this process's other adds in flight (index.GroupRefresh):
tens of milliseconds, where waiting for the periodic refresh (``refresh=wait_for``, as deletes
and metadata updates still do) cost about ``refresh_interval`` per add. With
ELASTICSEARCH_BULK_REFRESH=true adds return at once and become searchable at the index's next
periodic refresh (within ``refresh_interval``, 1 s by default).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from match.errors import BadParameter, StoreUnavailable
from match.local.terms import probe_terms
from match.pdq import PROBE_FLIPS
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
from match.stores.elastic import bodies, listing, lookup, upgrade
from match.stores.elastic import documents as docs
from match.stores.elastic.client import EngineClient
from match.stores.elastic.hashes import HashStore
from match.stores.elastic.index import Index, IndexSettings
from match.stores.elastic.search import CANDIDATES, MIN_WORDS, Searcher
from match.stores.elastic.writes import Writer
from match.stores.filters import DEFAULT_COLLECTION, Filter, check_collection


class ElasticStore:
    def __init__(
        self,
        client: EngineClient,
        index: str = "images",
        *,
        shards: int = 1,
        replicas: int = 0,
        bulk_refresh: bool = False,
        refresh_interval: str = "1s",
        codec: str = "best_compression",
        candidates: int = CANDIDATES,
        min_words: int = MIN_WORDS,
        algorithm: str = ALGORITHM,
        pdq_flips: int = PROBE_FLIPS,
    ) -> None:
        self.client = client
        self.index = index
        self.candidates = candidates
        self.min_words = min_words
        settings = IndexSettings(shards, replicas, refresh_interval, codec, bulk_refresh)
        self._index = Index(client, index, settings)
        self._writer = Writer(self._index, algorithm)
        self._searcher = Searcher(self._index, candidates, min_words)
        self._hashes = HashStore(self._index, pdq_flips)

    @classmethod
    def from_settings(cls, settings: Settings) -> ElasticStore:
        """A store on ELASTICSEARCH_URL; connects lazily, so the service starts while the engine
        is down and works once it is up."""
        if not settings.elasticsearch_url:
            raise BadParameter("ELASTICSEARCH_URL is not set")
        client = EngineClient(
            settings.elasticsearch_url,
            api_key=settings.elasticsearch_api_key,
            ca_bundle=settings.elasticsearch_ca_bundle,
            timeout=settings.elasticsearch_timeout,
        )
        return cls(
            client,
            settings.elasticsearch_index,
            shards=settings.elasticsearch_shards,
            replicas=settings.elasticsearch_replicas,
            bulk_refresh=settings.elasticsearch_bulk_refresh,
            refresh_interval=settings.elasticsearch_refresh_interval,
            pdq_flips=settings.match_pdq_probe_radius,
        )

    # -- writes -----------------------------------------------------------------------------
    def add(self, record: ImageRecord) -> None:
        self._writer.add(record)

    def add_many(self, records: Iterable[ImageRecord]) -> BulkResult:
        return self._writer.add_many(records)

    def delete(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> None:
        self._writer.delete(filepath, collection)

    def update_metadata(
        self, filepath: str, metadata: Metadata, *, collection: str = DEFAULT_COLLECTION
    ) -> None:
        self._writer.update_metadata(filepath, metadata, collection)

    def drop_collection(self, collection: str) -> int:
        collection = check_collection(collection)
        dropped = self._writer.delete_all(bodies.scope(collection))
        dropped += self._hashes.delete_all(bodies.scope(collection))
        if dropped == 0 and collection != DEFAULT_COLLECTION:
            raise checks.no_collection(collection)
        return dropped

    # -- reads ------------------------------------------------------------------------------
    def get(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> ImageRecord:
        filepath = checks.check_filepath(filepath)
        collection = check_collection(collection)
        found = self._index.call(lambda: lookup.find(self._index, filepath, collection))
        if found is None:
            raise checks.not_found(filepath, collection)
        return docs.record_of(found["_source"])

    def thumbnail(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> Thumbnail | None:
        filepath = checks.check_filepath(filepath)
        collection = check_collection(collection)
        fields = [docs.THUMBNAIL_FIELD, "width", "height"]
        found = self._index.call(lambda: lookup.find(self._index, filepath, collection, fields))
        if found is None:
            raise checks.not_found(filepath, collection)
        source = found.get("_source") or {}
        image = docs.thumbnail_of(source)
        return None if image is None else Thumbnail(image, docs.size_of(source))

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
        return self._searcher.search(queries, cutoff, offset, limit, collection, where)

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
        query = checks.check_words(words)
        checked_bits = checks.check_query_bits(words, bits)
        terms = None if checked_bits is None else probe_terms(np.asarray(words), checked_bits)
        queries = None if signatures is None else checks.check_queries(signatures)
        limit = checks.non_negative(limit, "limit")
        collection = check_collection(collection)
        return self._searcher.local_candidates(query, terms, limit, queries, collection, where)

    def count(self, *, collection: str = DEFAULT_COLLECTION, where: Filter | None = None) -> int:
        clauses = bodies.scope(check_collection(collection), where)
        body = {"query": {"bool": {"filter": clauses}}}
        _, found = self._index.call(lambda: self._index.request("POST", "/_count", body=body))
        return int(found["count"])

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
        clauses = bodies.scope(check_collection(collection), where)
        if limit == 0:
            return []
        return self._index.call(lambda: listing.list_paths(self._index, offset, limit, clauses))

    def scan(
        self,
        *,
        collection: str = DEFAULT_COLLECTION,
        where: Filter | None = None,
        since: Since | None = None,
        batch: int = 200,
    ) -> Iterator[ImageRecord]:
        clauses = bodies.scope(check_collection(collection), where)
        clauses += listing.since_clauses(since)
        return listing.scan(self._index, clauses, min(max(1, int(batch)), lookup.MAX_WINDOW))

    def collections(self) -> list[tuple[str, int]]:
        body = {
            "size": 0,
            "aggs": {
                "named": {"terms": {"field": docs.COLLECTION_FIELD, "size": 10_000}},
                "unnamed": {"missing": {"field": docs.COLLECTION_FIELD}},
            },
        }
        _, found = self._index.call(lambda: self._index.request("POST", "/_search", body=body))
        aggregations = found["aggregations"]
        counts = {b["key"]: int(b["doc_count"]) for b in aggregations["named"]["buckets"]}
        # documents written before collections (or by image-match) are in the default one
        unnamed = int(aggregations["unnamed"]["doc_count"])
        counts[DEFAULT_COLLECTION] = counts.get(DEFAULT_COLLECTION, 0) + unnamed
        return sorted(counts.items())

    # -- hash-only records and PDQ lookups (hashes.py) ---------------------------------------
    def add_hashes(self, records: Iterable[HashRecord]) -> BulkResult:
        return self._hashes.add(list(records))

    def hashes(
        self, offset: int = 0, limit: int = 1000, *, collection: str = DEFAULT_COLLECTION
    ) -> list[HashRecord]:
        offset = checks.non_negative(offset, "offset")
        limit = checks.non_negative(limit, "limit")
        return self._hashes.page(offset, limit, check_collection(collection)) if limit else []

    def delete_hash(self, filepath: str, *, collection: str = DEFAULT_COLLECTION) -> None:
        filepath = checks.check_filepath(filepath)
        self._hashes.delete(filepath, check_collection(collection))

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
        found = self._index.call(
            lambda: self._hashes.lookup(asked, where, images=images, hash_only=hash_only)
        )
        return found[: asked.limit]

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
        if not asked.hashes:
            return []
        found = self._index.call(
            lambda: self._hashes.lookup_each(asked, where, images=images, hash_only=hash_only)
        )
        return [hits[: asked.limit] for hits in found]

    def prepare(self) -> None:
        """The index created (or given Match's fields) now rather than on the first request."""
        self._index.call(lambda: None)

    def ping(self) -> None:
        self._index.call(lambda: self._index.request("GET", "/_count"))

    def readiness(self, min_free_bytes: int = 0) -> list[str]:
        # the engine watches its own disks: min_free_bytes is the embedded store's
        try:
            self.ping()
            return self._index.problems()
        except StoreUnavailable as error:
            return [error.message]

    def check(self, *, repair: bool = False) -> Integrity:
        """The index is there, mapped as Match needs and takes writes; with ``repair``, an
        index deleted while in use is created anew, empty (its records are gone). Documents of
        an earlier Match without terms are noted; ``repair`` gives them their terms
        (upgrade.py)."""
        problems = self.readiness()
        if repair and any("was deleted while in use" in p for p in problems):
            self._index.recreate()
            return Integrity(problems, [f"{self._index.name}: created anew, empty"])
        if problems:
            return Integrity(problems, damaged=True)
        termless = self._index.call(lambda: upgrade.count_termless(self._index))
        if not termless:
            return Integrity()
        note = (
            f"{self._index.name}: {termless} documents of an earlier Match have no terms, so "
            "partial matching ranks every document by its visual words"
        )
        if not repair:
            return Integrity(notes=[f"{note}; match check --repair gives them their terms"])
        given = self._index.call(lambda: upgrade.add_terms(self._index))
        self._searcher.forget_termless()
        return Integrity(notes=[note], repaired=[f"{given} documents given their terms"])

    def close(self) -> None:
        self.client.close()
