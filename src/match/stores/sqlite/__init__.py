"""The embedded store: SQLite, one file shared by every worker process (store.py is the façade)."""

from match.stores.sqlite.database import FILENAME
from match.stores.sqlite.store import SQLiteStore

__all__ = ["FILENAME", "SQLiteStore"]
