"""The Match application core: images in, matches out, on one store.

``Matcher`` (matcher.py) is what the HTTP app and the CLI call. A search decodes the image once
(analysis.py: signatures in 1 or 8 orientations, and local features), runs both methods and
merges them (methods.py), and answers Matches (results.py, which also turns them into JSON).
"""

from match.service.analysis import Query
from match.service.matcher import Matcher
from match.service.methods import LOCAL_CANDIDATES, LOCAL_SHORTLIST
from match.service.results import (
    Comparison,
    Match,
    Metadata,
    as_json,
    envelope,
    is_match,
    score_of,
)
from match.service.timing import TIMING_OBSERVERS

__all__ = [
    "LOCAL_CANDIDATES",
    "LOCAL_SHORTLIST",
    "TIMING_OBSERVERS",
    "Comparison",
    "Match",
    "Matcher",
    "Metadata",
    "Query",
    "as_json",
    "envelope",
    "is_match",
    "score_of",
]
