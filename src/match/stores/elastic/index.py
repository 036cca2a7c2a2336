"""The one index a store works on: created on first use with Match's strict mapping, given the
fields an older index lacks, and re-created if it vanishes while in use.

Every operation of the store runs through ``Index.call``, which makes sure the index is ready
(the engine checked, the index there, its exact filepath field known) before it runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from match.errors import StoreDamaged, StoreUnavailable
from match.stores.elastic import documents as docs
from match.stores.elastic.client import EngineClient, EngineError, IndexMissing

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class IndexSettings:
    """How a new index is created, and how writes wait for it."""

    shards: int = 1
    replicas: int = 0
    refresh_interval: str = "1s"
    codec: str = "best_compression"
    bulk_refresh: bool = False  # writes return before they are searchable


class GroupRefresh:
    """Refreshes of one index shared by this process's concurrent writers: a writer whose
    change is written asks for a refresh that starts after that, and every writer waiting
    when one starts shares it. One runs at a time. Waiting for the engine's periodic refresh
    (``refresh=wait_for``) cost about a refresh interval per add (p50 1.2 s at 1 s); this
    costs one refresh (tens of ms) shared by the writers that arrive meanwhile."""

    def __init__(self, refresh: Callable[[], None]) -> None:
        self._refresh = refresh
        self._changed = threading.Condition()
        self._started = 0  # refreshes started, in order
        self._finished = 0  # the last finished (they finish in order: one at a time)
        self._succeeded = 0  # the last that succeeded
        self._running = False

    def after_write(self) -> None:
        """Return once a refresh that started after this call has succeeded; StoreUnavailable
        if it failed (the change is stored, and searchable at the next periodic refresh)."""
        with self._changed:
            needed = self._started + 1  # one running now may have started before the write
            while self._finished < needed:
                if self._running:
                    self._changed.wait()
                    continue
                self._running = True
                self._started += 1
                mine = self._started
                self._changed.release()
                ok = False
                try:
                    self._refresh()
                    ok = True
                finally:
                    self._changed.acquire()
                    self._running = False
                    self._finished = mine
                    if ok:
                        self._succeeded = mine
                    self._changed.notify_all()
            if self._succeeded < needed:
                raise StoreUnavailable(
                    "The change was stored, but the search engine failed to make it "
                    "searchable (it will be at its next periodic refresh); retry later"
                )


class Index:
    def __init__(self, client: EngineClient, name: str, settings: IndexSettings) -> None:
        self.client = client
        self.name = name
        self.settings = settings
        self._path_field: str | None = None  # known once the index is ready
        self._vanished = False  # it was deleted while this process used it
        self.group_refresh = GroupRefresh(lambda: self.request("POST", "/_refresh") and None)

    @property
    def path_field(self) -> str:
        """The exact filepath field: ``path``, or ``path.keyword`` in an image-match index."""
        return self._path_field or "path"

    def call(self, operation: Callable[[], T]) -> T:
        """Run an operation on the ready index. An index that vanished while in use (deleted
        behind our back) is not silently created again, empty, to answer searches as if
        nothing had been stored: it is StoreDamaged until it is back (restored) or
        ``recreate`` makes a new one (``match check --repair``)."""
        try:
            self.ready()
            return operation()
        except IndexMissing:
            self._path_field = None
            self._vanished = True
            raise self._vanished_error() from None

    def recreate(self) -> None:
        """Accept that a vanished index is gone: create it anew, empty."""
        self._vanished = False
        self._path_field = None
        self.ready()

    def ready(self) -> str:
        """The index name, once the engine is checked and the index exists with a path field."""
        if self._path_field is None:
            self.client.engine()
            try:
                self._path_field = self._open()
            except EngineError as error:
                if error.kind != "invalid_index_name_exception":
                    raise
                raise StoreUnavailable(
                    f"ELASTICSEARCH_INDEX {self.name!r} is not a valid index name "
                    '(lowercase, none of \\/*?"<>|,# or spaces, not starting with -_+)'
                ) from None
        return self.name

    def problems(self) -> list[str]:
        """What keeps the ready index from taking writes: a write block (the engine's
        flood-stage disk watermark sets one). A missing or wrongly mapped index raises."""
        self.ready()
        found = []
        _, body = self.request("GET", "/_settings")
        index = next(iter(body.values()), {}).get("settings", {}).get("index", {})
        for block, value in index.get("blocks", {}).items():
            if str(value).lower() == "true":
                found.append(f"The index {self.name!r} refuses writes (index.blocks.{block})")
        return found

    def refresh_param(self, final: bool = True) -> str:
        """The ``refresh`` parameter of a write: wait until it is searchable, unless bulk
        refresh is on or more writes of the same batch follow."""
        return "wait_for" if final and not self.settings.bulk_refresh else "false"

    def searchable(self) -> None:
        """After an add is written (``refresh=false``): return once it is searchable, through
        a refresh shared with this process's other writers (GroupRefresh); at once in bulk
        refresh mode (searchable within ``refresh_interval``)."""
        if not self.settings.bulk_refresh:
            self.group_refresh.after_write()

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """A request on a path under the index (``path`` starts with ``/``, or is empty)."""
        return self.client.request(method, f"/{self.name}{path}", **kwargs)

    def _open(self) -> str:
        status, body = self.request("GET", "/_mapping", allow=(404,))
        if status == 404:
            if self._vanished:
                raise self._vanished_error()
            self._create()
            status, body = self.request("GET", "/_mapping")
        self._vanished = False  # there (again: restored from a snapshot)
        # an alias answers with its concrete index's name
        index_mapping = next(iter(body.values()), {}).get("mappings", {})
        wrong = self._wrong_fields(index_mapping)
        if wrong:
            raise StoreDamaged(
                "; ".join(wrong) + ": adds would fail and searches answer wrongly; set "
                "ELASTICSEARCH_INDEX to a new index (Match creates it) and add the images again"
            )
        field = docs.path_field(index_mapping)
        if field is None:
            raise StoreUnavailable(
                f"The index {self.name!r} has no exact `path` keyword field: it was not made "
                "by Match or image-match; set ELASTICSEARCH_INDEX to another index"
            )
        added = docs.added_fields(index_mapping)
        if added is not None:
            self._add_fields(added)
        return field

    def _wrong_fields(self, index_mapping: dict[str, Any]) -> list[str]:
        return [
            f"The index {self.name!r} maps {name!r} as {have}, Match needs {need}"
            for name, have, need in docs.wrong_fields(index_mapping)
        ]

    def _vanished_error(self) -> StoreDamaged:
        return StoreDamaged(
            f"The index {self.name!r} was deleted while in use: the records it held are gone. "
            "Restore it from a snapshot, or run match check --repair to create it empty"
        )

    def _add_fields(self, added: dict[str, Any]) -> None:
        """Declare the fields an older index lacks (image-match's, or Match's before partial
        matching) in place: a mapping may gain fields, and its documents stay as they are."""
        try:
            self.request("PUT", "/_mapping", body=added)
        except EngineError as error:
            if error.kind != "illegal_argument_exception":
                raise
            raise StoreUnavailable(
                f"The index {self.name!r} cannot take Match's fields "
                f"({', '.join(added['properties'])}): {error}"
            ) from None
        log.info("added %s to index %s", ", ".join(added["properties"]), self.name)

    def _create(self) -> None:
        s = self.settings
        body = docs.index_body(s.shards, s.replicas, s.refresh_interval, s.codec)
        try:
            self.request("PUT", "", body=body)
        except EngineError as error:
            if error.kind != "resource_already_exists_exception":  # another worker won
                raise
        log.info("created index %s on %s", self.name, self.client.display_url)
