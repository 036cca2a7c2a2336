"""dsys/match's API: /add, /delete, /search, /compare, /count, /list, /ping.

Each handler is thin and blocking (it runs in a worker thread): read the declared parameters,
call the Matcher, return the envelope's ``result`` list. See docs/api.md for the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from match import pdq
from match.errors import BadParameter
from match.http.endpoints import Answer, AppContext, Endpoint
from match.http.params import Param, Params
from match.http.scoping import COLLECTION, FILTER, collection_of, filter_of
from match.http.sources import choose_source, image_bytes, naming, query
from match.service import as_json
from match.service.methods import PdqRule

MAX_LIMIT = 10_000

# -- parameters used by several routes --------------------------------------------------------
FILEPATH = Param(
    "filepath",
    "string",
    "Unique key of the image (any string up to MATCH_MAX_FILEPATH_BYTES, default 8 KiB).",
    required=True,
)
URL = Param("url", "string", "http(s) URL of the image to download.")
IMAGE = Param("image", "file", "The image, uploaded as a multipart/form-data file.")
MIN_SCORE = Param(
    "min_score",
    "number",
    "Only matches with at least this score.",
    default=0.0,
    minimum=0,
    maximum=100,
)
LIST_PARAMS = (
    Param("offset", "integer", "Skip this many filepaths.", default=0, minimum=0),
    Param(
        "limit", "integer", "At most this many filepaths.", default=20, minimum=1, maximum=MAX_LIMIT
    ),
)
ALL_ORIENTATIONS = Param(
    "all_orientations",
    "boolean",
    "Also match the query's 90° rotations and mirror images (default: the "
    "ALL_ORIENTATIONS setting, true).",
)


def _image_params(suffix: str) -> tuple[Param, ...]:
    which = {"1": "first", "2": "second"}[suffix]
    return (
        Param(f"url{suffix}", "string", f"http(s) URL of the {which} image."),
        Param(f"image{suffix}", "file", f"The {which} image, uploaded as a file."),
        Param(f"filepath{suffix}", "string", f"filepath of a stored image, as the {which} image."),
    )


def _all_orientations(context: AppContext, params: Params) -> bool:
    value = params["all_orientations"]
    return context.settings.all_orientations if value is None else bool(value)


# -- handlers ----------------------------------------------------------------------------------
def add(context: AppContext, params: Params) -> Answer:
    filepath, collection = params["filepath"], collection_of(params)
    metadata = params["metadata"]
    source = choose_source(params)
    data = image_bytes(source, context.fetch_limits)
    with naming(source.name):
        record = context.matcher.add(filepath, data, metadata, collection=collection)
    # dsys/match's result stays []; the computed PDQ hash comes beside it (docs/pdq.md)
    packed = None if record.pdq is None else pdq.to_hex(record.pdq)
    return Answer([], {"pdq": packed, "pdq_quality": record.pdq_quality})


def delete(context: AppContext, params: Params) -> list[Any]:
    context.matcher.delete(params["filepath"], collection=collection_of(params))
    return []


def search(context: AppContext, params: Params) -> list[dict[str, Any]]:
    collection, where = collection_of(params), filter_of(params)
    rule = context.matcher.pdq_rule(params["max_distance"], bool(params["pdq_low_quality"]))
    if params.given("pdq"):
        return pdq_search(context, params, rule)
    source = choose_source(params, filepath="filepath")
    all_orientations = _all_orientations(context, params)
    search_query = query(
        context.matcher, source, context.fetch_limits, all_orientations, collection
    )
    matches = context.matcher.search(
        search_query,
        min_score=params["min_score"],
        limit=params["limit"],
        offset=params["offset"],
        collection=collection,
        where=where,
        min_overlap=params["min_overlap"],
        pdq_rule=rule,
    )
    return [as_json(match) for match in matches]


def pdq_search(context: AppContext, params: Params, rule: PdqRule) -> list[dict[str, Any]]:
    """/search by a PDQ hash: every stored record within max_distance, nearest first."""
    others = [name for name in ("url", "image", "filepath") if params.given(name)]
    if others:
        raise BadParameter(f"Give either 'pdq' or '{others[0]}', not both")
    matches = context.matcher.search_pdq(
        [pdq.from_hex(params["pdq"], "Parameter 'pdq'")],
        rule=rule,
        min_score=params["min_score"],
        limit=params["limit"],
        offset=params["offset"],
        collection=collection_of(params),
        where=filter_of(params),
    )
    return [as_json(match) for match in matches]


def compare(context: AppContext, params: Params) -> list[dict[str, float]]:
    collection = collection_of(params)  # of filepath1 and filepath2
    first = choose_source(params, url="url1", image="image1", filepath="filepath1")
    second = choose_source(params, url="url2", image="image2", filepath="filepath2")
    limits = context.fetch_limits
    all_orientations = _all_orientations(context, params)
    queries = query(context.matcher, first, limits, all_orientations, collection)
    target = query(context.matcher, second, limits, False, collection)
    return [as_json(context.matcher.compare(queries, target))]


def count(context: AppContext, params: Params) -> list[int]:
    return [context.matcher.count(collection=collection_of(params), where=filter_of(params))]


def list_(context: AppContext, params: Params) -> Sequence[str]:
    return context.matcher.list(
        offset=params["offset"],
        limit=params["limit"],
        collection=collection_of(params),
        where=filter_of(params),
    )


def collections(context: AppContext, params: Params) -> list[dict[str, Any]]:
    allowed = params.allowed_collections
    return [
        {"collection": name, "count": count}
        for name, count in context.matcher.collections()
        if allowed is None or name in allowed
    ]


def drop_collection(context: AppContext, params: Params) -> list[dict[str, Any]]:
    params["collection"]  # required: never the default collection by omission
    collection = collection_of(params)
    return [{"collection": collection, "deleted": context.matcher.drop_collection(collection)}]


def ping(context: AppContext, params: Params) -> list[Any]:
    context.matcher.ping()
    return []


# -- the route table ---------------------------------------------------------------------------
SCORE = {
    "type": "number",
    "description": "0-100 on one scale for both methods: 100 * (1 - distance) for the "
    "signature (100 is identical), at most 99 for a partial match.",
}
_METADATA = {"type": "object", "nullable": True, "description": "The metadata stored with it."}
HOW_IT_MATCHED = {
    "orientation": {
        "type": "string",
        "description": "Which orientation of the query matched: original, rotate_90, ..., "
        "mirror_rotate_270.",
    },
    "method": {
        "type": "string",
        "enum": ["signature", "local", "pdq"],
        "description": "signature: the whole image; local: a partial match (crop, screenshot, "
        "caption, small turn) found by local features; pdq: a PDQ hash within max_distance "
        "(hash-only records, or any record in a search by pdq).",
    },
    "mirrored": {
        "type": "boolean",
        "description": "Whether the query matched as a mirror image (by the signature, or as "
        "a mirrored partial match: a mirrored crop, meme or screenshot).",
    },
    "query_outline": {
        "type": "array",
        "nullable": True,
        "items": {"type": "array", "items": {"type": "number"}},
        "description": "Where the query's frame lies in the stored image: four [x, y] points "
        "(top-left, top-right, bottom-right, bottom-left of the query) in the stored image's "
        "pixels; for a crop of the stored image, the crop's box (a mirrored crop's starts at "
        "the box's top-right corner). Null when its size is unknown.",
    },
    "target_outline": {
        "type": "array",
        "nullable": True,
        "items": {"type": "array", "items": {"type": "number"}},
        "description": "Where the stored image's frame lies in the query: four [x, y] points in "
        "the query's pixels; for a screenshot holding it, where it was pasted.",
    },
    "query_overlap_percent": {
        "type": "number",
        "description": "Percent of the query lying inside the stored image (100 for a "
        "signature match).",
    },
    "target_overlap_percent": {
        "type": "number",
        "description": "Percent of the stored image lying inside the query (100 for a "
        "signature match).",
    },
}

PDQ_SEARCH_PARAMS = (
    Param(
        "pdq",
        "string",
        "Search by a PDQ hash (64 hex digits) instead of an image: every stored record (images "
        "and hash-only records) within max_distance.",
    ),
    Param(
        "max_distance",
        "integer",
        "Largest PDQ Hamming distance that matches (of 256 bits; PDQ recommends 31).",
        default=31,
        minimum=0,
        maximum=256,
    ),
    Param(
        "pdq_low_quality",
        "boolean",
        "Also match PDQ hashes of quality below MATCH_PDQ_MIN_QUALITY (flagged "
        "pdq_low_quality); off, such a hash is never the evidence of a match.",
        default=False,
    ),
)
PDQ_RESULT = {
    "pdq": {
        "type": "string",
        "nullable": True,
        "description": "The stored record's PDQ hash (64 hex digits), null if it has none.",
    },
    "pdq_quality": {
        "type": "integer",
        "nullable": True,
        "description": "Its PDQ quality (0-100), null if not known.",
    },
    "pdq_distance": {
        "type": "integer",
        "nullable": True,
        "description": "method pdq: the Hamming distance to the query's hash; score is "
        "100 - 45 * distance / 32 (31 scores 56.4).",
    },
    "pdq_low_quality": {
        "type": "boolean",
        "description": "method pdq: the query's or the stored hash's quality is below "
        "MATCH_PDQ_MIN_QUALITY.",
    },
    "hash_only": {
        "type": "boolean",
        "description": "The record is a hash-only record (POST /hashes): no image.",
    },
}

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "/add",
        ("POST",),
        "add",
        "Store an image under a filepath (replacing any image stored under it).",
        add,
        (
            FILEPATH,
            URL,
            IMAGE,
            Param("metadata", "json", "JSON object stored with the image and returned by search."),
            COLLECTION,
        ),
        errors=(400, 403, 413, 415, 502, 503),
    ),
    Endpoint(
        "/delete",
        ("DELETE",),
        "delete",
        "Delete the image stored under a filepath.",
        delete,
        (FILEPATH, COLLECTION),
        errors=(400, 403, 404, 503),
    ),
    Endpoint(
        "/search",
        ("POST",),
        "search",
        "Stored images that look like the query, best first (each image once).",
        search,
        (
            URL,
            IMAGE,
            Param("filepath", "string", "filepath of an image already stored, to search with it."),
            ALL_ORIENTATIONS,
            MIN_SCORE,
            Param(
                "limit",
                "integer",
                "At most this many matches.",
                default=100,
                minimum=1,
                maximum=MAX_LIMIT,
            ),
            Param(
                "offset", "integer", "Skip this many matches (pagination).", default=0, minimum=0
            ),
            Param(
                "min_overlap",
                "number",
                "Only matches covering at least this percent of the stored image (100: whole-"
                "image copies only; a crop of it covers less).",
                default=0.0,
                minimum=0,
                maximum=100,
            ),
            COLLECTION,
            FILTER,
            *PDQ_SEARCH_PARAMS,
        ),
        {
            "type": "object",
            "properties": {
                "score": SCORE,
                "filepath": {"type": "string"},
                "metadata": _METADATA,
                **HOW_IT_MATCHED,
                **PDQ_RESULT,
            },
        },
        errors=(400, 403, 404, 413, 415, 502, 503),
    ),
    Endpoint(
        "/compare",
        ("POST",),
        "compare",
        "Score of two images against each other.",
        compare,
        (*_image_params("1"), *_image_params("2"), ALL_ORIENTATIONS, COLLECTION),
        {"type": "object", "properties": {"score": SCORE, **HOW_IT_MATCHED}},
        errors=(400, 403, 404, 413, 415, 502, 503),
    ),
    Endpoint(
        "/count",
        ("GET", "POST"),
        "count",
        "Number of stored images (in the collection, matching the filter).",
        count,
        (COLLECTION, FILTER),
        result={"type": "integer"},
        errors=(400, 403, 503),
    ),
    Endpoint(
        "/list",
        ("GET", "POST"),
        "list",
        "Stored filepaths in insertion order.",
        list_,
        (*LIST_PARAMS, COLLECTION, FILTER),
        {"type": "string"},
        errors=(400, 403, 503),
    ),
    Endpoint(
        "/collections",
        ("GET",),
        "collections",
        "The collections holding images, with their counts (default always).",
        collections,
        result={
            "type": "object",
            "properties": {"collection": {"type": "string"}, "count": {"type": "integer"}},
        },
        errors=(503,),
    ),
    Endpoint(
        "/collections",
        ("DELETE",),
        "collections",
        "Delete a collection: every image stored in it.",
        drop_collection,
        (Param("collection", "string", "The collection to delete.", required=True),),
        {
            "type": "object",
            "properties": {"collection": {"type": "string"}, "deleted": {"type": "integer"}},
        },
        errors=(400, 403, 404, 503),
    ),
    Endpoint(
        "/ping",
        ("GET", "POST"),
        "ping",
        "Health check: ok when the store answers.",
        ping,
        errors=(503,),
    ),
)
