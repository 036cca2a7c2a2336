"""An adapter for the accuracy harness (../shared/photos/accuracy.py) that measures what PDQ
hash lists add: every indexed photo goes in as a hash-only record (its PDQ hash computed here,
as a hash-list partner would send it, and imported through POST /hashes), and every query is an
ordinary image search through POST /search, which matches hash-only records by the query's PDQ
hashes in 8 orientations. The server (MATCH_HARNESS_URL, default http://127.0.0.1:8891) must
start on an empty store:

    MATCH_DATA_DIR=/tmp/acc-pdq WORKER_COUNT=2 PORT=8891 .venv/bin/match serve &
    PYTHONPATH=src:bench .venv/bin/python ../shared/photos/accuracy.py \\
        --engines harness_pdq:HashOnlyEngine --queries QUERIES --out /tmp/results
"""

from __future__ import annotations

import json
import os

import httpx

from match import pdq
from match.signature import decode_image


class HashOnlyEngine:
    def __init__(self) -> None:
        self.base = os.environ.get("MATCH_HARNESS_URL", "http://127.0.0.1:8891")
        self.name = "match-pdq-hash-only"
        self.client = httpx.Client(base_url=self.base, timeout=120)

    def index(self, id_: str, path: str) -> None:
        found = pdq.pdq_hash(decode_image(path))
        line = json.dumps(
            {"pdq": pdq.to_hex(found.hash), "filepath": id_, "quality": found.quality}
        )
        response = self.client.post("/hashes", files={"file": ("one.jsonl", line.encode())})
        response.raise_for_status()

    def search(self, path: str) -> list[tuple[str, float]]:
        with open(path, "rb") as image:
            response = self.client.post("/search", files={"image": ("q.jpg", image.read())})
        if 400 <= response.status_code < 500:
            return []  # a refused query finds nothing
        response.raise_for_status()
        return [(r["filepath"], r["score"]) for r in response.json()["result"]]
