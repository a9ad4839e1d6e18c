"""Loopback listening sockets that cope with a taken port (the demo must run beside a system Mosquitto)."""

from __future__ import annotations

import logging
import socket

__all__ = ["bind_tcp"]

log = logging.getLogger(__name__)


def bind_tcp(host: str, port: int, what: str) -> socket.socket:
    """A listening-ready TCP socket on ``host:port``; if that port is taken (or 0), on a free one, said in the log."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        if port == 0:
            sock.close()
            raise
        sock.bind((host, 0))
        log.warning("port %d is taken; %s listens on %s:%d instead", port, what, host, sock.getsockname()[1])
    return sock
