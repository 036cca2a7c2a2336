"""The matching methods, each on its own, and the one step that merges them.

- The signature (match.signature): the store finds the stored images whose signature lies under
  the distance cutoff of any of the query's orientations; scored 100 * (1 - distance).
- Partial matching (match.local): the store ranks stored images by the visual words they share
  with the query; of the best LOCAL_SHORTLIST, the LOCAL_CANDIDATES with the most tentative
  matches (shared words, close Hamming bits) are verified geometrically and scored by their
  inliers (match.local.score). Each candidate arrives with its signature's distance to the
  query, read from the same version of the record, so its signature match is known too. A query
  in all 8 orientations makes a second pass with its mirror image's words (match.local.mirror).

- PDQ (match.pdq): the store finds the stored hashes within a Hamming distance of the query's
  (in its orientations), by multi-index terms; scored by pdq_scores. Image searches match
  hash-only records this way; a search by hash matches every record.

``merge`` keeps each stored record once, with its best score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from match import local, pdq
from match import signature as sig
from match.local.score import local_score
from match.service import outlines, pdq_scores
from match.service.analysis import Query
from match.service.results import Comparison, Match, is_match, score_of
from match.service.timing import timed
from match.stores import LocalCandidate, PdqHit, Store
from match.stores.filters import DEFAULT_COLLECTION, Filter

LOCAL_SHORTLIST = 200
"""Stored images the store ranks first by shared words, per pass: their tentative matches (shared
words with close Hamming bits, local.verify) are counted, cheaply, to pick the ones to verify.
Ranking by words alone loses an original among thousands of look-alikes when little of the
query shows it (a small tile in a screenshot); its tentative matches still single it out."""
LOCAL_CANDIDATES = 30
"""Stored images verified geometrically per pass: the shortlist's with most tentative matches."""


@dataclass(frozen=True)
class Scope:
    """Where a search looks: one collection, and the records of a metadata filter in it."""

    collection: str = DEFAULT_COLLECTION
    where: Filter | None = None


def signature_matches(
    store: Store, query: Query, cutoff: float, limit: int, scope: Scope = Scope()
) -> list[Match]:
    """The ``limit`` best stored images in scope by signature, under the cutoff."""
    with timed("search", len(query.signatures)):
        hits = store.search(
            query.signatures,
            cutoff=cutoff,
            limit=limit,
            offset=0,
            collection=scope.collection,
            where=scope.where,
        )
    return [
        _with_pdq(
            _whole(hit.filepath, hit.distance, hit.metadata, hit.orientation, query.size, hit.size),
            hit.pdq,
            hit.pdq_quality,
        )
        for hit in hits
    ]


@dataclass(frozen=True)
class PdqRule:
    """How PDQ matches: the largest Hamming distance, the quality below which a hash is low,
    and whether a low-quality hash may be the evidence of a match."""

    max_distance: int = pdq.MATCH_DISTANCE
    min_quality: int = pdq.QUALITY_THRESHOLD
    allow_low_quality: bool = False


def pdq_matches(
    store: Store,
    hashes: Sequence[bytes],
    query_quality: int | None,
    limit: int,
    rule: PdqRule = PdqRule(),
    scope: Scope = Scope(),
    *,
    images: bool = True,
) -> list[Match]:
    """Stored records whose PDQ hash lies within the rule's distance of any of ``hashes`` (in
    ORIENTATIONS order): hash-only records and, with ``images``, images. A match on a
    low-quality hash (the query's or the stored one) is flagged, and dropped unless the rule
    allows it: a PDQ match is each such record's only evidence here."""
    if not hashes:
        return []
    with timed("pdq_search", len(hashes)):
        hits = store.pdq_search(
            list(hashes),
            rule.max_distance,
            limit,
            images=images,
            collection=scope.collection,
            where=scope.where,
        )
    return _pdq_matches_of(hits, query_quality, rule)


def pdq_matches_each(
    store: Store,
    hashes: Sequence[bytes],
    limit: int,
    rule: PdqRule = PdqRule(),
    scope: Scope = Scope(),
) -> list[list[Match]]:
    """``pdq_matches`` of each of ``hashes`` on its own (a batch: one store lookup for all),
    images and hash-only records; the hashes' own quality is unknown."""
    if not hashes:
        return []
    with timed("pdq_search_batch", len(hashes)):
        found = store.pdq_search_batch(
            list(hashes),
            rule.max_distance,
            limit,
            collection=scope.collection,
            where=scope.where,
        )
    return [_pdq_matches_of(hits, None, rule) for hits in found]


def _pdq_matches_of(
    hits: Sequence[PdqHit], query_quality: int | None, rule: PdqRule
) -> list[Match]:
    query_low = pdq_scores.is_low_quality(query_quality, rule.min_quality)
    matches = []
    for hit in hits:
        low = query_low or pdq_scores.is_low_quality(hit.quality, rule.min_quality)
        if low and not rule.allow_low_quality:
            continue
        matches.append(
            Match(
                hit.filepath,
                pdq_scores.score_of_distance(hit.distance),
                hit.metadata,
                sig.ORIENTATIONS[hit.orientation],
                "pdq",
                query_outline=outlines.frame(hit.size),
                mirrored=_mirrored(hit.orientation),
                pdq=pdq.to_hex(hit.pdq),
                pdq_quality=hit.quality,
                pdq_distance=hit.distance,
                pdq_low_quality=low,
                hash_only=hit.hash_only,
            )
        )
    return matches


def local_matches(
    store: Store,
    query: Query,
    scope: Scope = Scope(),
    min_overlap: float = 0.0,
    *,
    cutoff: float,
    min_score: float = 0.0,
) -> list[Match]:
    """The verified local candidates, each as a local match (if it covers at least
    ``min_overlap`` percent of the stored image) and, when its signature was readable, also as
    the signature match of the same record version. With mirror images (``query.mirrors``),
    the query's mirror image is a second pass; its matches come first, so that an unmirrored
    match wins a tie in ``merge``.

    A query with finer features to hand (``query.finer``) searches with its cheap ones first
    and, only if they verify no local match under ``cutoff`` and at least ``min_score`` (what
    the search would return), again with the finer ones: the two extractions miss different
    copies, and a query whose copy is found never pays the dearer one."""
    found = _local_passes(store, query, scope, min_overlap, cutoff)
    if any(m.method == "local" and is_match(m.score, cutoff, min_score) for m in found):
        return found
    refined = query.refined()
    if refined is None:
        return found
    return found + _local_passes(store, refined, scope, min_overlap, cutoff)


def _local_passes(
    store: Store, query: Query, scope: Scope, min_overlap: float, cutoff: float
) -> list[Match]:
    """``local_matches`` with the query's features as they are: one pass, two with mirrors."""
    if query.local is None:
        return []
    passes = [False]
    if query.mirrors and query.mirrored_local is not None:
        passes.insert(0, True)
    matches = []
    with timed("local_search", len(passes)):
        for mirrored in passes:
            features = query.mirrored_local if mirrored else query.local
            assert features is not None
            candidates = store.local_candidates(
                features.words,
                LOCAL_SHORTLIST,
                bits=features.bits,
                signatures=query.signatures,
                collection=scope.collection,
                where=scope.where,
            )
            matches += _candidate_matches(query, candidates, mirrored, min_overlap, cutoff)
    return matches


def _candidate_matches(
    query: Query,
    candidates: Sequence[LocalCandidate],
    mirrored: bool,
    min_overlap: float,
    cutoff: float,
) -> list[Match]:
    matches = []
    stored = [candidate.local for candidate in candidates]
    found = verify_all(query, stored, mirrored=mirrored, fits=LOCAL_CANDIDATES)
    for candidate, verified in zip(candidates, found, strict=True):
        if verified is not None and verified.target_overlap >= min_overlap:
            local_match = _local_match(query, candidate, verified)
            matches.append(_with_pdq(local_match, candidate.pdq, candidate.pdq_quality))
        # most of the 200 are not signature matches: merge would drop them
        if candidate.distance is not None and is_match(score_of(candidate.distance), cutoff):
            whole = _whole(
                candidate.filepath,
                candidate.distance,
                candidate.metadata,
                candidate.orientation,
                query.size,
                candidate.size,
            )
            matches.append(_with_pdq(whole, candidate.pdq, candidate.pdq_quality))
    return matches


def merge(matches: Iterable[Match], cutoff: float) -> list[Match]:
    """Each stored image once, with its best score among the matches under the cutoff (on a
    tie the later match wins: a partial-matching candidate's fresher version of the record),
    best first, then by filepath."""
    best: dict[tuple[bool, str], Match] = {}  # hash-only records are a key space apart
    for match in matches:
        key = (match.hash_only, match.filepath)
        kept = best.get(key)
        if is_match(match.score, cutoff) and (kept is None or match.score > kept.score - 1e-9):
            best[key] = match
    return sorted(best.values(), key=lambda m: (-m.score, m.filepath, m.hash_only))


def compare(first: Query, second: Query) -> Comparison:
    """How well ``second`` (its first signature) matches ``first``, by the better method;
    ``first``'s finer features are extracted only if its cheap ones verify no local match."""
    distances = sig.normalized_distances(first.signatures, second.signatures[:1])[:, 0]
    best = int(np.argmin(distances))
    by_signature = Comparison(
        score_of(float(distances[best])),
        "signature",
        sig.ORIENTATIONS[best],
        query_outline=outlines.frame(second.size),
        target_outline=outlines.frame(first.size),
        mirrored=_mirrored(best),
    )
    verified = _best_local(first, second)
    refined = first.refined() if verified is None or not local_score(verified.inliers) else None
    if refined is not None:  # as a search does: the finer features when the cheap ones fail
        first, verified = refined, _best_local(refined, second)
    if verified is None or local_score(verified.inliers) <= by_signature.score:
        return by_signature
    assert first.local is not None and second.local is not None
    query_outline, target_outline = outlines.local_outlines(
        verified, first.local, first.size, second.local, second.size
    )
    return Comparison(
        local_score(verified.inliers),
        "local",
        _orientation(verified),
        verified.query_overlap,
        verified.target_overlap,
        query_outline,
        target_outline,
        verified.mirrored,
    )


def _best_local(first: Query, second: Query) -> local.Verified | None:
    """The local match of ``first`` with ``second`` with the most inliers: as it is and, with
    mirror images, as a mirror image (``first``'s mirror features if it has them, else
    ``second``'s: a stored image's are not known). An unmirrored match wins a tie."""
    if second.local is None:
        return None
    found = verify_all(first, [second.local])
    if first.mirrors and first.local is not None:
        if first.mirrored_local is not None:
            found += verify_all(first, [second.local], mirrored=True)
        elif second.mirrored_local is not None:
            found.append(local.verify(first.local, second.mirrored_local, mirror_of="target"))
    kept = [v for v in found if v is not None]
    return max(kept, key=lambda v: v.inliers) if kept else None


def verify_all(
    query: Query,
    stored: Sequence[local.LocalFeatures],
    *,
    mirrored: bool = False,
    fits: int | None = None,
) -> list[local.Verified | None]:
    """The query's local match with each stored image, or its mirror image's (``mirrored``,
    only when the query matches mirror images). Local features find any rotation; a query of
    one orientation (all_orientations off) accepts only upright matches, as the signature.
    With ``fits``, only that many stored images are fitted (local.verify_all)."""
    features = query.mirrored_local if mirrored else query.local
    if features is None or (mirrored and not query.mirrors):
        return [None] * len(stored)
    mirror_of = "query" if mirrored else None
    found = local.verify_all(features, stored, mirror_of=mirror_of, fits=fits)
    if query.upright_only:
        return [v if v is not None and v.quarter_turns == 0 else None for v in found]
    return found


def _local_match(query: Query, candidate: LocalCandidate, verified: local.Verified) -> Match:
    assert query.local is not None
    query_outline, target_outline = outlines.local_outlines(
        verified, query.local, query.size, candidate.local, candidate.size
    )
    return Match(
        candidate.filepath,
        local_score(verified.inliers),
        candidate.metadata,
        _orientation(verified),
        "local",
        verified.query_overlap,
        verified.target_overlap,
        query_outline,
        target_outline,
        verified.mirrored,
    )


def _orientation(verified: local.Verified) -> str:
    """A local match's orientation, named as the signature's (mirror first, then turn)."""
    return sig.ORIENTATIONS[4 * verified.mirrored + verified.quarter_turns]


def _whole(
    filepath: str,
    distance: float,
    metadata: dict | None,
    orientation: int,
    query_size: tuple[int, int] | None,
    stored_size: tuple[int, int] | None,
) -> Match:
    """A signature match: whole images, the query in one of its 8 orientations."""
    return Match(
        filepath,
        score_of(distance),
        metadata,
        sig.ORIENTATIONS[orientation],
        query_outline=outlines.frame(stored_size),
        target_outline=outlines.frame(query_size),
        mirrored=_mirrored(orientation),
    )


def _with_pdq(match: Match, packed: bytes | None, quality: int | None) -> Match:
    """A match carrying its stored record's PDQ hash, when it has one."""
    if packed is None:
        return match
    return dataclasses.replace(match, pdq=pdq.to_hex(packed), pdq_quality=quality)


def _mirrored(orientation: int) -> bool:
    return sig.ORIENTATIONS[orientation].startswith("mirror")
