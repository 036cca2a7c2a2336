"""The real Elasticsearch/OpenSearch servers the engine tests run against are the ones named.

Each engine (es8, os2, ... from MATCH_TEST_ENGINES, or the defaults started by scripts/engines.py)
must answer as its distribution and major version, accept an index in the fresh `engine_index`,
and lose that index again when the fixture is done.
"""

from __future__ import annotations

import httpx
import pytest

from engines import INDEX_PREFIX, delete_indexes, engine_info, expected_engine

pytestmark = pytest.mark.engine


def test_engine_answers_with_its_distribution_and_major_version(
    engine_name: str, engine_url: str
) -> None:
    info = engine_info(engine_url)
    assert info is not None, f"{engine_name} at {engine_url} does not answer"
    distribution, major = expected_engine(engine_name)
    assert info["distribution"] == distribution
    assert int(info["number"].split(".")[0]) == major


def test_engine_cluster_is_healthy(engine_url: str) -> None:
    health = httpx.get(f"{engine_url}/_cluster/health", timeout=30).json()
    assert health["status"] in {"green", "yellow"}
    assert health["number_of_nodes"] >= 1


def test_engine_index_is_fresh_and_usable(engine_url: str, engine_index: str) -> None:
    assert engine_index.startswith(INDEX_PREFIX)
    assert httpx.head(f"{engine_url}/{engine_index}").status_code == 404
    created = httpx.put(f"{engine_url}/{engine_index}", timeout=30)
    assert created.status_code == 200, created.text
    written = httpx.put(
        f"{engine_url}/{engine_index}/_doc/1",
        params={"refresh": "wait_for"},
        json={"path": "a.jpg"},
        timeout=30,
    )
    assert written.status_code in (200, 201), written.text
    counted = httpx.get(f"{engine_url}/{engine_index}/_count", timeout=30).json()
    assert counted["count"] == 1


def test_delete_indexes_removes_the_index_and_its_kin(engine_url: str, engine_index: str) -> None:
    for name in (engine_index, f"{engine_index}-old"):
        assert httpx.put(f"{engine_url}/{name}", timeout=30).status_code == 200
    delete_indexes(engine_url, engine_index)
    for name in (engine_index, f"{engine_index}-old"):
        assert httpx.head(f"{engine_url}/{name}").status_code == 404
