"""How many documents hold each visual word, as the engine counts them, cached per process.

The partial-matching candidate query costs about the postings of its words: a photo's ~450
distinct words have about 2 M postings at 100k images (bench/engine_words.py), and the most
frequent of them, which add nearly the same (a low idf) to every document, hold most of them.
``within_budget`` keeps the query's rarest words while their postings fit POSTINGS_BUDGET, as
the embedded store does with its own (stores/sqlite/words.py). A query by terms is budgeted
from the same counts (TERMS_BUDGET, search.py): a term holds about 1/64 of its word's postings.

The counts come from ``_termvectors`` of an artificial document of the words (its
``term_statistics``): one shard's document frequencies, the postings that shard reads, which is
what the budget bounds (shards search in parallel). Deleted documents still count until merged
away, as their postings are still read. A word's count is asked once per MAX_AGE seconds: the
ranking of words by frequency moves slowly once an index is large, and a cached count costs no
request, so a warm process sends none.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from match.local import WORDS
from match.stores.elastic import documents as docs
from match.stores.elastic.client import EngineError
from match.stores.elastic.index import Index
from match.stores.ranking import rarest_within

log = logging.getLogger(__name__)

POSTINGS_BUDGET = 4_000_000
"""Most postings (per shard) one candidate query by words reads (a query without bits, or an
index holding documents of an earlier Match: search.py). Past it, the query's most frequent
words are left out. bench/engine_words.py on es8, 2026-12-07: the
engine's time grows about as the postings read (a photo's words: 2-3 M at 100k images, so the
budget seldom cuts there; about 20 M at 1M); the words a copy shares with its original are
mostly frequent ones: at 1M, 4 M of the 30.9 M postings (p50) keep the original in the
shortlist for the same 73 of 80 queries as all words in 536 ms p50 instead of 4,527; 300k keep
21 of 80 (docs/scaling.md)."""
TERMS_BUDGET = 100_000
"""Most postings (per shard, estimated: search.py) a candidate query by terms reads; past it its
most frequent terms are left out, as the embedded store does (stores/sqlite/words.py). The
engine's time grows with the terms looked up more than with their postings. bench/scale.py on
es8 at 1M, 80 partial-family queries, every term / 500k / 250k / 100k: 657 / 600 / 476 / 344
terms (p50), the engine's ``took`` 110 / 96 / 64 / 42 ms p50, the original in the shortlist
77 of 80 each time (docs/partial-matching.md, "The budget with terms"); 20 ms at 100k once the
index is merged into one segment ("The engine's segments")."""
MAX_AGE = 300.0
"""Seconds a word's cached document frequency is used before it is asked again."""
UNKNOWN = -1


class Frequencies:
    """Document frequencies of the visual words of one index, cached."""

    def __init__(self, index: Index) -> None:
        self.index = index
        self._counts = np.full(WORDS, UNKNOWN, dtype=np.int64)
        self._asked = np.zeros(WORDS)  # monotonic time of each count

    def of(self, words: np.ndarray) -> np.ndarray | None:
        """The document frequency of each of these distinct words; None if the engine could
        not tell (then the query keeps every word)."""
        now = time.monotonic()
        stale = (self._counts[words] == UNKNOWN) | (now - self._asked[words] > MAX_AGE)
        if stale.any():
            asked = words[stale]
            try:
                counts = self._ask(asked)
            except EngineError as error:  # a refused request (a proxy's 405): go on without
                log.warning("document frequencies unavailable (%s): every word is queried", error)
                return None
            self._counts[asked] = counts
            self._asked[asked] = now
        return self._counts[words].copy()

    def _ask(self, words: np.ndarray) -> np.ndarray:
        field = docs.LOCAL_WORDS_FIELD
        body: dict[str, Any] = {
            "doc": {field: " ".join(map(str, words.tolist()))},
            "fields": [field],
            "term_statistics": True,
            "field_statistics": False,
            "positions": False,
            "offsets": False,
        }
        _, found = self.index.request("POST", "/_termvectors", body=body)
        terms = (found.get("term_vectors") or {}).get(field, {}).get("terms", {})
        return np.array(
            [int(terms.get(str(word), {}).get("doc_freq", 0)) for word in words.tolist()],
            dtype=np.int64,
        )

    def within_budget(self, words: np.ndarray) -> np.ndarray:
        """These distinct words, less the most frequent ones if all would read more than
        POSTINGS_BUDGET postings (the rarest is always kept)."""
        counts = self.of(words)
        return words if counts is None else rarest_within(words, counts, POSTINGS_BUDGET)
