"""``match hashes import FILE``, ``match hashes export`` and ``match hashes search FILE``: hash
lists in and out of the store, in service/hash_lists.py's format, and looked up, for the CLI
(cli.py parses the arguments)."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from match import pdq
from match.errors import BadParameter
from match.service import Matcher, as_json, envelope, hash_lists
from match.settings import Settings
from match.stores import HashRecord
from match.stores.filters import Filter

IMPORT_BATCH = 20_000
EXPORT_PAGE = 10_000
SEARCH_BATCH = 10_000
"""Hashes looked up at a time by ``match hashes search`` (one store lookup each batch)."""


def import_file(
    path: str, settings: Settings, collection: str, fmt: str | None, silent: bool
) -> int:
    """Store the file's hash-only records in batches, with a progress bar over its bytes; each
    bad line is reported on stderr. Returns the number of failures."""
    from tqdm import tqdm

    if not path:
        raise BadParameter("match hashes import needs the FILE to import")
    try:
        size = Path(path).stat().st_size
        opened = Path(path).open(encoding="utf-8", errors="replace", newline="")  # noqa: SIM115 - closed by the with below
    except OSError as error:
        raise BadParameter(f"{path}: {error.strerror or error}") from None
    matcher = Matcher(settings)
    added = failed = 0
    with (
        opened as handle,
        tqdm(total=size, unit="B", unit_scale=True, disable=silent, file=sys.stderr) as bar,
    ):

        def lines() -> Iterator[str]:
            for line in handle:
                bar.update(len(line.encode("utf-8", errors="replace")))
                yield line

        batch: list[HashRecord] = []
        for item in hash_lists.read_hash_list(lines(), collection, fmt):
            if isinstance(item, hash_lists.BadLine):
                failed += 1
                bar.write(f"{path}:{item.line}: {item.message}", file=sys.stderr)
                continue
            batch.append(item)
            if len(batch) >= IMPORT_BATCH:
                added, failed = _flush(matcher, batch, added, failed, bar)
        added, failed = _flush(matcher, batch, added, failed, bar)
    if not silent:
        print(f"imported {added} hashes, {failed} failed", file=sys.stderr)
    return failed


def _flush(
    matcher: Matcher, batch: list[HashRecord], added: int, failed: int, bar: object
) -> tuple[int, int]:
    if batch:
        result = matcher.add_hashes(batch)
        for filepath, reason in result.failed:
            bar.write(f"{filepath}: {reason}", file=sys.stderr)  # type: ignore[attr-defined]
        added, failed = added + result.added, failed + len(result.failed)
        batch.clear()
    return added, failed


def export(settings: Settings, collection: str, fmt: str, out: str | None) -> int:
    """Write every hash-only record of the collection to ``out`` (stdout if None); the count."""
    matcher = Matcher(settings)
    hash_lists.check_format(fmt)
    written, header = 0, True
    with contextlib.ExitStack() as stack:
        stream = (
            sys.stdout
            if out is None
            else stack.enter_context(Path(out).open("w", encoding="utf-8", newline=""))
        )
        while records := matcher.hashes(written, EXPORT_PAGE, collection=collection):
            stream.writelines(hash_lists.write_hash_list(records, fmt, header=header))
            written, header = written + len(records), False
        if header:  # an empty list still has its CSV header
            stream.writelines(hash_lists.write_hash_list([], fmt))
    return written


def search(
    path: str | None,
    settings: Settings,
    collection: str,
    where: Filter | None,
    as_envelope: bool,
    *,
    min_score: float,
    limit: int,
    max_distance: int,
    pdq_low_quality: bool | None,
) -> int:
    """Look up every hash of the file (``-``: stdin), SEARCH_BATCH at a time, and print each
    match as a line (the hash, the distance, the stored filepath) or, ``as_envelope``, the
    envelope of POST /hashes/search. Returns how many hashes matched something."""
    if not path:
        raise BadParameter("match hashes search needs the FILE of hashes (- for stdin)")
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8", "replace")
    except OSError as error:
        raise BadParameter(f"{path}: {error.strerror or error}") from None
    hashes = hash_lists.read_query_hashes(text, path)
    matcher = Matcher(settings)
    rule = matcher.pdq_rule(max_distance, bool(pdq_low_quality))
    result, matched = [], 0
    for start in range(0, len(hashes), SEARCH_BATCH):
        chunk = hashes[start : start + SEARCH_BATCH]
        found = matcher.search_pdq_batch(
            chunk, rule=rule, min_score=min_score, limit=limit, collection=collection, where=where
        )
        for packed, matches in zip(chunk, found, strict=True):
            matched += bool(matches)
            if as_envelope:
                result.append({"pdq": pdq.to_hex(packed), "matches": [as_json(m) for m in matches]})
                continue
            for match in matches:
                print(f"{pdq.to_hex(packed)}  {match.pdq_distance:3d}  {match.filepath}")
    if as_envelope:
        print(json.dumps(envelope("hashes/search", result)))
    return matched
