"""TinEye MatchEngine's API, beside dsys/match's: /rest/<method>/ for add, delete, search,
compare, count, list, ping and update_metadata, so MatchEngine clients can point at Match.

Parameters come from the query string or the form (MatchEngine's clients put them in the query
string and the files in a multipart body, and send a GET when there is no file); every answer is
a 200 with MatchEngine's envelope (match.http.tineye_wire). docs/tineye.md is the reference,
including where Match differs (overlap percentages, no overlay).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from match.errors import BadParameter, MatchError, NotFound
from match.http.api import HOW_IT_MATCHED, LIST_PARAMS, MAX_LIMIT, MIN_SCORE, SCORE
from match.http.endpoints import AppContext, Endpoint, Handler
from match.http.params import Param, Params, Upload
from match.http.scoping import COLLECTION, collection_of
from match.http.sources import ImageSource, choose_source, image_bytes, naming, query
from match.http.tineye_wire import MAX_BATCH, Field, Item, Reply, batch_items, each_item, responder
from match.service import Comparison, Match, Metadata, Query, as_json
from match.stores import ImageRecord

MISSING = "This file does not exist in the image collection"  # MatchEngine's wording
IMAGE_ID_MAX = 255  # characters, as MatchEngine allows
ROTATIONS = 4  # the first 4 query orientations are the rotations; the last 4 their mirror images

FILEPATH = Field("filepath", "filepaths", "string")
IMAGE = Field("image", "images", "file")
URL = Field("url", "urls", "string")
IMAGE_ID = Field("image_id", "image_ids", "string")
METADATA = Field("metadata", "metadata", "json")


# -- add, delete, update_metadata: batches --------------------------------------------------------
def add(context: AppContext, params: Params) -> Reply:
    items = batch_items(params, (IMAGE, URL, FILEPATH, IMAGE_ID, METADATA), "images or URLs")
    if not items:
        raise BadParameter("Missing parameter: give 'image' or 'url', or 'images[N]' or 'urls[N]'")
    collection = collection_of(params)
    records: list[tuple[Item, ImageRecord]] = []
    reply = each_item(
        items,
        lambda item: records.append((item, _record_of(context, item, collection))),
        _add_label,
    )
    reply.partial = _store_all(context, records, reply.errors)
    return reply


def _record_of(context: AppContext, item: Item, collection: str) -> ImageRecord:
    source = choose_source(item.params, url=item.name("url"), image=item.name("image"))
    filepath = _add_filepath(item, source)
    metadata = _new_metadata(item)
    data = image_bytes(source, context.fetch_limits)
    with naming(source.name):
        return context.matcher.record(filepath, data, metadata, collection=collection)


def _store_all(
    context: AppContext, records: list[tuple[Item, ImageRecord]], errors: list[str]
) -> bool:
    """Store a batch's records in one write (one commit, one engine refresh, rather than one per
    image); each that fails is reported in ``errors``. Whether any was stored."""
    if not records:
        return False
    try:
        result = context.matcher.add_many([record for _, record in records])
    except MatchError as error:  # the store is down: nothing was stored
        errors += [f"{_add_label(item)}: {error.message}" for item, _ in records]
        return False
    failed = dict(result.failed)
    errors += [
        f"{_add_label(item)}: {failed[record.filepath]}"
        for item, record in records
        if record.filepath in failed
    ]
    return result.added > 0


def _add_filepath(item: Item, source: ImageSource) -> str:
    """The filepath given, else (as MatchEngine does) the uploaded file's name or the last part
    of the URL's path."""
    if item.given("filepath"):
        return item["filepath"]
    if source.kind == "image":
        raw = item.raw("image")
        name = raw.filename if isinstance(raw, Upload) else ""
    else:
        name = posixpath.basename(unquote(urlsplit(str(source.value)).path))
    if not name.strip():
        raise BadParameter(
            f"Parameter '{item.name('filepath')}' is required: the image has no file name"
        )
    return name


def _add_label(item: Item) -> str:
    """How a failed add item is named in the error list: its filepath, else its source."""
    for key in ("filepath", "url"):
        raw = item.raw(key)
        if isinstance(raw, str):
            return raw
    raw = item.raw("image")
    if isinstance(raw, Upload) and raw.filename:
        return raw.filename
    return item.name("image")


def _new_metadata(item: Item) -> Metadata:
    """The metadata an item sets: its ``metadata`` JSON object plus its ``image_id``. An image_id
    of '{}' (MatchEngine's way to clear it) or nothing at all means none."""
    metadata: dict[str, Any] = dict(item["metadata"] or {})
    image_id = item["image_id"]
    if image_id is not None and image_id.strip() != "{}":
        if len(image_id) > IMAGE_ID_MAX:
            raise BadParameter(
                f"Parameter '{item.name('image_id')}' is longer than {IMAGE_ID_MAX} characters"
            )
        metadata["image_id"] = image_id
    return metadata or None


def delete(context: AppContext, params: Params) -> Reply:
    items = batch_items(params, (FILEPATH,), "filepaths")
    if not items:
        raise BadParameter("Missing parameter: give 'filepath' or 'filepaths[N]'")
    collection = collection_of(params)
    return each_item(items, lambda item: _delete_one(context, item, collection), _filepath_label)


def _delete_one(context: AppContext, item: Item, collection: str) -> None:
    filepath = item["filepath"]
    with _missing_worded():
        context.matcher.delete(filepath, collection=collection)


def update_metadata(context: AppContext, params: Params) -> Reply:
    items = batch_items(params, (FILEPATH, IMAGE_ID, METADATA), "filepaths")
    if not items:
        raise BadParameter("Missing parameter: give 'filepath' or 'filepaths[N]'")
    collection = collection_of(params)
    return each_item(items, lambda item: _update_one(context, item, collection), _filepath_label)


def _update_one(context: AppContext, item: Item, collection: str) -> None:
    if not item.given("filepath"):
        raise BadParameter(f"Parameter '{item.name('filepath')}' is required")
    filepath = item["filepath"]
    metadata = _new_metadata(item)
    with _missing_worded():
        context.matcher.update_metadata(filepath, metadata, collection=collection)


def _filepath_label(item: Item) -> str:
    raw = item.raw("filepath")
    return raw if isinstance(raw, str) else item.name("filepath")


@contextmanager
def _missing_worded(prefix: str = "") -> Iterator[None]:
    """NotFound worded as MatchEngine's "<filepath>: This file does not exist in the image
    collection" (in a batch, each_item prefixes the item's filepath)."""
    try:
        yield
    except NotFound:
        raise NotFound(f"{prefix}{MISSING}") from None


# -- search and compare -------------------------------------------------------------------------
def search(context: AppContext, params: Params) -> Reply:
    # Every parameter is checked before the image is fetched or decoded.
    flips, min_score = params["check_horizontal_flip"], params["min_score"]
    limit, offset = params["limit"], params["offset"]
    source = choose_source(params, filepath="filepath")
    collection = collection_of(params)
    search_query = _query(context, source, flips, collection)
    matches = context.matcher.search(
        search_query, min_score=min_score, limit=limit, offset=offset, collection=collection
    )
    result = [_match(match) for match in matches]
    return Reply(result=result, query_image={"filepath": _query_name(params, source)})


def compare(context: AppContext, params: Params) -> Reply:
    flips, min_score = params["check_horizontal_flip"], params["min_score"]
    first = choose_source(params, url="url1", image="image1", filepath="filepath1")
    second = choose_source(params, url="url2", image="image2", filepath="filepath2")
    collection = collection_of(params)
    queries = _query(context, first, flips, collection)
    with _missing_worded(f"{second.value}: "):
        target = query(context.matcher, second, context.fetch_limits, False, collection)
    comparison = context.matcher.compare(queries, target)
    matched = context.matcher.is_match(comparison.score, min_score)  # the rule search applies
    return Reply(result=[_match(comparison)] if matched else [])


def _query(context: AppContext, source: ImageSource, flips: bool, collection: str) -> Query:
    """The query's 4 rotations, or all 8 orientations with check_horizontal_flip. MatchEngine
    finds rotated copies without being asked and mirrored ones only when asked."""
    with _missing_worded(f"{source.value}: "):
        found = query(context.matcher, source, context.fetch_limits, True, collection)
    return found if flips else found.orientations(ROTATIONS)


def _match(found: Match | Comparison) -> dict[str, Any]:
    """One result: MatchEngine's fields (scores and overlaps rounded to 2 decimals; a signature
    match covers both whole images, overlaps 100; docs/tineye.md) beside Match's own (as_json)."""
    result = as_json(found)
    result |= {
        "score": round(found.score, 2),
        "match_percent": round(found.score, 2),
        "query_overlap_percent": round(found.query_overlap, 2),
        "target_overlap_percent": round(found.target_overlap, 2),
    }
    metadata = result.get("metadata")
    if isinstance(metadata, dict) and "image_id" in metadata:
        result["image_id"] = metadata["image_id"]
    return result


def _query_name(params: Params, source: ImageSource) -> str:
    if source.kind == "image":
        raw = params.raw(source.name)
        return raw.filename if isinstance(raw, Upload) else source.name
    return str(source.value)


# -- count, list, ping --------------------------------------------------------------------------
def count(context: AppContext, params: Params) -> Reply:
    return Reply(result=[context.matcher.count(collection=collection_of(params))])


def list_(context: AppContext, params: Params) -> Reply:
    listed = context.matcher.list(
        offset=params["offset"], limit=params["limit"], collection=collection_of(params)
    )
    return Reply(result=listed)


def ping(context: AppContext, params: Params) -> Reply:
    context.matcher.ping()
    return Reply()


# -- the route table ----------------------------------------------------------------------------
_N = f"N = 0..{MAX_BATCH - 1}; at most {MAX_BATCH} per request"
FORMAT = Param("format", "string", "Response format: only json.", default="json")
_FILEPATH_ONE = Param("filepath", "string", "Collection filepath of one image.")
_FILEPATHS = Param("filepaths[N]", "string", f"Collection filepaths of several images ({_N}).")
_IMAGE_ID = Param(
    "image_id",
    "string",
    f"ID stored with the image (up to {IMAGE_ID_MAX} characters; '{{}}' clears it); "
    "numbered: image_ids[N].",
)
_METADATA = Param(
    "metadata",
    "json",
    "JSON object stored with the image and returned by search; numbered: metadata[N].",
)
_FLIP = Param(
    "check_horizontal_flip",
    "boolean",
    "Also find mirror images (True/False). Rotations are always searched.",
    default=False,
)
_COMPARED = {
    "score": SCORE,
    "match_percent": {"type": "number", "description": "Equal to score."},
    **HOW_IT_MATCHED,
}


def _image_params(suffix: str, which: str) -> tuple[Param, ...]:
    return (
        Param(f"image{suffix}", "file", f"The {which} image, uploaded as a multipart file."),
        Param(f"url{suffix}", "string", f"http(s) URL of the {which} image."),
        Param(f"filepath{suffix}", "string", f"Collection filepath of the {which} image."),
    )


def _endpoint(
    method: str,
    verbs: tuple[str, ...],
    summary: str,
    handler: Handler,
    params: tuple[Param, ...] = (),
    result: dict[str, Any] | None = None,
) -> Endpoint:
    return Endpoint(
        f"/rest/{method}/",
        verbs,
        method,
        f"{summary} (TinEye MatchEngine wire format: always HTTP 200, failures in the envelope.)",
        handler,
        (*params, COLLECTION, FORMAT),
        result or {},
        errors=(),
        responder=responder,
    )


ENDPOINTS: tuple[Endpoint, ...] = (
    _endpoint(
        "add",
        ("GET", "POST"),
        "Store up to 10 images, each under its filepath (replacing any image stored there); "
        "failed items are listed in error without losing the others (status warn).",
        add,
        (
            Param("image", "file", "One image, uploaded; filepath defaults to its file name."),
            Param("url", "string", "http(s) URL of one image; filepath defaults to its name."),
            _FILEPATH_ONE,
            Param("images[N]", "file", f"Several images, uploaded ({_N})."),
            Param("urls[N]", "string", f"URLs of several images ({_N})."),
            _FILEPATHS,
            _IMAGE_ID,
            _METADATA,
        ),
    ),
    _endpoint(
        "delete",
        ("GET", "POST", "DELETE"),
        "Delete up to 10 images by filepath.",
        delete,
        (_FILEPATH_ONE, _FILEPATHS),
    ),
    _endpoint(
        "update_metadata",
        ("GET", "POST"),
        "Replace the metadata of up to 10 stored images, without uploading them again.",
        update_metadata,
        (_FILEPATH_ONE, _FILEPATHS, _IMAGE_ID, _METADATA),
    ),
    _endpoint(
        "search",
        ("GET", "POST"),
        "Stored images that look like the query, best first.",
        search,
        (
            *_image_params("", "query"),
            MIN_SCORE,
            Param("offset", "integer", "Skip this many matches.", default=0, minimum=0),
            Param(
                "limit",
                "integer",
                "At most this many matches.",
                default=10,
                minimum=1,
                maximum=MAX_LIMIT,
            ),
            _FLIP,
        ),
        {
            "type": "object",
            "properties": {
                "filepath": {"type": "string"},
                **_COMPARED,
                "metadata": {"type": "object", "nullable": True},
                "image_id": {"type": "string", "description": "When one is stored."},
            },
        },
    ),
    _endpoint(
        "compare",
        ("GET", "POST"),
        "Whether two images match: one result with their score, or none.",
        compare,
        (*_image_params("1", "first"), *_image_params("2", "second"), MIN_SCORE, _FLIP),
        {"type": "object", "properties": _COMPARED},
    ),
    _endpoint("count", ("GET", "POST"), "Number of stored images.", count, (), {"type": "integer"}),
    _endpoint(
        "list",
        ("GET", "POST"),
        "Stored filepaths in insertion order.",
        list_,
        LIST_PARAMS,
        {"type": "string"},
    ),
    _endpoint("ping", ("GET", "POST"), "Health check: ok when the store answers.", ping),
)
