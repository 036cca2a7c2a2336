"""What a partial-matching candidate is read from: one binary doc value per document.

The candidate query returns 200 documents. Reading each one's packed features from `_source`
means decompressing a stored-fields block per hit (`best_compression`), which cost 90% of the
query at 1k documents (docs/scaling.md). A binary doc value is read alone, so every field a
candidate needs is packed into one: its local features, image size, PDQ hash and metadata. The
same bytes stay in `_source` (base64) so a real-time GET reads the record whole.

Layout, little-endian: version (u8), flags (u8: 1 when there is a PDQ hash), image width and
height (u32 each, 0 when unknown), PDQ quality (i16, -1 when unknown), the 32-byte hash when
there is one, the metadata's length (u32) and its compact JSON (``null`` for none), then the
packed local features (match.local.codec) to the end.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from match.local import LocalFeatures
from match.local import pack as pack_local
from match.local import unpack as unpack_local

VERSION = 1
_HEADER = struct.Struct("<BBIIh")
_HAS_PDQ = 1
_LENGTH = struct.Struct("<I")
_PDQ_BYTES = 32


@dataclass(frozen=True)
class CandidateFields:
    """What a document's candidate doc value holds."""

    local: LocalFeatures
    size: tuple[int, int] | None
    pdq: bytes | None
    pdq_quality: int | None
    metadata: dict[str, Any] | None


def pack(fields: CandidateFields) -> bytes:
    """The doc value of ``fields`` (their metadata checked already: stores/checks.py)."""
    width, height = fields.size or (0, 0)
    pdq = fields.pdq if fields.pdq is not None and len(fields.pdq) == _PDQ_BYTES else b""
    quality = fields.pdq_quality if pdq and fields.pdq_quality is not None else -1
    metadata = json.dumps(fields.metadata, separators=(",", ":"), ensure_ascii=False).encode()
    return b"".join(
        (
            _HEADER.pack(VERSION, _HAS_PDQ if pdq else 0, width, height, quality),
            pdq,
            _LENGTH.pack(len(metadata)),
            metadata,
            pack_local(fields.local),
        )
    )


def unpack(data: bytes) -> CandidateFields:
    """ValueError if ``data`` is not a doc value ``pack`` made."""
    if len(data) < _HEADER.size:
        raise ValueError("a candidate doc value is truncated")
    version, flags, width, height, quality = _HEADER.unpack_from(data)
    if version != VERSION:
        raise ValueError(f"a candidate doc value has version {version}")
    offset = _HEADER.size
    pdq = None
    if flags & _HAS_PDQ:
        pdq = data[offset : offset + _PDQ_BYTES]
        offset += _PDQ_BYTES
    if len(data) < offset + _LENGTH.size:
        raise ValueError("a candidate doc value is truncated")
    (length,) = _LENGTH.unpack_from(data, offset)
    offset += _LENGTH.size
    try:
        metadata = json.loads(data[offset : offset + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"a candidate doc value's metadata is unreadable: {error}") from None
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError("a candidate doc value's metadata is not a JSON object")
    local = unpack_local(data[offset + length :])
    size = (width, height) if width and height else None
    known = pdq is not None and quality >= 0
    return CandidateFields(local, size, pdq, quality if known else None, metadata)
