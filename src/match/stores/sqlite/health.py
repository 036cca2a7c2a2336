"""Whether the embedded store can serve now (``/health/ready``): not flagged as damaged, its
disk not (nearly) full, its folder writable, and a real write committed."""

from __future__ import annotations

import os
import shutil
import time
import uuid

from match.errors import StoreUnavailable
from match.stores.sqlite.database import Database, damaged

MB = 1024 * 1024


def readiness(db: Database, min_free_bytes: int) -> list[str]:
    """What keeps the store from serving (empty: ready)."""
    reason = db.damage()
    if reason is not None:
        return [damaged(db.path, reason).message]
    problems = []
    folder = db.path.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError as error:
        return [f"The embedded store's folder {folder} cannot be read: {error.strerror}"]
    if free < min_free_bytes:
        problems.append(
            f"The disk of the embedded store at {folder} has {free / MB:.0f} MB free, under "
            f"MATCH_MIN_FREE_MB ({min_free_bytes / MB:.0f} MB)"
        )
    problem = _folder_writable(db)
    if problem:
        problems.append(problem)
    try:
        with db.write() as conn:  # a real commit: the file, its WAL and the lock all work
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('ready_probe', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (str(time.time()),),
            )
    except StoreUnavailable as error:
        problems.append(error.message)
    return problems


def _folder_writable(db: Database) -> str | None:
    """A file created and removed beside the store: SQLite creates its journal files there, and
    a connection opened earlier can keep writing into a folder that no longer accepts files."""
    probe = db.path.parent / f".match-ready-{uuid.uuid4().hex[:8]}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        return f"The embedded store's folder {db.path.parent} is not writable: {error.strerror}"
    if not os.access(db.path, os.W_OK):
        return f"The embedded store at {db.path} is not writable (its permissions)"
    return None
