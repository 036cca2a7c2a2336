"""Writes to the index: records as bulk actions, deletions, metadata updates.

Each filepath is one document at a deterministic _id, so replacing an image is one atomic index
operation. Documents image-match or dsys/match wrote under the same filepath (lookup.py) are
deleted in the same bulk request when their filepath is replaced or deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

from match.errors import BadParameter, MatchError, StoreUnavailable
from match.signature import words
from match.stores import checks
from match.stores.base import BulkResult, ImageRecord, Metadata
from match.stores.elastic import documents as docs
from match.stores.elastic import lookup
from match.stores.elastic.index import Index
from match.stores.filters import DEFAULT_COLLECTION, check_collection

Action = tuple[dict[str, Any], dict[str, Any] | None, str]  # (action line, source, filepath)

CHUNK = 500  # documents per _bulk request (~2 MB, ~8 MB with local features)
ITEM_RETRIES = 3  # rounds of re-sending bulk items the engine rejected with 429
ENGINE_FAILURE = "the search engine failed (retry later):"


class Writer:
    def __init__(self, index: Index, algorithm: str) -> None:
        self.index = index
        self.algorithm = algorithm
        self._seq = docs.SeqClock()

    def add(self, record: ImageRecord) -> None:
        actions, failed = self.index.call(lambda: self._prepare([record]))
        if failed:
            raise BadParameter(f"The image {failed[0][0]!r} cannot be stored: {failed[0][1]}")
        result = self.index.call(lambda: self._send(actions, "false"))
        if result.failed:
            reason = result.failed[0][1]
            if reason.startswith(ENGINE_FAILURE):  # the engine's fault, not the record's
                raise StoreUnavailable(f"The image {record.filepath!r} was not stored: {reason}")
            raise BadParameter(f"The image {record.filepath!r} cannot be stored: {reason}")
        self.index.call(self.index.searchable)

    def add_many(self, records: Iterable[ImageRecord]) -> BulkResult:
        """Chunks of CHUNK documents through _bulk. One sender thread sends chunk n (in order)
        while the next is prepared; one refresh at the end makes them all searchable."""
        added, failed = 0, []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="match-bulk") as sender:
            in_flight: Future[BulkResult] | None = None
            for chunk in _chunks(records, CHUNK):
                actions, invalid = self.index.call(lambda c=chunk: self._prepare(c))
                if in_flight is not None:
                    result = in_flight.result()
                    added, failed = added + result.added, failed + result.failed
                failed += invalid
                in_flight = sender.submit(self.index.call, partial(self._send, actions, "false"))
            if in_flight is not None:
                result = in_flight.result()
                added, failed = added + result.added, failed + result.failed
        if added:
            self.index.call(self.index.searchable)
        return BulkResult(added=added, failed=failed)

    def delete(self, filepath: str, collection: str) -> None:
        filepath = checks.check_filepath(filepath)
        collection = check_collection(collection)
        if not self.index.call(lambda: self._delete(filepath, collection)):
            raise checks.not_found(filepath, collection)

    def update_metadata(self, filepath: str, metadata: Metadata, collection: str) -> None:
        filepath = checks.check_filepath(filepath)
        collection = check_collection(collection)
        checks.metadata_json(metadata, filepath)
        for _ in range(ITEM_RETRIES):
            if self.index.call(lambda: self._replace_metadata(filepath, metadata, collection)):
                return
        raise StoreUnavailable(
            f"The metadata of {filepath!r} kept changing concurrently; try again"
        )

    def delete_all(self, clauses: list[dict[str, Any]]) -> int:
        """Delete every document in scope, a page at a time (the integ-test distributions have
        no _delete_by_query: it lives in the reindex module); how many were deleted."""

        def page() -> list[str]:
            body = {
                "query": {"bool": {"filter": clauses}},
                "size": lookup.MAX_WINDOW,
                "_source": False,
                "track_total_hits": False,
                "sort": ["_doc"],
            }
            _, found = self.index.request("POST", "/_search", body=body)
            return [hit["_id"] for hit in found["hits"]["hits"]]

        deleted = 0
        while ids := self.index.call(page):
            lines = [{"delete": {"_id": i}} for i in ids]
            _, body = self.index.call(
                lambda lines=lines: self.index.request(
                    "POST", "/_bulk", lines=lines, params={"refresh": "wait_for"}
                )
            )
            deleted += sum(1 for item in body["items"] if item["delete"].get("status") == 200)
        return deleted

    # -- helpers ----------------------------------------------------------------------------
    def _prepare(self, records: list[ImageRecord]) -> tuple[list[Action], list[tuple[str, str]]]:
        """Bulk actions for a chunk: index each record under its deterministic _id, and delete
        the image-match documents (random _ids) stored under the same filepaths. Invalid
        records are returned as failures with the reason."""
        failed: list[tuple[str, str]] = []
        valid: list[checks.CheckedRecord] = []
        for record in records:
            try:
                valid.append(checks.check_record(record, self.algorithm))
            except MatchError as error:
                failed.append((checks.record_name(record), error.message))
        if not valid:
            return [], failed
        signatures = np.stack([record.signature for record in valid])
        all_words = words(signatures).tolist()
        packed = docs.pack(signatures)
        first = self._seq.take(len(valid))
        actions: list[Action] = []
        for n, (record, row) in enumerate(zip(valid, all_words, strict=True)):
            doc = docs.document(record, record.signature, row, first + n, packed[n])
            own = docs.doc_id(record.filepath, record.collection)
            actions.append(({"index": {"_id": own}}, doc, record.filepath))
        default = [r.filepath for r in valid if r.collection == DEFAULT_COLLECTION]
        for legacy_id in lookup.legacy_ids(self.index, default):
            actions.append(({"delete": {"_id": legacy_id}}, None, ""))
        return actions, failed

    def _send(self, actions: list[Action], refresh: str) -> BulkResult:
        added, failed = self._bulk(actions, refresh)
        return BulkResult(added=added, failed=failed)

    def _bulk(self, actions: list[Action], refresh: str) -> tuple[int, list[tuple[str, str]]]:
        """Send actions; re-send the items rejected as overloaded (429); report the rest."""
        added, failed = 0, []
        for attempt in range(ITEM_RETRIES + 1):
            if not actions:
                break
            lines: list[Any] = []
            for action, source, _ in actions:
                lines.append(action)
                if source is not None:
                    lines.append(source)
            _, body = self.index.request("POST", "/_bulk", lines=lines, params={"refresh": refresh})
            retry = []
            for (action, source, filepath), item in zip(actions, body["items"], strict=True):
                kind, result = next(iter(item.items()))
                status = int(result.get("status", 500))
                if kind == "delete":
                    continue  # a legacy duplicate already gone is fine
                if status < 300:
                    added += 1
                elif status == 429 and attempt < ITEM_RETRIES:
                    retry.append((action, source, filepath))
                elif status == 429 or status >= 500:
                    failed.append((filepath, f"{ENGINE_FAILURE} {item_reason(result)}"))
                else:
                    failed.append((filepath, item_reason(result)))
            actions = retry
        return added, failed

    def _delete(self, filepath: str, collection: str) -> bool:
        actions = [({"delete": {"_id": docs.doc_id(filepath, collection)}}, None, filepath)]
        if collection == DEFAULT_COLLECTION:
            legacy = lookup.legacy_ids(self.index, [filepath])
            actions += [({"delete": {"_id": i}}, None, filepath) for i in legacy]
        _, body = self.index.request(
            "POST",
            "/_bulk",
            params={"refresh": self.index.refresh_param()},
            lines=[action for action, _, _ in actions],
        )
        deleted = False
        for item in body["items"]:
            result = item["delete"]
            status = int(result.get("status", 500))
            if status < 300:
                deleted = True
            elif status != 404:
                raise StoreUnavailable(f"Deleting {filepath!r} failed: {item_reason(result)}")
        return deleted

    def _replace_metadata(self, filepath: str, metadata: Metadata, collection: str) -> bool:
        """Replace the metadata (and the values filters match) with optimistic concurrency;
        False if the document changed between read and write (the caller retries)."""
        found = lookup.find(self.index, filepath, collection)
        if found is None:
            raise checks.not_found(filepath, collection)
        source = dict(found["_source"])
        source.pop("metadata", None)
        source.pop(docs.FILTER_FIELD, None)
        if metadata is not None:
            source["metadata"] = metadata
        terms = docs.filter_terms(metadata)
        if terms:
            source[docs.FILTER_FIELD] = terms
        docs.with_candidate_metadata(source, metadata)
        if found["_id"] == docs.doc_id(filepath, collection):  # ours: keep the packed signature
            signature = checks.check_signature(source["signature"], filepath)
            source[docs.PACKED_FIELD] = docs.pack(signature[None, :])[0]
        params = {
            "if_seq_no": found["_seq_no"],
            "if_primary_term": found["_primary_term"],
            "refresh": self.index.refresh_param(),
        }
        status, _ = self.index.request(
            "PUT", f"/_doc/{found['_id']}", body=source, params=params, allow=(409,)
        )
        return status != 409


def item_reason(result: dict[str, Any]) -> str:
    """The reason the engine gives for a failed bulk item, short."""
    error = result.get("error")
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" ({cause['reason']})"
        return reason[:500]
    return f"HTTP {result.get('status', '?')}"


def _chunks(records: Iterable[ImageRecord], size: int) -> Iterator[list[ImageRecord]]:
    chunk: list[ImageRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
