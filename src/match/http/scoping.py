"""Which collection a request acts on, and which metadata filter it applies: the ``collection``
and ``filter`` parameters, read the same way by dsys/match's routes and TinEye's.

A request that names no collection acts on ``default``, unless its API key is limited to one
collection: then on that one. A key limited to collections never acts on another (403).
"""

from __future__ import annotations

from match.errors import BadParameter, Forbidden
from match.http.params import Param, Params
from match.stores.filters import DEFAULT_COLLECTION, Filter, check_collection, parse_filter

COLLECTION = Param(
    "collection",
    "string",
    "The collection to act on: filepaths are unique within one (default: `default`, or the "
    "one collection an API key is limited to).",
)
FILTER = Param(
    "filter",
    "json",
    'Metadata filter, a JSON object: equality `{"shop": 12}`, any of `{"shop": {"in": [1, 2]}}`, '
    'numeric range `{"price": {"gte": 10, "lt": 20}}`; keys combine with AND.',
)


def collection_of(params: Params) -> str:
    """The collection the request acts on (checked against its API key)."""
    allowed = params.allowed_collections
    if not params.given("collection"):
        if allowed is None or DEFAULT_COLLECTION in allowed:
            return DEFAULT_COLLECTION
        if len(allowed) == 1:
            return next(iter(allowed))
        raise BadParameter(
            "Parameter 'collection' is required: this API key acts on several collections"
        )
    collection = check_collection(params["collection"])
    if allowed is not None and collection not in allowed:
        raise Forbidden(f"This API key may not act on the collection {collection!r}")
    return collection


def filter_of(params: Params) -> Filter | None:
    """The request's metadata filter, or None."""
    return parse_filter(params["filter"])
