"""What a search or comparison answers, the one rule that says whether a score is a match, and
the one way a result becomes JSON: ``as_json`` and ``envelope``, which the HTTP API (both
flavours) and the CLI's --json both use.

    {"status": "ok" | "fail", "error": [messages], "method": "<name>", "result": [...]}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from match.service.outlines import Outline

Metadata = dict[str, Any] | None

SCORE_TOLERANCE = 1e-9
"""min_score is inclusive: a score within float rounding of it still counts."""


@dataclass(frozen=True)
class Match:
    """One stored image that matches a query, by one method: ``signature`` (the whole frame,
    scored 100 * (1 - distance)), ``local`` (partial matching, at most 99) or ``pdq`` (a PDQ
    hash within the Hamming distance, scored by pdq_scores.score_of_distance)."""

    filepath: str
    score: float
    metadata: Metadata
    orientation: str  # which orientation of the query matched (signature.ORIENTATIONS)
    method: str = "signature"
    # percent of the query lying inside the stored image, and of the stored image inside the
    # query; a signature match covers both whole frames
    query_overlap: float = 100.0
    target_overlap: float = 100.0
    # where each image's frame lies in the other (service/outlines.py); None: a size unknown
    query_outline: Outline | None = None
    target_outline: Outline | None = None
    mirrored: bool = False  # the query matched as a mirror image
    # the stored record's PDQ hash (hex) and quality, when it has one (service/pdq_scores.py)
    pdq: str | None = None
    pdq_quality: int | None = None
    pdq_distance: int | None = None  # method pdq: the Hamming distance to the query's hash
    pdq_low_quality: bool = False  # method pdq: a hash of quality below MATCH_PDQ_MIN_QUALITY
    hash_only: bool = False  # the stored record is a hash-only record (no image)


@dataclass(frozen=True)
class Comparison:
    """How well two images match, by the better method."""

    score: float
    method: str = "signature"
    orientation: str = "original"
    query_overlap: float = 100.0
    target_overlap: float = 100.0
    query_outline: Outline | None = None
    target_outline: Outline | None = None
    mirrored: bool = False


def score_of(distance: float) -> float:
    """The signature's score for a normalized distance."""
    return 100.0 * (1.0 - float(distance))


def is_match(score: float, cutoff: float, min_score: float = 0.0) -> bool:
    """The one rule for every method and route: a score matches when its distance equivalent is
    under the cutoff (strictly) and it is at least min_score (inclusively)."""
    return 1.0 - score / 100.0 < cutoff and score >= min_score - SCORE_TOLERANCE


def as_json(result: Match | Comparison) -> dict[str, Any]:
    """A result as the API and the CLI print it: everything it has."""
    item: dict[str, Any] = {"score": result.score}
    if isinstance(result, Match):
        item |= {"filepath": result.filepath, "metadata": result.metadata}
    item |= {
        "orientation": result.orientation,
        "mirrored": result.mirrored,
        "method": result.method,
        "query_overlap_percent": result.query_overlap,
        "target_overlap_percent": result.target_overlap,
        "query_outline": result.query_outline,
        "target_outline": result.target_outline,
    }
    if isinstance(result, Match):
        item |= {
            "pdq": result.pdq,
            "pdq_quality": result.pdq_quality,
            "pdq_distance": result.pdq_distance,
            "pdq_low_quality": result.pdq_low_quality,
            "hash_only": result.hash_only,
        }
    return item


def envelope(
    method: str, result: Sequence[Any] = (), *, errors: Iterable[str] = (), **extra: Any
) -> dict[str, Any]:
    """The answer of every route and of the CLI's --json: failed exactly when it has errors.
    Extra top-level keys (TinEye's ``stats``, ``query_image``) come after the four."""
    errors = list(errors)
    body: dict[str, Any] = {
        "status": "fail" if errors else "ok",
        "error": errors,
        "method": method,
        "result": list(result),
    }
    body.update(extra)
    return body
