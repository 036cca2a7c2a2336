"""Giving the documents of an earlier Match their terms (``match check --repair``).

Documents written before Match indexed terms (match.local.terms) hold visual words and no
terms. While an index holds one, partial matching ranks every document by its words (search.py:
slower at scale, and the shortlist misses more originals). ``count_termless`` finds them;
``add_terms`` gives each the terms of its own stored features by a partial update that loses to
any write since it was read (``if_seq_no``: a document added again meanwhile has its terms).
A document whose features cannot be read gets an empty terms field: it is no candidate either
way, and no longer holds the whole index to words.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from match.errors import StoreUnavailable
from match.local.terms import stored_terms
from match.stores.base import PROGRESS
from match.stores.elastic import bodies
from match.stores.elastic import documents as docs
from match.stores.elastic.index import Index
from match.stores.elastic.writes import item_reason

BATCH = 500
"""Documents read and updated per round trip."""
PROGRESS_EVERY = 10_000
"""Documents between two progress lines (base.PROGRESS)."""

TERMLESS: dict[str, Any] = {
    "bool": {
        "filter": [{"exists": {"field": docs.LOCAL_WORDS_FIELD}}],
        "must_not": [{"exists": {"field": docs.LOCAL_TERMS_FIELD}}],
    }
}
"""Documents with words and no terms."""


def count_termless(index: Index) -> int:
    """How many documents of the index have words and no terms."""
    _, found = index.request("POST", "/_count", body={"query": TERMLESS})
    return int(found["count"])


def add_terms(index: Index) -> int:
    """Give every termless document its terms; how many were given them (logged as it goes).
    Documents are walked once, in insertion order (``search_after``), so one that cannot be
    updated is not read again."""
    after: list[Any] | None = None
    given = 0
    while True:
        body: dict[str, Any] = {
            "size": BATCH,
            "sort": bodies.list_sort(index.path_field),
            "query": TERMLESS,
            "_source": ["path", docs.LOCAL_FIELD, docs.CANDIDATE_FIELD],
            "seq_no_primary_term": True,
            "track_total_hits": False,
        }
        if after is not None:
            body["search_after"] = after
        _, found = index.request("POST", "/_search", body=body)
        hits = found["hits"]["hits"]
        if hits:
            done = _update(index, hits)
            if (given + done) // PROGRESS_EVERY > given // PROGRESS_EVERY:
                PROGRESS.info("%s: %d documents given their terms so far", index.name, given + done)
            given += done
        if len(hits) < BATCH:
            index.request("POST", "/_refresh")
            return given
        after = hits[-1]["sort"]


def _update(index: Index, hits: list[dict[str, Any]]) -> int:
    """One _bulk of partial updates: each hit's terms, from its own features."""
    lines: list[dict[str, Any]] = []
    for hit in hits:
        local = docs.local_of(hit.get("_source") or {})
        terms = np.zeros(0) if local is None else stored_terms(local.words, local.bits)
        meta = {"_id": hit["_id"], "if_seq_no": hit["_seq_no"]}
        meta["if_primary_term"] = hit["_primary_term"]
        lines.append({"update": meta})
        lines.append({"doc": {docs.LOCAL_TERMS_FIELD: " ".join(map(str, terms.tolist()))}})
    _, answer = index.request("POST", "/_bulk", lines=lines)
    given = 0
    for item in answer.get("items", []):
        result = item.get("update", {})
        status = int(result.get("status", 0))
        if status < 300:
            given += 1
        elif status not in (404, 409):  # deleted, or written again with its terms, since read
            raise StoreUnavailable(f"giving {result.get('_id')} its terms: {item_reason(result)}")
    return given
