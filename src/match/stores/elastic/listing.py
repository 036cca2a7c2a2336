"""Listing filepaths in insertion order, a page at a time: from + size within the result window,
search_after on the sort values past it; and scanning whole records in the same order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from match.stores.base import ImageRecord, Since
from match.stores.elastic import bodies
from match.stores.elastic import documents as docs
from match.stores.elastic.index import Index
from match.stores.elastic.lookup import MAX_WINDOW


def list_paths(index: Index, offset: int, limit: int, clauses: bodies.Scope) -> list[str]:
    """The filepaths in scope, from ``offset``, at most ``limit``."""
    sort = bodies.list_sort(index.path_field)
    query = {"bool": {"filter": clauses}}
    if offset + limit <= MAX_WINDOW:
        return _page(index, sort, query, {"from": offset, "size": limit})[0]
    after: list[Any] | None = None
    while offset > 0:  # walk to the offset page by page on sort values, not from + size
        body: dict[str, Any] = {
            "size": min(offset, MAX_WINDOW),
            "sort": sort,
            "query": query,
            "stored_fields": "_none_",  # sort values come from doc values: skip cheaply
            "track_total_hits": False,
        }
        if after is not None:
            body["search_after"] = after
        _, found = index.request("POST", "/_search", body=body)
        hits = found["hits"]["hits"]
        if not hits:
            return []
        after, offset = hits[-1]["sort"], offset - len(hits)
    paths: list[str] = []
    while len(paths) < limit:
        window = {"size": min(limit - len(paths), MAX_WINDOW)}
        if after is not None:
            window["search_after"] = after
        page, after = _page(index, sort, query, window)
        paths += page
        if not page:
            break
    return paths


def _page(
    index: Index, sort: list[Any], query: dict[str, Any], window: dict[str, Any]
) -> tuple[list[str], list[Any] | None]:
    """Paths of one page and the sort values to continue after it."""
    body = {**window, "sort": sort, "query": query, "_source": ["path"], "track_total_hits": False}
    _, found = index.request("POST", "/_search", body=body)
    hits = found["hits"]["hits"]
    return [hit["_source"]["path"] for hit in hits], (hits[-1]["sort"] if hits else None)


RECORD_SOURCE = [
    *docs.SOURCE_FIELDS,
    docs.COLLECTION_FIELD,
    docs.LOCAL_FIELD,
    docs.CANDIDATE_FIELD,
    "width",
    "height",
    "timestamp",
    "seq",
    docs.PDQ_FIELD,
    "pdq_quality",
]
"""What a whole record is read from."""


def since_clauses(since: Since | None) -> bodies.Scope:
    """The filter clauses of records added after ``since``: timestamp (milliseconds: a record
    of the same millisecond as ``since.time`` is included) and seq."""
    if since is None:
        return []
    clauses: bodies.Scope = []
    if since.time is not None:
        millis = int(since.time * 1000)
        clauses.append({"range": {"timestamp": {"gte": millis, "format": "epoch_millis"}}})
    if since.seq is not None:
        clauses.append({"range": {"seq": {"gt": since.seq}}})
    return clauses


def scan(index: Index, clauses: bodies.Scope, batch: int) -> Iterator[ImageRecord]:
    """The records in scope, whole, in insertion order, ``batch`` per search (search_after)."""
    index.call(lambda: None)  # ready: its path field known
    sort = bodies.list_sort(index.path_field)
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {
            "size": batch,
            "sort": sort,
            "query": {"bool": {"filter": clauses}},
            "_source": RECORD_SOURCE,
            "track_total_hits": False,
        }
        if after is not None:
            body["search_after"] = after
        _, found = index.call(lambda body=body: index.request("POST", "/_search", body=body))
        hits = found["hits"]["hits"]
        for hit in hits:
            source = hit.get("_source") or {}
            if "path" in source and "signature" in source:
                yield docs.record_of(source)
        if len(hits) < batch:
            return
        after = hits[-1]["sort"]
