"""Checks of what callers hand a store, shared by every engine: each bad value becomes a
BadParameter naming it (and the record's filepath), in one wording, before anything touches a
database or an engine. Also the one NotFound message for a filepath that is not stored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from match import pdq
from match.errors import BadParameter, IncompatibleRecord, NotFound
from match.local import WORDS, LocalFeatures
from match.signature import SIGNATURE_LENGTH
from match.sizes import human_size
from match.stores.base import HashRecord, ImageRecord, Metadata
from match.stores.filters import DEFAULT_COLLECTION, check_collection

MAX_KEYPOINTS = 65535  # the packed form of local features (match.local.codec) counts in a u16
MAX_SIDE = 65535
MAX_FILEPATH_BYTES = 8192  # the default of the setting MATCH_MAX_FILEPATH_BYTES


@dataclass(frozen=True)
class CheckedRecord:
    """A record whose every part was checked: what an engine writes."""

    filepath: str
    algorithm: str
    signature: np.ndarray  # (648,) int8, values -2..2
    metadata: Metadata
    metadata_json: str | None  # the metadata as compact JSON text
    local: LocalFeatures | None
    collection: str
    size: tuple[int, int] | None
    pdq: bytes | None = None
    pdq_quality: int | None = None
    thumbnail: bytes | None = None


def check_record(record: object, algorithm: str) -> CheckedRecord:
    """Every part of a record to store; IncompatibleRecord if another algorithm made it."""
    if not isinstance(record, ImageRecord):
        raise BadParameter(f"Expected an ImageRecord, got {type(record).__name__}")
    filepath = check_filepath(record.filepath)
    if record.algorithm != algorithm:
        raise IncompatibleRecord(
            f"The signature of {filepath!r} was made by {record.algorithm!r}; this store "
            f"holds {algorithm!r} signatures"
        )
    return CheckedRecord(
        filepath,
        algorithm,
        check_signature(record.signature, filepath),
        record.metadata,
        metadata_json(record.metadata, filepath),
        check_local(record.local, filepath),
        check_collection(record.collection),
        check_size(record.size, filepath),
        *check_pdq(record.pdq, record.pdq_quality, filepath, required=False),
        check_thumbnail(record.thumbnail, filepath),
    )


MAX_THUMBNAIL_BYTES = 256 * 1024
"""Largest thumbnail a store accepts (Match's own are about a tenth of that at most)."""


def check_thumbnail(thumbnail: object, filepath: str) -> bytes | None:
    """A record's thumbnail: None, or encoded image bytes of at most MAX_THUMBNAIL_BYTES."""
    if thumbnail is None:
        return None
    if not isinstance(thumbnail, bytes | bytearray) or not thumbnail:
        raise BadParameter(f"The thumbnail of {filepath!r} must be non-empty bytes")
    if len(thumbnail) > MAX_THUMBNAIL_BYTES:
        raise BadParameter(
            f"The thumbnail of {filepath!r} is {len(thumbnail)} bytes; at most "
            f"{MAX_THUMBNAIL_BYTES} are stored"
        )
    return bytes(thumbnail)


def check_hash_record(record: object) -> HashRecord:
    """A hash-only record to store, every part checked."""
    if not isinstance(record, HashRecord):
        raise BadParameter(f"Expected a HashRecord, got {type(record).__name__}")
    filepath = check_new_filepath(record.filepath)
    packed, quality = check_pdq(record.pdq, record.quality, filepath, required=True)
    assert packed is not None
    metadata_json(record.metadata, filepath)
    return HashRecord(
        filepath, packed, quality, record.metadata, check_collection(record.collection)
    )


def check_pdq(
    packed: object, quality: object, filepath: str, *, required: bool
) -> tuple[bytes | None, int | None]:
    """A PDQ hash (32 bytes) and its quality (an integer 0-100, or None when not known)."""
    if packed is None and not required:
        return None, None
    if not isinstance(packed, bytes) or len(packed) != pdq.BYTES:
        raise BadParameter(f"The PDQ hash of {filepath!r} must be {pdq.BYTES} bytes")
    if quality is not None and (
        isinstance(quality, bool)
        or not isinstance(quality, int | np.integer)
        or not 0 <= quality <= 100
    ):
        raise BadParameter(f"The PDQ quality of {filepath!r} must be an integer 0-100")
    return packed, None if quality is None else int(quality)


def check_pdq_queries(hashes: object) -> list[bytes]:
    """Query PDQ hashes: 1 to 8 of 32 bytes."""
    listed = list(hashes) if isinstance(hashes, list | tuple) else []
    if not 1 <= len(listed) <= 8 or not all(
        isinstance(h, bytes) and len(h) == pdq.BYTES for h in listed
    ):
        raise BadParameter(f"PDQ queries must be 1 to 8 hashes of {pdq.BYTES} bytes")
    return listed


def check_pdq_batch(hashes: object) -> list[bytes]:
    """A batch of query PDQ hashes: any number of 32 bytes each."""
    listed = list(hashes) if isinstance(hashes, list | tuple) else None
    if listed is None or not all(isinstance(h, bytes) and len(h) == pdq.BYTES for h in listed):
        raise BadParameter(f"A batch of PDQ queries must be a list of hashes of {pdq.BYTES} bytes")
    return listed


def check_max_distance(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value <= 256:
        raise BadParameter(f"max_distance must be an integer 0-256, not {value!r}")
    return int(value)


@dataclass(frozen=True)
class PdqLookup:
    """The checked arguments of a pdq_search or pdq_search_batch."""

    hashes: list[bytes]
    max_distance: int
    limit: int
    collection: str


def check_pdq_lookup(
    hashes: object, max_distance: object, limit: object, collection: object, *, batch: bool
) -> PdqLookup:
    """The arguments every store's PDQ lookups take, checked in one place (batch: any number
    of hashes, each looked up alone; otherwise 1 to 8, one lookup)."""
    return PdqLookup(
        check_pdq_batch(hashes) if batch else check_pdq_queries(hashes),
        check_max_distance(max_distance),
        non_negative(limit, "limit"),
        check_collection(collection),
    )


def record_name(record: Any) -> str:
    """The filepath of a record for a failure report, or a description of what it was."""
    filepath = getattr(record, "filepath", None)
    return filepath if isinstance(filepath, str) else repr(record)[:200]


def not_found(filepath: str, collection: str = DEFAULT_COLLECTION) -> NotFound:
    where = "" if collection == DEFAULT_COLLECTION else f" in the collection {collection!r}"
    return NotFound(f"No image is stored under the filepath {filepath!r}{where}")


def hash_not_found(filepath: str, collection: str = DEFAULT_COLLECTION) -> NotFound:
    where = "" if collection == DEFAULT_COLLECTION else f" in the collection {collection!r}"
    return NotFound(f"No hash is stored under the filepath {filepath!r}{where}")


def no_collection(collection: str) -> NotFound:
    return NotFound(f"There is no collection {collection!r}")


# -- parts of a record ---------------------------------------------------------------------------
def check_filepath(filepath: object) -> str:
    if not isinstance(filepath, str) or not filepath:
        raise BadParameter(f"A filepath must be a non-empty string, got {filepath!r}")
    try:
        filepath.encode("utf-8")
    except UnicodeEncodeError:
        raise BadParameter(f"The filepath {filepath!r} is not valid Unicode") from None
    return filepath


def check_new_filepath(filepath: object, max_bytes: int = MAX_FILEPATH_BYTES) -> str:
    """A filepath to store a new record under: also not blank, no NUL, at most ``max_bytes``
    of UTF-8. (Filepaths already stored, e.g. by image-match, are read and deleted whatever
    they are.)"""
    if not isinstance(filepath, str) or not filepath.strip():
        raise BadParameter("Parameter 'filepath' must not be empty")
    filepath = check_filepath(filepath)
    if len(filepath.encode()) > max_bytes:
        raise BadParameter(
            f"Parameter 'filepath' is {len(filepath.encode())} bytes, longer than the "
            f"{human_size(max_bytes)} limit (MATCH_MAX_FILEPATH_BYTES)"
        )
    if "\x00" in filepath:
        raise BadParameter("Parameter 'filepath' must not contain NUL characters")
    return filepath


def check_signature(signature: object, filepath: str) -> np.ndarray:
    """The (648,) int8 signature, values -2..2, or BadParameter naming the filepath."""
    array = np.asarray(signature)
    if array.shape != (SIGNATURE_LENGTH,) or array.dtype.kind not in "iu":
        raise BadParameter(
            f"The signature of {filepath!r} must be {SIGNATURE_LENGTH} integers, "
            f"got shape {array.shape} of {array.dtype}"
        )
    if array.size and (array.min() < -2 or array.max() > 2):
        raise BadParameter(f"The signature of {filepath!r} has values outside -2..2")
    return array.astype(np.int8)


def metadata_json(metadata: Metadata, filepath: str) -> str | None:
    """Metadata as JSON text (None stays None); BadParameter if it is not a JSON object."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise BadParameter(
            f"The metadata of {filepath!r} must be a JSON object, got {type(metadata).__name__}"
        )
    try:
        text = json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        text.encode("utf-8")  # lone surrogates cannot be stored
    except (TypeError, ValueError) as error:
        raise BadParameter(f"The metadata of {filepath!r} is not valid JSON: {error}") from None
    return text


def check_size(size: object, filepath: str) -> tuple[int, int] | None:
    """A record's (width, height) in pixels, or None when not known."""
    if size is None:
        return None
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(v, int | np.integer) and 0 < v < 2**31 for v in size)
    ):
        raise BadParameter(
            f"The size of {filepath!r} must be (width, height) positive integers, got {size!r}"
        )
    return int(size[0]), int(size[1])


def metadata_of(text: str | None) -> Metadata:
    return None if text is None else json.loads(text)


def check_local(local: object, filepath: str) -> LocalFeatures | None:
    """A record's local features, consistent and packable, or None when it has none."""
    if local is None:
        return None
    if not isinstance(local, LocalFeatures):
        raise BadParameter(
            f"The local features of {filepath!r} must be LocalFeatures, got {type(local).__name__}"
        )
    points, words, bits = (np.asarray(a) for a in (local.points, local.words, local.bits))
    n = len(words) if words.ndim == 1 else -1
    if (
        n < 0
        or n > MAX_KEYPOINTS
        or points.shape != (n, 2)
        or bits.shape != (n,)
        or words.dtype.kind not in "iu"
        or bits.dtype.kind not in "iu"
        or points.dtype.kind not in "iuf"
    ):
        raise BadParameter(
            f"The local features of {filepath!r} must hold n <= {MAX_KEYPOINTS} (x, y) points, "
            f"words and bit sets, got shapes {points.shape}, {words.shape} and {bits.shape}"
        )
    if n and (words.min() < 0 or words.max() >= WORDS):
        raise BadParameter(f"The local features of {filepath!r} have words outside 0..{WORDS - 1}")
    if n and not np.isfinite(points).all():
        raise BadParameter(f"The local features of {filepath!r} have non-finite points")
    size = local.size
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(v, int | np.integer) and 0 < v <= MAX_SIDE for v in size)
    ):
        raise BadParameter(
            f"The local features of {filepath!r} need a (width, height) size of positive "
            f"integers, got {size!r}"
        )
    return local


# -- queries -------------------------------------------------------------------------------------
def check_queries(signatures: object) -> np.ndarray:
    """(k, 648) int8 query signatures, k >= 1; a single (648,) signature is one row."""
    array = np.asarray(signatures)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != SIGNATURE_LENGTH:
        raise BadParameter(
            f"Query signatures must have shape (k, {SIGNATURE_LENGTH}), got {array.shape}"
        )
    if array.dtype.kind not in "iu":
        raise BadParameter(f"Query signatures must be integers, got {array.dtype}")
    return array.astype(np.int8)


def check_query_bits(words: np.ndarray, bits: object) -> np.ndarray | None:
    """A query's Hamming bits (uint64), one for each of its ``words`` as given, or None."""
    if bits is None:
        return None
    array = np.asarray(bits)
    if array.shape != np.shape(words) or (array.size and array.dtype.kind not in "iu"):
        raise BadParameter(
            f"Query bits must be integers, one for each word ({np.shape(words)}), got shape "
            f"{array.shape} of {array.dtype}"
        )
    return array.astype(np.uint64)


def check_words(words: object) -> np.ndarray:
    """A query's distinct visual words, sorted int64 values in 0..WORDS-1 (may be empty)."""
    array = np.asarray(words)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise BadParameter(
            f"Query words must be a 1-d array of integers, got shape {array.shape} of {array.dtype}"
        )
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= WORDS):
        raise BadParameter(f"Query words must lie in 0..{WORDS - 1}")
    return np.unique(array)


def check_cutoff(cutoff: object) -> float:
    try:
        value = float(cutoff)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise BadParameter(f"The distance cutoff must be a number, got {cutoff!r}") from None
    if math.isnan(value):
        raise BadParameter("The distance cutoff must be a number, got NaN")
    return value


def non_negative(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise BadParameter(f"Parameter '{name}' must be a non-negative integer, got {value!r}")
    return int(value)
