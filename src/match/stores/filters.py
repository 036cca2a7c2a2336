"""Collections and metadata filters: what they mean, once for every engine.

A **collection** is a namespace of filepaths (``default`` unless named): filepaths are unique
within one, and every operation acts on one. A **filter** is a JSON object over the top-level
keys of the records' metadata; a record matches when every condition holds:

    {"shop": 12, "kind": "photo"}        equality (numbers compare as numbers: 12 == 12.0)
    {"shop": {"in": [1, 2]}}              any of these values
    {"price": {"gte": 10, "lt": 20}}      numeric range (gte, gt, lte, lt; any of them)

Only scalar values are indexed: numbers, strings up to MAX_TEXT characters, true/false and null,
under keys of up to MAX_TEXT characters without the unit separator U+001F (engines use it).
A key holding an object, a list or a longer string matches no condition, nor does a key the
record lacks; a filter on a key that no record has returns nothing, never an error. Booleans are
not numbers here (true does not equal 1), as in JSON.

Engines push filters down into their indexes (stores/sqlite/fields.py, stores/elastic/bodies.py);
``Filter.matches`` is the definition both are tested against.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from match.errors import BadParameter

DEFAULT_COLLECTION = "default"
COLLECTION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""1-64 letters, digits, '.', '_' or '-', starting with a letter or digit: safe in any engine's
term, log line and URL."""
MAX_TEXT = 256
"""Longest string value that filters can match (longer ones are stored, not indexed)."""
MAX_CONDITIONS = 32
MAX_IN_VALUES = 1024
RANGE_OPERATORS = ("gte", "gt", "lte", "lt")

Scalar = str | int | float | bool | None
# an indexed value: (kind, value) with kind "n" number (float), "s" string, "b" bool, "z" null
Indexed = tuple[str, float | str | bool | None]


def check_collection(name: object) -> str:
    """A collection name, or BadParameter saying what one may be."""
    if not isinstance(name, str) or not COLLECTION_PATTERN.fullmatch(name):
        raise BadParameter(
            f"Parameter 'collection' must be 1-64 letters, digits, '.', '_' or '-' starting "
            f"with a letter or digit, got {name!r}"
        )
    return name


@dataclass(frozen=True)
class Condition:
    """One key's condition: ``values`` (any of them, for equality and ``in``) or a range."""

    key: str
    values: tuple[Indexed, ...] = ()
    lower: float | None = None
    lower_inclusive: bool = True
    upper: float | None = None
    upper_inclusive: bool = True

    @property
    def is_range(self) -> bool:
        return not self.values

    def accepts(self, value: Indexed) -> bool:
        if not self.is_range:
            return value in self.values
        kind, number = value
        if kind != "n":
            return False
        assert isinstance(number, float)
        return self.in_range(number)

    def in_range(self, number: float) -> bool:
        if self.lower is not None and (
            number < self.lower or (number == self.lower and not self.lower_inclusive)
        ):
            return False
        return self.upper is None or not (
            number > self.upper or (number == self.upper and not self.upper_inclusive)
        )


@dataclass(frozen=True)
class Filter:
    conditions: tuple[Condition, ...]

    def matches(self, metadata: dict[str, Any] | None) -> bool:
        """Whether a record with this metadata matches (the definition engines follow)."""
        fields = dict(indexed_fields(metadata))
        return all(c.key in fields and c.accepts(fields[c.key]) for c in self.conditions)


def parse_filter(raw: object) -> Filter | None:
    """A filter from its JSON text or decoded object (None or {} is no filter); BadParameter
    naming what is wrong otherwise."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError as error:
            raise BadParameter(f"Parameter 'filter' is not valid JSON: {error}") from None
    if not isinstance(raw, dict):
        raise BadParameter(
            f"Parameter 'filter' must be a JSON object of metadata keys, got {type(raw).__name__}"
        )
    if len(raw) > MAX_CONDITIONS:
        raise BadParameter(f"Parameter 'filter' has more than {MAX_CONDITIONS} keys")
    conditions = tuple(_condition(key, spec) for key, spec in raw.items())
    return Filter(conditions) if conditions else None


def indexed_fields(metadata: dict[str, Any] | None) -> list[tuple[str, Indexed]]:
    """The (key, indexed value) pairs of a record's metadata that filters can match."""
    if not isinstance(metadata, dict):
        return []
    found = []
    for key, value in metadata.items():
        indexed = _indexed(value)
        if indexed is not None and _indexable_key(key):
            found.append((key, indexed))
    return found


def _indexed(value: object) -> Indexed | None:
    if value is None:
        return ("z", None)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        number = float(value)
        return ("n", number + 0.0) if math.isfinite(number) else None  # -0.0 is 0.0
    if isinstance(value, str) and len(value) <= MAX_TEXT:
        return ("s", value)
    return None


def _indexable_key(key: object) -> bool:
    return isinstance(key, str) and 0 < len(key) <= MAX_TEXT and "\x1f" not in key


def _condition(key: object, spec: object) -> Condition:
    if not isinstance(key, str) or not key:
        raise BadParameter("Parameter 'filter' has an empty key")
    if not _indexable_key(key):
        raise BadParameter(
            f"Parameter 'filter': the key {key[:40]!r} can never match (keys are up to "
            f"{MAX_TEXT} characters, without U+001F)"
        )
    where = f"Parameter 'filter', key {key!r}"
    if not isinstance(spec, dict):
        return Condition(key, (_value(spec, where),))
    unknown = sorted(set(spec) - {"in", *RANGE_OPERATORS})
    if unknown:
        raise BadParameter(
            f"{where}: unknown operator {unknown[0]!r} (use a value, 'in', or gte/gt/lte/lt)"
        )
    if "in" in spec:
        if len(spec) > 1:
            raise BadParameter(f"{where}: 'in' cannot be combined with a range")
        values = spec["in"]
        if not isinstance(values, list) or not values:
            raise BadParameter(f"{where}: 'in' needs a non-empty list of values")
        if len(values) > MAX_IN_VALUES:
            raise BadParameter(f"{where}: 'in' takes at most {MAX_IN_VALUES} values")
        return Condition(key, tuple(_value(v, where) for v in values))
    if not spec:
        raise BadParameter(f"{where}: an empty object (use a value, 'in', or gte/gt/lte/lt)")
    bounds = {}
    for name in RANGE_OPERATORS:
        if name in spec:
            bound = spec[name]
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise BadParameter(f"{where}: '{name}' needs a number, got {bound!r}")
            if not math.isfinite(float(bound)):
                raise BadParameter(f"{where}: '{name}' needs a finite number")
            bounds[name] = float(bound)
    if ("gte" in bounds and "gt" in bounds) or ("lte" in bounds and "lt" in bounds):
        raise BadParameter(f"{where}: give one lower bound (gte or gt) and one upper (lte or lt)")
    lower = bounds.get("gte", bounds.get("gt"))
    upper = bounds.get("lte", bounds.get("lt"))
    return Condition(key, (), lower, "gt" not in bounds, upper, "lt" not in bounds)


def _value(value: object, where: str) -> Indexed:
    if isinstance(value, dict | list):
        raise BadParameter(f"{where}: values are numbers, strings, true, false or null")
    indexed = _indexed(value)
    if indexed is None:
        raise BadParameter(
            f"{where}: {value!r} can never match (strings longer than {MAX_TEXT} characters "
            "and non-finite numbers are not indexed)"
        )
    return indexed
