"""Settings, declared once: name, type, default and help. Read from the environment.

``Settings.from_env()`` reads every setting, casts it, and raises ``SettingsError`` naming the
setting and the bad value. The README's settings table is generated from ``SETTINGS`` and a test
keeps the two in step.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class SettingsError(ValueError):
    """A setting in the environment has a value that cannot be used."""


def parse_bool(text: str) -> bool:
    """true/false/1/0/yes/no in any case (dsys/match only knew the exact string 'true')."""
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true/false or 1/0)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} is not a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{value} is negative")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a TCP port")
    return value


def _distance(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{value} is not a distance in (0, 1]")
    return value


def _quality(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 100:
        raise ValueError(f"{value} is not a PDQ quality 0-100")
    return value


def _probe_radius(text: str) -> int:
    value = int(text)
    if value not in (0, 1):
        raise ValueError(f"{value} is not 0 or 1")
    return value


def _mode(text: str) -> str:
    value = text.strip().lower()
    if value not in {"exact", "fast"}:
        raise ValueError(f"{text!r} is not 'exact' or 'fast'")
    return value


def _interval(text: str) -> str:
    value = text.strip()
    if not re.fullmatch(r"[1-9][0-9]*(ms|s|m)", value):
        raise ValueError(f"{text!r} is not a time interval such as 200ms or 1s")
    return value


def _log_level(text: str) -> str:
    value = text.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError(f"{text!r} is not debug, info, warning, error or critical")
    return value


def _log_format(text: str) -> str:
    value = text.strip().lower()
    if value not in {"json", "text"}:
        raise ValueError(f"{text!r} is not 'json' or 'text'")
    return value


def _optional(text: str) -> str | None:
    return text or None


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    cast: Callable[[str], Any]
    help: str
    secret: bool = False

    @property
    def attribute(self) -> str:
        return self.name.lower()


SETTINGS: tuple[Setting, ...] = (
    Setting("PORT", "8888", _port, "TCP port `match serve` listens on."),
    Setting("HOST", "0.0.0.0", str, "Address `match serve` binds to."),
    Setting("WORKER_COUNT", "4", _positive_int, "Server worker processes."),
    Setting(
        "MATCH_DATA_DIR",
        "./data",
        str,
        "Folder of the embedded store (used when ELASTICSEARCH_URL is unset).",
    ),
    Setting(
        "MATCH_MIN_FREE_MB",
        "100",
        _non_negative_int,
        "`/health/ready` answers 503 when the embedded store's disk has less free space (MB).",
    ),
    Setting(
        "ELASTICSEARCH_URL",
        "",
        _optional,
        "Elasticsearch 8/9 or OpenSearch 2/3 URL, "
        "credentials allowed (`https://user:pass@host:9200`). Unset: the embedded store.",
        secret=True,
    ),
    Setting("ELASTICSEARCH_INDEX", "images", str, "Index name in Elasticsearch/OpenSearch."),
    Setting(
        "ELASTICSEARCH_DOC_TYPE",
        "",
        _optional,
        "Accepted for dsys/match compatibility and "
        "ignored: Elasticsearch has had no document types since 7.",
    ),
    Setting(
        "ELASTICSEARCH_API_KEY",
        "",
        _optional,
        "API key sent as `Authorization: ApiKey ...`.",
        secret=True,
    ),
    Setting(
        "ELASTICSEARCH_CA_BUNDLE",
        "",
        _optional,
        "CA bundle file to verify the engine's TLS "
        "certificate (verification is always on for https).",
    ),
    Setting("ELASTICSEARCH_SHARDS", "1", _positive_int, "Primary shards of a new index."),
    Setting("ELASTICSEARCH_REPLICAS", "0", int, "Replicas of a new index."),
    Setting("ELASTICSEARCH_TIMEOUT", "10", float, "Seconds before an engine request times out."),
    Setting(
        "ELASTICSEARCH_BULK_REFRESH",
        "false",
        parse_bool,
        "Bulk-load mode: adds do not wait "
        "for the index refresh, so an add is searchable within ~1 s instead of at once.",
    ),
    Setting(
        "ELASTICSEARCH_REFRESH_INTERVAL",
        "1s",
        _interval,
        "Refresh interval of a new index: how late a change becomes searchable when nothing "
        "refreshes sooner (an add refreshes the index itself; deletes wait up to this long).",
    ),
    Setting(
        "ALL_ORIENTATIONS",
        "true",
        parse_bool,
        "Default of /search's `all_orientations`: "
        "also match the 8 rotations and mirror images of the query.",
    ),
    Setting(
        "MATCH_DISTANCE_CUTOFF",
        "0.45",
        _distance,
        "Search returns matches with a "
        "normalized distance below this (score above 100 * (1 - cutoff)).",
    ),
    Setting(
        "MATCH_SIGNATURE_MODE",
        "exact",
        _mode,
        "`exact` reproduces image-match bit for bit; `fast` decodes large JPEGs at reduced size.",
    ),
    Setting(
        "MATCH_PARTIAL_MATCHING",
        "true",
        parse_bool,
        "Also find crops, screenshots, captions and small rotations with local features "
        "(docs/partial-matching.md); `false`: the global signature only, faster and smaller.",
    ),
    Setting(
        "MATCH_PDQ",
        "true",
        parse_bool,
        "Compute every image's PDQ hash and match hash-only records by it (docs/pdq.md); "
        "`false`: no PDQ hashes computed or searched.",
    ),
    Setting(
        "MATCH_PDQ_MIN_QUALITY",
        "50",
        _quality,
        "PDQ hashes of lower quality (0-100) are flagged in results and never the only "
        "evidence of a match unless a search sets `pdq_low_quality=true`; in the duplicates, "
        "a signature link with an image of lower quality needs a score of 70 "
        "(docs/duplicates.md).",
    ),
    Setting(
        "MATCH_PDQ_PROBE_RADIUS",
        "1",
        _probe_radius,
        "1: PDQ lookups probe each term and its neighbours so that every hash within 31 bits is "
        "found (an engine index past ~500k records: every hash within 29 and all but ~1 in "
        "10,000 at 30-31); 0: every hash within 15 bits and ~99% up to 31, 6 times faster on "
        "the embedded store at 10M, slower on an engine there (docs/pdq.md).",
    ),
    Setting(
        "MATCH_PDQ_BATCH_MAX",
        "10000",
        _positive_int,
        "Most PDQ hashes one `POST /hashes/search` request looks up (a larger list is refused "
        "with 413; `match hashes search` has no limit).",
    ),
    Setting(
        "MATCH_THUMBNAILS",
        "true",
        parse_bool,
        "Store a small thumbnail (WebP, 256 px, about 6 KB) of every added image for the web "
        "page (`GET /thumbnail`, docs/web.md); `false`: none stored.",
    ),
    Setting(
        "MATCH_DUPLICATES_MAX_IMAGES",
        "1000",
        _positive_int,
        "Most images one GET /duplicates request searches (one search each); a larger scan is "
        "refused (413) in favour of `match duplicates`, which has no limit (docs/duplicates.md).",
    ),
    Setting(
        "MATCH_MAX_UPLOAD_BYTES",
        "26214400",
        _positive_int,
        "Largest request body or uploaded image, in bytes (default 25 MiB).",
    ),
    Setting(
        "MATCH_MAX_FILEPATH_BYTES",
        "8192",
        _positive_int,
        "Longest filepath (the key of an image) accepted by an add, in bytes of UTF-8 (default "
        "8 KiB: room for pre-signed object-store URLs and CDN URLs with query strings).",
    ),
    Setting(
        "MATCH_MAX_IMAGE_PIXELS",
        "100000000",
        _positive_int,
        "Largest image accepted, in "
        "pixels (width x height; decompression bombs are refused before decoding).",
    ),
    Setting("MATCH_URL_TIMEOUT", "10", float, "Seconds allowed to fetch an image URL."),
    Setting(
        "MATCH_URL_MAX_BYTES", "26214400", _positive_int, "Largest image downloaded from a URL."
    ),
    Setting("MATCH_URL_MAX_REDIRECTS", "3", int, "Redirects followed when fetching a URL."),
    Setting(
        "MATCH_ALLOW_PRIVATE_URLS",
        "false",
        parse_bool,
        "Allow URLs on loopback, private and "
        "link-local addresses (off: they are refused, also after redirects and DNS).",
    ),
    Setting(
        "MATCH_API_KEYS",
        "",
        _optional,
        "API keys, comma-separated; a key ending in `:ro` is read-only, `key@name` acts on the "
        "collection `name` only. Set: every endpoint but /ping, /health/live and /health/ready "
        "needs one (HTTP Basic password or Bearer token).",
        secret=True,
    ),
    Setting(
        "MATCH_API_KEYS_FILE",
        "",
        _optional,
        "File of API keys (one per line or comma-separated, `#` comments), besides MATCH_API_KEYS.",
    ),
    Setting(
        "MATCH_LOG_LEVEL",
        "info",
        _log_level,
        "Log level of the service: debug, info, warning, error or critical (the access log is "
        "info: `warning` keeps only problems).",
    ),
    Setting(
        "MATCH_LOG_FORMAT",
        "json",
        _log_format,
        "`json`: one JSON object per line (for a log collector); `text`: plain lines for a "
        "person at a terminal.",
    ),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    port: int
    host: str
    worker_count: int
    match_data_dir: str
    match_min_free_mb: int
    elasticsearch_url: str | None
    elasticsearch_index: str
    elasticsearch_doc_type: str | None
    elasticsearch_api_key: str | None
    elasticsearch_ca_bundle: str | None
    elasticsearch_shards: int
    elasticsearch_replicas: int
    elasticsearch_timeout: float
    elasticsearch_bulk_refresh: bool
    elasticsearch_refresh_interval: str
    all_orientations: bool
    match_distance_cutoff: float
    match_signature_mode: str
    match_partial_matching: bool
    match_pdq: bool
    match_pdq_min_quality: int
    match_pdq_probe_radius: int
    match_pdq_batch_max: int
    match_thumbnails: bool
    match_duplicates_max_images: int
    match_max_upload_bytes: int
    match_max_filepath_bytes: int
    match_max_image_pixels: int
    match_url_timeout: float
    match_url_max_bytes: int
    match_url_max_redirects: int
    match_allow_private_urls: bool
    match_api_keys: str | None
    match_api_keys_file: str | None
    match_log_level: str
    match_log_format: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every setting from ``environ`` (default ``os.environ``); keyword overrides win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            raw = environ.get(setting.name, setting.default)
            try:
                values[setting.attribute] = setting.cast(raw)
            except ValueError as error:
                shown = "***" if setting.secret else repr(raw)
                raise SettingsError(f"Setting {setting.name} has value {shown}: {error}") from None
        if values["elasticsearch_doc_type"]:
            log.warning("ELASTICSEARCH_DOC_TYPE is ignored: Elasticsearch has no types since 7")
        values.update(overrides)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def setting(name: str) -> Setting:
    return _BY_NAME[name]
