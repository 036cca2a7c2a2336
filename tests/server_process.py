"""A command that starts the Match server, run as a process on a free loopback port until /ping
answers — for the deployment and metrics tests, which start it exactly as the image does."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

STARTUP_SECONDS = 90.0  # importing numpy and OpenCV in several workers on a busy 2-core machine
STOP_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        ping_ok: bool = True,
    ) -> None:
        self.command = list(command)
        self.ping_ok = ping_ok  # False: any answer to /ping means up (a store that is down: 503)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerProcess:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait_for_ping()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM (graceful shutdown), SIGKILL if that takes too long; the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def _wait_for_ping(self) -> None:
        assert self.process is not None
        give_up = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < give_up:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                status = httpx.get(self.url + "/ping", timeout=5).status_code
                if status == 200 or not self.ping_ok:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"no answer on /ping within {STARTUP_SECONDS} s:\n{self.log()}")


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
