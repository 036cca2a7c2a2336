"""The near-duplicates already inside a collection, in groups: what `GET /duplicates` and
`match duplicates` answer (docs/duplicates.md).

1. **Links, through the index.** Every stored image in scope is searched for with its stored
   record (its signature in every orientation and its stored local features: no image is
   decoded again), through the store's own search, as `POST /search` with a stored filepath
   would: one candidate search per image, never all N² pairs. Each search keeps the matches of
   at least ``min_score`` (at most NEIGHBOURS), itself left out. The searches run in worker
   processes (``jobs``), each with its own store, and report their progress.
2. **Groups that cannot chain.** Images are taken in the keeper rule's order (KeeperRule: the
   earliest added, then the largest in pixels, by default); an image not yet in a group becomes
   the keeper of a new one, and its members are the images not yet in a group that match *it*
   directly (its search found them, or theirs found it), with at least ``min_score``. Every
   member is linked to its keeper, never only to another member, so a chain A~B~C of partial
   matches where A and C do not match never puts A and C together, and a group is never bigger
   than one image's matches. The keeper outranks its members by the rule, and ``reason`` says
   why it was chosen. A signature link with a near-featureless image (PDQ quality below
   MATCH_PDQ_MIN_QUALITY) is weak evidence: it needs FLAT_MIN_SCORE (``flat_link``).
3. **Incremental.** With ``since``, only the images added after it are searched, then the images
   they matched (so that a group around an old keeper is whole), and only the groups holding a
   new image are answered; ``next_since`` is what to pass next time.

Each member is the search result (service/results.Match) that links it to the keeper, as the
keeper's search for it would answer: filepath, score, method, orientation, overlaps, outlines.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from match import pdq
from match import signature as sig
from match.errors import BadParameter, NotFound, TooLarge
from match.service.matcher import Matcher
from match.service.results import Match, Metadata, as_json, is_match
from match.settings import Settings
from match.stores import ImageRecord, Since
from match.stores.filters import DEFAULT_COLLECTION, Filter

MIN_SCORE = 60.0
"""The default score a member needs: on the dev photos, 60 keeps every pair of the edits that
share no overlay with other photos right (precision 1.000, against 0.98-0.99 at the search's own
floor of 55) for a recall 0.002 lower (docs/duplicates.md)."""
FLAT_MIN_SCORE = 70.0
"""The score a signature link needs when either image is near-featureless (its PDQ quality below
MATCH_PDQ_MIN_QUALITY): the signature of a flat wallpaper or a smooth gradient is a few coarse
ramps that unrelated flat images share. On the dev photos such links between different pictures
scored 60.2-70.0, and no family lost a pair (the true links under 70 were copy-to-copy); copies
of a flat gradient (half size, greyscale, cropped) score 77.6-84.2 (docs/duplicates.md)."""
NEIGHBOURS = 100
"""Matches kept per image searched (the search API's default limit): a member of a group is one
of its keeper's matches, so no group has more members than this."""
BATCH = 16
"""Records sent to a worker process at a time."""
READ_BATCH = 200
"""Records read from the store at a time."""

Progress = Callable[[int, int | None], None]
"""Called as images are searched: (searched so far, how many in all, None while not known)."""


# -- the keeper rule ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Image:
    """What grouping needs of a searched image, without its signature or features."""

    filepath: str
    size: tuple[int, int] | None
    added: float | None
    seq: int | None
    metadata: Metadata
    pdq: str | None = None
    pdq_quality: int | None = None

    @classmethod
    def of(cls, record: ImageRecord) -> Image:
        packed = None if record.pdq is None else pdq.to_hex(record.pdq)
        return cls(
            record.filepath,
            record.size,
            record.added,
            record.seq,
            record.metadata,
            packed,
            record.pdq_quality,
        )

    @property
    def pixels(self) -> int:
        return 0 if self.size is None else self.size[0] * self.size[1]

    @property
    def order(self) -> tuple[Any, ...]:
        """Insertion order: by sequence where the store keeps one, else by time added."""
        return (self.seq is not None, self.seq or 0, self.added or 0.0)


@dataclass(frozen=True)
class KeeperRule:
    """Which image of a group is suggested to keep: ``earliest`` (the default: the earliest
    added, then the largest), ``largest`` (most pixels, then the earliest added), or
    ``metadata:<key>`` (the
    highest value of that metadata key, ``metadata:<key>:asc`` the lowest; values of one kind
    compare as usual, and across kinds booleans rank above strings, strings above numbers; an
    image without the key comes last; ties: largest, then earliest)."""

    kind: str = "earliest"
    key: str | None = None
    ascending: bool = False

    DEFAULT = "earliest"
    """Editing cannot make a copy earlier, but it can make one larger: padding, a screenshot's
    page, upscaling add pixels and no picture. On the dev photos ``largest`` kept a padded copy
    (1.44 times the original's pixels) in 182 of 209 groups and the original in none, and the
    mirrored copies, which match the padded one less often than the original, fell out of
    their groups (docs/duplicates.md)."""
    TEXT = "earliest, largest, metadata:<key> or metadata:<key>:asc"

    @classmethod
    def parse(cls, text: str | None) -> KeeperRule:
        text = (text or cls.DEFAULT).strip()
        if text in ("largest", "earliest"):
            return cls(text)
        if text.startswith("metadata:") and len(text) > len("metadata:"):
            key = text[len("metadata:") :]
            ascending = False
            for suffix, order in ((":asc", True), (":desc", False)):
                if key.endswith(suffix) and len(key) > len(suffix):
                    key, ascending = key[: -len(suffix)], order
                    break
            return cls("metadata", key, ascending)
        raise BadParameter(f"Parameter 'keeper' must be {cls.TEXT}, got {text!r}")

    def __str__(self) -> str:
        if self.kind != "metadata":
            return self.kind
        return f"metadata:{self.key}" + (":asc" if self.ascending else "")

    def ordered(self, images: Iterable[Image]) -> list[Image]:
        """The images, the one to keep first."""
        images = list(images)
        by_size = lambda image: (-image.pixels, image.order, image.filepath)  # noqa: E731
        if self.kind == "earliest":
            return sorted(images, key=lambda image: (image.order, -image.pixels, image.filepath))
        if self.kind == "largest":
            return sorted(images, key=by_size)
        ranks = _value_ranks(self._value(image) for image in images)
        sign = 1 if self.ascending else -1

        def key(image: Image) -> tuple[Any, ...]:
            value = self._value(image)
            rank = ranks.get(_sortable(value)) if value is not None else None
            return (rank is None, sign * (rank or 0), *by_size(image))

        return sorted(images, key=key)

    def reason(self, keeper: Image, others: list[Image]) -> str:
        """Why ``keeper`` was chosen over ``others`` (the rest of its group)."""
        if self.kind == "metadata":
            value = self._value(keeper)
            if value is None:
                return f"no image of the group has metadata {self.key!r}; " + self._size_reason(
                    keeper, others
                )
            which = "lowest" if self.ascending else "highest"
            tied = [o for o in others if _sortable(self._value(o)) == _sortable(value)]
            text = f"{which} metadata {self.key!r} ({_shown(value)})"
            return text + ("; then " + self._size_reason(keeper, tied) if tied else "")
        if self.kind == "earliest":
            tied = [o for o in others if o.order == keeper.order]
            text = "earliest added" + _when(keeper)
            return text + ("; then " + self._size_reason(keeper, tied) if tied else "")
        return self._size_reason(keeper, others)

    @staticmethod
    def _size_reason(keeper: Image, others: list[Image]) -> str:
        if keeper.size is None:
            return "earliest added" + _when(keeper) + " (sizes not known)"
        width, height = keeper.size
        text = f"largest ({width}x{height} px)"
        tied = sum(other.pixels == keeper.pixels for other in others)
        if tied:
            text += f"; earliest added of the {tied + 1} that size"
        return text

    def _value(self, image: Image) -> Any:
        value = (image.metadata or {}).get(self.key) if isinstance(image.metadata, dict) else None
        return value if isinstance(value, bool | int | float | str) else None


def _sortable(value: Any) -> tuple[int, Any] | None:
    """Numbers, then strings, then booleans, each in their own order."""
    if value is None:
        return None
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, int | float):
        return (0, float(value)) if math.isfinite(value) else None
    return (1, value)


def _value_ranks(values: Iterable[Any]) -> dict[tuple[int, Any], int]:
    distinct = sorted({s for v in values if (s := _sortable(v)) is not None})
    return {value: rank for rank, value in enumerate(distinct)}


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower()


def _when(image: Image) -> str:
    if image.added is None:
        return ""
    return f" ({datetime.fromtimestamp(image.added, UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC)"


# -- since --------------------------------------------------------------------------------------
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
SINCE_TEXT = (
    "an ISO 8601 date or time (UTC unless it names a zone), Unix seconds, a duration back from "
    "now (30m, 12h, 7d) or seq:N (after insertion sequence N, as next_since gives it)"
)


def parse_since(text: str | float | None, now: float | None = None) -> Since | None:
    """``since`` as the API and the CLI take it (SINCE_TEXT); None when not given."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, int | float) and not isinstance(text, bool):
        return Since(time=float(text))
    value = str(text).strip()
    if value.startswith("seq:"):
        try:
            return Since(seq=int(value[4:]))
        except ValueError:
            pass
    elif (duration := _DURATION.match(value)) is not None:
        now = datetime.now(UTC).timestamp() if now is None else now
        return Since(time=now - float(duration.group(1)) * _UNITS[duration.group(2)])
    else:
        try:
            return Since(time=float(value))
        except ValueError:
            pass
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            pass
        else:
            when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
            return Since(time=when.timestamp())
    raise BadParameter(f"Parameter 'since' must be {SINCE_TEXT}; got {value!r}")


def since_text(since: Since | None) -> str | None:
    if since is None:
        return None
    if since.seq is not None:
        return f"seq:{since.seq}"
    assert since.time is not None
    return datetime.fromtimestamp(since.time, UTC).isoformat()


# -- the answer ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Group:
    """A keeper and the images that match it, best first, each as the Match that links it."""

    keeper: str
    reason: str
    members: list[Match]

    def as_json(self) -> dict[str, Any]:
        return {
            "keeper": self.keeper,
            "reason": self.reason,
            "members": [as_json(member) for member in self.members],
        }


@dataclass
class Duplicates:
    """The groups, how many images were searched, and the ``since`` of the next incremental run
    (``seq:N``, N the newest insertion sequence searched; None when the store keeps none)."""

    groups: list[Group]
    searched: int = 0
    next_since: str | None = None


@dataclass(frozen=True)
class Task:
    """What every search of a scan shares."""

    collection: str = DEFAULT_COLLECTION
    where: Filter | None = None
    min_score: float = MIN_SCORE
    neighbours: int = NEIGHBOURS


Found = tuple[Image, list[Match]]


@dataclass
class _Links:
    """The searches' results: each image searched, and what its search found."""

    images: dict[str, Image] = field(default_factory=dict)
    found: dict[str, dict[str, Match]] = field(default_factory=dict)

    def add(self, image: Image, matches: list[Match]) -> None:
        self.images[image.filepath] = image
        self.found[image.filepath] = {m.filepath: m for m in matches}

    def neighbours(self) -> dict[str, set[str]]:
        """Who matches whom, either search having found the other (searched images only)."""
        graph: dict[str, set[str]] = {path: set() for path in self.images}
        for path, found in self.found.items():
            for other in found:
                if other in graph and other != path:
                    graph[path].add(other)
                    graph[other].add(path)
        return graph

    def link(self, keeper: str, member: str) -> Match:
        """The Match that links ``member`` to ``keeper``, as the keeper's search answers it (or
        inverted from the member's search, when only that one found the keeper)."""
        found = self.found[keeper].get(member)
        if found is not None:
            return found
        return inverted(self.found[member][keeper], self.images[member])


def inverted(found: Match, image: Image) -> Match:
    """The Match of a search by ``found``'s stored image that finds ``image``, from the search
    by ``image`` that found it: same score and method, the inverse orientation, the overlaps and
    outlines swapped, and ``image``'s own metadata and PDQ hash."""
    index = sig.ORIENTATIONS.index(found.orientation)
    inverse = index if index >= 4 else (4 - index) % 4  # mirror_* are their own inverses
    return dataclasses.replace(
        found,
        filepath=image.filepath,
        metadata=image.metadata,
        orientation=sig.ORIENTATIONS[inverse],
        query_overlap=found.target_overlap,
        target_overlap=found.query_overlap,
        query_outline=found.target_outline,
        target_outline=found.query_outline,
        pdq=image.pdq,
        pdq_quality=image.pdq_quality,
    )


# -- grouping -----------------------------------------------------------------------------------
def group(
    links: _Links,
    rule: KeeperRule,
    cutoff: float,
    min_score: float,
    touching: set[str] | None = None,
    low_quality: int | None = pdq.QUALITY_THRESHOLD,
) -> list[Group]:
    """Groups around keepers (the module's step 2); with ``touching``, only the groups holding
    one of those images; ``low_quality``: the PDQ quality under which an image is
    near-featureless (``flat_link``; None: no such rule). Larger groups first, then by keeper."""
    graph = links.neighbours()
    taken: set[str] = set()
    groups = []
    for keeper in rule.ordered(links.images.values()):
        path = keeper.filepath
        if path in taken:
            continue
        taken.add(path)
        members = [links.link(path, other) for other in graph[path] if other not in taken]
        members = [
            m
            for m in members
            if is_match(m.score, cutoff, min_score)
            and not flat_link(m, keeper, links.images[m.filepath], low_quality)
        ]
        if not members:
            continue
        members.sort(key=lambda m: (-m.score, m.filepath))
        taken.update(m.filepath for m in members)
        if touching is not None and not ({path, *(m.filepath for m in members)} & touching):
            continue
        others = [links.images[m.filepath] for m in members]
        groups.append(Group(path, rule.reason(keeper, others), members))
    groups.sort(key=lambda g: (-len(g.members), g.keeper))
    return groups


def flat_link(link: Match, keeper: Image, member: Image, low_quality: int | None) -> bool:
    """Whether ``link`` is a signature match under FLAT_MIN_SCORE with an image whose PDQ quality
    is below ``low_quality``: a near-featureless image (a flat wallpaper, a gradient), whose
    signature unrelated flat images share, as PDQ says of its own hashes of low quality. Local
    matches need inliers, which such images barely have, so they are left as they are; an image
    of unknown quality (a record stored without a PDQ hash) does not count as near-featureless."""
    if low_quality is None or link.method != "signature" or link.score >= FLAT_MIN_SCORE:
        return False
    qualities = [q for q in (keeper.pdq_quality, member.pdq_quality) if q is not None]
    return bool(qualities) and min(qualities) < low_quality


# -- the searches -------------------------------------------------------------------------------
def matches_of(matcher: Matcher, record: ImageRecord, task: Task) -> list[Match]:
    """What a search with the stored record finds in scope, itself and hash-only records
    aside: the signature in the settings' orientations, and the stored local features."""
    query = matcher.analyser.stored_query(record, matcher.settings.all_orientations)
    query = dataclasses.replace(query, pdq=())  # hash-only records are not images to group
    found = matcher.search(
        query,
        min_score=task.min_score,
        limit=task.neighbours + 1,
        collection=task.collection,
        where=task.where,
    )
    return [m for m in found if m.filepath != record.filepath and not m.hash_only][
        : task.neighbours
    ]


def _search_all(
    matcher: Matcher, records: Iterable[ImageRecord], task: Task, jobs: int
) -> Iterator[Found]:
    """Each record's image and matches, in worker processes when ``jobs`` > 1 (each opens its
    own store from the settings), at most 2 batches per worker in flight."""
    if jobs <= 1:
        for record in records:
            yield Image.of(record), matches_of(matcher, record, task)
        return
    with ProcessPoolExecutor(
        max_workers=jobs, initializer=_start_worker, initargs=(matcher.settings,)
    ) as pool:
        pending: set[Future[list[Found]]] = set()
        batches = _batches(records, BATCH)
        for batch in batches:
            pending.add(pool.submit(_search_batch, batch, task))
            if len(pending) >= 2 * jobs:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield from future.result()
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield from future.result()


_WORKER: Matcher | None = None


def _start_worker(settings: Settings) -> None:
    global _WORKER
    _WORKER = Matcher(settings)


def _search_batch(records: list[ImageRecord], task: Task) -> list[Found]:
    assert _WORKER is not None
    return [(Image.of(record), matches_of(_WORKER, record, task)) for record in records]


def _batches(items: Iterable[ImageRecord], size: int) -> Iterator[list[ImageRecord]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


# -- the whole run ------------------------------------------------------------------------------
def find_duplicates(
    matcher: Matcher,
    *,
    collection: str = DEFAULT_COLLECTION,
    where: Filter | None = None,
    min_score: float = MIN_SCORE,
    since: Since | None = None,
    keeper: KeeperRule | None = None,
    jobs: int = 1,
    progress: Progress | None = None,
    max_images: int | None = None,
    neighbours: int = NEIGHBOURS,
) -> Duplicates:
    """The groups of near-duplicates among the stored images of one collection (and metadata
    filter), as the module doc says. ``max_images``: the most images this run may search; more
    is TooLarge before any search when the number is known up front (a whole collection), else
    as soon as it shows."""
    store = matcher.store
    task = Task(collection, where, min_score, neighbours)
    rule = keeper or KeeperRule()
    report = progress or (lambda done, total: None)
    total: int | None = None
    if since is None:
        total = store.count(collection=collection, where=where)
        _check_size(total, max_images, collection)
    records: Iterable[ImageRecord] = store.scan(
        collection=collection, where=where, since=since, batch=READ_BATCH
    )
    if since is not None and max_images is not None:
        records = list(itertools.islice(records, max_images + 1))
        _check_size(len(records), max_images, collection, since=True)
        total = len(records)
    links = _Links()
    newest: int | None = None
    searched = 0
    report(0, total)
    for image, matches in _search_all(matcher, records, task, jobs):
        links.add(image, matches)
        if image.seq is not None:
            newest = image.seq if newest is None else max(newest, image.seq)
        searched += 1
        report(searched, total)
    touching = None
    if since is not None:
        touching = set(links.images)
        matched = {path for found in links.found.values() for path in found} - touching
        if max_images is not None:
            _check_size(searched + len(matched), max_images, collection, since=True)
        total = searched + len(matched)
        report(searched, total)
        for image, matches in _search_all(matcher, _records(matcher, matched, task), task, jobs):
            links.add(image, matches)
            searched += 1
            report(searched, total)
    settings = matcher.settings
    groups = group(
        links,
        rule,
        settings.match_distance_cutoff,
        min_score,
        touching,
        settings.match_pdq_min_quality,
    )
    next_since = since_text(since) if newest is None else f"seq:{newest}"
    return Duplicates(groups, searched, next_since)


def _records(matcher: Matcher, filepaths: Iterable[str], task: Task) -> Iterator[ImageRecord]:
    """The records of these filepaths, those deleted meanwhile left out."""
    for filepath in sorted(filepaths):
        try:
            yield matcher.store.get(filepath, collection=task.collection)
        except NotFound:
            continue


def _check_size(count: int, most: int | None, collection: str, *, since: bool = False) -> None:
    if most is None or count <= most:
        return
    what = "images (added since then, or matched by those)" if since else "images"
    raise TooLarge(
        f"Finding the duplicates in the collection {collection!r} means searching "
        f"{'more than ' + str(most) if since else count} {what}; a request searches at most "
        f"{most} (MATCH_DUPLICATES_MAX_IMAGES). Run `match duplicates` where the store is "
        "(every core, a progress bar, no limit), or narrow the scan with 'since' or 'filter'"
    )


__all__ = [
    "Duplicates",
    "Group",
    "KeeperRule",
    "find_duplicates",
    "parse_since",
]
