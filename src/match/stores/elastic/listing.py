"""Listing filepaths in insertion order, a page at a time: from + size within the result window,
search_after on the sort values past it."""

from __future__ import annotations

from typing import Any

from match.stores.elastic import bodies
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
