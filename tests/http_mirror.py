"""Loopback HTTP mirrors for tests (shared helper: other test files import it).

API (kept stable):

- ``serve_directory(path) -> base_url``: context manager serving ``path`` read-only over HTTP
  on 127.0.0.1 with an ephemeral port, from a background thread, without request logging.
  ``base_url`` has no trailing slash, so ``f"{base_url}/train/1001.jpg"`` is a file URL.
  Missing files answer 404.
- ``unreachable_url() -> str``: an http URL on 127.0.0.1 where nothing listens (connection
  refused), to stand for a mirror that is down.
- ``silent_server() -> SilentServer``: context manager for a loopback server that accepts
  every connection and never answers (a hung mirror); ``.url`` is its base URL and
  ``.connections`` counts the connections it accepted.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@contextlib.contextmanager
def serve_directory(path: str | Path) -> Iterator[str]:
    """Serve `path` over HTTP on loopback for the duration of the block; yields the base URL."""
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"cannot serve {root}: not a directory")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=f"http-mirror {root}", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host}:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def unreachable_url() -> str:
    """URL of a loopback port that was free a moment ago, so connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class SilentServer:
    url: str
    connections: int = 0
    sockets: list[socket.socket] = field(default_factory=list)


@contextlib.contextmanager
def silent_server() -> Iterator[SilentServer]:
    """A loopback server that accepts connections, reads nothing and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    listener.settimeout(0.1)
    host, port = listener.getsockname()[:2]
    server = SilentServer(f"http://{host}:{port}")
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server.connections += 1
            server.sockets.append(connection)  # held open, never answered

    thread = threading.Thread(target=accept, name="silent mirror", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=10)
        for connection in server.sockets:
            connection.close()
        listener.close()
