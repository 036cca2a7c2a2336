"""Integrity of the embedded store file: what is checked when it opens, the full check on
demand, the repair of the tables derived from the records, and the damage flag.

SQLite keeps no checksums: a damaged page is only noticed when a read walks onto it, and a
damaged page can also make a lookup miss rows without any error. So damage is looked for in
three places:

- when the file opens (``quick_check``): the ends of the paired tables agree (O(log n) reads),
  and SQLite's ``PRAGMA quick_check`` (every b-tree page's structure) runs for at most
  QUICK_CHECK_SECONDS: it covers a store of some ten thousand images whole, a larger one in
  part (``match check`` covers the rest);
- on every read: an sqlite3 "malformed" error, or a row that one table names and its pair does
  not hold inside one snapshot (store.py), is damage;
- on demand (``full_check``): ``PRAGMA integrity_check`` and every pairing row by row.

Damage seen is kept in a flag file beside the store (``<file>.damaged``, its reason inside),
so that every process refuses reads and writes until ``repair`` (``match check --repair``)
removes it. ``repair`` rebuilds the derived tables (DERIVED) from the records; damage in a
table that holds records (RECORDS) cannot be repaired here: restore a backup or add again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from match.stores.sqlite.tables import unpacked

log = logging.getLogger(__name__)

QUICK_CHECK_SECONDS = 0.5
"""Time the open's structural check may take; a larger file is checked in part."""
DERIVED = ("codes", "words", "fields", "algorithms")
"""Tables rebuilt from the records by ``repair`` (words: from the local features)."""
EXPENDABLE = ("thumbnails",)
"""Tables ``repair`` empties when damaged: nothing is lost but the web page's previews."""
FEATURES = "local features"
"""Stored local features that do not unpack: ``repair`` drops them (the images stay, without
partial matching until they are added again)."""
FREE_PAGES = "free pages"
"""Pages no tree or free list holds (lost with a damaged tree): ``repair`` reclaims them."""
RECORDS = ("images", "local", "hashes", "collections", "meta", "sqlite_sequence")
"""Tables that hold what was added: their damage needs a backup."""

# (table, its pair, the column both share): each row of one has its row in the other
PAIRS = (("images", "codes", "id"), ("local", "words", "id"))
_PAGE = re.compile(r"\b(?:Tree|tree page|[Pp]age) (\d+)")
MALFORMED = "database disk image is malformed"  # the check's last line, once it found any
_UNUSED = re.compile(r"\bis never used\b|\bfreelist\b", re.IGNORECASE)
_INDEX = re.compile(r"\b(?:index|order for) (\w+)")


@dataclass
class Report:
    """What a check found: a line per problem, and the tables they are in."""

    problems: list[str] = field(default_factory=list)
    unreadable: list[int] = field(default_factory=list)  # ids whose local features are
    tables: set[str] = field(default_factory=set)  # tables and indexes
    indexes: set[str] = field(default_factory=set)  # those that are indexes: REINDEX rebuilds
    complete: bool = True  # False: the structural check was cut at its time budget

    def add(self, table: str, problem: str) -> None:
        self.tables.add(table)
        self.problems.append(f"{table}: {problem}")

    @property
    def repairable(self) -> bool:
        repairable = {*DERIVED, *EXPENDABLE, FREE_PAGES, FEATURES}
        return not (self.tables - repairable - self.indexes)


# -- the damage flag -------------------------------------------------------------------------
def flag_path(store_file: Path) -> Path:
    return Path(f"{store_file}.damaged")


def flagged(store_file: Path) -> str | None:
    """The reason damage was flagged for this store file, or None."""
    try:
        return flag_path(store_file).read_text(errors="replace").strip() or "damaged"
    except FileNotFoundError:
        return None
    except OSError as error:  # unreadable flag: still a flag
        return f"damaged (its flag file cannot be read: {error.strerror})"


def flag(store_file: Path, reason: str) -> bool:
    """Flag the store as damaged (atomically, durably); False if the flag cannot be written."""
    path = flag_path(store_file)
    partial = path.with_name(f"{path.name}.{os.getpid()}")
    try:
        with open(partial, "w") as out:
            out.write(reason)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)
    except OSError as error:
        log.error("cannot write the damage flag %s: %s", path, error)
        return False
    log.error("the embedded store %s is damaged: %s", store_file, reason)
    return True


def unflag(store_file: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        flag_path(store_file).unlink()


# -- checks ------------------------------------------------------------------------------------
def quick_check(
    conn: sqlite3.Connection, seconds: float = QUICK_CHECK_SECONDS, every: int = 1000
) -> Report:
    """The check run when the store opens (see the module docstring); the clock is read
    ``every`` SQLite steps."""
    report = Report()
    for table, pair, key in PAIRS:
        _counted(
            conn,
            report,
            (table, pair),
            lambda table=table, pair=pair, key=key: _check_ends(conn, report, table, pair, key),
        )
    _counted(conn, report, ("collections", "algorithms"), lambda: _check_counts(conn, report))
    deadline = time.monotonic() + seconds
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), every)
    try:
        _structure(conn, "quick_check", report)
    except sqlite3.OperationalError as error:
        if "interrupted" not in str(error):
            raise
        report.complete = False
    finally:
        conn.set_progress_handler(None, 0)
    return report


def full_check(conn: sqlite3.Connection) -> Report:
    """Every page's structure, every index against its table, and every pairing row by row
    (a pairing with a table already found damaged is not read again)."""
    report = Report()
    _structure(conn, "integrity_check", report)
    _counted(conn, report, ("collections", "algorithms"), lambda: _check_counts(conn, report))
    for table, pair, key in PAIRS:
        for one, other in ((table, pair), (pair, table)):
            _counted(
                conn,
                report,
                (one, other),
                lambda one=one, other=other, key=key: _missing(conn, report, one, other, key),
            )
    _counted(conn, report, ("local", FEATURES), lambda: _check_features(conn, report))
    _counted(conn, report, ("words", "words"), lambda: _check_terms(conn, report))
    return report


def _counted(
    conn: sqlite3.Connection, report: Report, tables: tuple[str, str], check: Callable[[], None]
) -> None:
    """Run a check that reads two tables, unless one is known to be damaged; a read that fails
    is damage of the derived one."""
    if report.tables & set(tables):
        return
    try:
        check()
    except sqlite3.DatabaseError as error:
        derived = [table for table in tables if table in DERIVED]
        report.add((derived or list(tables))[0], f"cannot be read: {error}")


def _missing(conn: sqlite3.Connection, report: Report, one: str, other: str, column: str) -> None:
    missing = _scalar(
        conn, f"SELECT count(*) FROM {one} WHERE {column} NOT IN (SELECT {column} FROM {other})"
    )
    if missing:
        derived = other if other in DERIVED else one
        report.add(derived, f"{missing} rows of {one} have no row in {other}")


def _check_features(conn: sqlite3.Connection, report: Report) -> None:
    """Every stored local feature blob unpacks (the writer packed it: bytes that do not are
    damage SQLite cannot see)."""
    cursor = conn.execute("SELECT id, features FROM local ORDER BY id")
    while rows := cursor.fetchmany(1000):
        report.unreadable += [image_id for image_id, blob in rows if unpacked(blob) is None]
    if report.unreadable:
        shown = ", ".join(map(str, report.unreadable[:10]))
        count = len(report.unreadable)
        report.add(FEATURES, f"those of {count} images cannot be read (ids {shown})")


def _check_terms(conn: sqlite3.Connection, report: Report) -> None:
    """Every words row is a whole number of terms (uint32), as the writer made it."""
    broken = _scalar(conn, "SELECT count(*) FROM words WHERE length(words) % 4 != 0")
    if broken:
        report.add("words", f"{broken} rows are not a whole number of terms")


def _structure(conn: sqlite3.Connection, pragma: str, report: Report) -> None:
    """SQLite's own check; each problem attributed to the table whose b-tree it is in."""
    schema = conn.execute("SELECT name, type, rootpage FROM sqlite_master").fetchall()
    roots = {int(root): name for name, _, root in schema if root}
    indexes = {name for name, kind, _ in schema if kind == "index"}
    try:
        lines = _lines(conn, f"PRAGMA {pragma}")
    except sqlite3.DatabaseError as error:  # too damaged for the whole check: the structure
        _unless_interrupted(error)
        try:
            lines = _lines(conn, "PRAGMA quick_check")
        except sqlite3.DatabaseError as error:  # or table by table
            _unless_interrupted(error)
            lines = []
            for name, kind, _ in schema:
                if kind != "table":
                    continue
                try:
                    lines += _lines(conn, f'PRAGMA quick_check("{name}")')
                except sqlite3.DatabaseError as error:
                    _unless_interrupted(error)
                    report.add(name, f"cannot be checked: {error}")
            lines = [line for line in lines if line != "ok"] or ["ok"]
    if lines == ["ok"]:
        return
    pages, broken = _pages_of(conn, roots.values())
    for text in lines:
        for line in text.splitlines():
            if not line or line.startswith("***") or line == MALFORMED:
                continue
            page = _PAGE.search(line)
            index = _INDEX.search(line)
            name = None
            if _UNUSED.search(line):  # a lost page (of a damaged tree): VACUUM reclaims it
                name = FREE_PAGES
            elif page is not None:
                number = int(page.group(1))
                name = roots.get(number) or pages.get(number)
                if name is None and len(broken) == 1:  # a page of the one tree SQLite cannot walk
                    name = next(iter(broken))
            elif index is not None:
                name = index.group(1)
            report.add(name or "the file", line)
    report.indexes |= indexes & report.tables


def _unless_interrupted(error: sqlite3.DatabaseError) -> None:
    """A check cut at its time budget (quick_check's progress handler) found nothing: it is
    not damage, the caller says the check was partial."""
    if isinstance(error, sqlite3.OperationalError) and "interrupted" in str(error):
        raise error


def _lines(conn: sqlite3.Connection, pragma: str) -> list[str]:
    return [row[0] for row in conn.execute(pragma)]


def _pages_of(conn: sqlite3.Connection, names: Iterable[str]) -> tuple[dict[int, str], set[str]]:
    """({page: the table or index it belongs to}, the trees whose pages cannot be walked), from
    the dbstat table when this SQLite has it."""
    pages: dict[int, str] = {}
    broken = set()
    for name in names:
        try:
            found = conn.execute("SELECT pageno FROM dbstat WHERE name = ?", (name,)).fetchall()
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return {}, set()
            broken.add(name)
            continue
        except sqlite3.DatabaseError:
            broken.add(name)
            continue
        pages.update((int(row[0]), name) for row in found)
    return pages, broken


def _check_ends(conn: sqlite3.Connection, report: Report, table: str, pair: str, key: str) -> None:
    """The paired tables end on the same row: two b-tree descents each, whatever the size."""
    for end in ("max", "min"):
        mine = _scalar(conn, f"SELECT {end}({key}) FROM {table}")
        theirs = _scalar(conn, f"SELECT {end}({key}) FROM {pair}")
        if mine != theirs:
            report.add(pair, f"its {end}({key}) is {theirs}, {table}'s is {mine}")


def _check_counts(conn: sqlite3.Connection, report: Report) -> None:
    """Two small tables count the records by different keys: their totals agree."""
    by_collection = _scalar(conn, "SELECT coalesce(sum(records), 0) FROM collections")
    by_algorithm = _scalar(conn, "SELECT coalesce(sum(records), 0) FROM algorithms")
    if by_collection != by_algorithm:
        report.add(
            "algorithms",
            f"counts {by_algorithm} records, the collections count {by_collection}",
        )


def _scalar(conn: sqlite3.Connection, sql: str) -> object:
    return conn.execute(sql).fetchone()[0]


@contextlib.contextmanager
def writable_schema(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("PRAGMA writable_schema = ON")
    try:
        yield
    finally:
        conn.execute("PRAGMA writable_schema = OFF")
