"""Bulk loading for the CLI, safe to run twice: ``match add`` of files and folders and ``match
import`` of a CSV or JSON-lines list of URLs or paths.

Both compute signatures (and local features) in parallel processes, store them in batches, skip
what is already stored under the same key unless ``--replace`` (so a run that stopped half-way
resumes where it stopped), show progress on a terminal only, and report each failure on stderr;
``import`` also writes the failed rows, with their error, to a JSON-lines file that can itself be
imported again.

An import row has ``url`` (an http(s) URL, or the path of a local file), ``filepath`` (the key;
default: the url) and ``metadata`` (a JSON object; in CSV, its JSON text). Other columns are
refused with their names, so that a misspelled column is not silently dropped.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from match.errors import BadParameter, MatchError, NotFound
from match.fetch import FetchLimits, fetch_image
from match.service import Matcher
from match.settings import Settings
from match.stores import ImageRecord

BATCH = 200  # records per store write: what an interrupted run can lose, and redo when resumed
ROW_KEYS = frozenset({"url", "filepath", "metadata"})
IGNORED_KEYS = frozenset({"error"})  # written into the failures file; ignored when re-imported


@dataclass(frozen=True)
class Item:
    """One image to store: where its bytes come from, the key, the metadata."""

    source: str  # a local path or an http(s) URL
    filepath: str
    metadata: dict[str, Any] | None = None
    row: dict[str, Any] | None = None  # the import row, for the failures file


@dataclass
class Outcome:
    added: int = 0
    skipped: int = 0
    failed: list[tuple[Item, str]] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        images = "image" if self.added == 1 else "images"
        text = f"added {self.added} {images}, {len(self.failed)} failed"
        if self.skipped:
            text += f", {self.skipped} already stored (skipped; --replace adds them again)"
        return text


# -- keys ----------------------------------------------------------------------------------------
def key_of(path: str, prefix: str, relative_to: str | None) -> str:
    """The key a file is stored under: its path as given, or relative to ``relative_to``, after
    ``prefix``."""
    key = path
    if relative_to is not None:
        try:
            key = Path(path).resolve().relative_to(Path(relative_to).resolve()).as_posix()
        except ValueError:
            raise BadParameter(f"{path} is not inside --relative-to {relative_to}") from None
    return prefix + key


# -- import rows ---------------------------------------------------------------------------------
def read_rows(path: str) -> list[dict[str, Any]]:
    """The rows of a .csv (with a header line) or .jsonl/.ndjson file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise BadParameter(f"{path}: {error.strerror or error}") from None
    if file.suffix.lower() == ".csv":
        return list(csv.DictReader(text.splitlines()))
    if file.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as error:
                raise BadParameter(f"{path}:{number}: not valid JSON: {error}") from None
            if not isinstance(row, dict):
                raise BadParameter(f"{path}:{number}: a row must be a JSON object")
            rows.append(row)
        return rows
    raise BadParameter(f"{path}: give a .csv or .jsonl file")


def item_of(row: dict[str, Any], where: str) -> Item:
    unknown = sorted(set(row) - ROW_KEYS - IGNORED_KEYS)
    if unknown:
        raise BadParameter(
            f"{where}: unknown column {', '.join(map(repr, unknown))} (use url, filepath, metadata)"
        )
    source = row.get("url")
    if not isinstance(source, str) or not source.strip():
        raise BadParameter(f"{where}: 'url' is required (a URL or a file path)")
    filepath = row.get("filepath") or source
    metadata = row.get("metadata") or None
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError as error:
            raise BadParameter(f"{where}: 'metadata' is not valid JSON: {error}") from None
    if metadata is not None and not isinstance(metadata, dict):
        raise BadParameter(f"{where}: 'metadata' must be a JSON object")
    return Item(source, str(filepath), metadata, row)


def items_of_rows(rows: list[dict[str, Any]], path: str) -> list[Item]:
    return [item_of(row, f"{path}: row {number}") for number, row in enumerate(rows, 1)]


# -- the run -------------------------------------------------------------------------------------
def already_stored(matcher: Matcher, items: Iterable[Item], collection: str) -> set[str]:
    """The keys among ``items`` that the store holds (in ``collection``)."""
    stored = set()
    for item in items:
        try:
            matcher.store.get(item.filepath, collection=collection)
        except NotFound:
            continue
        except MatchError:
            continue  # a key the store cannot hold: the add reports it
        stored.add(item.filepath)
    return stored


def store_all(
    items: list[Item],
    settings: Settings,
    *,
    collection: str,
    jobs: int,
    replace: bool,
    show_progress: bool,
) -> Outcome:
    """Compute and store every item not stored yet; each failure reported on stderr."""
    matcher = Matcher(settings)
    matcher.ping()
    outcome = Outcome()
    if not replace:
        stored = already_stored(matcher, items, collection)
        outcome.skipped = sum(item.filepath in stored for item in items)
        items = [item for item in items if item.filepath not in stored]
    progress = _progress(len(items), show_progress)
    batch: list[tuple[Item, ImageRecord]] = []
    try:
        for item, result in _records(items, settings, jobs):
            progress.update(1)
            if isinstance(result, str):
                _failed(outcome, item, result, progress)
                continue
            batch.append((item, dataclasses.replace(result, collection=collection)))
            if len(batch) >= BATCH:
                _flush(matcher, batch, outcome, progress)
    finally:
        _flush(matcher, batch, outcome, progress)
        progress.close()
    return outcome


def write_failures(path: str, failed: list[tuple[Item, str]]) -> None:
    """The failed rows as JSON lines, each with its error: ``match import`` reads it back."""
    with open(path, "w", encoding="utf-8") as out:
        for item, reason in failed:
            row = dict(item.row or {"url": item.source, "filepath": item.filepath})
            out.write(json.dumps({**row, "error": reason}, ensure_ascii=False) + "\n")


def _record(job: tuple[Item, Settings]) -> tuple[Item, ImageRecord | str]:
    item, settings = job
    try:
        if item.source.startswith(("http://", "https://")):
            data = fetch_image(item.source, FetchLimits.from_settings(settings), name="url")
        else:
            data = Path(item.source).read_bytes()
        record = _analyser(settings).record(item.filepath, data, item.metadata)
        return item, record
    except OSError as error:
        return item, str(error.strerror or error)
    except MatchError as error:
        return item, error.message.removeprefix("Parameter 'url': ")


@cache
def _analyser(settings: Settings) -> Matcher:
    """One Matcher per process (a pool worker or this one) for the records it computes: a new
    one per image would set the BLAS limit and load settings each time."""
    return Matcher(settings)


def _records(
    items: list[Item], settings: Settings, jobs: int
) -> Iterator[tuple[Item, ImageRecord | str]]:
    work = [(item, settings) for item in items]
    if jobs <= 1 or len(items) < 8:
        yield from map(_record, work)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(_record, work, chunksize=4)


def _flush(
    matcher: Matcher, batch: list[tuple[Item, ImageRecord]], outcome: Outcome, progress: Any
) -> None:
    if not batch:
        return
    by_key = {record.filepath: item for item, record in batch}
    result = matcher.add_many([record for _, record in batch])
    outcome.added += result.added
    for filepath, reason in result.failed:
        _failed(outcome, by_key.get(filepath, Item(filepath, filepath)), reason, progress)
    batch.clear()


def _failed(outcome: Outcome, item: Item, reason: str, progress: Any) -> None:
    outcome.failed.append((item, reason))
    name = item.source if item.source == item.filepath else f"{item.source} ({item.filepath})"
    progress.write(f"{name}: {reason}", file=sys.stderr)


def _progress(total: int, show: bool) -> Any:
    """A progress bar on a terminal only: in a log file its carriage-return frames are noise."""
    from tqdm import tqdm

    return tqdm(total=total, unit="img", disable=not show, file=sys.stderr)
