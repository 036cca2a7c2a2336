"""Searching the index: signature candidates ranked exactly here, and partial-matching candidates.

Signature search asks the engine for candidates sharing a 16-value word with each query
signature (all orientations in one ``_msearch``), reading their signatures from a packed binary
doc-values field (no stored fields: decompressing _source or even _id blocks cost more than the
query), ranks them by exact distance here and fetches the metadata of the returned page only.

Partial matching: an image's distinct terms (match.local.terms: a visual word and 6 Hamming
bits) are the tokens of one text field and its distinct words of another, so
``local_candidates`` is one BM25 ``match`` query, on the query's terms (on its words when it has
no bits, or when the index holds documents of an earlier Match, which have no terms), whose hits
carry their packed local features in a doc value (candidate.py; documents written before it
are read from _source by a second request); its most frequent tokens are left out when all
would read more than a budget of postings (frequencies.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import numpy as np

from match.errors import BadParameter, StoreUnavailable
from match.local.terms import TERM_BITS
from match.signature import ALGORITHM, SIGNATURE_LENGTH
from match.stores.base import Hit, LocalCandidate
from match.stores.elastic import bodies, lookup
from match.stores.elastic import documents as docs
from match.stores.elastic.client import IndexMissing
from match.stores.elastic.frequencies import MAX_AGE, TERMS_BUDGET, Frequencies
from match.stores.elastic.index import Index
from match.stores.filters import DEFAULT_COLLECTION, Filter
from match.stores.ranking import closest, rarest_within, with_distances

log = logging.getLogger(__name__)

CANDIDATES = 100  # candidates per query signature (image-match's size)
MIN_WORDS = 1  # words a candidate shares with a query signature at least (image-match: 1)
MAX_QUERY_WORDS = 1000
"""Distinct words a partial-matching query may have (an image has at most 500): OpenSearch 3
counts every clause of a query against its limit of 1024, the collection and filter included."""

Candidates = dict[str, tuple[str, int | None] | None]
"""{filepath: (packed signature, insertion sequence), or None for image-match's documents}"""


class Searcher:
    def __init__(self, index: Index, candidates: int, min_words: int) -> None:
        self.index = index
        self.candidates = candidates
        self.min_words = min_words
        self.frequencies = Frequencies(index)
        self._termless: tuple[bool, float] | None = None  # (any document without terms, when)

    def search(
        self,
        queries: np.ndarray,
        cutoff: float,
        offset: int,
        limit: int,
        collection: str,
        where: Filter | None,
    ) -> list[Hit]:
        live = [i for i, row in enumerate(queries) if np.any(row)]  # blank rows match nothing
        if limit == 0 or not live:
            return []
        size = min(lookup.MAX_WINDOW, max(self.candidates, offset + limit))
        window = (size, offset, limit)
        return self.index.call(
            lambda: self._search(queries, live, cutoff, window, collection, where)
        )

    def local_candidates(
        self,
        words: np.ndarray,
        terms: np.ndarray | None,
        limit: int,
        signatures: np.ndarray | None,
        collection: str,
        where: Filter | None,
    ) -> list[LocalCandidate]:
        """The candidates by the query's ``terms`` (match.local.terms) when it has them and
        every document in the index has terms, else by its distinct ``words``."""
        for tokens in (words,) if terms is None else (words, terms):
            if len(tokens) > MAX_QUERY_WORDS:
                raise BadParameter(
                    f"A query has at most {MAX_QUERY_WORDS} distinct visual words (or terms), "
                    f"not {len(tokens)}"
                )
        if limit == 0 or len(words) == 0:
            return []
        clauses = bodies.scope(collection, where)
        size = min(limit, lookup.MAX_WINDOW)
        hits = self.index.call(lambda: self._local_hits(words, terms, size, clauses))
        if signatures is None:
            return [candidate for candidate, _ in hits]
        readable = [
            (candidate, signature) for candidate, signature in hits if signature is not None
        ]
        scored = {}
        if readable:
            stored = np.stack([signature for _, signature in readable])
            scored = {
                c.filepath: c for c in with_distances([c for c, _ in readable], signatures, stored)
            }
        return [scored.get(candidate.filepath, candidate) for candidate, _ in hits]

    def _local_hits(
        self, words: np.ndarray, terms: np.ndarray | None, size: int, clauses: bodies.Scope
    ) -> list[bodies.Found]:
        """The candidate query's hits in order; those of documents without a candidate doc
        value (written before it) read from their _source by a second request."""
        path = self.index.path_field
        body = bodies.local_query(self._tokens(words, terms), size, clauses, path)
        _, found = self.index.request("POST", "/_search", body=body)
        hits = bodies.local_hits(found["hits"]["hits"], path)
        older = [hit for hit in hits if isinstance(hit, str)]
        if not older:
            return cast(list[bodies.Found], hits)
        body = bodies.older_local_query(older, clauses, path)
        _, found = self.index.request("POST", "/_search", body=body)
        read = bodies.older_local_hits(found["hits"]["hits"])
        return [
            read[hit] if isinstance(hit, str) else hit
            for hit in hits
            if not isinstance(hit, str) or hit in read
        ]

    def _tokens(self, words: np.ndarray, terms: np.ndarray | None) -> dict[str, np.ndarray]:
        """What the candidate query looks up, within the budget of postings: the terms, or the
        words when the query has no bits or some document has no terms (written by an earlier
        Match: until it is added again, words rank every document alike)."""
        if terms is not None and not self._has_termless():
            return {docs.LOCAL_TERMS_FIELD: self._terms_within_budget(terms)}
        return {docs.LOCAL_WORDS_FIELD: self.frequencies.within_budget(words)}

    def _terms_within_budget(self, terms: np.ndarray) -> np.ndarray:
        """The terms, less the most frequent ones past TERMS_BUDGET. A term's document
        frequency is estimated as its word's over 2^TERM_BITS (the bits split a word's
        keypoints about evenly): the words' counts are cached for every query, while a query's
        terms are mostly new to a cache, and asking the engine for them cost 150-300 ms a search
        at 1M documents."""
        words, of_term = np.unique(terms >> TERM_BITS, return_inverse=True)
        counts = self.frequencies.of(words)
        if counts is None:
            return terms
        return rarest_within(terms, counts[of_term] / 2**TERM_BITS, TERMS_BUDGET)

    def forget_termless(self) -> None:
        """Ask again, on the next query, whether the index holds documents without terms."""
        self._termless = None

    def _has_termless(self) -> bool:
        """Whether the index holds a document with words and no terms (asked once per
        frequencies.MAX_AGE seconds)."""
        now = time.monotonic()
        if self._termless is None or now - self._termless[1] > MAX_AGE:
            body = {
                "size": 1,
                "_source": False,
                "query": {
                    "bool": {
                        "filter": [{"exists": {"field": docs.LOCAL_WORDS_FIELD}}],
                        "must_not": [{"exists": {"field": docs.LOCAL_TERMS_FIELD}}],
                    }
                },
            }
            _, found = self.index.request("POST", "/_search", body=body)
            termless = bool(found["hits"]["hits"])
            if termless:
                log.info(
                    "index %s holds documents without terms: partial matching ranks by words "
                    "until they are added again",
                    self.index.name,
                )
            self._termless = (termless, now)
        return self._termless[0]

    def _search(
        self,
        queries: np.ndarray,
        live: list[int],
        cutoff: float,
        window: tuple[int, int, int],
        collection: str,
        where: Filter | None,
    ) -> list[Hit]:
        """Candidates of every live query row in one _msearch, with their signatures from doc
        values (image-match's documents have no packed copy: their _source is fetched by
        path); exact ranking here; then the metadata of the returned page only."""
        size, offset, limit = window
        clauses = bodies.scope(collection, where)
        candidates = self.candidate_signatures(queries[live], size, clauses)
        packed = [path for path, value in candidates.items() if value is not None]
        unpacked = [path for path, value in candidates.items() if value is None]
        legacy = lookup.legacy_sources(self.index, unpacked, clauses)
        paths = packed + [source["path"] for source in legacy]
        if not paths:
            return []
        stored = np.concatenate(
            [
                docs.unpack([candidates[p][0] for p in packed]) if packed else _no_rows(),
                np.asarray([s["signature"] for s in legacy], dtype=np.int8).reshape(
                    -1, SIGNATURE_LENGTH
                ),
            ]
        )
        page = _rank(queries, paths, stored, cutoff)[offset : offset + limit]
        hits = [
            Hit(path, distance, legacy[n - len(packed)].get("metadata"), row)
            for n, path, distance, row in page
            if n >= len(packed)
        ]
        ours = {path: (distance, row) for n, path, distance, row in page if n < len(packed)}
        hits += self.with_metadata(ours, candidates, queries, cutoff, collection)
        return sorted(hits, key=lambda hit: (hit.distance, hit.filepath))

    def with_metadata(
        self,
        ranked: dict[str, tuple[float, int]],
        candidates: Candidates,
        queries: np.ndarray,
        cutoff: float,
        collection: str = DEFAULT_COLLECTION,
    ) -> list[Hit]:
        """Hits with their metadata and size, read in one _mget. A document replaced or deleted
        since the search (its insertion sequence changed) is never paired with the other
        version's metadata: a replacement is ranked again by its new signature, a deletion
        dropped."""
        if not ranked:
            return []
        by_id = {docs.doc_id(path, collection): path for path in ranked}
        _, body = self.index.request(
            "POST",
            "/_mget",
            body={"ids": list(by_id)},
            params={"_source_includes": "metadata,seq,signature,width,height,pdq,pdq_quality"},
        )
        hits = []
        for doc in body["docs"]:
            source = doc.get("_source") if doc.get("found") else None
            if source is None:
                continue  # deleted since the search
            path = by_id[doc["_id"]]
            distance, row = ranked[path]
            seen = candidates[path]
            if seen is None or source.get("seq") != seen[1]:  # replaced since the search
                signature = np.asarray(source.get("signature", []), dtype=np.int8)
                if signature.shape != (SIGNATURE_LENGTH,):
                    continue
                distances, rows = closest(queries, signature[None, :])
                row, distance = int(rows[0]), float(distances[0])
                if distance >= cutoff:
                    continue
            size = docs.size_of(source)
            packed, quality = docs.pdq_of(source)
            hits.append(Hit(path, distance, source.get("metadata"), row, size, packed, quality))
        return hits

    def candidate_signatures(
        self, queries: np.ndarray, size: int, clauses: bodies.Scope | None = None
    ) -> Candidates:
        """The hits of all query rows, from one _msearch. Hits carry doc values only: no
        stored fields, not even _id, whose loading would cost more than the search."""
        path = self.index.path_field
        lines: list[Any] = []
        for row in queries:
            query = bodies.words_query(
                row, size, path, clauses or bodies.scope(DEFAULT_COLLECTION), self.min_words
            )
            lines += [{}, query]
        _, body = self.index.request("POST", "/_msearch", lines=lines)
        found: Candidates = {}
        for response in body["responses"]:
            if "error" in response:
                raise_search_error(response)
            for hit in response["hits"]["hits"]:
                fields = hit.get("fields", {})
                # a signature of another algorithm has no meaningful distance to these
                if fields.get("algorithm", [ALGORITHM])[0] != ALGORITHM:
                    continue
                filepath = fields.get(path, [None])[0]
                if filepath is None:
                    continue  # image-match path too long for its .keyword: not identifiable
                value = fields.get(docs.PACKED_FIELD, [None])[0]
                seq = fields.get("seq", [None])[0]
                packed = (value, seq) if _is_packed(value) else None
                if found.get(filepath) is None:
                    found[filepath] = packed
        return found


def _rank(
    queries: np.ndarray, paths: list[str], stored: np.ndarray, cutoff: float
) -> list[tuple[int, str, float, int]]:
    """(candidate index, filepath, distance, query row) of each image once, at its smallest
    distance to any query row; under the cutoff; best first, then by filepath."""
    distances, rows = closest(queries, stored)
    best: dict[str, tuple[int, str, float, int]] = {}
    for n, (path, row, distance) in enumerate(
        zip(paths, rows.tolist(), distances.tolist(), strict=True)
    ):
        if distance < cutoff and (path not in best or distance < best[path][2]):
            best[path] = (n, path, float(distance), int(row))
    return sorted(best.values(), key=lambda hit: (hit[2], hit[1]))


def _is_packed(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 4 * docs.PACKED_BYTES // 3


def _no_rows() -> np.ndarray:
    return np.zeros((0, SIGNATURE_LENGTH), dtype=np.int8)


def raise_search_error(response: dict[str, Any]) -> None:
    error = response["error"]
    kind = error.get("type", "error") if isinstance(error, dict) else "error"
    if kind == "index_not_found_exception":
        raise IndexMissing("index missing")
    reason = error.get("reason", "") if isinstance(error, dict) else str(error)
    raise StoreUnavailable(f"The search engine failed a search ({kind}: {reason[:300]})")
