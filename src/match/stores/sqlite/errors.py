"""The one place where sqlite3 errors become ``match.errors``: each a StoreUnavailable (503)
whose message says what is wrong with the store file and what to do about it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from match.errors import StoreDamaged, StoreUnavailable

# primary result codes (https://sqlite.org/rescode.html)
_PERM, _BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT = 3, 5, 6, 8, 10, 11
_FULL, _CANTOPEN, _NOTADB = 13, 14, 26


def translate(error: sqlite3.Error, path: str, busy_seconds: float) -> StoreUnavailable:
    """A StoreUnavailable describing ``error`` for the store file at ``path``."""
    code = getattr(error, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    where = f"The embedded store at {path}"
    if primary in (_BUSY, _LOCKED):
        reason = f"is busy: another process held its lock for more than {busy_seconds:g} s"
    elif primary == _FULL:
        reason = "cannot grow: the disk is full"
    elif primary in (_CORRUPT, _NOTADB):
        return StoreDamaged(
            f"{where} is damaged: corrupt or not a Match store ({error}); repair it "
            "(match check --repair), restore it from a backup or move it away"
        )
    elif primary in (_CANTOPEN, _PERM):
        reason = "cannot be opened (check that the folder exists and is writable)"
    elif primary == _READONLY:
        reason = "is read-only (check the file's and folder's permissions)"
    elif primary == _IOERR:
        reason = f"had an I/O error ({error})"
    elif isinstance(error, sqlite3.ProgrammingError) and "closed" in str(error):
        reason = "is closed"
    else:
        reason = f"failed: {error}"
    return StoreUnavailable(f"{where} {reason}")


@contextmanager
def translated(path: str, busy_seconds: float) -> Iterator[None]:
    """Run a block, turning any sqlite3 error into a StoreUnavailable."""
    try:
        yield
    except sqlite3.Error as error:
        raise translate(error, path, busy_seconds) from error
