"""An index written by image-match 1.x / dsys/match stays usable through ElasticStore.

Documents are written here exactly as image-match's SignatureES wrote them (make_record's keys,
``timestamp`` as naive local time, auto-generated _ids, no index created beforehand so the
engine's dynamic mapping applies: ``path`` becomes text with a ``.keyword`` subfield), with the
signatures and words image-match computed for the fixture images (golden.json).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from match.errors import NotFound
from match.local import local_features
from match.signature import ALGORITHM
from match.signature.decode import decode_pixels
from match.stores.base import ImageRecord
from match.stores.elastic import ElasticStore, EngineClient
from match.stores.elastic import documents as docs

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def golden(fixtures_dir: Path) -> dict[str, Any]:
    return json.loads((fixtures_dir / "golden.json").read_text())


def image_match_record(path: str, image: dict[str, Any], metadata: Any = None) -> dict[str, Any]:
    """make_record + insert_single_record: keys in image-match's order, metadata only if truthy."""
    record: dict[str, Any] = {"path": path, "signature": image["signature"]}
    if metadata:
        record["metadata"] = metadata
    record.update({f"simple_word_{i}": word for i, word in enumerate(image["words"])})
    record["timestamp"] = datetime.now().isoformat()  # naive, as image-match wrote it
    return record


def write(engine_url: str, index: str, records: list[dict[str, Any]]) -> None:
    """POST each document with an auto-generated _id, then refresh (refresh_after=True)."""
    with httpx.Client(base_url=engine_url, timeout=30) as http:
        for record in records:
            assert http.post(f"/{index}/_doc", json=record).status_code == 201
        http.post(f"/{index}/_refresh").raise_for_status()


def count_path(engine_url: str, index: str, field: str, path: str) -> int:
    answer = httpx.post(f"{engine_url}/{index}/_count", json={"query": {"term": {field: path}}})
    return answer.json()["count"]


@pytest.fixture
def legacy(engine_url: str, engine_index: str, golden: dict[str, Any]) -> ElasticStore:
    """An image-match index with the four golden images, and a store on it."""
    images = golden["images"]
    write(
        engine_url,
        engine_index,
        [
            image_match_record(f"{key}.jpg", images[key], {"key": key} if key != "C" else None)
            for key in "ABCD"
        ],
    )
    store = ElasticStore(EngineClient(engine_url), engine_index, refresh_interval="200ms")
    yield store
    store.close()


def test_the_index_has_image_match_dynamic_mapping(legacy: ElasticStore, engine_url: str) -> None:
    mapping = httpx.get(f"{engine_url}/{legacy.index}/_mapping").json()
    path = next(iter(mapping.values()))["mappings"]["properties"]["path"]
    assert path["type"] == "text"
    assert path["fields"]["keyword"]["type"] == "keyword"


def test_search_finds_image_match_documents(legacy: ElasticStore, golden: dict[str, Any]) -> None:
    images, distances = golden["images"], golden["distances"]
    query = np.asarray(images["A"]["signature"], dtype=np.int8)[None, :]
    hits = legacy.search(query, cutoff=0.45, limit=10)
    assert [hit.filepath for hit in hits] == ["A.jpg", "B.jpg", "D.jpg"]  # C is at 0.68
    assert hits[0].distance == pytest.approx(0.0, abs=1e-6)
    assert hits[1].distance == pytest.approx(distances["A-B"], abs=1e-12)
    assert hits[2].distance == pytest.approx(distances["A-D"], abs=1e-12)
    assert hits[1].metadata == {"key": "B"}


def test_get_count_and_list(legacy: ElasticStore, golden: dict[str, Any]) -> None:
    record = legacy.get("B.jpg")
    assert record.signature.tolist() == golden["images"]["B"]["signature"]
    assert record.metadata == {"key": "B"}
    assert record.algorithm == ALGORITHM
    assert legacy.get("C.jpg").metadata is None
    assert legacy.count() == 4
    assert legacy.list() == ["A.jpg", "B.jpg", "C.jpg", "D.jpg"]  # by timestamp
    with pytest.raises(NotFound):
        legacy.get("A")  # analysed text would match 'A.jpg'; the exact keyword does not


def test_delete_removes_every_duplicate_and_nothing_else(
    legacy: ElasticStore, engine_url: str, golden: dict[str, Any]
) -> None:
    image = golden["images"]["C"]
    write(
        engine_url,
        legacy.index,
        [image_match_record("a.jpg", image) for _ in range(12)]
        + [image_match_record(path, image) for path in ("dir/a.jpg", "a.jpg.bak", "a/jpg")],
    )
    # the two traps of dsys/match's delete_duplicates: its analysed phrase query also matches
    # other paths, and with the default size it sees only 10 of the 12 duplicates
    phrase = httpx.post(
        f"{engine_url}/{legacy.index}/_search", json={"query": {"match": {"path": "a.jpg"}}}
    ).json()["hits"]["hits"]
    assert len(phrase) == 10
    seen = {hit["_source"]["path"] for hit in phrase}
    everything = httpx.post(
        f"{engine_url}/{legacy.index}/_search",
        json={"query": {"match": {"path": "a.jpg"}}, "size": 100},
    ).json()
    assert "dir/a.jpg" in {hit["_source"]["path"] for hit in everything["hits"]["hits"]} | seen

    legacy.delete("a.jpg")
    assert count_path(engine_url, legacy.index, "path.keyword", "a.jpg") == 0
    for other in ("dir/a.jpg", "a.jpg.bak", "a/jpg", "A.jpg"):
        assert count_path(engine_url, legacy.index, "path.keyword", other) == 1
    with pytest.raises(NotFound):
        legacy.delete("a.jpg")


def test_overwrite_replaces_every_duplicate(
    legacy: ElasticStore, engine_url: str, golden: dict[str, Any]
) -> None:
    write(
        engine_url,
        legacy.index,
        [image_match_record("dup.jpg", golden["images"]["C"]) for _ in range(12)],
    )
    new = np.asarray(golden["images"]["D"]["signature"], dtype=np.int8)
    legacy.add(ImageRecord("dup.jpg", new, {"new": True}))
    assert count_path(engine_url, legacy.index, "path.keyword", "dup.jpg") == 1
    record = legacy.get("dup.jpg")
    assert np.array_equal(record.signature, new)
    assert record.metadata == {"new": True}
    assert legacy.count() == 5
    assert legacy.list()[-1] == "dup.jpg"  # new records follow image-match's


def test_update_metadata_of_image_match_document(legacy: ElasticStore) -> None:
    legacy.update_metadata("C.jpg", {"added": "later"})
    assert legacy.get("C.jpg").metadata == {"added": "later"}
    assert legacy.count() == 4


def test_new_and_image_match_records_are_searched_together(
    legacy: ElasticStore, golden: dict[str, Any]
) -> None:
    b = np.asarray(golden["images"]["B"]["signature"], dtype=np.int8)
    legacy.add(ImageRecord("B-again.jpg", b))
    hits = legacy.search(b[None, :], cutoff=0.45, limit=10)
    assert [hit.filepath for hit in hits[:2]] == ["B-again.jpg", "B.jpg"]  # tie: by filepath
    assert {hit.filepath for hit in hits} == {"A.jpg", "B.jpg", "B-again.jpg", "D.jpg"}


def test_image_match_documents_fit_a_match_index(
    engine_url: str, engine_index: str, golden: dict[str, Any]
) -> None:
    """image-match clients may keep writing into an index Match created (strict mapping)."""
    store = ElasticStore(EngineClient(engine_url), engine_index, refresh_interval="200ms")
    assert store.count() == 0  # creates the index
    write(
        engine_url,
        engine_index,
        [image_match_record(f"{key}.jpg", golden["images"][key]) for key in "AB"],
    )
    query = np.asarray(golden["images"]["B"]["signature"], dtype=np.int8)[None, :]
    assert [hit.filepath for hit in store.search(query, 0.45, 10)] == ["B.jpg", "A.jpg"]
    store.delete("A.jpg")
    assert store.list() == ["B.jpg"]
    store.close()


def test_image_match_index_gets_local_fields_and_takes_local_features(
    legacy: ElasticStore, engine_url: str, fixtures_dir: Path, golden: dict[str, Any]
) -> None:
    """Opening an image-match index adds the partial matching fields in place; its documents
    stay searchable and are never local candidates; Match's records carry local features."""
    assert legacy.count() == 4  # opens the index
    mapping = httpx.get(f"{engine_url}/{legacy.index}/_mapping").json()
    properties = next(iter(mapping.values()))["mappings"]["properties"]
    for name, spec in docs.local_fields().items():
        assert properties[name] == spec
    image = golden["images"]["B"]
    local = local_features(decode_pixels(fixtures_dir / image["file"]))
    signature = np.asarray(image["signature"], dtype=np.int8)
    legacy.add(ImageRecord("B-local.jpg", signature, {"k": 1}, local=local))
    candidates = legacy.local_candidates(local.words, 30)
    assert [(c.filepath, c.metadata) for c in candidates] == [("B-local.jpg", {"k": 1})]
    assert np.array_equal(candidates[0].local.words, local.words)
    hits = legacy.search(signature[None, :], cutoff=0.45, limit=10)
    assert {hit.filepath for hit in hits} == {"A.jpg", "B.jpg", "B-local.jpg", "D.jpg"}
    assert legacy.get("B.jpg").local is None
