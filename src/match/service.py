"""The Match application core: images in, matches out, on one store.

``Matcher`` is what the HTTP app (both API flavours) and the CLI call. It owns the settings and
the store, and runs both matching methods: the global signature (scored 100 * (1 - distance))
and, unless MATCH_PARTIAL_MATCHING is off, local features verified geometrically (scored by
match.local.score on the same scale). A search merges both into one ranked list.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from match import local
from match import signature as sig
from match.errors import BadParameter, BlankImage
from match.local.score import local_score
from match.settings import Settings
from match.signature.decode import decode_pixels
from match.signature.goldberg import FAST_MIN_SIDE, pixels_orientation_signatures
from match.stores import BulkResult, ImageRecord, Store, open_store
from match.stores.base import LocalCandidate

Metadata = dict[str, Any] | None

# Callbacks (operation, signatures, seconds) run after each signature computation ("signature",
# 1 or 8 orientations), local feature extraction ("local", 1) and store search ("search", query
# signatures): the HTTP app's metrics register one (match.http.metrics). With none registered,
# nothing is timed.
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


LOCAL_CANDIDATES = 30
"""Stored images verified geometrically per search (the store ranks them by shared words)."""


@dataclass(frozen=True)
class Query:
    """What a search or comparison matches with: (1 or 8, 648) signatures in ORIENTATIONS
    order, and local features (None when partial matching is off or was not stored)."""

    signatures: np.ndarray
    local: local.LocalFeatures | None = None

    def orientations(self, count: int) -> Query:
        """The same query with only its first ``count`` signatures."""
        return dataclasses.replace(self, signatures=self.signatures[:count])


@dataclass(frozen=True)
class SearchMatch:
    filepath: str
    score: float
    metadata: Metadata
    orientation: str
    # percent of the query and of the stored image that match; a global match covers both
    query_overlap: float = 100.0
    target_overlap: float = 100.0
    method: str = "signature"  # or "local" (a partial match)


@dataclass(frozen=True)
class Comparison:
    score: float
    query_overlap: float = 100.0
    target_overlap: float = 100.0


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

    # -- what is stored and searched with ----------------------------------------------------
    def record(self, filepath: str, image: bytes, metadata: Metadata = None) -> ImageRecord:
        """The record to store for encoded image bytes: signature and, if on, local features."""
        _check_filepath(filepath)
        if not self.settings.match_partial_matching:
            return ImageRecord(filepath, self.signature(image), metadata)
        query = self.query(image, False)
        return ImageRecord(filepath, query.signatures[0], metadata, local=query.local)

    def query(self, image: bytes, all_orientations: bool, *, name: str = "image") -> Query:
        """Search input for encoded image bytes, decoded once for both methods."""
        if not self.settings.match_partial_matching:
            return Query(self.query_signatures(image, all_orientations, name=name))
        count = len(sig.ORIENTATIONS) if all_orientations else 1
        with _timed("signature", count):  # decoding included, as without partial matching
            pixels = self._decode(image)
            signatures = pixels_orientation_signatures(pixels, range(count))
        if sig.is_blank(signatures[0]):
            raise BlankImage(f"The {name} is blank or featureless: it has no signature to match")
        with _timed("local", 1):
            features = local.local_features(pixels)
        return Query(signatures, features if len(features.words) else None)

    def stored_query(self, filepath: str, all_orientations: bool) -> Query:
        """Search input from an already stored image."""
        record = self.store.get(filepath)
        signatures = (
            sig.signature_orientations(record.signature)
            if all_orientations
            else record.signature[None, :]
        )
        features = record.local if self.settings.match_partial_matching else None
        return Query(signatures, features)

    def _decode(self, image: bytes) -> np.ndarray:
        fast = self.settings.match_signature_mode == "fast"
        return decode_pixels(
            image,
            max_pixels=self.settings.match_max_image_pixels,
            min_side=FAST_MIN_SIDE if fast else None,
        )

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

    # -- operations -------------------------------------------------------------------------
    def add(self, filepath: str, image: bytes, metadata: Metadata = None) -> None:
        self.store.add(self.record(filepath, image, metadata))

    def add_many(self, records: Iterable[ImageRecord]) -> BulkResult:
        return self.store.add_many(records)

    def search(
        self, query: Query, *, min_score: float = 0.0, limit: int = 100, offset: int = 0
    ) -> list[SearchMatch]:
        """Both methods' matches, each stored image once with its better score, best first."""
        cutoff = self.settings.match_distance_cutoff
        if min_score > 0:
            # min_score is inclusive but the store's cutoff is strict: widen it by a hair so a
            # score equal to min_score survives float rounding; the filter below is exact.
            cutoff = min(cutoff, 1.0 - min_score / 100.0 + 1e-9)
        wanted = offset + limit
        with _timed("search", len(query.signatures)):
            hits = self.store.search(query.signatures, cutoff=cutoff, limit=wanted, offset=0)
        best = {
            hit.filepath: SearchMatch(
                hit.filepath,
                score_of(hit.distance),
                hit.metadata,
                sig.ORIENTATIONS[hit.orientation],
            )
            for hit in hits
        }
        floor = 100.0 * (1.0 - cutoff)  # the same bar for both methods
        for match in self._local_matches(query):
            if match.score > floor and match.score > best.get(match.filepath, match).score - 1e-9:
                best[match.filepath] = match
        ranked = sorted(
            (match for match in best.values() if match.score >= min_score),
            key=lambda match: (-match.score, match.filepath),
        )
        return ranked[offset:wanted]

    def _local_matches(self, query: Query) -> list[SearchMatch]:
        """Verified local candidates, each scored by both methods on the one version of the
        record the store returned (a search racing a replacement never mixes two versions)."""
        if query.local is None or not self.settings.match_partial_matching:
            return []
        matches = []
        with _timed("local_search", 1):
            candidates = self.store.local_candidates(
                query.local.words, LOCAL_CANDIDATES, signatures=query.signatures
            )
            for candidate in candidates:
                verified = _verified(query, candidate.local)
                if verified is None:
                    continue
                local_match = SearchMatch(
                    candidate.filepath,
                    local_score(verified.inliers),
                    candidate.metadata,
                    sig.ORIENTATIONS[verified.quarter_turns],
                    verified.query_overlap,
                    verified.target_overlap,
                    "local",
                )
                matches.append(max(local_match, _global_match(query, candidate), key=_score))
        return matches

    def compare(self, first: Query, second: Query) -> Comparison:
        """How well ``second`` (its first signature) matches ``first`` by either method."""
        distances = sig.normalized_distances(first.signatures, second.signatures[:1])
        result = Comparison(score_of(float(np.min(distances))))
        if second.local is None:
            return result
        verified = _verified(first, second.local)
        if verified is None or local_score(verified.inliers) <= result.score:
            return result
        return Comparison(
            local_score(verified.inliers), verified.query_overlap, verified.target_overlap
        )

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


def _score(match: SearchMatch | None) -> float:
    return -1.0 if match is None else match.score


def _global_match(query: Query, candidate: LocalCandidate) -> SearchMatch | None:
    """The signature's match with a local candidate, from its distance to the query that the
    store read with it."""
    if candidate.distance is None:
        return None
    return SearchMatch(
        candidate.filepath,
        score_of(candidate.distance),
        candidate.metadata,
        sig.ORIENTATIONS[candidate.orientation],
    )


def _verified(query: Query, stored: local.LocalFeatures) -> local.Verified | None:
    """The query's local match with a stored image. Local features find any rotation; a query
    of one orientation (all_orientations off) accepts only upright matches, as the signature."""
    if query.local is None:
        return None
    verified = local.verify(query.local, stored)
    if verified is None or (len(query.signatures) == 1 and verified.quarter_turns != 0):
        return None
    return verified


def _check_filepath(filepath: str) -> None:
    if not filepath or not filepath.strip():
        raise BadParameter("Parameter 'filepath' must not be empty")
    if len(filepath.encode()) > 1024:
        raise BadParameter("Parameter 'filepath' is longer than 1024 bytes")
    if "\x00" in filepath:
        raise BadParameter("Parameter 'filepath' must not contain NUL characters")
