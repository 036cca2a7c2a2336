"""Hash-list routes: ``POST /hashes`` imports a CSV or JSON lines file of PDQ hashes as hash-only
records, ``GET /hashes`` exports them in the same format, ``DELETE /hashes`` deletes one. The
format is service/hash_lists.py's; searching by hash is /search's ``pdq`` parameter."""

from __future__ import annotations

import codecs
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from match.errors import MatchError
from match.http.auth import allowed_collections
from match.http.endpoints import AppContext, Endpoint
from match.http.envelope import fail
from match.http.params import Param, Params
from match.http.scoping import COLLECTION, collection_of
from match.service import hash_lists
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
