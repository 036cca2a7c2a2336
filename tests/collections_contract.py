"""Collections and metadata filters, as part of the Store contract (store_contract.py inherits
these tests, so every engine runs them): the same semantics everywhere, checked against the
definition in match.stores.filters (Filter.matches)."""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from match.errors import BadParameter, NotFound
from match.local import LocalFeatures
from match.stores.base import ImageRecord, Store
from match.stores.filters import Filter, parse_filter

CUTOFF = 0.45


def where(raw: object) -> Filter | None:
    return parse_filter(raw)


def features(words: list[int]) -> LocalFeatures:
    n = len(words)
    rng = np.random.default_rng(sum(words))
    points = rng.uniform(0, 600, size=(n, 2)).astype(np.float32)
    bits = rng.integers(0, 2**63, size=n, dtype=np.uint64)
    return LocalFeatures(points, np.array(words, dtype=np.uint32), bits, (640, 480))


class CollectionsContract:
    # -- collections ------------------------------------------------------------------------
    def test_a_filepath_is_unique_within_a_collection_not_across(
        self, store: Store, photos
    ) -> None:
        a, b = photos.originals[0], photos.originals[1]
        store.add(ImageRecord("same.jpg", a, {"in": "default"}))
        store.add(ImageRecord("same.jpg", b, {"in": "shop-1"}, collection="shop-1"))
        assert store.count() == 1 and store.count(collection="shop-1") == 1
        assert store.get("same.jpg").metadata == {"in": "default"}
        record = store.get("same.jpg", collection="shop-1")
        assert record.metadata == {"in": "shop-1"} and record.collection == "shop-1"
        assert np.array_equal(record.signature, b)
        # each search sees its own collection only
        hits = store.search(b[None, :], CUTOFF, 10, collection="shop-1")
        assert [(h.filepath, h.metadata) for h in hits] == [("same.jpg", {"in": "shop-1"})]
        assert all(h.metadata == {"in": "default"} for h in store.search(b[None, :], CUTOFF, 10))
        assert store.list(collection="shop-1") == ["same.jpg"]
        assert store.collections() == [("default", 1), ("shop-1", 1)]
        store.delete("same.jpg", collection="shop-1")
        assert store.get("same.jpg").metadata == {"in": "default"}
        with pytest.raises(NotFound, match=re.escape("in the collection 'shop-1'")):
            store.get("same.jpg", collection="shop-1")
        assert store.search(b[None, :], CUTOFF, 10, collection="shop-1") == []

    def test_replacing_in_one_collection_leaves_the_other(self, store: Store, photos) -> None:
        for collection in ("x", "y"):
            store.add(ImageRecord("p.jpg", photos.originals[2], {"v": 1}, collection=collection))
        store.add(ImageRecord("p.jpg", photos.originals[3], {"v": 2}, collection="x"))
        store.update_metadata("p.jpg", {"v": 3}, collection="y")
        assert store.get("p.jpg", collection="x").metadata == {"v": 2}
        assert store.get("p.jpg", collection="y").metadata == {"v": 3}
        assert store.count(collection="x") == store.count(collection="y") == 1
        assert store.count() == 0

    def test_an_unknown_collection_is_empty_not_an_error(self, store: Store, photos) -> None:
        store.add(ImageRecord("a.jpg", photos.originals[0]))
        assert store.count(collection="nobody") == 0
        assert store.list(collection="nobody") == []
        assert store.search(photos.originals[:1], CUTOFF, 10, collection="nobody") == []
        with pytest.raises(NotFound):
            store.get("a.jpg", collection="nobody")

    def test_bad_collection_names_are_refused(self, store: Store, photos) -> None:
        for bad in ("", "has space", "-leading", "a" * 65, "a/b", 7):
            with pytest.raises(BadParameter, match="'collection'"):
                store.add(ImageRecord("a.jpg", photos.originals[0], collection=bad))  # type: ignore[arg-type]
            with pytest.raises(BadParameter, match="'collection'"):
                store.count(collection=bad)  # type: ignore[arg-type]

    def test_dropping_a_collection_deletes_exactly_its_records(self, store: Store, photos) -> None:
        store.add_many(
            [
                ImageRecord("a.jpg", photos.originals[0], collection="gone"),
                ImageRecord("b.jpg", photos.originals[1], collection="gone"),
                ImageRecord("a.jpg", photos.originals[0], collection="kept"),
                ImageRecord("a.jpg", photos.originals[0]),
            ]
        )
        assert store.drop_collection("gone") == 2
        assert store.collections() == [("default", 1), ("kept", 1)]
        assert store.search(photos.originals[:1], CUTOFF, 10, collection="gone") == []
        assert [h.filepath for h in store.search(photos.originals[:1], CUTOFF, 10)] == ["a.jpg"]
        with pytest.raises(NotFound, match="gone"):
            store.drop_collection("gone")
        store.add(ImageRecord("c.jpg", photos.originals[2], collection="gone"))  # reusable
        assert store.list(collection="gone") == ["c.jpg"]

    # -- filters ----------------------------------------------------------------------------
    def test_filters_select_exactly_what_the_definition_selects(self, store: Store, photos) -> None:
        rng = random.Random(11)
        values = [1, 2, 2.5, 10, -3, "a", "b", "12", True, False, None, [1], {"x": 1}]
        records = {}
        for n in range(60):
            metadata = {
                key: rng.choice(values) for key in ("shop", "price", "kind") if rng.random() < 0.8
            }
            records[f"r{n:02d}.jpg"] = metadata
        signature = photos.originals[0]
        store.add_many(ImageRecord(name, signature, meta) for name, meta in records.items())
        filters = [
            {"shop": 2},
            {"shop": 2.0},
            {"shop": "a"},
            {"shop": True},
            {"shop": 1},
            {"shop": None},
            {"shop": {"in": [1, "a", False]}},
            {"price": {"gte": 1, "lt": 10}},
            {"price": {"gt": 2.5}},
            {"price": {"lte": -3}},
            {"shop": 2, "kind": "b"},
            {"shop": {"in": [2, 10]}, "price": {"gte": 0}},
            {"colour": "red"},  # no record has the key: nothing, not an error
        ]
        for raw in filters:
            parsed = where(raw)
            assert parsed is not None
            expected = [name for name, meta in records.items() if parsed.matches(meta)]
            assert store.list(0, 100, where=parsed) == expected, raw
            assert store.count(where=parsed) == len(expected), raw
            hits = store.search(signature[None, :], CUTOFF, 100, where=parsed)
            assert sorted(h.filepath for h in hits) == expected, raw
        assert store.count(where=where({"colour": "red"})) == 0

    def test_a_filter_is_applied_before_the_top_k_cut(self, store: Store, photos) -> None:
        # 30 copies of one photo in shop 1 outrank the one slightly different copy in shop 2:
        # a filter applied after the cut (limit 5) would lose it
        best, other = photos.originals[0], photos.edits[f"{photos.names[0][:-4]}-bright.jpg"]
        store.add_many(
            [ImageRecord(f"s1-{n}.jpg", best, {"shop": 1}) for n in range(30)]
            + [ImageRecord("s2.jpg", other, {"shop": 2})]
        )
        hits = store.search(best[None, :], CUTOFF, 5, where=where({"shop": 2}))
        assert [h.filepath for h in hits] == ["s2.jpg"]
        assert {h.filepath for h in store.search(best[None, :], CUTOFF, 5)} <= {
            f"s1-{n}.jpg" for n in range(30)
        }

    def test_filters_follow_metadata_updates_and_replacements(self, store: Store, photos) -> None:
        store.add(ImageRecord("a.jpg", photos.originals[0], {"shop": 1}))
        store.update_metadata("a.jpg", {"shop": 2})
        assert store.list(where=where({"shop": 1})) == []
        assert store.list(where=where({"shop": 2})) == ["a.jpg"]
        store.add(ImageRecord("a.jpg", photos.originals[0], {"shop": 3}))
        assert store.list(where=where({"shop": 2})) == []
        assert store.count(where=where({"shop": 3})) == 1
        store.update_metadata("a.jpg", None)
        assert store.count(where=where({"shop": 3})) == 0

    def test_filters_and_collections_scope_partial_matching_candidates(
        self, store: Store, photos
    ) -> None:
        words = list(range(100, 140))
        local = features(words)
        signature = photos.originals[0]
        store.add_many(
            [
                ImageRecord("mine.jpg", signature, {"shop": 1}, local=local, collection="c"),
                ImageRecord("theirs.jpg", signature, {"shop": 2}, local=local, collection="c"),
                ImageRecord("mine.jpg", signature, {"shop": 1}, local=local),
            ]
        )
        query = np.array(words[:20])
        found = store.local_candidates(query, 10, collection="c", where=where({"shop": 1}))
        assert [c.filepath for c in found] == ["mine.jpg"]
        scoped = store.local_candidates(query, 10, collection="c")
        assert sorted(c.filepath for c in scoped) == ["mine.jpg", "theirs.jpg"]
        assert [c.filepath for c in store.local_candidates(query, 10)] == ["mine.jpg"]
        assert store.local_candidates(query, 10, where=where({"shop": 2})) == []

    def test_records_carry_their_size(self, store: Store, photos) -> None:
        store.add(ImageRecord("sized.jpg", photos.originals[0], size=(640, 480)))
        store.add(ImageRecord("unsized.jpg", photos.originals[1]))
        assert store.get("sized.jpg").size == (640, 480)
        assert store.get("unsized.jpg").size is None
        hits = {h.filepath: h for h in store.search(photos.originals[:2], CUTOFF, 10)}
        assert hits["sized.jpg"].size == (640, 480) and hits["unsized.jpg"].size is None
        with pytest.raises(BadParameter, match="size"):
            store.add(ImageRecord("bad.jpg", photos.originals[0], size=(0, 3)))


def test_malformed_filters_are_refused_naming_what_is_wrong() -> None:
    cases = {
        "[1]": "must be a JSON object",
        "{nope": "not valid JSON",
        '{"a": {"between": [1, 2]}}': "unknown operator 'between'",
        '{"a": {"in": []}}': "non-empty list",
        '{"a": {"in": 3}}': "non-empty list",
        '{"a": {"gte": "x"}}': "'gte' needs a number",
        '{"a": {"gte": 1, "gt": 2}}': "one lower bound",
        '{"a": {"in": [1], "lt": 3}}': "cannot be combined",
        '{"a": {}}': "an empty object",
        '{"a": [1, 2]}': "values are numbers, strings",
        '{"": 1}': "empty key",
    }
    for text, message in cases.items():
        with pytest.raises(BadParameter, match=re.escape(message)):
            parse_filter(text)
    assert parse_filter("{}") is None and parse_filter(None) is None


def test_filter_semantics_follow_json() -> None:
    # numbers compare as numbers, booleans are not numbers, long strings and lists never match
    cases = [
        ({"n": 12}, {"n": 12.0}, True),
        ({"n": True}, {"n": 1}, False),
        ({"n": 1}, {"n": True}, False),
        ({"n": None}, {"n": None}, True),
        ({"n": None}, {}, False),
        ({"n": {"gte": 0}}, {"n": "5"}, False),
        ({"n": {"in": ["x", 2]}}, {"n": 2}, True),
        ({"n": "x"}, {"n": ["x"]}, False),
        ({"n": {"gt": 1, "lte": 2}}, {"n": 2}, True),
        ({"n": {"gt": 1, "lte": 2}}, {"n": 1}, False),
    ]
    for raw, metadata, expected in cases:
        parsed = parse_filter(raw)
        assert parsed is not None and parsed.matches(metadata) is expected, (raw, metadata)
