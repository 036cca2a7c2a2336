"""Timings of the service's steps, for whoever observes them (the HTTP app's metrics).

Callbacks (operation, signatures, seconds) in TIMING_OBSERVERS run after each:
- "signature": decoding and 1 or 8 orientations' signatures (signatures: how many);
- "local": local feature extraction (1);
- "search": a store search by signature (signatures: the query's rows);
- "local_search": partial matching's candidate retrieval and verification (1);
- "pdq": an image's PDQ hash (1, or 8 dihedral hashes);
- "pdq_search": a store lookup of 1 or 8 PDQ hashes;
- "pdq_search_batch": a store lookup of a batch of PDQ hashes, each on its own (signatures:
  how many).
With none registered, nothing is timed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

TIMING_OBSERVERS: list[Callable[[str, int, float], None]] = []


@contextmanager
def timed(operation: str, signatures: int) -> Iterator[None]:
    if not TIMING_OBSERVERS:
        yield
        return
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    for observer in TIMING_OBSERVERS:
        observer(operation, signatures, seconds)
