"""Adapters for the accuracy harness in ../shared/photos (accuracy.py), one per signature mode.

Brute force over the stored signatures, the query's 8 orientations, score 100 * (1 - distance),
exactly what the service does without the store:

    PYTHONPATH=src:bench /work/harness/venv/bin/python ../shared/photos/accuracy.py \\
        --engines harness_adapter:ExactEngine,harness_adapter:FastEngine \\
        --queries /work/harness/queries --out /tmp/results
"""

from __future__ import annotations

import numpy as np

from match.signature import image_signature, normalized_distances, orientation_signatures

TOP_K = 10


class _SignatureEngine:
    mode = "exact"

    def __init__(self) -> None:
        self.name = f"match-{self.mode}-8orient"
        self.ids: list[str] = []
        self.rows: list[np.ndarray] = []

    def index(self, id_: str, path: str) -> None:
        self.ids.append(id_)
        self.rows.append(image_signature(path, mode=self.mode))

    def search(self, path: str) -> list[tuple[str, float]]:
        queries = orientation_signatures(path, mode=self.mode)
        distances = normalized_distances(queries, np.stack(self.rows)).min(axis=0)
        order = np.argsort(distances, kind="stable")[:TOP_K]
        return [(self.ids[i], 100.0 * (1.0 - float(distances[i]))) for i in order]


class ExactEngine(_SignatureEngine):
    mode = "exact"


class FastEngine(_SignatureEngine):
    mode = "fast"
