"""The Match application core: images in, matches out, on one store.

``Matcher`` is what the HTTP app (both API flavours) and the CLI call. It owns the settings and
the store, computes signatures, and turns distances into scores (100 * (1 - distance)).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from match import signature as sig
from match.errors import BadParameter, BlankImage
from match.settings import Settings
from match.stores import BulkResult, ImageRecord, Store, open_store

Metadata = dict[str, Any] | None

# Callbacks (operation, signatures, seconds) run after each signature computation ("signature",
# 1 or 8 orientations) and store search ("search", query signatures): the HTTP app's metrics
# register one (match.http.metrics). With none registered, nothing is timed.
TIMING_OBSERVERS: list[Callable[[str, int, float], None]] = []


@contextmanager
def _timed(operation: str, signatures: int) -> Iterator[None]:
    if not TIMING_OBSERVERS:
        yield
        return
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    for observer in TIMING_OBSERVERS:
        observer(operation, signatures, seconds)


@dataclass(frozen=True)
class SearchMatch:
    filepath: str
    score: float
    metadata: Metadata
    orientation: str


def score_of(distance: float) -> float:
    return 100.0 * (1.0 - float(distance))


class Matcher:
    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self._store = store

    @property
    def store(self) -> Store:
        """The store, opened on first use (signature-only work never touches it)."""
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    # -- signatures -------------------------------------------------------------------------
    def signature(self, image: bytes, *, name: str = "image") -> np.ndarray:
        """The signature of encoded image bytes; BlankImage if the image is featureless."""
        with _timed("signature", 1):
            signature = sig.image_signature(
                image,
                max_pixels=self.settings.match_max_image_pixels,
                mode=self.settings.match_signature_mode,
            )
        if sig.is_blank(signature):
            raise BlankImage(f"The {name} is blank or featureless: it has no signature to match")
        return signature

    def query_signatures(
        self, image: bytes, all_orientations: bool, *, name: str = "image"
    ) -> np.ndarray:
        """(1, 648) or (8, 648) query signatures, in ORIENTATIONS order."""
        if not all_orientations:
            return self.signature(image, name=name)[None, :]
        with _timed("signature", 8):
            signatures = sig.orientation_signatures(
                image,
                max_pixels=self.settings.match_max_image_pixels,
                mode=self.settings.match_signature_mode,
            )
        if sig.is_blank(signatures[0]):
            raise BlankImage(f"The {name} is blank or featureless: it has no signature to match")
        return signatures

    def stored_signatures(self, filepath: str, all_orientations: bool) -> np.ndarray:
        """Query signatures of an already stored image (its orientations by permutation)."""
        record = self.store.get(filepath)
        if not all_orientations:
            return record.signature[None, :]
        return sig.signature_orientations(record.signature)

    # -- operations -------------------------------------------------------------------------
    def add(self, filepath: str, image: bytes, metadata: Metadata = None) -> None:
        _check_filepath(filepath)
        self.store.add(ImageRecord(filepath, self.signature(image), metadata))

    def add_many(self, records: Iterable[ImageRecord]) -> BulkResult:
        return self.store.add_many(records)

    def search(
        self, signatures: np.ndarray, *, min_score: float = 0.0, limit: int = 100, offset: int = 0
    ) -> list[SearchMatch]:
        cutoff = self.settings.match_distance_cutoff
        if min_score > 0:
            # min_score is inclusive but the store's cutoff is strict: widen it by a hair so a
            # score equal to min_score survives float rounding; the filter below is exact.
            cutoff = min(cutoff, 1.0 - min_score / 100.0 + 1e-9)
        with _timed("search", len(signatures)):
            hits = self.store.search(signatures, cutoff=cutoff, limit=limit, offset=offset)
        return [
            SearchMatch(
                hit.filepath,
                score_of(hit.distance),
                hit.metadata,
                sig.ORIENTATIONS[hit.orientation],
            )
            for hit in hits
            if score_of(hit.distance) >= min_score
        ]

    def compare(self, first: np.ndarray, second: np.ndarray) -> float:
        """Best score between any row of ``first`` and the first row of ``second``."""
        distances = sig.normalized_distances(first, second[:1])
        return score_of(float(np.min(distances)))

    def delete(self, filepath: str) -> None:
        self.store.delete(filepath)

    def update_metadata(self, filepath: str, metadata: Metadata) -> None:
        self.store.update_metadata(filepath, metadata)

    def count(self) -> int:
        return self.store.count()

    def list(self, offset: int = 0, limit: int = 20) -> list[str]:
        return self.store.list(offset=offset, limit=limit)

    def ping(self) -> None:
        self.store.ping()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _check_filepath(filepath: str) -> None:
    if not filepath or not filepath.strip():
        raise BadParameter("Parameter 'filepath' must not be empty")
    if len(filepath.encode()) > 1024:
        raise BadParameter("Parameter 'filepath' is longer than 1024 bytes")
    if "\x00" in filepath:
        raise BadParameter("Parameter 'filepath' must not contain NUL characters")
