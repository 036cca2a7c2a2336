"""PDQ on Elasticsearch/OpenSearch: hash-only records in an index of their own (``<index>-hashes``,
created on first write, so an index that never held one costs nothing), and lookups across it
and the images' index by multi-index term (documents.pdq_terms) with an exact Hamming re-rank.

A lookup is one _search on both indexes: a ``bool`` of one constant-score ``term`` clause per
query term (2 points each) and, per term position, one ``terms`` clause of the one-bit
neighbours of the query's terms there (1 point each). A document holds one term a position, so
it scores 2e + n for e exact and n neighbouring terms; the best PDQ_CANDIDATES are re-ranked
here by exact Hamming distance. The score bounds the distance: every other position differs by
at least 2 bits, so d >= 32 - (2e + n), and a record within 29 bits scores 3 or more, which a
random hash almost never does (at 10M records about 10 do; ~2,500 score 2, ~39,000 score 1).
So the cut keeps every record within 29 bits while fewer than PDQ_CANDIDATES score 3 or more,
and most at 30 or 31 (docs/pdq.md measures it). In a large index the 1-2 point tier alone
overflows the cut, which would then keep an arbitrary part of it: lookups there ask for 3
points at least (``min_score``), and fetch a few documents instead of PDQ_CANDIDATES.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from match import pdq
from match.errors import MatchError
from match.pdq.codec import as_words
from match.stores import checks
from match.stores.base import BulkResult, HashRecord, PdqHit
from match.stores.checks import PdqLookup
from match.stores.elastic import bodies
from match.stores.elastic import documents as docs
from match.stores.elastic.client import EngineError
from match.stores.elastic.index import Index
from match.stores.elastic.search import raise_search_error
from match.stores.filters import Filter

PDQ_CANDIDATES = 2000
"""Documents re-ranked per lookup (the ones sharing the most terms with the query)."""
BULK = 5000
"""Hash-only records per _bulk request."""
MAX_WINDOW = 10_000
_SOURCE = ["path", "metadata", "pdq", "pdq_quality", "width", "height"]
_ANY_INDEX = {"ignore_unavailable": "true", "allow_no_indices": "true"}  # no hashes yet
MSEARCH = 200
"""Lookups per _msearch of a batch (each answers up to PDQ_CANDIDATES documents)."""
NEAR_SCORE = 3
"""The least score of a record within 29 bits of a query (d >= 32 - score)."""
PROBE_SHARE = 16 * (1 + pdq.TERM_BITS) / 2**pdq.TERM_BITS
"""The chance that a random record holds one of a query hash's 272 probe terms: the share of
an index in a lookup's 1-2 point tier (about 1 in 241)."""
COUNT_SECONDS = 300.0
"""How long a process trusts its count of the indexes' records (only its order of size
matters)."""


def hash_mapping() -> dict[str, Any]:
    return {
        "dynamic": "strict",
        "properties": {
            "path": {"type": "keyword"},
            "metadata": {"type": "object", "enabled": False},
            "timestamp": {"type": "date"},
            "seq": {"type": "long"},
            **docs.collection_fields(),
            **docs.pdq_fields(),
        },
    }


class HashStore:
    """The hash-only records beside one images index."""

    def __init__(self, images: Index, flips: int = pdq.PROBE_FLIPS) -> None:
        self.images = images
        self.flips = flips  # the probing radius (match.pdq.terms)
        self.candidates = PDQ_CANDIDATES
        self._counted: dict[str, tuple[float, int]] = {}  # indexes -> (when, records)
        self.name = f"{images.name}-hashes"
        self._ready = False
        self._seq = docs.SeqClock()

    def add(self, records: list[HashRecord]) -> BulkResult:
        added, failed = 0, []
        checked = []
        for record in records:
            try:
                checked.append(checks.check_hash_record(record))
            except MatchError as error:
                failed.append((checks.record_name(record), error.message))
        self._create()
        for start in range(0, len(checked), BULK):
            chunk = checked[start : start + BULK]
            final = start + BULK >= len(checked)
            first = self._seq.take(len(chunk))
            lines: list[Any] = []
            for n, record in enumerate(chunk):
                lines.append({"index": {"_id": docs.doc_id(record.filepath, record.collection)}})
                lines.append(self._document(record, first + n))
            _, body = self._request(
                "POST",
                "/_bulk",
                lines=lines,
                params={"refresh": self.images.refresh_param(final)},
            )
            for record, item in zip(chunk, body["items"], strict=True):
                result = item["index"]
                if result.get("status", 500) < 300:
                    added += 1
                else:
                    reason = (result.get("error") or {}).get("reason", "refused")
                    failed.append((record.filepath, f"The engine refused it: {reason}"))
        return BulkResult(added, failed)

    def page(self, offset: int, limit: int, collection: str) -> list[HashRecord]:
        """Records in insertion order (by seq), walked by search_after past the window."""
        query = {"bool": {"filter": bodies.scope(collection)}}
        records: list[HashRecord] = []
        after: list[Any] | None = None
        skip = offset
        while len(records) < limit:
            size = min(MAX_WINDOW, skip if skip else limit - len(records))
            body: dict[str, Any] = {
                "size": size,
                "sort": [{"seq": "asc"}],
                "query": query,
                "track_total_hits": False,
            }
            if after is not None:
                body["search_after"] = after
            status, found = self._request("POST", "/_search", body=body, allow=(404,))
            hits = [] if status == 404 else found["hits"]["hits"]
            if not hits:
                break
            after = hits[-1]["sort"]
            if skip:
                skip -= len(hits)
                continue
            records += [self._record(hit["_source"], collection) for hit in hits]
        return records

    def delete(self, filepath: str, collection: str) -> None:
        status, _ = self._request(
            "DELETE",
            f"/_doc/{docs.doc_id(filepath, collection)}",
            params={"refresh": self.images.refresh_param()},
            allow=(404,),
        )
        if status == 404:
            raise checks.hash_not_found(filepath, collection)

    def delete_all(self, clauses: bodies.Scope) -> int:
        """Delete every record in scope, a page of ids at a time (the engines' test
        distributions have no _delete_by_query)."""
        deleted = 0
        query = {"size": MAX_WINDOW, "query": {"bool": {"filter": clauses}}, "_source": False}
        while True:
            status, found = self._request("POST", "/_search", body=query, allow=(404,))
            ids = [] if status == 404 else [hit["_id"] for hit in found["hits"]["hits"]]
            if not ids:
                return deleted
            _, body = self._request(
                "POST",
                "/_bulk",
                lines=[{"delete": {"_id": i}} for i in ids],
                params={"refresh": "wait_for"},
            )
            deleted += sum(1 for item in body["items"] if item["delete"].get("status") == 200)

    def lookup(
        self, asked: PdqLookup, where: Filter | None, *, images: bool, hash_only: bool
    ) -> list[PdqHit]:
        """The records within ``asked.max_distance`` of the nearest of ``asked.hashes``."""
        names = self._names(images, hash_only)
        if not names:
            return []
        body = self._body(asked.hashes, asked.collection, where, self._records(names))
        _, found = self.images.client.request(
            "POST", f"/{','.join(names)}/_search", body=body, params=_ANY_INDEX
        )
        return self._ranked(asked.hashes, found["hits"]["hits"], asked.max_distance)

    def lookup_each(
        self, asked: PdqLookup, where: Filter | None, *, images: bool, hash_only: bool
    ) -> list[list[PdqHit]]:
        """``lookup`` of each query hash on its own, in one _msearch a few hundred at a time."""
        names = self._names(images, hash_only)
        if not names:
            return [[] for _ in asked.hashes]
        found: list[list[PdqHit]] = []
        queries, collection = asked.hashes, asked.collection
        header = {"index": ",".join(names), **_ANY_INDEX}
        records = self._records(names)
        for start in range(0, len(queries), MSEARCH):
            chunk = queries[start : start + MSEARCH]
            lines: list[Any] = []
            for packed in chunk:
                lines += [header, self._body([packed], collection, where, records)]
            _, body = self.images.client.request("POST", "/_msearch", lines=lines)
            for packed, response in zip(chunk, body["responses"], strict=True):
                if "error" in response:
                    raise_search_error(response)
                found.append(self._ranked([packed], response["hits"]["hits"], asked.max_distance))
        return found

    def _names(self, images: bool, hash_only: bool) -> list[str]:
        return ([self.images.ready()] if images else []) + ([self.name] if hash_only else [])

    def _records(self, names: list[str]) -> int:
        """The records of these indexes, counted at most every COUNT_SECONDS."""
        key = ",".join(names)
        when, records = self._counted.get(key, (-COUNT_SECONDS, 0))
        if time.monotonic() - when >= COUNT_SECONDS:
            _, found = self.images.client.request("GET", f"/{key}/_count", params=_ANY_INDEX)
            records = int(found["count"])
            self._counted[key] = (time.monotonic(), records)
        return records

    def _body(
        self, queries: Sequence[bytes], collection: str, where: Filter | None, records: int
    ) -> dict[str, Any]:
        exact = sorted({t for packed in queries for t in docs.pdq_terms(packed)})
        should: list[dict[str, Any]] = [
            {"constant_score": {"filter": {"term": {docs.PDQ_TERMS_FIELD: term}}, "boost": 2}}
            for term in exact
        ]
        if self.flips:  # the one-bit neighbours: a clause a position, so that each one counts
            should += [
                {"constant_score": {"filter": {"terms": {docs.PDQ_TERMS_FIELD: near}}, "boost": 1}}
                for near in _neighbours_by_position(queries, set(exact))
            ]
        body = {
            "size": self.candidates,
            "_source": _SOURCE,
            "track_total_hits": False,
            "query": {
                "bool": {
                    "should": should,
                    "minimum_should_match": 1,
                    "filter": bodies.scope(collection, where),
                }
            },
        }
        if self.flips and len(queries) * records * PROBE_SHARE > self.candidates:
            body["min_score"] = NEAR_SCORE  # the low tier would overflow the cut anyway
        return body

    def _ranked(
        self, queries: Sequence[bytes], found: list[dict[str, Any]], max_distance: int
    ) -> list[PdqHit]:
        """The candidates within ``max_distance`` of their nearest query, nearest first."""
        hits = [h for h in found if docs.pdq_of(h["_source"])[0] is not None]
        if not hits:
            return []
        stored = [docs.pdq_of(h["_source"]) for h in hits]
        distances = pdq.distances(as_words(list(queries)), as_words([s[0] for s in stored]))
        best = distances.argmin(axis=0)
        nearest = distances[best, np.arange(len(hits))]
        found_hits = []
        for i in np.flatnonzero(nearest <= max_distance):
            source = hits[i]["_source"]
            packed, quality = stored[i]
            assert packed is not None
            found_hits.append(
                PdqHit(
                    source["path"],
                    int(nearest[i]),
                    quality,
                    source.get("metadata"),
                    hits[i]["_index"] == self.name,
                    int(best[i]),
                    docs.size_of(source),
                    packed,
                )
            )
        found_hits.sort(key=lambda hit: (hit.distance, hit.filepath, hit.hash_only))
        return found_hits

    # -- helpers ----------------------------------------------------------------------------
    def _document(self, record: HashRecord, seq: int) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": record.filepath, "collection": record.collection}
        if record.metadata is not None:
            doc["metadata"] = record.metadata
            terms = docs.filter_terms(record.metadata)
            if terms:
                doc[docs.FILTER_FIELD] = terms
        doc["timestamp"] = datetime.now(UTC).isoformat()
        doc["seq"] = seq
        doc.update(docs.pdq_source(record.pdq, record.quality))
        return doc

    @staticmethod
    def _record(source: dict[str, Any], collection: str) -> HashRecord:
        packed, quality = docs.pdq_of(source)
        assert packed is not None
        added = source.get("timestamp")
        seconds = datetime.fromisoformat(added).timestamp() if isinstance(added, str) else None
        return HashRecord(
            source["path"], packed, quality, source.get("metadata"), collection, seconds
        )

    def _create(self) -> None:
        if self._ready:
            return
        status, _ = self._request("HEAD", "", allow=(404,))
        if status == 404:
            s = self.images.settings
            body = {
                "settings": {
                    "index": {
                        "number_of_shards": s.shards,
                        "number_of_replicas": s.replicas,
                        "refresh_interval": s.refresh_interval,
                    }
                },
                "mappings": hash_mapping(),
            }
            try:
                self._request("PUT", "", body=body)
            except EngineError as error:
                if error.kind != "resource_already_exists_exception":  # another worker won
                    raise
        self._ready = True

    def _request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        return self.images.client.request(method, f"/{self.name}{path}", **kwargs)


def _neighbours_by_position(queries: Sequence[bytes], exact: set[str]) -> list[list[str]]:
    """The one-bit neighbours of the query terms, a sorted list per term position (those that
    are not themselves a query term)."""
    positions: dict[int, set[str]] = {}
    for term in pdq.candidate_terms(list(queries), 1):
        keyword = docs.term_keyword(term)
        if keyword not in exact:
            positions.setdefault(term >> pdq.TERM_BITS, set()).add(keyword)
    return [sorted(positions[p]) for p in sorted(positions)]
