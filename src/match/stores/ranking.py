"""Exact ranking of stored signatures against a query's orientations, for every engine: the
engines only find candidates; the distance that orders and cuts them is computed here. And the
words a partial-matching query keeps within a budget of postings, for every engine."""

from __future__ import annotations

import dataclasses

import numpy as np

from match.signature import normalized_distances
from match.stores.base import LocalCandidate


def closest(queries: np.ndarray, stored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each stored signature ((n, 648)): its smallest distance to any query row ((k, 648)),
    and which row (orientation) gives it. Two (n,) arrays."""
    if len(stored) == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    distances = normalized_distances(queries, stored)  # (k, n)
    rows = np.argmin(distances, axis=0)
    return distances[rows, np.arange(len(stored))], rows


def with_distances(
    candidates: list[LocalCandidate], queries: np.ndarray, stored: np.ndarray
) -> list[LocalCandidate]:
    """The candidates, each with its distance to the closest query row, given their stored
    signatures in the same order."""
    distances, rows = closest(queries, stored)
    return [
        dataclasses.replace(candidate, distance=float(distance), orientation=int(row))
        for candidate, distance, row in zip(candidates, distances, rows, strict=True)
    ]


def rarest_within(words: np.ndarray, counts: np.ndarray, budget: int) -> np.ndarray:
    """These distinct words (ascending), less the most frequent ones if all their postings
    (``counts``) would be more than ``budget``: the frequent words add nearly the same (a low
    idf) to every image and hold most of the postings. The rarest word is always kept."""
    if counts.sum() <= budget:
        return words
    rarest = np.argsort(counts, kind="stable")
    fits = np.cumsum(counts[rarest]) <= budget
    fits[0] = True  # the rarest word, whatever it costs
    return np.sort(words[rarest[fits]])
