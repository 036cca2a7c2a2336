"""Match: reverse image search. The library at the centre of the service.

    from match import Matcher, Settings

    matcher = Matcher(Settings.from_env())       # the store the settings name
    matcher.add("photos/1.jpg", image_bytes, {"id": 7})
    for found in matcher.search(matcher.query(copy_bytes, all_orientations=True)):
        print(found.score, found.filepath, found.method)

The rooms (docs/architecture.md): ``signature`` and ``local`` compute what is matched,
``stores`` keep it, ``service`` searches with it; ``http`` and ``cli`` are thin layers on top.
"""

from match.errors import (
    BadParameter,
    BlankImage,
    FetchError,
    IncompatibleRecord,
    MatchError,
    NotAnImage,
    NotFound,
    StoreUnavailable,
    TooLarge,
    UnsupportedFormat,
    UpstreamError,
)
from match.local import LocalFeatures, local_features
from match.service import Comparison, Match, Matcher, Query, as_json
from match.settings import Settings
from match.signature import (
    ALGORITHM,
    ORIENTATIONS,
    image_signature,
    normalized_distances,
    orientation_signatures,
)
from match.stores import BulkResult, Hit, ImageRecord, LocalCandidate, Store, open_store

__all__ = [
    "ALGORITHM",
    "ORIENTATIONS",
    "BadParameter",
    "BlankImage",
    "BulkResult",
    "Comparison",
    "FetchError",
    "Hit",
    "ImageRecord",
    "IncompatibleRecord",
    "LocalCandidate",
    "LocalFeatures",
    "Match",
    "MatchError",
    "Matcher",
    "NotAnImage",
    "NotFound",
    "Query",
    "Settings",
    "Store",
    "StoreUnavailable",
    "TooLarge",
    "UnsupportedFormat",
    "UpstreamError",
    "as_json",
    "image_signature",
    "local_features",
    "normalized_distances",
    "open_store",
    "orientation_signatures",
]
