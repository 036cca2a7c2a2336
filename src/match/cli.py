"""The `match` command: a thin layer over the library, on the same store as the service.

Each command reads the settings from the environment, calls one library function, and turns a
library error into a one-line message. Its options, defaults, validation and result fields are
the API routes' (match.cli_options). Exit codes: 0 success, 1 a user error or some inputs
failed, 2 bad usage, 3 the store is unavailable, 4 a search that found nothing (a line on
stderr says so; with --json the empty envelope is printed too), as grep tells "no match" apart.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from match import cli_bulk as bulk
from match import cli_options as options
from match import pdq
from match import signature as sig
from match.errors import BadParameter, MatchError, StoreUnavailable
from match.service import Matcher, as_json, envelope
from match.settings import Settings, SettingsError
from match.stores.base import PROGRESS
from match.stores.filters import DEFAULT_COLLECTION, check_collection, parse_filter

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOTHING_FOUND = 0, 1, 2, 3, 4
SEARCH_OPTIONS = ("min_score", "limit", "offset", "min_overlap")
LIST_OPTIONS = ("offset", "limit")
HASH_SEARCH_OPTIONS = ("min_score", "limit", "max_distance", "pdq_low_quality")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".mpo"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_USAGE
    try:
        settings = Settings.from_env()
        if _uses_store(args):  # the service creates its store; the CLI only if told to
            options.check_store(settings, create=args.create, verbose=args.verbose)
        return args.run(args, settings)
    except SettingsError as error:
        return _fail(str(error), EXIT_USAGE)
    except StoreUnavailable as error:
        return _fail(error.message, EXIT_UNAVAILABLE)
    except MatchError as error:
        return _fail(error.message, EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_FAILED)


# -- commands ------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Run the HTTP API.

    Example: PORT=8888 WORKER_COUNT=4 match serve
    """
    from match.http.server import serve

    overrides = {"port": args.port, "worker_count": args.workers, "host": args.host}
    serve(settings.replace(**{k: v for k, v in overrides.items() if v is not None}))
    return EXIT_OK


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    """Add image files, or folders of them, in parallel; report unreadable files and go on.
    Each is stored under its path as given (or --relative-to a folder, after --prefix); one
    already stored under that key is skipped unless --replace, so a second run adds only what
    is new.

    Example: match add photos/ --recursive --relative-to photos --prefix archive/
    """
    metadata = _metadata(args.metadata)
    files = list(_image_files(args.paths, args.recursive))
    if not files:
        return _fail("no image files found (use --recursive for folders)", EXIT_FAILED)
    items = [
        bulk.Item(path, bulk.key_of(path, args.prefix, args.relative_to), metadata)
        for path in files
    ]
    return _store_items(args, settings, items)


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    """Add the images of a .csv or .jsonl list: columns url (an http(s) URL or a file path),
    filepath (the key; default: the url) and metadata (a JSON object). In parallel; rows
    already stored are skipped unless --replace, so an interrupted import resumes where it
    stopped; failed rows are written with their error to --failures (a .jsonl file that can be
    imported again).

    Example: match import images.csv --failures failed.jsonl
    """
    items = bulk.items_of_rows(bulk.read_rows(args.file), args.file)
    if not items:
        return _fail(f"{args.file}: no rows", EXIT_FAILED)
    failures = args.failures or f"{Path(args.file).with_suffix('')}.failures.jsonl"
    return _store_items(args, settings, items, failures)


def _store_items(
    args: argparse.Namespace,
    settings: Settings,
    items: list[bulk.Item],
    failures: str | None = None,
) -> int:
    outcome = bulk.store_all(
        items,
        settings,
        collection=check_collection(args.collection),
        jobs=args.jobs,
        replace=args.replace,
        show_progress=not args.silent and sys.stderr.isatty(),
    )
    if failures is not None and outcome.failed:
        bulk.write_failures(failures, outcome.failed)
    if not args.silent:
        where = f" (written to {failures})" if failures and outcome.failed else ""
        print(outcome.summary() + where, file=sys.stderr)
    return EXIT_FAILED if outcome.failed else EXIT_OK


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    """Search the store with an image: a file, an http(s) URL, or --filepath of a stored image.
    Options, defaults and result fields are /search's. Nothing found: exit 4, a line on stderr.

    Example: match search query.jpg --limit 5 --min-score 80 --json
    """
    values = options.route_values(args, "/search", SEARCH_OPTIONS)
    where = parse_filter(args.filter)
    matcher = Matcher(settings)
    source = options.image_source(args.image, args.filepath, "query")
    collection = check_collection(args.collection)
    orientations = options.all_orientations(args, settings)
    query = options.image_query(matcher, source, settings, orientations, collection)
    matches = matcher.search(query, collection=collection, where=where, **values)
    result = [as_json(match) for match in matches]
    if args.json:
        _print_envelope("search", result)
    else:
        for item in result:
            how = item["orientation"] + (", partial" if item["method"] == "local" else "")
            print(f"{item['score']:7.3f}  {item['filepath']}  ({how})")
    if not result:
        print(f"match: nothing found for {source.name}", file=sys.stderr)
        return EXIT_NOTHING_FOUND
    return EXIT_OK


def cmd_compare(args: argparse.Namespace, settings: Settings) -> int:
    """Score two images as /compare does (same defaults: ALL_ORIENTATIONS), unrounded. Each is a
    file, an http(s) URL, or --filepath1/--filepath2 of a stored image.

    Example: match compare original.jpg copy.jpg --json
    """
    images = list(args.images)
    if len(images) + (args.filepath1 is not None) + (args.filepath2 is not None) != 2:
        raise BadParameter("give two images: FILE or URL arguments, or --filepath1/--filepath2")
    first_argument = None if args.filepath1 is not None else images.pop(0)
    second_argument = None if args.filepath2 is not None else images.pop(0)
    matcher = Matcher(settings)
    collection = check_collection(args.collection)
    first = options.image_source(first_argument, args.filepath1, "first")
    second = options.image_source(second_argument, args.filepath2, "second")
    orientations = options.all_orientations(args, settings)
    queries = options.image_query(matcher, first, settings, orientations, collection)
    target = options.image_query(matcher, second, settings, False, collection)
    comparison = matcher.compare(queries, target)
    if args.json:
        return _print_envelope("compare", [as_json(comparison)])
    print(comparison.score)
    return EXIT_OK


def cmd_signature(args: argparse.Namespace, settings: Settings) -> int:
    """Print each file's signature and words.

    Example: match signature a.jpg b.png --json
    """
    results, failed = [], []
    for name in args.files:
        try:
            query = Matcher(settings).analyser.query(_read(name), False, name=name, features=False)
        except MatchError as error:
            failed.append(f"{name}: {error.message}")
            _fail(failed[-1], EXIT_FAILED)
            continue
        signature = query.signatures[0]
        results.append(
            {
                "file": name,
                "algorithm": sig.ALGORITHM,
                "signature": signature.tolist(),
                "words": sig.words(signature).tolist(),
                "pdq": pdq.to_hex(query.pdq[0]) if query.pdq else None,
                "pdq_quality": query.pdq_quality,
            }
        )
    if args.json:
        _print_envelope("signature", results, errors=failed)
    else:
        for item in results:
            print(f"{item['file']}\n  signature {' '.join(map(str, item['signature']))}")
            print(f"  words {' '.join(map(str, item['words']))}")
            if item["pdq"] is not None:
                print(f"  pdq {item['pdq']} quality {item['pdq_quality']}")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_hashes(args: argparse.Namespace, settings: Settings) -> int:
    """Import or export a hash list: hash-only records (a PDQ hash and metadata, no image) from
    or to a CSV or JSON lines file with pdq, filepath and optional quality and metadata; or
    search for every hash of a list (a hash list, or hashes one or more a line; - for stdin) as
    POST /hashes/search does. Nothing found by a search: exit 4.

    Example: match hashes import ncmec.csv --collection ncmec
    (and back: match hashes export --format csv --collection ncmec > ncmec.csv)
    (and: match hashes search reported.txt --max-distance 20 --json)
    """
    from match import cli_hashes

    collection = check_collection(args.collection)
    if args.action == "search":
        values = options.route_values(args, "/hashes/search", HASH_SEARCH_OPTIONS)
        where = parse_filter(args.filter)
        found = cli_hashes.search(args.file, settings, collection, where, args.json, **values)
        if not found:
            print(f"match: nothing found for {args.file}", file=sys.stderr)
            return EXIT_NOTHING_FOUND
        return EXIT_OK
    if args.action == "import":
        failed = cli_hashes.import_file(args.file, settings, collection, args.format, args.silent)
        return EXIT_FAILED if failed else EXIT_OK
    cli_hashes.export(settings, collection, args.format or "jsonl", args.output)
    return EXIT_OK


def cmd_duplicates(args: argparse.Namespace, settings: Settings) -> int:
    """Find the groups of near-duplicates among the stored images: each a keeper (by --keeper's
    rule), why, and the images that match it, as GET /duplicates answers them (docs/
    duplicates.md), with no limit on the images searched: one search per image, on every core.

    Example: match duplicates --min-score 80 --format csv --since 7d > duplicates.csv
    """
    from match import cli_duplicates

    values = options.route_values(args, "/duplicates", ("min_score",))
    cli_duplicates.run(
        settings,
        collection=check_collection(args.collection),
        where=parse_filter(args.filter),
        min_score=values["min_score"],
        since=args.since,
        keeper=args.keeper,
        jobs=max(1, args.jobs),
        fmt=args.format,
        silent=args.silent,
    )
    return EXIT_OK


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    """Delete a stored image by its filepath.

    Example: match delete photos/cat.jpg
    """
    Matcher(settings).delete(args.filepath, collection=args.collection)
    return EXIT_OK


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """List stored filepaths in insertion order.

    Example: match list --offset 100 --limit 50
    """
    values = options.route_values(args, "/list", LIST_OPTIONS)
    where = parse_filter(args.filter)
    listed = Matcher(settings).list(collection=args.collection, where=where, **values)
    for filepath in listed:
        print(filepath)
    return EXIT_OK


def cmd_count(args: argparse.Namespace, settings: Settings) -> int:
    """Print the number of stored images.

    Example: match count
    """
    print(Matcher(settings).count(collection=args.collection, where=parse_filter(args.filter)))
    return EXIT_OK


def cmd_collections(args: argparse.Namespace, settings: Settings) -> int:
    """List the collections with their counts, or delete one (every image in it).

    Example: match collections --drop shop-12
    """
    matcher = Matcher(settings)
    if args.drop:
        print(f"deleted {matcher.drop_collection(args.drop)} images of {args.drop}")
        return EXIT_OK
    for name, count in matcher.collections():
        print(f"{count}\t{name}")
    return EXIT_OK


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    """Check the whole store (slow: it reads everything); with --repair, rebuild what can be
    rebuilt from the stored records (indexes, codes, words, PDQ terms, filters) and clear the
    damage flag (on Elasticsearch/OpenSearch: give documents of an earlier Match their terms).
    A damaged store answers nothing (503) until then. Exit 0: sound.

    Example: match check --repair
    """
    if args.repair:  # a long repair says how far it has got
        PROGRESS.setLevel(logging.INFO)
        PROGRESS.addHandler(logging.StreamHandler(sys.stderr))
    outcome = Matcher(settings).check(repair=args.repair)
    for problem in outcome.problems:
        print(f"damaged: {problem}")
    for note in outcome.notes:
        print(f"note: {note}")
    for done in outcome.repaired:
        print(f"repaired: {done}")
    if outcome.damaged:
        advice = "" if args.repair else "; run match check --repair"
        return _fail(f"the store is damaged{advice}", EXIT_FAILED)
    print("the store is sound" + (" (repaired)" if outcome.repaired else ""))
    return EXIT_OK


# -- helpers -------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="match",
        description="Reverse image search: add images, then search with an image.",
        epilog="Settings come from the environment (see README). Run 'match COMMAND --help'.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--verbose", "-v", action="store_true", help="say which store is used (path or engine URL)"
    )
    common.add_argument(
        "--create",
        action="store_true",
        help="create a new embedded store in ./data when MATCH_DATA_DIR is unset",
    )

    def command(name: str, function: Any) -> argparse.ArgumentParser:
        doc = (function.__doc__ or "").strip()
        sub = commands.add_parser(
            name,
            help=doc.splitlines()[0],
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[] if function is cmd_serve else [common],
        )
        sub.set_defaults(run=function)
        return sub

    def scoped(sub: argparse.ArgumentParser, filtered: bool = False) -> None:
        sub.add_argument(
            "--collection", default=DEFAULT_COLLECTION, help="the collection (default: default)"
        )
        if filtered:
            sub.add_argument(
                "--filter", help='metadata filter, a JSON object: {"shop": 12, "price": {"lt": 9}}'
            )

    serve = command("serve", cmd_serve)
    serve.add_argument("--port", type=int, help="override PORT")
    serve.add_argument("--host", help="override HOST")
    serve.add_argument("--workers", type=int, help="override WORKER_COUNT")

    def bulk_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--jobs",
            type=int,
            default=os.cpu_count() or 1,
            help="parallel signature processes (default: all cores)",
        )
        sub.add_argument(
            "--replace", action="store_true", help="add again what is already stored (the key)"
        )
        sub.add_argument(
            "--silent", action="store_true", help="no progress bar (shown on a terminal) or summary"
        )
        scoped(sub)

    add = command("add", cmd_add)
    add.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    add.add_argument("--recursive", "-r", action="store_true", help="descend into folders")
    add.add_argument("--metadata", help="JSON object stored with every image")
    add.add_argument("--prefix", default="", help="put this before every key")
    add.add_argument(
        "--relative-to", metavar="FOLDER", help="keys are the paths relative to this folder"
    )
    bulk_options(add)

    importing = command("import", cmd_import)
    importing.add_argument("file", metavar="FILE.csv|FILE.jsonl")
    importing.add_argument(
        "--failures",
        metavar="FILE.jsonl",
        help="where the failed rows go (default: FILE.failures.jsonl beside FILE)",
    )
    bulk_options(importing)

    orientations_help = "also match the 90° turns and mirror images (default: ALL_ORIENTATIONS)"
    search = command("search", cmd_search)
    search.add_argument("image", nargs="?", metavar="FILE|URL", help="the query image")
    search.add_argument("--filepath", help="search with this stored image instead")
    options.route_options(search, "/search", SEARCH_OPTIONS)
    search.add_argument(
        "--all-orientations", action=argparse.BooleanOptionalAction, help=orientations_help
    )
    search.add_argument("--json", action="store_true", help="print the API's JSON envelope")
    scoped(search, filtered=True)

    compare = command("compare", cmd_compare)
    compare.add_argument("images", nargs="*", metavar="FILE|URL", help="the first, second image")
    compare.add_argument("--filepath1", help="a stored image as the first image")
    compare.add_argument("--filepath2", help="a stored image as the second image")
    compare.add_argument(
        "--all-orientations",
        action=argparse.BooleanOptionalAction,
        help="best score over the 8 orientations of the first image (default: ALL_ORIENTATIONS)",
    )
    compare.add_argument("--json", action="store_true", help="print the API's JSON envelope")
    scoped(compare)

    signature = command("signature", cmd_signature)
    signature.add_argument("files", nargs="+", metavar="FILE")
    signature.add_argument("--json", action="store_true")

    hashes = command("hashes", cmd_hashes)
    hashes.add_argument("action", choices=("import", "export", "search"))
    hashes.add_argument(
        "file", nargs="?", help="import: the CSV or JSON lines file; search: the hashes (- stdin)"
    )
    hashes.add_argument("--format", choices=("csv", "jsonl"), help="default: detected / jsonl")
    hashes.add_argument("--output", "-o", help="export: write here instead of stdout")
    hashes.add_argument("--silent", action="store_true", help="no progress bar or summary")
    options.route_options(hashes, "/hashes/search", HASH_SEARCH_OPTIONS[:3])
    hashes.add_argument(
        "--pdq-low-quality",
        action="store_true",
        default=None,
        help="search: also match hashes of quality below MATCH_PDQ_MIN_QUALITY (flagged)",
    )
    hashes.add_argument("--json", action="store_true", help="search: print the API's envelope")
    scoped(hashes, filtered=True)

    duplicates = command("duplicates", cmd_duplicates)
    options.route_options(duplicates, "/duplicates", ("min_score",))
    duplicates.add_argument("--format", choices=("json", "csv"), default="json")
    duplicates.add_argument("--since", help="only the groups holding an image added after this")
    duplicates.add_argument(
        "--keeper", help="earliest (default), largest, metadata:KEY or metadata:KEY:asc"
    )
    duplicates.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="parallel search processes (default: all cores)",
    )
    duplicates.add_argument("--silent", action="store_true", help="no progress bar or summary")
    scoped(duplicates, filtered=True)

    delete = command("delete", cmd_delete)
    delete.add_argument("filepath")
    scoped(delete)

    listing = command("list", cmd_list)
    options.route_options(listing, "/list", LIST_OPTIONS)
    scoped(listing, filtered=True)

    scoped(command("count", cmd_count), filtered=True)
    collections = command("collections", cmd_collections)
    collections.add_argument("--drop", metavar="NAME", help="delete this collection's images")
    check = command("check", cmd_check)
    check.add_argument(
        "--repair", action="store_true", help="rebuild what is derived from the records"
    )
    return parser


def _uses_store(args: argparse.Namespace) -> bool:
    if args.run in (cmd_serve, cmd_signature):
        return False
    if args.run is cmd_compare:
        return args.filepath1 is not None or args.filepath2 is not None
    return True


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise BadParameter(f"{path}: {error.strerror or error}") from None


def _metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadParameter(f"--metadata is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise BadParameter("--metadata must be a JSON object")
    return value


def _image_files(paths: Sequence[str], recursive: bool) -> Iterator[str]:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            if not recursive:
                print(f"{name}: is a folder (use --recursive)", file=sys.stderr)
                continue
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES:
                    yield str(child)
        else:
            yield name  # reported later if it is missing or not an image


def _print_envelope(method: str, result: list[Any], errors: Sequence[str] = ()) -> int:
    print(json.dumps(envelope(method, result, errors=errors)))
    return EXIT_FAILED if errors else EXIT_OK


def _fail(message: str, code: int) -> int:
    print(f"match: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
