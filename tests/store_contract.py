"""The Store protocol's behaviour, as a reusable test suite.

A store's test module subclasses ``StoreContract`` and provides a ``store`` fixture: an empty
store of that engine, e.g.

    class TestSQLiteStore(StoreContract):
        pass

    @pytest.fixture
    def store(tmp_path):
        with SQLiteStore(tmp_path) as opened:
            yield opened

The records are real: signatures of real photographs and of edited copies of them (resized,
re-encoded, brightened, cropped, rotated), computed once per test session.

The partial-matching tests also need a ``second_store`` fixture: another store object on the
same data, as another worker process would open it.
"""

from __future__ import annotations

import functools
import io
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from collections_contract import CollectionsContract, where
from match.errors import BadParameter, MatchError, NotFound
from match.local import FRAME, WORDS, LocalFeatures, local_features
from match.service.thumbnails import make_thumbnail
from match.signature import image_signature, normalized_distances, orientation_signatures
from match.signature.decode import decode_pixels
from match.stores.base import BulkResult, ImageRecord, Since, Store, Thumbnail
from match.stores.checks import MAX_THUMBNAIL_BYTES
from pdq_contract import PdqContract

PHOTO_COUNT = 16
CUTOFF = 0.45
DISTANCE_TOLERANCE = 1e-5
"""How far a store's distances may be from normalized_distances (an engine may compute in float32;
the embedded store's are exact, which tests/test_store_sqlite.py checks)."""


@dataclass(frozen=True)
class Photos:
    """Signatures of real photos (``originals``), of edited copies of the first four (``edits``:
    name -> signature), of photo 0 turned 90 degrees counter-clockwise (``rotated``), and of
    photo 0's 8 orientations as query rows (``oriented``)."""

    names: list[str]
    originals: np.ndarray
    edits: dict[str, np.ndarray]
    rotated: np.ndarray
    oriented: np.ndarray


@functools.cache
def photo_signatures(paths: tuple[Path, ...]) -> Photos:
    originals = np.stack([image_signature(path) for path in paths])
    edits = {}
    for path in paths[:4]:
        image = Image.open(path).convert("RGB")
        edits[f"{path.stem}-half.jpg"] = _signature_of(image.resize(_half(image.size)), 60)
        edits[f"{path.stem}-bright.jpg"] = _signature_of(
            ImageEnhance.Brightness(image).enhance(1.15), 85
        )
        width, height = image.size
        box = (width // 20, height // 20, width - width // 20, height - height // 20)
        edits[f"{path.stem}-crop.jpg"] = _signature_of(image.crop(box), 90)
    rotated = _signature_of(Image.open(paths[0]).convert("RGB").rotate(90, expand=True), 95)
    oriented = orientation_signatures(paths[0])
    return Photos([p.name for p in paths], originals, edits, rotated, oriented)


def _half(size: tuple[int, int]) -> tuple[int, int]:
    return max(size[0] // 2, 16), max(size[1] // 2, 16)


def _signature_of(image: Image.Image, quality: int) -> np.ndarray:
    encoded = io.BytesIO()
    image.save(encoded, format="JPEG", quality=quality)
    return image_signature(encoded.getvalue())


def expected_hits(
    query: np.ndarray, stored: dict[str, np.ndarray], cutoff: float
) -> list[tuple[str, float, int]]:
    """(filepath, distance, orientation) of every stored image under the cutoff, best first,
    by brute force."""
    names = sorted(stored)
    distances = normalized_distances(np.atleast_2d(query), np.stack([stored[n] for n in names]))
    rows = np.argmin(distances, axis=0)
    best = distances[rows, np.arange(len(names))]
    found = [
        (names[i], float(best[i]), int(rows[i])) for i in range(len(names)) if best[i] < cutoff
    ]
    return sorted(found, key=lambda hit: (hit[1], hit[0]))


class StoreContract(CollectionsContract, PdqContract):
    """Behaviour every Store must show (collections and filters: collections_contract.py).
    Subclasses provide the ``store`` fixture."""

    @pytest.fixture
    def photos(self, photo_paths: list[Path]) -> Photos:
        return photo_signatures(tuple(photo_paths[:PHOTO_COUNT]))

    @pytest.fixture
    def filled(self, store: Store, photos: Photos) -> dict[str, np.ndarray]:
        """The store with every original and edit added; returns what was stored."""
        stored = dict(zip(photos.names, photos.originals, strict=True)) | photos.edits
        result = store.add_many(
            ImageRecord(name, sig, {"name": name}) for name, sig in stored.items()
        )
        assert result == BulkResult(added=len(stored), failed=[])
        return stored

    # -- add, get, replace, delete ----------------------------------------------------------
    def test_add_then_get_returns_the_record(self, store: Store, photos: Photos) -> None:
        store.add(ImageRecord("a/b.jpg", photos.originals[0], {"id": 7}))
        record = store.get("a/b.jpg")
        assert record.filepath == "a/b.jpg"
        assert record.signature.shape == (648,)
        assert np.array_equal(record.signature, photos.originals[0])
        assert record.metadata == {"id": 7}
        assert record.algorithm == ImageRecord("x", photos.originals[0]).algorithm

    def test_get_unknown_filepath_raises_not_found_naming_it(self, store: Store) -> None:
        with pytest.raises(NotFound, match=re.escape("missing/photo.jpg")):
            store.get("missing/photo.jpg")

    def test_adding_an_existing_filepath_replaces_it(self, store: Store, photos: Photos) -> None:
        store.add(ImageRecord("same.jpg", photos.originals[0], {"version": 1}))
        store.add(ImageRecord("other.jpg", photos.originals[1]))
        store.add(ImageRecord("same.jpg", photos.originals[2], {"version": 2}))
        assert store.count() == 2
        record = store.get("same.jpg")
        assert np.array_equal(record.signature, photos.originals[2])
        assert record.metadata == {"version": 2}
        old = store.search(photos.originals[0][None, :], CUTOFF, 10)
        assert "same.jpg" not in [hit.filepath for hit in old]
        new = store.search(photos.originals[2][None, :], CUTOFF, 10)
        assert [hit.filepath for hit in new][:1] == ["same.jpg"]
        assert new[0].metadata == {"version": 2}

    def test_delete_removes_exactly_that_filepath(self, store: Store, photos: Photos) -> None:
        store.add(ImageRecord("keep.jpg", photos.originals[0]))
        store.add(ImageRecord("drop.jpg", photos.originals[0]))
        store.delete("drop.jpg")
        assert store.count() == 1
        assert store.list() == ["keep.jpg"]
        hits = store.search(photos.originals[0][None, :], CUTOFF, 10)
        assert [hit.filepath for hit in hits] == ["keep.jpg"]
        with pytest.raises(NotFound, match=re.escape("drop.jpg")):
            store.get("drop.jpg")

    def test_delete_unknown_filepath_raises_not_found_naming_it(self, store: Store) -> None:
        with pytest.raises(NotFound, match=re.escape("never/added.jpg")):
            store.delete("never/added.jpg")

    def test_every_engine_words_the_errors_it_shares_alike(
        self, store: Store, photos: Photos
    ) -> None:
        # one set of checks (match.stores.checks) behind the protocol: the same message whatever
        # the engine, naming the filepath or parameter
        missing = "No image is stored under the filepath 'gone.jpg'"
        for operation in (store.get, store.delete, lambda f: store.update_metadata(f, {"a": 1})):
            with pytest.raises(NotFound) as raised:
                operation("gone.jpg")
            assert raised.value.message == missing
        bad = [
            (ImageRecord("s.jpg", photos.originals[0][:10]), "The signature of 's.jpg' must be"),
            (ImageRecord("m.jpg", photos.originals[0], [1]), "The metadata of 'm.jpg' must be a"),
            (ImageRecord("", photos.originals[0]), "A filepath must be a non-empty string"),
        ]
        for record, message in bad:
            with pytest.raises(BadParameter, match=re.escape(message)):
                store.add(record)  # type: ignore[arg-type]
            failed = store.add_many([record]).failed  # type: ignore[list-item]
            assert len(failed) == 1 and message in failed[0][1]
        with pytest.raises(BadParameter, match=re.escape("Parameter 'limit' must be a non-neg")):
            store.list(0, -1)
        with pytest.raises(BadParameter, match=re.escape("Parameter 'offset' must be a non-neg")):
            store.search(photos.originals[0], CUTOFF, 10, offset=-1)
        assert store.count() == 0

    def test_deleted_filepath_can_be_added_again(self, store: Store, photos: Photos) -> None:
        store.add(ImageRecord("again.jpg", photos.originals[0]))
        store.delete("again.jpg")
        store.add(ImageRecord("again.jpg", photos.originals[1]))
        assert np.array_equal(store.get("again.jpg").signature, photos.originals[1])
        assert store.count() == 1

    # -- metadata ---------------------------------------------------------------------------
    def test_metadata_round_trips_unicode_and_nested_json(
        self, store: Store, photos: Photos
    ) -> None:
        metadata = {
            "title": 'Ünïcødé 写真 🐟 "quoted" \\ back',
            "tags": ["a", {"b": [1, 2.5, None, True, False]}],
            "empty": {},
            "nested": {"deeper": {"list": [[], [{}]], "number": -12345678901234}},
        }
        store.add(ImageRecord("名前/ファイル 1.jpg", photos.originals[0], metadata))
        assert store.get("名前/ファイル 1.jpg").metadata == metadata
        hit = store.search(photos.originals[0][None, :], CUTOFF, 1)[0]
        assert (hit.filepath, hit.metadata) == ("名前/ファイル 1.jpg", metadata)
        assert store.list() == ["名前/ファイル 1.jpg"]

    def test_no_metadata_is_none(self, store: Store, photos: Photos) -> None:
        store.add(ImageRecord("plain.jpg", photos.originals[0]))
        assert store.get("plain.jpg").metadata is None
        assert store.search(photos.originals[0][None, :], CUTOFF, 1)[0].metadata is None

    def test_update_metadata_replaces_it_and_keeps_the_order(
        self, store: Store, photos: Photos
    ) -> None:
        store.add(ImageRecord("first.jpg", photos.originals[0], {"old": True}))
        store.add(ImageRecord("second.jpg", photos.originals[1]))
        store.update_metadata("first.jpg", {"new": ["ü", 1]})
        assert store.get("first.jpg").metadata == {"new": ["ü", 1]}
        assert np.array_equal(store.get("first.jpg").signature, photos.originals[0])
        assert store.list() == ["first.jpg", "second.jpg"]
        store.update_metadata("first.jpg", None)
        assert store.get("first.jpg").metadata is None

    def test_update_metadata_of_unknown_filepath_raises_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound, match=re.escape("ghost.jpg")):
            store.update_metadata("ghost.jpg", {"a": 1})

    # -- search -----------------------------------------------------------------------------
    def test_search_returns_every_image_under_the_cutoff_best_first(
        self, store: Store, photos: Photos, filled: dict[str, np.ndarray]
    ) -> None:
        queries = [photos.originals[i] for i in range(6)] + [photos.rotated]
        for query in queries:
            expected = expected_hits(query, filled, CUTOFF)
            hits = store.search(query[None, :], CUTOFF, 100)
            assert [hit.filepath for hit in hits] == [name for name, _, _ in expected]
            for hit, (_, distance, _) in zip(hits, expected, strict=True):
                assert hit.distance == pytest.approx(distance, abs=DISTANCE_TOLERANCE)
                assert hit.metadata == {"name": hit.filepath}
                assert hit.orientation == 0

    def test_edited_copies_are_found(
        self, store: Store, photos: Photos, filled: dict[str, np.ndarray]
    ) -> None:
        stem = Path(photos.names[0]).stem
        hits = store.search(photos.originals[0][None, :], CUTOFF, 100)
        found = {hit.filepath for hit in hits}
        edits = {name for name in photos.edits if name.startswith(stem)}
        assert edits
        assert found >= edits | {photos.names[0]}

    def test_each_image_once_with_its_best_orientation(
        self, store: Store, photos: Photos, filled: dict[str, np.ndarray]
    ) -> None:
        queries = np.stack([photos.originals[5], photos.originals[1], photos.originals[3]])
        expected = expected_hits(queries, filled, CUTOFF)
        hits = store.search(queries, CUTOFF, 100)
        assert [hit.filepath for hit in hits] == [name for name, _, _ in expected]
        assert len({hit.filepath for hit in hits}) == len(hits)
        for hit, (_, distance, orientation) in zip(hits, expected, strict=True):
            assert hit.distance == pytest.approx(distance, abs=DISTANCE_TOLERANCE)
            assert hit.orientation == orientation
        by_name = {hit.filepath: hit for hit in hits}
        assert [by_name[photos.names[i]].orientation for i in (5, 1, 3)] == [0, 1, 2]

    def test_a_rotated_copy_is_found_by_its_orientation(
        self, store: Store, photos: Photos, filled: dict[str, np.ndarray]
    ) -> None:
        store.add(ImageRecord("turned.jpg", photos.rotated))
        stored = filled | {"turned.jpg": photos.rotated}
        expected = expected_hits(photos.oriented, stored, CUTOFF)
        hits = store.search(photos.oriented, CUTOFF, 100)
        assert [(hit.filepath, hit.orientation) for hit in hits] == [
            (name, orientation) for name, _, orientation in expected
        ]
        by_name = {hit.filepath: hit for hit in hits}
        assert by_name["turned.jpg"].orientation == 1  # rotate_90
        assert by_name[photos.names[0]].orientation == 0

    def test_only_distances_under_the_cutoff(
        self, store: Store, photos: Photos, filled: dict[str, np.ndarray]
    ) -> None:
        query = photos.originals[0][None, :]
        everything = store.search(query, 1.0, 1000)
        assert len(everything) == len(filled)
        distances = [hit.distance for hit in everything]
        assert distances == sorted(distances)
        gap = next(i for i in range(1, len(distances)) if distances[i] - distances[i - 1] > 1e-6)
        middle = (distances[gap - 1] + distances[gap]) / 2
        assert [hit.filepath for hit in store.search(query, middle, 1000)] == [
            hit.filepath for hit in everything[:gap]
        ]
        assert all(hit.distance < 0.2 for hit in store.search(query, 0.2, 1000))
        itself = store.search(photos.originals[1][None, :], 1e-3, 10)
        assert [hit.filepath for hit in itself] == [photos.names[1]]

    def test_a_blank_query_matches_nothing(
        self, store: Store, filled: dict[str, np.ndarray]
    ) -> None:
        assert store.search(np.zeros((1, 648), dtype=np.int8), CUTOFF, 10) == []

    def test_search_pages_through_the_ranking(
        self, store: Store, photos: Photos, filled: dict[str, np.ndarray]
    ) -> None:
        query = photos.originals[0][None, :]
        ranking = [hit.filepath for hit in store.search(query, 1.0, 1000)]
        assert len(ranking) == len(filled)
        pages = [store.search(query, 1.0, 5, offset) for offset in range(0, len(ranking), 5)]
        assert [hit.filepath for page in pages for hit in page] == ranking
        assert store.search(query, 1.0, 5, len(ranking)) == []
        assert store.search(query, 1.0, 0) == []

    def test_search_of_an_empty_store_is_empty(self, store: Store, photos: Photos) -> None:
        assert store.search(photos.originals[:1], CUTOFF, 10) == []

    # -- count, list, add_many --------------------------------------------------------------
    def test_count_and_list_in_insertion_order(self, store: Store, photos: Photos) -> None:
        names = [f"photo-{i:02d}.jpg" for i in range(12)]
        for name, signature in zip(names, photos.originals, strict=False):
            store.add(ImageRecord(name, signature))
        assert store.count() == 12
        assert store.list() == names
        assert store.list(offset=3, limit=4) == names[3:7]
        assert store.list(offset=10, limit=20) == names[10:]
        assert store.list(offset=12) == []
        store.add(ImageRecord(names[2], photos.originals[13]))  # replaced: moves to the end
        order = names[:2] + names[3:] + [names[2]]
        assert store.list(limit=100) == order
        store.delete(names[5])
        order.remove(names[5])
        assert store.count() == 11
        assert store.list(offset=3, limit=3) == order[3:6] == [names[4], names[6], names[7]]
        assert store.list(offset=0, limit=100) == order

    def test_add_many_reports_each_failure_and_stores_the_rest(
        self, store: Store, photos: Photos
    ) -> None:
        records = [
            ImageRecord("good-1.jpg", photos.originals[0]),
            ImageRecord("short.jpg", photos.originals[1][:100]),
            ImageRecord("good-2.jpg", photos.originals[2], {"k": "v"}),
            ImageRecord("", photos.originals[3]),
            ImageRecord("floats.jpg", np.full(648, 0.5)),
            ImageRecord("good-3.jpg", photos.originals[4]),
        ]
        result = store.add_many(records)
        assert result.added == 3
        assert [name for name, _ in result.failed] == ["short.jpg", "", "floats.jpg"]
        assert all(reason for _, reason in result.failed)
        assert store.list() == ["good-1.jpg", "good-2.jpg", "good-3.jpg"]
        assert store.get("good-2.jpg").metadata == {"k": "v"}

    def test_add_many_with_a_repeated_filepath_keeps_the_last(
        self, store: Store, photos: Photos
    ) -> None:
        records = [
            ImageRecord("twice.jpg", photos.originals[0], {"n": 1}),
            ImageRecord("once.jpg", photos.originals[1]),
            ImageRecord("twice.jpg", photos.originals[2], {"n": 2}),
        ]
        assert store.add_many(records).added == 3
        assert store.count() == 2
        assert store.list() == ["once.jpg", "twice.jpg"]
        assert store.get("twice.jpg").metadata == {"n": 2}

    def test_add_many_of_nothing(self, store: Store) -> None:
        assert store.add_many([]) == BulkResult(added=0, failed=[])
        assert store.count() == 0

    def test_bad_add_raises_a_match_error(self, store: Store, photos: Photos) -> None:
        with pytest.raises(MatchError):
            store.add(ImageRecord("bad.jpg", photos.originals[0][:10]))
        with pytest.raises(MatchError):
            store.search(photos.originals[0][:10][None, :], CUTOFF, 10)
        assert store.count() == 0

    def test_ping(self, store: Store) -> None:
        store.ping()

    # -- thumbnails (the web page's) --------------------------------------------------------
    def test_thumbnails_are_kept_with_their_record_and_go_with_it(
        self, store: Store, photos: Photos, photo_paths: list[Path]
    ) -> None:
        pixels = decode_pixels(photo_paths[0])
        small = make_thumbnail(pixels)
        size = (pixels.shape[1], pixels.shape[0])
        sig = photos.originals[0]
        store.add(ImageRecord("t.jpg", sig, {"v": 1}, size=size, thumbnail=small))
        assert store.add_many(
            [
                ImageRecord("u.jpg", sig, thumbnail=small, collection="other"),
                ImageRecord("n.jpg", sig),
            ]
        ) == BulkResult(added=2, failed=[])
        assert store.thumbnail("t.jpg") == Thumbnail(small, size)
        assert store.thumbnail("u.jpg", collection="other") == Thumbnail(small, None)
        assert store.thumbnail("n.jpg") is None  # stored without one
        with pytest.raises(NotFound, match=re.escape("'u.jpg'")):
            store.thumbnail("u.jpg")  # in another collection only
        store.update_metadata("t.jpg", {"v": 2})
        assert store.thumbnail("t.jpg") == Thumbnail(small, size)
        store.add(ImageRecord("t.jpg", sig, {"v": 3}))  # replaced without one
        assert store.thumbnail("t.jpg") is None
        store.delete("t.jpg")
        with pytest.raises(NotFound, match=re.escape("No image is stored under the filepath")):
            store.thumbnail("t.jpg")
        too_big = ImageRecord("big.jpg", sig, thumbnail=b"\0" * (MAX_THUMBNAIL_BYTES + 1))
        with pytest.raises(BadParameter, match="at most 262144 are stored"):
            store.add(too_big)

    # -- local features (partial matching) ----------------------------------------------------
    @pytest.fixture
    def local_photos(self, photo_paths: list[Path]) -> LocalPhotos:
        return local_photo_features(tuple(photo_paths[:LOCAL_PHOTO_COUNT]))

    @pytest.fixture
    def local_filled(self, store: Store, local_photos: LocalPhotos) -> LocalPhotos:
        """The store with every photo added with its local features and {"name": name}."""
        records = [
            ImageRecord(name, signature, {"name": name}, local=features)
            for name, signature, features in zip(
                local_photos.names, local_photos.signatures, local_photos.features, strict=True
            )
        ]
        assert store.add_many(records) == BulkResult(added=len(records), failed=[])
        return local_photos

    def test_local_features_round_trip_through_get(
        self, store: Store, local_photos: LocalPhotos
    ) -> None:
        features = local_photos.features[1]
        store.add(ImageRecord("with.jpg", local_photos.signatures[1], {"k": 1}, local=features))
        store.add(ImageRecord("without.jpg", local_photos.signatures[2]))
        stored = store.get("with.jpg").local
        assert stored is not None and len(features.words) > 100
        assert_same_features(stored, features)
        assert store.get("without.jpg").local is None
        assert store.get("with.jpg").metadata == {"k": 1}

    def test_a_centre_crop_ranks_its_photo_first(
        self, store: Store, local_filled: LocalPhotos
    ) -> None:
        for index, crop in local_filled.crops.items():
            # the query's signatures: another photo's, then this record's own
            own = local_filled.signatures[index][None, :]
            other = local_filled.signatures[(index + 1) % len(local_filled.names)][None, :]
            # with the crop's bits: a store indexing terms looks up only its own terms
            candidates = store.local_candidates(
                crop.words, 30, bits=crop.bits, signatures=np.concatenate([other, own])
            )
            name = local_filled.names[index]
            assert candidates[0].filepath == name
            assert candidates[0].metadata == {"name": name}
            assert_same_features(candidates[0].local, local_filled.features[index])
            # the distance of the same record's signature comes along, for scoring both methods
            # on one version: 0 to the second query row
            assert (candidates[0].distance, candidates[0].orientation) == (0.0, 1)
            assert store.local_candidates(crop.words, 30)[0].distance is None  # not asked
            assert len({c.filepath for c in candidates}) == len(candidates)
            assert {c.filepath for c in candidates} <= set(local_filled.names)

    def test_records_without_local_features_are_never_candidates(
        self, store: Store, local_photos: LocalPhotos
    ) -> None:
        query = local_photos.features[0].words
        store.add(ImageRecord("plain.jpg", local_photos.signatures[0]))
        assert store.local_candidates(query, 30) == []
        store.add(
            ImageRecord("other.jpg", local_photos.signatures[3], local=local_photos.features[3])
        )
        store.add(ImageRecord("plain-2.jpg", local_photos.signatures[0], {"a": 1}))
        found = [c.filepath for c in store.local_candidates(query, 30)]
        assert "plain.jpg" not in found and "plain-2.jpg" not in found
        exact = [c.filepath for c in store.local_candidates(local_photos.features[3].words, 30)]
        assert exact == ["other.jpg"]

    def test_delete_and_replace_are_reflected_at_once_in_every_worker(
        self, store: Store, second_store: Store, local_filled: LocalPhotos
    ) -> None:
        names, crops = local_filled.names, local_filled.crops
        first, second = sorted(crops)[:2]
        for worker in (store, second_store):  # both have loaded what is stored
            assert worker.local_candidates(crops[first].words, 5)[0].filepath == names[first]
        store.delete(names[first])
        # the photo's own name now holds another photo's features, then none at all
        store.add(
            ImageRecord(
                names[second], local_filled.signatures[first], local=local_filled.features[first]
            )
        )
        for worker in (store, second_store):
            query = local_filled.signatures[first][None, :]
            found = worker.local_candidates(crops[first].words, 30, signatures=query)
            # among the first few: an engine's word statistics count the deleted version until
            # a merge, which can let a look-alike pass the new one by a hair
            near_top = {c.filepath: c for c in found[:3]}
            assert near_top[names[second]].distance == 0.0  # the new version's signature
            assert names[first] not in [c.filepath for c in found]
            others = [c.filepath for c in worker.local_candidates(crops[second].words, 30)]
            assert others[:1] != [names[second]]
        second_store.add(ImageRecord(names[second], local_filled.signatures[second]))
        for worker in (store, second_store):
            found = [c.filepath for c in worker.local_candidates(crops[first].words, 30)]
            assert names[second] not in found and names[first] not in found

    def test_local_candidates_respect_the_limit(
        self, store: Store, local_filled: LocalPhotos
    ) -> None:
        query = next(iter(local_filled.crops.values())).words
        ranking = [c.filepath for c in store.local_candidates(query, 30)]
        assert len(ranking) > 5
        assert [c.filepath for c in store.local_candidates(query, 5)] == ranking[:5]
        assert [c.filepath for c in store.local_candidates(query, 1)] == ranking[:1]
        assert store.local_candidates(query, 0) == []
        assert store.local_candidates(np.zeros(0, dtype=np.uint32), 30) == []

    def test_bad_local_candidates_arguments_are_refused(
        self, store: Store, local_filled: LocalPhotos
    ) -> None:
        words = local_filled.features[0].words
        bad_words = [
            words.reshape(-1, 1),
            words.astype(np.float64) + 0.5,
            np.array([1, 2, WORDS]),
            np.array([-1, 2]),
            np.array(["a", "b"]),
            "12 13",
        ]
        for bad in bad_words:
            with pytest.raises(BadParameter):
                store.local_candidates(bad, 30)
        for limit in (-1, 2.5, True, "30", None):
            with pytest.raises(BadParameter):
                store.local_candidates(words, limit)  # type: ignore[arg-type]
        bits = local_filled.features[0].bits
        for bad_bits in (bits[:-1], bits.astype(np.float64), bits.reshape(-1, 1), "0"):
            with pytest.raises(BadParameter):
                store.local_candidates(words, 30, bits=bad_bits)

    def test_bad_local_features_are_refused(self, store: Store, local_photos: LocalPhotos) -> None:
        good = local_photos.features[0]
        signature = local_photos.signatures[0]
        bad = [
            LocalFeatures(good.points, good.words[:-1], good.bits, good.size),
            LocalFeatures(good.points, good.words + WORDS, good.bits, good.size),
            LocalFeatures(good.points, good.words, good.bits, (0, 480)),
            "not features",
        ]
        for index, local in enumerate(bad):
            with pytest.raises(BadParameter):
                store.add(ImageRecord(f"bad-{index}.jpg", signature, local=local))  # type: ignore[arg-type]
        result = store.add_many(
            [
                ImageRecord("ok.jpg", signature, local=good),
                ImageRecord("bad.jpg", signature, local=bad[0]),
            ]
        )
        assert result.added == 1 and [name for name, _ in result.failed] == ["bad.jpg"]
        assert store.list() == ["ok.jpg"]

    # -- scan: whole records in insertion order (service/duplicates.py) -----------------------
    def test_scan_reads_whole_records_in_order_and_since_a_point(
        self, store: Store, local_photos: LocalPhotos
    ) -> None:
        signatures, local = local_photos.signatures, local_photos.features[0]
        store.add(ImageRecord("a.jpg", signatures[0], {"k": 1}, local=local, size=(640, 480)))
        store.add(ImageRecord("b.jpg", signatures[1], {"k": 2}, collection="elsewhere"))
        store.add(ImageRecord("c.jpg", signatures[2], {"k": 2}))
        store.add(ImageRecord("d.jpg", signatures[3], {"k": 3}))
        scanned = list(store.scan(batch=2))
        assert [r.filepath for r in scanned] == ["a.jpg", "c.jpg", "d.jpg"]
        first = scanned[0]
        assert np.array_equal(first.signature, signatures[0]) and first.metadata == {"k": 1}
        assert first.size == (640, 480) and first.local is not None and scanned[1].local is None
        assert_same_features(first.local, local)
        seqs = [r.seq for r in scanned]
        assert all(isinstance(s, int) for s in seqs) and seqs == sorted(set(seqs))  # type: ignore[type-var]
        assert all(r.added is not None and r.collection == "default" for r in scanned)
        assert [r.filepath for r in store.scan(collection="elsewhere")] == ["b.jpg"]
        assert list(store.scan(collection="nowhere")) == []
        kept = store.scan(where=where({"k": {"gte": 2}}))
        assert [r.filepath for r in kept] == ["c.jpg", "d.jpg"]
        after_a = store.scan(since=Since(seq=first.seq))
        assert [r.filepath for r in after_a] == ["c.jpg", "d.jpg"]
        store.add(ImageRecord("a.jpg", signatures[0], {"k": 1}))  # replaced: new, at the end
        assert [r.filepath for r in store.scan(since=Since(seq=seqs[-1]))] == ["a.jpg"]
        assert first.added is not None
        since_a = store.scan(since=Since(time=first.added - 1))
        assert [r.filepath for r in since_a] == ["c.jpg", "d.jpg", "a.jpg"]
        assert list(store.scan(since=Since(time=time.time() + 3600))) == []


# -- local features (partial matching): photos and helpers --------------------------------------
LOCAL_PHOTO_COUNT = 20
CROPPED = (0, 3, 7)
"""Photos whose 70% centre crop is a query."""


@dataclass(frozen=True)
class LocalPhotos:
    """Real photos with their signatures and local features, and the local features of a
    re-encoded 70% centre crop of some of them (photo index -> features)."""

    names: list[str]
    signatures: np.ndarray
    features: list[LocalFeatures]
    crops: dict[int, LocalFeatures]


@functools.cache
def local_photo_features(paths: tuple[Path, ...]) -> LocalPhotos:
    signatures = np.stack([image_signature(path) for path in paths])
    pixels = [decode_pixels(path, min_side=FRAME) for path in paths]
    crops = {}
    for index in CROPPED:
        height, width = pixels[index].shape[:2]
        top, left = round(height * 0.15), round(width * 0.15)
        crop = Image.fromarray(pixels[index][top : height - top, left : width - left])
        encoded = io.BytesIO()
        crop.save(encoded, format="JPEG", quality=85)
        crops[index] = local_features(decode_pixels(encoded.getvalue()))
    features = [local_features(image) for image in pixels]
    return LocalPhotos([p.name for p in paths], signatures, features, crops)


def assert_same_features(stored: LocalFeatures, original: LocalFeatures) -> None:
    """Equal up to the stored form's 1/16 pixel points."""
    assert np.array_equal(stored.words, original.words)
    assert np.array_equal(stored.bits, original.bits)
    assert tuple(stored.size) == tuple(original.size)
    assert stored.points.shape == original.points.shape
    assert np.abs(stored.points - original.points).max(initial=0) <= 1 / 16
