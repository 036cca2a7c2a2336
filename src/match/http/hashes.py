"""Hash-list routes: ``POST /hashes`` imports a CSV or JSON lines file of PDQ hashes as hash-only
records, ``GET /hashes`` exports them in the same format, ``DELETE /hashes`` deletes one, and
``POST /hashes/search`` looks up a whole list of hashes at once. The format is
service/hash_lists.py's; searching by one hash is also /search's ``pdq`` parameter."""

from __future__ import annotations

import codecs
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from match import pdq
from match.errors import BadParameter, MatchError, TooLarge
from match.http.api import MAX_LIMIT, MIN_SCORE, PDQ_RESULT, PDQ_SEARCH_PARAMS, SCORE
from match.http.auth import allowed_collections
from match.http.endpoints import AppContext, Endpoint
from match.http.envelope import fail
from match.http.params import Param, Params
from match.http.scoping import COLLECTION, FILTER, collection_of, filter_of
from match.service import as_json, hash_lists
from match.stores import HashRecord

EXPORT_PAGE = 10_000
"""Records read from the store at a time while an export streams."""
FAILURES_SHOWN = 100
"""Bad lines an import answer lists (it counts them all)."""

FORMAT = Param(
    "format",
    "string",
    "csv or jsonl (import: detected from the first line when not given; export: jsonl).",
)


def import_hashes(context: AppContext, params: Params) -> list[dict[str, Any]]:
    collection = collection_of(params)
    data: bytes = params["file"]
    text = codecs.decode(data, "utf-8", errors="replace")
    bad: list[hash_lists.BadLine] = []

    def records() -> Iterator[HashRecord]:
        for item in hash_lists.read_hash_list(
            text.splitlines(keepends=True), collection, params["format"]
        ):
            if isinstance(item, hash_lists.BadLine):
                bad.append(item)
            else:
                yield item

    result = context.matcher.add_hashes(records())
    failed = [{"line": b.line, "error": b.message} for b in bad]
    failed += [{"filepath": path, "error": message} for path, message in result.failed]
    return [{"added": result.added, "failed": len(failed), "errors": failed[:FAILURES_SHOWN]}]


def search_hashes(context: AppContext, params: Params) -> list[dict[str, Any]]:
    """Each hash of a list looked up on its own, all in one store lookup: one item per hash,
    in the list's order."""
    hashes = _query_hashes(params)
    most = context.settings.match_pdq_batch_max
    if len(hashes) > most:
        raise TooLarge(
            f"{len(hashes):,} hashes in one request is more than MATCH_PDQ_BATCH_MAX "
            f"({most:,}): split the list, or use `match hashes search`, which has no limit"
        )
    rule = context.matcher.pdq_rule(params["max_distance"], bool(params["pdq_low_quality"]))
    found = context.matcher.search_pdq_batch(
        hashes,
        rule=rule,
        min_score=params["min_score"],
        limit=params["limit"],
        collection=collection_of(params),
        where=filter_of(params),
    )
    return [
        {"pdq": pdq.to_hex(packed), "matches": [as_json(match) for match in matches]}
        for packed, matches in zip(hashes, found, strict=True)
    ]


def _query_hashes(params: Params) -> list[bytes]:
    """The hashes of ``pdq`` (every value sent: repeated fields, a JSON array, or a text of
    hashes) and of the uploaded ``file``, in that order."""
    hashes: list[bytes] = []
    for value in params.values.get("pdq", ()):
        if isinstance(value, str) and value.strip():
            hashes += hash_lists.read_query_hashes(value, "Parameter 'pdq'")
    if params.given("file"):
        text = codecs.decode(params["file"], "utf-8", errors="replace")
        hashes += hash_lists.read_query_hashes(text, "Parameter 'file'")
    if not hashes:
        raise BadParameter("Missing parameter: give 'pdq' (one or more PDQ hashes) or 'file'")
    return hashes


def delete_hash(context: AppContext, params: Params) -> list[Any]:
    context.matcher.delete_hash(params["filepath"], collection=collection_of(params))
    return []


def _export_responder(
    endpoint: Endpoint, context: AppContext
) -> Callable[[Request], Awaitable[Response]]:
    """The export as a file of lines (not the envelope); errors before the first line are the
    envelope with their status."""

    async def respond(request: Request) -> Response:
        try:
            params = await Params.read(
                request, endpoint.params, context.settings.match_max_upload_bytes
            )
            params.allowed_collections = allowed_collections(request.scope)
            collection = collection_of(params)
            fmt = hash_lists.check_format(params["format"] or "jsonl")
            page = await anyio.to_thread.run_sync(
                lambda: context.matcher.hashes(0, EXPORT_PAGE, collection=collection),
                limiter=context.limiter,
            )
        except MatchError as error:
            return fail(endpoint.name, error.status, error.message)

        async def lines() -> Any:
            for line in hash_lists.write_hash_list([], fmt):
                yield line  # the CSV header
            offset, records = 0, page
            while records:
                for line in hash_lists.write_hash_list(records, fmt, header=False):
                    yield line
                offset += len(records)
                if len(records) < EXPORT_PAGE:
                    break
                page_at = partial(
                    context.matcher.hashes, offset, EXPORT_PAGE, collection=collection
                )
                records = await anyio.to_thread.run_sync(page_at, limiter=context.limiter)

        media = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return StreamingResponse(lines(), media_type=f"{media}; charset=utf-8")

    respond.__name__ = "hashes_export_endpoint"
    return respond


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "/hashes",
        ("POST",),
        "hashes",
        "Import a hash list: hash-only records (a PDQ hash and metadata, no image) from a CSV "
        "or JSON lines file with pdq, filepath and optional quality and metadata; an existing "
        "filepath is replaced. Bad lines are reported and skipped.",
        import_hashes,
        (
            Param("file", "file", "The CSV or JSON lines file.", required=True),
            FORMAT,
            COLLECTION,
        ),
        {
            "type": "object",
            "properties": {
                "added": {"type": "integer"},
                "failed": {"type": "integer"},
                "errors": {"type": "array", "items": {"type": "object"}},
            },
        },
        errors=(400, 403, 413, 503),
    ),
    Endpoint(
        "/hashes",
        ("GET",),
        "hashes",
        "Export the hash-only records in the import's format (a file of lines, not the "
        "envelope), in insertion order.",
        lambda context, params: [],
        (FORMAT, COLLECTION),
        errors=(400, 403, 503),
        responder=_export_responder,
        media=("application/x-ndjson", "text/csv"),
    ),
    Endpoint(
        "/hashes/search",
        ("POST",),
        "hashes/search",
        "Look up a list of PDQ hashes at once: for each hash, in the list's order, every stored "
        "record (images and hash-only records) within max_distance, nearest first. Far cheaper "
        "than one /search by pdq per hash.",
        search_hashes,
        (
            Param(
                "pdq",
                "string",
                "PDQ hashes (64 hex digits each): the field repeated, a JSON array, or one text "
                "of hashes separated by spaces, commas or line breaks.",
            ),
            Param(
                "file",
                "file",
                "A file of hashes: one or more a line, or a hash list (CSV with a pdq column, "
                "or JSON lines with a pdq key).",
            ),
            MIN_SCORE,
            Param(
                "limit",
                "integer",
                "At most this many matches for each hash.",
                default=100,
                minimum=1,
                maximum=MAX_LIMIT,
            ),
            COLLECTION,
            FILTER,
            *(p for p in PDQ_SEARCH_PARAMS if p.name != "pdq"),
        ),
        {
            "type": "object",
            "properties": {
                "pdq": {"type": "string", "description": "The hash looked up (hex)."},
                "matches": {
                    "type": "array",
                    "description": "Its matches, as /search answers them, nearest first.",
                    "items": {
                        "type": "object",
                        "properties": {
                            "score": SCORE,
                            "filepath": {"type": "string"},
                            **PDQ_RESULT,
                        },
                    },
                },
            },
        },
        errors=(400, 403, 413, 415, 503),
    ),
    Endpoint(
        "/hashes",
        ("DELETE",),
        "hashes",
        "Delete the hash-only record stored under a filepath.",
        delete_hash,
        (
            Param("filepath", "string", "The hash-only record's filepath.", required=True),
            COLLECTION,
        ),
        errors=(400, 403, 404, 503),
    ),
)
