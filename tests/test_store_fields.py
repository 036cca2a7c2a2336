"""The embedded store's per-process index of metadata values (match.stores.sqlite.fields):
the ids a filter selects come back ascending and distinct, whatever order the key's values
were indexed in."""

from __future__ import annotations

import numpy as np

from match.stores.filters import parse_filter
from match.stores.sqlite.fields import FieldIndex, ascending_distinct


def test_ids_come_back_sorted_and_distinct_as_np_unique_gives_them() -> None:
    rng = np.random.default_rng(17)
    cases = [
        np.zeros(0, np.int64),
        np.array([5]),
        np.arange(3, 90_000, 2),  # the usual case: already ascending
        rng.integers(0, 500, 2_000),  # duplicates, any order
        np.concatenate([np.arange(10, 20), np.arange(0, 15)]),  # two ascending runs
    ]
    for ids in cases:
        found = ascending_distinct(ids)
        assert found.tolist() == np.unique(ids).tolist()


def test_a_key_of_numbers_and_strings_updated_in_place_selects_each_id_once() -> None:
    index = FieldIndex()
    # the key holds numbers and strings: its matches come from two columns, out of id order
    index.append(
        [(i, "shop", "n" if i % 3 else "s", i % 4 if i % 3 else "x") for i in range(1, 61)]
    )
    where = parse_filter({"shop": {"in": [1, "x"]}})
    expected = [i for i in range(1, 61) if (i % 3 == 0) or (i % 4 == 1)]
    assert index.matching_ids(where).tolist() == expected
    # metadata changed in place: 4 (shop 0) now matches, 5 (shop 1) no longer, 9 keeps "x"
    index.update([4, 5, 9], [(4, "shop", "n", 1), (5, "shop", "n", 2), (9, "shop", "s", "x")], 1)
    expected = sorted((set(expected) | {4}) - {5})
    assert index.matching_ids(where).tolist() == expected
