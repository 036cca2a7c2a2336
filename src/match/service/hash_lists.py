"""Hash lists in and out: CSV or JSON lines with ``pdq`` (64 hex digits), ``filepath`` and
optional ``metadata`` (a JSON object; in CSV, its JSON text) and ``quality`` (0-100) columns or
keys, the format hash exchanges share. Reading is streamed and reports each bad line with its
number instead of stopping; the same format is written back."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from match import pdq
from match.errors import BadParameter, MatchError
from match.stores import HashRecord
from match.stores.filters import DEFAULT_COLLECTION

FORMATS = ("csv", "jsonl")
COLUMNS = ("pdq", "filepath", "quality", "metadata")


@dataclass(frozen=True)
class BadLine:
    line: int
    message: str


def detect_format(head: str) -> str:
    """``jsonl`` if the first non-blank character opens a JSON object, else ``csv``."""
    stripped = head.lstrip("\ufeff \t\r\n")
    return "jsonl" if stripped.startswith("{") else "csv"


def read_hash_list(
    lines: Iterable[str], collection: str = DEFAULT_COLLECTION, fmt: str | None = None
) -> Iterator[HashRecord | BadLine]:
    """Each line's record, or a BadLine saying why it cannot be one."""
    lines = iter(lines)
    first = next(lines, None)
    if first is None:
        return
    fmt = check_format(fmt or detect_format(first))
    restored = _chain(first, lines)
    yield from (_jsonl(restored, collection) if fmt == "jsonl" else _csv(restored, collection))


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first.lstrip("\ufeff")
    yield from rest


def _jsonl(lines: Iterable[str], collection: str) -> Iterator[HashRecord | BadLine]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as error:
            yield BadLine(number, f"not JSON: {error}")
            continue
        if not isinstance(item, dict):
            yield BadLine(number, "not a JSON object")
            continue
        yield _record(number, item, collection, metadata_is_text=False)


def _csv(lines: Iterable[str], collection: str) -> Iterator[HashRecord | BadLine]:
    reader = csv.DictReader(lines)
    if reader.fieldnames is None or not {"pdq", "filepath"} <= set(reader.fieldnames):
        yield BadLine(1, "the CSV header must name the columns pdq and filepath")
        return
    for item in reader:
        yield _record(reader.line_num, item, collection, metadata_is_text=True)


def _record(
    number: int, item: dict[str, Any], collection: str, *, metadata_is_text: bool
) -> HashRecord | BadLine:
    try:
        packed = pdq.from_hex(item.get("pdq"))
        filepath = item.get("filepath")
        if not isinstance(filepath, str) or not filepath:
            raise BadParameter("filepath must be a non-empty string")
        metadata = item.get("metadata")
        if metadata_is_text:
            metadata = json.loads(metadata) if metadata not in (None, "") else None
        if metadata is not None and not isinstance(metadata, dict):
            raise BadParameter("metadata must be a JSON object")
        quality = _quality(item.get("quality"))
    except MatchError as error:
        return BadLine(number, error.message)
    except ValueError as error:
        return BadLine(number, f"metadata is not JSON: {error}")
    return HashRecord(filepath, packed, quality, metadata, collection)


def _quality(value: object) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise BadParameter(f"quality must be an integer 0-100, not {value!r}") from None
    if isinstance(value, bool) or not 0 <= number <= 100 or str(number) != str(value).strip():
        raise BadParameter(f"quality must be an integer 0-100, not {value!r}")
    return number


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise BadParameter(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt


def write_hash_list(
    records: Iterable[HashRecord], fmt: str = "jsonl", *, header: bool = True
) -> Iterator[str]:
    """The records as lines of the format (a CSV header first, unless ``header`` is off: a
    later page of the same file)."""
    check_format(fmt)
    if fmt == "csv" and header:
        yield ",".join(COLUMNS) + "\r\n"
    for record in records:
        metadata = None if record.metadata is None else json.dumps(record.metadata)
        if fmt == "jsonl":
            item = {
                "pdq": pdq.to_hex(record.pdq),
                "filepath": record.filepath,
                "quality": record.quality,
                "metadata": record.metadata,
            }
            yield json.dumps(item, ensure_ascii=False) + "\n"
        else:
            out = io.StringIO()
            quality = "" if record.quality is None else record.quality
            csv.writer(out).writerow(
                [pdq.to_hex(record.pdq), record.filepath, quality, metadata or ""]
            )
            yield out.getvalue()


def read_query_hashes(text: str, name: str = "pdq") -> list[bytes]:
    """The PDQ hashes of a list to search for, in order: a JSON array of hex strings, a hash
    list (CSV with a ``pdq`` column, or JSON lines with a ``pdq`` key; its other columns are
    not needed), or hex hashes separated by spaces, commas or line breaks. BadParameter naming
    ``name`` and where the first bad one is."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except ValueError as error:
            raise BadParameter(f"{name} is not a JSON array of hashes: {error}") from None
        if not isinstance(items, list):
            raise BadParameter(f"{name} must be a JSON array of hashes")
        return [pdq.from_hex(item, f"{name}[{n}]") for n, item in enumerate(items)]
    lines = stripped.splitlines()
    if stripped.startswith("{"):
        found = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as error:
                raise BadParameter(f"{name}, line {number}: not JSON: {error}") from None
            value = item.get("pdq") if isinstance(item, dict) else None
            found.append(pdq.from_hex(value, f"{name}, line {number}: pdq"))
        return found
    if lines and "pdq" in lines[0].lower():
        reader = csv.DictReader(lines)
        if reader.fieldnames is None or "pdq" not in reader.fieldnames:
            raise BadParameter(f"{name}: the CSV header must name the column pdq")
        return [
            pdq.from_hex(row.get("pdq"), f"{name}, line {reader.line_num}: pdq") for row in reader
        ]
    found = []
    for number, line in enumerate(lines, start=1):
        for token in line.replace(",", " ").split():
            found.append(pdq.from_hex(token, f"{name}, line {number}"))
    return found
