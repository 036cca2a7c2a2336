"""What the service matches with: an image decoded once, its signatures in 1 or 8 orientations,
its PDQ hashes in as many, and its local features when partial matching is on. The one place
that turns image bytes (or a stored record) into a Query."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from match import local, pdq
from match import signature as sig
from match.errors import BlankImage
from match.local import features as extractions
from match.service.thumbnails import make_thumbnail
from match.service.timing import timed
from match.settings import Settings
from match.stores import ImageRecord
from match.stores.filters import DEFAULT_COLLECTION


class FinerFeatures:
    """A query image's local features by a finer, dearer extraction (local.FINE_QUERY), made on
    first use only: a search asks for them when its first pass, with the cheap extraction,
    verified no match (methods.local_matches), so queries whose match is found never pay them.
    Holds the decoded pixels until then."""

    def __init__(self, pixels: np.ndarray, extraction: local.Extraction, mirror: bool) -> None:
        self._pixels: np.ndarray | None = pixels
        self.extraction = extraction
        self._mirror = mirror
        self._found: tuple[local.LocalFeatures | None, local.LocalFeatures | None] = (None, None)

    @property
    def extracted(self) -> bool:
        return self._pixels is None

    def features(self) -> tuple[local.LocalFeatures | None, local.LocalFeatures | None]:
        """The image's features and, if asked for, its mirror image's (None: no keypoints)."""
        if self._pixels is not None:
            with timed("local", 1):
                if self._mirror:
                    found, mirrored = local.local_features_and_mirror(self._pixels, self.extraction)
                else:
                    found, mirrored = local.local_features(self._pixels, self.extraction), None
            self._pixels = None
            if len(found.words):
                self._found = (found, mirrored)
        return self._found


@dataclass(frozen=True)
class Query:
    """(1, 4 or 8, 648) signatures in ORIENTATIONS order, and local features (None when partial
    matching is off, the image has no keypoints, or none were stored)."""

    signatures: np.ndarray
    local: local.LocalFeatures | None = None
    size: tuple[int, int] | None = None  # (width, height) of the image as given
    pdq: tuple[bytes, ...] = ()  # PDQ hashes in ORIENTATIONS order (as many as signatures)
    pdq_quality: int | None = None  # None: no PDQ hash (a stored record without one)
    thumbnail: bytes | None = None  # WebP (service/thumbnails.py), when asked for
    # the local features of the image mirrored left-right (local.local_features_and_mirror);
    # None when ``local`` is, and for a stored image (no descriptors are stored to mirror)
    mirrored_local: local.LocalFeatures | None = None
    # the second pass's features, extracted on demand (None: no second pass, as for a stored
    # image or a query already extracted finely)
    finer: FinerFeatures | None = None

    def refined(self) -> Query | None:
        """The query with its finer local features instead (extracting them now if not done
        yet), or None if it has none: no second pass, or no keypoints."""
        if self.finer is None:
            return None
        found, mirrored = self.finer.features()
        if found is None:
            return None
        return dataclasses.replace(self, local=found, mirrored_local=mirrored, finer=None)

    @property
    def mirrors(self) -> bool:
        """Whether mirror images match: the query has all 8 orientations."""
        return len(self.signatures) == len(sig.ORIENTATIONS)

    @property
    def upright_only(self) -> bool:
        """Whether only the upright, unmirrored orientation matches."""
        return len(self.signatures) == 1

    def orientations(self, count: int) -> Query:
        """The same query with only its first ``count`` signatures (and orientations)."""
        return dataclasses.replace(self, signatures=self.signatures[:count], pdq=self.pdq[:count])


class Analyser:
    """Turns images into Queries as the settings say (signature mode, pixel cap, partial
    matching)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def partial_matching(self) -> bool:
        return self.settings.match_partial_matching

    def query(
        self,
        image: bytes,
        all_orientations: bool,
        *,
        name: str = "image",
        features: bool = True,
        thumbnail: bool = False,
        mirror: bool = True,
        extraction: local.Extraction | None = None,
        fine: local.Extraction | None = None,
    ) -> Query:
        """The query of encoded image bytes: decoded once for both methods; local features
        only if partial matching is on and ``features``, and with ``mirror`` its mirror image's
        too (one more quantisation; compare may use them whatever the orientations); a
        thumbnail if ``thumbnail``. Local features are extracted as ``extraction`` says, and
        with ``fine`` a second, finer extraction is kept ready to be made if a search needs it
        (defaults: local.QUERY and local.FINE_QUERY; a record's are local.STORED and none).
        BlankImage naming ``name`` if the image is featureless."""
        count = len(sig.ORIENTATIONS) if all_orientations else 1
        with timed("signature", count):  # decoding included, as without partial matching
            pixels, size = sig.decode_for_signature(
                image,
                max_pixels=self.settings.match_max_image_pixels,
                mode=self.settings.match_signature_mode,
            )
            signatures = sig.pixels_orientation_signatures(pixels, range(count))
        if sig.is_blank(signatures[0]):
            raise BlankImage(f"The {name} is blank or featureless: it has no signature to match")
        query = Query(signatures, size=size)
        if thumbnail:
            query = dataclasses.replace(query, thumbnail=make_thumbnail(pixels))
        if self.settings.match_pdq:
            query = self._with_pdq(query, pixels, count)
        if not (features and self.partial_matching):
            return query
        if extraction is None:
            extraction = extractions.QUERY
            fine = extractions.FINE_QUERY if fine is None else fine
        with timed("local", 1):
            if mirror:
                found, mirrored = local.local_features_and_mirror(pixels, extraction)
            else:
                found, mirrored = local.local_features(pixels, extraction), None
        if fine is not None and fine != extraction:
            query = dataclasses.replace(query, finer=FinerFeatures(pixels, fine, mirror))
        if not len(found.words):
            return query
        return dataclasses.replace(query, local=found, mirrored_local=mirrored)

    @staticmethod
    def _with_pdq(query: Query, pixels: np.ndarray, count: int) -> Query:
        """The query with its PDQ hashes in its orientations (8 come from one pass)."""
        with timed("pdq", count):
            if count == 1:
                found_pdq = pdq.pdq_hash(pixels)
                hashes, quality = (found_pdq.hash,), found_pdq.quality
            else:
                dihedral, quality = pdq.dihedral_hashes(pixels)
                hashes = tuple(dihedral)
        return dataclasses.replace(query, pdq=hashes, pdq_quality=quality)

    def record(
        self,
        filepath: str,
        image: bytes,
        metadata: dict | None = None,
        collection: str = DEFAULT_COLLECTION,
    ) -> ImageRecord:
        """The record to store for encoded image bytes: its upright signature, local features
        and size, and its thumbnail unless MATCH_THUMBNAILS is off."""
        query = self.query(
            image,
            False,
            thumbnail=self.settings.match_thumbnails,
            mirror=False,
            extraction=extractions.STORED,
        )
        return ImageRecord(
            filepath,
            query.signatures[0],
            metadata,
            local=query.local,
            collection=collection,
            size=query.size,
            pdq=query.pdq[0] if query.pdq else None,
            pdq_quality=query.pdq_quality,
            thumbnail=query.thumbnail,
        )

    def stored_query(self, record: ImageRecord, all_orientations: bool) -> Query:
        """The query of a stored record: its signature's orientations by permutation, and its
        stored local features if partial matching is on."""
        signatures = (
            sig.signature_orientations(record.signature)
            if all_orientations
            else record.signature[None, :]
        )
        hashes: tuple[bytes, ...] = ()
        if record.pdq is not None:  # orienting a hash needs the pixels: the stored one, upright
            hashes = (record.pdq,)
        return Query(
            signatures,
            record.local if self.partial_matching else None,
            record.size,
            hashes,
            record.pdq_quality,
        )
