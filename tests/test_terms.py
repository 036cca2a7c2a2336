"""Index terms (match.local.terms): a word refined by the low Hamming bits of its keypoint."""

from __future__ import annotations

import numpy as np

from match.local import WORDS
from match.local.terms import (
    PROBE_RADIUS,
    TERM_BITS,
    TERMS,
    probe_terms,
    stored_terms,
    terms,
    terms_blob,
)
from match.local.verify import LocalFeatures


def test_a_term_is_the_word_and_its_low_bits() -> None:
    words = np.array([0, 5, WORDS - 1], dtype=np.uint32)
    bits = np.array([0, (1 << 63) | 0b101, 2**64 - 1], dtype=np.uint64)
    low = (1 << TERM_BITS) - 1
    assert terms(words, bits).tolist() == [0, (5 << TERM_BITS) | 0b101, TERMS - 1]
    assert terms(words, bits).tolist()[2] == ((WORDS - 1) << TERM_BITS) | low


def test_bits_past_the_term_bits_never_change_a_term() -> None:
    rng = np.random.default_rng(3)
    words = rng.integers(0, WORDS, 200).astype(np.uint32)
    bits = rng.integers(0, 2**63, 200, dtype=np.uint64)
    flipped = bits ^ np.uint64(0xFFFF_FFFF_FFFF_FFFF ^ ((1 << TERM_BITS) - 1))
    assert np.array_equal(terms(words, bits), terms(words, flipped))
    # a flip inside the term's bits moves it, and a query probes it only within its radius
    moved = bits ^ np.uint64(1)
    assert not np.any(terms(words, bits) == terms(words, moved))
    probed = set(probe_terms(words, bits).tolist())
    assert probed >= set(terms(words, bits).tolist())
    one_away = set(terms(words, moved).tolist())
    assert one_away <= probed if PROBE_RADIUS >= 1 else not one_away & probed


def test_stored_terms_are_distinct_sorted_and_packed_as_uint32() -> None:
    words = np.array([9, 3, 9, 9], dtype=np.uint32)
    bits = np.array([1, 2, 1, 3], dtype=np.uint64)
    expected = sorted({(9 << TERM_BITS) | 1, (3 << TERM_BITS) | 2, (9 << TERM_BITS) | 3})
    assert stored_terms(words, bits).tolist() == expected
    features = LocalFeatures(np.zeros((4, 2), np.float32), words, bits, (640, 480))
    assert np.frombuffer(terms_blob(features), "<u4").tolist() == expected


def test_without_bits_a_query_looks_up_every_term_of_its_words() -> None:
    found = probe_terms(np.array([7, 2, 7]), None)
    n = 1 << TERM_BITS
    assert found.tolist() == [*range(2 * n, 3 * n), *range(7 * n, 8 * n)]
