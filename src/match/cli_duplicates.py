"""``match duplicates``: the groups of near-duplicates in a collection (service/duplicates.py),
on every core, with a progress bar on a terminal, as the API's envelope or as CSV (cli.py
parses the arguments)."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any, TextIO

from match.service import Matcher, duplicates, envelope
from match.settings import Settings
from match.stores.filters import Filter

CSV_COLUMNS = (
    "group",
    "keeper",
    "reason",
    "filepath",
    "score",
    "method",
    "orientation",
    "mirrored",
    "query_overlap_percent",
    "target_overlap_percent",
)
"""One CSV row per member: its group's number (from 1), keeper and reason, and its link."""


def run(
    settings: Settings,
    *,
    collection: str,
    where: Filter | None,
    min_score: float,
    since: str | None,
    keeper: str | None,
    jobs: int,
    fmt: str,
    silent: bool,
    out: TextIO = sys.stdout,
) -> duplicates.Duplicates:
    """Find the groups and print them; a summary on stderr unless ``silent``."""
    from tqdm import tqdm

    rule = duplicates.KeeperRule.parse(keeper)
    matcher = Matcher(settings)
    show = not silent and sys.stderr.isatty()
    with tqdm(unit="img", disable=not show, file=sys.stderr, desc="searching") as bar:

        def progress(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        found = duplicates.find_duplicates(
            matcher,
            collection=collection,
            where=where,
            min_score=min_score,
            since=duplicates.parse_since(since),
            keeper=rule,
            jobs=jobs,
            progress=progress,
        )
    if fmt == "csv":
        write_csv(found, out)
    else:
        groups = [group.as_json() for group in found.groups]
        extra = {
            "total": len(found.groups),
            "searched": found.searched,
            "next_since": found.next_since,
        }
        out.write(json.dumps(envelope("duplicates", groups, **extra)) + "\n")
    if not silent:
        members = sum(len(group.members) for group in found.groups)
        groups = "group" if len(found.groups) == 1 else "groups"
        following = f"; next time: --since {found.next_since}" if found.next_since else ""
        print(
            f"{len(found.groups)} {groups} ({members} duplicates besides their keepers), "
            f"{found.searched} images searched{following}",
            file=sys.stderr,
        )
    return found


def write_csv(found: duplicates.Duplicates, out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for number, group in enumerate(found.groups, 1):
        for member in group.as_json()["members"]:
            row: dict[str, Any] = {"group": number, "keeper": group.keeper, "reason": group.reason}
            row |= member
            row["mirrored"] = str(member["mirrored"]).lower()
            writer.writerow([row[column] for column in CSV_COLUMNS])
