"""What the embedded store's integrity checks cost: opening a store with the quick check
(stores/sqlite/integrity.py) beside opening it without, and the full check of ``match check``,
on synthetic stores of N records (random signatures, metadata; no local features, so the file
is the smallest a store of N images can be: the quick check's budget then covers the least).

    nice .venv/bin/python bench/integrity.py 100000 1000000   # a few minutes per million

Prints, for each size: the file's size, the open time without and with the quick check (best
of 5, warm page cache), their ratio, whether the structural part finished within its budget,
and the full check's time.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from match.signature import SIGNATURE_LENGTH
from match.stores.base import ImageRecord
from match.stores.sqlite import SQLiteStore, integrity
from match.stores.sqlite.database import Database


def fill(folder: Path, count: int) -> Path:
    rng = np.random.default_rng(count)
    with SQLiteStore(folder) as store:
        for start in range(0, count, 20_000):
            size = min(20_000, count - start)
            signatures = rng.integers(-2, 3, size=(size, SIGNATURE_LENGTH), dtype=np.int8)
            store.add_many(
                ImageRecord(f"img/{start + i}.jpg", sig, {"n": start + i, "shop": i % 50})
                for i, sig in enumerate(signatures)
            )
        return store.path


def best_open(path: Path, check: bool, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        Database(path, 15.0, check=check).close()
        times.append(time.perf_counter() - started)
    return min(times)


def main(sizes: list[int]) -> None:
    print(f"quick check budget: {integrity.QUICK_CHECK_SECONDS} s")
    print(
        "records   file MB   open (no check) ms   open (quick check) ms   ratio   whole"
        "   full check s"
    )
    for count in sizes:
        with tempfile.TemporaryDirectory(prefix="match-integrity-") as tmp:
            path = fill(Path(tmp), count)
            plain = best_open(path, check=False)
            checked = best_open(path, check=True)
            db = Database(path, 15.0, check=False)
            with db.maintenance() as conn:
                complete = integrity.quick_check(conn).complete
                started = time.perf_counter()
                problems = integrity.full_check(conn).problems
                full = time.perf_counter() - started
            db.close()
            assert not problems, problems
            print(
                f"{count:>7}   {path.stat().st_size / 2**20:7.0f}   {plain * 1000:18.1f}   "
                f"{checked * 1000:21.1f}   {checked / plain:5.1f}   "
                f"{'yes' if complete else 'no':>5}   {full:12.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [100_000])
