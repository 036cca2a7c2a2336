"""A command that starts the Match server, run as a process on a free loopback port until /ping
answers — for the deployment and metrics tests, which start it exactly as the image does."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from api_server import MatchServer, free_port

__all__ = ["ServerProcess", "environment", "free_port"]


class ServerProcess(MatchServer):
    """``command`` run with exactly ``env`` (nothing inherited), as a context manager; with
    ``ping_ok=False`` any answer to /ping means up (a store that is down answers 503)."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        ping_ok: bool = True,
    ) -> None:
        super().__init__(
            env,
            log_path,
            ready_status=200 if ping_ok else None,
            command=command,
            inherit_environment=False,
        )
        # the server's whole environment, e.g. for the image's healthcheck, which reads PORT
        self.env |= {"HOST": "127.0.0.1", "PORT": str(self.port)}


def environment(**overrides: str) -> dict[str, str]:
    """The test's environment without Match's settings (none leaks in), plus ``overrides``."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MATCH_", "ELASTICSEARCH_", "PROMETHEUS_"))
        and key not in {"PORT", "HOST", "WORKER_COUNT", "ALL_ORIENTATIONS"}
    }
    # This virtualenv's scripts first: `match` is then the console script installed here.
    base["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', os.defpath)}"
    return {**base, **overrides}
