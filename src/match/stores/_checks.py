"""Checks and conversions of what callers hand the embedded store: each bad value becomes a
``match.errors`` exception naming it, before anything touches the database."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from match.errors import BadParameter, NotFound
from match.signature import SIGNATURE_LENGTH
from match.stores.base import Metadata


def check_filepath(filepath: object) -> str:
    if not isinstance(filepath, str) or not filepath:
        raise BadParameter(f"A filepath must be a non-empty string, got {filepath!r}")
    try:
        filepath.encode("utf-8")
    except UnicodeEncodeError:
        raise BadParameter(f"The filepath {filepath!r} is not valid Unicode") from None
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


def metadata_of(text: str | None) -> Metadata:
    return None if text is None else json.loads(text)


def not_found(filepath: str) -> NotFound:
    return NotFound(f"No image is stored under the filepath {filepath!r}")


def record_name(record: Any) -> str:
    """The filepath of a record for a failure report, or a description of what it was."""
    filepath = getattr(record, "filepath", None)
    return filepath if isinstance(filepath, str) else repr(record)[:200]
