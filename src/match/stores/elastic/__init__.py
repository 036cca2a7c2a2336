"""The Elasticsearch / OpenSearch store (store.py is the façade)."""

from match.stores.elastic.client import EngineClient
from match.stores.elastic.store import ElasticStore

__all__ = ["ElasticStore", "EngineClient"]
