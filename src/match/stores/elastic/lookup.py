"""Documents by filepath: ours at their deterministic _id (the sha256 of the filepath), and
those image-match or dsys/match wrote (random _ids) by the exact path field."""

from __future__ import annotations

from typing import Any

from match.signature import ALGORITHM
from match.stores.elastic import documents as docs
from match.stores.elastic.bodies import Scope, scope
from match.stores.elastic.index import Index
from match.stores.filters import DEFAULT_COLLECTION

MAX_WINDOW = 10_000  # index.max_result_window: from + size never goes past it
MAX_TERM_BYTES = 32766


def find(
    index: Index,
    filepath: str,
    collection: str = DEFAULT_COLLECTION,
    fields: list[str] | None = None,
) -> dict[str, Any] | None:
    """The document of a filepath in a collection (with _id, _seq_no, _primary_term, _source,
    only ``fields`` of it if given): ours by _id (real-time), else the newest image-match
    document with that exact path (those are all in the default collection)."""
    own = docs.doc_id(filepath, collection)
    params = {"_source_includes": ",".join(fields)} if fields else None
    status, body = index.request("GET", f"/_doc/{own}", allow=(404,), params=params)
    if status == 200 and body.get("found"):
        return body
    if collection != DEFAULT_COLLECTION or not term_fits(filepath):
        return None
    query = {
        "size": 1,
        "seq_no_primary_term": True,
        "query": {"bool": {"filter": [{"term": {index.path_field: filepath}}, *scope(collection)]}},
        "sort": [{"timestamp": {"order": "desc", "unmapped_type": "date"}}],
    }
    if fields:
        query["_source"] = fields
    _, found = index.request("POST", "/_search", body=query)
    hits = found["hits"]["hits"]
    return hits[0] if hits else None


def legacy_ids(index: Index, filepaths: list[str]) -> list[str]:
    """_ids of documents under these filepaths of the default collection that are not at their
    deterministic _id: written by image-match or dsys/match. All of them, not only the first
    10."""
    filepaths = [path for path in filepaths if term_fits(path)]
    if not filepaths:
        return []
    own = [docs.doc_id(path) for path in filepaths]
    query = {
        "bool": {
            "filter": [{"terms": {index.path_field: filepaths}}, *scope(DEFAULT_COLLECTION)],
            "must_not": [{"ids": {"values": own}}],
        }
    }
    ids: list[str] = []
    while True:
        body = {
            "query": query,
            "size": MAX_WINDOW,
            "_source": False,
            "track_total_hits": False,
            "sort": ["_doc"],
        }
        if ids:  # next page: exclude what was already found
            body["query"] = {
                "bool": {**query["bool"], "must_not": [{"ids": {"values": own + ids}}]}
            }
        _, found = index.request("POST", "/_search", body=body)
        page = [hit["_id"] for hit in found["hits"]["hits"]]
        ids.extend(page)
        if len(page) < MAX_WINDOW:
            return ids


def legacy_sources(index: Index, filepaths: list[str], clauses: Scope) -> list[dict[str, Any]]:
    """_source of the documents in scope under these filepaths (image-match's, which lack the
    packed signature), in one search."""
    filepaths = [path for path in filepaths if term_fits(path)]
    if not filepaths:
        return []
    body = {
        "query": {"bool": {"filter": [{"terms": {index.path_field: filepaths}}, *clauses]}},
        "size": MAX_WINDOW,
        "_source": docs.SOURCE_FIELDS,
        "track_total_hits": False,
    }
    _, found = index.request("POST", "/_search", body=body)
    return [
        source
        for source in (hit.get("_source") or {} for hit in found["hits"]["hits"])
        if "path" in source
        and "signature" in source
        and source.get("algorithm", ALGORITHM) == ALGORITHM
    ]


def term_fits(filepath: str) -> bool:
    """Whether the filepath can be a keyword term at all (Lucene's limit is 32766 bytes)."""
    return len(filepath.encode("utf-8", "surrogatepass")) <= MAX_TERM_BYTES
