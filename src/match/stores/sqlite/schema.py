"""The embedded store's tables. Triggers keep the bookkeeping in the same transaction as the
change itself, so no crash can leave it out of step.

- ``images``: one row per (collection, filepath); ``id`` (AUTOINCREMENT, never reused) is the
  insertion order, and a replaced filepath gets a new id. ``signature`` is packed (216 bytes, see
  codes.py); ``width`` and ``height`` are the image's pixels as given (NULL when not known);
  ``added`` is when it was stored (Unix seconds).
- ``collections``: the collections' names and how many records each has (exact counts without a
  scan). Collection 1 is ``default``.
- ``codes``: the candidate-index code of each image, in a narrow table so that a worker loads the
  index without reading the signatures.
- ``local``: the packed local features (match.local.pack) of images that have them, for partial
  matching; ``words``: their distinct terms (match.local.terms: a visual word and some of its
  Hamming bits, sorted little-endian uint32), in a narrow table so that the term index (words.py) is
  built without reading the features; ``seq`` is the order that index keeps (features may be
  stored after their image).
- ``fields``: the metadata values filters match (stores/filters.py), one row per record and key;
  ``field_updates``: the ids whose metadata changed in place, in commit order, so that other
  workers re-read their values (pruned as tombstones are).
- ``tombstones``: ids deleted or replaced, in commit order, so that other workers drop them from
  their index; pruned to the most recent rows (a worker that fell behind reloads its index).
- ``algorithms``: how many records each signature algorithm has: exact count() without a scan,
  and detection of records that cannot be compared with the current algorithm.
- ``meta``: schema version, code size and seed, and how far tombstones were pruned.

- ``images.pdq``, ``images.pdq_quality``: the image's PDQ hash (32 bytes) and quality, NULL when
  not computed; ``hashes``: hash-only records (a PDQ hash and metadata, no image), a key space of
  their own; ``hash_tombstones``: the hash-only records deleted or replaced, as ``tombstones``
  are for images (the shared PDQ indexes, pdq_index.py, are derived from the hashes and learn
  of deletions there).

- ``thumbnails``: the WebP thumbnail of each image that has one (service/thumbnails.py), apart
  from ``images`` so that scans never read it; its own trigger deletes it with its image.

Schema 2 added ``local``, ``words`` and their trigger (a schema 1 file gains them in place).
Schema 3 added collections, filters and the image size: a schema 1 or 2 file is upgraded when
opened, in one transaction: its images are copied into the new ``images`` table (ids and their
sequence kept, all in the default collection) and their metadata indexed into ``fields``.
Schema 4 added PDQ: a schema 3 file gains the two columns, the tables and triggers in place.
Thumbnails came later without a new schema number: a schema 4 file gains the table and its
trigger when opened, and an older Match writing to it leaves no thumbnail behind (the trigger is
in the file).
Schema 5 replaced the PDQ term tables (16 rows a hash, written by triggers: loading 10M hashes
took hours) by the shared in-memory PDQ indexes; a schema 4 file loses the tables and their
triggers and gains ``hash_tombstones`` in place.
Schema 6 (issue 13) indexes terms instead of words: a file of any older schema has its
``words`` rows rewritten from its features when opened, in the same transaction (3 minutes for
a million images here), and its index segments are built again (indexes.WORDS_FAMILY).
"""

from __future__ import annotations

import json
import sqlite3
import uuid

from match.errors import StoreUnavailable
from match.local import unpack
from match.local.terms import terms_blob
from match.stores.filters import DEFAULT_COLLECTION, indexed_fields

SCHEMA_VERSION = "6"
UPGRADABLE = ("1", "2")  # to 3, then to 6
UPGRADABLE_IN_PLACE = ("3", "4", "5")
CODE_BITS = 1024
CODE_SEED = 20021  # any fixed value; kept in the database so every process agrees
DEFAULT_COLLECTION_ID = 1

IMAGES = """CREATE TABLE IF NOT EXISTS {name} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    collection INTEGER NOT NULL,
    filepath TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    signature BLOB,
    metadata TEXT,
    width INTEGER,
    height INTEGER,
    added REAL NOT NULL DEFAULT 0,
    pdq BLOB,
    pdq_quality INTEGER,
    UNIQUE (collection, filepath)
)"""

WORDS = """CREATE TABLE IF NOT EXISTS {name} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id INTEGER NOT NULL UNIQUE,
    words BLOB NOT NULL
)"""

STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    IMAGES.format(name="images"),
    """CREATE TABLE IF NOT EXISTS collections (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        records INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE TABLE IF NOT EXISTS codes (id INTEGER PRIMARY KEY, code BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS local (id INTEGER PRIMARY KEY, features BLOB NOT NULL)",
    WORDS.format(name="words"),
    """CREATE TABLE IF NOT EXISTS fields (
        id INTEGER NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        value,
        PRIMARY KEY (id, key)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS tombstones (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS field_updates (
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
        UPDATE collections SET records = records + 1 WHERE id = new.collection;
    END""",
    """CREATE TRIGGER IF NOT EXISTS image_deleted AFTER DELETE ON images BEGIN
        DELETE FROM codes WHERE id = old.id;
        DELETE FROM local WHERE id = old.id;
        DELETE FROM words WHERE id = old.id;
        DELETE FROM fields WHERE id = old.id;
        INSERT INTO tombstones (id) VALUES (old.id);
        UPDATE algorithms SET records = records - 1 WHERE name = old.algorithm;
        UPDATE collections SET records = records - 1 WHERE id = old.collection;
    END""",
    f"INSERT OR IGNORE INTO collections (id, name) VALUES "
    f"({DEFAULT_COLLECTION_ID}, '{DEFAULT_COLLECTION}')",
)


PDQ_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS hashes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        collection INTEGER NOT NULL,
        filepath TEXT NOT NULL,
        pdq BLOB NOT NULL,
        quality INTEGER,
        metadata TEXT,
        added REAL NOT NULL DEFAULT 0,
        UNIQUE (collection, filepath)
    )""",
    """CREATE TABLE IF NOT EXISTS hash_tombstones (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id INTEGER NOT NULL
    )""",
    """CREATE TRIGGER IF NOT EXISTS hash_tombstone AFTER DELETE ON hashes BEGIN
        INSERT INTO hash_tombstones (id) VALUES (old.id);
    END""",
)

THUMBNAIL_STATEMENTS = (
    "CREATE TABLE IF NOT EXISTS thumbnails (id INTEGER PRIMARY KEY, image BLOB NOT NULL)",
    """CREATE TRIGGER IF NOT EXISTS image_thumbnail_deleted AFTER DELETE ON images BEGIN
        DELETE FROM thumbnails WHERE id = old.id;
    END""",
)

TOMBSTONES_KEPT = 100_000
"""Tombstones kept after pruning; a worker more than this many deletions behind reloads."""


def open_schema(conn: sqlite3.Connection, path: str) -> dict[str, str]:
    """Create or upgrade the tables in one transaction; returns the ``meta`` table. A file of a
    schema this Match cannot read is refused before anything is written to it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(STATEMENTS[0])  # meta: its schema says whether the rest may be created
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if found is not None and found[0] not in (
            SCHEMA_VERSION,
            *UPGRADABLE,
            *UPGRADABLE_IN_PLACE,
        ):
            raise StoreUnavailable(
                f"The embedded store at {path} has schema "
                f"{found[0]}, this Match reads schema {SCHEMA_VERSION}"
            )
        if found is not None and found[0] in UPGRADABLE:
            _upgrade_to_3(conn)  # its new images table has today's columns
        elif found is not None and found[0] == "3":
            _upgrade_to_4(conn)
        elif found is not None and found[0] == "4":
            _upgrade_to_5(conn)
        for statement in (*STATEMENTS, *PDQ_STATEMENTS, *THUMBNAIL_STATEMENTS):
            conn.execute(statement)
        if found is not None and found[0] != SCHEMA_VERSION:
            _upgrade_to_6(conn)
        defaults = {
            "store_id": uuid.uuid4().hex,  # names the file's derived index segments
            "schema": SCHEMA_VERSION,
            "code_bits": str(CODE_BITS),
            "code_seed": str(CODE_SEED),
            "tombstones_pruned": "0",
            "hash_tombstones_pruned": "0",
        }
        conn.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", defaults.items())
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (SCHEMA_VERSION,))
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return meta


def _upgrade_to_6(conn: sqlite3.Connection) -> None:
    """Any older schema to 6: every ``words`` row is rewritten with the image's terms, from
    its stored features (their words and Hamming bits), in place (its ``seq`` kept)."""
    last = 0
    while True:
        rows = conn.execute(
            "SELECT seq, features FROM words JOIN local USING (id) WHERE seq > ? "
            "ORDER BY seq LIMIT 10000",
            (last,),
        ).fetchall()
        if not rows:
            return
        conn.executemany(
            "UPDATE words SET words = ? WHERE seq = ?",
            [(_terms_or_none(features), seq) for seq, features in rows],
        )
        last = rows[-1][0]


def _terms_or_none(features: bytes) -> bytes:
    """The terms of stored features; none if they cannot be read: a damaged row then leaves no
    words where terms belong (its image is never a candidate) and the file still opens."""
    try:
        return terms_blob(unpack(features))
    except ValueError:
        return b""


def field_rows(image_id: int, metadata: dict | None) -> list[tuple[int, str, str, object]]:
    """The ``fields`` rows of a record's metadata: (id, key, kind, value)."""
    return [(image_id, key, kind, value) for key, (kind, value) in indexed_fields(metadata)]


def _upgrade_to_3(conn: sqlite3.Connection) -> None:
    """Schema 1 or 2 to 3: a new images table with the collection and size columns (SQLite
    cannot change a UNIQUE constraint in place), the rows copied with their ids, the id sequence
    carried over (ids are never reused, even those of the last deleted rows), every record in
    the default collection, and the metadata indexed for filters."""
    conn.execute(IMAGES.format(name="images_upgraded"))
    conn.execute(
        "INSERT INTO images_upgraded (id, collection, filepath, algorithm, signature, metadata) "
        f"SELECT id, {DEFAULT_COLLECTION_ID}, filepath, algorithm, signature, metadata FROM images"
    )
    sequence = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'images'").fetchone()
    conn.execute("DROP TABLE images")  # and its triggers: STATEMENTS makes today's
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'words'").fetchone():  # schema 2
        conn.execute(WORDS.format(name="words_upgraded"))  # word rows in the images' order
        conn.execute("INSERT INTO words_upgraded (seq, id, words) SELECT id, id, words FROM words")
        conn.execute("DROP TABLE words")
        conn.execute("ALTER TABLE words_upgraded RENAME TO words")
    conn.execute("ALTER TABLE images_upgraded RENAME TO images")
    if sequence is not None:
        conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'images'", sequence)
    for statement in (*STATEMENTS[2:7], STATEMENTS[-1]):  # collections ... fields, default
        conn.execute(statement)
    conn.execute(
        "UPDATE collections SET records = (SELECT count(*) FROM images) WHERE id = ?",
        (DEFAULT_COLLECTION_ID,),
    )
    cursor = conn.execute("SELECT id, metadata FROM images WHERE metadata IS NOT NULL")
    while rows := cursor.fetchmany(10_000):
        fields = [row for image_id, text in rows for row in field_rows(image_id, json.loads(text))]
        conn.executemany("INSERT INTO fields (id, key, kind, value) VALUES (?, ?, ?, ?)", fields)


def _upgrade_to_4(conn: sqlite3.Connection) -> None:
    """Schema 3 to 4: the images gain their (NULL) PDQ columns; the PDQ tables and triggers
    are created with the rest."""
    conn.execute("ALTER TABLE images ADD COLUMN pdq BLOB")
    conn.execute("ALTER TABLE images ADD COLUMN pdq_quality INTEGER")


def _upgrade_to_5(conn: sqlite3.Connection) -> None:
    """Schema 4 to 5: the PDQ term tables and the triggers that wrote them are dropped (the
    shared PDQ indexes, pdq_index.py, are built from the hashes themselves); hash-only records
    gain their tombstones with the rest."""
    for trigger in ("image_pdq_added", "image_pdq_deleted", "hash_added", "hash_deleted"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for table in ("pdq_terms", "hash_terms"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
