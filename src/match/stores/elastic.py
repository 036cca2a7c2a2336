"""The Elasticsearch 8/9 and OpenSearch 2/3 store, over their REST API.

One index (ELASTICSEARCH_INDEX), created on first use with a strict mapping (see ``_es_docs``).
Each filepath is one document whose _id is the sha256 of the filepath, so replacing an image is
one atomic index operation; documents image-match wrote (random _ids, ``path`` as text with a
``.keyword`` subfield) are found by the exact keyword and removed when their filepath is
replaced or deleted.

Search asks the engine for candidates sharing a 16-value word with each query signature (all
orientations in one ``_msearch``), reading their signatures from a packed binary doc-values
field (no stored fields: decompressing _source or even _id blocks cost more than the query),
then ranks them by exact distance here and fetches the metadata of the returned page only.

Partial matching: an image's distinct visual words are the tokens of one text field, so
``local_candidates`` is one BM25 ``match`` query whose hits carry their packed local features.
An index made before partial matching (or by image-match) gets these fields when it is opened.

Freshness: adds, deletes and metadata updates return once the change is searchable
(``refresh=wait_for``). With ELASTICSEARCH_BULK_REFRESH=true they return at once and become
searchable at the index's next refresh (within ``refresh_interval``, 1 s by default): faster bulk
loads, at the price of a just-added image being briefly invisible. ``add_many`` waits for one
refresh at its end, not per chunk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import numpy as np

from match.errors import BadParameter, NotFound, StoreUnavailable
from match.local import WORDS
from match.settings import Settings
from match.signature import ALGORITHM, SIGNATURE_LENGTH, normalized_distances, words
from match.stores import _es_docs as docs
from match.stores._es_client import EngineClient, EngineError, IndexMissing
from match.stores.base import BulkResult, Hit, ImageRecord, LocalCandidate, Metadata

log = logging.getLogger(__name__)

T = TypeVar("T")
Action = tuple[dict[str, Any], dict[str, Any] | None, str]  # (action line, source, filepath)

CHUNK = 500  # documents per _bulk request (~2 MB, ~8 MB with local features)
CANDIDATES = 100  # candidates per query signature (image-match's size)
MIN_WORDS = 1  # words a candidate shares with a query signature at least (image-match: 1)
MAX_WINDOW = 10_000  # index.max_result_window: from + size never goes past it
MAX_TERM_BYTES = 32766
MAX_QUERY_WORDS = 1024  # OpenSearch's default max clause count (an image has at most 500)
ITEM_RETRIES = 3  # rounds of re-sending bulk items the engine rejected with 429
ENGINE_FAILURE = "the search engine failed (retry later):"


class ElasticStore:
    def __init__(
        self,
        client: EngineClient,
        index: str = "images",
        *,
        shards: int = 1,
        replicas: int = 0,
        bulk_refresh: bool = False,
        refresh_interval: str = "1s",
        codec: str = "best_compression",
        candidates: int = CANDIDATES,
        min_words: int = MIN_WORDS,
    ) -> None:
        self.client = client
        self.index = index
        self.shards = shards
        self.replicas = replicas
        self.bulk_refresh = bulk_refresh
        self.refresh_interval = refresh_interval
        self.codec = codec
        self.candidates = candidates
        self.min_words = min_words
        self._path_field: str | None = None  # known once the index is ready
        self._seq = docs.SeqClock()

    @classmethod
    def from_settings(cls, settings: Settings) -> ElasticStore:
        """A store on ELASTICSEARCH_URL; connects lazily, so the service starts while the engine
        is down and works once it is up."""
        if not settings.elasticsearch_url:
            raise BadParameter("ELASTICSEARCH_URL is not set")
        client = EngineClient(
            settings.elasticsearch_url,
            api_key=settings.elasticsearch_api_key,
            ca_bundle=settings.elasticsearch_ca_bundle,
            timeout=settings.elasticsearch_timeout,
        )
        return cls(
            client,
            settings.elasticsearch_index,
            shards=settings.elasticsearch_shards,
            replicas=settings.elasticsearch_replicas,
            bulk_refresh=settings.elasticsearch_bulk_refresh,
            refresh_interval=settings.elasticsearch_refresh_interval,
        )

    # -- writes -------------------------------------------------------------------------------
    def add(self, record: ImageRecord) -> None:
        actions, failed = self._call(lambda: self._prepare([record]))
        if failed:
            raise BadParameter(f"The image {record.filepath!r} cannot be stored: {failed[0][1]}")
        result = self._call(lambda: self._send(actions, self._refresh()))
        if result.failed:
            reason = result.failed[0][1]
            if reason.startswith(ENGINE_FAILURE):  # the engine's fault, not the record's
                raise StoreUnavailable(f"The image {record.filepath!r} was not stored: {reason}")
            raise BadParameter(f"The image {record.filepath!r} cannot be stored: {reason}")

    def add_many(self, records: Iterable[ImageRecord]) -> BulkResult:
        """Chunks of CHUNK documents through _bulk. One sender thread sends chunk n (in order)
        while the next is prepared; only the last chunk waits for the refresh."""
        added, failed = 0, []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="match-bulk") as sender:
            in_flight: Future[BulkResult] | None = None
            for chunk, last in _with_last(_chunks(records, CHUNK)):
                actions, invalid = self._call(lambda c=chunk: self._prepare(c))
                if in_flight is not None:
                    result = in_flight.result()
                    added, failed = added + result.added, failed + result.failed
                failed += invalid
                refresh = self._refresh(final=last)
                in_flight = sender.submit(self._call, partial(self._send, actions, refresh))
            if in_flight is not None:
                result = in_flight.result()
                added, failed = added + result.added, failed + result.failed
        return BulkResult(added=added, failed=failed)

    def delete(self, filepath: str) -> None:
        if not self._call(lambda: self._delete(filepath)):
            raise NotFound(f"No image stored under filepath {filepath!r}")

    def update_metadata(self, filepath: str, metadata: Metadata) -> None:
        for _ in range(ITEM_RETRIES):
            if self._call(lambda: self._replace_metadata(filepath, metadata)):
                return
        raise StoreUnavailable(
            f"The metadata of {filepath!r} kept changing concurrently; try again"
        )

    # -- reads --------------------------------------------------------------------------------
    def get(self, filepath: str) -> ImageRecord:
        found = self._call(lambda: self._find(filepath))
        if found is None:
            raise NotFound(f"No image stored under filepath {filepath!r}")
        return docs.record_of(found["_source"])

    def search(
        self, signatures: np.ndarray, cutoff: float, limit: int, offset: int = 0
    ) -> Sequence[Hit]:
        queries = _check_queries(signatures)
        if limit < 0 or offset < 0:
            raise BadParameter("limit and offset must not be negative")
        live = [i for i, row in enumerate(queries) if np.any(row)]  # blank rows match nothing
        if limit == 0 or not live:
            return []
        size = min(MAX_WINDOW, max(self.candidates, offset + limit))
        return self._call(lambda: self._search(queries, live, cutoff, size, offset, limit))

    def local_candidates(self, words: np.ndarray, limit: int) -> Sequence[LocalCandidate]:
        query_words = _check_words(words)
        if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 0:
            raise BadParameter(f"limit must be a non-negative integer, got {limit!r}")
        if limit == 0 or len(query_words) == 0:
            return []
        body = docs.local_query(query_words, min(int(limit), MAX_WINDOW))

        def run() -> list[LocalCandidate]:
            _, found = self.client.request("POST", f"/{self._ready()}/_search", body=body)
            return docs.local_candidates(found["hits"]["hits"])

        return self._call(run)

    def count(self) -> int:
        def run() -> int:
            _, body = self.client.request("GET", f"/{self._ready()}/_count")
            return int(body["count"])

        return self._call(run)

    def list(self, offset: int = 0, limit: int = 20) -> list[str]:
        if limit < 0 or offset < 0:
            raise BadParameter("limit and offset must not be negative")
        if limit == 0:
            return []
        return self._call(lambda: self._list(offset, limit))

    def ping(self) -> None:
        self.count()

    def close(self) -> None:
        self.client.close()

    # -- index --------------------------------------------------------------------------------
    def _ready(self) -> str:
        """The index name, once the engine is checked and the index exists with a path field."""
        if self._path_field is None:
            self.client.engine()
            try:
                self._path_field = self._open_index()
            except EngineError as error:
                if error.kind != "invalid_index_name_exception":
                    raise
                raise StoreUnavailable(
                    f"ELASTICSEARCH_INDEX {self.index!r} is not a valid index name "
                    '(lowercase, none of \\/*?"<>|,# or spaces, not starting with -_+)'
                ) from None
        return self.index

    def _open_index(self) -> str:
        status, body = self.client.request("GET", f"/{self.index}/_mapping", allow=(404,))
        if status == 404:
            self._create_index()
            status, body = self.client.request("GET", f"/{self.index}/_mapping")
        # an alias answers with its concrete index's name
        index_mapping = next(iter(body.values()), {}).get("mappings", {})
        field = docs.path_field(index_mapping)
        if field is None:
            raise StoreUnavailable(
                f"The index {self.index!r} has no exact `path` keyword field: it was not made "
                "by Match or image-match; set ELASTICSEARCH_INDEX to another index"
            )
        added = docs.added_fields(index_mapping)
        if added is not None:
            self._add_fields(added)
        return field

    def _add_fields(self, added: dict[str, Any]) -> None:
        """Declare the fields an older index lacks (image-match's, or Match's before partial
        matching) in place: a mapping may gain fields, and its documents stay as they are."""
        try:
            self.client.request("PUT", f"/{self.index}/_mapping", body=added)
        except EngineError as error:
            if error.kind != "illegal_argument_exception":
                raise
            raise StoreUnavailable(
                f"The index {self.index!r} cannot take Match's fields "
                f"({', '.join(added['properties'])}): {error}"
            ) from None
        log.info("added %s to index %s", ", ".join(added["properties"]), self.index)

    def _create_index(self) -> None:
        body = docs.index_body(self.shards, self.replicas, self.refresh_interval, self.codec)
        try:
            self.client.request("PUT", f"/{self.index}", body=body)
        except EngineError as error:
            if error.kind != "resource_already_exists_exception":  # another worker won
                raise
        log.info("created index %s on %s", self.index, self.client.display_url)

    def _call(self, operation: Callable[[], T]) -> T:
        """Run an operation; if the index vanished (deleted behind our back), create it again
        and retry once, so the store never stays broken."""
        try:
            return operation()
        except IndexMissing:
            self._path_field = None
        try:
            return operation()
        except IndexMissing:
            self._path_field = None
            raise StoreUnavailable(f"The index {self.index!r} disappeared while in use") from None

    def _refresh(self, final: bool = True) -> str:
        return "wait_for" if final and not self.bulk_refresh else "false"

    # -- write helpers ------------------------------------------------------------------------
    def _prepare(self, records: list[ImageRecord]) -> tuple[list[Action], list[tuple[str, str]]]:
        """Bulk actions for a chunk: index each record under its deterministic _id, and delete
        the image-match documents (random _ids) stored under the same filepaths. Invalid
        records are returned as failures with the reason."""
        self._ready()
        failed: list[tuple[str, str]] = []
        valid: list[tuple[ImageRecord, np.ndarray]] = []
        for record in records:
            try:
                docs.check_filepath(record.filepath)
                docs.check_metadata(record.metadata)
                docs.check_local(record.local)
                valid.append((record, docs.check_signature(record.signature)))
            except (ValueError, TypeError) as error:
                failed.append((record.filepath, f"invalid record: {error}"))
        if not valid:
            return [], failed
        signatures = np.stack([signature for _, signature in valid])
        all_words = words(signatures).tolist()
        packed = docs.pack(signatures)
        first = self._seq.take(len(valid))
        actions: list[Action] = []
        for n, ((record, signature), row) in enumerate(zip(valid, all_words, strict=True)):
            doc = docs.document(record, signature, row, first + n, packed[n])
            actions.append(({"index": {"_id": docs.doc_id(record.filepath)}}, doc, record.filepath))
        for legacy_id in self._legacy_ids([record.filepath for record, _ in valid]):
            actions.append(({"delete": {"_id": legacy_id}}, None, ""))
        return actions, failed

    def _send(self, actions: list[Action], refresh: str) -> BulkResult:
        if not actions and refresh == "wait_for":  # nothing valid in the last chunk: still
            self.client.request("POST", f"/{self._ready()}/_refresh")  # show the earlier ones
        added, failed = self._bulk(self._ready(), actions, refresh)
        return BulkResult(added=added, failed=failed)

    def _bulk(
        self,
        index: str,
        actions: list[Action],
        refresh: str,
    ) -> tuple[int, list[tuple[str, str]]]:
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
            _, body = self.client.request(
                "POST", f"/{index}/_bulk", lines=lines, params={"refresh": refresh}
            )
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
                    failed.append((filepath, f"{ENGINE_FAILURE} {_item_reason(result)}"))
                else:
                    failed.append((filepath, _item_reason(result)))
            actions = retry
        return added, failed

    def _legacy_ids(self, filepaths: list[str]) -> list[str]:
        """_ids of documents under these filepaths that are not at their deterministic _id:
        written by image-match or dsys/match. All of them, not only the first 10."""
        filepaths = [path for path in filepaths if _term_fits(path)]
        if not filepaths:
            return []
        own = [docs.doc_id(path) for path in filepaths]
        query = {
            "bool": {
                "filter": [{"terms": {self._path_field: filepaths}}],
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
            _, found = self.client.request("POST", f"/{self.index}/_search", body=body)
            page = [hit["_id"] for hit in found["hits"]["hits"]]
            ids.extend(page)
            if len(page) < MAX_WINDOW:
                return ids

    def _delete(self, filepath: str) -> bool:
        index = self._ready()
        actions = [({"delete": {"_id": docs.doc_id(filepath)}}, None, filepath)]
        actions += [({"delete": {"_id": i}}, None, filepath) for i in self._legacy_ids([filepath])]
        _, body = self.client.request(
            "POST",
            f"/{index}/_bulk",
            params={"refresh": self._refresh()},
            lines=[action for action, _, _ in actions],
        )
        deleted = False
        for item in body["items"]:
            result = item["delete"]
            status = int(result.get("status", 500))
            if status < 300:
                deleted = True
            elif status != 404:
                raise StoreUnavailable(f"Deleting {filepath!r} failed: {_item_reason(result)}")
        return deleted

    def _replace_metadata(self, filepath: str, metadata: Metadata) -> bool:
        """Replace the metadata with optimistic concurrency; False if the document changed
        between read and write (the caller retries)."""
        found = self._find(filepath)
        if found is None:
            raise NotFound(f"No image stored under filepath {filepath!r}")
        source = dict(found["_source"])
        source.pop("metadata", None)
        if metadata is not None:
            source["metadata"] = metadata
        if found["_id"] == docs.doc_id(filepath):  # ours: keep the packed signature
            signature = docs.check_signature(source["signature"])
            source[docs.PACKED_FIELD] = docs.pack(signature[None, :])[0]
        params = {
            "if_seq_no": found["_seq_no"],
            "if_primary_term": found["_primary_term"],
            "refresh": self._refresh(),
        }
        status, _ = self.client.request(
            "PUT", f"/{self.index}/_doc/{found['_id']}", body=source, params=params, allow=(409,)
        )
        return status != 409

    # -- read helpers -------------------------------------------------------------------------
    def _find(self, filepath: str) -> dict[str, Any] | None:
        """The document of a filepath (with _id, _seq_no, _primary_term, _source): ours by _id
        (real-time), else the newest image-match document with that exact path."""
        index = self._ready()
        status, body = self.client.request(
            "GET", f"/{index}/_doc/{docs.doc_id(filepath)}", allow=(404,)
        )
        if status == 200 and body.get("found"):
            return body
        if not _term_fits(filepath):
            return None
        query = {
            "size": 1,
            "seq_no_primary_term": True,
            "query": {"term": {self._path_field: filepath}},
            "sort": [{"timestamp": {"order": "desc", "unmapped_type": "date"}}],
        }
        _, found = self.client.request("POST", f"/{index}/_search", body=query)
        hits = found["hits"]["hits"]
        return hits[0] if hits else None

    def _search(
        self,
        queries: np.ndarray,
        live: list[int],
        cutoff: float,
        size: int,
        offset: int,
        limit: int,
    ) -> list[Hit]:
        """Candidates of every live query row in one _msearch, with their signatures from doc
        values (image-match's documents have no packed copy: their _source is fetched by
        path); exact ranking here; then the metadata of the returned page only."""
        index = self._ready()
        candidates = self._candidates(index, queries[live], size)
        packed = [path for path, value in candidates.items() if value is not None]
        legacy = self._legacy_sources(index, [p for p, v in candidates.items() if v is None])
        paths = packed + [source["path"] for source in legacy]
        if not paths:
            return []
        stored = np.concatenate(
            [
                docs.unpack([candidates[p][0] for p in packed]) if packed else _no_rows(),
                np.asarray([s["signature"] for s in legacy], dtype=np.int8).reshape(
                    -1, SIGNATURE_LENGTH
                ),
            ]
        )
        page = _rank(queries, paths, stored, cutoff)[offset : offset + limit]
        hits = [
            Hit(path, distance, legacy[n - len(packed)].get("metadata"), row)
            for n, path, distance, row in page
            if n >= len(packed)
        ]
        ours = {path: (distance, row) for n, path, distance, row in page if n < len(packed)}
        hits += self._with_metadata(index, ours, candidates, queries, cutoff)
        return sorted(hits, key=lambda hit: (hit.distance, hit.filepath))

    def _with_metadata(
        self,
        index: str,
        ranked: dict[str, tuple[float, int]],
        candidates: dict[str, tuple[str, int | None] | None],
        queries: np.ndarray,
        cutoff: float,
    ) -> list[Hit]:
        """Hits with their metadata, read in one _mget. A document replaced or deleted since
        the search (its insertion sequence changed) is never paired with the other version's
        metadata: a replacement is ranked again by its new signature, a deletion dropped."""
        if not ranked:
            return []
        by_id = {docs.doc_id(path): path for path in ranked}
        _, body = self.client.request(
            "POST",
            f"/{index}/_mget",
            body={"ids": list(by_id)},
            params={"_source_includes": "metadata,seq,signature"},
        )
        hits = []
        for doc in body["docs"]:
            source = doc.get("_source") if doc.get("found") else None
            if source is None:
                continue  # deleted since the search
            path = by_id[doc["_id"]]
            distance, row = ranked[path]
            seen = candidates[path]
            if seen is None or source.get("seq") != seen[1]:  # replaced since the search
                signature = np.asarray(source.get("signature", []), dtype=np.int8)
                if signature.shape != (SIGNATURE_LENGTH,):
                    continue
                distances = normalized_distances(queries, signature[None, :])[:, 0]
                row = int(np.argmin(distances))
                distance = float(distances[row])
                if distance >= cutoff:
                    continue
            hits.append(Hit(path, distance, source.get("metadata"), row))
        return hits

    def _candidates(
        self, index: str, queries: np.ndarray, size: int
    ) -> dict[str, tuple[str, int | None] | None]:
        """{filepath: (packed signature, insertion sequence), or None for image-match's
        documents} of the hits of all query rows, from one _msearch. Hits carry doc values
        only: no stored fields, not even _id, whose loading would cost more than the search."""
        path = self._path_field or "path"
        lines: list[Any] = []
        for row in queries:
            lines += [{}, docs.words_query(row, size, path, self.min_words)]
        _, body = self.client.request("POST", f"/{index}/_msearch", lines=lines)
        found: dict[str, tuple[str, int | None] | None] = {}
        for response in body["responses"]:
            if "error" in response:
                _raise_search_error(response)
            for hit in response["hits"]["hits"]:
                fields = hit.get("fields", {})
                # a signature of another algorithm has no meaningful distance to these
                if fields.get("algorithm", [ALGORITHM])[0] != ALGORITHM:
                    continue
                filepath = fields.get(path, [None])[0]
                if filepath is None:
                    continue  # image-match path too long for its .keyword: not identifiable
                value = fields.get(docs.PACKED_FIELD, [None])[0]
                seq = fields.get("seq", [None])[0]
                packed = (value, seq) if _is_packed(value) else None
                if found.get(filepath) is None:
                    found[filepath] = packed
        return found

    def _legacy_sources(self, index: str, filepaths: list[str]) -> list[dict[str, Any]]:
        """_source of the documents under these filepaths (image-match's, which lack the
        packed signature), in one search."""
        filepaths = [path for path in filepaths if _term_fits(path)]
        if not filepaths:
            return []
        body = {
            "query": {"terms": {self._path_field: filepaths}},
            "size": MAX_WINDOW,
            "_source": docs.SOURCE_FIELDS,
            "track_total_hits": False,
        }
        _, found = self.client.request("POST", f"/{index}/_search", body=body)
        return [
            source
            for source in (hit.get("_source") or {} for hit in found["hits"]["hits"])
            if "path" in source
            and "signature" in source
            and source.get("algorithm", ALGORITHM) == ALGORITHM
        ]

    def _list(self, offset: int, limit: int) -> list[str]:
        index = self._ready()
        sort = docs.list_sort(self._path_field or "path")
        if offset + limit <= MAX_WINDOW:
            return self._list_page(index, sort, {"from": offset, "size": limit})[0]
        after: list[Any] | None = None
        while offset > 0:  # walk to the offset page by page on sort values, not from + size
            body: dict[str, Any] = {
                "size": min(offset, MAX_WINDOW),
                "sort": sort,
                "stored_fields": "_none_",  # sort values come from doc values: skip cheaply
                "track_total_hits": False,
            }
            if after is not None:
                body["search_after"] = after
            _, found = self.client.request("POST", f"/{index}/_search", body=body)
            hits = found["hits"]["hits"]
            if not hits:
                return []
            after, offset = hits[-1]["sort"], offset - len(hits)
        paths: list[str] = []
        while len(paths) < limit:
            window = {"size": min(limit - len(paths), MAX_WINDOW)}
            if after is not None:
                window["search_after"] = after
            page, after = self._list_page(index, sort, window)
            paths += page
            if not page:
                break
        return paths

    def _list_page(
        self, index: str, sort: list[Any], window: dict[str, Any]
    ) -> tuple[list[str], list[Any] | None]:
        """Paths of one page and the sort values to continue after it."""
        body = {**window, "sort": sort, "_source": ["path"], "track_total_hits": False}
        _, found = self.client.request("POST", f"/{index}/_search", body=body)
        hits = found["hits"]["hits"]
        return [hit["_source"]["path"] for hit in hits], (hits[-1]["sort"] if hits else None)


def _term_fits(filepath: str) -> bool:
    """Whether the filepath can be a keyword term at all (Lucene's limit is 32766 bytes)."""
    return len(filepath.encode("utf-8", "surrogatepass")) <= MAX_TERM_BYTES


def _with_last(chunks: Iterator[list[ImageRecord]]) -> Iterator[tuple[list[ImageRecord], bool]]:
    """Each chunk with whether it is the last one."""
    previous = next(chunks, None)
    for chunk in chunks:
        yield previous, False
        previous = chunk
    if previous is not None:
        yield previous, True


def _chunks(records: Iterable[ImageRecord], size: int) -> Iterator[list[ImageRecord]]:
    chunk: list[ImageRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _check_words(words: np.ndarray) -> np.ndarray:
    """The distinct query words, sorted; BadParameter unless a 1-d array of visual words."""
    array = np.asarray(words)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise BadParameter(f"Query words must be a 1-d array of integers, got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= WORDS):
        raise BadParameter(f"Query words are visual words from 0 to {WORDS - 1}")
    distinct = np.unique(array.astype(np.int64))
    if len(distinct) > MAX_QUERY_WORDS:
        raise BadParameter(
            f"A query has at most {MAX_QUERY_WORDS} distinct visual words, not {len(distinct)}"
        )
    return distinct


def _check_queries(signatures: np.ndarray) -> np.ndarray:
    queries = np.atleast_2d(np.asarray(signatures))
    if queries.ndim != 2 or queries.shape[1] != SIGNATURE_LENGTH or len(queries) == 0:
        raise BadParameter(f"Query signatures must have shape (k, {SIGNATURE_LENGTH})")
    return queries.astype(np.int8)


def _rank(
    queries: np.ndarray, paths: list[str], stored: np.ndarray, cutoff: float
) -> list[tuple[int, str, float, int]]:
    """(candidate index, filepath, distance, query row) of each image once, at its smallest
    distance to any query row; under the cutoff; best first, then by filepath."""
    distances = normalized_distances(queries, stored)  # (k, n)
    rows = np.argmin(distances, axis=0)
    best_distance = distances[rows, np.arange(len(paths))]
    best: dict[str, tuple[int, str, float, int]] = {}
    for n, (path, row, distance) in enumerate(
        zip(paths, rows.tolist(), best_distance.tolist(), strict=True)
    ):
        if distance < cutoff and (path not in best or distance < best[path][2]):
            best[path] = (n, path, float(distance), int(row))
    return sorted(best.values(), key=lambda hit: (hit[2], hit[1]))


def _is_packed(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 4 * docs.PACKED_BYTES // 3


def _no_rows() -> np.ndarray:
    return np.zeros((0, SIGNATURE_LENGTH), dtype=np.int8)


def _item_reason(result: dict[str, Any]) -> str:
    error = result.get("error")
    if isinstance(error, dict):
        reason = f"{error.get('type', 'error')}: {error.get('reason', '')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" ({cause['reason']})"
        return reason[:500]
    return f"HTTP {result.get('status', '?')}"


def _raise_search_error(response: dict[str, Any]) -> None:
    error = response["error"]
    kind = error.get("type", "error") if isinstance(error, dict) else "error"
    if kind == "index_not_found_exception":
        raise IndexMissing("index missing")
    reason = error.get("reason", "") if isinstance(error, dict) else str(error)
    raise StoreUnavailable(f"The search engine failed a search ({kind}: {reason[:300]})")
