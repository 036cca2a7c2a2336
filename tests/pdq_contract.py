"""The PDQ part of the Store protocol, mixed into store_contract.StoreContract so that every
engine runs it: image records keep their PDQ hash, hash-only records go in, come out and are
deleted, and pdq_search finds exactly the stored hashes within the distance that share a
multi-index term with the query, across 8 orientations, scopes and replacements.

The hashes are synthetic (random 256-bit hashes and copies with chosen bits flipped) so that
each distance is known exactly; tests/test_pdq.py checks PDQ itself on real photos.
"""

from __future__ import annotations

import numpy as np
import pytest

from match.errors import BadParameter, NotFound
from match.stores.base import HashRecord, ImageRecord, Store
from match.stores.filters import parse_filter


def random_hash(rng: np.random.Generator) -> bytes:
    return rng.integers(0, 256, 32, dtype=np.uint8).tobytes()


def flipped(packed: bytes, bits: list[int]) -> bytes:
    """The hash with these bit positions flipped: at Hamming distance len(set(bits))."""
    array = np.unpackbits(np.frombuffer(packed, dtype=np.uint8))
    array[bits] ^= 1
    return np.packbits(array).tobytes()


def spread(distance: int, rng: np.random.Generator) -> list[int]:
    """``distance`` bits spread over the 16 terms as evenly as possible: 31 bits leave one
    term with a single flip, 32 leave none whole (the hardest case multi-index hashing keeps)."""
    per_term = [distance // 16 + (1 if t < distance % 16 else 0) for t in range(16)]
    return [
        int(16 * t + b) for t, n in enumerate(per_term) for b in rng.choice(16, n, replace=False)
    ]


class PdqContract:
    def test_an_image_record_keeps_its_pdq_hash(self, store: Store, photos) -> None:
        packed = bytes(range(32))
        store.add(ImageRecord("with.jpg", photos.originals[0], pdq=packed, pdq_quality=73))
        store.add(ImageRecord("without.jpg", photos.originals[1]))
        got = store.get("with.jpg")
        assert (got.pdq, got.pdq_quality) == (packed, 73)
        assert (store.get("without.jpg").pdq, store.get("without.jpg").pdq_quality) == (None, None)
        hits = store.search(photos.originals[0][None, :], 0.45, 10)
        assert (hits[0].filepath, hits[0].pdq, hits[0].pdq_quality) == ("with.jpg", packed, 73)

    def test_hash_only_records_round_trip_in_insertion_order(self, store: Store) -> None:
        rng = np.random.default_rng(1)
        records = [
            HashRecord(f"list/{i}", random_hash(rng), i % 101, {"i": i} if i % 2 else None)
            for i in range(30)
        ]
        assert store.add_hashes(records).added == 30
        listed = store.hashes(0, 100)
        assert [(r.filepath, r.pdq, r.quality, r.metadata) for r in listed] == [
            (r.filepath, r.pdq, r.quality, r.metadata) for r in records
        ]
        assert [r.filepath for r in store.hashes(25, 3)] == ["list/25", "list/26", "list/27"]
        assert store.count() == 0  # hash-only records are not images
        assert store.list() == []

    def test_pdq_search_finds_exactly_the_hashes_within_the_distance(self, store: Store) -> None:
        rng = np.random.default_rng(2)
        query = random_hash(rng)
        distances = [0, 1, 8, 15, 20, 31, 32, 40, 64]
        store.add_hashes(
            [HashRecord(f"d{d}", flipped(query, spread(d, rng)), 90) for d in distances]
            + [HashRecord(f"noise{i}", random_hash(rng), 90) for i in range(200)]
        )
        hits = store.pdq_search([query], 31, 100)
        assert [(h.filepath, h.distance, h.hash_only) for h in hits] == [
            (f"d{d}", d, True) for d in distances if d <= 31
        ]
        assert [h.filepath for h in store.pdq_search([query], 15, 100)] == ["d0", "d1", "d8", "d15"]
        assert [h.filepath for h in store.pdq_search([query], 31, 2)] == ["d0", "d1"]

    def test_pdq_search_takes_the_closest_of_several_query_hashes(self, store: Store) -> None:
        rng = np.random.default_rng(3)
        upright, turned = random_hash(rng), random_hash(rng)
        store.add_hashes([HashRecord("turned", flipped(turned, [3, 77]), 80)])
        hits = store.pdq_search([upright, *[random_hash(rng) for _ in range(6)], turned], 31, 10)
        assert [(h.filepath, h.distance, h.orientation) for h in hits] == [("turned", 2, 7)]

    def test_pdq_search_covers_images_hashes_or_both(self, store: Store, photos) -> None:
        rng = np.random.default_rng(4)
        packed = random_hash(rng)
        store.add(ImageRecord("image.jpg", photos.originals[0], pdq=packed, pdq_quality=100))
        store.add_hashes([HashRecord("image.jpg", flipped(packed, [0]), None)])
        both = store.pdq_search([packed], 31, 10)
        assert [(h.filepath, h.distance, h.hash_only) for h in both] == [
            ("image.jpg", 0, False),
            ("image.jpg", 1, True),
        ]
        only = store.pdq_search([packed], 31, 10, images=False)
        assert [(h.distance, h.hash_only, h.quality) for h in only] == [(1, True, None)]
        images = store.pdq_search([packed], 31, 10, hash_only=False)
        assert [(h.distance, h.hash_only, h.quality) for h in images] == [(0, False, 100)]

    def test_replaced_and_deleted_hashes_are_not_found(self, store: Store, photos) -> None:
        rng = np.random.default_rng(5)
        old, new = random_hash(rng), random_hash(rng)
        store.add_hashes([HashRecord("h", old, 90)])
        store.add_hashes([HashRecord("h", new, 90, {"v": 2})])
        assert store.pdq_search([old], 31, 10) == []
        assert [h.metadata for h in store.pdq_search([new], 31, 10)] == [{"v": 2}]
        store.add(ImageRecord("i", photos.originals[0], pdq=old, pdq_quality=90))
        store.add(ImageRecord("i", photos.originals[0], pdq=new, pdq_quality=90))
        assert store.pdq_search([old], 31, 10) == []
        store.delete_hash("h")
        with pytest.raises(NotFound, match="No hash is stored under the filepath 'h'"):
            store.delete_hash("h")
        store.delete("i")
        assert store.pdq_search([new], 31, 10) == []

    def test_pdq_search_stays_in_its_collection_and_filter(self, store: Store) -> None:
        rng = np.random.default_rng(6)
        packed = random_hash(rng)
        store.add_hashes(
            [
                HashRecord("a", packed, 90, {"list": "ncmec"}),
                HashRecord("b", packed, 90, {"list": "gifct"}),
                HashRecord("c", packed, 90, None, collection="other"),
            ]
        )
        where = parse_filter({"list": "gifct"})
        assert [h.filepath for h in store.pdq_search([packed], 31, 10)] == ["a", "b"]
        assert [h.filepath for h in store.pdq_search([packed], 31, 10, where=where)] == ["b"]
        assert [h.filepath for h in store.pdq_search([packed], 31, 10, collection="other")] == ["c"]
        assert [r.filepath for r in store.hashes(collection="other")] == ["c"]
        assert store.drop_collection("other") == 1
        assert store.hashes(collection="other") == []

    def test_a_batch_is_each_hash_searched_alone(self, store: Store, photos) -> None:
        rng = np.random.default_rng(9)
        sources = [random_hash(rng) for _ in range(6)]
        records = [HashRecord(f"s{i}", h, 90, {"i": i}) for i, h in enumerate(sources)]
        # near copies of the first two, some beyond 31 bits: each hash has its own answer
        records += [
            HashRecord(f"c{d}", flipped(sources[d % 2], spread(d, rng)), 90)
            for d in (3, 20, 31, 33)
        ]
        records.append(HashRecord("elsewhere", sources[0], 90, collection="other"))
        store.add_hashes(records)
        store.add(ImageRecord("img", photos.originals[0], pdq=sources[2], pdq_quality=90))
        asked = [sources[0], random_hash(rng), sources[1], sources[2], sources[0]]
        batch = store.pdq_search_batch(asked, 31, 10)
        assert batch == [store.pdq_search([h], 31, 10) for h in asked]
        assert [[h.filepath for h in hits] for hits in batch] == [
            ["s0", "c20"],
            [],
            ["s1", "c3", "c31"],
            ["img", "s2"],
            ["s0", "c20"],
        ]
        assert {h.orientation for hits in batch for h in hits} == {0}
        assert [len(hits) for hits in store.pdq_search_batch(asked, 31, 1)] == [1, 0, 1, 1, 1]
        where = parse_filter({"i": {"in": [1, 2]}})
        scoped = store.pdq_search_batch(asked, 31, 10, where=where, images=False)
        assert [[h.filepath for h in hits] for hits in scoped] == [[], [], ["s1"], ["s2"], []]
        other = store.pdq_search_batch(asked[:2], 31, 10, collection="other")
        assert [[h.filepath for h in hits] for hits in other] == [["elsewhere"], []]
        assert store.pdq_search_batch([], 31, 10) == []
        with pytest.raises(BadParameter):
            store.pdq_search_batch([b"\x00" * 31], 31, 10)

    def test_bad_hash_records_and_queries_are_refused(self, store: Store) -> None:
        result = store.add_hashes(
            [
                HashRecord("short", b"\x00" * 31),
                HashRecord("quality", b"\x00" * 32, 101),
                HashRecord("", b"\x00" * 32),
                HashRecord("fine", b"\x00" * 32, 0),
            ]
        )
        assert result.added == 1
        assert [name for name, _ in result.failed] == ["short", "quality", ""]
        with pytest.raises(BadParameter):
            store.pdq_search([b"\x00" * 31], 31, 10)
        with pytest.raises(BadParameter, match="max_distance"):
            store.pdq_search([b"\x00" * 32], 257, 10)
