"""Durability of the embedded store: SIGKILL in the middle of a bulk ingest loses no
acknowledged add and leaves a consistent database."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from match.stores.sqlite import SQLiteStore
from store_contract import PHOTO_COUNT, photo_signatures

# Adds batches of 25 with add_many, then one with add(), forever; prints each filepath once the
# call that stored it has returned.
INGEST = """
import sys
import numpy as np
from match.stores.base import ImageRecord
from match.stores.sqlite import SQLiteStore

folder, prefix, signatures = sys.argv[1], sys.argv[2], np.load(sys.argv[3])
store = SQLiteStore(folder)
n = 0
while True:
    batch = [ImageRecord(f"{prefix}/{n + j}", signatures[(n + j) % len(signatures)],
                         {"n": n + j}) for j in range(25)]
    assert not store.add_many(batch).failed
    print("\\n".join(record.filepath for record in batch), flush=True)
    n += 25
    store.add(ImageRecord(f"{prefix}/{n}", signatures[n % len(signatures)], {"n": n}))
    print(f"{prefix}/{n}", flush=True)
    n += 1
"""


@pytest.fixture
def signatures(photo_paths: list[Path], tmp_path: Path) -> Path:
    """3000 distinct signatures derived from real photos, saved for the ingest process."""
    originals = photo_signatures(tuple(photo_paths[:PHOTO_COUNT])).originals
    rng = np.random.default_rng(7)
    variants = np.repeat(originals, 3000 // len(originals) + 1, axis=0)[:3000].copy()
    for variant in variants:
        positions = rng.choice(648, size=30, replace=False)
        variant[positions] = rng.integers(-2, 3, 30)
    path = tmp_path / "signatures.npy"
    np.save(path, variants)
    return path


def ingest_until_killed(folder: Path, prefix: str, signatures: Path, acks: int) -> list[str]:
    """Run the ingest, SIGKILL it after ``acks`` acknowledgements; every filepath it printed."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", INGEST, str(folder), prefix, str(signatures)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    acknowledged = []
    assert process.stdout is not None
    for line in process.stdout:
        acknowledged.append(line.strip())
        if len(acknowledged) >= acks:
            break
    process.send_signal(signal.SIGKILL)
    rest, errors = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, errors
    acknowledged += rest.split()  # printed before the kill: acknowledged too
    return acknowledged


def test_sigkill_during_bulk_ingest_keeps_every_acknowledged_add(
    tmp_path: Path, signatures: Path
) -> None:
    folder = tmp_path / "data"
    stored_signatures = np.load(signatures)
    acknowledged: list[str] = []
    for round_, acks in enumerate((120, 333, 571)):
        acknowledged += ingest_until_killed(folder, f"r{round_}", signatures, acks)

        connection = sqlite3.connect(folder / "match.sqlite3")
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        connection.close()
        with SQLiteStore(folder) as store:
            listed = store.list(0, 100_000)
            assert len(listed) == len(set(listed)) == store.count()
            assert set(acknowledged) <= set(listed)
            assert len(listed) - len(acknowledged) <= 26 * (round_ + 1)  # in-flight batches
            for filepath in acknowledged:
                n = int(filepath.split("/")[1])
                record = store.get(filepath)
                assert record.metadata == {"n": n}
                signature = stored_signatures[n % len(stored_signatures)]
                assert np.array_equal(record.signature, signature)
                hits = store.search(signature[None, :], 1e-6, 100)
                assert filepath in [hit.filepath for hit in hits]
