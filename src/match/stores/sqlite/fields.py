"""The per-process index of metadata values that filters match (stores/filters.py), from the
``fields`` table.

Per metadata key, two append-only columns: the numbers (float64) and the other values (strings,
booleans, null), the latter as int32 codes of a per-key codebook. A condition is one vectorised
pass over its key's column, so its cost is the number of records holding the key, whatever the
filter selects; the result is ids (ascending), which the signature and word indexes turn into a
mask of their own rows. Deleted ids stay until a reload (their rows are dead in the other
indexes, so they never match); the index reloads once they are half of it.

A metadata update keeps the record's id (and its place in insertion order), so it cannot be
told by ids: each update is logged (the ``field_updates`` table) and its new values are appended
with the update's number as their stamp; an entry counts only while its stamp is the latest of
its id (0 for a record never updated).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from match.stores.filters import Condition, Filter, Indexed

_EMPTY_IDS = np.zeros(0, dtype=np.int64)


@dataclass
class _Column:
    """The values of one key, in id order."""

    number_ids: list[np.ndarray] = field(default_factory=list)
    number_stamps: list[np.ndarray] = field(default_factory=list)
    numbers: list[np.ndarray] = field(default_factory=list)
    other_ids: list[np.ndarray] = field(default_factory=list)
    other_stamps: list[np.ndarray] = field(default_factory=list)
    others: list[np.ndarray] = field(default_factory=list)
    codebook: dict[Indexed, int] = field(default_factory=dict)

    def add(self, ids: list[int], values: list[Indexed], stamp: int) -> None:
        numbers = [(i, v) for i, (kind, v) in zip(ids, values, strict=True) if kind == "n"]
        others = [(i, value) for i, value in zip(ids, values, strict=True) if value[0] != "n"]
        if numbers:
            self.number_ids.append(np.array([i for i, _ in numbers], dtype=np.int64))
            self.number_stamps.append(np.full(len(numbers), stamp, dtype=np.int64))
            self.numbers.append(np.array([v for _, v in numbers], dtype=np.float64))
        if others:
            codes = [self.codebook.setdefault(value, len(self.codebook)) for _, value in others]
            self.other_ids.append(np.array([i for i, _ in others], dtype=np.int64))
            self.other_stamps.append(np.full(len(others), stamp, dtype=np.int64))
            self.others.append(np.array(codes, dtype=np.int32))
        self._join()

    def matching(self, condition: Condition) -> tuple[np.ndarray, np.ndarray]:
        """Ids and stamps of the entries whose value of this key meets the condition."""
        ids, stamps = [], []
        if self.numbers:
            numbers = self.numbers[0]
            if condition.is_range:
                keep = np.ones(len(numbers), dtype=bool)
                if condition.lower is not None:
                    keep &= (
                        numbers >= condition.lower
                        if condition.lower_inclusive
                        else (numbers > condition.lower)
                    )
                if condition.upper is not None:
                    keep &= (
                        numbers <= condition.upper
                        if condition.upper_inclusive
                        else (numbers < condition.upper)
                    )
            else:
                wanted = [v for kind, v in condition.values if kind == "n"]
                keep = np.isin(numbers, np.array(wanted, dtype=np.float64))
            ids.append(self.number_ids[0][keep])
            stamps.append(self.number_stamps[0][keep])
        if self.others and not condition.is_range:
            codes = [self.codebook[v] for v in condition.values if v in self.codebook]
            if codes:
                keep = np.isin(self.others[0], codes)
                ids.append(self.other_ids[0][keep])
                stamps.append(self.other_stamps[0][keep])
        if not ids:
            return _EMPTY_IDS, _EMPTY_IDS
        return np.concatenate(ids), np.concatenate(stamps)

    def _join(self) -> None:
        # one array per column: appends are small and few between queries
        for arrays in (
            self.number_ids,
            self.number_stamps,
            self.numbers,
            self.other_ids,
            self.other_stamps,
            self.others,
        ):
            if len(arrays) > 1:
                arrays[:] = [np.concatenate(arrays)]

    def nbytes(self) -> int:
        arrays = self.number_ids + self.number_stamps + self.numbers
        arrays += self.other_ids + self.other_stamps + self.others
        return sum(a.nbytes for a in arrays)


class FieldIndex:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._columns: dict[str, _Column] = {}
        self._latest: dict[int, int] = {}  # stamp of the latest update of each updated id
        self._last_id = 0
        self._rows = 0
        self._dead = 0

    @property
    def last_id(self) -> int:
        return self._last_id

    @property
    def stale(self) -> bool:
        """Whether deleted records' values are half of the index (time to reload)."""
        return self._dead > 1024 and self._dead * 2 > self._rows

    def append(self, rows: Iterable[tuple[int, str, str, object]], stamp: int = 0) -> None:
        """Add (id, key, kind, value) rows with ids above ``last_id``, in id order (or, with
        the ``stamp`` of an update, the new values of records already indexed: see ``update``).
        """
        by_key: dict[str, tuple[list[int], list[Indexed]]] = {}
        for image_id, key, kind, value in rows:
            ids, values = by_key.setdefault(key, ([], []))
            ids.append(image_id)
            values.append(_indexed(kind, value))
            self._last_id = max(self._last_id, image_id)
            self._rows += 1
        for key, (ids, values) in by_key.items():
            self._columns.setdefault(key, _Column()).add(ids, values, stamp)

    def update(
        self, ids: Iterable[int], rows: list[tuple[int, str, str, object]], stamp: int
    ) -> None:
        """The new values (``rows``, maybe none) of records whose metadata update ``stamp``
        changed: their earlier entries stop counting."""
        for image_id in ids:
            self._latest[int(image_id)] = stamp
        self.append(rows, stamp)

    def kill(self, ids: np.ndarray) -> None:
        self._dead += len(ids)  # their values stay until a reload; see the module docstring

    def matching_ids(self, where: Filter) -> np.ndarray:
        """Ids (ascending) of the records meeting every condition, deleted ones included."""
        result: np.ndarray | None = None
        for condition in where.conditions:
            column = self._columns.get(condition.key)
            ids = self._current(*column.matching(condition)) if column else _EMPTY_IDS
            result = ids if result is None else np.intersect1d(result, ids, assume_unique=True)
            if len(result) == 0:
                break
        return _EMPTY_IDS if result is None else result

    def nbytes(self) -> int:
        return sum(column.nbytes() for column in self._columns.values())

    def _current(self, ids: np.ndarray, stamps: np.ndarray) -> np.ndarray:
        """The ids (ascending, distinct) of the entries that are their record's latest."""
        if self._latest:
            updated = np.fromiter(self._latest, dtype=np.int64, count=len(self._latest))
            order = np.argsort(updated)
            updated = updated[order]
            latest = np.fromiter(self._latest.values(), np.int64, len(self._latest))[order]
            at = np.minimum(np.searchsorted(updated, ids), len(updated) - 1)
            expected = np.where(updated[at] == ids, latest[at], 0)
            ids = ids[stamps == expected]
        return ascending_distinct(ids)


def ascending_distinct(ids: np.ndarray) -> np.ndarray:
    """``ids`` sorted, each once. A key's ids are usually already so (one value per record,
    appended in id order): checking costs one pass, where np.unique (hash-based in numpy 2)
    took 320 ms for 500k ids, more than the search a filter serves."""
    if len(ids) < 2 or np.all(ids[1:] > ids[:-1]):
        return ids
    ids = np.sort(ids)
    return ids[np.concatenate(([True], ids[1:] != ids[:-1]))]


def _indexed(kind: str, value: object) -> Indexed:
    if kind == "n":
        return ("n", float(value))  # type: ignore[arg-type]
    if kind == "b":
        return ("b", bool(value))
    if kind == "z":
        return ("z", None)
    return ("s", str(value))
