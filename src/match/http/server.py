"""Run the HTTP API under uvicorn: ``serve(settings)``, or ``python -m match.http.server``.

``settings.worker_count`` worker processes share one listening socket on
``settings.host:settings.port``; each builds its own app and opens its own store. Workers read
their settings from the environment, so ``serve`` first writes the settings it was given into
the environment (a CLI option overriding a setting then reaches every worker). Logs and the
access log go to stdout as JSON lines (match.http.logs); SIGTERM or SIGINT close the listener
at once, so new connections are refused rather than queued and reset (match.http.supervisor),
and let running requests finish (up to ``GRACEFUL_SHUTDOWN_SECONDS``).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import sys
from typing import Any

import uvicorn

from match.errors import MatchError
from match.http.auth import load_keys
from match.http.connections import MatchProtocol
from match.http.logs import log_config
from match.http.metrics import prepare_multiprocess
from match.http.supervisor import Supervisor
from match.settings import SETTINGS, Settings, SettingsError
from match.stores import open_store

log = logging.getLogger("match.http")

APP = "match.http.app:create_app"

# Seconds an idle keep-alive connection stays open; request bodies have their own deadline
# (match.http.limits.BODY_TIMEOUT_SECONDS), so a slow client cannot pin a connection forever.
KEEP_ALIVE_SECONDS = 5
GRACEFUL_SHUTDOWN_SECONDS = 30
# Seconds the supervisor waits for a worker to answer its health ping before killing it as hung.
# uvicorn's 5 s is shorter than a worker takes to start (importing numpy and OpenCV) on a busy
# machine: the soak (bench/soak.py) saw a new worker killed every 5.6 s for the whole run.
WORKER_HEALTHCHECK_SECONDS = 60
# Open connections per worker; beyond it the oldest idle one is closed, and when none is idle a
# new one is answered 503 in the envelope (match.http.connections).
MAX_CONNECTIONS_PER_WORKER = 200
# File descriptors the server asks for (its soft limit, up to the hard one): every connection is
# one, and a flood of sockets must meet the connection cap before it meets EMFILE.
WANTED_FILE_DESCRIPTORS = 65536
# glibc's malloc arenas a worker may use. By default each thread that allocates gets one, and
# each keeps the candidate step's freed arrays (megabytes a search) for later: 2 arenas cut a
# worker's anonymous memory by 30-43% (4 workers at 100k and 1M) for about 5% more CPU a search
# (docs/partial-matching.md). The variable is glibc's own, read when a process starts, so it
# reaches the spawned workers (not a single-process server); an operator's value wins.
WORKER_MALLOC_ARENAS = "2"


def serve(settings: Settings) -> None:
    """Serve the API until SIGTERM/SIGINT (blocks)."""
    load_keys(settings)  # a bad key setting stops the server here, not in each worker
    raise_file_limit()  # before the workers start: they inherit it
    os.environ.setdefault("MALLOC_ARENA_MAX", WORKER_MALLOC_ARENAS)  # likewise
    export_settings(settings)
    prepare_multiprocess(settings.worker_count)  # metrics shared by the workers
    prepare_store(settings)
    config = uvicorn.Config(APP, factory=True, **uvicorn_options(settings))
    if config.workers > 1:
        # match.http.supervisor: on SIGTERM the shared listener closes before the workers stop
        Supervisor(config, sockets=[config.bind_socket()]).run()
    else:  # one process owns the listener, and closes it as its shutdown begins
        uvicorn.Server(config).run()


def raise_file_limit(wanted: int = WANTED_FILE_DESCRIPTORS) -> None:
    """Raise the soft limit of open files towards ``wanted`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def prepare_store(settings: Settings) -> None:
    """Bring the store's indexes up to date once, before the workers start, so they do not
    all build them at once (the embedded store's shared indexes); a store that cannot be opened
    yet is not fatal here: the workers report it and retry."""
    try:
        with contextlib.closing(open_store(settings)) as store:
            store.prepare()
    except MatchError as error:
        log.warning("The store is not available yet: %s", error.message)
    release_freed_memory()


def release_freed_memory() -> None:
    """Hand the memory malloc holds freed back to the system (glibc's ``malloc_trim``): the
    master builds the indexes above and then only supervises, and it kept a build's freed
    arrays, 170 MiB after building the word index of 1M images. Elsewhere than glibc, nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "workers": settings.worker_count,
        "access_log": True,
        "proxy_headers": False,
        "server_header": False,
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK_SECONDS,
        # the cap of match.http.connections: beyond it, the oldest idle connection is closed
        "limit_concurrency": MAX_CONNECTIONS_PER_WORKER,
        "http": MatchProtocol,
        "loop": "match.http.supervisor:WorkerLoop",
        "log_level": settings.match_log_level.lower(),
        # MATCH_LOG_FORMAT lines at MATCH_LOG_LEVEL; the access log is match.http.metrics'
        "log_config": log_config(settings.match_log_level, settings.match_log_format),
    }


def export_settings(settings: Settings) -> None:
    """Write every setting into os.environ, in the form ``Settings.from_env`` reads back."""
    for setting in SETTINGS:
        os.environ[setting.name] = _as_text(getattr(settings, setting.attribute))


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def main() -> int:
    try:
        settings = Settings.from_env()
        load_keys(settings)
    except SettingsError as error:
        print(f"match: {error}", file=sys.stderr)
        return 2
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
