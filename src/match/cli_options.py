"""What makes the CLI behave as the API: its options are the routes' declared parameters (same
defaults, help and validation, so the same messages), its images come from a file, a URL or a
stored filepath as the routes' do, and it says which store it opened.

``route_options(parser, path, names)`` adds ``--limit`` etc. from the route's ``Param``
declarations; ``route_values(args, path, names)`` reads them back through ``Params``, exactly as
the route parses a request. ``image_query`` turns a CLI image argument into a Query.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from match.errors import BadParameter, MatchError
from match.fetch import FetchLimits
from match.http import api, duplicates, hashes
from match.http.params import Param, Params
from match.http.sources import ImageSource, query
from match.service import Matcher, Query
from match.settings import Settings
from match.stores.filters import DEFAULT_COLLECTION

URL_SCHEMES = ("http://", "https://")


def route_params(path: str) -> dict[str, Param]:
    """The declared parameters of the route at ``path`` (the POST one if several)."""
    for endpoint in (*api.ENDPOINTS, *duplicates.ENDPOINTS, *hashes.ENDPOINTS):
        if endpoint.path == path:
            return {param.name: param for param in endpoint.params}
    raise KeyError(path)


def route_options(parser: argparse.ArgumentParser, path: str, names: tuple[str, ...]) -> None:
    """``--name`` options for the route's parameters, with the route's help and default."""
    declared = route_params(path)
    for name in names:
        param = declared[name]
        help_text = param.help
        if param.default is not None:
            help_text += f" (default: {param.default:g})"
        kind = {"integer": int, "number": float}.get(param.type, str)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=help_text)


def route_values(args: argparse.Namespace, path: str, names: tuple[str, ...]) -> dict[str, Any]:
    """The options' values parsed by the route's declarations: defaults filled in, and a bad
    value the route's own BadParameter ("Parameter 'limit' must be between 1 and 10000, ...")."""
    declared = route_params(path)
    raw = {}
    for name in names:
        value = getattr(args, name)
        if value is not None:
            raw[name] = [str(value).lower() if isinstance(value, bool) else str(value)]
    params = Params(declared.values(), raw)
    return {name: params[name] for name in names}


def all_orientations(args: argparse.Namespace, settings: Settings) -> bool:
    """--all-orientations/--no-all-orientations, or the ALL_ORIENTATIONS setting, as the API."""
    return settings.all_orientations if args.all_orientations is None else args.all_orientations


def image_source(argument: str | None, stored: str | None, label: str) -> ImageSource:
    """A CLI image: a file, an http(s) URL, or (``--filepath``) a stored image's filepath."""
    if (argument is None) == (stored is None):
        raise BadParameter(
            f"give the {label} image as a FILE or URL, or --filepath of a stored one"
        )
    if stored is not None:
        return ImageSource("filepath", stored, stored)
    assert argument is not None
    if argument.startswith(URL_SCHEMES):
        return ImageSource("url", argument, argument)
    return ImageSource("image", argument, read_file(argument))


def image_query(
    matcher: Matcher,
    source: ImageSource,
    settings: Settings,
    orientations: bool,
    collection: str = DEFAULT_COLLECTION,
) -> Query:
    """The query of a source, an error naming the file, URL or stored filepath."""
    try:
        return query(matcher, source, FetchLimits.from_settings(settings), orientations, collection)
    except MatchError as error:
        message = error.message.removeprefix(f"Parameter '{source.name}': ")
        if source.kind == "filepath" or message.startswith(source.name):
            raise
        raise type(error)(f"{source.name}: {message}") from None


def read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise BadParameter(f"{path}: {error.strerror or error}") from None


# -- which store ---------------------------------------------------------------------------------
def store_description(settings: Settings) -> str:
    """Where the store is: the embedded store's file, or the engine URL without credentials."""
    if settings.elasticsearch_url:
        from urllib.parse import urlsplit

        url = urlsplit(settings.elasticsearch_url)
        shown = url._replace(netloc=url.hostname + (f":{url.port}" if url.port else ""))
        return f"engine {shown.geturl()}, index {settings.elasticsearch_index}"
    return f"embedded store {embedded_file(settings)}"


def embedded_file(settings: Settings) -> Path:
    from match.stores.sqlite.database import FILE_SUFFIXES, FILENAME

    path = Path(settings.match_data_dir).resolve()
    return path if path.suffix in FILE_SUFFIXES else path / FILENAME


def check_store(settings: Settings, create: bool, verbose: bool) -> None:
    """Say which store is used (--verbose), and refuse to create an embedded store where the
    user did not say to: MATCH_DATA_DIR unset and no store in ./data of the current folder."""
    if verbose:
        print(f"match: using the {store_description(settings)}", file=sys.stderr)
    if settings.elasticsearch_url or create or "MATCH_DATA_DIR" in os.environ:
        return
    file = embedded_file(settings)
    if not file.exists():
        raise BadParameter(
            f"no store at {file} (MATCH_DATA_DIR is unset, so ./data of the current folder is "
            "used): set MATCH_DATA_DIR to your store, or pass --create to start a new one here"
        )
