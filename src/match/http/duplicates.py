"""``GET /duplicates``: the groups of near-duplicates among the stored images of a collection
(service/duplicates.py), a page at a time.

A request runs the scan itself, in its worker thread, so it is bounded: it searches at most
MATCH_DUPLICATES_MAX_IMAGES images (the collection in scope, or with ``since`` the images added
since then and those they match), and a larger scan is refused with 413 pointing to
``match duplicates``, which runs where the store is, on every core, without a limit. Nothing is
kept in the store: the service stays stateless on an engine. Each worker process remembers its
last few scans for CACHE_SECONDS, keyed by the parameters and the number of images in scope, so
that paging through the groups does not scan again; an add or a delete in scope changes that
number, so the next page scans afresh (a replaced image or new metadata shows within
CACHE_SECONDS).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Any

from match.http.api import HOW_IT_MATCHED, MAX_LIMIT, PDQ_RESULT, SCORE
from match.http.endpoints import Answer, AppContext, Endpoint
from match.http.params import Param, Params
from match.http.scoping import COLLECTION, FILTER, collection_of, filter_of
from match.service import duplicates

CACHE_SECONDS = 60.0
CACHE_SCANS = 4

_cache: OrderedDict[tuple[Any, ...], tuple[float, duplicates.Duplicates]] = OrderedDict()
_cache_lock = threading.Lock()


def find(context: AppContext, params: Params) -> Answer:
    collection, where = collection_of(params), filter_of(params)
    since = duplicates.parse_since(params["since"])
    rule = duplicates.KeeperRule.parse(params["keeper"])
    min_score = params["min_score"]
    matcher = context.matcher
    scope_count = matcher.count(collection=collection, where=where)
    key = (
        collection,
        json.dumps(params["filter"], sort_keys=True),
        min_score,
        params["since"],
        str(rule),
        scope_count,
        id(matcher),
    )
    found = _cached(key)
    if found is None:
        found = duplicates.find_duplicates(
            matcher,
            collection=collection,
            where=where,
            min_score=min_score,
            since=since,
            keeper=rule,
            max_images=context.settings.match_duplicates_max_images,
        )
        _remember(key, found)
    offset, limit = params["offset"], params["limit"]
    page = [group.as_json() for group in found.groups[offset : offset + limit]]
    extra = {
        "total": len(found.groups),
        "searched": found.searched,
        "next_since": found.next_since,
    }
    return Answer(page, extra)


def _cached(key: tuple[Any, ...]) -> duplicates.Duplicates | None:
    with _cache_lock:
        entry = _cache.get(key)
        if entry is None or time.monotonic() - entry[0] > CACHE_SECONDS:
            return None
        _cache.move_to_end(key)
        return entry[1]


def _remember(key: tuple[Any, ...], found: duplicates.Duplicates) -> None:
    with _cache_lock:
        _cache[key] = (time.monotonic(), found)
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SCANS:
            _cache.popitem(last=False)


MIN_SCORE = Param(
    "min_score",
    "number",
    "Only members that match their keeper with at least this score.",
    default=duplicates.MIN_SCORE,
    minimum=0,
    maximum=100,
)
SINCE = Param(
    "since",
    "string",
    "Only the groups holding an image added after this: " + duplicates.SINCE_TEXT + ".",
)
KEEPER = Param(
    "keeper",
    "string",
    "Which image of a group to keep: earliest (earliest added, then largest), largest (most "
    "pixels, then earliest added), metadata:<key> (highest value) or metadata:<key>:asc "
    "(lowest).",
    default=duplicates.KeeperRule.DEFAULT,
)
MEMBER = {
    "type": "object",
    "description": "A search result: the member as the keeper's search finds it (filepath, "
    "score, method, orientation, mirrored, overlaps, outlines, metadata, pdq...).",
    "properties": {
        "score": SCORE,
        "filepath": {"type": "string"},
        "metadata": {"type": "object", "nullable": True, "description": "Its stored metadata."},
        **HOW_IT_MATCHED,
        **PDQ_RESULT,
    },
}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "/duplicates",
        ("GET",),
        "duplicates",
        "Groups of near-duplicates among the stored images: a keeper, why, and the images "
        "that match it (docs/duplicates.md).",
        find,
        (
            MIN_SCORE,
            Param("offset", "integer", "Skip this many groups.", default=0, minimum=0),
            Param(
                "limit",
                "integer",
                "At most this many groups.",
                default=20,
                minimum=1,
                maximum=MAX_LIMIT,
            ),
            COLLECTION,
            FILTER,
            SINCE,
            KEEPER,
        ),
        {
            "type": "object",
            "properties": {
                "keeper": {"type": "string", "description": "filepath of the image to keep."},
                "reason": {"type": "string", "description": "Why the keeper rule chose it."},
                "members": {"type": "array", "items": MEMBER},
            },
        },
        errors=(400, 403, 413, 503),
    ),
)
