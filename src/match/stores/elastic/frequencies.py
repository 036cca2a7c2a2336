"""How many documents hold each visual word, as the engine counts them, cached per process.

The partial-matching candidate query costs about the postings of its words: a photo's ~450
distinct words have about 2 M postings at 100k images (bench/engine_words.py), and the most
frequent of them, which add nearly the same (a low idf) to every document, hold most of them.
``within_budget`` keeps the query's rarest words while their postings fit POSTINGS_BUDGET, as
the embedded store does with its own (stores/sqlite/words.py).

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
"""Most postings (per shard) one candidate query reads (the embedded store's is 16 M: its 1M
store lost recall at 4 M that the engine's did not). Past it, the query's most frequent words
are left out. bench/engine_words.py on es8, 2026-12-07: the
engine's time grows about as the postings read (a photo's words: 2-3 M at 100k images, so the
budget seldom cuts there; about 20 M at 1M); the words a copy shares with its original are
mostly frequent ones: at 1M, 4 M of the 30.9 M postings (p50) keep the original in the
shortlist for the same 73 of 80 queries as all words in 536 ms p50 instead of 4,527; 300k keep
21 of 80 (docs/scaling.md)."""
MAX_AGE = 300.0
"""Seconds a word's cached document frequency is used before it is asked again."""
UNKNOWN = -1


class Frequencies:
    """Document frequencies of the tokens of one field of one index (words, or terms:
    match.local.terms), cached: ``space`` is how many distinct tokens there can be."""

    def __init__(
        self, index: Index, field: str = docs.LOCAL_WORDS_FIELD, space: int = WORDS
    ) -> None:
        self.index = index
        self.field = field
        # 4 bytes each way a token: 32 MB for the 4 M terms (times 32-bit seconds are exact
        # to a few ms, ample for MAX_AGE)
        self._counts = np.full(space, UNKNOWN, dtype=np.int32)
        self._asked = np.zeros(space, dtype=np.float32)  # monotonic time of each count

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
        body: dict[str, Any] = {
            "doc": {self.field: " ".join(map(str, words.tolist()))},
            "fields": [self.field],
            "term_statistics": True,
            "field_statistics": False,
            "positions": False,
            "offsets": False,
        }
        _, found = self.index.request("POST", "/_termvectors", body=body)
        terms = (found.get("term_vectors") or {}).get(self.field, {}).get("terms", {})
        return np.array(
            [int(terms.get(str(word), {}).get("doc_freq", 0)) for word in words.tolist()],
            dtype=np.int64,
        )

    def within_budget(self, words: np.ndarray) -> np.ndarray:
        """These distinct words, less the most frequent ones if all would read more than
        POSTINGS_BUDGET postings (the rarest is always kept)."""
        counts = self.of(words)
        return words if counts is None else rarest_within(words, counts, POSTINGS_BUDGET)
