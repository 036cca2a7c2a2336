"""/metrics and the access log, on a real server with two workers and real photos: every request
counted once whichever worker answered it and whichever worker is scraped, by endpoint, status
and error; signature and search timings by orientations; images stored read from the store.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from match.http import metrics
from server_process import ServerProcess, environment, free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client) -> Samples:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, method: str, endpoint: str, status: int) -> float:
    return value(
        samples, "match_http_requests_total", method=method, endpoint=endpoint, status=str(status)
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("metrics")
    env = environment(MATCH_DATA_DIR=str(folder / "data"), WORKER_COUNT="2")
    with ServerProcess(["match", "serve"], env, folder / "server.log") as running:
        yield running


def all_lines(server: ServerProcess) -> list[dict]:
    return [json.loads(line) for line in server.log().splitlines() if line.strip()]


def access_log(server: ServerProcess) -> list[dict]:
    return [line for line in all_lines(server) if line["logger"] == "match.access"]


def logged(server: ServerProcess, agent: str) -> list[dict]:
    """The access-log lines of requests made with this user agent: each is written just after
    its response is sent, so wait a little for it."""
    give_up = time.monotonic() + 10
    while True:
        lines = [entry for entry in access_log(server) if entry.get("user_agent") == agent]
        if lines or time.monotonic() > give_up:
            return lines
        time.sleep(0.05)


def test_log_is_json_lines_with_one_access_line_per_request(server: ServerProcess) -> None:
    agent = "metrics-test/1.0"
    httpx.get(server.url + "/count", headers={"user-agent": agent}, timeout=10)
    (line,) = logged(server, agent)
    assert line["method"] == "GET" and line["path"] == "/count" and line["status"] == 200
    assert line["endpoint"] == "/count" and line["client"] == "127.0.0.1"
    assert line["duration_ms"] >= 0 and line["response_bytes"] > 0
    # Every line of the log is JSON (access_log parsed them all); uvicorn's own access log is
    # off, so each request is logged once.
    assert all(entry["logger"] != "uvicorn.access" for entry in all_lines(server))


def test_requests_through_both_workers_are_counted_once_in_every_scrape(
    server: ServerProcess,
) -> None:
    before = scrape(httpx.Client(base_url=server.url, timeout=10))
    agent, pings, workers = "ping-both-workers", 0, set()
    # New connections until both workers have answered some (the kernel picks the worker).
    while len(workers) < 2 and pings < 400:
        httpx.get(server.url + "/ping", headers={"user-agent": agent}, timeout=10)
        pings += 1
        if pings % 10 == 0:
            workers = {entry["pid"] for entry in logged(server, agent)}
    assert len(workers) == 2, "every ping went to one worker"
    for _ in range(6):  # fresh connections: scrapes answered by either worker
        with httpx.Client(base_url=server.url, timeout=10) as client:
            after = scrape(client)
        counted = requests(after, "GET", "/ping", 200) - requests(before, "GET", "/ping", 200)
        assert counted == pings


def test_errors_are_counted_per_endpoint_and_status(server: ServerProcess) -> None:
    client = httpx.Client(base_url=server.url, timeout=10)
    before = scrape(client)
    assert client.delete("/delete", params={"filepath": "never-added.jpg"}).status_code == 404
    assert client.put("/add").status_code == 405
    assert client.get("/no/such/route").status_code == 404
    after = scrape(client)

    def more(endpoint: str, status: int, method: str) -> float:
        errors = value(after, "match_http_errors_total", endpoint=endpoint, status=str(status))
        errors -= value(before, "match_http_errors_total", endpoint=endpoint, status=str(status))
        counted = requests(after, method, endpoint, status) - requests(
            before, method, endpoint, status
        )
        assert errors == counted
        return errors

    assert more("/delete", 404, "DELETE") == 1
    assert more("/add", 405, "PUT") == 1
    assert more(metrics.UNMATCHED, 404, "GET") == 1  # the raw path is not a label


def test_images_stored_and_signature_and_search_timings(
    server: ServerProcess, photo_paths: list[Path]
) -> None:
    client = httpx.Client(base_url=server.url, timeout=60)
    before = scrape(client)
    for path in photo_paths[:3]:
        answer = client.post(
            "/add", data={"filepath": path.name}, files={"image": path.read_bytes()}
        )
        assert answer.status_code == 200, answer.text
    query = photo_paths[0].read_bytes()
    assert client.post("/search", files={"image": query}).status_code == 200
    answer = client.post("/search", data={"all_orientations": "false"}, files={"image": query})
    assert answer.status_code == 200
    after = scrape(client)

    def observed(name: str, orientations: str) -> float:
        count = f"{name}_count"
        return value(after, count, orientations=orientations) - value(
            before, count, orientations=orientations
        )

    assert observed("match_signature_seconds", "1") == 4  # three adds, one plain search
    assert observed("match_signature_seconds", "8") == 1  # one all-orientations search
    assert observed("match_search_seconds", "8") == 1
    assert observed("match_search_seconds", "1") == 1
    # partial matching: features of every added and searched image, local part of each search
    assert (
        value(after, "match_local_features_seconds_count")
        - value(before, "match_local_features_seconds_count")
        == 5
    )
    assert (
        value(after, "match_local_search_seconds_count")
        - value(before, "match_local_search_seconds_count")
        == 2
    )
    total = value(after, "match_signature_seconds_sum", orientations="1")
    assert total > value(before, "match_signature_seconds_sum", orientations="1")
    assert value(after, "match_store_up") == 1
    count = client.get("/count").json()["result"][0]
    assert value(after, "match_images_stored") == count >= 3
    client.delete("/delete", params={"filepath": photo_paths[0].name})
    assert value(scrape(client), "match_images_stored") == count - 1


def test_metrics_is_plain_prometheus_text_outside_the_api(server: ServerProcess) -> None:
    client = httpx.Client(base_url=server.url, timeout=10)
    answer = client.get("/metrics")
    assert "match_http_requests_total" in answer.text
    assert not answer.text.lstrip().startswith("{")
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]
    assert client.get("/ping").json() == {
        "status": "ok",
        "error": [],
        "method": "ping",
        "result": [],
    }


def test_store_down_shows_in_the_metrics_not_as_an_error(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = environment(ELASTICSEARCH_URL=closed, ELASTICSEARCH_TIMEOUT="1", WORKER_COUNT="1")
    with ServerProcess(["match", "serve"], env, tmp_path / "server.log", ping_ok=False) as down:
        samples = scrape(httpx.Client(base_url=down.url, timeout=60))
    assert value(samples, "match_store_up") == 0
    assert ("match_images_stored", frozenset()) not in samples


def test_prepare_multiprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "")  # recorded, so what the test sets is undone
    monkeypatch.delenv(metrics.MULTIPROC_ENV)
    assert metrics.prepare_multiprocess(1) is None  # one process: in-memory values
    assert metrics.MULTIPROC_ENV not in os.environ
    folder = metrics.prepare_multiprocess(2)
    assert folder is not None and folder.is_dir() and not any(folder.iterdir())
    assert os.environ[metrics.MULTIPROC_ENV] == str(folder)
    # A folder set by the operator (e.g. a Kubernetes emptyDir) is used, and last run's files go.
    given = tmp_path / "given"
    given.mkdir()
    (given / "counter_123.db").write_bytes(b"stale")
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(given))
    assert metrics.prepare_multiprocess(4) == given
    assert not (given / "counter_123.db").exists()
