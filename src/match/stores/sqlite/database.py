"""The SQLite file itself: where it lives, this process's connection to it, and transactions.

Every write is one ``BEGIN IMMEDIATE`` transaction committed with ``synchronous=FULL`` in WAL mode:
once it returns, the change is on disk and any process's next read sees it. A connection is never
used across fork(): a process opens its own on first use. Every sqlite3 error becomes a
StoreUnavailable naming the file (errors.py).

Damage (integrity.py) is looked for when the file opens and noticed by any read that meets it;
once seen, it is flagged beside the file and every transaction of every process is refused
with StoreDamaged until the store is repaired.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from match.errors import StoreDamaged, StoreUnavailable
from match.stores.sqlite import integrity
from match.stores.sqlite.errors import translated
from match.stores.sqlite.schema import open_schema

FILENAME = "match.sqlite3"
FILE_SUFFIXES = (".sqlite3", ".sqlite", ".db")


class Database:
    """``path`` is a folder (the file is ``<folder>/match.sqlite3``, created with its folder) or
    a file ending in .sqlite3/.sqlite/.db. Opening creates or upgrades the schema; ``meta``
    holds what it keeps (schema version, code size and seed)."""

    def __init__(
        self, path: str | os.PathLike[str], busy_timeout: float, *, check: bool = True
    ) -> None:
        self.path = database_path(Path(path))
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._closed = False
        self._damage: str | None = None  # seen by this process, when it could not be flagged
        self._opened = False  # a file that does not even open is not flagged: it is refused
        try:
            with self._guard():
                self.meta = open_schema(self._connection(), str(self.path))
            self._opened = True
            if check and self.damage() is None:
                self._quick_check()
        except BaseException:
            self.close()
            raise

    def _quick_check(self) -> None:
        """integrity.quick_check; what it finds (or a read of it that fails) is flagged, and
        the store opens: it then refuses every request with the reason."""
        try:
            with self._guard():
                report = integrity.quick_check(self._connection())
        except StoreDamaged:
            return  # flagged by _guard
        if report.problems:
            self.flag_damage("; ".join(report.problems[:3]))

    def damage(self) -> str | None:
        """Why the store is flagged as damaged (by any process), or None."""
        return integrity.flagged(self.path) or self._damage

    def flag_damage(self, reason: str) -> None:
        """Flag the store as damaged for every process (or this one, if the flag cannot be
        written beside the file)."""
        if not integrity.flag(self.path, reason):
            self._damage = reason

    def refuse_if_damaged(self) -> None:
        reason = self.damage()
        if reason is not None:
            raise damaged(self.path, reason)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot, whatever other processes commit."""
        with self._transaction("BEGIN") as conn:
            yield conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, serialised with every other writer, durable once it ends."""
        with self._transaction("BEGIN IMMEDIATE") as conn:
            yield conn

    @contextmanager
    def maintenance(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own, outside any transaction, even on a damaged store: for the
        full check and the repair."""
        with self._lock, translated(str(self.path), self.busy_timeout):
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            try:
                yield conn
            finally:
                conn.close()

    def clear_damage(self) -> None:
        integrity.unflag(self.path)
        self._damage = None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
            self._closed = True

    def guarded(self) -> contextlib.AbstractContextManager[None]:
        """A block whose sqlite3 errors are translated, and damage met in it flagged."""
        return self._guard()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            with self._lock, translated(str(self.path), self.busy_timeout):
                yield
        except StoreDamaged as error:  # met by this read or write: no process uses it again
            if not self._opened:
                raise
            if self.damage() is None:
                self.flag_damage(error.message)
            raise damaged(self.path, error.message) from error.__cause__

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreUnavailable(f"The embedded store at {self.path} is closed")
        if self._conn is None or self._pid != os.getpid():
            # a connection inherited through fork() must not be used: open our own
            self._conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._pid = os.getpid()
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
        return self._conn

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        self.refuse_if_damaged()
        with self._guard():
            conn = self._connection()
            conn.execute(begin)
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def damaged(path: Path, reason: str) -> StoreDamaged:
    """The error for a damaged store: ``reason`` is a whole message or what was found."""
    if reason.startswith(f"The embedded store at {path} is damaged"):
        return StoreDamaged(reason)
    return StoreDamaged(
        f"The embedded store at {path} is damaged ({reason}): it answers nothing until it is "
        "repaired (match check --repair) or restored from a backup"
    )


def database_path(path: Path) -> Path:
    """The database file for a folder or file path, its folder created if missing."""
    file = path if path.suffix in FILE_SUFFIXES else path / FILENAME
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreUnavailable(
            f"Cannot create the store folder {file.parent}: {error.strerror}"
        ) from None
    return file
