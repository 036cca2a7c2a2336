"""The embedded store's tables. Triggers keep the bookkeeping in the same transaction as the
change itself, so no crash can leave it out of step.

- ``images``: one row per filepath; ``id`` (AUTOINCREMENT, never reused) is the insertion order,
  and a replaced filepath gets a new id. ``signature`` is packed (216 bytes, see codes.py).
- ``codes``: the candidate-index code of each image, in a narrow table so that a worker loads the
  index without reading the signatures.
- ``local``: the packed local features (match.local.pack) of images that have them, for partial
  matching; ``words``: their distinct visual words (sorted little-endian uint16), in a narrow
  table so that a worker loads its inverted index (words.py) without reading the features.
- ``tombstones``: ids deleted or replaced, in commit order, so that other workers drop them from
  their index; pruned to the most recent rows (a worker that fell behind reloads its index).
- ``algorithms``: how many records each signature algorithm has: exact count() without a scan,
  and detection of records that cannot be compared with the current algorithm.
- ``meta``: schema version, code size and seed, and how far tombstones were pruned.

Schema 2 added ``local``, ``words`` and their trigger; a schema 1 file is upgraded in place when
opened (the statements only create what is missing).
"""

from __future__ import annotations

import sqlite3

from match.errors import StoreUnavailable

SCHEMA_VERSION = "2"
UPGRADABLE = ("1",)
"""Older schemas that STATEMENTS upgrade in place: they only add tables and triggers."""

STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS images (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        filepath TEXT NOT NULL UNIQUE,
        algorithm TEXT NOT NULL,
        signature BLOB NOT NULL,
        metadata TEXT
    )""",
    "CREATE TABLE IF NOT EXISTS codes (id INTEGER PRIMARY KEY, code BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS local (id INTEGER PRIMARY KEY, features BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS words (id INTEGER PRIMARY KEY, words BLOB NOT NULL)",
    """CREATE TABLE IF NOT EXISTS tombstones (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS algorithms (
        name TEXT PRIMARY KEY,
        records INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TRIGGER IF NOT EXISTS image_added AFTER INSERT ON images BEGIN
        INSERT INTO algorithms (name, records) VALUES (new.algorithm, 1)
            ON CONFLICT (name) DO UPDATE SET records = records + 1;
    END""",
    """CREATE TRIGGER IF NOT EXISTS image_deleted AFTER DELETE ON images BEGIN
        DELETE FROM codes WHERE id = old.id;
        INSERT INTO tombstones (id) VALUES (old.id);
        UPDATE algorithms SET records = records - 1 WHERE name = old.algorithm;
    END""",
    # a second trigger rather than a changed image_deleted: schema 1 files already have that one
    """CREATE TRIGGER IF NOT EXISTS image_local_deleted AFTER DELETE ON images BEGIN
        DELETE FROM local WHERE id = old.id;
        DELETE FROM words WHERE id = old.id;
    END""",
)

TOMBSTONES_KEPT = 100_000
"""Tombstones kept after pruning; a worker more than this many deletions behind reloads."""

CODE_BITS = 1024
CODE_SEED = 20021  # any fixed value; kept in the database so every process agrees


def open_schema(conn: sqlite3.Connection, path: str) -> dict[str, str]:
    """Create or upgrade the tables in one transaction; returns the ``meta`` table. A file of a
    schema this Match cannot read is refused before anything is written to it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(STATEMENTS[0])  # meta: its schema says whether the rest may be created
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if found is not None and found[0] not in (SCHEMA_VERSION, *UPGRADABLE):
            raise StoreUnavailable(
                f"The embedded store at {path} has schema "
                f"{found[0]}, this Match reads schema {SCHEMA_VERSION}"
            )
        for statement in STATEMENTS:
            conn.execute(statement)
        if found is not None and found[0] in UPGRADABLE:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
        defaults = {
            "schema": SCHEMA_VERSION,
            "code_bits": str(CODE_BITS),
            "code_seed": str(CODE_SEED),
            "tombstones_pruned": "0",
        }
        conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", defaults.items())
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return meta
