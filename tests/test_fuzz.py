"""Property-based fuzzing of every operation in the served /openapi.json (schemathesis): valid and
invalid parameter values and bodies, each request answered without a 5xx, as JSON, in the
envelope, with a status and body the description documents. Bounded: FUZZ_EXAMPLES cases per
operation on the embedded store (about a minute in all), ENGINE_FUZZ_EXAMPLES on the engine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api_server import MatchServer, StoreEnv

HARDENING_SUITE = True  # deselected on engines past the first: api_server.HARDENING_STORE_KINDS

FUZZ_EXAMPLES = 25  # per operation and generation mode
# The HTTP layer's parsing is the same over every store and is fuzzed in full on the embedded
# one; the engine run checks what reaches the engine (filters, paging, hashes) with fewer cases.
ENGINE_FUZZ_EXAMPLES = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ENVELOPE_KEYS = {"status", "error", "method", "result"}
# Answers that are files, not envelopes: a hash list exported by GET /hashes (errors stay JSON).
FILE_MEDIA = ("application/x-ndjson", "text/csv")


@pytest.fixture(scope="module")
def server(store_env: StoreEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatchServer]:
    folder = tmp_path_factory.mktemp("fuzz")
    # Default URL policy: fuzzed URLs on loopback or private addresses are refused, not fetched.
    env = store_env() | {"WORKER_COUNT": "1", "MATCH_URL_TIMEOUT": "2"}
    server = MatchServer(env, folder / "server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def schema(server: MatchServer) -> Any:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def assert_envelope(response: Any) -> None:
    assert response.headers["content-type"][0].startswith("application/json"), response.text
    body = json.loads(response.content)
    assert set(body) >= ENVELOPE_KEYS, body
    assert body["status"] in {"ok", "warn", "fail"}
    assert isinstance(body["error"], list) and isinstance(body["result"], list)
    if body["status"] == "fail":
        assert body["error"] and all(isinstance(message, str) for message in body["error"])
        assert not any("Traceback" in message for message in body["error"])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_get_envelopes_the_description_documents(
    schema: Any, server: MatchServer, mode: GenerationMode
) -> None:
    examples = ENGINE_FUZZ_EXAMPLES if "ELASTICSEARCH_URL" in server.env else FUZZ_EXAMPLES
    tested = 0
    for operation in operations(schema):
        strategy = operation.as_strategy(generation_mode=mode)
        try:
            _fuzz_one(strategy, server.url, examples)()
        except Unsatisfiable:
            # No invalid request exists for an operation without parameters (GET /count).
            assert mode == GenerationMode.NEGATIVE and not operation.query, operation.label
            continue
        tested += 1
    assert tested >= 20  # dsys/match's routes and TinEye's
    assert server.process is not None and server.process.poll() is None  # still serving
    assert "Internal server error" not in server.log()


def _fuzz_one(strategy: st.SearchStrategy, base_url: str, examples: int) -> Any:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases each run: a failure is reproducible
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, timeout=30)
        assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
        exported = case.method == "GET" and case.path == "/hashes" and response.status_code == 200
        thumbnail = case.path == "/thumbnail" and response.status_code == 200
        if thumbnail:  # an image, as documented (match.http.web)
            assert response.headers["content-type"][0] == "image/webp"
        elif not (exported and response.headers["content-type"][0].startswith(FILE_MEDIA)):
            assert_envelope(response)
        case.validate_response(response, checks=CHECKS)

    return run


def test_the_access_log_shows_the_fuzzing_reached_handlers_and_no_5xx(server: MatchServer) -> None:
    # Runs after the fuzzing, on the same module server.
    statuses = [
        entry["status"]
        for entry in map(json.loads, server.log().splitlines())
        if entry.get("logger") == "match.access"
    ]
    assert len(statuses) > 500
    assert {200, 400} <= set(statuses)  # accepted requests and refused ones
    assert max(statuses) < 500
    assert "Traceback" not in server.log()
