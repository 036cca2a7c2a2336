"""The query bodies ElasticStore sends, and how their hits are read back."""

from __future__ import annotations

from typing import Any

import numpy as np

from match.signature import words
from match.stores.base import LocalCandidate
from match.stores.elastic.documents import (
    CANDIDATE_FIELD,
    COLLECTION_FIELD,
    FILTER_FIELD,
    LOCAL_SOURCE,
    PACKED_FIELD,
    WORD_FIELDS,
    candidate_of,
    filter_term,
    local_of,
    pdq_of,
    size_of,
    sortable_number,
    unpack,
)
from match.stores.filters import DEFAULT_COLLECTION, Condition, Filter

Scope = list[dict[str, Any]]
"""Filter clauses that keep a query inside one collection and a metadata filter."""


def scope(collection: str, where: Filter | None = None) -> Scope:
    """The clauses of a collection (the default one also holds every document written without
    one: before collections, or by image-match) and of a filter (stores/filters.py), for a
    ``bool`` query's ``filter``: they select, they do not score."""
    if collection == DEFAULT_COLLECTION:
        clauses: Scope = [
            {
                "bool": {
                    "should": [
                        {"term": {COLLECTION_FIELD: collection}},
                        {"bool": {"must_not": {"exists": {"field": COLLECTION_FIELD}}}},
                    ]
                }
            }
        ]
    else:
        clauses = [{"term": {COLLECTION_FIELD: collection}}]
    for condition in where.conditions if where else ():
        clauses.append(_condition_clause(condition))
    return clauses


def _condition_clause(condition: Condition) -> dict[str, Any]:
    if not condition.is_range:
        terms = [filter_term(condition.key, value) for value in condition.values]
        return {"terms": {FILTER_FIELD: terms}}
    prefix = f"{condition.key}\x1fn"
    bounds: dict[str, str] = {}
    if condition.lower is None:
        bounds["gte"] = prefix
    else:
        bounds["gte" if condition.lower_inclusive else "gt"] = prefix + sortable_number(
            condition.lower
        )
    if condition.upper is None:
        bounds["lt"] = f"{condition.key}\x1fo"  # past every number of the key
    else:
        bounds["lte" if condition.upper_inclusive else "lt"] = prefix + sortable_number(
            condition.upper
        )
    return {"range": {FILTER_FIELD: bounds}}


def scoped(query: dict[str, Any], clauses: Scope) -> dict[str, Any]:
    """A query restricted to a scope (its score unchanged)."""
    return {"bool": {"must": [query], "filter": clauses}}


def local_query(
    tokens: dict[str, np.ndarray], size: int, clauses: Scope, path: str
) -> dict[str, Any]:
    """The ``size`` documents in scope sharing the most (and rarest, by BM25 idf) of these
    distinct tokens (by field: the query's terms, and its words where documents have no terms),
    best first. ``track_total_hits: false`` lets the engine skip documents that cannot reach
    the top ``size`` (block-max WAND) instead of counting every one sharing a token. Hits carry
    path, packed signature and candidate value from doc values only: no stored field is read
    (``path`` is the index's path keyword field)."""
    matches = [
        {"match": {field: {"query": " ".join(map(str, found.tolist())), "operator": "or"}}}
        for field, found in tokens.items()
        if len(found)
    ]
    query = matches[0] if len(matches) == 1 else {"bool": {"should": matches}}
    return {
        "size": size,
        "track_total_hits": False,
        "stored_fields": "_none_",
        "docvalue_fields": [path, PACKED_FIELD, CANDIDATE_FIELD],
        "query": scoped(query, clauses),
    }


def older_local_query(paths: list[str], clauses: Scope, path: str) -> dict[str, Any]:
    """The documents in scope of these paths with their candidate fields from _source: hits
    of local_query without a candidate value (written before it)."""
    return {
        "size": 2 * len(paths),  # image-match may hold a path twice
        "_source": LOCAL_SOURCE,
        "docvalue_fields": [PACKED_FIELD],
        "query": {"bool": {"filter": [{"terms": {path: paths}}, *clauses]}},
    }


Found = tuple[LocalCandidate, np.ndarray | None]
"""A candidate, with its signature from the packed doc value (None if unreadable)."""


def local_hits(hits: list[dict[str, Any]], path: str) -> list[Found | str]:
    """Candidates of a local_query's hits in their order; the path of a hit without a
    candidate value in its place (older_local_hits reads it). A hit whose value cannot be
    unpacked is skipped (logged), never an error."""
    found: list[Found | str] = []
    signatures = _packed_signatures(hits)
    for hit, signature in zip(hits, signatures, strict=True):
        fields = hit.get("fields") or {}
        paths = fields.get(path) or []
        if not paths or not isinstance(paths[0], str):
            continue
        values = fields.get(CANDIDATE_FIELD)
        if not values:
            found.append(paths[0])
            continue
        read = candidate_of(values[0], paths[0])
        if read is not None:
            candidate = LocalCandidate(
                paths[0],
                read.local,
                read.metadata,
                size=read.size,
                pdq=read.pdq,
                pdq_quality=read.pdq_quality,
            )
            found.append((candidate, signature))
    return found


def older_local_hits(hits: list[dict[str, Any]]) -> dict[str, Found]:
    """{path: candidate} of an older_local_query's hits; a hit whose features cannot be
    unpacked is left out (logged)."""
    found = {}
    for hit in hits:
        source = hit.get("_source") or {}
        local = local_of(source)
        if local is not None and isinstance(source.get("path"), str):
            packed, quality = pdq_of(source)
            candidate = LocalCandidate(
                source["path"],
                local,
                source.get("metadata"),
                size=size_of(source),
                pdq=packed,
                pdq_quality=quality,
            )
            found[source["path"]] = (candidate, _packed_signature(hit))
    return found


def _packed_signature(hit: dict[str, Any]) -> np.ndarray | None:
    """The hit's signature from its packed doc value; None if it has none or it is unreadable."""
    texts = (hit.get("fields") or {}).get(PACKED_FIELD) or []
    try:
        return unpack(texts[:1])[0] if texts else None
    except ValueError:
        return None


def _packed_signatures(hits: list[dict[str, Any]]) -> list[np.ndarray | None]:
    """``_packed_signature`` of each hit, unpacked together (one at a time only when one of
    them is unreadable)."""
    texts = [((hit.get("fields") or {}).get(PACKED_FIELD) or [None])[0] for hit in hits]
    if all(isinstance(text, str) for text in texts):
        try:
            return list(unpack(texts)) if texts else []
        except ValueError:
            pass
    return [_packed_signature(hit) for hit in hits]


def words_query(
    signature: np.ndarray, size: int, path: str, clauses: Scope, min_words: int = 1
) -> dict[str, Any]:
    """The ``size`` best candidates in scope for a signature: documents sharing at least
    ``min_words`` of its 16-value words, those sharing the most (and rarest, by BM25 idf) first.

    A zero-boost ``match_all`` clause fills the remaining places when fewer than ``size``
    documents qualify, so an index of at most ``size`` documents is searched exhaustively; once
    ``size`` candidates are found it cannot compete and the engine skips it.
    ``track_total_hits: false`` lets the engine skip documents that cannot reach the top
    ``size`` (block-max WAND) instead of counting every one that shares a word. Hits carry
    path, packed signature and algorithm from doc values only.
    """
    terms = [
        {"term": {field: int(value)}}
        for field, value in zip(WORD_FIELDS, words(signature).tolist(), strict=True)
    ]
    shared = {"bool": {"should": terms, "minimum_should_match": min_words}}
    return {
        "size": size,
        "track_total_hits": False,
        "stored_fields": "_none_",  # not even _id: loading stored fields dominates otherwise
        "docvalue_fields": [path, PACKED_FIELD, "algorithm", "seq"],
        "query": {"bool": {"should": [shared, {"match_all": {"boost": 0.0}}], "filter": clauses}},
    }


def list_sort(path: str) -> list[dict[str, Any]]:
    """Insertion order: seq (image-match's documents have none and come first), then their
    timestamp, then the path as a unique tie-breaker for search_after."""
    return [
        {"seq": {"order": "asc", "missing": "_first", "unmapped_type": "long"}},
        {"timestamp": {"order": "asc", "missing": "_first", "unmapped_type": "date"}},
        {path: {"order": "asc"}},
    ]
