"""ElasticStore against a real Elasticsearch or OpenSearch server (the ``engine_url`` fixture).

Engine-specific behaviour: detection, the strict mapping, exact overwrite and delete, one
_msearch for all orientations, listing past 10,000, bulk ingest.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from match.errors import BadParameter, NotFound
from match.local import WORDS, LocalFeatures, local_features
from match.local import pack as pack_local
from match.local.terms import TERM_BITS, stored_terms
from match.signature import (
    ORIENTATIONS,
    SIGNATURE_LENGTH,
    image_signature,
    normalized_distances,
    words,
)
from match.signature import orientation_signatures as photo_orientations
from match.signature.decode import decode_pixels
from match.stores.base import PROGRESS, HashRecord, ImageRecord, Integrity
from match.stores.elastic import ElasticStore, EngineClient, candidate, frequencies, upgrade
from match.stores.elastic import documents as docs
from match.stores.elastic import search as search_module
from match.stores.elastic.search import MAX_QUERY_WORDS
from store_contract import StoreContract

pytestmark = pytest.mark.engine

# deletes and metadata updates wait for the periodic refresh (adds refresh the index
# themselves): a short interval keeps the suite quick without changing semantics
TEST_REFRESH = "200ms"


def open_store(url: str, index: str, **options) -> ElasticStore:
    return ElasticStore(EngineClient(url), index, refresh_interval=TEST_REFRESH, **options)


@pytest.fixture
def store(engine_url: str, engine_index: str):
    store = open_store(engine_url, engine_index)
    yield store
    store.close()


@pytest.fixture
def second_store(engine_url: str, store: ElasticStore):
    """Another store object on the same index, as another worker process opens it."""
    other = open_store(engine_url, store.index)
    yield other
    other.close()


class TestElasticStore(StoreContract):
    """The shared Store contract, on each engine."""


@pytest.fixture(scope="module")
def oriented_photos(photo_paths: list[Path]) -> dict[str, np.ndarray]:
    """Orientation signatures (8, 648) of a few real photos, keyed by file name."""
    return {path.name: photo_orientations(path) for path in photo_paths[:6]}


def random_signatures(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.choice(
        [-2, -1, 0, 1, 2], size=(count, SIGNATURE_LENGTH), p=[0.1, 0.2, 0.4, 0.2, 0.1]
    )
    return values.astype(np.int8)


def raw(engine_url: str, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{engine_url}{path}", timeout=30, **kwargs)


# -- engine and index ---------------------------------------------------------------------------
def test_engine_detected_and_supported(store: ElasticStore) -> None:
    engine = store.client.engine()
    assert (engine.distribution, engine.major) in {
        ("elasticsearch", 8),
        ("elasticsearch", 9),
        ("opensearch", 2),
        ("opensearch", 3),
    }


def test_index_created_on_first_use_with_explicit_mapping(
    engine_url: str, engine_index: str
) -> None:
    store = open_store(engine_url, engine_index, shards=2)
    assert raw(engine_url, "HEAD", f"/{engine_index}").status_code == 404
    assert store.count() == 0
    body = raw(engine_url, "GET", f"/{engine_index}").json()[engine_index]
    mapping = body["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["properties"]["path"] == {"type": "keyword"}
    assert mapping["properties"]["metadata"] == {"type": "object", "enabled": False}
    assert {f"simple_word_{i}" for i in range(63)} <= set(mapping["properties"])
    assert body["settings"]["index"]["number_of_shards"] == "2"
    assert body["settings"]["index"]["number_of_replicas"] == "0"
    store.close()


def test_strict_mapping_refuses_unknown_fields(store: ElasticStore, engine_url: str) -> None:
    store.count()  # creates the index
    answer = raw(engine_url, "POST", f"/{store.index}/_doc", json={"path": "x", "colour": "red"})
    assert answer.status_code == 400
    assert "strict" in answer.text


def test_arbitrary_metadata_is_stored_not_indexed(store: ElasticStore) -> None:
    signatures = random_signatures(2)
    first = {"a": 1, "nested": {"list": [1, "two", None, {"x": 1.5}]}}
    second = {"a": "now a string", "nested": [True]}  # would conflict under dynamic mapping
    store.add(ImageRecord("first.jpg", signatures[0], first))
    store.add(ImageRecord("second.jpg", signatures[1], second))
    assert store.get("first.jpg").metadata == first
    assert store.get("second.jpg").metadata == second
    store.update_metadata("first.jpg", {"b": 2})
    assert store.get("first.jpg").metadata == {"b": 2}  # replaced, not merged
    store.update_metadata("first.jpg", None)
    assert store.get("first.jpg").metadata is None


def test_documents_keep_image_match_shape(
    store: ElasticStore, engine_url: str, oriented_photos: dict[str, np.ndarray]
) -> None:
    signature = next(iter(oriented_photos.values()))[0]
    store.add(ImageRecord("shape.jpg", signature, {"k": "v"}))
    source = raw(engine_url, "GET", f"/{store.index}/_doc/{docs.doc_id('shape.jpg')}").json()
    doc = source["_source"]
    assert doc["path"] == "shape.jpg"
    assert doc["signature"] == signature.tolist()
    assert doc["metadata"] == {"k": "v"}
    assert [doc[f"simple_word_{i}"] for i in range(63)] == words(signature).tolist()
    assert "timestamp" in doc


# -- overwrite, delete, freshness -------------------------------------------------------------
def test_overwrite_replaces_and_moves_to_the_end(store: ElasticStore) -> None:
    signatures = random_signatures(3, seed=1)
    store.add_many(
        [
            ImageRecord(name, sig)
            for name, sig in zip(["a.jpg", "b.jpg"], signatures[:2], strict=True)
        ]
    )
    store.add(ImageRecord("a.jpg", signatures[2], {"v": 2}))
    assert store.count() == 2
    assert store.list() == ["b.jpg", "a.jpg"]
    record = store.get("a.jpg")
    assert np.array_equal(record.signature, signatures[2])
    assert record.metadata == {"v": 2}


def test_delete_is_exact(store: ElasticStore) -> None:
    """dsys/match's phrase query deleted `dir/a.jpg` too when asked to delete `a.jpg`."""
    names = ["a.jpg", "dir/a.jpg", "a.jpg.bak", "A.jpg", "a jpg"]
    store.add_many(
        [
            ImageRecord(name, sig)
            for name, sig in zip(names, random_signatures(len(names), seed=2), strict=True)
        ]
    )
    store.delete("a.jpg")
    assert sorted(store.list()) == sorted(names[1:])
    with pytest.raises(NotFound, match=r"'a\.jpg'"):
        store.delete("a.jpg")
    with pytest.raises(NotFound):
        store.get("a.jpg")


def test_added_image_is_found_by_the_next_search(
    store: ElasticStore, oriented_photos: dict[str, np.ndarray]
) -> None:
    name, signatures = next(iter(oriented_photos.items()))
    store.add(ImageRecord(name, signatures[0]))
    hits = store.search(signatures, cutoff=0.45, limit=10)
    assert [(hit.filepath, hit.orientation) for hit in hits] == [(name, 0)]
    assert hits[0].distance == pytest.approx(0.0, abs=1e-6)
    assert store.count() == 1


def test_concurrent_adds_are_searchable_at_once(engine_url: str, engine_index: str) -> None:
    """Adds share refreshes (GroupRefresh) instead of waiting for the periodic one: with an
    interval far longer than the test, each add is still found as soon as it returns, by a
    search from its own thread while the other threads add."""
    store = ElasticStore(EngineClient(engine_url), engine_index, refresh_interval="60s")
    signatures = random_signatures(24, seed=5)

    def add_then_find(n: int) -> list[str]:
        store.add(ImageRecord(f"{n}.jpg", signatures[n]))
        hits = store.search(signatures[n : n + 1], cutoff=0.01, limit=5)
        return [hit.filepath for hit in hits]

    with ThreadPoolExecutor(max_workers=6) as pool:
        found = list(pool.map(add_then_find, range(len(signatures))))
    assert found == [[f"{n}.jpg"] for n in range(len(signatures))]
    assert store.count() == len(signatures)
    store.close()


def test_bulk_refresh_mode_still_stores_everything(engine_url: str, engine_index: str) -> None:
    store = open_store(engine_url, engine_index, bulk_refresh=True)
    signatures = random_signatures(30, seed=3)
    result = store.add_many(ImageRecord(f"{i}.jpg", sig) for i, sig in enumerate(signatures))
    assert (result.added, result.failed) == (30, [])
    raw(engine_url, "POST", f"/{engine_index}/_refresh")
    assert store.count() == 30
    store.close()


# -- search -----------------------------------------------------------------------------------
def test_all_orientations_in_one_search_with_best_orientation(
    store: ElasticStore, oriented_photos: dict[str, np.ndarray]
) -> None:
    """Each photo is stored as one of its rotations/mirrors; querying with the 8 orientations
    of the upright photo finds it at distance 0, under the orientation that was stored."""
    stored = {}
    for k, (name, signatures) in enumerate(oriented_photos.items()):
        orientation = k % len(ORIENTATIONS)
        stored[name] = orientation
        store.add(ImageRecord(name, signatures[orientation], {"n": k}))
    for name, signatures in oriented_photos.items():
        hits = store.search(signatures, cutoff=0.45, limit=10)
        assert hits[0].filepath == name
        assert hits[0].distance == pytest.approx(0.0, abs=1e-6)
        assert hits[0].orientation == stored[name]
        assert len({hit.filepath for hit in hits}) == len(hits)  # each image once


def test_search_ranks_by_exact_distance_then_filepath(
    store: ElasticStore, oriented_photos: dict[str, np.ndarray]
) -> None:
    query = next(iter(oriented_photos.values()))[0]
    rng = np.random.default_rng(4)
    records = []
    for i, flips in enumerate([0, 0, 40, 80, 160, 400]):
        noisy = query.copy()
        where = rng.choice(SIGNATURE_LENGTH, size=flips, replace=False)
        noisy[where] = rng.choice([-2, -1, 0, 1, 2], size=flips)
        records.append(ImageRecord(f"copy-{5 - i}.jpg", noisy))
    store.add_many(records)
    expected = sorted(
        (float(normalized_distances(query, r.signature[None, :])[0]), r.filepath) for r in records
    )
    expected = [(d, p) for d, p in expected if d < 0.45]
    hits = store.search(query[None, :], cutoff=0.45, limit=10)
    assert [hit.filepath for hit in hits] == [p for _, p in expected]
    assert [hit.distance for hit in hits] == pytest.approx([d for d, _ in expected])
    assert hits[0].filepath == "copy-4.jpg"  # the two exact copies tie: by filepath
    page = store.search(query[None, :], cutoff=0.45, limit=2, offset=1)
    assert [hit.filepath for hit in page] == [p for _, p in expected[1:3]]


def test_search_with_blank_query_finds_nothing(store: ElasticStore) -> None:
    store.add(ImageRecord("x.jpg", random_signatures(1)[0]))
    blank = np.zeros((1, SIGNATURE_LENGTH), dtype=np.int8)
    assert store.search(blank, cutoff=0.45, limit=10) == []


def test_search_rejects_bad_query_shape(store: ElasticStore) -> None:
    with pytest.raises(BadParameter, match="shape"):
        store.search(np.zeros((2, 10), dtype=np.int8), cutoff=0.45, limit=10)


# -- listing ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_list_in_insertion_order_past_ten_thousand(engine_url: str, engine_index: str) -> None:
    store = open_store(engine_url, engine_index)
    total = 10_050
    # names in insertion order are not in lexical order: the order comes from the sequence
    names = [f"{(i * 7919) % total:05d}.jpg" for i in range(total)]
    signature = random_signatures(1, seed=5)[0]
    result = store.add_many(ImageRecord(name, signature) for name in names)
    assert (result.added, result.failed) == (total, [])
    assert store.count() == total
    assert store.list(offset=10_020, limit=20) == names[10_020:10_040]
    assert store.list(offset=9_990, limit=30) == names[9_990:10_020]
    assert store.list(offset=total - 5, limit=20) == names[-5:]
    assert store.list(offset=total + 10, limit=5) == []
    assert store.list(offset=3, limit=4) == names[3:7]
    store.close()


def test_photo_signature_matches_stored_photo(store: ElasticStore, photo_paths: list[Path]) -> None:
    """End to end with signatures from files: a photo is found by its own signature."""
    path = photo_paths[-1]
    store.add(ImageRecord(str(path), image_signature(path), {"file": path.name}))
    hits = store.search(photo_orientations(path), cutoff=0.45, limit=5)
    assert hits[0].filepath == str(path)
    assert hits[0].metadata == {"file": path.name}


def test_metadata_read_after_the_search_is_never_torn(
    store: ElasticStore, oriented_photos: dict[str, np.ndarray]
) -> None:
    """Search reads candidates, then the page's metadata in a second request: a replacement or
    deletion in between must not pair the old image's distance with the new metadata."""
    first, second = [signatures[0] for signatures in list(oriented_photos.values())[:2]]
    query = first[None, :]
    store.add(ImageRecord("x.jpg", first, {"photo": "first"}))
    searcher = store._searcher  # the two reads of a search, with a write between them
    candidates = searcher.candidate_signatures(query, 100)
    store.add(ImageRecord("x.jpg", second, {"photo": "second"}))  # replaced in between
    ranked = {"x.jpg": (0.0, 0)}  # what the first read ranked
    hits = searcher.with_metadata(ranked, candidates, query, 1.0)
    far = float(normalized_distances(first, second[None, :])[0])
    assert [(h.metadata, h.distance) for h in hits] == [({"photo": "second"}, pytest.approx(far))]
    assert searcher.with_metadata(ranked, candidates, query, far - 0.01) == []
    store.delete("x.jpg")  # deleted in between
    assert searcher.with_metadata(ranked, candidates, query, 1.0) == []


# -- partial matching: local features ---------------------------------------------------------
@pytest.fixture(scope="module")
def local_photos(photo_paths: list[Path]) -> list[ImageRecord]:
    """Records of three real photos with their signatures and local features."""
    records = []
    for path in photo_paths[:3]:
        pixels = decode_pixels(path)
        records.append(
            ImageRecord(
                path.name, image_signature(path), {"name": path.name}, local=local_features(pixels)
            )
        )
    return records


def previous_mapping() -> dict:
    """The mapping Match created before partial matching: today's without the local fields."""
    current = docs.mapping()
    old = {k: v for k, v in current["properties"].items() if k not in docs.local_fields()}
    return {**current, "properties": old}


def synthetic_local(word_values: list[int]) -> LocalFeatures:
    count = len(word_values)
    return LocalFeatures(
        np.zeros((count, 2), np.float32),
        np.asarray(word_values, np.uint32),
        np.zeros(count, np.uint64),
        (640, 480),
    )


def test_local_fields_are_mapped_as_terms_and_a_blob(store: ElasticStore, engine_url: str) -> None:
    store.count()  # creates the index
    mapping = raw(engine_url, "GET", f"/{store.index}/_mapping").json()[store.index]["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["properties"][docs.LOCAL_WORDS_FIELD] == {
        "type": "text",
        "analyzer": "standard",
        "index_options": "docs",
        "norms": False,
    }
    assert mapping["properties"][docs.LOCAL_FIELD] == {"type": "binary"}
    assert mapping["properties"][docs.CANDIDATE_FIELD] == {"type": "binary", "doc_values": True}


def test_local_features_stored_as_distinct_words_and_candidate_value(
    store: ElasticStore, engine_url: str, local_photos: list[ImageRecord]
) -> None:
    """The words are terms; features, size, PDQ hash and metadata are one candidate value,
    which the candidate query reads from doc values and a GET from _source."""
    record = dataclasses.replace(
        local_photos[0], size=(1024, 683), pdq=bytes(range(32)), pdq_quality=77
    )
    store.add(record)
    doc = raw(engine_url, "GET", f"/{store.index}/_doc/{docs.doc_id(record.filepath)}").json()
    tokens = doc["_source"][docs.LOCAL_WORDS_FIELD].split(" ")
    assert [int(token) for token in tokens] == sorted(set(record.local.words.tolist()))
    analyzed = raw(
        engine_url,
        "POST",
        f"/{store.index}/_analyze",
        json={"field": docs.LOCAL_WORDS_FIELD, "text": doc["_source"][docs.LOCAL_WORDS_FIELD]},
    ).json()
    assert [token["token"] for token in analyzed["tokens"]] == tokens  # each word one term
    assert docs.LOCAL_FIELD not in doc["_source"]  # the candidate value holds them
    stored = candidate.unpack(base64.b64decode(doc["_source"][docs.CANDIDATE_FIELD]))
    assert pack_local(stored.local) == pack_local(record.local)
    assert (stored.size, stored.metadata) == (record.size, record.metadata)
    assert (stored.pdq, stored.pdq_quality) == (record.pdq, record.pdq_quality)
    [found] = store.local_candidates(record.local.words, 5)
    assert (found.metadata, found.size, found.pdq, found.pdq_quality) == (
        record.metadata,
        record.size,
        record.pdq,
        record.pdq_quality,
    )


def test_local_features_survive_a_metadata_update(
    store: ElasticStore, local_photos: list[ImageRecord]
) -> None:
    record = local_photos[1]
    store.add(record)
    for metadata in ({"edited": True}, None):
        store.update_metadata(record.filepath, metadata)
        [found] = store.local_candidates(record.local.words, 5)
        assert (found.filepath, found.metadata) == (record.filepath, metadata)
        assert np.array_equal(found.local.words, record.local.words)


def test_local_candidates_of_a_full_query_on_every_engine(store: ElasticStore) -> None:
    """500 distinct words (an image's maximum) and even MAX_QUERY_WORDS fit every engine's clause
    limit (OpenSearch: 1024); more are refused clearly, not by the engine."""
    rng = np.random.default_rng(6)
    stored = rng.choice(WORDS, size=450, replace=False)
    store.add(ImageRecord("many.jpg", random_signatures(1)[0], local=synthetic_local(stored)))
    query = np.concatenate([stored[:100], rng.choice(WORDS, size=400, replace=False)])
    assert [c.filepath for c in store.local_candidates(query, 30)] == ["many.jpg"]
    most = np.concatenate(
        [stored[:1], np.setdiff1d(np.arange(WORDS), stored)[: MAX_QUERY_WORDS - 1]]
    )
    assert [c.filepath for c in store.local_candidates(most, 30)] == ["many.jpg"]
    too_many = rng.choice(WORDS, size=MAX_QUERY_WORDS + 1, replace=False)
    with pytest.raises(BadParameter, match="distinct visual words"):
        store.local_candidates(too_many, 30)


def add_frequent_and_rare(store: ElasticStore) -> tuple[list[int], list[int], list[ImageRecord]]:
    """12 images holding the same 20 frequent words and one, ``rare.jpg``, 3 rare words: the
    frequent words, the rare ones and the 12 records."""
    frequent, rare = list(range(100, 120)), [5000, 5001, 5002]
    crowd = [
        ImageRecord(f"crowd-{n}.jpg", signature, local=synthetic_local(frequent))
        for n, signature in enumerate(random_signatures(12, seed=3))
    ]
    rare_one = ImageRecord("rare.jpg", random_signatures(1, seed=4)[0], local=synthetic_local(rare))
    assert not store.add_many([*crowd, rare_one]).failed
    return frequent, rare, crowd


def test_candidate_query_leaves_out_the_most_frequent_words_past_the_budget(
    store: ElasticStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past POSTINGS_BUDGET, the candidate query keeps the query's rarest words (document
    frequencies as the engine counts them): an image sharing only frequent words is no longer a
    candidate, one sharing the rare words still is; within the budget every word is queried."""
    frequent, rare, crowd = add_frequent_and_rare(store)
    query = np.array(frequent + rare)
    counts = store._searcher.frequencies.of(query)
    assert counts is not None and counts.tolist() == [12] * 20 + [1] * 3
    everything = {c.filepath for c in store.local_candidates(query, 30)}
    assert everything == {r.filepath for r in crowd} | {"rare.jpg"}  # 243 postings: all words
    monkeypatch.setattr(frequencies, "POSTINGS_BUDGET", 3 + 12 * 2)  # the rare and 2 frequent
    assert store._searcher.frequencies.within_budget(query).tolist() == [100, 101, *rare]
    monkeypatch.setattr(frequencies, "POSTINGS_BUDGET", 3)
    assert [c.filepath for c in store.local_candidates(query, 30)] == ["rare.jpg"]


def test_terms_are_budgeted_by_their_words_frequencies(
    store: ElasticStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query's terms are budgeted by their words' cached document frequencies (a term's
    estimated as its word's over 2^TERM_BITS): within TERMS_BUDGET every term is looked up,
    past it the rarest are kept, as words are."""
    frequent, rare, crowd = add_frequent_and_rare(store)
    query = synthetic_local(frequent + rare)
    found = store.local_candidates(query.words, 30, bits=query.bits)
    assert {c.filepath for c in found} == {r.filepath for r in crowd} | {"rare.jpg"}
    # the three rare terms' estimated postings (1 document each), not one frequent term's (12)
    monkeypatch.setattr(search_module, "TERMS_BUDGET", 3 / 2**TERM_BITS)
    found = store.local_candidates(query.words, 30, bits=query.bits)
    assert [c.filepath for c in found] == ["rare.jpg"]


def test_word_frequencies_are_cached_for_max_age(
    store: ElasticStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word's document frequency is asked once, then reused until MAX_AGE has passed: a warm
    process sends no extra request; a word no document holds counts 0."""
    first = ImageRecord("a.jpg", random_signatures(1)[0], local=synthetic_local([7, 8]))
    store.add(first)
    counts = store._searcher.frequencies
    assert counts.of(np.array([7, 8, 9])).tolist() == [1, 1, 0]
    store.add(ImageRecord("b.jpg", random_signatures(2)[1], local=synthetic_local([8, 9])))
    assert counts.of(np.array([7, 8, 9])).tolist() == [1, 1, 0]  # cached
    monkeypatch.setattr(frequencies, "MAX_AGE", 0.0)
    assert counts.of(np.array([7, 8, 9])).tolist() == [1, 2, 1]


def test_unreadable_local_features_are_skipped(store: ElasticStore, engine_url: str) -> None:
    """A document whose candidate value or older packed features do not unpack (written by
    another client, or damaged) is never a candidate and reads back without local features; the
    others still come back."""
    shared = list(range(100, 160))
    store.add(ImageRecord("good.jpg", random_signatures(1)[0], local=synthetic_local(shared)))
    store.add(ImageRecord("bad.jpg", random_signatures(2)[1], local=synthetic_local(shared)))
    path = f"/{store.index}/_update/{docs.doc_id('bad.jpg')}"
    features = synthetic_local(shared)
    value = candidate.pack(candidate.CandidateFields(features, None, None, None, None))
    older = pack_local(features)
    garbage = [  # the candidate value is decoded by the engine: base64 at least
        {docs.CANDIDATE_FIELD: "AAAA"},
        {docs.CANDIDATE_FIELD: base64.b64encode(b"\x09" + value[1:]).decode()},
        {docs.CANDIDATE_FIELD: base64.b64encode(value[:-3]).decode()},
        {docs.CANDIDATE_FIELD: None, docs.LOCAL_FIELD: "not base64!"},
        {docs.CANDIDATE_FIELD: None, docs.LOCAL_FIELD: base64.b64encode(older[:-1]).decode()},
    ]
    for fields in garbage:
        body = {"doc": fields}
        answer = raw(engine_url, "POST", path, params={"refresh": "true"}, json=body)
        assert answer.status_code == 200
        assert [c.filepath for c in store.local_candidates(np.array(shared), 10)] == ["good.jpg"]
        assert store.get("bad.jpg").local is None


def test_documents_of_an_earlier_match_are_candidates_read_from_source(
    store: ElasticStore, engine_url: str, local_photos: list[ImageRecord]
) -> None:
    """Documents written before the candidate value (packed features in _source only) are
    still candidates, in their rank among the others, with their metadata, size, PDQ hash and
    signature distance: a second request reads their _source."""
    new, old = local_photos[0], local_photos[1]
    store.add(new)
    signature = old.signature
    older = dataclasses.replace(old, size=(640, 427), pdq=bytes(range(32)), pdq_quality=90)
    doc = docs.document(
        older, signature, words(signature).tolist(), 1, docs.pack(signature[None])[0]
    )
    del doc[docs.CANDIDATE_FIELD]
    doc[docs.LOCAL_FIELD] = base64.b64encode(pack_local(older.local)).decode()
    put = f"/{store.index}/_doc/{docs.doc_id(older.filepath)}"
    assert raw(engine_url, "PUT", put, params={"refresh": "true"}, json=doc).status_code == 201
    query = np.union1d(new.local.words, old.local.words)
    found = store.local_candidates(query, 10, signatures=old.signature[None])
    assert {c.filepath for c in found} == {new.filepath, old.filepath}
    [read] = [c for c in found if c.filepath == old.filepath]
    assert (read.metadata, read.size, read.pdq, read.pdq_quality) == (
        old.metadata,
        (640, 427),
        bytes(range(32)),
        90,
    )
    assert read.distance == 0.0
    assert np.array_equal(read.local.words, old.local.words)
    assert [c.filepath for c in store.local_candidates(old.local.words, 1)] == [old.filepath]


def test_documents_without_terms_are_found_by_their_words(
    store: ElasticStore, engine_url: str, local_photos: list[ImageRecord]
) -> None:
    """A document an earlier Match wrote has words and no terms: while the index holds one, a
    query with bits looks up words, so it and the newer documents are all still candidates;
    once it is added again, terms."""
    new, old = local_photos[0], local_photos[1]
    store.add(new)
    doc = docs.document(
        old, old.signature, words(old.signature).tolist(), 1, docs.pack(old.signature[None])[0]
    )
    del doc[docs.LOCAL_TERMS_FIELD]
    put = f"/{store.index}/_doc/{docs.doc_id(old.filepath)}"
    assert raw(engine_url, "PUT", put, params={"refresh": "true"}, json=doc).status_code == 201
    for record in (old, new):
        found = store.local_candidates(record.local.words, 1, bits=record.local.bits)
        assert [c.filepath for c in found] == [record.filepath]
    assert store._searcher._has_termless()
    store.add(old)
    store._searcher._termless = None  # asked again at once, not after frequencies.MAX_AGE
    assert not store._searcher._has_termless()
    for record in (old, new):
        found = store.local_candidates(record.local.words, 1, bits=record.local.bits)
        assert [c.filepath for c in found] == [record.filepath]


def test_check_repair_gives_documents_without_terms_their_terms(
    store: ElasticStore,
    engine_url: str,
    local_photos: list[ImageRecord],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A check notes documents an earlier Match wrote without terms (not damage); the repair
    gives each the terms of its own stored features (one whose features cannot be read, empty
    terms), saying how far it has got, after which queries rank by terms again."""
    new, old = local_photos[0], local_photos[1]
    store.add(new)
    doc = docs.document(
        old, old.signature, words(old.signature).tolist(), 1, docs.pack(old.signature[None])[0]
    )
    del doc[docs.LOCAL_TERMS_FIELD]
    garbage = base64.b64encode(b"not packed features").decode()
    broken = dict(doc, path="broken.jpg", **{docs.CANDIDATE_FIELD: garbage})
    for record, body in ((old.filepath, doc), ("broken.jpg", broken)):
        put = f"/{store.index}/_doc/{docs.doc_id(record)}"
        assert raw(engine_url, "PUT", put, params={"refresh": "true"}, json=body).status_code == 201
    assert store._searcher._has_termless()
    noted = store.check()
    assert not noted.damaged and not noted.problems and not noted.repaired
    assert "2 documents of an earlier Match have no terms" in noted.notes[0]
    monkeypatch.setattr(upgrade, "PROGRESS_EVERY", 1)
    with caplog.at_level(logging.INFO, logger=PROGRESS.name):
        repaired = store.check(repair=True)
    assert repaired.repaired == ["2 documents given their terms"] and not repaired.damaged
    assert f"{store.index}: 2 documents given their terms so far" in caplog.messages
    assert store.check() == Integrity()
    assert not store._searcher._has_termless()  # forgotten by the repair: asked again
    read = raw(engine_url, "GET", f"/{store.index}/_doc/{docs.doc_id(old.filepath)}").json()
    terms = stored_terms(old.local.words, old.local.bits)
    assert read["_source"][docs.LOCAL_TERMS_FIELD] == " ".join(map(str, terms.tolist()))
    read = raw(engine_url, "GET", f"/{store.index}/_doc/{docs.doc_id('broken.jpg')}").json()
    assert read["_source"][docs.LOCAL_TERMS_FIELD] == ""
    for record in (old, new):
        found = store.local_candidates(record.local.words, 1, bits=record.local.bits)
        assert [c.filepath for c in found] == [record.filepath]


def test_previous_index_gets_local_fields_on_open(engine_url: str, engine_index: str) -> None:
    """An index created before partial matching gains the fields in place when a store opens
    it: its documents stay searchable, new ones carry local features, the mapping stays strict."""
    created = raw(engine_url, "PUT", f"/{engine_index}", json={"mappings": previous_mapping()})
    assert created.status_code == 200
    old = random_signatures(2, seed=7)
    for n, (name, signature) in enumerate(zip(["old-1.jpg", "old-2.jpg"], old, strict=True)):
        record = ImageRecord(name, signature, {"n": n})
        doc = docs.document(record, signature, words(signature).tolist(), n + 1, docs.pack(old)[n])
        answer = raw(
            engine_url,
            "PUT",
            f"/{engine_index}/_doc/{docs.doc_id(name)}",
            params={"refresh": "true"},
            json=doc,
        )
        assert answer.status_code == 201
    store = open_store(engine_url, engine_index)
    assert store.count() == 2
    mapping = raw(engine_url, "GET", f"/{engine_index}/_mapping").json()[engine_index]["mappings"]
    assert mapping == docs.mapping()
    assert [hit.filepath for hit in store.search(old[1][None, :], 0.45, 10)] == ["old-2.jpg"]
    assert store.get("old-1.jpg").local is None
    new = ImageRecord("new.jpg", old[0], local=synthetic_local([5, 6, 7, 8]))
    store.add(new)
    assert [c.filepath for c in store.local_candidates(np.array([6, 9]), 10)] == ["new.jpg"]
    assert store.list() == ["old-1.jpg", "old-2.jpg", "new.jpg"]
    unknown = raw(engine_url, "POST", f"/{engine_index}/_doc", json={"path": "x", "colour": 1})
    assert unknown.status_code == 400 and "strict" in unknown.text
    store.close()
    reopened = open_store(engine_url, engine_index)  # nothing left to add: opens as usual
    assert [c.filepath for c in reopened.local_candidates(np.array([5]), 10)] == ["new.jpg"]
    reopened.close()


def changed_terms(query: bytes, flips_per_term: list[int], rng: np.random.Generator) -> bytes:
    """The hash with this many bits flipped in each of its 16 terms."""
    bits = np.unpackbits(np.frombuffer(query, dtype=np.uint8))
    for term, flips in enumerate(flips_per_term):
        bits[16 * term + rng.choice(16, flips, replace=False)] ^= 1
    return np.packbits(bits).tobytes()


def test_pdq_cut_ranks_a_near_copy_above_hashes_sharing_one_neighbour_term(
    store: ElasticStore,
) -> None:
    """The engine keeps only the best-scoring candidates of a lookup. A near copy with no term
    in common with the query (every 16-bit term changed) still holds several one-bit neighbour
    terms, while each record of this crowd holds one: the near copy must outscore the crowd, so
    a cut far smaller than the crowd still finds it."""
    rng = np.random.default_rng(31)
    query = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    # 28 bits: 4 terms one bit away, 12 terms two bits away, no term in common
    near = changed_terms(query, [1] * 4 + [2] * 12, rng)
    # the crowd: one term one bit away, every other term 3 bits away (far beyond 31)
    crowd = [changed_terms(query, list(np.roll([1] + [3] * 15, n)), rng) for n in range(150)]
    records = [HashRecord(f"crowd/{n}", packed, 90) for n, packed in enumerate(crowd)]
    assert store.add_hashes([*records, HashRecord("near", near, 90)]).added == 151
    store._hashes.candidates = 10
    hits = store.pdq_search([query], 31, 10)
    assert [(hit.filepath, hit.distance) for hit in hits] == [("near", 28)]


def test_pdq_lookup_in_a_large_index_keeps_every_record_within_29_bits(
    store: ElasticStore,
) -> None:
    """An index so large that the records sharing one probe term with a query would overflow
    the cut (here a cut of 10 in an index of 3,003 records) is asked for 3 points at least:
    every record within 29 bits scores that much, whatever its spread over the terms; a record
    at 31 bits with a single term one bit away and all others two (score 1, about 1 in 10,000
    of random 31-bit changes) is the price, documented in docs/pdq.md."""
    rng = np.random.default_rng(29)
    query = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    close = {
        "d29": changed_terms(query, [1] * 3 + [2] * 13, rng),  # score 3, the least within 29
        "d31-spread": changed_terms(query, [1] + [2] * 15, rng),  # score 1
        "d12": changed_terms(query, [1] * 12 + [0] * 4, rng),  # score 20
    }
    noise = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(3000)]
    # in another collection: the index is large, the lookup's scope small, so only the
    # min_score (not the cut) can leave d31-spread out
    records = [HashRecord(f"{n}", packed, 90, None, "noise") for n, packed in enumerate(noise)]
    records += [HashRecord(name, packed, 90) for name, packed in close.items()]
    assert store.add_hashes(records).added == 3003
    store._hashes.candidates = 10
    hits = store.pdq_search([query], 31, 10)
    assert [(hit.filepath, hit.distance) for hit in hits] == [("d12", 12), ("d29", 29)]
    store._hashes.candidates = 5000  # the whole low tier fits: exact again
    hits = store.pdq_search([query], 31, 10)
    assert [hit.filepath for hit in hits] == ["d12", "d29", "d31-spread"]
