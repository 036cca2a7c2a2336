"""What ElasticStore keeps in the engine: the index mapping and the documents (bodies.py has
the query bodies).

Documents keep image-match 1.x's shape (``path``, ``signature``, ``metadata``, ``simple_word_0``
... ``simple_word_62``, ``timestamp``) so an index written by image-match or dsys/match stays
searchable, plus ``algorithm`` (which signature made the record) and ``seq`` (insertion order)
and, for partial matching, the image's visual words as tokens (``local_words``), its terms
(match.local.terms: a word and 6 Hamming bits, ``local_terms``), and, in one binary doc value,
its packed local features with what else a candidate needs (``local_candidate``,
candidate.py). Documents written before that field existed carry the features in
``local_features`` instead (`_source` only), which is still read; documents written before the
terms have none (search.py still finds them by their words).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import logging
import struct
import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from match import pdq
from match.errors import MatchError
from match.local import LocalFeatures
from match.local import unpack as unpack_local
from match.local.terms import stored_terms
from match.signature import ALGORITHM, SIGNATURE_LENGTH, WORD_COUNT
from match.stores.base import ImageRecord
from match.stores.checks import CheckedRecord
from match.stores.elastic import candidate
from match.stores.filters import DEFAULT_COLLECTION, Indexed, indexed_fields

log = logging.getLogger(__name__)

WORD_FIELDS = tuple(f"simple_word_{i}" for i in range(WORD_COUNT))
SOURCE_FIELDS = ["path", "signature", "metadata", "algorithm"]
PACKED_FIELD = "signature_packed"
PACKED_BYTES = SIGNATURE_LENGTH // 3 * 7 // 8  # 3 values (125 combinations) in 7 bits: 189
LOCAL_WORDS_FIELD = "local_words"
LOCAL_TERMS_FIELD = "local_terms"
LOCAL_FIELD = "local_features"  # documents written before CANDIDATE_FIELD existed
CANDIDATE_FIELD = "local_candidate"
LOCAL_SOURCE = ["path", "metadata", LOCAL_FIELD, "width", "height", "pdq", "pdq_quality"]
"""What a candidate of a document without the candidate doc value is read from."""
COLLECTION_FIELD = "collection"
PDQ_FIELD = "pdq"
PDQ_TERMS_FIELD = "pdq_terms"
FILTER_FIELD = "filter_terms"
THUMBNAIL_FIELD = "thumbnail"
_TRIPLET = np.array([25, 5, 1], dtype=np.int64)
_SEVEN_BITS = 1 << np.arange(6, -1, -1)


def mapping() -> dict[str, Any]:
    """Explicit and strict: an unknown field is an error, never a guessed type."""
    properties: dict[str, Any] = {
        "path": {"type": "keyword"},
        # only read back from _source, never searched: no index, no doc values
        "signature": {"type": "byte", "index": False, "doc_values": False},
        "metadata": {"type": "object", "enabled": False},
        "timestamp": {"type": "date"},
        "algorithm": {"type": "keyword"},
        "seq": {"type": "long", "index": False},
        PACKED_FIELD: {"type": "binary", "doc_values": True},
        **collection_fields(),
    }
    # keyword terms: exact term lookups in the inverted index, scored by rarity (BM25 idf)
    for field in WORD_FIELDS:
        properties[field] = {"type": "keyword", "doc_values": False}
    properties.update(local_fields())
    properties.update(pdq_fields())
    # the web page's thumbnail (service/thumbnails.py): read back by filepath only; binary
    # fields are never indexed and, without doc values, cost only their bytes in _source
    properties[THUMBNAIL_FIELD] = {"type": "binary"}
    # the packed copy stays in _source too: excluding it makes Elasticsearch keep a second,
    # full copy of every document (_recovery_source) for hours, which costs more than it saves
    return {"dynamic": "strict", "properties": properties}


def local_fields() -> dict[str, Any]:
    """The fields of partial matching. Each distinct visual word is one token of a text field
    (the ``standard`` analyzer keeps decimal numbers whole, and is in every distribution) indexed
    without frequencies or norms: BM25 then scores a document by the sum of the idf of the words
    it shares with the query, i.e. binary tf weighted by rarity. Each distinct term is a token
    of another such field: a query with its keypoints' bits looks up terms, one without them
    words. A candidate's fields are read
    from a binary doc value (candidate.py); older documents' packed features only from _source
    (binary: never indexed, no doc values)."""
    tokens = {"type": "text", "analyzer": "standard", "index_options": "docs", "norms": False}
    return {
        LOCAL_WORDS_FIELD: tokens,
        LOCAL_TERMS_FIELD: tokens,
        LOCAL_FIELD: {"type": "binary"},
        CANDIDATE_FIELD: {"type": "binary", "doc_values": True},
    }


def pdq_fields() -> dict[str, Any]:
    """The fields of PDQ (match.pdq): the hash's hex and quality, only read back, and its 16
    multi-index terms as keywords (``p:vvvv``, position and value in hex) for lookups."""
    return {
        PDQ_FIELD: {"type": "keyword", "index": False, "doc_values": False},
        "pdq_quality": {"type": "integer", "index": False},
        PDQ_TERMS_FIELD: {"type": "keyword", "doc_values": False},
    }


def pdq_terms(packed: bytes) -> list[str]:
    """The keyword terms of a 32-byte hash: ``position:value``, both in hex."""
    return [term_keyword(term) for term in pdq.terms_of(packed)]


def term_keyword(term: int) -> str:
    return f"{term >> 16:x}:{term & 0xFFFF:04x}"


def pdq_source(packed: bytes | None, quality: int | None) -> dict[str, Any]:
    if packed is None:
        return {}
    source: dict[str, Any] = {PDQ_FIELD: pdq.to_hex(packed), PDQ_TERMS_FIELD: pdq_terms(packed)}
    if quality is not None:
        source["pdq_quality"] = quality
    return source


def pdq_of(source: dict[str, Any]) -> tuple[bytes | None, int | None]:
    """A document's PDQ hash and quality (None, None when it has none or it is unreadable)."""
    text = source.get(PDQ_FIELD)
    try:
        packed = pdq.from_hex(text) if isinstance(text, str) else None
    except MatchError:
        packed = None
    quality = source.get("pdq_quality")
    return packed, quality if isinstance(quality, int) and packed is not None else None


def collection_fields() -> dict[str, Any]:
    """The fields of collections and filters. ``collection`` is absent from documents written
    before collections (and by image-match): they are in the default one. ``filter_terms``
    holds one keyword per filterable metadata value (``filter_terms`` below)."""
    return {
        COLLECTION_FIELD: {"type": "keyword"},
        FILTER_FIELD: {"type": "keyword", "doc_values": False},
        "width": {"type": "integer", "index": False},
        "height": {"type": "integer", "index": False},
    }


def filter_terms(metadata: dict[str, Any] | None) -> list[str]:
    """One keyword per filterable value of the metadata (stores/filters.py): the key, U+001F,
    the kind and the value, with numbers as 16 hex digits that sort as the numbers do, so a
    numeric range is a range of keywords (bodies.filter_clauses)."""
    return [filter_term(key, value) for key, value in indexed_fields(metadata)]


def filter_term(key: str, value: Indexed) -> str:
    kind, content = value
    if kind == "n":
        assert isinstance(content, float)
        return f"{key}\x1fn{sortable_number(content)}"
    if kind == "b":
        return f"{key}\x1fb{int(bool(content))}"
    if kind == "z":
        return f"{key}\x1fz"
    return f"{key}\x1fs{content}"


def sortable_number(number: float) -> str:
    """A float64 as 16 hex digits whose lexicographic order is the numbers' order: the sign bit
    flipped for positives, every bit for negatives."""
    bits = struct.unpack(">Q", struct.pack(">d", number))[0]
    bits = bits ^ 0xFFFF_FFFF_FFFF_FFFF if bits >> 63 else bits | 1 << 63
    return f"{bits:016x}"


def added_fields(index_mapping: dict[str, Any]) -> dict[str, Any] | None:
    """The mapping update that gives an existing index our fields beyond image-match's, or None
    if it has them all: an index of image-match (whose dynamic mapping would guess a text field
    for the packed signature) or of an earlier Match (without the local features fields)."""
    fields = mapping()["properties"]
    present = index_mapping.get("properties", {})
    missing = {name: fields[name] for name in own_fields() if name not in present}
    return {"properties": missing} if missing else None


def own_fields() -> tuple[str, ...]:
    """The fields Match added to image-match's (which keeps its own types for the others)."""
    return (
        "algorithm",
        "seq",
        PACKED_FIELD,
        *local_fields(),
        *collection_fields(),
        *pdq_fields(),
        THUMBNAIL_FIELD,
    )


def wrong_fields(index_mapping: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field, its type in the index, the type Match needs) for each of Match's own fields
    the index maps otherwise: writes to it would fail and reads answer wrongly."""
    fields = mapping()["properties"]
    present = index_mapping.get("properties", {})
    wrong = []
    for name in own_fields():
        if name in present:
            have = present[name].get("type", "object")
            need = fields[name].get("type", "object")
            if have != need:
                wrong.append((name, have, need))
    return wrong


def index_body(
    shards: int, replicas: int, refresh_interval: str, codec: str = "best_compression"
) -> dict[str, Any]:
    return {
        "settings": {
            "index": {
                "number_of_shards": shards,
                "number_of_replicas": replicas,
                "refresh_interval": refresh_interval,
                # _source is read for get/list/update only (search uses doc values): compress it
                "codec": codec,
            }
        },
        "mappings": mapping(),
    }


def path_field(index_mapping: dict[str, Any]) -> str | None:
    """The field holding the exact filepath: ``path`` in our mapping, ``path.keyword`` in an
    index that image-match filled with dynamic mapping (``path`` analysed text); None if neither."""
    path = index_mapping.get("properties", {}).get("path", {})
    if path.get("type") == "keyword":
        return "path"
    if path.get("fields", {}).get("keyword", {}).get("type") == "keyword":
        return "path.keyword"
    return None


def doc_id(filepath: str, collection: str = DEFAULT_COLLECTION) -> str:
    """Deterministic _id: replacing a filepath is one atomic index operation. The default
    collection's keep the _ids they had before collections."""
    key = filepath if collection == DEFAULT_COLLECTION else f"{collection}\x00{filepath}"
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class SeqClock:
    """Insertion sequence numbers: nanosecond clock, strictly increasing within a process, so
    records added together keep their order and workers' records interleave by time."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def take(self, count: int = 1) -> int:
        """The first of ``count`` consecutive numbers."""
        with self._lock:
            first = max(time.time_ns(), self._last + 1)
            self._last = first + count - 1
            return first


def local_source(record: CheckedRecord | ImageRecord) -> dict[str, Any]:
    """The document fields of a record's local features: each distinct word and each distinct
    term once, as a token (none when there are no keypoints: such an image is never a
    candidate), and the candidate doc value (the features packed with what else a candidate
    needs)."""
    assert record.local is not None
    fields = candidate.CandidateFields(
        record.local, record.size, record.pdq, record.pdq_quality, record.metadata
    )
    source = {CANDIDATE_FIELD: base64.b64encode(candidate.pack(fields)).decode("ascii")}
    distinct = np.unique(np.asarray(record.local.words, dtype=np.int64))
    if len(distinct):
        source[LOCAL_WORDS_FIELD] = " ".join(map(str, distinct.tolist()))
        terms = stored_terms(record.local.words, record.local.bits)
        source[LOCAL_TERMS_FIELD] = " ".join(map(str, terms.tolist()))
    return source


def candidate_of(text: object, path: object) -> candidate.CandidateFields | None:
    """A candidate doc value (base64 text, from _source or doc values); None if it is
    unreadable (logged: the record is still usable by its signature)."""
    try:
        if not isinstance(text, str):
            raise ValueError("not a base64 string")
        # OpenSearch gives binary doc values without base64's padding
        return candidate.unpack(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except ValueError as error:  # binascii.Error is a ValueError
        log.warning("unreadable local features of %r: %s", path, error)
        return None


def local_of(source: dict[str, Any]) -> LocalFeatures | None:
    """The local features of a document's _source, from its candidate value or an older
    document's packed features; None if it has none or they are corrupt (logged)."""
    if source.get(CANDIDATE_FIELD) is not None:
        fields = candidate_of(source[CANDIDATE_FIELD], source.get("path"))
        return fields.local if fields is not None else None
    value = source.get(LOCAL_FIELD)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise ValueError("not a base64 string")
        return unpack_local(base64.b64decode(value, validate=True))
    except ValueError as error:  # binascii.Error is a ValueError
        log.warning("unreadable local features of %r: %s", source.get("path"), error)
        return None


def with_candidate_metadata(source: dict[str, Any], metadata: dict[str, Any] | None) -> None:
    """Rewrite a _source's candidate value for new metadata (a metadata update), in place; an
    unreadable one is left as it is."""
    fields = candidate_of(source.get(CANDIDATE_FIELD), source.get("path"))
    if fields is not None:
        packed = candidate.pack(dataclasses.replace(fields, metadata=metadata))
        source[CANDIDATE_FIELD] = base64.b64encode(packed).decode("ascii")


def pack(signatures: np.ndarray) -> list[str]:
    """Signatures (n, 648) as 189-byte base64 strings, for the binary doc-values field: search
    reads candidates' signatures from doc values, which is far cheaper than their _source."""
    count = len(signatures)
    codes = (signatures.reshape(count, -1, 3).astype(np.int64) + 2) @ _TRIPLET
    bits = np.unpackbits(codes.astype(np.uint8)[..., None], axis=-1)[..., 1:]
    packed = np.packbits(bits.reshape(count, -1), axis=1)
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in packed]


def unpack(texts: list[str]) -> np.ndarray:
    """The inverse of pack: (n, 648) int8. ValueError if a text is not a packed signature."""
    raw = b"".join(base64.b64decode(text, validate=True) for text in texts)
    if len(raw) != PACKED_BYTES * len(texts):
        raise ValueError("not a packed signature")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(len(texts), PACKED_BYTES)
    bits = np.unpackbits(rows, axis=1).reshape(len(texts), -1, 7)
    codes = bits.astype(np.int64) @ _SEVEN_BITS
    digits = np.stack([codes // 25, codes // 5 % 5, codes % 5], axis=-1) - 2
    return digits.reshape(len(texts), SIGNATURE_LENGTH).astype(np.int8)


def document(
    record: CheckedRecord | ImageRecord,
    signature: np.ndarray,
    word_values: list[int],
    seq: int,
    packed: str,
) -> dict[str, Any]:
    """The engine document of a checked record (image-match's field names and order), given its
    signature and its words (computed for a whole chunk at once)."""
    doc: dict[str, Any] = {"path": record.filepath, "signature": signature.tolist()}
    if record.metadata is not None:
        doc["metadata"] = record.metadata
    doc.update(zip(WORD_FIELDS, word_values, strict=True))
    doc["timestamp"] = datetime.now(UTC).isoformat()
    doc["algorithm"] = record.algorithm
    doc["seq"] = seq
    doc[PACKED_FIELD] = packed
    doc[COLLECTION_FIELD] = record.collection
    terms = filter_terms(record.metadata)
    if terms:
        doc[FILTER_FIELD] = terms
    if record.size is not None:
        doc["width"], doc["height"] = record.size
    if record.local is not None:
        doc.update(local_source(record))
    doc.update(pdq_source(record.pdq, record.pdq_quality))
    if record.thumbnail is not None:
        doc[THUMBNAIL_FIELD] = base64.b64encode(record.thumbnail).decode("ascii")
    return doc


def thumbnail_of(source: dict[str, Any]) -> bytes | None:
    """A document's thumbnail; None if it has none (or it is unreadable)."""
    value = source.get(THUMBNAIL_FIELD)
    try:
        return base64.b64decode(value, validate=True) if isinstance(value, str) else None
    except ValueError:
        return None


def record_of(source: dict[str, Any]) -> ImageRecord:
    """A record from a document's _source; image-match's documents carry no algorithm tag and
    were made by the algorithm Match reproduces."""
    return ImageRecord(
        filepath=source["path"],
        signature=np.asarray(source["signature"], dtype=np.int8),
        metadata=source.get("metadata"),
        algorithm=source.get("algorithm") or ALGORITHM,
        local=local_of(source),
        collection=source.get(COLLECTION_FIELD) or DEFAULT_COLLECTION,
        size=size_of(source),
        added=_seconds(source.get("timestamp")),
        pdq=pdq_of(source)[0],
        pdq_quality=pdq_of(source)[1],
        seq=seq if isinstance(seq := source.get("seq"), int) else None,
    )


def size_of(source: dict[str, Any]) -> tuple[int, int] | None:
    width, height = source.get("width"), source.get("height")
    return (int(width), int(height)) if width and height else None


def _seconds(timestamp: object) -> float | None:
    try:
        return datetime.fromisoformat(str(timestamp)).timestamp() if timestamp else None
    except ValueError:
        return None
