"""Run the app under uvicorn so that the process stops within about a second, whatever it is doing.

uvicorn's graceful shutdown waits for every request in flight without limit, and asyncio then
waits for every thread it started; a CPU-bound torch call in a thread does not stop on its own.
So: the CPU work runs in the daemon threads of `pool.py` (waiting on them is cancellable), the
grace period is `GRACE_S`, and the caller leaves the process without joining threads
(`mnistlab serve` calls os._exit once uvicorn has returned).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from mnistlab.errors import ConfigError

GRACE_S = 0.5  # after Ctrl-C / SIGTERM, requests in flight get this long to finish; the rest are dropped
MAX_CONNECTIONS = 128  # open connections + requests in progress; more are answered 503 by uvicorn
KEEP_ALIVE_S = 5


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; ConfigError (one line) when that cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise ConfigError(f"cannot bind {host!r}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    # proto=IPPROTO_TCP: asyncio turns TCP_NODELAY on only for sockets that say they are TCP
    # (see web/bench.py: without it small responses wait 40 ms for a delayed ACK).
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock


def run_server(app: Any, sock: socket.socket, max_connections: int = MAX_CONNECTIONS) -> None:
    """Serve `app` on `sock` until Ctrl-C or SIGTERM; returns once uvicorn has stopped.

    A signal reaches the caller as KeyboardInterrupt when the caller's handler raises it (uvicorn
    re-raises the signal it caught once it has shut down)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACE_S,
        limit_concurrency=max_connections,
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    uvicorn.Server(config).run(sockets=[sock])
