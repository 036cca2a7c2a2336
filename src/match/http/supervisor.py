"""The worker processes of ``match serve``, stopped so that no client is reset.

uvicorn's supervisor binds the listening socket and hands it to every worker; on SIGTERM each
worker stopped accepting, but the supervisor kept its copy of the socket open until the last
worker had finished its requests in flight (up to GRACEFUL_SHUTDOWN_SECONDS). Meanwhile the
kernel still completed new connections into the socket's queue, nobody accepted them, and they
were reset when the supervisor exited: a client could send a whole add and never learn whether
it happened.

``Supervisor`` shuts the listening socket down in its SIGTERM/SIGINT handler, before it tells
the workers to stop: from then on a new connection is refused (ECONNREFUSED, which every client
may retry safely), while the workers finish the requests they hold. A worker's event loop
(``WorkerLoop``) then stops watching the socket it can no longer accept on, instead of retrying
the failed accept. The supervisor listens on the socket before it starts any worker, so a
worker still starting when the signal came finds it no longer listening and does not serve on
it (asyncio's ``create_server`` would call ``listen`` again); for a worker that starts at that
very moment, the supervisor shuts the socket down again every ``RELISTEN_CHECK_SECONDS`` while
the workers stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
from typing import Any

from uvicorn.config import Config
from uvicorn.supervisors.multiprocess import Multiprocess

RELISTEN_CHECK_SECONDS = 0.02
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Supervisor(Multiprocess):
    """uvicorn's supervisor of worker processes; SIGTERM and SIGINT close the listener first."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        for sock in sockets:  # listening before any worker starts: see WorkerLoop.create_server
            sock.listen(config.backlog)
        self.stopping = False
        for sig in STOP_SIGNALS:  # uvicorn's handlers only queue the signal for its loop
            signal.signal(sig, self._stop_signal)

    def _stop_signal(self, sig: int, frame: Any) -> None:
        self.stopping = True
        self.stop_listening()  # at once: the loop handles signals only every 0.5 s
        self.signal_queue.append(sig)

    def stop_listening(self) -> None:
        """Refuse new connections from now on, for every process holding the socket."""
        for sock in self.sockets:
            # a listening socket stops listening; one that is not (any more) raises ENOTCONN
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)

    def join_all(self) -> None:
        for process in self.processes:
            while process.process.is_alive():
                if self.stopping:
                    self.stop_listening()  # a worker that was starting may listen again
                process.process.join(RELISTEN_CHECK_SECONDS)
            process.join()


class WorkerLoop(asyncio.SelectorEventLoop):
    """The asyncio loop of a worker (``uvicorn.Config(loop=...)``): when the supervisor has
    closed the shared listener, accepting fails with EINVAL on every turn of the loop until
    the worker's own shutdown closes its server; stop watching that socket at the first one."""

    async def create_server(  # type: ignore[override]
        self, protocol_factory: Any, *args: Any, sock: socket.socket | None = None, **kwargs: Any
    ) -> asyncio.Server:
        if sock is not None and not _listening(sock):
            kwargs["start_serving"] = False  # the supervisor closed it: serve nothing on it
        return await super().create_server(protocol_factory, *args, sock=sock, **kwargs)

    def _accept_connection(  # type: ignore[override]
        self, protocol_factory: Any, sock: socket.socket, *args: Any, **kwargs: Any
    ) -> None:
        try:
            super()._accept_connection(protocol_factory, sock, *args, **kwargs)  # type: ignore[misc]
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            self._remove_reader(sock.fileno())  # type: ignore[attr-defined]


def _listening(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
