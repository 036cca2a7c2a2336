"""Stores: where records live. ``open_store(settings)`` picks the engine from the settings.

One protocol (base.py) and the record checks every engine shares (checks.py); one package per
engine: ``sqlite/`` (the embedded store) and ``elastic/`` (Elasticsearch and OpenSearch)."""

from __future__ import annotations

from match.settings import Settings
from match.stores.base import (
    BulkResult,
    HashRecord,
    Hit,
    ImageRecord,
    LocalCandidate,
    Metadata,
    PdqHit,
    Since,
    Store,
    Thumbnail,
)


def open_store(settings: Settings) -> Store:
    """The embedded store under MATCH_DATA_DIR, or Elasticsearch/OpenSearch if
    ELASTICSEARCH_URL is set."""
    if settings.elasticsearch_url:
        from match.stores.elastic import ElasticStore

        return ElasticStore.from_settings(settings)
    from match.stores.sqlite import SQLiteStore

    return SQLiteStore.from_settings(settings)


__all__ = [
    "BulkResult",
    "HashRecord",
    "Hit",
    "ImageRecord",
    "LocalCandidate",
    "Metadata",
    "PdqHit",
    "Since",
    "Store",
    "Thumbnail",
    "open_store",
]
